/*
 * path.c - route matching on the raw path, percent-decoding of path
 * parameters, and the id rule (see path.h); the generic checks of the
 * decoded parameters (http.h, gw_params_valid).
 *
 * h2o's req->path_normalized is already percent-decoded (and its dot
 * segments resolved); matching on it and decoding again read "y%2531" as
 * "y1". The pipeline therefore hands this file req->path up to the query,
 * and each parameter is decoded exactly once, here.
 */
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "http.h"
#include "jbuf.h"
#include "path.h"
#include "stream.h"

err_t gw_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    err_t rc = OK;
    if (cap == 0)
        return ERR_TOOBIG;
    for (size_t i = 0; i < n && rc == OK; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hex_value(s[i + 1])) < 0 || (lo = hex_value(s[i + 2])) < 0) {
                rc = ERR_INVAL;
                break;
            }
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0')
            rc = ERR_INVAL;
        else if (o + 1 >= cap)
            rc = ERR_TOOBIG;
        else
            out[o++] = ch;
    }
    out[rc == OK ? o : 0] = '\0'; /* an unusable value is left empty */
    return rc;
}

static bool gw_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = jbuf_utf8_len((const unsigned char *)s + i, n - i)))
            return false;
    return true;
}

const char *gw_id_problem(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0)
        return "must not be empty";
    if (!gw_utf8_valid(s, n))
        return "must be UTF-8";
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return "must not be \".\" or \"..\"";
    for (size_t i = 0; i < n; i++) {
        /* U+0080-U+009F are C2 80-C2 9F; a C2 is never a continuation byte */
        if (u[i] < 0x20 || u[i] == 0x7f || (u[i] == 0xc2 && i + 1 < n && u[i + 1] < 0xa0))
            return "must not contain control characters";
        if (u[i] == '/')
            return "must not contain \"/\"";
        if (u[i] == '%')
            return "must not contain \"%\"";
    }
    return NULL;
}

bool gw_route_match(const char *pattern, const char *path, size_t n, struct gw_params *params)
{
    const char *p = pattern, *s = path, *end = path + n;
    memset(params, 0, sizeof(*params));
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
            const char *name = NULL;
            if (plen == 8 && memcmp(p, ":session", 8) == 0) {
                dst = params->session;
                cap = sizeof(params->session);
                name = "session";
            } else if (plen == 3 && memcmp(p, ":io", 3) == 0) {
                dst = params->io;
                cap = sizeof(params->io);
                name = "io";
            } else if (plen == 8 && memcmp(p, ":channel", 8) == 0) {
                dst = params->channel;
                cap = sizeof(params->channel);
                name = "channel";
            } else if (plen == 4 && memcmp(p, ":run", 4) == 0) {
                dst = params->run;
                cap = sizeof(params->run);
                name = "run";
            } else if (plen == 10 && memcmp(p, ":waitpoint", 10) == 0) {
                dst = params->waitpoint;
                cap = sizeof(params->waitpoint);
                name = "waitpoint";
            } else if (plen == 5 && memcmp(p, ":hash", 5) == 0) {
                dst = params->hash;
                cap = sizeof(params->hash);
                name = "hash";
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
                name = "stream";
            }
            if (!dst || slen == 0)
                return false;
            err_t rc = gw_pct_decode(s, slen, dst, cap);
            if (rc != OK && !params->bad) { /* the shape matched; the value is unusable */
                params->bad = name;
                params->bad_rc = rc;
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

/* One id parameter: decoded, within max bytes, and by the id rule (path.h). */
static void gw_check_id(json_t *issues, const struct gw_params *p, const char *name, const char *v,
                        size_t max, const char *what)
{
    char msg[128];
    const char *why = NULL;
    size_t n = strlen(v);
    if (p->bad && strcmp(p->bad, name) == 0)
        why = p->bad_rc == ERR_TOOBIG ? "too long" : "bad percent-encoding";
    else if (n > max)
        why = "too long";
    else
        why = gw_id_problem(v, n);
    if (!why)
        return;
    snprintf(msg, sizeof(msg), "%s: %s", what, why);
    json_array_append_new(issues, gw_issue(name, msg));
}

bool gw_params_valid(const struct gw_route *r, const struct gw_params *p, json_t **details)
{
    json_t *issues = json_array();
    if (strstr(r->pattern, ":session"))
        gw_check_id(issues, p, "session", p->session, 512, "Invalid session id");
    if (strstr(r->pattern, ":io") && strcmp(p->io, "in") != 0 && strcmp(p->io, "out") != 0) {
        /* what was received is echoed only when it is text */
        const char *got = gw_utf8_valid(p->io, strlen(p->io)) ? p->io : "";
        char msg[96];
        snprintf(msg, sizeof(msg), "Invalid enum value. Expected 'in' | 'out', received '%s'", got);
        json_t *i =
            json_pack("{s:s,s:s,s:[s],s:[s,s],s:s}", "code", "invalid_enum_value", "message", msg,
                      "path", "io", "options", "in", "out", "received", got);
        json_array_append_new(issues, i);
    }
    if (strstr(r->pattern, ":channel") && !stream_channel_valid(p->channel))
        json_array_append_new(issues,
                              gw_issue("channel", "Invalid channel name: use 1-128 characters "
                                                  "from [A-Za-z0-9._-]"));
    if (strstr(r->pattern, ":run"))
        gw_check_id(issues, p, "run", p->run, 256, "Invalid run id");
    if (strstr(r->pattern, ":waitpoint"))
        gw_check_id(issues, p, "waitpoint", p->waitpoint, sizeof(p->waitpoint) - 1,
                    "Invalid waitpoint id");
    if (json_array_size(issues) == 0) {
        json_decref(issues);
        return true;
    }
    *details = issues;
    return false;
}
