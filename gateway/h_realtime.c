/*
 * h_realtime.c - the realtime routes that write and follow a session's
 * channels (the contract's §5.7, §5.8, §6): POST .../:io/append, which puts
 * one record on the channel (and makes sure a run reads .in), and GET/HEAD
 * .../:io, the SSE subscription, resumed by Last-Event-ID. The steps every
 * channel route shares are h_streams.c's (streams_int.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "ids.h"
#include "jbuf.h"
#include "log.h"
#include "msg.h"
#include "msg_stream.h"
#include "sessref.h"
#include "streams_int.h"

#define GW_SSE_WAIT_DEFAULT_S 60

/* ---- POST /realtime/v1/sessions/:session/:io/append ---- */

/* The contract's 409 for a closed (reason: NULL for none) or an expired session. */
static void gw_respond_closed(struct gw_call *c, bool closed, const char *reason)
{
    json_t *b = json_pack("{s:b,s:s,s:s}", "ok", 0, "error",
                          closed ? "Cannot append to a closed session"
                                 : "Cannot append to an expired session",
                          "code", "session_closed");
    json_object_set_new(b, "closedReason",
                        reason   ? json_string(reason)
                        : closed ? json_null()
                                 : json_string("expired"));
    gw_respond_json(c, 409, b, GW_NO_RETRY);
}

/* The broker refused an append to a sealed session: its message is the seal ("0" or "1<reason>").
 */
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
    uint32_t n;
    uint64_t seq, tail, ts;
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
    if (gw_s2_appended(env, &seq, &n, &tail, &ts) != OK || n != 1) {
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
    struct msg_stream_append m = {.name = gw_feed_stream_name(&st->feed)};
    struct msg_stream_record_in rec = {
        msg_str(st->part_id), MSG_STREAM_NO_HEADERS, {env.p ? env.p : "", env.n}};
    mp_writer_init(&w);
    msg_stream_append_open(&w, &m);
    mp_put_array(&w, 1);
    msg_encode(&msg_stream_record_in_form, &w, &rec);
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
    /* a side channel's .in wakes and triggers no run (the SDK's rule): it is only observed */
    if (strcmp(c->params.io, "in") != 0 || c->params.channel[0]) {
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

/* Settled: the last non-command record of .out is a turn-complete control record. */
static bool gw_peek_settled(const struct envelope *env)
{
    struct msg_stream_range m;
    struct mp_reader v, r;
    uint32_t n;
    struct slice recs[16];
    if (!env || msg_decode(&msg_stream_range_form, env->body.p, env->body.n, &m) != OK ||
        msg_stream_items(m.records, &v, &n) != OK || n > 16)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (mp_skip(&v, &recs[i]) != OK)
            return false;
    for (uint32_t i = n; i-- > 0;) {
        struct slice hn, hv, body = SLICE_NULL;
        uint32_t nh, two;
        bool command = false, turn_complete = false;
        if (mp_map_find(recs[i].p, recs[i].n, "headers", &r) == OK &&
            mp_read_array(&r, &nh) == OK) {
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
        bool legacy =
            json_is_object(chunk) && json_is_string(json_object_get(chunk, "type")) &&
            strcmp(json_string_value(json_object_get(chunk, "type")), "trigger:turn-complete") == 0;
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
        struct msg_stream_peek m = {gw_feed_stream_name(&st->feed), 2};
        struct mp_writer w;
        mp_writer_init(&w);
        msg_encode(&msg_stream_peek_form, &w, &m);
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
    /* the SDK's from: "latest" (sent only without a Last-Event-ID): what is appended from now on;
     * a start past the tail is clamped to it. Any other value starts at the beginning. */
    size_t fn, ln;
    const char *from = gw_header(c->req, "x-trigger-stream-start", &fn);
    if (from && fn == 6 && strncasecmp(from, "latest", 6) == 0 &&
        !gw_header(c->req, "last-event-id", &ln))
        st->feed.start = UINT64_MAX;
    err_t rc = gw_session_lookup_cached(c, gw_sub_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}
