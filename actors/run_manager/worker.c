/*
 * worker.c - run.get, run.cancel and the worker protocol: dequeue (a
 * lease), heartbeat (extend it), complete, fail (retry while attempts
 * remain) and release (give runs back untouched).
 *
 * A lease is (lease_owner, lease_expires_at) on the row. Every write names
 * the run, its environment and, when the worker gave one, its id, in one
 * UPDATE: a run that was cancelled, finished, or taken back by the lease
 * sweep is ERR_CONFLICT to the old worker, which must stop. Every message
 * is scoped by env_id: a run of another environment is ERR_NOTFOUND.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "rm.h"

#define RM_TASK_ID_MAX 256 /* bytes of one task identifier in a dequeue */
#define RM_NOT_LEASED "run is no longer leased to this worker"
#define RM_NO_RUN "run not found"

bool rm_run_args(struct bus_req *req, struct slice env, struct slice ref, char *env_id, char *run)
{
    char id[RM_ID_MAX];
    if (!msg_cstr(env, env_id, RM_ID_MAX) || !ref.p) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id and run (strings) are required");
        return false;
    }
    /* every run id we hand out is "run_" + cuid; anything else names no run */
    if (!rm_run_ref_parse(ref, id)) {
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_RUN);
        return false;
    }
    memcpy(run, ref.p, ref.n);
    run[ref.n] = '\0';
    return true;
}

/* The lease length asked for: 0 means the configured default. false when out of bounds. */
static bool rm_lease_arg(struct rm *rm, uint64_t asked, uint64_t *lease_ms)
{
    *lease_ms = asked ? asked : (uint64_t)rm->cfg.lease_default_ms;
    return *lease_ms >= RM_LEASE_MIN_MS && *lease_ms <= RM_LEASE_MAX_MS;
}

bool rm_worker_arg(struct slice s, char *buf, const char **worker_id)
{
    *worker_id = NULL;
    if (!s.p)
        return true;
    if (!msg_cstr(s, buf, RM_WORKER_MAX))
        return false;
    if (buf[0])
        *worker_id = buf;
    return true;
}

/* A JSON text field (output, error) copied with a NUL (malloc'd, NULL when absent or nil);
 * ERR_TOOBIG over RM_JSON_MAX, ERR_INVAL with a NUL inside. */
static err_t rm_json_arg(struct slice s, char **out)
{
    *out = NULL;
    if (!s.p)
        return OK;
    if (s.n > RM_JSON_MAX)
        return ERR_TOOBIG;
    if (memchr(s.p, '\0', s.n))
        return ERR_INVAL;
    *out = xstrndup(s.p, s.n);
    return OK;
}

static void rm_reply_empty(struct bus_req *req)
{
    static const uint8_t empty_map = 0x80;
    (void)bus_reply(req, &empty_map, 1);
}

/* NOTFOUND, CONFLICT or a store failure of a worker write. */
static void rm_reply_worker_err(struct bus_req *req, const char *op, err_t rc)
{
    if (rc == ERR_NOTFOUND)
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_RUN);
    else if (rc == ERR_CONFLICT)
        (void)bus_reply_err(req, ERR_CONFLICT, RM_NOT_LEASED);
    else
        actor_reply_store_err(req, op, rc);
}

/* ---- run.get, run.cancel ---- */

err_t rm_on_run_get(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], run[RM_RUN_MAX];
    struct msg_run_ref m;
    struct mp_writer w;
    PGresult *r;
    err_t rc = msg_decode(&msg_run_get_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_run_args(req, m.env_id, m.run, env_id, run))
        return OK;
    rc = rm_store_run_get(rm_of(a)->pg, env_id, run, &r);
    if (rc != OK) {
        actor_reply_store_err(req, "run.get", rc);
        return OK;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_RUN);
        return OK;
    }
    mp_writer_init(&w);
    rm_run_put(&w, r);
    struct msg_run_get_reply out = {{mp_writer_data(&w), mp_writer_len(&w)}};
    (void)bus_reply_msg(req, &msg_run_get_reply_form, &out, &w);
    mp_writer_fini(&w);
    PQclear(r);
    return OK;
}

err_t rm_on_run_cancel(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], status[32] = "";
    bool found, canceled;
    struct msg_run_ref m;
    err_t rc = msg_decode(&msg_run_cancel_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_run_args(req, m.env_id, m.run, env_id, run))
        return OK;
    rc = rm_store_run_cancel(rm_of(a)->pg, env_id, run, &found, &canceled, status, sizeof(status));
    if (rc != OK) {
        actor_reply_store_err(req, "run.cancel", rc);
        return OK;
    }
    if (!found) {
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_RUN);
        return OK;
    }
    if (canceled)
        LOG_INFO("run.canceled", "%s canceled", run);
    /* cancelling a finished run changes nothing and is not an error (as upstream) */
    struct msg_run_cancel_reply out = {msg_str(run), msg_str(rm_status_public(status)), canceled};
    (void)bus_reply_msg(req, &msg_run_cancel_reply_form, &out, NULL);
    return OK;
}

/* ---- run.dequeue ---- */

err_t rm_on_run_dequeue(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    const struct envelope *e = bus_req_env(req);
    struct slice tasks[RM_TASKS_MAX];
    char env_id[RM_ID_MAX], worker[RM_WORKER_MAX];
    unsigned ntasks = 0;
    uint64_t lease_ms;
    struct msg_run_dequeue m;
    struct mp_writer w;
    PGresult *r;

    err_t rc = msg_decode(&msg_run_dequeue_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!msg_cstr(m.env_id, env_id, sizeof(env_id)) ||
        !msg_cstr(m.worker_id, worker, sizeof(worker)))
        return ERR_INVAL;
    if (msg_raw_strs(m.task_identifiers, tasks, RM_TASKS_MAX, 0, SIZE_MAX, &ntasks) != OK ||
        ntasks == 0) {
        (void)bus_reply_err(req, ERR_INVAL, "task_identifiers must be 1-100 strings");
        return OK;
    }
    for (unsigned i = 0; i < ntasks; i++) {
        if (tasks[i].n == 0 || tasks[i].n > RM_TASK_ID_MAX) {
            (void)bus_reply_err(req, ERR_INVAL, "a task identifier must be 1-256 bytes");
            return OK;
        }
    }
    uint64_t max_runs = m.max_runs_given ? m.max_runs : 1;
    if (max_runs < 1 || max_runs > RM_DEQUEUE_MAX) {
        (void)bus_reply_err(req, ERR_INVAL, "max_runs must be 1-50");
        return OK;
    }
    if (!rm_lease_arg(rm, m.lease_ms, &lease_ms)) {
        (void)bus_reply_err(req, ERR_INVAL, "lease_ms must be 1000-3600000 (or 0: the default)");
        return OK;
    }
    /* each element quoted and escaped: twice the bytes at worst, plus quotes and commas */
    size_t cap = (size_t)ntasks * (2 * RM_TASK_ID_MAX + 3) + 3;
    char *array = xmalloc(cap);
    if (!rm_pg_array(tasks, ntasks, array, cap)) {
        free(array);
        (void)bus_reply_err(req, ERR_INVAL, "a task identifier must not contain NUL");
        return OK;
    }
    rc = rm_store_dequeue(rm->pg, env_id, array, (unsigned)max_runs, worker, lease_ms, &r);
    free(array);
    if (rc != OK) {
        actor_reply_store_err(req, "run.dequeue", rc);
        return OK;
    }
    int n = PQntuples(r);
    if (n == 0)
        actor_once_nothing_done(a); /* an empty poll leases nothing: no answer worth keeping */
    PGresult *resumes = NULL; /* a run resumed from a wait: its completed waitpoints (wait.c) */
    if (rm_wait_resumes(rm, r, &resumes) != OK)
        resumes = NULL; /* kept for the next dequeue of the run: nothing is lost */
    mp_writer_init(&w);
    mp_put_array(&w, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        bool resumed = rm_wait_resume_count(resumes, PQgetvalue(r, i, 0)) > 0;
        rm_dequeued_put(&w, r, i, resumed ? 1 : 0);
        if (resumed)
            rm_wait_resume_put(&w, resumes, PQgetvalue(r, i, 0));
        LOG_DEBUG("run.dequeued", "%s (attempt %s) leased to worker %s for %" PRIu64 " ms",
                  PQgetvalue(r, i, 0), PQgetvalue(r, i, 3), worker, lease_ms);
    }
    struct msg_run_dequeue_reply out = {{mp_writer_data(&w), mp_writer_len(&w)}};
    (void)bus_reply_msg(req, &msg_run_dequeue_reply_form, &out, &w);
    mp_writer_fini(&w);
    PQclear(r);
    if (resumes)
        PQclear(resumes);
    return OK;
}

/* ---- run.heartbeat, run.complete, run.fail ---- */

err_t rm_on_run_heartbeat(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX];
    const char *worker;
    uint64_t lease_ms, expires = 0;
    struct msg_run_heartbeat m;
    err_t rc = msg_decode(&msg_run_heartbeat_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_run_args(req, m.env_id, m.run, env_id, run))
        return OK;
    if (!rm_worker_arg(m.worker_id, wbuf, &worker) || !rm_lease_arg(rm, m.lease_ms, &lease_ms)) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "worker_id must be a string of 1-128 bytes and lease_ms 1000-3600000");
        return OK;
    }
    rc = rm_store_heartbeat(rm->pg, env_id, run, worker, lease_ms, &expires);
    if (rc != OK) {
        rm_reply_worker_err(req, "run.heartbeat", rc);
        return OK;
    }
    struct msg_run_heartbeat_reply out = {expires};
    (void)bus_reply_msg(req, &msg_run_heartbeat_reply_form, &out, NULL);
    return OK;
}

err_t rm_on_run_complete(struct actor *a, struct bus_req *req)
{
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX];
    const char *worker;
    char *output = NULL;
    struct msg_run_complete m;
    err_t rc = msg_decode(&msg_run_complete_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_run_args(req, m.env_id, m.run, env_id, run))
        return OK;
    if (!rm_worker_arg(m.worker_id, wbuf, &worker)) {
        (void)bus_reply_err(req, ERR_INVAL, "worker_id must be a string of 1-128 bytes");
        return OK;
    }
    rc = rm_json_arg(m.output, &output);
    if (rc != OK) {
        (void)bus_reply_err(req, rc, "output must be JSON text of at most 4 MiB");
        return OK;
    }
    rc = rm_store_complete(rm_of(a)->pg, env_id, run, worker, output);
    free(output);
    if (rc != OK) {
        rm_reply_worker_err(req, "run.complete", rc);
        return OK;
    }
    LOG_INFO("run.completed", "%s completed", run);
    rm_reply_empty(req);
    return OK;
}

err_t rm_on_run_fail(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX], task[RM_KEY_MAX];
    const char *worker;
    char *error = NULL;
    struct msg_run_fail m;
    struct msg_run_fail_reply out = {false, 0};
    err_t rc = msg_decode(&msg_run_fail_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_run_args(req, m.env_id, m.run, env_id, run))
        return OK;
    if (!rm_worker_arg(m.worker_id, wbuf, &worker)) {
        (void)bus_reply_err(req, ERR_INVAL, "worker_id must be a string of 1-128 bytes");
        return OK;
    }
    rc = rm_json_arg(m.error, &error);
    if (rc != OK) {
        (void)bus_reply_err(req, rc, "error must be JSON text of at most 4 MiB");
        return OK;
    }
    rc = rm_store_fail(rm->pg, env_id, run, worker, error, &out.retrying, &out.attempt, task);
    free(error);
    if (rc != OK) {
        rm_reply_worker_err(req, "run.fail", rc);
        return OK;
    }
    if (out.retrying) {
        LOG_INFO("run.retrying", "%s failed; queued again as attempt %" PRIu64, run, out.attempt);
        rm_publish_queued(rm, env_id, task);
    } else {
        LOG_INFO("run.failed", "%s failed on its last attempt (%" PRIu64 ")", run, out.attempt);
    }
    (void)bus_reply_msg(req, &msg_run_fail_reply_form, &out, NULL);
    return OK;
}

/* ---- run.release ---- */

err_t rm_on_run_release(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    const struct envelope *e = bus_req_env(req);
    struct slice runs[RM_DEQUEUE_MAX];
    char env_id[RM_ID_MAX], worker[RM_WORKER_MAX], id[RM_ID_MAX];
    char array[RM_DEQUEUE_MAX * (RM_RUN_MAX + 3) + 3];
    unsigned n = 0;
    struct msg_run_release m;
    PGresult *r;

    err_t rc = msg_decode(&msg_run_release_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!msg_cstr(m.env_id, env_id, sizeof(env_id)) ||
        !msg_cstr(m.worker_id, worker, sizeof(worker)))
        return ERR_INVAL;
    if (msg_raw_strs(m.runs, runs, RM_DEQUEUE_MAX, 0, SIZE_MAX, &n) != OK || n == 0) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id, worker_id and runs (1-50 ids) are required");
        return OK;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!rm_run_ref_parse(runs[i], id)) {
            (void)bus_reply_err(req, ERR_INVAL, "runs must be run ids");
            return OK;
        }
    }
    if (!rm_pg_array(runs, n, array, sizeof(array))) {
        (void)bus_reply_err(req, ERR_INVAL, "runs must be run ids");
        return OK;
    }
    rc = rm_store_release(rm->pg, env_id, worker, array, &r);
    if (rc != OK) {
        actor_reply_store_err(req, "run.release", rc);
        return OK;
    }
    int released = PQntuples(r);
    for (int i = 0; i < released; i++)
        rm_publish_queued(rm, env_id, PQgetvalue(r, i, 0));
    PQclear(r);
    if (released > 0)
        LOG_INFO("run.released", "worker %s gave back %d run(s)", worker, released);
    struct msg_run_release_reply out = {(uint64_t)released};
    (void)bus_reply_msg(req, &msg_run_release_reply_form, &out, NULL);
    return OK;
}
