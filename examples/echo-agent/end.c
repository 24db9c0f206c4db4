/*
 * end.c - the end of a run: sleeping on .in (a session-stream waitpoint,
 * then suspend), complete, fail, and the hand-over to a continuation run.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jlog.h"
#include "run.h"

/* POSTs a JSON body (stolen) to url with the secret key; EA_OK with a 2xx answer in *rs. */
static ea_err_t run_post_key(struct ea_run *r, const char *url, json_t *body, const char *what,
                             struct http_resp *rs)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        run_why(r, "%s: out of memory", what);
        return EA_ERR_NOMEM;
    }
    struct http_req rq = {.method = "POST",
                          .url = url,
                          .bearer = r->ag->cfg.key,
                          .content_type = "application/json",
                          .body = text,
                          .body_len = strlen(text),
                          .timeout_ms = 10000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_io,
                          .abort_arg = r};
    ea_err_t rc = run_call(r, &r->api, &rq, rs, RUN_TRIES, what);
    free(text);
    return rc;
}

/*
 * .in was idle: make a waitpoint on its next record (after the cursor) and block the run on
 * it, so that run_main suspends the run instead of completing it. false (logged) when either
 * step failed: the run then completes as an idle run does.
 */
bool run_sleep_prepare(struct ea_run *r)
{
    char url[RUN_URL_MAX], wp[128];
    struct http_resp rs = HTTP_RESP_ZERO;
    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%ds", r->ag->cfg.sleep_s);
    json_t *body =
        json_pack("{s:s,s:s,s:s}", "session", r->session, "io", "in", "timeout", timeout);
    if (body && r->have_seq)
        json_object_set_new(body, "lastSeqNum", json_integer((json_int_t)r->last_seq));
    bool ok = false;
    if (run_url(url, "%s/api/v1/runs/%s/session-streams/wait", r->ag->cfg.url, r->id_enc) ==
            EA_OK &&
        run_post_key(r, url, body, "session-stream wait", &rs) == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        const char *id = json_string_value(json_object_get(ans, "waitpointId"));
        snprintf(wp, sizeof(wp), "%s", id ? id : "");
        json_decref(ans);
        http_resp_fini(&rs);
        rs = (struct http_resp)HTTP_RESP_ZERO;
        if (wp[0] && strspn(wp, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(wp) &&
            run_url(url, "%s/engine/v1/runs/%s/waitpoints/tokens/%s/wait", r->ag->cfg.url,
                    r->id_enc, wp) == EA_OK &&
            run_post_key(r, url, json_object(), "block on the waitpoint", &rs) == EA_OK)
            ok = true;
    }
    http_resp_fini(&rs);
    if (!ok)
        LOG_WARN("run.sleep_failed", r->id, "could not wait on .in (%s): completing the run",
                 r->why);
    return ok;
}

/*
 * Gives the run back (POST /suspend): true when it is WAITING now. false: a record came
 * meanwhile (nothing pending), or the call failed; the run then completes and hands over.
 */
bool run_suspend(struct ea_run *r)
{
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *body = json_pack("{s:s}", "workerId", r->ag->cfg.worker_id);
    bool suspended = false;
    if (run_post_route(r, "suspend", body, &rs) == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        suspended = json_is_true(json_object_get(ans, "suspended"));
        json_decref(ans);
    } else {
        LOG_WARN("run.suspend_failed", r->id, "could not suspend the run: %s", r->why);
    }
    json_decref(body);
    http_resp_fini(&rs);
    if (suspended)
        LOG_INFO("run.suspended", r->id,
                 "asleep on .in after %u turn(s): no worker holds it until the next message",
                 r->turns);
    return suspended;
}

/* ---- the end of a run ---- */

bool run_complete(struct ea_run *r)
{
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *body = json_pack("{s:s,s:{s:i}}", "workerId", r->ag->cfg.worker_id, "output", "turns",
                             (int)r->turns);
    ea_err_t rc = run_post_route(r, "complete", body, &rs);
    if (rc == EA_OK)
        LOG_INFO("run.completed", r->id, "completed after %u turn(s)", r->turns);
    else if (rc == EA_ERR_HTTP && rs.status == 409)
        LOG_WARN("run.lost", r->id, "complete answered 409: the run was taken back meanwhile");
    else if (rc != EA_ERR_ABORTED && atomic_load(&r->ag->stopping))
        /* the tree may be stopping at the same moment as the agent (make run's Ctrl-C) */
        LOG_WARN("run.complete_failed", r->id,
                 "could not complete the run while stopping: %s; it is left to its lease", r->why);
    else if (rc != EA_ERR_ABORTED)
        LOG_ERROR("run.complete_failed", r->id, "could not complete the run: %s", r->why);
    json_decref(body);
    http_resp_fini(&rs);
    return rc == EA_OK;
}

/* Fails the run with r->why. With attempts left the server queues it again. */
void run_fail(struct ea_run *r)
{
    struct http_resp rs = HTTP_RESP_ZERO;
    char why[sizeof(r->why)];
    snprintf(why, sizeof(why), "%s", r->why[0] ? r->why : "unknown error");
    json_t *body = json_pack("{s:s,s:{s:s,s:s}}", "workerId", r->ag->cfg.worker_id, "error",
                             "message", why, "name", "EchoAgentError");
    ea_err_t rc = run_post_route(r, "fail", body, &rs);
    if (rc == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        LOG_ERROR("run.failed", r->id, "failed after %u turn(s)%s: %s", r->turns,
                  json_is_true(json_object_get(ans, "retrying")) ? ", queued again" : "", why);
        json_decref(ans);
    } else if (rc != EA_ERR_ABORTED) {
        LOG_ERROR("run.failed", r->id, "%s; could not report it: %s", why, r->why);
    }
    json_decref(body);
    http_resp_fini(&rs);
}

/*
 * After the run completed: a message appended while it was still live (in
 * the moment between the idle end and the completion, or during a shutdown)
 * triggered no continuation, since the session had a live run. When .in
 * holds unanswered messages, end-and-continue swaps in a continuation run;
 * if a continuation exists already (the session's run is not this one any
 * more), the server answers swapped: false and nothing changes.
 */
void run_hand_over(struct ea_run *r)
{
    char url[RUN_URL_MAX], after[48] = "";
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *doc = NULL, *rec, *body = NULL;
    size_t i, pending = 0;
    if (r->have_seq)
        snprintf(after, sizeof(after), "?afterEventId=%" PRIu64, r->last_seq);
    if (run_url(url, "%s/realtime/v1/sessions/%s/in/records%s", r->ag->cfg.url, r->session_enc,
                after) != EA_OK)
        return;
    struct http_req rq = {.method = "GET",
                          .url = url,
                          .bearer = run_bearer(r),
                          .timeout_ms = 30000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_final,
                          .abort_arg = r};
    ea_err_t rc = run_call(r, &r->api, &rq, &rs, RUN_TRIES, "reading .in");
    if (rc == EA_OK &&
        !(doc = json_loadb(rs.body ? rs.body : "", rs.body_len, JSON_ALLOW_NUL, NULL))) {
        run_why(r, "reading .in: the answer is not JSON");
        rc = EA_ERR_PROTO;
    }
    if (rc != EA_OK) {
        LOG_WARN("run.handover_failed", r->id,
                 "could not check .in for messages left unanswered: %s", r->why);
        http_resp_fini(&rs);
        return;
    }
    http_resp_fini(&rs);
    /* the same messages as the follower answers: /records shows control records with their
     * headers and an empty data, and unwraps the envelope */
    json_array_foreach(json_object_get(doc, "records"), i, rec)
    {
        json_t *data = json_object_get(rec, "data");
        if (!run_is_control(json_object_get(rec, "headers")) && data &&
            !(json_is_string(data) && json_string_length(data) == 0))
            pending++;
    }
    json_decref(doc);
    if (pending == 0)
        return;
    body = json_pack("{s:s,s:s}", "callingRunId", r->id, "reason", "continuation");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text || run_url(url, "%s/api/v1/sessions/%s/end-and-continue", r->ag->cfg.url,
                         r->session_enc) != EA_OK) {
        free(text);
        return;
    }
    struct http_req eq = {.method = "POST",
                          .url = url,
                          .bearer = run_bearer(r),
                          .content_type = "application/json",
                          .body = text,
                          .body_len = strlen(text),
                          .timeout_ms = 15000,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = run_abort_final,
                          .abort_arg = r};
    if (run_call(r, &r->api, &eq, &rs, RUN_TRIES, "end-and-continue") == EA_OK) {
        json_t *ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        const char *next = json_string_value(json_object_get(ans, "runId"));
        if (json_is_true(json_object_get(ans, "swapped")))
            LOG_INFO("run.continued", r->id,
                     "%zu message(s) on .in are unanswered: continuation %s queued", pending,
                     next ? next : "(unknown)");
        else
            LOG_INFO("run.continued", r->id,
                     "%zu message(s) on .in are unanswered; run %s has the session already",
                     pending, next ? next : "(unknown)");
        json_decref(ans);
    } else {
        LOG_WARN("run.handover_failed", r->id,
                 "%zu message(s) on .in are unanswered and no continuation was queued: %s", pending,
                 r->why);
    }
    free(text);
    http_resp_fini(&rs);
}
