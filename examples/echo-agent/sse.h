/*
 * sse.h - an incremental text/event-stream parser (WHATWG HTML "Server-sent
 * events", §9.2.6 "Interpreting an event stream").
 *
 * Bytes go in as they come off the socket, split anywhere (inside a line,
 * inside a CRLF pair); whole events come out through a callback. It does no
 * I/O, knows nothing about Tether, and keeps at most one event in memory.
 * Not handled: a leading UTF-8 BOM (the servers here never send one) and the
 * `retry:` field (reconnection policy belongs to the caller).
 */
#ifndef ECHO_AGENT_SSE_H
#define ECHO_AGENT_SSE_H

#include <stdbool.h>
#include <stddef.h>

/* Parser errors; negative so they never collide with a callback's stop value. */
#define SSE_ERR_TOOBIG (-1) /* one event (its pending line + data) exceeded max_event */
#define SSE_ERR_NOMEM (-2)

#define SSE_TYPE_MAX 64 /* event names longer than this - 1 are dropped with their event */
#define SSE_ID_MAX 256  /* id: values longer than this - 1 are ignored, as if absent */

/* One dispatched event. Every pointer is borrowed: valid only during the callback. */
struct sse_event {
    const char *type; /* the event: field, or "message" when the event had none */
    const char *data; /* the data: lines joined with "\n", NUL-terminated (may hold NULs) */
    size_t data_len;
    const char *id; /* the last id: seen on this stream so far ("" when none) */
};

/*
 * Called once per complete event, in order. Return 0 to go on, or a positive
 * value to stop: sse_feed() then returns that value at once, leaving the rest
 * of its input unparsed.
 */
typedef int (*sse_event_cb)(void *arg, const struct sse_event *ev);

/* A growable byte buffer; the parser's private storage. */
struct sse_buf {
    char *p;
    size_t n, cap;
};

struct sse_parser {
    sse_event_cb _cb;
    void *_arg;
    size_t _max;          /* cap on line + data bytes of one event */
    struct sse_buf _line; /* the line being received (no terminator) */
    struct sse_buf _data; /* data: values of the event so far, each followed by "\n" */
    char _type[SSE_TYPE_MAX];
    bool _type_too_long;
    char _id[SSE_ID_MAX];
    bool _cr; /* the last byte fed was a CR: a following LF ends no line */
};

/*
 * Prepares p; events of more than max_event bytes (line + joined data) are an
 * error. Allocates nothing until bytes arrive. sse_fini() releases p.
 */
void sse_init(struct sse_parser *p, size_t max_event, sse_event_cb cb, void *arg);

/*
 * Parses n bytes (any split of the stream is fine) and calls the callback for
 * each event they complete. Returns 0, the callback's stop value, or
 * SSE_ERR_TOOBIG / SSE_ERR_NOMEM; after a non-zero return the parser must be
 * reset before it is fed again.
 */
int sse_feed(struct sse_parser *p, const char *buf, size_t n);

/*
 * Forgets everything of the current stream (partial line, pending event, last
 * id, event type) but keeps the callback, the limit and the memory: use it
 * before parsing a new connection. A trailing event with no blank line after
 * it is discarded here, as the spec says for end of stream.
 */
void sse_reset(struct sse_parser *p);

/* Releases the buffers; p may be passed to sse_init() again. */
void sse_fini(struct sse_parser *p);

#endif
