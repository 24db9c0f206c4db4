/*
 * actor_once.c - the SQL of requests handled once (see actor_once.h).
 *
 * The key is claimed by an INSERT at the start of the request's transaction,
 * not at its end: a concurrent second arrival (on another instance) then
 * waits on the key's index entry instead of doing the work a second time
 * and failing at the end. The answer is written into the claimed row just
 * before COMMIT, so nobody ever sees a claimed row without its answer.
 */
#include "actor_once.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "log.h"

bool actor_once_applies(const struct envelope *env)
{
    return env->kind == ENV_REQUEST && env->origin != 0;
}

void actor_once_key_of(const struct envelope *env, uint64_t keep_ms, uint64_t now_ms,
                       struct actor_once_key *k)
{
    uint64_t base = env->deadline_ms > now_ms ? env->deadline_ms : now_ms;
    snprintf(k->key, sizeof(k->key), "%016" PRIx64 "%016" PRIx64, env->origin, env->req_id);
    k->type = env->type;
    k->body_hash = fnv1a(env->body.p, env->body.n);
    k->expires_ms = base + keep_ms;
}

void actor_once_prev_free(struct actor_once_prev *p)
{
    if (p->body)
        PQfreemem(p->body);
    p->body = NULL;
    p->n = 0;
}

err_t actor_once_claim(struct db_pg *pg, const struct actor_once_key *k, bool *first,
                       struct actor_once_prev *prev)
{
    char type[8], hash[24], expires[24];
    PGresult *r;
    err_t rc;

    memset(prev, 0, sizeof(*prev));
    snprintf(type, sizeof(type), "%u", (unsigned)k->type);
    snprintf(hash, sizeof(hash), "%" PRId64, (int64_t)k->body_hash); /* bigint is signed */
    snprintf(expires, sizeof(expires), "%" PRIu64, k->expires_ms);
    const char *ins[] = {k->key, type, hash, expires};
    rc = db_pg_begin_exec(pg,
                          "INSERT INTO bus_replies (req_key, type, body_hash, expires_at)"
                          " VALUES ($1::uuid, $2::integer, $3::bigint,"
                          " to_timestamp($4::bigint / 1000.0))"
                          " ON CONFLICT (req_key) DO NOTHING RETURNING 1",
                          4, ins, NULL, NULL, &r);
    if (rc != OK)
        return rc;
    *first = PQntuples(r) == 1;
    PQclear(r);
    if (*first)
        return OK;
    /* a new statement, so a new snapshot: it sees the row the other arrival committed */
    const char *sel[] = {k->key, type, hash};
    rc = db_pg_exec(pg,
                    "SELECT type = $2::integer AND body_hash = $3::bigint, body"
                    " FROM bus_replies WHERE req_key = $1::uuid",
                    3, sel, &r);
    if (rc != OK)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return ERR_NOTFOUND;
    }
    prev->same = PQgetvalue(r, 0, 0)[0] == 't';
    if (!PQgetisnull(r, 0, 1) && PQgetlength(r, 0, 1) > 0) {
        size_t n = 0;
        prev->body = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &n);
        if (!prev->body) {
            PQclear(r);
            return ERR_NOMEM;
        }
        prev->n = n;
    }
    PQclear(r);
    return OK;
}

err_t actor_once_save_commit(struct db_pg *pg, const struct actor_once_key *k, const void *body,
                             size_t n)
{
    PGresult *r;
    if (n > INT32_MAX)
        return ERR_TOOBIG;
    const char *p[] = {k->key, n ? (const char *)body : ""};
    const int lens[] = {0, (int)n};
    const int bin[] = {0, 1};
    /* the claim made the row in this transaction, so it is there; if it were not, the division
     * fails the statement, and with it the COMMIT pipelined behind it: nothing is committed
     * whose answer could not be kept */
    err_t rc = db_pg_exec_commit(pg,
                                 "WITH kept AS (UPDATE bus_replies SET body = $2::bytea"
                                 " WHERE req_key = $1::uuid RETURNING 1)"
                                 " SELECT 1 / count(*) FROM kept",
                                 2, p, lens, bin, &r);
    if (rc == OK)
        PQclear(r);
    return rc;
}

err_t actor_once_sweep(struct db_pg *pg, unsigned *n)
{
    PGresult *r;
    char batch[16];
    snprintf(batch, sizeof(batch), "%d", ACTOR_ONCE_SWEEP_BATCH);
    const char *p[] = {batch};
    /* SKIP LOCKED: instances sweeping at once split the rows instead of waiting on each other */
    err_t rc =
        db_pg_exec(pg,
                   "DELETE FROM bus_replies WHERE req_key IN (SELECT req_key FROM bus_replies"
                   " WHERE expires_at < now() ORDER BY expires_at LIMIT $1::integer"
                   " FOR UPDATE SKIP LOCKED)",
                   1, p, &r);
    if (rc != OK)
        return rc;
    *n = (unsigned)strtoul(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return OK;
}
