/*
 * s2s.h - S2's streaming append sessions: the protocol the SDK's .out writer
 * (session.out.append, pipe, writer) always speaks in Node, served on the
 * gateway's own port.
 *
 * An append session is one HTTP/2 stream: POST <X-S2-Endpoint>/streams/<stream>/records
 * with content-type s2s/proto, whose request body stays open while the answer
 * streams back. Each s2s frame of the body (s2proto.h) holds one protobuf
 * AppendInput; each becomes one stream.append, in order, one at a time per
 * session, and is answered by one AppendAck frame with its start and end
 * seq. h2o 2.2.5 cannot serve this (it hands over a body only once it has
 * ended), so HTTP/2 connections never reach h2o: the gateway looks at the
 * first bytes of every accepted connection, and one that opens with HTTP/2's
 * preface (h2c with prior knowledge) goes to libnghttp2 here; every other
 * connection goes to h2o as HTTP/1, behind the framing guard (edge.h).
 *
 * Back-pressure is HTTP/2 flow control: a frame's bytes are given back to the
 * client's window only once its append is acknowledged, so a slow broker
 * stops the writer. A batch re-sent after an ack timeout (on a new stream:
 * S2's client does that) is not stored twice: each record carries the part
 * id "s2s:<digest of its frame>:<index>", which the stream-broker
 * de-duplicates, and the ack of a re-sent batch names the seqs the records
 * got the first time.
 *
 * Errors before the session starts (authentication, the stream, the method)
 * are a non-2xx answer with S2's JSON {code, message}; errors once it runs
 * are a terminal frame (flag 0x80, a 2-byte status, the JSON) and the end of
 * the answer. Retryable statuses (503) are those S2's client retries.
 *
 * Everything here runs on the gateway's loop thread.
 */
#ifndef TETHER_GW_S2S_H
#define TETHER_GW_S2S_H

#include <stdbool.h>

#include <h2o.h>

struct gw;

/* What the gateway does with an accepted connection that is not HTTP/2: h2o's HTTP/1. */
typedef void (*s2s_http1_fn)(struct gw *gw, h2o_socket_t *sock);

/*
 * A connection not yet handed to a protocol (its first bytes being read, or its TLS handshake
 * under way, tls.h), closed when TETHER_GW_REQ_TIMEOUT passes first. Owned by the socket (its
 * on_close hook frees it) until s2s_wait_end, which the code handing sock on calls first.
 */
struct s2s_wait {
    h2o_timeout_entry_t timeout;
    h2o_socket_t *sock;
    struct gw *gw;
    s2s_http1_fn http1;
};
struct s2s_wait *s2s_wait_start(struct gw *gw, h2o_socket_t *sock, s2s_http1_fn http1);
void s2s_wait_end(struct s2s_wait *w);

/*
 * Takes an accepted connection: reads until its first bytes tell HTTP/2's preface from
 * anything else, then serves it here or hands it to http1 with those bytes still in
 * sock->input. A connection that sends nothing telling within TETHER_GW_REQ_TIMEOUT is closed.
 */
void s2s_accept(struct gw *gw, h2o_socket_t *sock, s2s_http1_fn http1);

/*
 * Serves sock as an HTTP/2 connection from its first byte (anything already read is in
 * sock->input): after the preface was seen, or after TLS chose "h2" by ALPN (tls.h). False when
 * it cannot (out of memory); the caller then closes sock.
 */
bool s2s_serve(struct gw *gw, h2o_socket_t *sock);

/* The gateway stops: every HTTP/2 connection gets GOAWAY; appends under way finish. */
void s2s_stop(struct gw *gw);

/* HTTP/2 connections and append sessions open in this process (metrics, tests). */
unsigned s2s_connections(void);
unsigned s2s_sessions(void);

#endif
