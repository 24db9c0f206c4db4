/*
 * msg_wp.h - the waitpoint-registry's wp.* bodies, typed (msgcodec.h; the
 * catalogue entries of msg.c say what each field means).
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. Arrays of
 * strings travel as raw fields (msg_raw.h). The limits are what the
 * registry's buffers take (actors/waitpoint_registry/wp.h); a value over one
 * is ERR_INVAL, as it was before the bodies were typed. The waitpoint object
 * of the replies stays untyped: the gateway renders it field by field.
 */
#ifndef TETHER_PROTO_MSG_WP_H
#define TETHER_PROTO_MSG_WP_H

#include "msgcodec.h"
#include "stream.h"

#define MSG_WP_ENV_MAX STREAM_ENV_MAX /* env_id */
#define MSG_WP_KIND_MAX 15            /* MANUAL, SESSION_STREAM, DURATION */
#define MSG_WP_ID_MAX 79              /* friendly waitpoint ids: "waitpoint_" + cuid */
#define MSG_WP_RUN_MAX 63             /* friendly run ids */
#define MSG_WP_IDEM_MAX 2048          /* idempotency keys (the SDK's bound) */
#define MSG_WP_KEY_MAX STREAM_KEY_MAX /* a session channel's addressing key */
#define MSG_WP_IO_MAX 3               /* "in" or "out" */
#define MSG_WP_OUTPUT_MAX (1024u * 1024u + 64u * 1024u) /* a completion's output text */
#define MSG_WP_TYPE_MAX 127                             /* output_type */
#define MSG_WP_TAGS_MAX 10                              /* tags: at most 10, each 1-128 bytes */
#define MSG_WP_TAG_MAX 128
#define MSG_WP_STATUSES_MAX 3 /* wp.list statuses: PENDING, COMPLETED, TIMED_OUT */
#define MSG_WP_STATUS_MAX 16

/* wp.create */
struct msg_wp_create {
    struct slice env_id, kind;
    struct slice run;             /* nil: none (a token) */
    struct slice idempotency_key; /* nil: none */
    uint64_t idempotency_ttl_ms;  /* 0: the key never expires */
    uint64_t timeout_at_ms;       /* 0: none (DURATION: when it completes) */
    struct slice tags;            /* raw: [str] */
    struct slice key, io;         /* SESSION_STREAM: the channel */
    uint64_t from_seq;            /* SESSION_STREAM: the first seq that wakes it */
    bool from_seq_given;
};
extern const struct msg_form msg_wp_create_form;

/* wp.complete */
struct msg_wp_complete {
    struct slice env_id, id;
    struct slice output;      /* nil: none; JSON text */
    struct slice output_type; /* absent: application/json */
};
extern const struct msg_form msg_wp_complete_form;

/* wp.get: env_id absent only with any_env (the gateway's token callback) */
struct msg_wp_get {
    struct slice env_id, id;
    struct slice kind; /* absent: any kind */
    bool any_env;
};
extern const struct msg_form msg_wp_get_form;

/* wp.list */
struct msg_wp_list {
    struct slice env_id, kind;
    struct slice statuses;        /* raw: [str]; empty: all */
    struct slice idempotency_key; /* nil: any */
    struct slice tags;            /* raw: [str], any of; empty: any */
    struct slice after;           /* nil: from the newest */
    uint64_t limit;               /* 0: 25 */
};
extern const struct msg_form msg_wp_list_form;

/* wp.block */
struct msg_wp_block {
    struct slice env_id, id, run;
};
extern const struct msg_form msg_wp_block_form;

/* wp.completed, on topic "wp.completed.<env_id>" */
struct msg_wp_completed {
    struct slice waitpoint_ids; /* raw: [friendly id] */
};
extern const struct msg_form msg_wp_completed_form;

/* The reply of wp.create (is_cached), wp.complete (completed), wp.get and wp.block. */
struct msg_wp_reply {
    struct slice waitpoint; /* raw: a waitpoint object */
    bool is_cached, is_cached_given;
    bool completed, completed_given;
};
extern const struct msg_form msg_wp_reply_form;

/* The reply of wp.list. */
struct msg_wp_list_reply {
    struct slice waitpoints; /* raw: [waitpoint], newest first */
    bool more;
};
extern const struct msg_form msg_wp_list_reply_form;

#endif
