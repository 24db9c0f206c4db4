/*
 * headers_fuzz.c - libFuzzer target for what the gateway reads itself out of request headers
 * and query strings: the handlers' parsers, reached by including their files (the unit
 * tests' way): Last-Event-ID (gw_last_event_start, gw_js_number in h_realtime.c),
 * Timeout-Seconds and the integer query values (gw_parse_u64), the three query-string
 * readers (gw_query in h_streams.c, gw_wp_query in h_waitpoint_tokens.c, gw_list_param in
 * h_sessions_list.c), the sessions list's duration, cursor and comma lists, the waitpoints'
 * durations and ISO dates (timeout, wait.until), expiresAt (h_sessions_validate.c),
 * traceparent (bus_trace_from_traceparent) and Content-Type: application/protobuf
 * (gw_is_protobuf).
 *
 * Feeds: byte 0 picks the parser, the rest is the header value or query string.
 * Checks: each agrees with a reference written here from its comment or the contract:
 * integers with strtoull, Number() with a grammar check and strtod, the query readers with
 * their documented decoding and precedence (gw_query: the last value wins, an unusable one is
 * ""; gw_wp_query: the first wins, cut at the buffer; gw_list_param: the first wins, an
 * unusable one is absent), durations with exact 128-bit arithmetic and the 10-year cap, ISO
 * dates with a strict reader and timegm; parsed values are in range (no NaN reaches an
 * integer: UBSan would stop it), split lists hold no empty or comma part.
 */
#include "../../gateway/h_realtime.c"
#include "../../gateway/h_records.c"
#include "../../gateway/h_run_suspend.c"
#include "../../gateway/h_s2.c"
#include "../../gateway/h_sessions.c"
#include "../../gateway/h_sessions_list.c"
#include "../../gateway/h_sessions_validate.c"
#include "../../gateway/h_streams.c"
#include "../../gateway/h_waitpoint_tokens.c"
#include "../../gateway/h_waitpoints.c"
#include "../../gateway/query.c"

#include "fuzz.h"

/* ---- a request that is only a pool, a path and headers ---- */

static void req_init(h2o_req_t *req, const char *query, size_t qn)
{
    memset(req, 0, sizeof(*req));
    h2o_mem_init_pool(&req->pool);
    char *p = h2o_mem_alloc_pool(&req->pool, qn + 3);
    memcpy(p, "/x?", 3);
    if (qn)
        memcpy(p + 3, query, qn);
    req->path = h2o_iovec_init(p, qn + 3);
    req->query_at = 2;
}

static void req_header(h2o_req_t *req, const char *name, const char *v, size_t n)
{
    char *copy = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
    if (n)
        memcpy(copy, v, n);
    h2o_add_header_by_str(&req->pool, &req->headers, name, strlen(name), 1, NULL, copy, n);
}

/* ---- references ---- */

static int ref_hex(unsigned char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One query value decoded: '+' is a space, %XX a byte (a '%' without two hex digits stays). */
static size_t ref_form_decode(const char *v, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '%' && n - i >= 3 && ref_hex((unsigned char)v[i + 1]) >= 0 &&
            ref_hex((unsigned char)v[i + 2]) >= 0) {
            out[o++] =
                (char)(ref_hex((unsigned char)v[i + 1]) * 16 + ref_hex((unsigned char)v[i + 2]));
            i += 2;
        } else {
            out[o++] = v[i] == '+' ? ' ' : v[i];
        }
    }
    return o;
}

/* The query's pairs: key and value spans ("k" alone has an empty value, has_eq false). */
struct qpair {
    const char *k, *v;
    size_t kn, vn;
    bool has_eq;
};

static size_t ref_pairs(const char *q, size_t n, struct qpair *pairs, size_t max)
{
    size_t np = 0, i = 0;
    while (i < n && np < max) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t e = amp ? (size_t)(amp - q) : n;
        const char *eq = memchr(q + i, '=', e - i);
        struct qpair *p = &pairs[np++];
        p->k = q + i;
        p->kn = eq ? (size_t)(eq - (q + i)) : e - i;
        p->has_eq = eq != NULL;
        p->v = eq ? eq + 1 : q + e;
        p->vn = eq ? e - (size_t)(eq + 1 - q) : 0;
        i = e + 1;
    }
    return np;
}

/* StrDecimalLiteral of ECMA-262 without sign '-' (the cut) and without Infinity; or 0x/0o/0b. */
static bool ref_js_number(const char *s, size_t n, double *out)
{
    char buf[128];
    while (n && strchr(" \t\n\v\f\r", *s) && *s)
        s++, n--;
    while (n && strchr(" \t\n\v\f\r", s[n - 1]) && s[n - 1])
        n--;
    if (n == 0 || n >= 64)
        return false;
    if (n > 2 && s[0] == '0' && s[1] && strchr("xXoObB", s[1])) {
        int base = (s[1] | 0x20) == 'x' ? 16 : (s[1] | 0x20) == 'o' ? 8 : 2;
        double v = 0;
        for (size_t i = 2; i < n; i++) {
            int d = ref_hex((unsigned char)s[i]);
            if (d < 0 || d >= base)
                return false;
            v = v * base + d;
        }
        *out = v;
        return true;
    }
    size_t i = 0, digits = 0, edigits = 0;
    if (s[i] == '+')
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, edigits++;
        if (edigits == 0)
            return false;
    }
    if (i != n)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    *out = strtod(buf, &end);
    FUZZ_CHECK(end == buf + n);
    return true;
}

/* "<n><unit>..." with units w d h m s in that order, each n 1-11 digits; exact, then capped. */
static bool ref_wp_duration(const char *s, uint64_t *ms)
{
    static const char units[] = "wdhms";
    static const unsigned __int128 mult[] = {604800000, 86400000, 3600000, 60000, 1000};
    unsigned __int128 total = 0;
    int next = 0;
    if (!*s)
        return false;
    while (*s) {
        unsigned __int128 v = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (unsigned)(*s++ - '0');
            if (++digits > 11)
                return false;
        }
        const char *at = *s ? strchr(units + next, *s) : NULL;
        if (digits == 0 || !at)
            return false;
        total += v * mult[at - units];
        next = (int)(at - units) + 1;
        s++;
    }
    if (total > (unsigned __int128)10 * 365 * 86400000)
        return false;
    *ms = (uint64_t)total;
    return true;
}

static bool digits_at(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* YYYY-MM-DD[(T| )HH:MM[:SS[.f+]][Z|+00:00]], strictly those characters. */
static bool ref_wp_iso(const char *s, uint64_t *ms)
{
    size_t n = strlen(s);
    if (n < 10 || !digits_at(s, 4) || s[4] != '-' || !digits_at(s + 5, 2) || s[7] != '-' ||
        !digits_at(s + 8, 2))
        return false;
    int Y = atoi(s), M = (s[5] - '0') * 10 + s[6] - '0', D = (s[8] - '0') * 10 + s[9] - '0';
    int h = 0, m = 0, sec = 0;
    unsigned frac = 0;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        if (strlen(p) < 6 || !digits_at(p + 1, 2) || p[3] != ':' || !digits_at(p + 4, 2))
            return false;
        h = (p[1] - '0') * 10 + p[2] - '0';
        m = (p[4] - '0') * 10 + p[5] - '0';
        p += 6;
        if (*p == ':') {
            if (!digits_at(p + 1, 2))
                return false;
            sec = (p[1] - '0') * 10 + p[2] - '0';
            p += 3;
            if (*p == '.') {
                unsigned fd = 0;
                for (p++; *p >= '0' && *p <= '9'; p++)
                    if (fd++ < 3)
                        frac = frac * 10 + (unsigned)(*p - '0');
                if (fd == 0)
                    return false;
                for (; fd < 3; fd++)
                    frac *= 10;
            }
        }
        if (*p == 'Z')
            p++;
        else if (strcmp(p, "+00:00") == 0)
            p += 6;
    }
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return false;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *ms = (uint64_t)t * 1000 + frac;
    return true;
}

/* ---- the checks ---- */

static void check_u64(const char *s, size_t n)
{
    uint64_t v = 12345, want = 0;
    bool ok = gw_parse_u64(s, n, &v);
    bool ref = n >= 1 && n <= 19 && digits_at(s, n);
    FUZZ_CHECK(ok == ref);
    if (ok) {
        char buf[24];
        memcpy(buf, s, n);
        buf[n] = '\0';
        want = strtoull(buf, NULL, 10);
        FUZZ_CHECK(v == want);
    }
}

static void check_js_number(const char *s, size_t n)
{
    double a = -1, b = -1;
    bool ok = gw_js_number(s, n, &a);
    FUZZ_CHECK(!ok || a >= 0); /* Infinity ("1e999") too: gw_last_event_start drops it */
    if (memchr(s, '-', n))
        return; /* its texts have none: the caller cuts at the first '-' */
    bool ref = ref_js_number(s, n, &b);
    FUZZ_CHECK(ok == ref);
    FUZZ_CHECK(!ok || a == b);
}

static void check_last_event(const char *s, size_t n)
{
    h2o_req_t req;
    double v;
    req_init(&req, "", 0);
    req_header(&req, "last-event-id", s, n);
    uint64_t got = gw_last_event_start(&req);
    const char *dash = memchr(s, '-', n);
    size_t cut = dash ? (size_t)(dash - s) : n;
    uint64_t want = 0;
    if (ref_js_number(s, cut, &v) && v >= 0 && !isinf(v))
        want = v >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)v + 1;
    FUZZ_CHECK(got == want);
    h2o_mem_clear_pool(&req.pool);
}

static void check_queries(const char *q, size_t n)
{
    static const char *const names[] = {"afterEventId", "seq_num", "count", "page[size]",
                                        "filter[tags]", "a",       ""};
    struct qpair pairs[512];
    size_t np = ref_pairs(q, n, pairs, 512);
    char got[64], want[4096];
    h2o_req_t req;
    if (np == 512)
        return; /* more pairs than the reference keeps */
    req_init(&req, q, n);
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        const char *name = names[k];
        size_t nl = strlen(name);

        /* gw_query: names as written; the last one wins; "" when it is unusable */
        bool found = false;
        size_t wn = 0;
        for (size_t i = 0; i < np; i++)
            if (pairs[i].kn == nl && memcmp(pairs[i].k, name, nl) == 0) {
                found = true;
                wn = ref_form_decode(pairs[i].v, pairs[i].vn, want);
                if (memchr(want, '\0', wn) || wn + 1 > sizeof(got))
                    wn = 0;
            }
        want[wn] = '\0';
        memset(got, 'z', sizeof(got));
        FUZZ_CHECK(gw_query(&req, name, got, sizeof(got)) == found);
        FUZZ_CHECK(!found || strcmp(got, want) == 0);

        /* gw_wp_query: "name=" as written, the first one wins, cut to the buffer */
        found = false;
        for (size_t i = 0; i < np && !found; i++)
            if (pairs[i].has_eq && pairs[i].kn == nl && memcmp(pairs[i].k, name, nl) == 0) {
                found = true;
                wn = ref_form_decode(pairs[i].v, pairs[i].vn, want);
            }
        if (found && wn > sizeof(got) - 1)
            wn = sizeof(got) - 1;
        FUZZ_CHECK(gw_wp_query(&req, name, got, sizeof(got)) == found);
        FUZZ_CHECK(!found || (memcmp(got, want, wn) == 0 && got[wn] == '\0'));

        /* gw_list_param: keys decoded too, the first one wins, absent when unusable */
        found = false;
        bool usable = false;
        for (size_t i = 0; i < np && !found; i++) {
            char key[4096];
            size_t kn = ref_form_decode(pairs[i].k, pairs[i].kn, key);
            /* the key is compared as a C string: "a%00b" is the key "a" */
            if (kn >= 64 || strnlen(key, kn) != nl || memcmp(key, name, nl) != 0)
                continue;
            found = true;
            wn = ref_form_decode(pairs[i].v, pairs[i].vn, want);
            usable = !memchr(want, '\0', wn) && wn + 1 <= sizeof(got);
        }
        want[usable ? wn : 0] = '\0';
        FUZZ_CHECK(gw_list_param(&req, name, got, sizeof(got)) == (found && usable));
        FUZZ_CHECK(!(found && usable) || strcmp(got, want) == 0);
    }
    h2o_mem_clear_pool(&req.pool);
}

static void check_durations(const char *s)
{
    uint64_t a = 0, b = 0;
    bool ok = gw_wp_duration(s, &a), ref = ref_wp_duration(s, &b);
    FUZZ_CHECK(ok == ref);
    FUZZ_CHECK(!ok || a == b);

    ok = gw_wp_iso(s, &a);
    ref = ref_wp_iso(s, &b);
    FUZZ_CHECK(ok == ref);
    FUZZ_CHECK(!ok || a == b);

    if (gw_list_duration(s, &a))
        FUZZ_CHECK(a <= 1000000000000000ull);

    json_t *v = json_string(s);
    if (v) { /* expiresAt as a string: a date from 1970 on, in ms */
        if (gw_expires_at(v, &a))
            /* at most the end of year 9999, moved by an offset of at most 99:99 */
            FUZZ_CHECK(a < 253402300800000ull + 5 * 86400000ull);
        json_decref(v);
    }
}

static void check_list_values(char *s)
{
    char out[96], copy[4096];
    size_t n = strlen(s);
    bool ok = gw_list_cursor(s, out, sizeof(out));
    const char *v = strncmp(s, "session_", 8) == 0 ? s + 8 : s;
    bool ref = v[0] != '\0' && strlen(v) < sizeof(out);
    for (const char *c = v; ref && *c; c++)
        ref = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z');
    FUZZ_CHECK(ok == ref);
    FUZZ_CHECK(!ok || strcmp(out, v) == 0);

    char *parts[GW_LIST_MAXVALS];
    if (n >= sizeof(copy))
        return;
    memcpy(copy, s, n + 1);
    unsigned np = gw_list_split(copy, parts, GW_LIST_MAXVALS);
    FUZZ_CHECK(np <= GW_LIST_MAXVALS);
    size_t total = 0, nonempty = 0;
    for (unsigned i = 0; i < np; i++) {
        FUZZ_CHECK(parts[i][0] != '\0' && !strchr(parts[i], ','));
        total += strlen(parts[i]);
    }
    /* below the cap every non-empty part comes back, in order */
    for (const char *p = s; *p;) {
        size_t len = strcspn(p, ",");
        nonempty += len > 0;
        p += len + (p[len] == ',');
    }
    if (nonempty <= GW_LIST_MAXVALS) {
        FUZZ_CHECK(np == nonempty);
        size_t commas = 0;
        for (const char *p = s; *p; p++)
            commas += *p == ',';
        FUZZ_CHECK(total == n - commas);
    }
}

static void check_misc(const char *s, size_t n)
{
    struct bus_trace t;
    memset(&t, 0, sizeof(t));
    if (bus_trace_from_traceparent(&t, s, n)) {
        FUZZ_CHECK(n >= 55 && memcmp(t.trace_id, s + 3, 32) == 0 && t.trace_id[32] == '\0');
        FUZZ_CHECK(env_trace_valid(t.trace_id, 32));
    }
    h2o_req_t req;
    req_init(&req, "", 0);
    req_header(&req, "content-type", s, n);
    bool pb = gw_is_protobuf(&req);
    FUZZ_CHECK(pb == (n >= 20 && strncasecmp(s, "application/protobuf", 20) == 0));
    h2o_mem_clear_pool(&req.pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t which = fuzz_u8(&in);
    const char *s = (const char *)in.p;
    char *z = fuzz_strdup(in);
    switch (which % 7) {
    case 0:
        check_u64(s, in.n);
        break;
    case 1:
        check_js_number(s, in.n);
        break;
    case 2:
        check_last_event(s, in.n);
        break;
    case 3:
        check_queries(s, in.n);
        break;
    case 4:
        check_durations(z);
        break;
    case 5:
        check_list_values(z);
        break;
    default:
        check_misc(s, in.n);
        break;
    }
    free(z);
    return 0;
}
