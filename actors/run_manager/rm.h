/*
 * rm.h - the run-manager's internal contracts: task runs, the session-run
 * binding (session_bindings and session_runs, which nothing else writes),
 * the worker protocol and the sweeps. Bodies are typed (proto/msg_run.h).
 *
 * Layers, one file each:
 *   main.c       the actor: routes, settings, the events socket, the sweep timer;
 *   claim.c      run.ensure and run.swap: api contract §11.2 / §11.3, exactly;
 *   trigger.c    making a run from a session's triggerConfig; run.queued events;
 *   worker.c     run.get, run.cancel and the worker messages (dequeue, heartbeat,
 *                complete, fail, release);
 *   sweep.c      leases, maxDuration, ttl and orphaned runs, once a second;
 *   run_store.c  every SQL statement (PostgreSQL through db_pg_exec, parameters only);
 *   check.c      pure functions: statuses, ttl parsing, ids, array literals.
 * Everything runs on the actor's single loop thread; store calls block
 * (bounded by statement_timeout). Several run-manager instances may run at
 * once: every write is a single statement whose WHERE clause decides (the
 * optimistic claim, FOR UPDATE SKIP LOCKED for queues and sweeps). The
 * non-idempotent messages (main.c's once routes) run in one transaction
 * that also keeps their answer for a re-send (actors/lib/actor.c), so the
 * row locks their statements take are held until it commits; the decisions
 * stay in the WHERE clauses, which read the latest committed rows. Payloads, outputs and
 * errors are never logged: logs name runs and sessions by id.
 */
#ifndef TETHER_RM_H
#define TETHER_RM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "db_pg.h"
#include "err.h"
#include "ids.h"
#include "mp.h"
#include "msg_run.h"

#define RM_ID_MAX 64        /* internal ids (cuids, 25 chars); room for foreign ones */
#define RM_RUN_MAX 64       /* friendly run ids: "run_" + cuid */
#define RM_KEY_MAX 1024     /* session friendly or external ids, task identifiers (+ NUL) */
#define RM_WORKER_MAX 129   /* worker ids: 1-128 bytes + NUL */
#define RM_TASKS_MAX 100    /* task identifiers in one dequeue */
#define RM_DEQUEUE_MAX 50   /* runs in one dequeue or release */
#define RM_CLAIM_ATTEMPTS 3 /* §11.2: a fourth attempt is an error */
#define RM_LEASE_MIN_MS 1000
#define RM_LEASE_MAX_MS 3600000
#define RM_JSON_MAX (4u * 1024 * 1024) /* output or error text of one run */

/* Settings (main.c's table; docs/config.md). */
struct rm_cfg {
    long long lease_default_ms;  /* TETHER_RM_LEASE_DEFAULT */
    long long sweep_interval_ms; /* TETHER_RM_SWEEP_INTERVAL */
    long long sweep_batch;       /* TETHER_RM_SWEEP_BATCH */
    long long orphan_grace_ms;   /* TETHER_RM_ORPHAN_GRACE */
};

#define RM_PENDING_MAX 64 /* run.queued events one request defers (distinct env and task) */

/* A run.queued event waiting for its request's commit. */
struct rm_pending {
    char env_id[RM_ID_MAX];
    char task[RM_KEY_MAX];
};

/* The process's state (actor.state). */
struct rm {
    struct rm_cfg cfg;
    struct db_pg *pg;
    struct bus_pub *events; /* NULL: nothing is published (tests) */
    struct loop *loop;      /* NULL: no sweep timer (tests) */
    uint64_t sweep_timer;
    bool defer_events; /* inside a once route's transaction: events wait for its commit */
    unsigned npending;
    struct rm_pending pending[RM_PENDING_MAX];
};

/* A session as the claim reads it (from the writer: we have no replica). */
struct rm_session {
    char id[RM_ID_MAX];
    char friendly_id[RM_ID_MAX + 16];
    char task_identifier[RM_KEY_MAX];
    char current_run_id[RM_ID_MAX]; /* internal; "" when none */
    int64_t version;                /* current_run_version */
    bool current_alive;             /* the current run exists and its status is not final */
    bool base_payload_ok;           /* triggerConfig.basePayload is a JSON object */
    char ttl_json[128];             /* triggerConfig.ttl as JSON text; "" when absent */
    bool closed;                    /* closed_at is set */
    bool expired;                   /* expires_at has passed */
};

/* What run.ensure and run.swap answer. */
struct rm_claim {
    char run_id[RM_RUN_MAX]; /* friendly */
    bool triggered;          /* ensure: a new run; swap: swapped */
    const char *why;         /* ensure's ERR_CONFLICT: why no run was claimed (NULL: lost races) */
};

/* ---- claim.c ---- */

/*
 * ensureRunForSession (§11.2): the session's run if it is alive, else a new
 * run triggered first and then claimed with the conditional update on
 * current_run_version. A lost claim cancels the new run, re-reads the
 * session and returns its run if alive, else tries again (3 attempts in
 * all). reason is one of initial|continuation|upgrade|manual (checked by
 * the caller). ERR_NOTFOUND (no such session in env_id), ERR_INVAL
 * (basePayload is not an object), ERR_CONFLICT (3 lost claims),
 * ERR_UNAVAIL/ERR_INTERNAL from the store.
 */
err_t rm_ensure(struct rm *rm, const char *env_id, const char *session_id, const char *reason,
                struct rm_claim *out);

/*
 * swapSessionRun (§11.3): always triggers a continuation of calling_run
 * (friendly id), then claims with current_run_id = calling AND the version
 * read. Lost: cancels its run and answers the session's current run (or
 * calling_run when none) with triggered (= swapped) false. *why is set on
 * ERR_NOTFOUND to the text for the caller.
 */
err_t rm_swap(struct rm *rm, const char *env_id, const char *session_id, const char *calling_run,
              const char *reason, struct rm_claim *out, const char **why);

err_t rm_on_run_ensure(struct actor *a, struct bus_req *req);
/* run.ensure answered without a transaction when the session's run is alive (actor_route.fast). */
bool rm_fast_run_ensure(struct actor *a, struct bus_req *req);
err_t rm_on_run_swap(struct actor *a, struct bus_req *req);

/* ---- trigger.c ---- */

/*
 * Inserts a PENDING run for session s (its triggerConfig read now, in the
 * same statement): payload = basePayload ∪ {idleTimeoutInSeconds} ∪
 * {sessionId}; with prev_run (friendly id, or NULL) also continuation:
 * true and previousRunId, without message, messages and trigger. Writes
 * the new internal id into run_id (RM_ID_MAX). ERR_NOTFOUND when the
 * session is gone. Publishes nothing: the run is not the session's yet.
 */
err_t rm_trigger(struct rm *rm, const char *env_id, const struct rm_session *s,
                 const char *prev_run, char *run_id);

/*
 * Publishes run.queued.<env_id> {task_identifier}; failures are logged, never
 * returned. Inside a once route's transaction (rm->defer_events) the event is
 * kept (once per environment and task) until rm_publish_pending, after the
 * commit; when RM_PENDING_MAX are kept already it goes at once (an early
 * wake-up costs a worker one empty dequeue).
 */
void rm_publish_queued(struct rm *rm, const char *env_id, const char *task_identifier);
/* Publishes the kept events and forgets them. */
void rm_publish_pending(struct rm *rm);

/* ---- worker.c: handlers, and the fields every run message shares ---- */

/*
 * env_id and run (a friendly run id) of a decoded request as C strings (RM_ID_MAX and
 * RM_RUN_MAX bytes). false when unusable, having answered: ERR_INVAL (env_id holds a NUL, run
 * is absent) or ERR_NOTFOUND "run not found" (run is no run id).
 */
bool rm_run_args(struct bus_req *req, struct slice env, struct slice ref, char *env_id, char *run);
/* An optional worker_id into buf (RM_WORKER_MAX): *worker_id NULL when absent, nil or empty
 * (no owner check). false when it holds a NUL. */
bool rm_worker_arg(struct slice s, char *buf, const char **worker_id);

err_t rm_on_run_get(struct actor *a, struct bus_req *req);
err_t rm_on_run_cancel(struct actor *a, struct bus_req *req);
err_t rm_on_run_dequeue(struct actor *a, struct bus_req *req);
err_t rm_on_run_heartbeat(struct actor *a, struct bus_req *req);
err_t rm_on_run_complete(struct actor *a, struct bus_req *req);
err_t rm_on_run_fail(struct actor *a, struct bus_req *req);
err_t rm_on_run_release(struct actor *a, struct bus_req *req);

/* ---- wait.c: runs that wait on waitpoints ---- */

err_t rm_on_run_suspend(struct actor *a, struct bus_req *req);
err_t rm_on_run_wake(struct actor *a, struct bus_req *req);
/* Queues again up to batch waiting runs none of whose waitpoints is pending. */
unsigned rm_wait_sweep(struct rm *rm, long long batch);
/*
 * The completed waitpoints of the runs of a dequeue result (friendly ids in column 0), each
 * handed over once (its block deleted): rows (run, waitpoint columns); *res NULL when none.
 */
err_t rm_wait_resumes(struct rm *rm, PGresult *dq, PGresult **res);
/* How many of resumes belong to run, and the "waitpoints" field of its dequeued object. */
unsigned rm_wait_resume_count(PGresult *resumes, const char *run);
void rm_wait_resume_put(struct mp_writer *w, PGresult *resumes, const char *run);

/* ---- sweep.c ---- */

/* Arms the sweep timer on rm->loop (every TETHER_RM_SWEEP_INTERVAL). */
void rm_sweep_start(struct rm *rm);
/* Runs every sweep once; returns how many runs changed. */
unsigned rm_sweep_once(struct rm *rm);

/* The actor's state. */
static inline struct rm *rm_of(struct actor *a)
{
    return a->state;
}

/* ---- check.c: pure ---- */

/* True for the final statuses of §11.1 (a run in one is dead). */
bool rm_status_is_final(const char *status);
/* The public name (RunStatus of the SDK) of an internal status; the input if unknown. */
const char *rm_status_public(const char *status);
/*
 * Parses triggerConfig.ttl given as JSON text: an integer >= 0 (seconds) or
 * a string "<n>", "<n>s", "<n>m", "<n>h" or "<n>d". True with *seconds
 * set when a ttl applies; false for anything else (no ttl: absent, null,
 * 0, malformed, or beyond a year).
 */
bool rm_ttl_parse(const char *json, long long *seconds);
/* The internal id of a friendly run id ("run_" + cuid) into id (RM_ID_MAX); false if not one. */
bool rm_run_ref_parse(struct slice s, char *id);
/* True for the session_runs reasons: initial, continuation, upgrade, manual. */
bool rm_reason_valid(const char *reason);
/*
 * Writes items as a PostgreSQL array literal ({"a","b"}, each element
 * quoted and escaped) into out (cap bytes); false if it does not fit or
 * an item holds a NUL. The literal travels as a parameter, never as SQL.
 */
bool rm_pg_array(const struct slice *items, unsigned n, char *out, size_t cap);

/* ---- run_store.c: SQL ----
 * Every function returns OK, the codes it names, or ERR_UNAVAIL (store
 * unreachable) / ERR_INTERNAL (statement failed); db_pg has logged those.
 */

/* Reads session session_id of env_id with the liveness of its current run. ERR_NOTFOUND. */
err_t rm_store_session_read(struct db_pg *pg, const char *env_id, const char *session_id,
                            struct rm_session *s);
/*
 * The same read on the non-blocking pool: fn gets the result, which rm_store_session_of turns
 * into s (ERR_NOTFOUND for no row). On an error return fn is never called.
 */
err_t rm_store_session_read_async(struct db_pg_async *p, const char *env_id, const char *session_id,
                                  db_pg_async_fn fn, void *arg);
err_t rm_store_session_of(const PGresult *r, struct rm_session *s);
/* The SQL of rm_trigger (see there); ttl_s < 0 = no ttl. */
err_t rm_store_run_insert(struct db_pg *pg, const char *env_id, const char *session_id,
                          const char *prev_run, long long ttl_s, char *run_id);
/*
 * The optimistic claim: current_run_id = run_id, version + 1 where the
 * version is still version (and, for a swap, current_run_id is still
 * calling_id). *won tells whether the row changed.
 */
err_t rm_store_session_claim(struct db_pg *pg, const char *session_id, const char *run_id,
                             int64_t version, const char *calling_id, bool *won);
/* Appends the audit row of a won claim. */
err_t rm_store_session_run_add(struct db_pg *pg, const char *session_id, const char *run_id,
                               const char *reason);
/* Cancels run_id (internal) if still alive, with error {"message": why}. */
err_t rm_store_run_cancel_id(struct db_pg *pg, const char *run_id, const char *why);
/* The internal id of friendly run id in env_id into id (RM_ID_MAX). ERR_NOTFOUND. */
err_t rm_store_run_lookup(struct db_pg *pg, const char *env_id, const char *friendly, char *id);

/* Writes a run object (proto/msg.c) from row 0 of an RM_RUN_COLS result. */
void rm_run_put(struct mp_writer *w, PGresult *r);
/* One run (RM_RUN_COLS) or none; the caller PQclear()s. */
err_t rm_store_run_get(struct db_pg *pg, const char *env_id, const char *friendly, PGresult **res);
/* Cancels a live run: *found, *canceled (false: already final) and its status after. */
err_t rm_store_run_cancel(struct db_pg *pg, const char *env_id, const char *friendly, bool *found,
                          bool *canceled, char *status, size_t cap);
/* Writes row of a dequeue result as a dequeued-run object (proto/msg.c, run.dequeue), with
 * `extra` more fields for the caller to write after it. */
void rm_dequeued_put(struct mp_writer *w, PGresult *r, int row, uint32_t extra);
/* Leases up to max queued runs (rm_dequeued_put's rows), oldest first; the caller PQclear()s. */
err_t rm_store_dequeue(struct db_pg *pg, const char *env_id, const char *tasks_array, unsigned max,
                       const char *worker_id, uint64_t lease_ms, PGresult **res);
/*
 * Extends the lease of a run leased to worker_id (NULL: any owner) and not
 * yet expired. ERR_NOTFOUND (no such run), ERR_CONFLICT (not leased to it).
 */
err_t rm_store_heartbeat(struct db_pg *pg, const char *env_id, const char *friendly,
                         const char *worker_id, uint64_t lease_ms, uint64_t *expires_ms);
/* COMPLETED_SUCCESSFULLY with output (JSON text or NULL). ERR_NOTFOUND, ERR_CONFLICT. */
err_t rm_store_complete(struct db_pg *pg, const char *env_id, const char *friendly,
                        const char *worker_id, const char *output);
/*
 * A failed attempt: PENDING with attempt + 1 while attempts remain (then
 * *retrying, and task receives the task identifier, RM_KEY_MAX), else
 * COMPLETED_WITH_ERRORS. ERR_NOTFOUND, ERR_CONFLICT.
 */
err_t rm_store_fail(struct db_pg *pg, const char *env_id, const char *friendly,
                    const char *worker_id, const char *error, bool *retrying, uint64_t *attempt,
                    char *task);
/* Queues again the runs (array literal of friendly ids) still DEQUEUED by worker_id. */
err_t rm_store_release(struct db_pg *pg, const char *env_id, const char *worker_id,
                       const char *runs_array, PGresult **res);

/* Sweeps: each one statement over at most batch runs. */
err_t rm_store_sweep_leases(struct db_pg *pg, long long batch, PGresult **res);
err_t rm_store_sweep_durations(struct db_pg *pg, long long batch, unsigned *n);
err_t rm_store_sweep_ttls(struct db_pg *pg, long long batch, unsigned *n);
err_t rm_store_sweep_orphans(struct db_pg *pg, long long batch, long long grace_ms, unsigned *n);

#endif
