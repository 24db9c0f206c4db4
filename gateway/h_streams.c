/*
 * h_streams.c - the realtime routes of a session's channels (the contract's
 * §5.7-§5.9, §6, §7 and the /records row of §15), and the S2-compatible
 * records endpoint agents write through.
 *
 * Every route resolves the URL's session first (session.get). Where the
 * contract makes the row optional (subscribe, records), a URL value that is
 * not a friendly id and has no row addresses the stream of that externalId
 * (it may be empty). Streams are named by (environment, addressing key, io)
 * and served by the stream-broker (proto/stream.h); SSE responses are feeds
 * (feed.h).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "clock.h"
#include "feed.h"
#include "gw.h"
#include "handlers.h"
#include "ids.h"
#include "jbuf.h"
#include "jscan.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "path.h"
#include "s2proto.h"
#include "sessref.h"

/* S2 clients refuse a basin name outside 8-48 of [a-z0-9-] before sending anything */
#define GW_S2_BASIN "tether-sessions"
#define GW_S2_TOKEN_TTL_S 86400
#define GW_S2_TAIL_OFFSET_MAX 16 /* stream.peek's bound */
#define GW_SSE_WAIT_DEFAULT_S 60
/* One /records answer stops after whichever comes first; the caller continues with the last
 * seqNum as afterEventId. The byte bound keeps a stream of large records from costing the
 * gateway gigabytes for one request. */
#define GW_RECORDS_MAX 10000
#define GW_RECORDS_BYTES_MAX (8u << 20)

/* What a route learned about its stream between bus calls (c->state). */
struct gw_stream_state {
    struct gw_feed_opts feed;
    char part_id[STREAM_PART_ID_MAX + 1];
    struct jbuf acc;   /* /records: the answer so far */
    struct jbuf rec;   /* append: the record's envelope, built before the session lookup */
    unsigned nrecs;    /* /records: records so far */
    unsigned limit;    /* S2 tail read: records to answer of those peeked (0: all) */
    uint64_t from;
    bool s2;           /* the S2 endpoint's JSON read */
    bool proto;        /* the S2 append came (and is answered) as protobuf */
};

static void gw_st_free(void *p)
{
    struct gw_stream_state *st = p;
    jbuf_free(&st->acc);
    jbuf_free(&st->rec);
    free(st);
}

static struct gw_stream_state *gw_st(struct gw_call *c)
{
    if (!c->state) {
        c->state = xcalloc(1, sizeof(struct gw_stream_state));
        c->state_free = gw_st_free;
    }
    return c->state;
}

static bool gw_is_friendly_session(const char *v)
{
    return strncmp(v, "session_", 8) == 0;
}

/* The addressing key: the row's externalId, else its friendly id; without a row, the URL value. */
static void gw_addressing_key(struct gw_call *c, struct slice s, char *out, size_t cap)
{
    if (s.n && gw_sess_str(s, "external_id", out, cap) && out[0])
        return;
    if (s.n && gw_sess_str(s, "friendly_id", out, cap) && out[0])
        return;
    snprintf(out, cap, "%s", c->params.session);
}

static void gw_stream_name(struct gw_call *c, struct slice s)
{
    struct gw_stream_state *st = gw_st(c);
    snprintf(st->feed.env, sizeof(st->feed.env), "%s", c->auth.env.id);
    gw_addressing_key(c, s, st->feed.key, sizeof(st->feed.key));
    snprintf(st->feed.io, sizeof(st->feed.io), "%s", c->params.io);
}

static const char *gw_header(h2o_req_t *req, const char *name, size_t *n)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    *n = req->headers.entries[i].value.len;
    return req->headers.entries[i].value.base;
}

/*
 * The value of ?name= in the request's query, '+' and %XX decoded: the last one when the name
 * repeats (the contract's §1.1 reads a query as a flat map, the last value winning), false when
 * it is absent. A value that does not fit in out, or holds %00, comes back as "" (which no
 * caller accepts) rather than cut short.
 */
static bool gw_query(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    bool found = false;
    if (req->query_at == SIZE_MAX || cap == 0)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) >= nl && memcmp(q, name, nl) == 0 && (q + nl == e || q[nl] == '=')) {
            const char *v = q + nl + (q + nl < e ? 1 : 0);
            size_t o = 0;
            bool bad = false;
            for (; v < e && !bad; v++) {
                char ch = *v == '+' ? ' ' : *v;
                if (*v == '%' && e - v >= 3 && isxdigit((unsigned char)v[1]) &&
                    isxdigit((unsigned char)v[2])) {
                    char hex[3] = {v[1], v[2], 0};
                    ch = (char)strtol(hex, NULL, 16);
                    v += 2;
                }
                if (ch == '\0' || o + 1 >= cap)
                    bad = true;
                else
                    out[o++] = ch;
            }
            out[bad ? 0 : o] = '\0';
            found = true;
        }
        q = e + 1;
    }
    return found;
}

/* A plain non-negative decimal (what the contract's ^\d+$ allows); false otherwise. */
static bool gw_parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/*
 * The row of a route where the contract makes it optional (subscribe, records, PUT), then the
 * authorization of action on it: a friendly id without a row is 404 with not_found; an
 * externalId without one addresses its own (maybe empty) stream and leaves *s empty. False
 * when the call has been answered.
 */
static bool gw_stream_row(struct gw_call *c, err_t rc, const struct envelope *env, struct slice *s,
                          const char *action, const char *not_found)
{
    static const char *const rsuper[] = {"read:sessions", "read:all", "admin"};
    static const char *const wsuper[] = {"write:sessions", "write:all", "admin"};
    *s = SLICE_NULL;
    if (rc == ERR_NOTFOUND && gw_is_friendly_session(c->params.session)) {
        gw_respond_error(c, 404, not_found, GW_NO_RETRY);
        return false;
    }
    if (rc != OK && rc != ERR_NOTFOUND) {
        gw_respond_err(c, rc, "session.get");
        return false;
    }
    if (rc == OK && !gw_reply_session(env, s)) {
        gw_respond_err(c, ERR_PROTO, "session.get");
        return false;
    }
    return gw_session_authorize(c, *s, action, action[0] == 'r' ? rsuper : wsuper, true);
}

/*
 * `.out` is the agent's channel: besides the secret key only a run token
 * (which carries write:runs:<id>) of this very session may write it; a session
 * token a browser holds may not.
 */
static bool gw_out_writer_ok(struct gw_call *c, struct slice s)
{
    static const char *const none[] = {NULL};
    bool run_token = false;
    if (strcmp(c->params.io, "out") != 0 || c->auth.kind == GW_AUTH_SECRET)
        return true;
    for (unsigned i = 0; i < c->auth.nscopes; i++)
        if (strncmp(c->auth.scopes[i], "write:runs:", 11) == 0)
            run_token = true;
    if (!run_token) {
        gw_respond_forbidden(c, "writing a session's .out channel needs the secret key or a run "
                                "token of the session");
        return false;
    }
    return gw_session_authorize(c, s, "write", none, true);
}

/* ---- POST /realtime/v1/sessions/:session/:io/append ---- */

/* The contract's 409 for a closed (reason: NULL for none) or an expired session. */
static void gw_respond_closed(struct gw_call *c, bool closed, const char *reason)
{
    json_t *b = json_pack("{s:b,s:s,s:s}", "ok", 0, "error",
                          closed ? "Cannot append to a closed session"
                                 : "Cannot append to an expired session",
                          "code", "session_closed");
    json_object_set_new(b, "closedReason",
                        reason ? json_string(reason) : closed ? json_null() : json_string("expired"));
    gw_respond_json(c, 409, b, GW_NO_RETRY);
}

/* The broker refused an append to a sealed session: its message is the seal ("0" or "1<reason>"). */
static void gw_respond_sealed(struct gw_call *c, const struct envelope *env)
{
    char reason[STREAM_REASON_MAX + 1];
    const struct slice m = env ? env->err_msg : SLICE_NULL;
    bool has = m.n >= 1 && m.p[0] == '1';
    if (has)
        snprintf(reason, sizeof(reason), "%.*s", (int)(m.n - 1), m.p + 1);
    gw_respond_closed(c, true, has ? reason : NULL);
}

static void gw_append_send(struct gw_call *c);

static void gw_append_on_appended(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct mp_reader v;
    uint32_t n;
    uint64_t seq;
    if (rc == ERR_TOOBIG) { /* the broker's own check of the same limit: the same answer */
        gw_respond_too_large(c);
        return;
    }
    if (rc == ERR_CLOSED && env) {
        gw_respond_sealed(c, env);
        return;
    }
    if (rc != OK) {
        gw_respond_err(c, rc, "stream.append");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "seqs", &v) != OK || mp_read_array(&v, &n) != OK ||
        n != 1 || mp_read_uint(&v, &seq) != OK) {
        gw_respond_err(c, ERR_PROTO, "stream.append");
        return;
    }
    gw_respond_json(c, 200, json_pack("{s:b,s:I}", "ok", 1, "seq", (json_int_t)seq), 0);
}

static void gw_append_on_ensure(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    (void)env;
    /* as upstream: a failed ensure is logged and the append goes on; the message waits on
     * .in for the next run (the next append, or the orphan sweep's continuation) */
    if (rc != OK)
        LOG_WARN("gw.ensure_failed", "run.ensure before an .in append failed: %s", err_str(rc));
    gw_append_send(c);
}

static void gw_append_send(struct gw_call *c)
{
    struct gw_stream_state *st = c->state;
    struct mp_writer w;
    struct jbuf env = st->rec;
    st->rec = (struct jbuf){0};
    mp_writer_init(&w);
    gw_stream_put_name(&w, &st->feed, 1);
    mp_put_str(&w, "records");
    mp_put_array(&w, 1);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "part_id", st->part_id);
    mp_put_str(&w, "headers");
    mp_put_array(&w, 0);
    mp_put_str(&w, "body");
    mp_put_bin(&w, env.p, env.n);
    jbuf_free(&env);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_APPEND, mp_writer_data(&w),
                         mp_writer_len(&w), gw_append_on_appended);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "stream.append");
}

static void gw_append_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s;
    char reason[512];
    static const char *const super[] = {"write:sessions", "write:all", "admin"};
    if (rc == ERR_NOTFOUND) {
        gw_respond_json(c, 404, json_pack("{s:b,s:s}", "ok", 0, "error", "Session not found"),
                        GW_NO_RETRY);
        return;
    }
    if (rc != OK || !gw_reply_session(env, &s)) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "session.get");
        return;
    }
    if (!gw_session_authorize(c, s, "write", super, true) || !gw_out_writer_ok(c, s))
        return;
    uint64_t closed = gw_sess_u64(s, "closed_at_ms"), expires = gw_sess_u64(s, "expires_at_ms");
    if (closed || (expires && expires < clock_wall_ms())) {
        bool has = closed && gw_sess_str(s, "closed_reason", reason, sizeof(reason));
        gw_respond_closed(c, closed != 0, has ? reason : NULL);
        return;
    }
    gw_stream_name(c, s);
    if (strcmp(c->params.io, "in") != 0) {
        gw_append_send(c);
        return;
    }
    /* a message on .in needs a live run to read it: continuation when the last one ended */
    rc = gw_run_ensure(c, s, "continuation", gw_append_on_ensure);
    if (rc != OK)
        gw_append_on_ensure(c, rc, NULL);
}

void gw_on_stream_append(struct gw_call *c)
{
    struct gw_stream_state *st = gw_st(c);
    size_t n;
    const char *pid = gw_header(c->req, "x-part-id", &n);
    if (pid && (n == 0 || n > STREAM_PART_ID_MAX || memchr(pid, '\0', n))) {
        gw_respond_json(c, 400, json_pack("{s:b,s:s}", "ok", 0, "error", "Invalid X-Part-Id"),
                        GW_NO_RETRY);
        return;
    }
    if (pid) {
        memcpy(st->part_id, pid, n);
        st->part_id[n] = '\0';
    } else {
        /* no part id: a fresh one, so the record has one and a retry is simply a new record */
        static const char abc[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        unsigned char r[21];
        if (random_bytes(r, sizeof(r)) != OK) {
            gw_respond_err(c, ERR_INTERNAL, "random part id");
            return;
        }
        for (size_t i = 0; i < sizeof(r); i++)
            st->part_id[i] = abc[r[i] % 62];
        st->part_id[sizeof(r)] = '\0';
    }
    /* the contract's envelope: the raw body as a string, and the part id; jbuf_bytes keeps
     * every byte (NUL as \u0000, a byte that is not UTF-8 as \udcXX), so data reads back as
     * the body that came */
    size_t bn = c->req->entity.base ? c->req->entity.len : 0;
    jbuf_puts(&st->rec, "{\"data\":");
    jbuf_bytes(&st->rec, bn ? c->req->entity.base : "", bn);
    jbuf_puts(&st->rec, ",\"id\":");
    jbuf_bytes(&st->rec, st->part_id, strlen(st->part_id));
    jbuf_put(&st->rec, "}", 1);
    if (st->rec.err != OK) {
        gw_respond_err(c, ERR_NOMEM, "append envelope");
        return;
    }
    /* the route's one limit (the route has no byte cap of its own): the record's metered size,
     * checked before anything is looked up */
    if (stream_metered_size(0, 0, st->rec.n) > STREAM_RECORD_MAX) {
        gw_respond_too_large(c);
        return;
    }
    err_t rc = gw_session_lookup_cached(c, gw_append_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- GET/HEAD /realtime/v1/sessions/:session/:io (SSE) ---- */

static bool gw_is_js_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/*
 * JavaScript's Number() of s[0..n) for the texts a cursor can be (no '-': the caller cut there):
 * ASCII white space around, a decimal with fraction and exponent ("1.5", "1e3", "+7"), or a
 * 0x / 0o / 0b integer ("0x10"). False for NaN and Infinity, and for an empty text, which
 * Number() reads as 0 (see gw_last_event_start).
 */
static bool gw_js_number(const char *s, size_t n, double *out)
{
    char buf[64];
    while (n && gw_is_js_space(*s))
        s++, n--;
    while (n && gw_is_js_space(s[n - 1]))
        n--;
    if (n == 0 || n >= sizeof(buf))
        return false; /* 63 characters hold every finite double Number() could mean here */
    if (n > 2 && s[0] == '0' && s[1] && strchr("xXoObB", s[1])) { /* strchr finds a NUL too */
        unsigned base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        double v = 0;
        for (size_t i = 2; i < n; i++) {
            int d = isdigit((unsigned char)s[i])    ? s[i] - '0'
                    : isxdigit((unsigned char)s[i]) ? tolower((unsigned char)s[i]) - 'a' + 10
                                                    : 99;
            if (d >= (int)base)
                return false;
            v = v * base + d;
        }
        *out = v;
        return true;
    }
    /* StrDecimalLiteral: [+] (digits [. digits*] | . digits) [(e|E) [+] digits] */
    size_t i = 0, digits = 0;
    if (s[i] == '+')
        i++;
    while (i < n && isdigit((unsigned char)s[i]))
        i++, digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && isdigit((unsigned char)s[i]); i++)
            digits++;
    if (digits == 0)
        return false; /* also "Infinity": not finite, so not a cursor */
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = 0;
        if (++i < n && s[i] == '+')
            i++;
        while (i < n && isdigit((unsigned char)s[i]))
            i++, e++;
        if (e == 0)
            return false;
    }
    if (i != n)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL); /* the grammar is checked: strtod's extras (hex, inf) cannot occur */
    return true;
}

/*
 * Where an SSE read resumes for Last-Event-ID, as the contract's §5.8 reads it: the text
 * before the first '-' through Number(); a finite value >= 0 resumes at value + 1 (a fraction
 * at the next whole seq), anything else starts at 0. Tether differs in one case: an empty text
 * (a "-1", or a blank header) starts at 0, where Number("") is 0 and would skip record 0.
 */
static uint64_t gw_last_event_start(h2o_req_t *req)
{
    size_t n;
    double v;
    const char *s = gw_header(req, "last-event-id", &n);
    if (!s)
        return 0;
    const char *dash = memchr(s, '-', n);
    if (dash)
        n = (size_t)(dash - s);
    if (!gw_js_number(s, n, &v) || !(v >= 0) || isinf(v))
        return 0;
    if (v >= 18446744073709551616.0) /* 2^64: past any tail, so the read starts at the tail */
        return UINT64_MAX;
    return (uint64_t)v + 1; /* below 2^64 a double is at most 2^64 - 2048: no overflow */
}

static bool gw_s2_format(struct gw_call *c, enum gw_rec_format *f);

/* Settled: the last non-command record of .out is a turn-complete control record. */
static bool gw_peek_settled(const struct envelope *env)
{
    struct mp_reader v, r;
    uint32_t n;
    struct slice recs[16];
    if (!env || mp_map_find(env->body.p, env->body.n, "records", &v) != OK ||
        mp_read_array(&v, &n) != OK || n > 16)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (mp_skip(&v, &recs[i]) != OK)
            return false;
    for (uint32_t i = n; i-- > 0;) {
        struct slice hn, hv, body = SLICE_NULL;
        uint32_t nh, two;
        bool command = false, turn_complete = false;
        if (mp_map_find(recs[i].p, recs[i].n, "headers", &r) == OK && mp_read_array(&r, &nh) == OK) {
            for (uint32_t h = 0; h < nh; h++) {
                if (mp_read_array(&r, &two) != OK || two != 2 || mp_read_str(&r, &hn) != OK ||
                    mp_read_str(&r, &hv) != OK)
                    return false;
                if (h == 0 && hn.n == 0)
                    command = true;
                if (slice_eq(hn, "trigger-control") && slice_eq(hv, "turn-complete"))
                    turn_complete = true;
            }
        }
        if (command)
            continue;
        if (turn_complete)
            return true;
        /* the legacy form: a data record whose chunk is {"type": "trigger:turn-complete"} */
        if (mp_map_find(recs[i].p, recs[i].n, "body", &r) != OK || mp_read_bin(&r, &body) != OK)
            return false;
        json_t *e = json_loadb(body.p, body.n, 0, NULL), *d = json_object_get(e, "data");
        json_t *parsed = json_is_string(d) ? json_loads(json_string_value(d), 0, NULL) : NULL;
        json_t *chunk = parsed ? parsed : d;
        bool legacy = json_is_object(chunk) &&
                      json_is_string(json_object_get(chunk, "type")) &&
                      strcmp(json_string_value(json_object_get(chunk, "type")),
                             "trigger:turn-complete") == 0;
        json_decref(parsed);
        json_decref(e);
        return legacy;
    }
    return false;
}

static void gw_sub_on_peek(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    if (rc == OK && gw_peek_settled(env)) {
        st->feed.drain = true;
        gw_add_header(c, "x-session-settled", "true");
    }
    gw_feed_start(c, &st->feed);
}

static void gw_sub_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct slice s;
    size_t n;
    if (!gw_stream_row(c, rc, env, &s, "read", "Not found"))
        return;
    if (h2o_memis(c->req->method.base, c->req->method.len, H2O_STRLIT("HEAD"))) {
        gw_add_header(c, "x-last-chunk-index", "0");
        gw_respond_json(c, 200, json_object(), 0);
        return;
    }
    /* the batches are S2's: S2-Format: base64 gives every record's bytes exactly */
    if (!gw_s2_format(c, &st->feed.format))
        return;
    gw_stream_name(c, s);
    const char *peek = gw_header(c->req, "x-peek-settled", &n);
    if (peek && n == 1 && peek[0] == '1' && strcmp(c->params.io, "out") == 0) {
        struct mp_writer w;
        mp_writer_init(&w);
        gw_stream_put_name(&w, &st->feed, 1);
        mp_put_kv_uint(&w, "count", 2);
        rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_PEEK, mp_writer_data(&w),
                         mp_writer_len(&w), gw_sub_on_peek);
        mp_writer_fini(&w);
        if (rc == OK)
            return;
        /* a failed peek is "not settled", as upstream */
    }
    gw_feed_start(c, &st->feed);
}

void gw_on_stream_subscribe(struct gw_call *c)
{
    struct gw_stream_state *st = gw_st(c);
    size_t n;
    uint64_t secs = GW_SSE_WAIT_DEFAULT_S;
    const char *ts = gw_header(c->req, "timeout-seconds", &n);
    if (ts) {
        if (!gw_parse_u64(ts, n, &secs)) {
            gw_respond_error(c, 400, "Invalid Timeout-Seconds header", GW_NO_RETRY);
            return;
        }
        if (secs < 1 || secs > 600) {
            gw_respond_error(c, 400, "Timeout-Seconds must be between 1 and 600", GW_NO_RETRY);
            return;
        }
    }
    st->feed.wait_ms = secs * 1000;
    st->feed.start = gw_last_event_start(c->req);
    err_t rc = gw_session_lookup_cached(c, gw_sub_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- GET /realtime/v1/sessions/:session/:io/records?afterEventId=N ---- */

static void gw_records_read(struct gw_call *c);

/*
 * One record as the /records answer shows it: the envelope unwrapped. A body that is a JSON
 * object with "data" gives that value and its "id" (a string, else "") copied as written, so
 * escapes such as \u0000 stay what they were; any other body is data as a string of its
 * bytes (jbuf_bytes: lossless). Header names and values likewise. Nothing a record holds makes
 * the answer fail.
 */
static void gw_records_put(struct gw_stream_state *st, struct slice rec)
{
    static const char *const envelope[] = {"data", "id"};
    struct mp_reader r, hr;
    struct slice body = SLICE_NULL, hn, hv, env[2];
    uint64_t seq = 0;
    uint32_t nh = 0, two, ok_headers = 0;
    bool control = false, have_headers = false;
    if (mp_map_find(rec.p, rec.n, "seq", &r) == OK)
        (void)mp_read_uint(&r, &seq);
    if (mp_map_find(rec.p, rec.n, "body", &r) == OK)
        (void)mp_read_bin(&r, &body);
    if (mp_map_find(rec.p, rec.n, "headers", &hr) == OK && mp_read_array(&hr, &nh) == OK) {
        have_headers = true;
        r = hr;
        for (uint32_t h = 0; h < nh; h++, ok_headers++) {
            if (mp_read_array(&r, &two) != OK || two != 2 || mp_read_str(&r, &hn) != OK ||
                mp_read_str(&r, &hv) != OK)
                break;
            if (h == 0 && hn.n == 0) /* a stream command record: not for readers */
                return;
            if (slice_eq(hn, "trigger-control"))
                control = true;
        }
    }
    struct jbuf *b = &st->acc;
    if (st->nrecs++)
        jbuf_put(b, ",", 1);
    jbuf_puts(b, "{\"data\":");
    if (!control && body.n && jscan_members(body.p, body.n, envelope, env, 2) == OK &&
        env[0].p) {
        jbuf_put(b, env[0].p, env[0].n);
        jbuf_puts(b, ",\"id\":");
        if (env[1].p && env[1].p[0] == '"')
            jbuf_put(b, env[1].p, env[1].n);
        else
            jbuf_puts(b, "\"\"");
    } else {
        if (!control && body.n)
            jbuf_bytes(b, body.p, body.n);
        else
            jbuf_puts(b, "\"\"");
        jbuf_puts(b, ",\"id\":\"\"");
    }
    jbuf_fmt(b, ",\"seqNum\":%" PRIu64, seq);
    if (have_headers && ok_headers > 0) {
        jbuf_puts(b, ",\"headers\":[");
        for (uint32_t h = 0; h < ok_headers; h++) {
            (void)mp_read_array(&hr, &two);
            (void)mp_read_str(&hr, &hn);
            (void)mp_read_str(&hr, &hv);
            jbuf_puts(b, h ? ",[" : "[");
            jbuf_bytes(b, hn.p, hn.n);
            jbuf_put(b, ",", 1);
            jbuf_bytes(b, hv.p, hv.n);
            jbuf_put(b, "]", 1);
        }
        jbuf_put(b, "]", 1);
    }
    jbuf_put(b, "}", 1);
}

static void gw_records_finish(struct gw_call *c)
{
    struct gw_stream_state *st = c->state;
    jbuf_puts(&st->acc, "]}");
    if (st->acc.err != OK) {
        jbuf_free(&st->acc);
        gw_respond_err(c, ERR_NOMEM, "records");
        return;
    }
    struct jbuf acc = st->acc; /* c->state goes with the call */
    st->acc = (struct jbuf){0};
    gw_respond_bytes(c, 200, GW_CT_JSON, acc.p, acc.n);
    jbuf_free(&acc);
}

static void gw_records_on_read(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct mp_reader v;
    uint32_t n = 0;
    uint64_t tail = 0, last = 0;
    if (rc != OK) {
        jbuf_free(&st->acc);
        gw_respond_err(c, rc, "stream.read");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "tail", &v) == OK)
        (void)mp_read_uint(&v, &tail);
    bool full = false;
    if (mp_map_find(env->body.p, env->body.n, "records", &v) == OK && mp_read_array(&v, &n) == OK) {
        for (uint32_t i = 0; i < n && !full; i++) {
            struct slice rec;
            struct mp_reader r;
            uint64_t seq = last;
            if (mp_skip(&v, &rec) != OK)
                break;
            if (mp_map_find(rec.p, rec.n, "seq", &r) == OK)
                (void)mp_read_uint(&r, &seq);
            /* the byte bound is on the answer as rendered (escapes included), with its closing
             * "]}": a record that would pass it is left for the caller's next request - unless
             * it is the answer's first, or a large record could never be read */
            size_t before = st->acc.n;
            unsigned had = st->nrecs;
            gw_records_put(st, rec);
            if (had > 0 && st->acc.n + 2 > GW_RECORDS_BYTES_MAX) {
                st->acc.n = before;
                if (st->acc.p)
                    st->acc.p[before] = '\0';
                st->nrecs = had;
                full = true;
                break;
            }
            last = seq;
            full = st->nrecs >= GW_RECORDS_MAX;
        }
    }
    if (!full && n > 0 && last + 1 < tail) {
        st->from = last + 1;
        gw_records_read(c);
        return;
    }
    gw_records_finish(c);
}

static void gw_records_read(struct gw_call *c)
{
    struct gw_stream_state *st = c->state;
    struct mp_writer w;
    mp_writer_init(&w);
    gw_stream_put_name(&w, &st->feed, 2);
    mp_put_kv_uint(&w, "from", st->from);
    mp_put_kv_uint(&w, "count", 1000);
    err_t rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_READ, mp_writer_data(&w),
                           mp_writer_len(&w), gw_records_on_read);
    mp_writer_fini(&w);
    if (rc != OK) {
        jbuf_free(&st->acc);
        gw_respond_err(c, rc, "stream.read");
    }
}

static void gw_records_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct slice s;
    if (!gw_stream_row(c, rc, env, &s, "read", "Not found"))
        return;
    gw_stream_name(c, s);
    jbuf_puts(&st->acc, "{\"records\":[");
    gw_records_read(c);
}

void gw_on_stream_records(struct gw_call *c)
{
    struct gw_stream_state *st = gw_st(c);
    char after[32];
    uint64_t v;
    if (gw_query(c->req, "afterEventId", after, sizeof(after))) {
        if (!gw_parse_u64(after, strlen(after), &v)) {
            gw_respond_error(c, 400, "afterEventId must be a non-negative integer", GW_NO_RETRY);
            return;
        }
        st->from = v + 1;
    }
    err_t rc = gw_session_lookup_cached(c, gw_records_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- PUT /realtime/v1/sessions/:session/:io: S2 credentials for writing the channel ---- */

/* The one scope an S2 access token carries: its stream. */
static void gw_s2_scope(char *out, size_t cap, const char *key, const char *io)
{
    snprintf(out, cap, "s2:append:sessions/%s/%s", key, io);
}

static void gw_init_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct slice s;
    char base[512], endpoint[600], name[STREAM_KEY_MAX + 32], scope[STREAM_KEY_MAX + 64];
    if (!gw_stream_row(c, rc, env, &s, "write", "Session not found") || !gw_out_writer_ok(c, s))
        return;
    if (s.n && gw_sess_u64(s, "closed_at_ms")) {
        gw_respond_error(c, 400, "Cannot initialize a stream on a closed session", GW_NO_RETRY);
        return;
    }
    gw_stream_name(c, s);
    gw_s2_scope(scope, sizeof(scope), st->feed.key, st->feed.io);
    const char *const scopes[] = {scope};
    char *token = gw_jwt_mint(c->auth.env.signing_key, c->auth.env.id, scopes, 1,
                              GW_S2_TOKEN_TTL_S);
    if (!token) {
        gw_respond_err(c, ERR_INTERNAL, "could not mint the stream token");
        return;
    }
    gw_public_base(c, base, sizeof(base));
    snprintf(endpoint, sizeof(endpoint), "%s/s2/v1", base);
    snprintf(name, sizeof(name), "sessions/%s/%s", st->feed.key, st->feed.io);
    gw_add_header(c, "x-s2-access-token", token);
    gw_add_header(c, "x-s2-stream-name", name);
    gw_add_header(c, "x-s2-basin", GW_S2_BASIN);
    gw_add_header(c, "x-s2-endpoint", endpoint);
    gw_add_header(c, "x-s2-flush-interval-ms", "100");
    gw_add_header(c, "x-s2-max-retries", "10");
    gw_add_header(c, "access-control-expose-headers", "*");
    free(token);
    gw_respond_json(c, 202, json_pack("{s:s}", "version", "v2"), 0);
}

void gw_on_stream_init(struct gw_call *c)
{
    (void)gw_st(c);
    err_t rc = gw_session_lookup(c, gw_init_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- the S2-compatible records endpoint: /s2/v1/streams/:stream/records ---- */

/*
 * The stream of an S2 request: "sessions/<key>/<io>" in the URL, allowed by a
 * token minted for exactly that stream (or the secret key).
 */
static bool gw_s2_stream(struct gw_call *c)
{
    struct gw_stream_state *st = gw_st(c);
    const char *name = c->params.session, *slash;
    char scope[STREAM_KEY_MAX + 64];
    if (strncmp(name, "sessions/", 9) != 0 || !(slash = strrchr(name, '/')) || slash == name + 8 ||
        !stream_io_valid(slash + 1) || (size_t)(slash - (name + 9)) > STREAM_KEY_MAX) {
        gw_respond_json(c, 404, json_pack("{s:s,s:s}", "code", "stream_not_found", "message",
                                          "no such stream"),
                        GW_NO_RETRY);
        return false;
    }
    if (gw_id_problem(name + 9, (size_t)(slash - (name + 9)))) {
        /* a key no session URL can carry (path.h): no session's stream has it */
        gw_respond_json(c, 404, json_pack("{s:s,s:s}", "code", "stream_not_found", "message",
                                          "no such stream"),
                        GW_NO_RETRY);
        return false;
    }
    snprintf(st->feed.env, sizeof(st->feed.env), "%s", c->auth.env.id);
    snprintf(st->feed.key, sizeof(st->feed.key), "%.*s", (int)(slash - (name + 9)), name + 9);
    snprintf(st->feed.io, sizeof(st->feed.io), "%s", slash + 1);
    if (c->auth.kind == GW_AUTH_SECRET)
        return true;
    gw_s2_scope(scope, sizeof(scope), st->feed.key, st->feed.io);
    for (unsigned i = 0; i < c->auth.nscopes; i++)
        if (strcmp(c->auth.scopes[i], scope) == 0)
            return true;
    gw_respond_json(c, 403, json_pack("{s:s,s:s}", "code", "permission_denied", "message",
                                      "the access token does not cover this stream"),
                    GW_NO_RETRY);
    return false;
}

/*
 * S2-Format: how record bytes travel in the JSON of S2 appends and reads (absent or "raw": as
 * text, "base64"). Sets *f; false after answering 422 for any other value.
 */
static bool gw_s2_format(struct gw_call *c, enum gw_rec_format *f)
{
    size_t n;
    const char *v = gw_header(c->req, "s2-format", &n);
    if (!v || (n == 3 && strncasecmp(v, "raw", 3) == 0)) {
        *f = GW_REC_RAW;
        return true;
    }
    if (n == 6 && strncasecmp(v, "base64", 6) == 0) {
        *f = GW_REC_BASE64;
        return true;
    }
    gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message",
                                      "S2-Format must be raw or base64"),
                    GW_NO_RETRY);
    return false;
}

/* The S2 endpoint's one 413: a batch over STREAM_RECORD_MAX metered, in S2's error shape. */
static void gw_s2_too_large(struct gw_call *c)
{
    gw_respond_json(c, 413,
                    json_pack("{s:s,s:s}", "code", "invalid", "message",
                              "a batch may hold at most 1 MiB of metered records"),
                    GW_NO_RETRY);
}

static void gw_s2_on_appended(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct mp_reader v;
    uint32_t n;
    uint64_t first = 0, tail = 0, ts = 0;
    if (rc == ERR_TOOBIG) { /* the broker's own check of the same limit: the same answer */
        gw_s2_too_large(c);
        return;
    }
    if (rc == ERR_INVAL) {
        /* the broker's validation text names what is wrong with the records */
        char msg[256] = "invalid records";
        if (env && env->err_msg.p)
            (void)slice_copy(env->err_msg, msg, sizeof(msg));
        gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message", msg),
                        GW_NO_RETRY);
        return;
    }
    if (rc == ERR_CLOSED && env) { /* the session is sealed: its streams take nothing more */
        gw_respond_json(c, 409,
                        json_pack("{s:s,s:s}", "code", "session_closed", "message",
                                  "the session is closed: its streams take no more records"),
                        GW_NO_RETRY);
        return;
    }
    if (rc != OK) {
        gw_respond_err(c, rc, "stream.append");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "seqs", &v) != OK || mp_read_array(&v, &n) != OK ||
        n == 0 || mp_read_uint(&v, &first) != OK) {
        gw_respond_err(c, ERR_PROTO, "stream.append");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "tail", &v) == OK)
        (void)mp_read_uint(&v, &tail);
    if (mp_map_find(env->body.p, env->body.n, "ts", &v) == OK)
        (void)mp_read_uint(&v, &ts);
    if (st->proto) {
        uint8_t ack[S2_ACK_MAX];
        size_t len = s2_ack_encode(ack, first, first + n, tail, ts);
        gw_respond_bytes(c, 200, "application/protobuf", ack, len);
        return;
    }
    gw_respond_json(c, 200,
                    json_pack("{s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I}}", "start", "seq_num",
                              (json_int_t)first, "timestamp", (json_int_t)ts, "end", "seq_num",
                              (json_int_t)(first + n), "timestamp", (json_int_t)ts, "tail",
                              "seq_num", (json_int_t)tail, "timestamp", (json_int_t)ts),
                    0);
}

/* The stream.append request of an S2 batch (headers and bodies as they came). */
static void gw_s2_put_records(struct mp_writer *w, const struct s2_input *in)
{
    mp_put_str(w, "records");
    mp_put_array(w, (uint32_t)in->nrecords);
    for (size_t i = 0; i < in->nrecords; i++) {
        const struct s2_record *r = &in->records[i];
        mp_put_map(w, 2);
        mp_put_str(w, "headers");
        mp_put_array(w, (uint32_t)r->nheaders);
        for (size_t h = r->first_header; h < r->first_header + r->nheaders; h++) {
            mp_put_array(w, 2);
            mp_put_strn(w, in->headers[h].name.p, in->headers[h].name.n);
            mp_put_strn(w, in->headers[h].value.p, in->headers[h].value.n);
        }
        mp_put_str(w, "body");
        mp_put_bin(w, r->body.p, r->body.n);
    }
}

/*
 * S2 append, JSON or protobuf (s2proto.h). A trim command record in the batch is stored like
 * any record and makes the stream-broker trim the stream (docs/stream-broker.md).
 */
void gw_on_s2_append(struct gw_call *c)
{
    struct gw_stream_state *st;
    struct s2_input in;
    struct mp_writer w;
    char why[160];
    err_t rc;
    if (!gw_s2_stream(c))
        return;
    st = c->state;
    if (!gw_s2_format(c, &st->feed.format))
        return;
    st->proto = c->body == NULL; /* the pipeline left a protobuf body unparsed */
    if (st->proto)
        rc = s2_input_from_proto((const uint8_t *)c->req->entity.base, c->req->entity.len, &in,
                                 why, sizeof(why));
    else
        rc = s2_input_from_json(c->body, st->feed.format == GW_REC_BASE64, &in, why,
                                sizeof(why));
    if (rc == OK && in.conditional) {
        snprintf(why, sizeof(why), "match_seq_num and fencing_token are not supported");
        rc = ERR_INVAL;
    }
    if (rc != OK) {
        s2_input_fini(&in);
        gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message", why),
                        GW_NO_RETRY);
        return;
    }
    /* the route's one limit (it has no byte cap of its own): S2 caps a whole batch at 1 MiB
     * metered; it also keeps the bus request under the receive limit whatever the record
     * count */
    if (in.metered > STREAM_RECORD_MAX) {
        s2_input_fini(&in);
        gw_s2_too_large(c);
        return;
    }
    mp_writer_init(&w);
    gw_stream_put_name(&w, &st->feed, 1);
    gw_s2_put_records(&w, &in);
    s2_input_fini(&in);
    rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_APPEND, mp_writer_data(&w),
                         mp_writer_len(&w), gw_s2_on_appended);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "stream.append");
}

static void gw_s2_on_read(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_stream_state *st = c->state;
    struct mp_reader v;
    uint32_t n = 0;
    uint64_t tail = 0, tail_ts = 0, seq;
    struct jbuf b = {0};
    if (rc != OK) {
        gw_respond_err(c, rc, "stream.read");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "tail", &v) == OK)
        (void)mp_read_uint(&v, &tail);
    if (mp_map_find(env->body.p, env->body.n, "tail_ts", &v) == OK)
        (void)mp_read_uint(&v, &tail_ts);
    /* the records as S2 renders them in st->feed.format: valid JSON whatever their bytes */
    jbuf_puts(&b, "{\"records\":[");
    if (mp_map_find(env->body.p, env->body.n, "records", &v) == OK && mp_read_array(&v, &n) == OK)
        for (uint32_t i = 0; i < n && (!st->limit || i < st->limit); i++) {
            if (i)
                jbuf_put(&b, ",", 1);
            if (gw_record_json(&v, &b, st->feed.format, &seq, NULL) != OK) {
                jbuf_free(&b);
                gw_respond_err(c, ERR_PROTO, "stream.read"); /* a malformed broker reply */
                return;
            }
        }
    jbuf_fmt(&b, "],\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}", tail, tail_ts);
    if (b.err != OK) {
        jbuf_free(&b);
        gw_respond_err(c, b.err, "stream.read");
        return;
    }
    gw_respond_bytes(c, 200, GW_CT_JSON, b.p, b.n);
    jbuf_free(&b);
}

void gw_on_s2_read(struct gw_call *c)
{
    char q[32];
    uint64_t seq = 0, count = 1000, wait = 0;
    size_t n;
    if (!gw_s2_stream(c))
        return;
    struct gw_stream_state *st = c->state;
    if (!gw_s2_format(c, &st->feed.format))
        return;
    if ((gw_query(c->req, "seq_num", q, sizeof(q)) && !gw_parse_u64(q, strlen(q), &seq)) ||
        (gw_query(c->req, "count", q, sizeof(q)) &&
         (!gw_parse_u64(q, strlen(q), &count) || count == 0 || count > 1000)) ||
        (gw_query(c->req, "wait", q, sizeof(q)) &&
         (!gw_parse_u64(q, strlen(q), &wait) || wait > 600))) {
        gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message",
                                          "seq_num, count (1-1000) and wait (0-600) are integers"),
                        GW_NO_RETRY);
        return;
    }
    if (gw_query(c->req, "tail_offset", q, sizeof(q))) {
        /* the last records, as a tail peek: S2's tail_offset, within what stream.peek serves */
        uint64_t off;
        if (!gw_parse_u64(q, strlen(q), &off) || off == 0 || off > GW_S2_TAIL_OFFSET_MAX) {
            gw_respond_json(c, 422, json_pack("{s:s,s:s}", "code", "invalid", "message",
                                              "tail_offset must be an integer from 1 to 16"),
                            GW_NO_RETRY);
            return;
        }
        struct mp_writer w;
        mp_writer_init(&w);
        gw_stream_put_name(&w, &st->feed, 1);
        mp_put_kv_uint(&w, "count", off);
        st->limit = (unsigned)count; /* of those, the first count */
        err_t rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_PEEK, mp_writer_data(&w),
                               mp_writer_len(&w), gw_s2_on_read);
        mp_writer_fini(&w);
        if (rc != OK)
            gw_respond_err(c, rc, "stream.peek");
        return;
    }
    const char *accept = gw_header(c->req, "accept", &n);
    if (accept && n >= 17 && memmem(accept, n, "text/event-stream", 17)) {
        st->feed.start = seq;
        st->feed.wait_ms = wait * 1000;
        st->feed.drain = wait == 0;
        gw_feed_start(c, &st->feed);
        return;
    }
    struct mp_writer w;
    mp_writer_init(&w);
    gw_stream_put_name(&w, &st->feed, 2);
    mp_put_kv_uint(&w, "from", seq);
    mp_put_kv_uint(&w, "count", count);
    err_t rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_STREAM_READ, mp_writer_data(&w),
                           mp_writer_len(&w), gw_s2_on_read);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "stream.read");
}
