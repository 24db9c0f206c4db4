/*
 * path_fuzz.c - libFuzzer target for the request path (gateway/path.c): gw_pct_decode,
 * gw_id_problem, and gw_route_match + gw_params_valid over the real route table, as the
 * pipeline runs them on the raw path before the query.
 *
 * Feeds: the whole input as a raw path; its first byte also picks a small output capacity.
 * Checks: gw_pct_decode agrees byte for byte (result and error) with a reference decoder, and
 * its output percent-encoded again decodes to itself; gw_id_problem agrees with a reference
 * of the rule in path.h, and an id it accepts comes back unchanged through encodeURIComponent
 * and the session route (the promise the rule exists for); for every route the path matches,
 * a value that did not decode is left empty and named, every decoded value re-encoded into
 * the pattern matches again with the same values, and gw_params_valid accepts only ids that
 * follow the rule.
 */
#include <jansson.h>

#include "fuzz.h"
#include "http.h"
#include "jbuf.h"
#include "path.h"

static int ref_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* path.h's gw_pct_decode, written the obvious way. */
static err_t ref_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3 || ref_hex((unsigned char)s[i + 1]) < 0 ||
                ref_hex((unsigned char)s[i + 2]) < 0)
                return ERR_INVAL;
            c = (unsigned char)(ref_hex((unsigned char)s[i + 1]) * 16 +
                                ref_hex((unsigned char)s[i + 2]));
            i += 2;
        }
        if (c == 0)
            return ERR_INVAL;
        if (o + 1 >= cap)
            return ERR_TOOBIG;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return OK;
}

/* path.h's id rule, in the order it states it (the first rule broken is the one reported). */
static const char *ref_id_problem(const unsigned char *s, size_t n)
{
    if (n == 0)
        return "must not be empty";
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = jbuf_utf8_len(s + i, n - i)))
            return "must be UTF-8";
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return "must not be \".\" or \"..\"";
    for (size_t i = 0; i < n; i++) {
        bool c1 = s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f;
        if (s[i] < 0x20 || s[i] == 0x7f || c1)
            return "must not contain control characters";
        if (s[i] == '/')
            return "must not contain \"/\"";
        if (s[i] == '%')
            return "must not contain \"%\"";
    }
    return NULL;
}

static bool same_problem(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void check_decode(const char *s, size_t n, size_t cap)
{
    char out[GW_PARAM_MAX], ref[GW_PARAM_MAX], enc[3 * GW_PARAM_MAX + 1], back[GW_PARAM_MAX];
    FUZZ_CHECK(cap <= sizeof(out));
    err_t rc = gw_pct_decode(s, n, out, cap);
    err_t rrc = ref_pct_decode(s, n, ref, cap);
    FUZZ_CHECK(rc == rrc);
    if (rc != OK) {
        FUZZ_CHECK(out[0] == '\0'); /* an unusable value is left empty */
        return;
    }
    size_t len = strlen(out);
    FUZZ_CHECK(len < cap && strcmp(out, ref) == 0);
    /* everything escaped, then decoded once: the same bytes */
    for (size_t i = 0; i < len; i++)
        snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)out[i]);
    FUZZ_CHECK(gw_pct_decode(enc, 3 * len, back, sizeof(back)) == OK);
    FUZZ_CHECK(strcmp(back, out) == 0);
}

/* The param of pattern segment name (":session" ...) in p, or NULL when it has none. */
static const char *param_of(const struct gw_params *p, const char *seg, size_t len)
{
    if (len == 8 && memcmp(seg, ":session", 8) == 0)
        return p->session;
    if (len == 7 && memcmp(seg, ":stream", 7) == 0)
        return p->session;
    if (len == 3 && memcmp(seg, ":io", 3) == 0)
        return p->io;
    if (len == 4 && memcmp(seg, ":run", 4) == 0)
        return p->run;
    if (len == 10 && memcmp(seg, ":waitpoint", 10) == 0)
        return p->waitpoint;
    if (len == 5 && memcmp(seg, ":hash", 5) == 0)
        return p->hash;
    return NULL;
}

/* The path the pattern gives with p's values encodeURIComponent'ed; its length, or 0. */
static size_t rebuild(const char *pattern, const struct gw_params *p, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *s = pattern; *s;) {
        const char *e = strchr(s + 1, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s); /* "/segment" */
        const char *v = param_of(p, s + 1, len - 1);
        size_t need = v ? 1 + 3 * strlen(v) : len;
        if (o + need + 1 > cap)
            return 0;
        if (v) {
            out[o++] = '/';
            o += fuzz_uri_encode(v, strlen(v), out + o);
        } else {
            memcpy(out + o, s, len);
            o += len;
        }
        s += len;
    }
    out[o] = '\0';
    return o;
}

static bool same_params(const struct gw_params *a, const struct gw_params *b)
{
    return strcmp(a->session, b->session) == 0 && strcmp(a->io, b->io) == 0 &&
           strcmp(a->run, b->run) == 0 && strcmp(a->waitpoint, b->waitpoint) == 0 &&
           strcmp(a->hash, b->hash) == 0 && a->bad == NULL && b->bad == NULL;
}

static void check_routes(const char *path, size_t n)
{
    char again[8 * GW_PARAM_MAX];
    for (size_t i = 0; i < gw_nroutes; i++) {
        const struct gw_route *r = &gw_routes[i];
        struct gw_params p, q;
        if (!gw_route_match(r->pattern, path, n, &p))
            continue;
        if (p.bad) {
            /* named, why, and left empty */
            FUZZ_CHECK(p.bad_rc == ERR_INVAL || p.bad_rc == ERR_TOOBIG);
            const char *v = strcmp(p.bad, "session") == 0 || strcmp(p.bad, "stream") == 0
                                ? p.session
                            : strcmp(p.bad, "io") == 0        ? p.io
                            : strcmp(p.bad, "run") == 0       ? p.run
                            : strcmp(p.bad, "waitpoint") == 0 ? p.waitpoint
                                                              : p.hash;
            FUZZ_CHECK(v[0] == '\0');
        } else {
            size_t m = rebuild(r->pattern, &p, again, sizeof(again));
            if (m > 0) {
                FUZZ_CHECK(gw_route_match(r->pattern, again, m, &q));
                FUZZ_CHECK(same_params(&p, &q));
            }
        }
        json_t *details = NULL;
        if (gw_params_valid(r, &p, &details)) {
            FUZZ_CHECK(details == NULL);
            FUZZ_CHECK(!strstr(r->pattern, ":session") ||
                       ref_id_problem((const unsigned char *)p.session, strlen(p.session)) == NULL);
            FUZZ_CHECK(!strstr(r->pattern, ":run") ||
                       ref_id_problem((const unsigned char *)p.run, strlen(p.run)) == NULL);
            FUZZ_CHECK(!strstr(r->pattern, ":io") || strcmp(p.io, "in") == 0 ||
                       strcmp(p.io, "out") == 0);
        } else {
            FUZZ_CHECK(json_is_array(details) && json_array_size(details) > 0);
            json_decref(details);
        }
    }
}

/* An id the rule accepts survives encodeURIComponent and the session route. */
static void check_id_round_trip(const char *id, size_t n)
{
    static const char prefix[] = "/api/v1/sessions/";
    char url[sizeof(prefix) + 3 * GW_PARAM_MAX];
    struct gw_params p;
    if (n > 512)
        return; /* the session route's own limit */
    memcpy(url, prefix, sizeof(prefix) - 1);
    size_t m = sizeof(prefix) - 1 + fuzz_uri_encode(id, n, url + sizeof(prefix) - 1);
    FUZZ_CHECK(gw_route_match("/api/v1/sessions/:session", url, m, &p));
    FUZZ_CHECK(p.bad == NULL && strlen(p.session) == n && memcmp(p.session, id, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    size_t caps[] = {1, 2, 8, 64, GW_PARAM_MAX};

    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        check_decode(s, size, caps[i]);

    const char *why = gw_id_problem(s, size);
    FUZZ_CHECK(same_problem(why, ref_id_problem(data, size)));
    if (!why)
        check_id_round_trip(s, size);

    check_routes(s, size);
    return 0;
}
