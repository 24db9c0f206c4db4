/*
 * env_store.c - the SQL behind environments and API keys (schema:
 * sql/postgres/0002_environments.sql). Every statement takes its input as
 * parameters; nothing from the wire is spliced into SQL. SHA-256 of a key
 * is computed by PostgreSQL (sha256(), PG >= 11), so this process needs no
 * crypto library; every statement uses the same expression,
 * encode(sha256(convert_to(<key>::text, 'UTF8')), 'hex'). Statements are single and autocommitted:
 * where two writes must go together (rotation) they share one statement, hence one transaction, and
 * a crash in between leaves nothing half done.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

/* How often an insert is retried when a random id or key collides (never seen in practice). */
#define SM_STORE_TRIES 3

/*
 * Runs one statement. db_pg_exec has already logged libpq's detail; for
 * callers every store failure (unreachable, timeout, missing table) is
 * ERR_UNAVAIL: retry later.
 */
static err_t sm_pg(struct db_pg *pg, const char *sql, int n, const char *const *params,
                   PGresult **res)
{
    err_t rc = db_pg_exec(pg, sql, n, params, res);
    return rc == OK ? OK : ERR_UNAVAIL;
}

/* Copies column col of row into buf; ERR_INTERNAL when it does not fit (a row we did not write). */
static err_t sm_col(const PGresult *r, int row, int col, char *buf, size_t cap)
{
    struct slice s = {PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col)};
    return slice_copy(s, buf, cap) == OK ? OK : ERR_INTERNAL;
}

static bool sm_col_bool(const PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col)[0] == 't';
}

/* First column of the first row into out, ERR_NOTFOUND when there is no row. */
static err_t sm_first_id(PGresult *r, char *out)
{
    err_t rc = PQntuples(r) > 0 ? sm_col(r, 0, 0, out, SM_ID_MAX) : ERR_NOTFOUND;
    PQclear(r);
    return rc;
}

/* A project's external reference: "proj_" + 20 of [a-z0-9], uniform. */
static err_t sm_external_ref_new(char *out, size_t cap)
{
    static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char b[64];
    size_t o = 0;
    if (cap < 26)
        return ERR_INTERNAL;
    memcpy(out, "proj_", 5);
    while (o < 20) {
        if (random_bytes(b, sizeof(b)) != OK)
            return ERR_UNAVAIL;
        for (size_t i = 0; i < sizeof(b) && o < 20; i++)
            if (b[i] < 252) /* 252 = 7 * 36: rejecting the rest keeps the draw uniform */
                out[5 + o++] = b36[b[i] % 36];
    }
    out[25] = '\0';
    return OK;
}

err_t sm_store_org_ensure(struct db_pg *pg, const char *slug, char *org_id)
{
    for (int t = 0; t < SM_STORE_TRIES; t++) {
        char id[CUID_LEN + 1];
        PGresult *r;
        err_t rc;
        if ((rc = cuid_new(id)) != OK)
            return rc;
        const char *ins[] = {id, slug};
        /*
         * Two statements, not one CTE: a CTE's SELECT runs on the statement's
         * snapshot and would miss a row a concurrent creator committed while
         * our INSERT waited on it. The second statement gets a fresh snapshot.
         */
        if ((rc = sm_pg(pg,
                        "INSERT INTO organizations (id, slug, title) VALUES ($1, $2, $2) "
                        "ON CONFLICT DO NOTHING RETURNING id",
                        2, ins, &r)) != OK)
            return rc;
        if ((rc = sm_first_id(r, org_id)) != ERR_NOTFOUND)
            return rc;
        const char *sel[] = {slug};
        if ((rc = sm_pg(pg, "SELECT id FROM organizations WHERE slug = $1", 1, sel, &r)) != OK)
            return rc;
        if ((rc = sm_first_id(r, org_id)) != ERR_NOTFOUND)
            return rc;
        /* the conflict was on the random id: draw another */
    }
    return ERR_INTERNAL;
}

err_t sm_store_project_ensure(struct db_pg *pg, const char *org_id, const char *slug,
                              char *project_id)
{
    for (int t = 0; t < SM_STORE_TRIES; t++) {
        char id[CUID_LEN + 1], ref[32];
        PGresult *r;
        err_t rc;
        if ((rc = cuid_new(id)) != OK || (rc = sm_external_ref_new(ref, sizeof(ref))) != OK)
            return rc;
        const char *ins[] = {id, org_id, slug, ref};
        if ((rc = sm_pg(pg,
                        "INSERT INTO projects (id, organization_id, slug, name, external_ref) "
                        "VALUES ($1, $2, $3, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
                        4, ins, &r)) != OK)
            return rc;
        if ((rc = sm_first_id(r, project_id)) != ERR_NOTFOUND)
            return rc;
        const char *sel[] = {org_id, slug};
        if ((rc = sm_pg(pg,
                        "SELECT id, deleted_at IS NOT NULL FROM projects "
                        "WHERE organization_id = $1 AND slug = $2",
                        2, sel, &r)) != OK)
            return rc;
        if (PQntuples(r) > 0) {
            bool deleted = sm_col_bool(r, 0, 1);
            rc = sm_col(r, 0, 0, project_id, SM_ID_MAX);
            PQclear(r);
            return rc == OK && deleted ? ERR_CONFLICT : rc;
        }
        PQclear(r);
        /* the conflict was on the random id or external_ref: draw again */
    }
    return ERR_INTERNAL;
}

err_t sm_store_env_find_root(struct db_pg *pg, const char *project_id, const char *type,
                             char *env_id)
{
    PGresult *r;
    const char *p[] = {project_id, type};
    err_t rc = sm_pg(pg,
                     "SELECT id FROM runtime_environments "
                     "WHERE project_id = $1 AND type = $2 AND parent_environment_id IS NULL",
                     2, p, &r);
    return rc == OK ? sm_first_id(r, env_id) : rc;
}

err_t sm_store_env_branch(struct db_pg *pg, const char *parent_id, const char *branch, char *env_id)
{
    PGresult *r;
    const char *p[] = {parent_id, branch};
    err_t rc = sm_pg(pg,
                     "SELECT id FROM runtime_environments "
                     "WHERE parent_environment_id = $1 AND branch_name = $2",
                     2, p, &r);
    return rc == OK ? sm_first_id(r, env_id) : rc;
}

/*
 * Inserting never fails on a unique index: ON CONFLICT DO NOTHING (no
 * target: every unique index, the partial one included) returns no row
 * instead. A failing INSERT would have PostgreSQL's detail logged by
 * db_pg_exec, and that detail can quote the row, key included.
 */
err_t sm_store_env_insert_root(struct db_pg *pg, const char *org_id, const char *project_id,
                               const char *type, const char *slug, const char *key, char *env_id)
{
    char id[CUID_LEN + 1], other[SM_ID_MAX];
    PGresult *r;
    err_t rc;
    if ((rc = cuid_new(id)) != OK)
        return rc;
    const char *p[] = {id, org_id, project_id, type, slug, key};
    if ((rc = sm_pg(pg,
                    "INSERT INTO runtime_environments "
                    "(id, organization_id, project_id, type, slug, api_key, api_key_hash) "
                    "VALUES ($1, $2, $3, $4, $5, $6::text, "
                    "encode(sha256(convert_to($6::text, 'UTF8')), 'hex')) "
                    "ON CONFLICT DO NOTHING RETURNING id",
                    6, p, &r)) != OK)
        return rc;
    if ((rc = sm_first_id(r, env_id)) != ERR_NOTFOUND)
        return rc;
    rc = sm_store_env_find_root(pg, project_id, type, other);
    return rc == OK ? ERR_EXISTS : rc == ERR_NOTFOUND ? ERR_CONFLICT : rc;
}

err_t sm_store_env_insert_branch(struct db_pg *pg, const struct sm_env *parent, const char *branch,
                                 const char *key, char *env_id)
{
    char id[CUID_LEN + 1], other[SM_ID_MAX];
    PGresult *r;
    err_t rc;
    if ((rc = cuid_new(id)) != OK)
        return rc;
    const char *p[] = {id, parent->org_id, parent->project_id, branch, parent->id, key};
    if ((rc = sm_pg(pg,
                    "INSERT INTO runtime_environments "
                    "(id, organization_id, project_id, type, slug, parent_environment_id, "
                    "branch_name, api_key, api_key_hash) "
                    "VALUES ($1, $2, $3, 'PREVIEW', $4, $5, $4, $6::text, "
                    "encode(sha256(convert_to($6::text, 'UTF8')), 'hex')) "
                    "ON CONFLICT DO NOTHING RETURNING id",
                    6, p, &r)) != OK)
        return rc;
    if ((rc = sm_first_id(r, env_id)) != ERR_NOTFOUND)
        return rc;
    rc = sm_store_env_branch(pg, parent->id, branch, other);
    return rc == OK ? ERR_EXISTS : rc == ERR_NOTFOUND ? ERR_CONFLICT : rc;
}

/* Columns 0-9 of SM_SQL_ENV_COLS into env (keys untouched). */
#define SM_SQL_ENV_COLS                                                                            \
    "e.id, e.type, e.slug, e.organization_id, o.slug, e.project_id, p.slug, "                      \
    "coalesce(e.parent_environment_id, ''), coalesce(e.branch_name, ''), "                         \
    "(extract(epoch FROM e.created_at) * 1000)::bigint"
#define SM_SQL_ENV_FROM                                                                            \
    " FROM runtime_environments e JOIN organizations o ON o.id = e.organization_id "               \
    "JOIN projects p ON p.id = e.project_id "

static err_t sm_env_from_row(const PGresult *r, int row, struct sm_env *env)
{
    err_t rc = OK;
    memset(env, 0, sizeof(*env));
    if (sm_col(r, row, 0, env->id, sizeof(env->id)) != OK ||
        sm_col(r, row, 1, env->type, sizeof(env->type)) != OK ||
        sm_col(r, row, 2, env->slug, sizeof(env->slug)) != OK ||
        sm_col(r, row, 3, env->org_id, sizeof(env->org_id)) != OK ||
        sm_col(r, row, 4, env->org_slug, sizeof(env->org_slug)) != OK ||
        sm_col(r, row, 5, env->project_id, sizeof(env->project_id)) != OK ||
        sm_col(r, row, 6, env->project_slug, sizeof(env->project_slug)) != OK ||
        sm_col(r, row, 7, env->parent_id, sizeof(env->parent_id)) != OK ||
        sm_col(r, row, 8, env->branch_name, sizeof(env->branch_name)) != OK)
        rc = ERR_INTERNAL;
    env->created_at_ms = strtoull(PQgetvalue(r, row, 9), NULL, 10);
    return rc;
}

/* Splits "k1,k2,..." (keys never contain ',') into env->signing_keys. */
static err_t sm_env_keys_split(struct sm_env *env, const char *list)
{
    env->nsigning_keys = 0;
    while (*list && env->nsigning_keys < SM_SIGNING_KEYS_MAX) {
        size_t n = strcspn(list, ",");
        struct slice s = {list, n};
        if (slice_copy(s, env->signing_keys[env->nsigning_keys], API_KEY_MAX) != OK)
            return ERR_INTERNAL;
        env->nsigning_keys++;
        list += n;
        if (*list == ',')
            list++;
    }
    return OK;
}

err_t sm_store_env_get(struct db_pg *pg, const char *id, struct sm_env *env)
{
    char limit[16];
    PGresult *r;
    err_t rc;
    snprintf(limit, sizeof(limit), "%d", SM_SIGNING_KEYS_MAX - 1);
    const char *p[] = {id, limit};
    /*
     * Signing keys belong to the environment that owns the secret: the parent
     * for a preview branch. Current key first, then grace-window keys, newest
     * first, so a verifier tries the likeliest key first.
     */
    if ((rc = sm_pg(pg,
                    "SELECT " SM_SQL_ENV_COLS ", e.api_key, e.archived_at IS NOT NULL, "
                    "p.deleted_at IS NOT NULL, "
                    "(SELECT string_agg(k.api_key, ',' ORDER BY k.ord, k.ts DESC) FROM ("
                    "  SELECT s.api_key, 0 AS ord, s.updated_at AS ts FROM runtime_environments s"
                    "   WHERE s.id = coalesce(e.parent_environment_id, e.id)"
                    "  UNION ALL"
                    "  (SELECT v.api_key, 1, v.created_at FROM revoked_api_keys v"
                    "    WHERE v.runtime_environment_id = coalesce(e.parent_environment_id, e.id)"
                    "      AND v.expires_at > now()"
                    "    ORDER BY v.created_at DESC LIMIT $2::int)) k)" SM_SQL_ENV_FROM
                    "WHERE e.id = $1",
                    2, p, &r)) != OK)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return ERR_NOTFOUND;
    }
    rc = sm_env_from_row(r, 0, env);
    if (rc == OK && sm_col(r, 0, 10, env->api_key, sizeof(env->api_key)) != OK)
        rc = ERR_INTERNAL;
    env->archived = sm_col_bool(r, 0, 11);
    env->project_deleted = sm_col_bool(r, 0, 12);
    if (rc == OK)
        rc = sm_env_keys_split(env, PQgetvalue(r, 0, 13));
    PQclear(r);
    return rc;
}

err_t sm_store_env_by_key(struct db_pg *pg, const char *key, char *env_id)
{
    PGresult *r;
    err_t rc;
    bool found = false;
    size_t kn = strlen(key);
    const char *p[] = {key};
    /* current keys first: a key is never both current and revoked, but be deterministic */
    if ((rc = sm_pg(pg,
                    "WITH h AS (SELECT encode(sha256(convert_to($1::text, 'UTF8')), 'hex') "
                    "AS hash) "
                    "SELECT e.id, e.api_key, 0 AS ord FROM runtime_environments e, h "
                    " WHERE e.api_key_hash = h.hash "
                    "UNION ALL "
                    "SELECT v.runtime_environment_id, v.api_key, 1 FROM revoked_api_keys v, h "
                    " WHERE v.api_key_hash = h.hash AND v.expires_at > now() "
                    "ORDER BY 3 LIMIT 4",
                    1, p, &r)) != OK)
        return rc;
    /* the hash narrowed it down; the key itself decides, compared in constant time */
    for (int i = 0; i < PQntuples(r); i++) {
        const char *k = PQgetvalue(r, i, 1);
        if (sm_ct_equal(k, (size_t)PQgetlength(r, i, 1), key, kn) && !found) {
            found = true;
            rc = sm_col(r, i, 0, env_id, SM_ID_MAX);
        }
    }
    PQclear(r);
    return found ? rc : ERR_NOTFOUND;
}

err_t sm_store_env_rotate(struct db_pg *pg, const char *id, const char *new_key, uint64_t grace_ms)
{
    char rid[CUID_LEN + 1], grace[24];
    PGresult *r;
    err_t rc;
    if ((rc = cuid_new(rid)) != OK)
        return rc;
    snprintf(grace, sizeof(grace), "%" PRIu64, grace_ms);
    const char *p[] = {id, rid, new_key, grace};
    /*
     * One statement: the old key moves to revoked_api_keys and the new one
     * takes its place atomically. FOR UPDATE makes a concurrent rotation (a
     * second instance) wait and then revoke the key this one installed,
     * rather than the same old key twice.
     */
    if ((rc = sm_pg(pg,
                    "WITH old AS ("
                    "  SELECT id, api_key, api_key_hash FROM runtime_environments"
                    "   WHERE id = $1 AND archived_at IS NULL FOR UPDATE), "
                    "rev AS ("
                    "  INSERT INTO revoked_api_keys"
                    "   (id, runtime_environment_id, api_key, api_key_hash, expires_at)"
                    "  SELECT $2, old.id, old.api_key, old.api_key_hash,"
                    "         now() + $4::bigint * interval '1 millisecond' FROM old) "
                    "UPDATE runtime_environments e SET api_key = $3::text, "
                    "  api_key_hash = encode(sha256(convert_to($3::text, 'UTF8')), 'hex'), "
                    "updated_at = now() "
                    "FROM old WHERE e.id = old.id RETURNING e.id",
                    4, p, &r)) != OK)
        return rc;
    rc = PQntuples(r) > 0 ? OK : ERR_NOTFOUND;
    PQclear(r);
    return rc;
}

err_t sm_store_env_list(struct db_pg *pg, void (*fn)(void *arg, const struct sm_env *env),
                        void *arg)
{
    char limit[16];
    PGresult *r;
    err_t rc;
    snprintf(limit, sizeof(limit), "%d", SM_LIST_MAX);
    const char *p[] = {limit};
    if ((rc = sm_pg(pg,
                    "SELECT " SM_SQL_ENV_COLS SM_SQL_ENV_FROM
                    "WHERE e.archived_at IS NULL AND p.deleted_at IS NULL "
                    "ORDER BY e.created_at, e.id LIMIT $1::int",
                    1, p, &r)) != OK)
        return rc;
    for (int i = 0; i < PQntuples(r) && rc == OK; i++) {
        struct sm_env env;
        if ((rc = sm_env_from_row(r, i, &env)) == OK)
            fn(arg, &env);
    }
    PQclear(r);
    return rc;
}
