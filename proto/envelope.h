/*
 * envelope.h - the message envelope every bus message travels in.
 *
 * Wire form (msgpack), protocol version 1: an array of 11 or 12 elements
 *   [version, kind, type, req_id, trace_id, sender, deadline_ms, attempt,
 *    err_code, err_msg, body(, origin)]
 * version u8 (= ENV_VERSION); kind u8 (enum env_kind); type u16 (proto/msg.h);
 * req_id u64; trace_id str (32 lower-case hex, or "" when none); sender str
 * (process name, at most ENV_SENDER_MAX bytes); deadline_ms u64 (absolute
 * Unix time in ms, 0 = none); attempt u32 (1 on the first try); err_code u16
 * (err_t, OK unless kind is ENV_ERROR); err_msg str or nil; body: one msgpack
 * object (a map, or nil) embedded as is; origin u64 (random per sending
 * process, drawn when its bus opens; written only when not 0).
 * (origin, req_id) names one logical request across processes and restarts:
 * a re-send keeps both, so a receiver can tell a second arrival (docs/bus.md).
 * A decoder accepts more elements and ignores the extra ones (a twelfth
 * that is not an unsigned integer included: origin is then 0), so a later
 * version can append fields without breaking older readers.
 */
#ifndef TETHER_PROTO_ENVELOPE_H
#define TETHER_PROTO_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mp.h"

#define ENV_VERSION 1
#define ENV_TRACE_LEN 32
#define ENV_SENDER_MAX 48
#define ENV_ERRMSG_MAX 1024
/* The body's place in the wire form's array (the bus tap cuts it there). */
#define ENV_BODY_INDEX 10
/* Fixed fields cost at most this much beyond the body; receive limits add it. */
#define ENV_OVERHEAD_MAX 1280

enum env_kind {
    ENV_REQUEST = 1,
    ENV_REPLY = 2,
    ENV_ERROR = 3, /* a reply that carries err_code/err_msg instead of a body */
    ENV_EVENT = 4,
};

struct envelope {
    uint8_t version;
    uint8_t kind;
    uint16_t type;
    uint64_t req_id;
    char trace_id[ENV_TRACE_LEN + 1];
    char sender[ENV_SENDER_MAX + 1];
    uint64_t deadline_ms;
    uint32_t attempt;
    err_t err_code;
    struct slice err_msg; /* borrowed; SLICE_NULL when absent */
    struct slice body;    /* borrowed raw msgpack of the body; empty when nil */
    uint64_t origin;      /* the sender's random process id; 0 = unknown (not written) */
};

/* Encodes env into w (appending). Fails with ERR_INVAL on a field out of range. */
err_t env_encode(struct mp_writer *w, const struct envelope *env);

/*
 * Decodes buf into env. env->body and env->err_msg borrow from buf.
 * Returns ERR_PROTO on any malformed, truncated or wrongly typed input, and
 * for a version other than ENV_VERSION; never allocates.
 */
err_t env_decode(const void *buf, size_t n, struct envelope *env);

/* True when trace is 32 lower-case hex digits, not all zero (W3C trace-id). */
int env_trace_valid(const char *trace, size_t n);

#endif
