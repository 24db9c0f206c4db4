/*
 * wp.h - the waitpoint-registry's internal contracts: waitpoint rows
 * (PostgreSQL, table waitpoints), their Redis registration (api contract
 * §12), the drain of session channels, the reconciliation sweep and the
 * timer.
 *
 * Layers, one file each:
 *   main.c    the actor: settings, the store clients, the peers, the timers;
 *   h_create.c wp.create;
 *   h_wait.c  wp.complete, wp.get, wp.list, wp.block, the replies;
 *   drain.c   stream.record events (drain), the sweep, the timer, run.wake;
 *   store.c   every SQL text and the waitpoint object of a row;
 *   envdata.c pure: the envelope data of a record body, array literals.
 * Everything runs on the actor's loop, without blocking: PostgreSQL through
 * db_pg_async, Redis through db_redis_async, other actors through bus_call.
 * A handler replies later, from the callback of its last store call. Every
 * completion is a conditional UPDATE (status = 'PENDING'), so any instance
 * may drain, sweep and fire timeouts: exactly one wins each waitpoint.
 */
#ifndef TETHER_WP_H
#define TETHER_WP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "db_pg_async.h"
#include "db_redis_async.h"
#include "mp.h"
#include "stream.h"
#include "stream_follow.h"

#define WP_ID_MAX 64       /* internal ids (cuids) */
#define WP_FRIENDLY_MAX 80 /* "waitpoint_" + cuid, with room */
#define WP_RUN_MAX 64
#define WP_IDEM_MAX 2048 /* idempotency key bytes (the SDK's bound) */
#define WP_TAGS_MAX 10
#define WP_TAG_MAX 128
#define WP_OUTPUT_MAX (1024u * 1024u + 64u * 1024u) /* output text of one waitpoint */
#define WP_LIST_MAX 100
#define WP_WAKE_MAX 1000 /* waitpoint ids in one run.wake */
#define WP_TOPIC_BUCKETS 4096
#define WP_REDIS_DEFAULT_TTL_MS (7ull * 24 * 3600 * 1000) /* §12: no timeout */

struct wp_cfg {
    long long sweep_interval_ms; /* TETHER_WP_SWEEP_INTERVAL */
    long long timer_tick_ms;     /* TETHER_WP_TIMER_TICK */
    long long batch;             /* TETHER_WP_BATCH */
    long long pg_conns;          /* TETHER_WP_PG_CONNS */
};

/* One channel some pending waiter waits on: subscribed to its stream.record topic. */
struct wp_topic {
    struct wp_topic *next;
    uint64_t gen;  /* registrations so far: a drain unsubscribes only if none came meanwhile */
    uint64_t seen; /* the sweep that last saw a pending waiter on it */
    char env[STREAM_ENV_MAX + 1];
    char io[4];
    char key[STREAM_KEY_MAX + 1];
    char name[STREAM_NAME_MAX];
};

struct wp {
    struct wp_cfg cfg;
    struct actor *a;
    struct loop *loop;
    struct db_pg_async *pg;
    struct db_redis_async *redis;
    struct bus_peer *broker; /* stream.read (race-check, sweep) */
    struct bus_peer *rm;     /* run.wake */
    struct bus_sub *sub;     /* the stream-broker's stream.record events */
    struct bus_pub *events;  /* wp.completed.<env> (gateway long-polls); NULL: none */
    struct wp_topic *topics[WP_TOPIC_BUCKETS];
    unsigned ntopics;
    uint64_t sweep_timer, tick_timer, renew_timer;
    char holder[STREAM_FOLLOW_HOLDER_MAX + 1]; /* of its follow leases (stream_follow.h) */
    uint64_t sweep_gen;
    bool sweeping, firing;
    uint64_t drained, swept, fired; /* waitpoints completed by each path (logs, tests) */
};

struct wp *wp_of(struct actor *a);

/*
 * The handlers (actor.h's contract): each decodes its body (proto/msg_wp.h) and answers from
 * the callback of its last statement; a body that is no such request, or a statement that
 * cannot be sent, is returned for the dispatcher to answer.
 */

/* ---- h_create.c ---- */
err_t wp_on_create(struct actor *a, struct bus_req *req);

/* ---- h_wait.c ---- */
err_t wp_on_complete(struct actor *a, struct bus_req *req);
err_t wp_on_get(struct actor *a, struct bus_req *req);
err_t wp_on_list(struct actor *a, struct bus_req *req);
err_t wp_on_block(struct actor *a, struct bus_req *req);

/* A decoded string field copied into buf: "" when absent or nil; false when it holds a NUL or
 * does not fit. */
bool wp_cstr(struct slice s, char *buf, size_t cap);
/* True for a waitpoint kind: MANUAL, SESSION_STREAM or DURATION. */
bool wp_kind_valid(const char *k);
struct msg_wp_reply;
/* Replies m (its flags as the caller set them) with its waitpoint: row 0 of r from col0. */
void wp_reply_row(struct bus_req *req, const PGresult *r, int col0, struct msg_wp_reply *m);

/* ---- drain.c ---- */

/* Subscribes to the channel's topic (if not yet) and counts a registration on it. */
void wp_topic_want(struct wp *wp, const char *env, const char *key, const char *io);
/* Opens the event subscription and arms the sweep and the timer. */
err_t wp_drain_start(struct wp *wp);
/* Tells the run-manager that these waitpoints (internal ids, n <= WP_WAKE_MAX) completed. */
void wp_wake(struct wp *wp, const char *const *ids, unsigned n);
/*
 * The wake for a statement's result whose column col holds internal ids, and the
 * wp.completed.<env> events: the environment is column env_col, or env when env_col < 0.
 */
void wp_wake_result(struct wp *wp, const PGresult *res, int col, int env_col, const char *env);
/* Registers id in the channel's Redis set, the TTL only ever growing (§12). Logged, never fails. */
void wp_redis_register(struct wp *wp, const char *env, const char *key, const char *io,
                       const char *id, uint64_t ttl_ms);
/* Removes id from the channel's set (after a race-check completion). */
void wp_redis_remove(struct wp *wp, const char *env, const char *key, const char *io,
                     const char *id);

/* ---- store.c ---- */

/* The columns of a waitpoint object, in wp_put_row's order (of table alias w). */
extern const char wp_cols[];
#define WP_NCOLS 18 /* columns in wp_cols; the internal id is the last */
/* Writes row of res (starting at column col0) as a waitpoint object (proto/msg.c). */
void wp_put_row(struct mp_writer *w, const PGresult *res, int row, int col0);

/* ---- envdata.c: pure ---- */

/*
 * The output a session-channel record completes its waiters with: the `data` member of the
 * record's JSON envelope ({"data": ..., "id": ...}): a string as its text, anything else as
 * its JSON text; a body that is no such envelope as itself. Returns malloc'd NUL-terminated
 * valid UTF-8 without NUL bytes (invalid bytes become U+FFFD), or NULL when out of memory.
 */
char *wp_envelope_data(const char *body, size_t n);

/*
 * Writes items as a PostgreSQL array literal ({"a","b"}) into a malloc'd string; NULL when an
 * item holds a NUL. The literal travels as a parameter, never as SQL.
 */
char *wp_pg_array(const struct slice *items, unsigned n);

#endif
