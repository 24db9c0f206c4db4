/*
 * s2s_int.h - the two halves of the S2 append sessions (s2s.h), internal to
 * them: the HTTP/2 connection (s2s_conn.c: the socket, libnghttp2's session,
 * writing) and one append session on one of its streams (s2s_stream.c:
 * headers, authentication, frames, appends, acks).
 *
 * Ownership. A connection owns its streams while both live. A stream may
 * outlive its HTTP/2 stream, and its connection, while a bus call or an
 * authentication it started is under way (pending): it is freed by whichever
 * of "closed" and "nothing pending" comes last. A connection that goes away
 * first sets each stream's conn to NULL.
 */
#ifndef TETHER_GW_S2S_INT_H
#define TETHER_GW_S2S_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "feed.h"
#include "http.h"

struct s2s_conn;

/* Where a stream is in its life. */
enum s2s_state {
    S2S_HEADERS, /* reading the request's headers */
    S2S_AUTH,    /* authenticating; body bytes are kept meanwhile */
    S2S_OPEN,    /* 200 sent: frames become appends, acks go out */
    S2S_ENDING,  /* the answer's last bytes are queued (an error, or all acked) */
};

struct s2s_stream {
    struct gw_call call; /* first: the authentication steps work on it (req NULL) */
    struct s2s_conn *conn;
    struct s2s_stream *prev, *next; /* the connection's streams */
    int32_t id;
    enum s2s_state state;
    bool closed;      /* the HTTP/2 stream is gone */
    bool input_ended; /* the client sent END_STREAM */
    bool busy;        /* a stream.append is under way */
    bool authing;     /* authentication is under way */
    bool answered;    /* a response was submitted */
    /* request headers */
    char method[8];
    char path[1200];
    char *authz;
    size_t authz_n;
    char content_type[32];
    struct gw_feed_opts feed;
    /* input: received and not yet acknowledged (in[in_off..in_n)); frame_n: the frame of the
     * append under way */
    uint8_t *in;
    size_t in_n, in_off, in_cap, frame_n;
    size_t dropped; /* bytes received after the session ended: given back at once */
    /* output: the answer's body not yet taken by nghttp2 */
    uint8_t *out;
    size_t out_n, out_off, out_cap;
    /* figures for the log line at the end */
    unsigned batches, records;
    int status;
    uint64_t started_mono;
};

/* ---- s2s_conn.c, for the streams ---- */
nghttp2_session *s2s_conn_h2(struct s2s_conn *conn);
struct gw *s2s_conn_gw(struct s2s_conn *conn);
/* Writes what nghttp2 has to send now (or when the write under way ends). */
void s2s_conn_kick(struct s2s_conn *conn);
/* Unlinks st from its connection (its stream closed, or the stream is being freed). */
void s2s_conn_unlink(struct s2s_stream *st);

/* ---- s2s_stream.c, for the connection ---- */
struct s2s_stream *s2s_stream_new(struct s2s_conn *conn, int32_t id);
/* A request header; false when it is to be refused (too long, repeated). */
void s2s_stream_header(struct s2s_stream *st, const uint8_t *name, size_t nn, const uint8_t *value,
                       size_t vn);
void s2s_stream_headers_done(struct s2s_stream *st);
void s2s_stream_data(struct s2s_stream *st, const uint8_t *p, size_t n);
void s2s_stream_input_end(struct s2s_stream *st);
/* nghttp2's data source callback for the answer's body. */
ssize_t s2s_stream_read(struct s2s_stream *st, uint8_t *buf, size_t len, uint32_t *flags);
/* The answer's last DATA frame went out. */
void s2s_stream_sent_end(struct s2s_stream *st);
/* The HTTP/2 stream closed (or, with conn_gone, its whole connection went away). */
void s2s_stream_closed(struct s2s_stream *st, bool conn_gone);

extern unsigned s2s_nsessions;

#endif
