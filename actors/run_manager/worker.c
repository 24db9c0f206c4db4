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

/* The env_id and run fields every run message has; replies itself when they are unusable. */
static bool rm_run_args(struct bus_req *req, char *env_id, char *run)
{
    struct slice body = bus_req_env(req)->body, ref;
    char id[RM_ID_MAX];
    if (rm_field_str(body, "env_id", env_id, RM_ID_MAX, NULL) != OK || !env_id[0] ||
        rm_field_slice(body, "run", &ref) != OK || !ref.p) {
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
static bool rm_lease_arg(struct rm *rm, struct slice body, uint64_t *lease_ms)
{
    if (rm_field_uint(body, "lease_ms", 0, lease_ms) != OK)
        return false;
    if (*lease_ms == 0)
        *lease_ms = (uint64_t)rm->cfg.lease_default_ms;
    return *lease_ms >= RM_LEASE_MIN_MS && *lease_ms <= RM_LEASE_MAX_MS;
}

/* The optional worker_id: NULL when absent (no owner check). false when malformed. */
static bool rm_worker_arg(struct slice body, char *buf, const char **worker_id)
{
    bool present;
    *worker_id = NULL;
    if (rm_field_str(body, "worker_id", buf, RM_WORKER_MAX, &present) != OK)
        return false;
    if (present && buf[0])
        *worker_id = buf;
    return true;
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
        rm_reply_store_err(req, op, rc);
}

/* ---- run.get, run.cancel ---- */

void rm_on_run_get(struct actor *a, struct bus_req *req)
{
    char env_id[RM_ID_MAX], run[RM_RUN_MAX];
    struct mp_writer w;
    PGresult *r;
    if (!rm_run_args(req, env_id, run))
        return;
    err_t rc = rm_store_run_get(rm_of(a)->pg, env_id, run, &r);
    if (rc != OK) {
        rm_reply_store_err(req, "run.get", rc);
        return;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_RUN);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "run");
    rm_run_put(&w, r);
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
    PQclear(r);
}

void rm_on_run_cancel(struct actor *a, struct bus_req *req)
{
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], status[32] = "";
    bool found, canceled;
    struct mp_writer w;
    if (!rm_run_args(req, env_id, run))
        return;
    err_t rc =
        rm_store_run_cancel(rm_of(a)->pg, env_id, run, &found, &canceled, status, sizeof(status));
    if (rc != OK) {
        rm_reply_store_err(req, "run.cancel", rc);
        return;
    }
    if (!found) {
        (void)bus_reply_err(req, ERR_NOTFOUND, RM_NO_RUN);
        return;
    }
    if (canceled)
        LOG_INFO("run.canceled", "%s canceled", run);
    /* cancelling a finished run changes nothing and is not an error (as upstream) */
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "id", run);
    mp_put_kv_str(&w, "status", rm_status_public(status));
    mp_put_kv_bool(&w, "canceled", canceled);
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
}

/* ---- run.dequeue ---- */

void rm_on_run_dequeue(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    struct slice body = bus_req_env(req)->body;
    struct slice tasks[RM_TASKS_MAX];
    char env_id[RM_ID_MAX], worker[RM_WORKER_MAX];
    unsigned ntasks = 0;
    uint64_t max_runs, lease_ms;
    struct mp_writer w;
    PGresult *r;

    if (rm_field_str(body, "env_id", env_id, sizeof(env_id), NULL) != OK || !env_id[0] ||
        rm_field_str(body, "worker_id", worker, sizeof(worker), NULL) != OK || !worker[0]) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id and worker_id (1-128 bytes) are required");
        return;
    }
    if (rm_field_strings(body, "task_identifiers", tasks, RM_TASKS_MAX, &ntasks) != OK ||
        ntasks == 0) {
        (void)bus_reply_err(req, ERR_INVAL, "task_identifiers must be 1-100 strings");
        return;
    }
    for (unsigned i = 0; i < ntasks; i++) {
        if (tasks[i].n == 0 || tasks[i].n > RM_TASK_ID_MAX) {
            (void)bus_reply_err(req, ERR_INVAL, "a task identifier must be 1-256 bytes");
            return;
        }
    }
    if (rm_field_uint(body, "max_runs", 1, &max_runs) != OK || max_runs < 1 ||
        max_runs > RM_DEQUEUE_MAX) {
        (void)bus_reply_err(req, ERR_INVAL, "max_runs must be 1-50");
        return;
    }
    if (!rm_lease_arg(rm, body, &lease_ms)) {
        (void)bus_reply_err(req, ERR_INVAL, "lease_ms must be 1000-3600000 (or 0: the default)");
        return;
    }
    /* each element quoted and escaped: twice the bytes at worst, plus quotes and commas */
    size_t cap = (size_t)ntasks * (2 * RM_TASK_ID_MAX + 3) + 3;
    char *array = xmalloc(cap);
    if (!rm_pg_array(tasks, ntasks, array, cap)) {
        free(array);
        (void)bus_reply_err(req, ERR_INVAL, "a task identifier must not contain NUL");
        return;
    }
    err_t rc = rm_store_dequeue(rm->pg, env_id, array, (unsigned)max_runs, worker, lease_ms, &r);
    free(array);
    if (rc != OK) {
        rm_reply_store_err(req, "run.dequeue", rc);
        return;
    }
    int n = PQntuples(r);
    if (n == 0)
        actor_once_nothing_done(a); /* an empty poll leases nothing: no answer worth keeping */
    PGresult *resumes = NULL; /* a run resumed from a wait: its completed waitpoints (wait.c) */
    if (rm_wait_resumes(rm, r, &resumes) != OK)
        resumes = NULL; /* kept for the next dequeue of the run: nothing is lost */
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "runs");
    mp_put_array(&w, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        bool resumed = rm_wait_resume_count(resumes, PQgetvalue(r, i, 0)) > 0;
        rm_dequeued_put(&w, r, i, resumed ? 1 : 0);
        if (resumed)
            rm_wait_resume_put(&w, resumes, PQgetvalue(r, i, 0));
        LOG_DEBUG("run.dequeued", "%s (attempt %s) leased to worker %s for %" PRIu64 " ms",
                  PQgetvalue(r, i, 0), PQgetvalue(r, i, 3), worker, lease_ms);
    }
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
    PQclear(r);
    if (resumes)
        PQclear(resumes);
}

/* ---- run.heartbeat, run.complete, run.fail ---- */

void rm_on_run_heartbeat(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    struct slice body = bus_req_env(req)->body;
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX];
    const char *worker;
    uint64_t lease_ms, expires = 0;
    struct mp_writer w;
    if (!rm_run_args(req, env_id, run))
        return;
    if (!rm_worker_arg(body, wbuf, &worker) || !rm_lease_arg(rm, body, &lease_ms)) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "worker_id must be a string of 1-128 bytes and lease_ms 1000-3600000");
        return;
    }
    err_t rc = rm_store_heartbeat(rm->pg, env_id, run, worker, lease_ms, &expires);
    if (rc != OK) {
        rm_reply_worker_err(req, "run.heartbeat", rc);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "lease_expires_at_ms", expires);
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
}

void rm_on_run_complete(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body;
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX];
    const char *worker;
    char *output = NULL;
    if (!rm_run_args(req, env_id, run))
        return;
    if (!rm_worker_arg(body, wbuf, &worker)) {
        (void)bus_reply_err(req, ERR_INVAL, "worker_id must be a string of 1-128 bytes");
        return;
    }
    err_t rc = rm_field_json(body, "output", &output);
    if (rc != OK) {
        (void)bus_reply_err(req, rc, "output must be JSON text of at most 4 MiB");
        return;
    }
    rc = rm_store_complete(rm_of(a)->pg, env_id, run, worker, output);
    free(output);
    if (rc != OK) {
        rm_reply_worker_err(req, "run.complete", rc);
        return;
    }
    LOG_INFO("run.completed", "%s completed", run);
    rm_reply_empty(req);
}

void rm_on_run_fail(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    struct slice body = bus_req_env(req)->body;
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX], task[RM_KEY_MAX];
    const char *worker;
    char *error = NULL;
    bool retrying = false;
    uint64_t attempt = 0;
    struct mp_writer w;
    if (!rm_run_args(req, env_id, run))
        return;
    if (!rm_worker_arg(body, wbuf, &worker)) {
        (void)bus_reply_err(req, ERR_INVAL, "worker_id must be a string of 1-128 bytes");
        return;
    }
    err_t rc = rm_field_json(body, "error", &error);
    if (rc != OK) {
        (void)bus_reply_err(req, rc, "error must be JSON text of at most 4 MiB");
        return;
    }
    rc = rm_store_fail(rm->pg, env_id, run, worker, error, &retrying, &attempt, task);
    free(error);
    if (rc != OK) {
        rm_reply_worker_err(req, "run.fail", rc);
        return;
    }
    if (retrying) {
        LOG_INFO("run.retrying", "%s failed; queued again as attempt %" PRIu64, run, attempt);
        rm_publish_queued(rm, env_id, task);
    } else {
        LOG_INFO("run.failed", "%s failed on its last attempt (%" PRIu64 ")", run, attempt);
    }
    mp_writer_init(&w);
    mp_put_map(&w, 2);
    mp_put_kv_bool(&w, "retrying", retrying);
    mp_put_kv_uint(&w, "attempt", attempt);
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
}

/* ---- run.release ---- */

void rm_on_run_release(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    struct slice body = bus_req_env(req)->body;
    struct slice runs[RM_DEQUEUE_MAX];
    char env_id[RM_ID_MAX], worker[RM_WORKER_MAX], id[RM_ID_MAX];
    char array[RM_DEQUEUE_MAX * (RM_RUN_MAX + 3) + 3];
    unsigned n = 0;
    struct mp_writer w;
    PGresult *r;

    if (rm_field_str(body, "env_id", env_id, sizeof(env_id), NULL) != OK || !env_id[0] ||
        rm_field_str(body, "worker_id", worker, sizeof(worker), NULL) != OK || !worker[0] ||
        rm_field_strings(body, "runs", runs, RM_DEQUEUE_MAX, &n) != OK || n == 0) {
        (void)bus_reply_err(req, ERR_INVAL, "env_id, worker_id and runs (1-50 ids) are required");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!rm_run_ref_parse(runs[i], id)) {
            (void)bus_reply_err(req, ERR_INVAL, "runs must be run ids");
            return;
        }
    }
    if (!rm_pg_array(runs, n, array, sizeof(array))) {
        (void)bus_reply_err(req, ERR_INVAL, "runs must be run ids");
        return;
    }
    err_t rc = rm_store_release(rm->pg, env_id, worker, array, &r);
    if (rc != OK) {
        rm_reply_store_err(req, "run.release", rc);
        return;
    }
    int released = PQntuples(r);
    for (int i = 0; i < released; i++)
        rm_publish_queued(rm, env_id, PQgetvalue(r, i, 0));
    PQclear(r);
    if (released > 0)
        LOG_INFO("run.released", "worker %s gave back %d run(s)", worker, released);
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "released", (uint64_t)released);
    rm_reply_writer(req, &w);
    mp_writer_fini(&w);
}
