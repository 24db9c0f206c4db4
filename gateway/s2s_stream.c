/*
 * s2s_stream.c - one S2 append session on one HTTP/2 stream (s2s.h): its
 * request headers, its authentication (auth.h, as every route's), then each
 * s2s frame of its body as one stream.append, in order and one at a time,
 * answered by one AppendAck frame; at the end of the input, the end of the
 * answer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "msg.h"
#include "msg_stream.h"
#include "path.h"
#include "s2proto.h"
#include "s2s_int.h"
#include "streams_int.h"

#define S2S_AUTHZ_MAX 4096
#define S2S_PATH_PREFIX "/s2/v1/streams/"
#define S2S_PATH_SUFFIX "/records"

/* Authentication takes what the S2 records route takes: a secret key or a token. */
static const struct gw_route s2s_route = {
    GW_POST,     "/s2/v1/streams/:stream/records (s2s)", 0,
    GW_BODY_RAW, GW_AUTH_SECRET | GW_AUTH_JWT,           NULL,
};

struct s2s_stream *s2s_stream_new(struct s2s_conn *conn, int32_t id)
{
    struct s2s_stream *st = xcalloc(1, sizeof(*st));
    st->conn = conn;
    st->id = id;
    st->call.gw = s2s_conn_gw(conn);
    st->call.route = &s2s_route;
    bus_trace_new(&st->call.trace);
    st->started_mono = clock_mono_ms();
    s2s_nsessions++;
    gw_metrics_s2s_open();
    return st;
}

static void s2s_stream_free(struct s2s_stream *st)
{
    if (st->status)
        LOG_INFO("gw.s2s_session", "%s %s/%s: %d after %u batches, %u records, %" PRIu64 " ms",
                 st->path[0] ? "append session" : "HTTP/2 request", st->feed.key, st->feed.io,
                 st->status, st->batches, st->records, clock_mono_ms() - st->started_mono);
    s2s_nsessions--;
    gw_metrics_s2s_close(st->batches, st->records);
    gw_auth_clear(&st->call.auth);
    free(st->authz);
    free(st->in);
    free(st->out);
    free(st);
}

/* Frees st when nothing it started is under way any more and its stream is gone. */
static void s2s_stream_maybe_free(struct s2s_stream *st)
{
    if ((st->closed || !st->conn) && !st->busy && !st->authing)
        s2s_stream_free(st);
}

void s2s_stream_closed(struct s2s_stream *st, bool conn_gone)
{
    if (!conn_gone && st->conn) {
        /* bytes of it that the window still counts go back to the connection's */
        size_t held = st->in_n - st->in_off;
        if (held > 0)
            nghttp2_session_consume_connection(s2s_conn_h2(st->conn), held);
    }
    st->closed = true;
    s2s_stream_maybe_free(st);
}

/* ---- the answer ---- */

static void s2s_out_put(struct s2s_stream *st, const void *p, size_t n)
{
    if (st->out_off > 0 && st->out_off == st->out_n)
        st->out_off = st->out_n = 0;
    if (st->out_n + n > st->out_cap) {
        st->out_cap = st->out_n + n > 2 * st->out_cap ? st->out_n + n : 2 * st->out_cap;
        st->out = xrealloc(st->out, st->out_cap);
    }
    memcpy(st->out + st->out_n, p, n);
    st->out_n += n;
}

/* Wakes nghttp2 for new answer bytes and writes them. Last thing a caller does with st. */
static void s2s_out_kick(struct s2s_stream *st)
{
    if (!st->conn || st->closed)
        return;
    struct s2s_conn *conn = st->conn;
    (void)nghttp2_session_resume_data(s2s_conn_h2(conn), st->id);
    s2s_conn_kick(conn);
}

ssize_t s2s_stream_read(struct s2s_stream *st, uint8_t *buf, size_t len, uint32_t *flags)
{
    size_t n = st->out_n - st->out_off;
    if (n == 0 && st->state != S2S_ENDING)
        return NGHTTP2_ERR_DEFERRED;
    if (n > len)
        n = len;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_n && st->state == S2S_ENDING)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static ssize_t s2s_on_read_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                                uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    (void)h2;
    (void)id;
    (void)arg;
    return s2s_stream_read(src->ptr, buf, len, flags);
}

void s2s_stream_sent_end(struct s2s_stream *st)
{
    /* answered before the client finished sending (an error): it need send nothing more */
    if (!st->input_ended && st->conn)
        (void)nghttp2_submit_rst_stream(s2s_conn_h2(st->conn), NGHTTP2_FLAG_NONE, st->id,
                                        NGHTTP2_NO_ERROR);
}

#define S2S_NV(n, v)                                                                               \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

/* Submits the answer's head; the body follows from st->out. */
static void s2s_respond(struct s2s_stream *st, int status, const char *content_type)
{
    char code[4];
    snprintf(code, sizeof(code), "%d", status);
    nghttp2_nv nv[] = {
        S2S_NV(":status", code),
        S2S_NV("content-type", content_type),
        S2S_NV("cache-control", "no-cache, no-transform"),
    };
    nghttp2_data_provider body = {.source = {.ptr = st}, .read_callback = s2s_on_read_body};
    st->answered = true;
    st->status = status;
    if (nghttp2_submit_response(s2s_conn_h2(st->conn), st->id, nv, sizeof(nv) / sizeof(nv[0]),
                                &body) != 0)
        (void)nghttp2_submit_rst_stream(s2s_conn_h2(st->conn), NGHTTP2_FLAG_NONE, st->id,
                                        NGHTTP2_INTERNAL_ERROR);
}

static size_t s2s_error_json(char *out, size_t cap, const char *code, const char *message)
{
    json_t *j = json_pack("{s:s,s:s}", "code", code, "message", message);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    int n = snprintf(out, cap, "%s", text ? text : "{\"code\":\"internal\",\"message\":\"\"}");
    free(text);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/*
 * Ends the session with an error: S2's JSON answer before the session started, a terminal
 * frame once it runs. Then the answer ends; bytes the client still sends are dropped.
 */
static void s2s_fail(struct s2s_stream *st, int status, const char *code, const char *message)
{
    char json[512];
    size_t n = s2s_error_json(json, sizeof(json), code, message);
    if (!st->conn || st->closed || st->state == S2S_ENDING)
        return;
    if (!st->answered) {
        st->state = S2S_ENDING;
        s2s_out_put(st, json, n);
        s2s_respond(st, status, GW_CT_JSON);
    } else {
        uint8_t head[6];
        s2s_frame_head(head, 2 + n, S2S_FLAG_TERMINAL);
        head[4] = (uint8_t)(status >> 8);
        head[5] = (uint8_t)status;
        s2s_out_put(st, head, sizeof(head));
        s2s_out_put(st, json, n);
        st->state = S2S_ENDING;
        st->status = status;
    }
    /* what is held no longer counts against the client's windows */
    if (st->in_n > st->in_off)
        (void)nghttp2_session_consume(s2s_conn_h2(st->conn), st->id, st->in_n - st->in_off);
    st->in_off = st->in_n = 0;
    s2s_out_kick(st);
}

/* ---- request headers ---- */

static void s2s_copy(char *out, size_t cap, const uint8_t *v, size_t n, bool *too_long)
{
    if (n >= cap) {
        *too_long = true;
        n = cap - 1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
}

void s2s_stream_header(struct s2s_stream *st, const uint8_t *name, size_t nn, const uint8_t *value,
                       size_t vn)
{
    bool too_long = false;
#define S2S_IS(lit) (nn == sizeof(lit) - 1 && memcmp(name, lit, nn) == 0)
    if (S2S_IS(":method"))
        s2s_copy(st->method, sizeof(st->method), value, vn, &too_long);
    else if (S2S_IS(":path"))
        s2s_copy(st->path, sizeof(st->path), value, vn, &too_long);
    else if (S2S_IS("content-type"))
        s2s_copy(st->content_type, sizeof(st->content_type), value, vn, &too_long);
    else if (S2S_IS("authorization") && !st->authz && vn <= S2S_AUTHZ_MAX) {
        st->authz = xstrndup((const char *)value, vn);
        st->authz_n = vn;
    }
#undef S2S_IS
    if (too_long) /* a value cut short must not match anything: the request is refused */
        st->path[0] = st->method[0] = '\0';
}

/* The stream name of an s2s request's path, percent-decoded into out; false if not ours. */
static bool s2s_path_stream(const char *path, char *out, size_t cap)
{
    size_t n = strcspn(path, "?");
    size_t pre = sizeof(S2S_PATH_PREFIX) - 1, suf = sizeof(S2S_PATH_SUFFIX) - 1;
    if (n <= pre + suf || strncmp(path, S2S_PATH_PREFIX, pre) != 0 ||
        strncmp(path + n - suf, S2S_PATH_SUFFIX, suf) != 0)
        return false;
    return gw_pct_decode(path + pre, n - pre - suf, out, cap) == OK && out[0];
}

static void s2s_pump(struct s2s_stream *st);

static void s2s_on_auth(struct gw_call *c, int status, const char *error)
{
    struct s2s_stream *st = (struct s2s_stream *)c; /* call is its first member */
    const char *code, *message;
    char name[GW_PARAM_MAX];
    st->authing = false;
    if (!st->conn || st->closed) {
        s2s_stream_maybe_free(st);
        return;
    }
    if (status != 0) {
        s2s_fail(st, status, status == 503 ? "unavailable" : "unauthenticated",
                 error ? error : "authentication failed");
        return;
    }
    (void)s2s_path_stream(st->path, name, sizeof(name)); /* checked before authenticating */
    status = gw_s2_stream_check(&c->auth, name, &st->feed, &code, &message);
    if (status != 0) {
        s2s_fail(st, status, code, message);
        return;
    }
    st->state = S2S_OPEN;
    s2s_respond(st, 200, "s2s/proto");
    s2s_pump(st);
    s2s_out_kick(st);
}

void s2s_stream_headers_done(struct s2s_stream *st)
{
    char name[GW_PARAM_MAX];
    st->state = S2S_AUTH;
    if (strcmp(st->method, "POST") != 0 || !s2s_path_stream(st->path, name, sizeof(name))) {
        s2s_fail(st, 404, "not_found",
                 "HTTP/2 here serves S2 append sessions only: POST "
                 "/s2/v1/streams/:stream/records with content-type s2s/proto");
        return;
    }
    if (strcasecmp(st->content_type, "s2s/proto") != 0) {
        s2s_fail(st, 415, "invalid", "an HTTP/2 append session must be content-type s2s/proto");
        return;
    }
    st->authing = true;
    gw_auth_bearer(&st->call, st->authz, st->authz_n, s2s_on_auth);
}

/* ---- frames and appends ---- */

static void s2s_on_appended(void *arg, err_t rc, const struct envelope *env)
{
    struct s2s_stream *st = arg;
    uint64_t first, tail, ts;
    uint32_t n;
    struct gw *gw = st->call.gw;
    gw->inflight--;
    gw_metrics_bus(GW_ACTOR_STREAM_BROKER,
                   rc == OK            ? GW_M_BUS_OK
                   : rc == ERR_TIMEOUT ? GW_M_BUS_TIMEOUT
                   : rc == ERR_UNAVAIL ? GW_M_BUS_UNAVAILABLE
                                       : GW_M_BUS_ERROR,
                   st->call.started_us);
    st->busy = false;
    if (!st->conn || st->closed) { /* nobody to tell: the client re-sends, de-duplicated */
        s2s_stream_maybe_free(st);
        return;
    }
    if (rc == OK && gw_s2_appended(env, &first, &n, &tail, &ts) != OK)
        rc = ERR_PROTO;
    if (rc != OK) {
        char msg[256] = "invalid records";
        if (rc == ERR_INVAL && env && env->err_msg.p)
            (void)slice_copy(env->err_msg, msg, sizeof(msg));
        if (rc == ERR_INVAL)
            s2s_fail(st, 422, "invalid", msg);
        else if (rc == ERR_TOOBIG)
            s2s_fail(st, 413, "invalid", "a batch may hold at most 1 MiB of metered records");
        else if (rc == ERR_CLOSED && env)
            s2s_fail(st, 409, "session_closed",
                     "the session is closed: its streams take no more records");
        else if (rc == ERR_QUOTA)
            s2s_fail(st, 507, "quota_exhausted", "the environment's storage quota is used up");
        else /* retried by the client, which re-sends the batch: de-duplicated */
            s2s_fail(st, 503, "unavailable", "the stream-broker did not answer; retry");
        return;
    }
    uint8_t frame[4 + S2_ACK_MAX];
    size_t len = s2_ack_encode(frame + 4, first, first + n, tail, ts);
    s2s_frame_head(frame, len, 0);
    s2s_out_put(st, frame, 4 + len);
    st->batches++;
    st->records += n;
    st->in_off += st->frame_n;
    (void)nghttp2_session_consume(s2s_conn_h2(st->conn), st->id, st->frame_n);
    s2s_pump(st);
    s2s_out_kick(st);
}

/* Starts the append of one frame's AppendInput; false after failing the session. */
static bool s2s_append(struct s2s_stream *st, const uint8_t *msg, size_t msg_n, size_t used)
{
    struct s2_input in;
    struct mp_writer w;
    char why[160], part[48];
    unsigned char d[SHA256_DIGEST_LENGTH];
    err_t rc = s2_input_from_proto(msg, msg_n, &in, why, sizeof(why));
    int status = rc == OK ? gw_s2_input_check(&in, why, sizeof(why)) : 422;
    if (status != 0) {
        s2_input_fini(&in);
        s2s_fail(st, status, "invalid", why);
        return false;
    }
    /* the batch's own bytes name its records: a re-sent batch names the same ones */
    SHA256(msg, msg_n, d);
    memcpy(part, "s2s:", 4);
    for (size_t i = 0; i < 16; i++)
        snprintf(part + 4 + 2 * i, 3, "%02x", d[i]);
    struct msg_stream_append m = {.name = gw_feed_stream_name(&st->feed)};
    mp_writer_init(&w);
    msg_stream_append_open(&w, &m);
    rc = gw_s2_put_records(&w, &in, part);
    s2_input_fini(&in);
    if (rc == OK)
        rc = mp_writer_err(&w);
    st->call.started_us = clock_mono_us();
    if (rc == OK)
        rc = bus_call(st->call.gw->actors[GW_ACTOR_STREAM_BROKER], MSG_STREAM_APPEND,
                      mp_writer_data(&w), mp_writer_len(&w), &st->call.trace, s2s_on_appended, st);
    mp_writer_fini(&w);
    if (rc != OK) {
        gw_metrics_bus(GW_ACTOR_STREAM_BROKER,
                       rc == ERR_UNAVAIL ? GW_M_BUS_UNAVAILABLE : GW_M_BUS_ERROR,
                       st->call.started_us);
        s2s_fail(st, 503, "unavailable", "no stream-broker is reachable; retry");
        return false;
    }
    st->busy = true;
    st->frame_n = used;
    st->call.gw->inflight++;
    return true;
}

/* Appends the next whole frame, if no append is under way; ends the answer at the end. */
static void s2s_pump(struct s2s_stream *st)
{
    if (st->state != S2S_OPEN || st->busy)
        return;
    const uint8_t *msg;
    size_t msg_n, used;
    uint8_t flag;
    int r = s2s_frame_next(st->in + st->in_off, st->in_n - st->in_off, &flag, &msg, &msg_n, &used);
    if (r < 0) {
        s2s_fail(st, 400, "invalid", "an s2s frame must be 1 byte to 2 MiB long");
        return;
    }
    if (r > 0) {
        if (flag & (S2S_FLAG_TERMINAL | S2S_FLAG_COMPRESSION))
            s2s_fail(st, 400, "invalid",
                     flag & S2S_FLAG_TERMINAL ? "a client sends no terminal frame"
                                              : "compressed s2s frames are not supported");
        else
            (void)s2s_append(st, msg, msg_n, used);
        return;
    }
    if (!st->input_ended)
        return;
    if (st->in_off < st->in_n) {
        s2s_fail(st, 400, "invalid", "the input ended inside an s2s frame");
        return;
    }
    st->state = S2S_ENDING; /* every batch is acknowledged: the answer ends */
}

void s2s_stream_data(struct s2s_stream *st, const uint8_t *p, size_t n)
{
    if (st->state == S2S_ENDING || st->state == S2S_HEADERS) {
        (void)nghttp2_session_consume(s2s_conn_h2(st->conn), st->id, n);
        return;
    }
    if (st->in_off > 0 && st->in_off >= st->in_n / 2) { /* keep the buffer from creeping */
        memmove(st->in, st->in + st->in_off, st->in_n - st->in_off);
        st->in_n -= st->in_off;
        st->in_off = 0;
    }
    if (st->in_n + n > st->in_cap) {
        st->in_cap = st->in_n + n > 2 * st->in_cap ? st->in_n + n : 2 * st->in_cap;
        st->in = xrealloc(st->in, st->in_cap);
    }
    memcpy(st->in + st->in_n, p, n);
    st->in_n += n;
    s2s_pump(st);
    s2s_out_kick(st);
}

void s2s_stream_input_end(struct s2s_stream *st)
{
    st->input_ended = true;
    s2s_pump(st);
    s2s_out_kick(st);
}
