/*
 * msg_run.c - the field tables of the run.* bodies (msg_run.h), and the reader of their lists.
 */
#include "msg_run.h"

#define ID MSG_RUN_ID_MAX
#define WORKER MSG_RUN_WORKER_MAX
#define REF MSG_RUN_REF_MAX
#define REQ MSGF_REQUIRED
#define NIL MSGF_NIL

#define S struct msg_run_ensure
static const struct msg_field ensure_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, session_id, MSGF_STR, REQ, ID),
    MSGF(S, reason, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_run_ensure_form = MSG_FORM("run.ensure request", ensure_fields);

#define S struct msg_run_ensure_reply
static const struct msg_field ensure_reply_fields[] = {
    MSGF(S, run_id, MSGF_STR, REQ, REF),
    MSGF(S, triggered, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_run_ensure_reply_form = MSG_FORM("run.ensure reply", ensure_reply_fields);

#define S struct msg_run_swap
static const struct msg_field swap_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, session_id, MSGF_STR, REQ, ID),
    MSGF(S, calling_run_id, MSGF_STR, 0, 0),
    MSGF(S, reason, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_run_swap_form = MSG_FORM("run.swap request", swap_fields);

#define S struct msg_run_swap_reply
static const struct msg_field swap_reply_fields[] = {
    MSGF(S, run_id, MSGF_STR, REQ, REF),
    MSGF(S, swapped, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_run_swap_reply_form = MSG_FORM("run.swap reply", swap_reply_fields);

#define S struct msg_run_ref
static const struct msg_field ref_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, run, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_run_get_form = MSG_FORM("run.get request", ref_fields);
const struct msg_form msg_run_cancel_form = MSG_FORM("run.cancel request", ref_fields);

#define S struct msg_run_get_reply
static const struct msg_field get_reply_fields[] = {
    MSGF(S, run, MSGF_RAW, REQ, 0),
};
#undef S
const struct msg_form msg_run_get_reply_form = MSG_FORM("run.get reply", get_reply_fields);

#define S struct msg_run_cancel_reply
static const struct msg_field cancel_reply_fields[] = {
    MSGF(S, id, MSGF_STR, 0, REF),
    MSGF(S, status, MSGF_STR, 0, 0),
    MSGF(S, canceled, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_run_cancel_reply_form = MSG_FORM("run.cancel reply", cancel_reply_fields);

#define S struct msg_run_dequeue
static const struct msg_field dequeue_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),  MSGF(S, task_identifiers, MSGF_RAW, 0, 0),
    MSGF_G(S, max_runs, MSGF_U64, 0, 0), MSGF(S, worker_id, MSGF_STR, REQ, WORKER),
    MSGF(S, lease_ms, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_run_dequeue_form = MSG_FORM("run.dequeue request", dequeue_fields);

#define S struct msg_run_dequeue_reply
static const struct msg_field dequeue_reply_fields[] = {
    MSGF(S, runs, MSGF_RAW, REQ, 0),
};
#undef S
const struct msg_form msg_run_dequeue_reply_form =
    MSG_FORM("run.dequeue reply", dequeue_reply_fields);

#define S struct msg_run_heartbeat
static const struct msg_field heartbeat_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, run, MSGF_STR, 0, 0),
    MSGF(S, worker_id, MSGF_STR, NIL, WORKER),
    MSGF(S, lease_ms, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_run_heartbeat_form = MSG_FORM("run.heartbeat request", heartbeat_fields);

#define S struct msg_run_heartbeat_reply
static const struct msg_field heartbeat_reply_fields[] = {
    MSGF(S, lease_expires_at_ms, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_run_heartbeat_reply_form =
    MSG_FORM("run.heartbeat reply", heartbeat_reply_fields);

#define S struct msg_run_complete
static const struct msg_field complete_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, run, MSGF_STR, 0, 0),
    MSGF(S, worker_id, MSGF_STR, NIL, WORKER),
    MSGF(S, output, MSGF_STR, NIL, 0),
};
#undef S
const struct msg_form msg_run_complete_form = MSG_FORM("run.complete request", complete_fields);

#define S struct msg_run_fail
static const struct msg_field fail_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, run, MSGF_STR, 0, 0),
    MSGF(S, worker_id, MSGF_STR, NIL, WORKER),
    MSGF(S, error, MSGF_STR, NIL, 0),
};
#undef S
const struct msg_form msg_run_fail_form = MSG_FORM("run.fail request", fail_fields);

#define S struct msg_run_fail_reply
static const struct msg_field fail_reply_fields[] = {
    MSGF(S, retrying, MSGF_BOOL, 0, 0),
    MSGF(S, attempt, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_run_fail_reply_form = MSG_FORM("run.fail reply", fail_reply_fields);

#define S struct msg_run_release
static const struct msg_field release_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, worker_id, MSGF_STR, REQ, WORKER),
    MSGF(S, runs, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_run_release_form = MSG_FORM("run.release request", release_fields);

#define S struct msg_run_release_reply
static const struct msg_field release_reply_fields[] = {
    MSGF(S, released, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_run_release_reply_form =
    MSG_FORM("run.release reply", release_reply_fields);

#define S struct msg_run_suspend
static const struct msg_field suspend_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, run, MSGF_STR, 0, 0),
    MSGF(S, worker_id, MSGF_STR, NIL, WORKER),
    MSGF(S, hold, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_run_suspend_form = MSG_FORM("run.suspend request", suspend_fields);

#define S struct msg_run_suspend_reply
static const struct msg_field suspend_reply_fields[] = {
    MSGF(S, suspended, MSGF_BOOL, 0, 0),
    MSGF(S, pending, MSGF_U64, 0, 0),
    MSGF(S, waitpoints, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_run_suspend_reply_form =
    MSG_FORM("run.suspend reply", suspend_reply_fields);

#define S struct msg_run_wake
static const struct msg_field wake_fields[] = {
    MSGF(S, waitpoint_ids, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_run_wake_form = MSG_FORM("run.wake request", wake_fields);

#define S struct msg_run_wake_reply
static const struct msg_field wake_reply_fields[] = {
    MSGF(S, woken, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_run_wake_reply_form = MSG_FORM("run.wake reply", wake_reply_fields);

#define S struct msg_run_queued
static const struct msg_field queued_fields[] = {
    MSGF(S, task_identifier, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_run_queued_form = MSG_FORM("run.queued event", queued_fields);
