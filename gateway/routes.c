/*
 * routes.c - the route table and path parameters.
 *
 * One row per (method, path): the pipeline answers 405 with Allow when the
 * path matches rows of other methods only. Later issues add their rows
 * here; handlers live in h_<area>.c.
 */
#include <stdio.h>
#include <string.h>

#include "gw.h"
#include "handlers.h"
#include "stream.h"
#include "http.h"

#define KIB 1024
#define ANY (GW_AUTH_SECRET | GW_AUTH_JWT)

const struct gw_route gw_routes[] = {
    {GW_POST, "/api/v1/auth/jwt/claims", 0, GW_BODY_RAW, GW_AUTH_SECRET, gw_on_jwt_claims},
    {GW_GET, "/api/v1/auth/whoami", 0, GW_BODY_RAW, ANY, gw_on_whoami},

    {GW_POST, "/api/v1/sessions", 32 * KIB, GW_BODY_JSON, ANY, gw_on_session_create},
    {GW_GET, "/api/v1/sessions", 0, GW_BODY_RAW, ANY, gw_on_session_list},
    {GW_GET, "/api/v1/sessions/:session", 0, GW_BODY_RAW, ANY, gw_on_session_get},
    {GW_PATCH, "/api/v1/sessions/:session", 32 * KIB, GW_BODY_JSON, ANY, gw_on_session_update},
    {GW_POST, "/api/v1/sessions/:session/close", 1 * KIB, GW_BODY_JSON, ANY, gw_on_session_close},
    {GW_POST, "/api/v1/sessions/:session/end-and-continue", 1 * KIB, GW_BODY_JSON, ANY,
     gw_on_session_end_and_continue},

    {GW_POST, "/api/v1/workers/dequeue", 16 * KIB, GW_BODY_JSON, GW_AUTH_SECRET,
     gw_on_worker_dequeue},
    {GW_POST, "/api/v1/runs/:run/heartbeat", 4 * KIB, GW_BODY_RAW, ANY, gw_on_run_heartbeat},
    {GW_POST, "/api/v1/runs/:run/complete", 1024 * KIB, GW_BODY_RAW, ANY, gw_on_run_complete},
    {GW_POST, "/api/v1/runs/:run/fail", 64 * KIB, GW_BODY_RAW, ANY, gw_on_run_fail},
    {GW_POST, "/api/v2/runs/:run/cancel", 1 * KIB, GW_BODY_RAW, ANY, gw_on_run_cancel},
    {GW_GET, "/api/v3/runs/:run", 0, GW_BODY_RAW, ANY, gw_on_run_get},

    /* realtime: a session's channels (feed.c streams the SSE answers) */
    {GW_PUT, "/realtime/v1/sessions/:session/:io", 0, GW_BODY_RAW, ANY, gw_on_stream_init},
    {GW_GET, "/realtime/v1/sessions/:session/:io", 0, GW_BODY_RAW, ANY, gw_on_stream_subscribe},
    {GW_HEAD, "/realtime/v1/sessions/:session/:io", 0, GW_BODY_RAW, ANY, gw_on_stream_subscribe},
    {GW_POST, "/realtime/v1/sessions/:session/:io/append", STREAM_RECORD_MAX, GW_BODY_RAW, ANY,
     gw_on_stream_append},
    {GW_GET, "/realtime/v1/sessions/:session/:io/records", 0, GW_BODY_RAW, ANY,
     gw_on_stream_records},
    /* the S2-compatible records endpoint that PUT above points agents at */
    {GW_POST, "/s2/v1/streams/:stream/records", STREAM_RECORD_MAX + 64 * KIB, GW_BODY_JSON_PROTO,
     ANY, gw_on_s2_append},
    {GW_GET, "/s2/v1/streams/:stream/records", 0, GW_BODY_RAW, ANY, gw_on_s2_read},
};

const size_t gw_nroutes = sizeof(gw_routes) / sizeof(gw_routes[0]);

static int gw_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes one path segment into out; false on a bad escape, a NUL or overflow. */
static bool gw_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = gw_hexval(s[i + 1])) < 0 || (lo = gw_hexval(s[i + 2])) < 0)
                return false;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0' || o + 1 >= cap)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

bool gw_route_match(const char *pattern, const char *path, size_t n, struct gw_params *params,
                    const char **bad_param)
{
    const char *p = pattern, *s = path, *end = path + n;
    memset(params, 0, sizeof(*params));
    *bad_param = NULL;
    while (*p && s <= end) {
        if (*p != '/' || s == end || *s != '/')
            return false;
        p++;
        s++;
        const char *pe = strchr(p, '/');
        size_t plen = pe ? (size_t)(pe - p) : strlen(p);
        const char *se = memchr(s, '/', (size_t)(end - s));
        size_t slen = se ? (size_t)(se - s) : (size_t)(end - s);
        if (plen > 0 && p[0] == ':') {
            char *dst = NULL;
            size_t cap = 0;
            if (plen == 8 && memcmp(p, ":session", 8) == 0) {
                dst = params->session;
                cap = sizeof(params->session);
            } else if (plen == 3 && memcmp(p, ":io", 3) == 0) {
                dst = params->io;
                cap = sizeof(params->io);
            } else if (plen == 4 && memcmp(p, ":run", 4) == 0) {
                dst = params->run;
                cap = sizeof(params->run);
            } else if (plen == 7 && memcmp(p, ":stream", 7) == 0) {
                /* an S2 stream name holds slashes (sessions/<key>/<io>), and clients may send
                 * them encoded or not: it takes every segment up to the pattern's fixed tail */
                const char *tail = p + plen;
                size_t tl = strlen(tail);
                if ((size_t)(end - s) <= tl || memcmp(end - tl, tail, tl) != 0)
                    return false;
                slen = (size_t)(end - tl - s);
                dst = params->session;
                cap = sizeof(params->session);
            }
            if (!dst || slen == 0)
                return false;
            if (!gw_pct_decode(s, slen, dst, cap)) {
                *bad_param = p + 1;
                dst[0] = '\0'; /* the shape matched; the value is unusable */
            }
        } else if (plen != slen || memcmp(p, s, slen) != 0) {
            return false;
        }
        p += plen;
        s += slen;
    }
    return *p == '\0' && s == end;
}

static json_t *gw_issue(const char *path, const char *message)
{
    return json_pack("{s:s,s:s,s:[s]}", "code", "custom", "message", message, "path", path);
}

bool gw_params_valid(const struct gw_route *r, const struct gw_params *p, json_t **details)
{
    json_t *issues = json_array();
    if (strstr(r->pattern, ":session") && (p->session[0] == '\0' || strlen(p->session) > 512))
        json_array_append_new(issues, gw_issue("session", "Invalid session id"));
    if (strstr(r->pattern, ":io") && strcmp(p->io, "in") != 0 && strcmp(p->io, "out") != 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "Invalid enum value. Expected 'in' | 'out', received '%.16s'",
                 p->io);
        json_t *i =
            json_pack("{s:s,s:s,s:[s],s:[s,s],s:s}", "code", "invalid_enum_value", "message", msg,
                      "path", "io", "options", "in", "out", "received", p->io);
        json_array_append_new(issues, i);
    }
    if (strstr(r->pattern, ":run") && (p->run[0] == '\0' || strlen(p->run) > 256))
        json_array_append_new(issues, gw_issue("run", "Invalid run id"));
    if (json_array_size(issues) == 0) {
        json_decref(issues);
        return true;
    }
    *details = issues;
    return false;
}
