/*
 * msg_run.h - the run-manager's run.* bodies, typed (msgcodec.h; the catalogue entries of
 * msg.c say what each field means): every request, the run.queued event, and the flat
 * replies the senders read field by field.
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. A list of strings (task
 * identifiers, run ids, waitpoint ids) is a raw field holding the msgpack array as it
 * stands: msg_raw_strs (msg_raw.h) reads it. What the replies carry of whole objects (a run, a
 * dequeued run, a completed waitpoint) is raw too: those objects are not typed here.
 *
 * Limits are what the run-manager's handlers take. A run named by the caller ("run",
 * calling_run_id) has none: anything that is not a run id is ERR_NOTFOUND, the handler's.
 */
#ifndef TETHER_PROTO_MSG_RUN_H
#define TETHER_PROTO_MSG_RUN_H

#include "msg_raw.h"
#include "msgcodec.h"

#define MSG_RUN_ID_MAX 63      /* env, session and waitpoint ids: cuids (25), room for more */
#define MSG_RUN_WORKER_MAX 128 /* worker ids */
#define MSG_RUN_REF_MAX 159    /* a friendly run id in a reply ("run_" + cuid): the gateway's */

/* run.ensure: reason one of initial|continuation|upgrade|manual (the handler's check) */
struct msg_run_ensure {
    struct slice env_id, session_id, reason;
};
extern const struct msg_form msg_run_ensure_form;

/* run.ensure's answer: the session's run, triggered when it is a new one */
struct msg_run_ensure_reply {
    struct slice run_id;
    bool triggered;
};
extern const struct msg_form msg_run_ensure_reply_form;

/* run.swap */
struct msg_run_swap {
    struct slice env_id, session_id, calling_run_id, reason;
};
extern const struct msg_form msg_run_swap_form;

/* run.swap's answer */
struct msg_run_swap_reply {
    struct slice run_id;
    bool swapped;
};
extern const struct msg_form msg_run_swap_reply_form;

/* run.get and run.cancel: one run of an environment (run absent is the handler's ERR_INVAL) */
struct msg_run_ref {
    struct slice env_id, run;
};
extern const struct msg_form msg_run_get_form;
extern const struct msg_form msg_run_cancel_form;

/* run.get's answer: run is the run object, raw */
struct msg_run_get_reply {
    struct slice run;
};
extern const struct msg_form msg_run_get_reply_form;

/* run.cancel's answer */
struct msg_run_cancel_reply {
    struct slice id, status;
    bool canceled; /* false: it had already finished */
};
extern const struct msg_form msg_run_cancel_reply_form;

/* run.dequeue: max_runs absent is 1 (max_runs_given), lease_ms 0 the configured default */
struct msg_run_dequeue {
    struct slice env_id;
    struct slice task_identifiers; /* raw: [str] */
    uint64_t max_runs;
    bool max_runs_given;
    struct slice worker_id;
    uint64_t lease_ms;
};
extern const struct msg_form msg_run_dequeue_form;

/* run.dequeue's answer: runs is the array of dequeued-run objects, raw */
struct msg_run_dequeue_reply {
    struct slice runs;
};
extern const struct msg_form msg_run_dequeue_reply_form;

/* run.heartbeat: worker_id nil or empty skips the owner check; lease_ms 0 is the default */
struct msg_run_heartbeat {
    struct slice env_id, run, worker_id;
    uint64_t lease_ms;
};
extern const struct msg_form msg_run_heartbeat_form;

/* run.heartbeat's answer */
struct msg_run_heartbeat_reply {
    uint64_t lease_expires_at_ms;
};
extern const struct msg_form msg_run_heartbeat_reply_form;

/* run.complete: output is JSON text or nil (its size limit is the handler's: ERR_TOOBIG) */
struct msg_run_complete {
    struct slice env_id, run, worker_id, output;
};
extern const struct msg_form msg_run_complete_form;

/* run.fail: error is JSON text or nil (as output) */
struct msg_run_fail {
    struct slice env_id, run, worker_id, error;
};
extern const struct msg_form msg_run_fail_form;

/* run.fail's answer */
struct msg_run_fail_reply {
    bool retrying;
    uint64_t attempt;
};
extern const struct msg_form msg_run_fail_reply_form;

/* run.release */
struct msg_run_release {
    struct slice env_id, worker_id;
    struct slice runs; /* raw: [friendly id] */
};
extern const struct msg_form msg_run_release_form;

/* run.release's answer */
struct msg_run_release_reply {
    uint64_t released;
};
extern const struct msg_form msg_run_release_reply_form;

/* run.suspend: hold only checks, never suspends */
struct msg_run_suspend {
    struct slice env_id, run, worker_id;
    bool hold;
};
extern const struct msg_form msg_run_suspend_form;

/* run.suspend's answer: waitpoints is the array of completed-waitpoint objects, raw */
struct msg_run_suspend_reply {
    bool suspended;
    uint64_t pending;
    struct slice waitpoints;
};
extern const struct msg_form msg_run_suspend_reply_form;

/* run.wake */
struct msg_run_wake {
    struct slice waitpoint_ids; /* raw: [internal id] */
};
extern const struct msg_form msg_run_wake_form;

/* run.wake's answer */
struct msg_run_wake_reply {
    uint64_t woken;
};
extern const struct msg_form msg_run_wake_reply_form;

/* run.queued, on topic "run.queued.<env_id>": task_identifier absent wakes every waiter */
struct msg_run_queued {
    struct slice task_identifier;
};
extern const struct msg_form msg_run_queued_form;

#endif
