/*
 * run_store.c - every SQL statement of the run-manager.
 *
 * Each function is one statement, autocommitted: no transaction or lock
 * outlives it, so a run-manager killed between two of them leaves rows a
 * later statement (or a sweep) can finish. Decisions that must be atomic
 * live in one WHERE clause: the claim's version check, the lease owner,
 * FOR UPDATE SKIP LOCKED for queues and sweeps (several instances pick
 * disjoint rows). JSON is built and taken apart by PostgreSQL (jsonb
 * operators); this file never parses a payload.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rm.h"

/* The statements are laid out as SQL; clang-format would break the string macros apart. */
/* clang-format off */

/* §11.1's final statuses; check.c's rm_final[] is the same list. */
#define RM_SQL_FINAL                                                                               \
    "('CANCELED', 'INTERRUPTED', 'COMPLETED_SUCCESSFULLY', 'COMPLETED_WITH_ERRORS', "              \
    "'SYSTEM_FAILURE', 'CRASHED', 'EXPIRED', 'TIMED_OUT')"

#define RM_SQL_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

/*
 * An integer of triggerConfig within [lo, hi], else NULL. Nested CASEs
 * because SQL does not promise to evaluate AND left to right, and casting
 * a JSON string to numeric is an error.
 */
#define RM_SQL_JINT(e, lo, hi)                                                                     \
    "CASE WHEN jsonb_typeof(" e ") = 'number' THEN CASE WHEN (" e ")::numeric BETWEEN " lo         \
    " AND " hi " THEN floor((" e ")::numeric)::integer END END"

/* Copies a text column into buf; "" for NULL or a value that does not fit. */
static void rm_col(const PGresult *r, int row, int col, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) >= cap)
        return;
    memcpy(buf, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col) + 1);
}

static bool rm_col_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

static long long rm_col_ll(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- sessions and the claim ---- */

/* Runs a statement that answers one id (a row of one column); ERR_NOTFOUND for no row. */
static err_t rm_exec_id(struct db_pg *pg, const char *sql, int n, const char *const *params,
                        char *id)
{
    PGresult *r;
    err_t rc = db_pg_exec(pg, sql, n, params, &r);
    if (rc != OK)
        return rc;
    rc = PQntuples(r) == 1 ? OK : ERR_NOTFOUND;
    if (rc == OK)
        rm_col(r, 0, 0, id, RM_ID_MAX);
    PQclear(r);
    return rc;
}

/* The session and whether its current run is alive: one row, read by rm_store_session_of. */
#define RM_SQL_SESSION_READ                                                                        \
    "SELECT s.id, s.friendly_id, s.task_identifier, COALESCE(b.current_run_id, ''),"              \
    " COALESCE(b.current_run_version, 0),"                                                         \
    " COALESCE(r.status NOT IN " RM_SQL_FINAL ", false),"                                          \
    " COALESCE(jsonb_typeof(s.trigger_config -> 'basePayload') = 'object', false),"               \
    " COALESCE((s.trigger_config -> 'ttl')::text, ''),"                                            \
    " s.closed_at IS NOT NULL, COALESCE(s.expires_at <= now(), false)"                             \
    " FROM sessions s LEFT JOIN session_bindings b ON b.session_id = s.id"                        \
    " LEFT JOIN task_runs r ON r.id = b.current_run_id"                                            \
    " WHERE s.id = $1 AND s.runtime_environment_id = $2"

err_t rm_store_session_of(const PGresult *r, struct rm_session *s)
{
    if (PQntuples(r) != 1)
        return ERR_NOTFOUND;
    memset(s, 0, sizeof(*s));
    rm_col(r, 0, 0, s->id, sizeof(s->id));
    rm_col(r, 0, 1, s->friendly_id, sizeof(s->friendly_id));
    rm_col(r, 0, 2, s->task_identifier, sizeof(s->task_identifier));
    rm_col(r, 0, 3, s->current_run_id, sizeof(s->current_run_id));
    s->version = rm_col_ll(r, 0, 4);
    s->current_alive = rm_col_bool(r, 0, 5);
    s->base_payload_ok = rm_col_bool(r, 0, 6);
    rm_col(r, 0, 7, s->ttl_json, sizeof(s->ttl_json)); /* too long: no valid ttl is */
    s->closed = rm_col_bool(r, 0, 8);
    s->expired = rm_col_bool(r, 0, 9);
    /* columns that did not fit are ids we never wrote: nothing sensible to do with them */
    return s->id[0] && s->friendly_id[0] && s->task_identifier[0] ? OK : ERR_INTERNAL;
}

err_t rm_store_session_read(struct db_pg *pg, const char *env_id, const char *session_id,
                            struct rm_session *s)
{
    const char *params[] = {session_id, env_id};
    PGresult *r;
    err_t rc = db_pg_exec(pg, RM_SQL_SESSION_READ, 2, params, &r);
    if (rc != OK)
        return rc;
    rc = rm_store_session_of(r, s);
    PQclear(r);
    return rc;
}

err_t rm_store_session_read_async(struct db_pg_async *p, const char *env_id,
                                  const char *session_id, db_pg_async_fn fn, void *arg)
{
    const char *params[] = {session_id, env_id};
    return db_pg_async_exec(p, RM_SQL_SESSION_READ, 2, params, fn, arg);
}

err_t rm_store_run_insert(struct db_pg *pg, const char *env_id, const char *session_id,
                          const char *prev_run, long long ttl_s, char *run_id)
{
    char id[CUID_LEN + 1], ttl[24];
    if (cuid_new(id) != OK)
        return ERR_UNAVAIL;
    snprintf(ttl, sizeof(ttl), "%lld", ttl_s);
    const char *params[] = {id, session_id, env_id, prev_run, ttl_s >= 0 ? ttl : NULL};
    /* The payload rule of §11.2 (and its 2026-05-10 additions), in jsonb: the right operand of
     * || wins, so sessionId and the continuation keys override basePayload's. */
    return rm_exec_id(
        pg,
        "INSERT INTO task_runs (id, friendly_id, runtime_environment_id, organization_id,"
        "  project_id, task_identifier, session_id, payload, max_attempts, machine, queue, tags,"
        "  idle_timeout_s, max_duration_s, ttl_s)"
        " SELECT $1::text, 'run_' || $1::text, s.runtime_environment_id, s.organization_id,"
        "  s.project_id, s.task_identifier, s.id,"
        "  CASE WHEN $4::text IS NULL"
        "   THEN c.base || c.idle || jsonb_build_object('sessionId', s.friendly_id)"
        "   ELSE (c.base || c.idle || jsonb_build_object('sessionId', s.friendly_id,"
        "         'continuation', true, 'previousRunId', $4::text))"
        "        - 'message' - 'messages' - 'trigger' END,"
        "  COALESCE(" RM_SQL_JINT("s.trigger_config -> 'maxAttempts'", "1", "10") ", 1),"
        "  CASE WHEN jsonb_typeof(s.trigger_config -> 'machine') = 'string'"
        "   THEN s.trigger_config ->> 'machine' END,"
        "  CASE WHEN jsonb_typeof(s.trigger_config -> 'queue') = 'string'"
        "   THEN s.trigger_config ->> 'queue' END,"
        "  CASE WHEN jsonb_typeof(s.trigger_config -> 'tags') = 'array'"
        "   THEN ARRAY(SELECT jsonb_array_elements_text(s.trigger_config -> 'tags'))"
        "   ELSE '{}'::text[] END,"
        "  " RM_SQL_JINT("s.trigger_config -> 'idleTimeoutInSeconds'", "1", "2147483647") ","
        "  " RM_SQL_JINT("s.trigger_config -> 'maxDuration'", "1", "2147483647") ","
        "  $5::integer"
        " FROM sessions s CROSS JOIN LATERAL (SELECT"
        "  CASE WHEN jsonb_typeof(s.trigger_config -> 'basePayload') = 'object'"
        "   THEN s.trigger_config -> 'basePayload' ELSE '{}'::jsonb END AS base,"
        "  CASE WHEN jsonb_typeof(s.trigger_config -> 'idleTimeoutInSeconds') = 'number'"
        "   THEN jsonb_build_object('idleTimeoutInSeconds',"
        "        s.trigger_config -> 'idleTimeoutInSeconds')"
        "   ELSE '{}'::jsonb END AS idle) c"
        " WHERE s.id = $2::text AND s.runtime_environment_id = $3::text"
        " RETURNING id",
        5, params, run_id);
}

err_t rm_store_session_claim(struct db_pg *pg, const char *session_id, const char *run_id,
                             int64_t version, const char *calling_id, bool *won)
{
    char ver[24];
    PGresult *r;
    snprintf(ver, sizeof(ver), "%" PRId64, version);
    const char *params[] = {session_id, run_id, ver, calling_id};
    err_t rc;
    if (version == 0 && !calling_id) /* bound to nothing yet: the first binding wins */
        rc = db_pg_exec(pg,
                        "INSERT INTO session_bindings (session_id, current_run_id,"
                        " current_run_version) VALUES ($1, $2, 1) ON CONFLICT DO NOTHING",
                        2, params, &r);
    else
        rc = db_pg_exec(pg,
                        "UPDATE session_bindings SET current_run_id = $2,"
                        " current_run_version = current_run_version + 1, bound_at = now()"
                        " WHERE session_id = $1 AND current_run_version = $3::integer"
                        " AND ($4::text IS NULL OR current_run_id = $4::text)",
                        4, params, &r);
    if (rc != OK)
        return rc;
    *won = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return OK;
}

err_t rm_store_session_run_add(struct db_pg *pg, const char *session_id, const char *run_id,
                               const char *reason)
{
    char id[CUID_LEN + 1];
    PGresult *r;
    if (cuid_new(id) != OK)
        return ERR_UNAVAIL;
    const char *params[] = {id, session_id, run_id, reason};
    err_t rc = db_pg_exec(pg,
                          "INSERT INTO session_runs (id, session_id, run_id, reason)"
                          " VALUES ($1, $2, $3, $4)",
                          4, params, &r);
    if (rc == OK)
        PQclear(r);
    return rc;
}

err_t rm_store_run_cancel_id(struct db_pg *pg, const char *run_id, const char *why)
{
    const char *params[] = {run_id, why};
    PGresult *r;
    err_t rc = db_pg_exec(pg,
                          "UPDATE task_runs SET status = 'CANCELED',"
                          " error = jsonb_build_object('message', $2::text),"
                          " completed_at = now(), lease_owner = NULL, lease_expires_at = NULL,"
                          " updated_at = now()"
                          " WHERE id = $1 AND status NOT IN " RM_SQL_FINAL,
                          2, params, &r);
    if (rc == OK)
        PQclear(r);
    return rc;
}

err_t rm_store_run_lookup(struct db_pg *pg, const char *env_id, const char *friendly, char *id)
{
    const char *params[] = {friendly, env_id};
    err_t rc = rm_exec_id(pg,
                          "SELECT id FROM task_runs"
                          " WHERE friendly_id = $1 AND runtime_environment_id = $2",
                          2, params, id);
    return rc == OK && !id[0] ? ERR_INTERNAL : rc;
}

/* ---- one run ---- */

/* The run object's columns, in rm_run_put's order. */
#define RM_RUN_COLS                                                                                \
    "r.friendly_id, r.status, r.task_identifier, r.payload::text, r.output::text,"                 \
    " r.error::text, r.attempt, r.max_attempts, s.friendly_id,"                                    \
    " COALESCE(s.external_id, s.friendly_id), array_to_json(r.tags)::text, r.machine, r.queue,"    \
    " r.idle_timeout_s, r.max_duration_s, r.ttl_s, " RM_SQL_MS("r.created_at") ", "                \
    RM_SQL_MS("r.updated_at") ", COALESCE(" RM_SQL_MS("r.started_at") ", 0), "                     \
    "COALESCE(" RM_SQL_MS("r.completed_at") ", 0)"

static void rm_put_col(struct mp_writer *w, const char *k, PGresult *r, int row, int col)
{
    mp_put_str(w, k);
    if (PQgetisnull(r, row, col))
        mp_put_nil(w);
    else
        mp_put_strn(w, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static void rm_put_uint_col(struct mp_writer *w, const char *k, PGresult *r, int row, int col)
{
    mp_put_str(w, k);
    if (PQgetisnull(r, row, col))
        mp_put_nil(w);
    else
        mp_put_uint(w, strtoull(PQgetvalue(r, row, col), NULL, 10));
}

void rm_run_put(struct mp_writer *w, PGresult *r)
{
    const char *status = PQgetvalue(r, 0, 1);
    mp_put_map(w, 21);
    rm_put_col(w, "id", r, 0, 0);
    mp_put_kv_str(w, "status", rm_status_public(status));
    mp_put_kv_str(w, "internal_status", status);
    rm_put_col(w, "task_identifier", r, 0, 2);
    rm_put_col(w, "payload", r, 0, 3);
    rm_put_col(w, "output", r, 0, 4);
    rm_put_col(w, "error", r, 0, 5);
    rm_put_uint_col(w, "attempt", r, 0, 6);
    rm_put_uint_col(w, "max_attempts", r, 0, 7);
    rm_put_col(w, "session_id", r, 0, 8);
    rm_put_col(w, "session_key", r, 0, 9);
    rm_put_col(w, "tags", r, 0, 10);
    rm_put_col(w, "machine", r, 0, 11);
    rm_put_col(w, "queue", r, 0, 12);
    rm_put_uint_col(w, "idle_timeout_s", r, 0, 13);
    rm_put_uint_col(w, "max_duration_s", r, 0, 14);
    rm_put_uint_col(w, "ttl_s", r, 0, 15);
    rm_put_uint_col(w, "created_at_ms", r, 0, 16);
    rm_put_uint_col(w, "updated_at_ms", r, 0, 17);
    rm_put_uint_col(w, "started_at_ms", r, 0, 18);
    rm_put_uint_col(w, "completed_at_ms", r, 0, 19);
}

void rm_dequeued_put(struct mp_writer *w, PGresult *r, int row, uint32_t extra)
{
    mp_put_map(w, 13 + extra);
    rm_put_col(w, "id", r, row, 0);
    rm_put_col(w, "task_identifier", r, row, 1);
    rm_put_col(w, "payload", r, row, 2);
    rm_put_uint_col(w, "attempt", r, row, 3);
    rm_put_uint_col(w, "max_attempts", r, row, 4);
    rm_put_col(w, "session_id", r, row, 5);
    rm_put_col(w, "session_key", r, row, 6);
    rm_put_uint_col(w, "idle_timeout_s", r, row, 7);
    rm_put_uint_col(w, "max_duration_s", r, row, 8);
    rm_put_col(w, "machine", r, row, 9);
    rm_put_col(w, "queue", r, row, 10);
    rm_put_col(w, "tags", r, row, 11);
    rm_put_uint_col(w, "lease_expires_at_ms", r, row, 12);
}

err_t rm_store_run_get(struct db_pg *pg, const char *env_id, const char *friendly, PGresult **res)
{
    const char *params[] = {friendly, env_id};
    return db_pg_exec(pg,
                      "SELECT " RM_RUN_COLS
                      " FROM task_runs r LEFT JOIN sessions s ON s.id = r.session_id"
                      " WHERE r.friendly_id = $1 AND r.runtime_environment_id = $2",
                      2, params, res);
}

err_t rm_store_run_cancel(struct db_pg *pg, const char *env_id, const char *friendly, bool *found,
                          bool *canceled, char *status, size_t cap)
{
    const char *params[] = {friendly, env_id};
    PGresult *r;
    *found = *canceled = false;
    err_t rc = db_pg_exec(pg,
                          "WITH u AS (UPDATE task_runs SET status = 'CANCELED',"
                          "  completed_at = now(), lease_owner = NULL, lease_expires_at = NULL,"
                          "  updated_at = now()"
                          "  WHERE friendly_id = $1 AND runtime_environment_id = $2"
                          "  AND status NOT IN " RM_SQL_FINAL " RETURNING status)"
                          " SELECT status, true FROM u"
                          " UNION ALL SELECT status, false FROM task_runs"
                          "  WHERE friendly_id = $1 AND runtime_environment_id = $2"
                          "  AND NOT EXISTS (SELECT 1 FROM u)",
                          2, params, &r);
    if (rc != OK)
        return rc;
    /* the second branch reads the snapshot before the update: only used when nothing changed,
     * i.e. the run was already final (or is not there) */
    if (PQntuples(r) >= 1) {
        *found = true;
        *canceled = rm_col_bool(r, 0, 1);
        rm_col(r, 0, 0, status, cap);
    }
    PQclear(r);
    return OK;
}

/* ---- the worker protocol ---- */

err_t rm_store_dequeue(struct db_pg *pg, const char *env_id, const char *tasks_array, unsigned max,
                       const char *worker_id, uint64_t lease_ms, PGresult **res)
{
    char n[16], lease[24];
    snprintf(n, sizeof(n), "%u", max);
    snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
    const char *params[] = {env_id, tasks_array, n, worker_id, lease};
    /* The candidates are one MATERIALIZED step: as an IN (... LIMIT ... SKIP LOCKED) subquery
     * the planner may run them once per row and hand out more than max runs.
     * A run of a session is handed out only once the session points at it (or after it has
     * started once): a run that lost its claim, or whose claim a crash prevented, is never
     * executed, and the orphan sweep cancels it. An expired ttl is never handed out either. */
    return db_pg_exec(
        pg,
        "WITH q AS MATERIALIZED (SELECT q.id FROM task_runs q"
        "   WHERE q.runtime_environment_id = $1 AND q.task_identifier = ANY($2::text[])"
        "   AND q.status = 'PENDING'"
        "   AND (q.ttl_s IS NULL OR q.started_at IS NOT NULL"
        "        OR q.created_at + make_interval(secs => q.ttl_s) > now())"
        "   AND (q.session_id IS NULL OR q.started_at IS NOT NULL OR EXISTS (SELECT 1 FROM"
        "        session_bindings b WHERE b.session_id = q.session_id"
        "        AND b.current_run_id = q.id))"
        "   ORDER BY q.created_at, q.id LIMIT $3::integer FOR UPDATE OF q SKIP LOCKED),"
        " d AS (UPDATE task_runs r SET status = 'DEQUEUED', lease_owner = $4,"
        "  lease_expires_at = now() + make_interval(secs => $5::double precision / 1000),"
        "  started_at = COALESCE(r.started_at, now()), updated_at = now()"
        "  FROM q WHERE r.id = q.id AND r.status = 'PENDING'"
        "  RETURNING r.*)"
        " SELECT d.friendly_id, d.task_identifier, d.payload::text, d.attempt, d.max_attempts,"
        "  s.friendly_id, COALESCE(s.external_id, s.friendly_id), d.idle_timeout_s,"
        "  d.max_duration_s, d.machine, d.queue, array_to_json(d.tags)::text,"
        "  " RM_SQL_MS("d.lease_expires_at")
        " FROM d LEFT JOIN sessions s ON s.id = d.session_id ORDER BY d.created_at, d.id",
        5, params, res);
}

/* Reads the one row of the worker statements: (runs found, then the statement's columns). */
static err_t rm_worker_outcome(PGresult *r, bool changed)
{
    if (PQntuples(r) != 1 || rm_col_ll(r, 0, 0) == 0)
        return ERR_NOTFOUND;
    return changed ? OK : ERR_CONFLICT;
}

err_t rm_store_heartbeat(struct db_pg *pg, const char *env_id, const char *friendly,
                         const char *worker_id, uint64_t lease_ms, uint64_t *expires_ms)
{
    char lease[24];
    PGresult *r;
    snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
    const char *params[] = {friendly, env_id, worker_id, lease};
    /* an expired lease is lost even before the sweep takes the run back: the worker must
     * stop, whoever gets the run next */
    err_t rc = db_pg_exec(
        pg,
        "WITH f AS (SELECT id FROM task_runs"
        "  WHERE friendly_id = $1 AND runtime_environment_id = $2),"
        " u AS (UPDATE task_runs t SET status = 'EXECUTING',"
        "  lease_expires_at = now() + make_interval(secs => $4::double precision / 1000),"
        "  updated_at = now()"
        "  FROM f WHERE t.id = f.id AND t.status IN ('DEQUEUED', 'EXECUTING')"
        "  AND t.lease_expires_at > now() AND ($3::text IS NULL OR t.lease_owner = $3::text)"
        "  RETURNING " RM_SQL_MS("t.lease_expires_at") " AS exp)"
        " SELECT (SELECT count(*) FROM f), (SELECT exp FROM u)",
        4, params, &r);
    if (rc != OK)
        return rc;
    rc = rm_worker_outcome(r, PQntuples(r) == 1 && !PQgetisnull(r, 0, 1));
    if (rc == OK)
        *expires_ms = (uint64_t)rm_col_ll(r, 0, 1);
    PQclear(r);
    return rc;
}

err_t rm_store_complete(struct db_pg *pg, const char *env_id, const char *friendly,
                        const char *worker_id, const char *output)
{
    PGresult *r;
    const char *params[] = {friendly, env_id, worker_id, output};
    /* accepted while the run is still leased to the worker, even past the lease's end as long
     * as no sweep has taken it back: the work is done and nobody else has it */
    err_t rc = db_pg_exec(
        pg,
        "WITH f AS (SELECT id FROM task_runs"
        "  WHERE friendly_id = $1 AND runtime_environment_id = $2),"
        " u AS (UPDATE task_runs t SET status = 'COMPLETED_SUCCESSFULLY', output = $4::jsonb,"
        "  completed_at = now(), lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        "  FROM f WHERE t.id = f.id AND t.status IN ('DEQUEUED', 'EXECUTING')"
        "  AND ($3::text IS NULL OR t.lease_owner = $3::text) RETURNING t.id)"
        " SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM u)",
        4, params, &r);
    if (rc != OK)
        return rc;
    rc = rm_worker_outcome(r, PQntuples(r) == 1 && rm_col_ll(r, 0, 1) == 1);
    PQclear(r);
    return rc;
}

err_t rm_store_fail(struct db_pg *pg, const char *env_id, const char *friendly,
                    const char *worker_id, const char *error, bool *retrying, uint64_t *attempt,
                    char *task)
{
    PGresult *r;
    const char *params[] = {friendly, env_id, worker_id, error};
    /* SET expressions all read the old row: attempt < max_attempts decides every column */
    err_t rc = db_pg_exec(
        pg,
        "WITH f AS (SELECT id FROM task_runs"
        "  WHERE friendly_id = $1 AND runtime_environment_id = $2),"
        " u AS (UPDATE task_runs t SET"
        "  status = CASE WHEN t.attempt < t.max_attempts THEN 'PENDING'"
        "   ELSE 'COMPLETED_WITH_ERRORS' END,"
        "  attempt = CASE WHEN t.attempt < t.max_attempts THEN t.attempt + 1 ELSE t.attempt END,"
        "  error = COALESCE($4::jsonb,"
        "   jsonb_build_object('message', 'the worker reported a failure without an error')),"
        "  completed_at = CASE WHEN t.attempt < t.max_attempts THEN NULL ELSE now() END,"
        "  lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        "  FROM f WHERE t.id = f.id AND t.status IN ('DEQUEUED', 'EXECUTING')"
        "  AND ($3::text IS NULL OR t.lease_owner = $3::text)"
        "  RETURNING t.status, t.attempt, t.task_identifier)"
        " SELECT (SELECT count(*) FROM f), u.status, u.attempt, u.task_identifier"
        " FROM (SELECT 1) one LEFT JOIN u ON true",
        4, params, &r);
    if (rc != OK)
        return rc;
    rc = rm_worker_outcome(r, PQntuples(r) == 1 && !PQgetisnull(r, 0, 1));
    if (rc == OK) {
        *retrying = strcmp(PQgetvalue(r, 0, 1), "PENDING") == 0;
        *attempt = (uint64_t)rm_col_ll(r, 0, 2);
        rm_col(r, 0, 3, task, RM_KEY_MAX);
    }
    PQclear(r);
    return rc;
}

err_t rm_store_release(struct db_pg *pg, const char *env_id, const char *worker_id,
                       const char *runs_array, PGresult **res)
{
    const char *params[] = {env_id, worker_id, runs_array};
    /* a first attempt handed out and given back never started: forget started_at so ttl and
     * the claim filter of dequeue treat it as the fresh run it is */
    return db_pg_exec(pg,
                      "UPDATE task_runs SET status = 'PENDING', lease_owner = NULL,"
                      " lease_expires_at = NULL,"
                      " started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END,"
                      " updated_at = now()"
                      " WHERE runtime_environment_id = $1 AND lease_owner = $2"
                      " AND status = 'DEQUEUED' AND friendly_id = ANY($3::text[])"
                      " RETURNING task_identifier",
                      3, params, res);
}

/* ---- sweeps ---- */

err_t rm_store_sweep_leases(struct db_pg *pg, long long batch, PGresult **res)
{
    char n[24];
    snprintf(n, sizeof(n), "%lld", batch);
    const char *params[] = {n};
    return db_pg_exec(
        pg,
        "UPDATE task_runs r SET"
        " status = CASE WHEN r.attempt < r.max_attempts THEN 'PENDING' ELSE 'CRASHED' END,"
        " attempt = CASE WHEN r.attempt < r.max_attempts THEN r.attempt + 1 ELSE r.attempt END,"
        " error = jsonb_build_object('name', 'LeaseExpired', 'message',"
        "  'the worker stopped heartbeating: its lease expired'),"
        " completed_at = CASE WHEN r.attempt < r.max_attempts THEN NULL ELSE now() END,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        " WHERE r.id IN (SELECT id FROM task_runs"
        "  WHERE status IN ('DEQUEUED', 'EXECUTING') AND lease_expires_at < now()"
        "  ORDER BY lease_expires_at LIMIT $1::integer FOR UPDATE SKIP LOCKED)"
        " AND r.status IN ('DEQUEUED', 'EXECUTING') AND r.lease_expires_at < now()"
        " RETURNING r.runtime_environment_id, r.task_identifier, r.status, r.friendly_id",
        1, params, res);
}

static err_t rm_sweep_count(struct db_pg *pg, const char *sql, int nparams,
                            const char *const *params, unsigned *n)
{
    PGresult *r;
    err_t rc = db_pg_exec(pg, sql, nparams, params, &r);
    *n = 0;
    if (rc != OK)
        return rc;
    *n = (unsigned)strtoul(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return OK;
}

err_t rm_store_sweep_durations(struct db_pg *pg, long long batch, unsigned *n)
{
    char b[24];
    snprintf(b, sizeof(b), "%lld", batch);
    const char *params[] = {b};
    return rm_sweep_count(
        pg,
        "UPDATE task_runs SET status = 'TIMED_OUT', completed_at = now(), lease_owner = NULL,"
        " lease_expires_at = NULL, updated_at = now(),"
        " error = jsonb_build_object('name', 'MaxDurationExceeded', 'message',"
        "  format('the run exceeded its maxDuration of %s s', max_duration_s))"
        " WHERE id IN (SELECT id FROM task_runs"
        "  WHERE max_duration_s IS NOT NULL AND completed_at IS NULL"
        "  AND started_at + make_interval(secs => max_duration_s) < now()"
        "  AND status NOT IN " RM_SQL_FINAL
        "  ORDER BY started_at LIMIT $1::integer FOR UPDATE SKIP LOCKED)"
        " AND status NOT IN " RM_SQL_FINAL,
        1, params, n);
}

err_t rm_store_sweep_ttls(struct db_pg *pg, long long batch, unsigned *n)
{
    char b[24];
    snprintf(b, sizeof(b), "%lld", batch);
    const char *params[] = {b};
    return rm_sweep_count(
        pg,
        "UPDATE task_runs SET status = 'EXPIRED', completed_at = now(), updated_at = now(),"
        " error = jsonb_build_object('name', 'Expired', 'message',"
        "  format('the run was not started within its ttl of %s s', ttl_s))"
        " WHERE id IN (SELECT id FROM task_runs"
        "  WHERE status = 'PENDING' AND ttl_s IS NOT NULL AND started_at IS NULL"
        "  AND created_at + make_interval(secs => ttl_s) < now()"
        "  ORDER BY created_at LIMIT $1::integer FOR UPDATE SKIP LOCKED)"
        " AND status = 'PENDING' AND started_at IS NULL",
        1, params, n);
}

err_t rm_store_sweep_orphans(struct db_pg *pg, long long batch, long long grace_ms, unsigned *n)
{
    char b[24], g[24];
    snprintf(b, sizeof(b), "%lld", batch);
    snprintf(g, sizeof(g), "%lld", grace_ms);
    const char *params[] = {b, g};
    /* Queued runs of a session that does not point at them, never handed out, older than the
     * grace: a claim that was lost (its cancel did not happen) or never made (the run-manager
     * died between trigger and claim). The grace covers a claim still under way. */
    return rm_sweep_count(
        pg,
        "UPDATE task_runs SET status = 'CANCELED', completed_at = now(), updated_at = now(),"
        " error = jsonb_build_object('message',"
        "  'orphaned: no session points at this run (its claim was lost or never made)')"
        " WHERE id IN (SELECT r.id FROM task_runs r"
        "  WHERE r.status = 'PENDING' AND r.session_id IS NOT NULL AND r.started_at IS NULL"
        "  AND r.created_at < now() - make_interval(secs => $2::double precision / 1000)"
        "  AND NOT EXISTS (SELECT 1 FROM session_bindings b"
        "   WHERE b.session_id = r.session_id AND b.current_run_id = r.id)"
        "  ORDER BY r.created_at LIMIT $1::integer FOR UPDATE OF r SKIP LOCKED)"
        " AND status = 'PENDING' AND started_at IS NULL",
        2, params, n);
}
/* clang-format on */
