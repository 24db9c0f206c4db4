/*
 * wait.c - runs that wait on waitpoints: run.suspend (a worker gives a
 * blocked run back: WAITING_TO_RESUME, no lease), run.wake (the registry's
 * completions queue waiting runs again), the wait sweep (the same for any
 * wake that was lost), and the resume a dequeue hands out (the completed
 * waitpoints of a run, each handed over once).
 *
 * The waitpoints and the blocks (task_run_waitpoints) are the
 * waitpoint-registry's tables; this file only reads them, and deletes the
 * blocks it hands to a worker. Each step is one statement whose WHERE
 * clause decides, like the rest of the run-manager: a completion racing a
 * suspend leaves the run waiting at worst until the next sweep (1 s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "rm.h"

#define RM_WAKE_MAX 1000

/* The columns of a completed waitpoint as a resume carries it (rm_wait_put). */
#define RM_WP_COLS                                                                                 \
    "w.friendly_id, w.kind, w.status, w.output, w.output_type, w.output_is_error,"                 \
    " COALESCE((extract(epoch FROM w.completed_at) * 1000)::bigint, 0)"

static void rm_wait_put(struct mp_writer *w, PGresult *r, int row, int c)
{
    mp_put_map(w, 7);
    mp_put_kv_str(w, "id", PQgetvalue(r, row, c));
    mp_put_kv_str(w, "kind", PQgetvalue(r, row, c + 1));
    mp_put_kv_str(w, "status", PQgetvalue(r, row, c + 2));
    mp_put_str(w, "output");
    if (PQgetisnull(r, row, c + 3))
        mp_put_nil(w);
    else
        mp_put_strn(w, PQgetvalue(r, row, c + 3), (size_t)PQgetlength(r, row, c + 3));
    mp_put_kv_str(w, "output_type", PQgetvalue(r, row, c + 4));
    mp_put_kv_bool(w, "output_is_error", strcmp(PQgetvalue(r, row, c + 5), "t") == 0);
    mp_put_kv_uint(w, "completed_at_ms", strtoull(PQgetvalue(r, row, c + 6), NULL, 10));
}

/* Queues again the waiting runs a result names (env, task, run per row) and says so. */
static unsigned rm_wait_queued(struct rm *rm, PGresult *r, const char *why)
{
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        LOG_INFO("run.resumable", "%s: its waitpoints completed (%s); queued again",
                 PQgetvalue(r, i, 2), why);
        rm_publish_queued(rm, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    }
    return (unsigned)n;
}

/* The statement both the wake and the sweep run; $1 limits it to some waitpoints' runs. */
#define RM_WAKE_SQL(filter)                                                                        \
    "UPDATE task_runs r SET status = 'PENDING', updated_at = now()"                                \
    " WHERE r.status = 'WAITING_TO_RESUME' " filter                                                \
    " AND NOT EXISTS (SELECT 1 FROM task_run_waitpoints b JOIN waitpoints w"                       \
    "  ON w.id = b.waitpoint_id WHERE b.run_id = r.friendly_id AND w.status = 'PENDING')"          \
    " RETURNING r.runtime_environment_id, r.task_identifier, r.friendly_id"

err_t rm_on_run_wake(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    const struct envelope *e = bus_req_env(req);
    struct slice ids[RM_WAKE_MAX];
    unsigned n = 0;
    struct msg_run_wake m;
    PGresult *r;
    err_t rc = msg_decode(&msg_run_wake_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (msg_raw_strs(m.waitpoint_ids, ids, RM_WAKE_MAX, 0, SIZE_MAX, &n) != OK || n == 0) {
        (void)bus_reply_err(req, ERR_INVAL, "waitpoint_ids must be 1-1000 ids");
        return OK;
    }
    for (unsigned i = 0; i < n; i++) {
        if (ids[i].n == 0 || ids[i].n >= RM_ID_MAX) {
            (void)bus_reply_err(req, ERR_INVAL, "waitpoint_ids must be internal waitpoint ids");
            return OK;
        }
    }
    size_t cap = (size_t)n * (2 * RM_ID_MAX + 3) + 3;
    char *array = xmalloc(cap);
    if (!rm_pg_array(ids, n, array, cap)) {
        free(array);
        (void)bus_reply_err(req, ERR_INVAL, "waitpoint_ids must be internal waitpoint ids");
        return OK;
    }
    const char *params[] = {array};
    rc = db_pg_exec(rm->pg,
                    RM_WAKE_SQL("AND r.friendly_id IN (SELECT run_id FROM"
                                " task_run_waitpoints WHERE waitpoint_id = ANY($1::text[]))"),
                    1, params, &r);
    free(array);
    if (rc != OK) {
        actor_reply_store_err(req, "run.wake", rc);
        return OK;
    }
    struct msg_run_wake_reply out = {rm_wait_queued(rm, r, "wake")};
    PQclear(r);
    (void)bus_reply_msg(req, &msg_run_wake_reply_form, &out, NULL);
    return OK;
}

unsigned rm_wait_sweep(struct rm *rm, long long batch)
{
    char lim[24];
    PGresult *r;
    snprintf(lim, sizeof(lim), "%lld", batch);
    const char *params[] = {lim};
    if (db_pg_exec(rm->pg,
                   RM_WAKE_SQL("AND r.id IN (SELECT id FROM task_runs WHERE status ="
                               " 'WAITING_TO_RESUME' ORDER BY updated_at LIMIT $1::integer)"),
                   1, params, &r) != OK)
        return 0;
    unsigned n = rm_wait_queued(rm, r, "sweep");
    PQclear(r);
    return n;
}

err_t rm_on_run_suspend(struct actor *a, struct bus_req *req)
{
    struct rm *rm = rm_of(a);
    const struct envelope *e = bus_req_env(req);
    char env_id[RM_ID_MAX], run[RM_RUN_MAX], wbuf[RM_WORKER_MAX];
    const char *worker;
    struct msg_run_suspend m;
    PGresult *r;
    struct mp_writer w;
    err_t rc = msg_decode(&msg_run_suspend_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        return rc;
    if (!rm_run_args(req, m.env_id, m.run, env_id, run))
        return OK;
    if (!rm_worker_arg(m.worker_id, wbuf, &worker))
        return ERR_INVAL;
    const char *params[] = {env_id, run, worker, m.hold ? "t" : "f"};
    /* 1: suspend while some waitpoint is pending (never with hold); answers
     * (found, leased to the caller, suspended, pending) */
    rc =
        db_pg_exec(rm->pg,
                   "WITH t AS (SELECT r.id, (r.status IN ('DEQUEUED', 'EXECUTING') AND"
                   "   ($3::text IS NULL OR r.lease_owner = $3)) AS mine FROM task_runs r"
                   "   WHERE r.friendly_id = $2 AND r.runtime_environment_id = $1),"
                   " p AS (SELECT count(*) AS n FROM task_run_waitpoints b JOIN waitpoints w"
                   "   ON w.id = b.waitpoint_id WHERE b.run_id = $2 AND w.status = 'PENDING'),"
                   " u AS (UPDATE task_runs r SET status = 'WAITING_TO_RESUME', lease_owner = NULL,"
                   "   lease_expires_at = NULL, updated_at = now() FROM t, p"
                   "   WHERE r.id = t.id AND t.mine AND p.n > 0 AND NOT $4::boolean"
                   "   AND r.status IN ('DEQUEUED', 'EXECUTING') RETURNING r.id)"
                   " SELECT (SELECT count(*) FROM t), COALESCE((SELECT mine FROM t), false),"
                   "  (SELECT count(*) FROM u), (SELECT n FROM p)",
                   4, params, &r);
    if (rc != OK) {
        actor_reply_store_err(req, "run.suspend", rc);
        return OK;
    }
    bool found = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    bool mine = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    struct msg_run_suspend_reply out = {
        .suspended = strcmp(PQgetvalue(r, 0, 2), "0") != 0,
        .pending = strtoull(PQgetvalue(r, 0, 3), NULL, 10),
    };
    PQclear(r);
    if (!found) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "run not found");
        return OK;
    }
    if (!mine) {
        (void)bus_reply_err(req, ERR_CONFLICT, "run is no longer leased to this worker");
        return OK;
    }
    mp_writer_init(&w); /* the waitpoints */
    if (out.suspended || out.pending > 0) {
        mp_put_array(&w, 0);
        if (out.suspended)
            LOG_INFO("run.suspended", "%s: waiting on %llu waitpoint(s), lease released", run,
                     (unsigned long long)out.pending);
    } else {
        /* 2: nothing pending: the worker goes on at once with the completed waitpoints */
        const char *p2[] = {run};
        rc = db_pg_exec(rm->pg,
                        "WITH d AS (DELETE FROM task_run_waitpoints b WHERE b.run_id = $1"
                        "  RETURNING b.waitpoint_id)"
                        " SELECT " RM_WP_COLS " FROM d JOIN waitpoints w ON w.id = d.waitpoint_id"
                        " ORDER BY w.completed_at",
                        1, p2, &r);
        if (rc != OK) {
            mp_writer_fini(&w);
            actor_reply_store_err(req, "run.suspend", rc);
            return OK;
        }
        int n = PQntuples(r);
        mp_put_array(&w, (uint32_t)n);
        for (int i = 0; i < n; i++)
            rm_wait_put(&w, r, i, 0);
        PQclear(r);
    }
    out.waitpoints = (struct slice){mp_writer_data(&w), mp_writer_len(&w)};
    (void)bus_reply_msg(req, &msg_run_suspend_reply_form, &out, &w);
    mp_writer_fini(&w);
    return OK;
}

err_t rm_wait_resumes(struct rm *rm, PGresult *dq, PGresult **res)
{
    int n = PQntuples(dq);
    *res = NULL;
    if (n == 0)
        return OK;
    struct slice ids[RM_DEQUEUE_MAX];
    for (int i = 0; i < n && i < RM_DEQUEUE_MAX; i++)
        ids[i] = (struct slice){PQgetvalue(dq, i, 0), (size_t)PQgetlength(dq, i, 0)};
    char array[RM_DEQUEUE_MAX * (2 * RM_RUN_MAX + 3) + 3];
    if (!rm_pg_array(ids, (unsigned)(n < RM_DEQUEUE_MAX ? n : RM_DEQUEUE_MAX), array,
                     sizeof(array)))
        return ERR_INVAL;
    const char *params[] = {array};
    /* the blocks whose waitpoints are done are handed over (deleted) with this dequeue */
    return db_pg_exec(rm->pg,
                      "WITH d AS (DELETE FROM task_run_waitpoints b USING waitpoints w"
                      "  WHERE b.run_id = ANY($1::text[]) AND w.id = b.waitpoint_id"
                      "  AND w.status <> 'PENDING' RETURNING b.run_id, b.waitpoint_id)"
                      " SELECT d.run_id, " RM_WP_COLS " FROM d JOIN waitpoints w"
                      "  ON w.id = d.waitpoint_id ORDER BY d.run_id, w.completed_at",
                      1, params, res);
}

unsigned rm_wait_resume_count(PGresult *resumes, const char *run)
{
    unsigned k = 0;
    for (int i = 0; resumes && i < PQntuples(resumes); i++)
        k += strcmp(PQgetvalue(resumes, i, 0), run) == 0;
    return k;
}

void rm_wait_resume_put(struct mp_writer *w, PGresult *resumes, const char *run)
{
    unsigned k = rm_wait_resume_count(resumes, run);
    mp_put_str(w, "waitpoints");
    mp_put_array(w, k);
    for (int i = 0; resumes && i < PQntuples(resumes); i++)
        if (strcmp(PQgetvalue(resumes, i, 0), run) == 0)
            rm_wait_put(w, resumes, i, 1);
}
