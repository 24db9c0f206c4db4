/*
 * s2s_conn.c - the HTTP/2 side of the S2 append sessions (s2s.h): telling an
 * HTTP/2 connection from an HTTP/1 one, and serving the former with
 * libnghttp2 on the h2o socket it came in on. nghttp2 does the protocol
 * (framing, HPACK, flow control, stream states); this file moves bytes
 * between it and the socket and hands each stream's events to
 * s2s_stream.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "gw.h"
#include "log.h"
#include "mem.h"
#include "s2s.h"
#include "s2s_int.h"

#define S2S_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define S2S_PREFACE_LEN (sizeof(S2S_PREFACE) - 1)
#define S2S_MAX_STREAMS 100
/* A stream's receive window holds a whole s2s frame (2 MiB) and the next; the connection's,
 * a few such streams. Bytes come back to the client only once their batch is acknowledged. */
#define S2S_STREAM_WINDOW (4 << 20)
#define S2S_CONN_WINDOW (16 << 20)
#define S2S_WRITE_CHUNK (64 << 10)

struct s2s_conn {
    struct gw *gw;
    h2o_socket_t *sock;
    nghttp2_session *h2;
    struct s2s_stream *streams;
    struct s2s_conn *prev, *next; /* every connection of the process */
    char *wbuf;                   /* the bytes of the write under way */
    size_t wcap;
    h2o_timeout_entry_t idle; /* linked while no stream is open (TETHER_GW_H2_IDLE_TIMEOUT) */
    bool writing, in_recv, closing;
};

static h2o_timeout_t s2s_idle_timeout;
static bool s2s_idle_timeout_ready;

static struct s2s_conn *s2s_conns;
static unsigned s2s_nconns;
unsigned s2s_nsessions;

nghttp2_session *s2s_conn_h2(struct s2s_conn *conn)
{
    return conn->h2;
}

struct gw *s2s_conn_gw(struct s2s_conn *conn)
{
    return conn->gw;
}

unsigned s2s_connections(void)
{
    return s2s_nconns;
}

unsigned s2s_sessions(void)
{
    return s2s_nsessions;
}

void s2s_conn_unlink(struct s2s_stream *st)
{
    struct s2s_conn *conn = st->conn;
    if (!conn)
        return;
    if (st->prev)
        st->prev->next = st->next;
    else
        conn->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    if (!conn->streams && !conn->closing)
        h2o_timeout_link(conn->gw->ctx.loop, &s2s_idle_timeout, &conn->idle);
}

/* No stream for TETHER_GW_H2_IDLE_TIMEOUT: GOAWAY, and the connection ends once it is sent
 * (S2's client opens a new one when it next writes). */
static void s2s_on_idle(h2o_timeout_entry_t *entry)
{
    struct s2s_conn *conn = H2O_STRUCT_FROM_MEMBER(struct s2s_conn, idle, entry);
    (void)nghttp2_session_terminate_session(conn->h2, NGHTTP2_NO_ERROR);
    s2s_conn_kick(conn);
}

/* ---- ending a connection ---- */

static void s2s_conn_free(struct s2s_conn *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        s2s_conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    s2s_nconns--;
    h2o_timeout_unlink(&conn->idle);
    nghttp2_session_del(conn->h2);
    h2o_socket_close(conn->sock);
    free(conn->wbuf);
    free(conn);
}

/*
 * Ends the connection: its streams are told (each is freed now, or when what it has under way
 * comes back), and the socket closes once no write of ours is in progress.
 */
static void s2s_conn_close(struct s2s_conn *conn)
{
    if (!conn->closing) {
        conn->closing = true;
        while (conn->streams) {
            struct s2s_stream *st = conn->streams;
            s2s_conn_unlink(st);
            st->conn = NULL;
            s2s_stream_closed(st, true);
        }
        h2o_socket_read_stop(conn->sock);
    }
    if (conn->writing) { /* h2o still holds wbuf: the write's end frees the connection */
        (void)shutdown(h2o_socket_get_fd(conn->sock), SHUT_RDWR);
        return;
    }
    s2s_conn_free(conn);
}

/* ---- writing ---- */

static bool s2s_flush(struct s2s_conn *conn);

static void s2s_on_written(h2o_socket_t *sock, const char *err)
{
    struct s2s_conn *conn = sock->data;
    conn->writing = false;
    if (err || conn->closing) {
        s2s_conn_close(conn);
        return;
    }
    if (s2s_flush(conn) && !conn->writing && !nghttp2_session_want_read(conn->h2) &&
        !nghttp2_session_want_write(conn->h2))
        s2s_conn_close(conn); /* GOAWAY sent and every stream done */
}

/* Copies what nghttp2 has to send, up to a chunk, and writes it; false on a protocol error. */
static bool s2s_write_some(struct s2s_conn *conn)
{
    size_t n = 0;
    while (n < S2S_WRITE_CHUNK) {
        const uint8_t *data;
        ssize_t got = nghttp2_session_mem_send(conn->h2, &data);
        if (got < 0) {
            LOG_WARN("gw.s2s_send_failed", "HTTP/2 session: %s", nghttp2_strerror((int)got));
            return false;
        }
        if (got == 0)
            break;
        if (n + (size_t)got > conn->wcap) {
            conn->wcap = n + (size_t)got > 2 * conn->wcap ? n + (size_t)got : 2 * conn->wcap;
            conn->wbuf = xrealloc(conn->wbuf, conn->wcap);
        }
        memcpy(conn->wbuf + n, data, (size_t)got);
        n += (size_t)got;
    }
    if (n > 0) {
        h2o_iovec_t v = h2o_iovec_init(conn->wbuf, n);
        conn->writing = true;
        h2o_socket_write(conn->sock, &v, 1, s2s_on_written);
    }
    return true;
}

/* Writes what is due unless a write is under way; false when that failed and conn is gone. */
static bool s2s_flush(struct s2s_conn *conn)
{
    if (conn->writing || conn->closing || conn->in_recv)
        return true;
    if (s2s_write_some(conn))
        return true;
    s2s_conn_close(conn);
    return false;
}

void s2s_conn_kick(struct s2s_conn *conn)
{
    if (conn->writing || conn->closing || conn->in_recv)
        return; /* the write's end, or the read under way, flushes */
    /* the caller may still hold one of this connection's streams: a failure here only shuts
     * the socket, and the read that fails next ends the connection */
    if (!s2s_write_some(conn))
        (void)shutdown(h2o_socket_get_fd(conn->sock), SHUT_RDWR);
}

/* ---- reading ---- */

static void s2s_on_read(h2o_socket_t *sock, const char *err)
{
    struct s2s_conn *conn = sock->data;
    if (err) {
        s2s_conn_close(conn);
        return;
    }
    conn->in_recv = true;
    ssize_t used =
        nghttp2_session_mem_recv(conn->h2, (const uint8_t *)sock->input->bytes, sock->input->size);
    conn->in_recv = false;
    if (used < 0) {
        LOG_INFO("gw.s2s_protocol_error", "HTTP/2 connection ended: %s",
                 nghttp2_strerror((int)used));
        s2s_conn_close(conn);
        return;
    }
    h2o_buffer_consume(&sock->input, (size_t)used);
    if (s2s_flush(conn) && !conn->closing && !conn->writing &&
        !nghttp2_session_want_read(conn->h2) && !nghttp2_session_want_write(conn->h2))
        s2s_conn_close(conn);
}

/* ---- nghttp2's callbacks ---- */

static struct s2s_stream *s2s_stream_of(nghttp2_session *h2, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2, id);
}

static int s2s_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
    struct s2s_conn *conn = arg;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct s2s_stream *st = s2s_stream_new(conn, frame->hd.stream_id);
    h2o_timeout_unlink(&conn->idle);
    st->next = conn->streams;
    if (conn->streams)
        conn->streams->prev = st;
    conn->streams = st;
    return nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, st);
}

static int s2s_on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                         size_t nn, const uint8_t *value, size_t vn, uint8_t flags, void *arg)
{
    (void)flags;
    (void)arg;
    struct s2s_stream *st = s2s_stream_of(h2, frame->hd.stream_id);
    if (st && frame->hd.type == NGHTTP2_HEADERS && st->state == S2S_HEADERS)
        s2s_stream_header(st, name, nn, value, vn);
    return 0;
}

static int s2s_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
    (void)arg;
    struct s2s_stream *st = s2s_stream_of(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && st->state == S2S_HEADERS)
        s2s_stream_headers_done(st);
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        s2s_stream_input_end(st);
    return 0;
}

static int s2s_on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                       size_t n, void *arg)
{
    (void)flags;
    (void)arg;
    struct s2s_stream *st = s2s_stream_of(h2, id);
    if (!st) { /* no session of ours: the bytes go back to the window at once */
        nghttp2_session_consume(h2, id, n);
        return 0;
    }
    s2s_stream_data(st, data, n);
    return 0;
}

static int s2s_on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
    (void)arg;
    struct s2s_stream *st;
    if (frame->hd.type == NGHTTP2_DATA && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (st = s2s_stream_of(h2, frame->hd.stream_id)) != NULL)
        s2s_stream_sent_end(st);
    return 0;
}

static int s2s_on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *arg)
{
    (void)code;
    (void)arg;
    struct s2s_stream *st = s2s_stream_of(h2, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    s2s_conn_unlink(st);
    s2s_stream_closed(st, false);
    return 0;
}

static nghttp2_session_callbacks *s2s_callbacks(void)
{
    static nghttp2_session_callbacks *cbs;
    if (cbs)
        return cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, s2s_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, s2s_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, s2s_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, s2s_on_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, s2s_on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, s2s_on_stream_close);
    return cbs;
}

bool s2s_serve(struct gw *gw, h2o_socket_t *sock)
{
    if (s2s_nconns >= (unsigned)gw->gw.h2_max_connections) {
        /* each may hold its connection window (16 MiB) of unacknowledged batches: a bound on
         * connections is the bound on that memory. The writer retries (another gateway). */
        static uint64_t last_warn;
        uint64_t now = clock_mono_ms();
        if (!last_warn || now - last_warn > 10000) {
            last_warn = now;
            LOG_WARN("gw.s2s_full",
                     "%u HTTP/2 connections open (TETHER_GW_H2_MAX_CONNECTIONS): "
                     "new ones are closed",
                     s2s_nconns);
        }
        h2o_socket_close(sock);
        return true;
    }
    static nghttp2_option *opt;
    nghttp2_session_callbacks *cbs = s2s_callbacks();
    if (!cbs || (!opt && nghttp2_option_new(&opt) != 0))
        return false;
    /* windows are given back by hand, once a batch is acknowledged (back-pressure) */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    struct s2s_conn *conn = xcalloc(1, sizeof(*conn));
    if (nghttp2_session_server_new2(&conn->h2, cbs, conn, opt) != 0) {
        free(conn);
        return false;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, S2S_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, S2S_STREAM_WINDOW},
    };
    if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0, S2S_CONN_WINDOW) !=
            0) {
        nghttp2_session_del(conn->h2);
        free(conn);
        return false;
    }
    conn->gw = gw;
    conn->sock = sock;
    sock->data = conn;
    if (!s2s_idle_timeout_ready) {
        h2o_timeout_init(gw->ctx.loop, &s2s_idle_timeout, (uint64_t)gw->gw.h2_idle_timeout_ms);
        s2s_idle_timeout_ready = true;
    }
    conn->idle.cb = s2s_on_idle;
    h2o_timeout_link(gw->ctx.loop, &s2s_idle_timeout, &conn->idle);
    conn->next = s2s_conns;
    if (s2s_conns)
        s2s_conns->prev = conn;
    s2s_conns = conn;
    s2s_nconns++;
    if (gw->stopping)
        nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    h2o_socket_read_start(sock, s2s_on_read);
    s2s_on_read(sock, NULL); /* the preface and whatever came with it */
    return true;
}

void s2s_stop(struct gw *gw)
{
    (void)gw;
    for (struct s2s_conn *conn = s2s_conns; conn; conn = conn->next) {
        /* streams under way finish; the client opens no new one here; an idle one just ends */
        if (!conn->streams)
            (void)nghttp2_session_terminate_session(conn->h2, NGHTTP2_NO_ERROR);
        else
            (void)nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE,
                                        nghttp2_session_get_last_proc_stream_id(conn->h2),
                                        NGHTTP2_NO_ERROR, NULL, 0);
        s2s_conn_kick(conn);
    }
}

/* ---- connections not yet handed on, and telling HTTP/2 from HTTP/1 ---- */

static h2o_timeout_t s2s_wait_timeout;
static bool s2s_wait_timeout_ready;

void s2s_wait_end(struct s2s_wait *w)
{
    h2o_timeout_unlink(&w->timeout);
    w->sock->on_close.cb = NULL;
    w->sock->on_close.data = NULL;
    free(w);
}

static void s2s_wait_on_close(void *data)
{
    struct s2s_wait *w = data;
    h2o_timeout_unlink(&w->timeout);
    free(w);
}

static void s2s_wait_on_timeout(h2o_timeout_entry_t *entry)
{
    struct s2s_wait *w = H2O_STRUCT_FROM_MEMBER(struct s2s_wait, timeout, entry);
    h2o_socket_close(w->sock); /* frees w (on_close) */
}

struct s2s_wait *s2s_wait_start(struct gw *gw, h2o_socket_t *sock, s2s_http1_fn http1)
{
    if (!s2s_wait_timeout_ready) {
        h2o_timeout_init(gw->ctx.loop, &s2s_wait_timeout, (uint64_t)gw->gw.req_timeout_ms);
        s2s_wait_timeout_ready = true;
    }
    struct s2s_wait *w = xcalloc(1, sizeof(*w));
    w->sock = sock;
    w->gw = gw;
    w->http1 = http1;
    w->timeout.cb = s2s_wait_on_timeout;
    sock->on_close.cb = s2s_wait_on_close;
    sock->on_close.data = w;
    h2o_timeout_link(gw->ctx.loop, &s2s_wait_timeout, &w->timeout);
    return w;
}

static void s2s_sniff_on_read(h2o_socket_t *sock, const char *err)
{
    struct s2s_wait *w = sock->on_close.data;
    if (err) {
        h2o_socket_close(sock);
        return;
    }
    size_t n = sock->input->size < S2S_PREFACE_LEN ? sock->input->size : S2S_PREFACE_LEN;
    bool prefix = memcmp(sock->input->bytes, S2S_PREFACE, n) == 0;
    if (prefix && n < S2S_PREFACE_LEN)
        return; /* "PRI * HT…" so far: wait for the rest */
    struct gw *gw = w->gw;
    s2s_http1_fn http1 = w->http1;
    h2o_socket_read_stop(sock);
    s2s_wait_end(w);
    if (!prefix) {
        http1(gw, sock);
        return;
    }
    if (!s2s_serve(gw, sock)) {
        LOG_ERROR("gw.s2s_unavailable", "cannot start an HTTP/2 session (out of memory)");
        h2o_socket_close(sock);
    }
}

void s2s_accept(struct gw *gw, h2o_socket_t *sock, s2s_http1_fn http1)
{
    (void)s2s_wait_start(gw, sock, http1);
    h2o_socket_read_start(sock, s2s_sniff_on_read);
}
