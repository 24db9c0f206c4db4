/*
 * session_store.c - the SQL of session rows.
 *
 * Every statement returns the row in one column order (SM_SESSION_COLS),
 * which session.c writes onto the wire; JSON columns come back as text.
 * Create is one statement: an upsert on (environment, external_id), so
 * two concurrent first calls make one row, decided by the database.
 */
#include <stdio.h>
#include <string.h>

#include "sm.h"

#define SM_SESSION_COLS                                                                            \
    "s.id, friendly_id, external_id, type, task_identifier, trigger_config::text, "                \
    "array_to_json(tags)::text, metadata::text, b.current_run_id, "                                \
    "COALESCE(b.current_run_version, 0), "                                                         \
    "COALESCE((extract(epoch FROM closed_at) * 1000)::bigint, 0), closed_reason, "                 \
    "COALESCE((extract(epoch FROM expires_at) * 1000)::bigint, 0), "                               \
    "(extract(epoch FROM created_at) * 1000)::bigint, "                                            \
    "(extract(epoch FROM GREATEST(s.updated_at, b.bound_at)) * 1000)::bigint"

/* The rows of a statement's CTE `up` (or of sessions) as s, with the run binding each has
 * (the run-manager's table, sql/postgres/0010). */
#define SM_SESSION_FROM(rows) " FROM " rows " s LEFT JOIN session_bindings b ON b.session_id = s.id"

/* A key is the friendly id when it carries the prefix, else the external id. */
#define SM_SESSION_KEY_MATCH                                                                       \
    "runtime_environment_id = $1 AND CASE WHEN left($2, 8) = 'session_' THEN friendly_id = $2 "    \
    "ELSE external_id = $2 END"

err_t sm_store_session_upsert(struct db_pg *pg, const struct sm_session_new *s, PGresult **res,
                              bool *is_cached)
{
    char id[CUID_LEN + 1], expires[32];
    if (cuid_new(id) != OK)
        return ERR_UNAVAIL;
    snprintf(expires, sizeof(expires), "%llu", (unsigned long long)s->expires_at_ms);
    const char *params[] = {
        id,          s->external_id,     s->type,           s->project_id, s->env_id,   s->org_id,
        s->env_type, s->task_identifier, s->trigger_config, s->tags,       s->metadata, expires};
    err_t rc =
        db_pg_exec(pg,
                   "WITH up AS ("
                   " INSERT INTO sessions (id, friendly_id, external_id, type, project_id,"
                   "  runtime_environment_id, organization_id, environment_type, task_identifier,"
                   "  trigger_config, tags, metadata, expires_at)"
                   " VALUES ($1, 'session_' || $1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb,"
                   "  ARRAY(SELECT jsonb_array_elements_text($10::jsonb)), $11::jsonb,"
                   "  CASE WHEN $12::bigint > 0 THEN to_timestamp($12::bigint / 1000.0) END)"
                   " ON CONFLICT (runtime_environment_id, external_id)"
                   "  DO UPDATE SET trigger_config = EXCLUDED.trigger_config, updated_at = now()"
                   " RETURNING *)"
                   " SELECT " SM_SESSION_COLS SM_SESSION_FROM("up"),
                   12, params, res);
    /* the contract's rule: cached when the row is not the one we tried to create */
    if (rc == OK && PQntuples(*res) == 1)
        *is_cached = strcmp(PQgetvalue(*res, 0, 0), id) != 0;
    return rc;
}

err_t sm_store_session_get(struct db_pg *pg, const char *env_id, const char *key, PGresult **res)
{
    const char *params[] = {env_id, key};
    return db_pg_exec(
        pg, "SELECT " SM_SESSION_COLS SM_SESSION_FROM("sessions") " WHERE " SM_SESSION_KEY_MATCH, 2,
        params, res);
}

err_t sm_store_session_update(struct db_pg *pg, const char *env_id, const char *key,
                              const char *tags, bool set_metadata, const char *metadata,
                              PGresult **res)
{
    const char *params[] = {env_id,  key, tags ? "t" : "f", tags, set_metadata ? "t" : "f",
                            metadata};
    return db_pg_exec(pg,
                      "WITH up AS (UPDATE sessions SET"
                      " tags = CASE WHEN $3::boolean"
                      "  THEN ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) ELSE tags END,"
                      " metadata = CASE WHEN $5::boolean THEN $6::jsonb ELSE metadata END,"
                      " updated_at = now()"
                      " WHERE " SM_SESSION_KEY_MATCH " RETURNING *)"
                      " SELECT " SM_SESSION_COLS SM_SESSION_FROM("up"),
                      6, params, res);
}

err_t sm_store_session_close(struct db_pg *pg, const char *env_id, const char *key,
                             const char *reason, PGresult **res)
{
    const char *params[] = {env_id, key, reason};
    err_t rc = db_pg_exec(pg,
                          "WITH up AS (UPDATE sessions SET closed_at = now(),"
                          " closed_reason = $3, updated_at = now()"
                          " WHERE " SM_SESSION_KEY_MATCH " AND closed_at IS NULL RETURNING *)"
                          " SELECT " SM_SESSION_COLS SM_SESSION_FROM("up"),
                          3, params, res);
    if (rc != OK || PQntuples(*res) > 0)
        return rc;
    /* Already closed, possibly by a concurrent close that won: a new statement (and so a new
     * snapshot) reads the winner's row. */
    PQclear(*res);
    *res = NULL;
    return sm_store_session_get(pg, env_id, key, res);
}
