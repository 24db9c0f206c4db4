/*
 * db_pg.c - PostgreSQL connection with reconnect and backoff (see db_pg.h).
 */
#include "db_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fnv.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

/* Forgets the statements prepared on a connection that is gone. */
static void db_pg_stmts_clear(struct db_pg *db)
{
    for (unsigned i = 0; i < db->nstmts; i++)
        free(db->stmts[i].sql);
    db->nstmts = 0;
}

void db_pg_init(struct db_pg *db, const char *url, unsigned statement_timeout_ms)
{
    memset(db, 0, sizeof(*db));
    db->url = xstrdup(url);
    db->backoff = (struct backoff)BACKOFF_INIT(100, 5000);
    db->statement_timeout_ms = statement_timeout_ms ? statement_timeout_ms : 5000;
}

void db_pg_fini(struct db_pg *db)
{
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    db_pg_stmts_clear(db);
    free(db->url);
    db->url = NULL;
}

static void db_pg_drop(struct db_pg *db, const char *why)
{
    if (db->in_tx)
        db->tx_lost = true;
    if (db->was_up)
        LOG_WARN("db.pg_down", "lost the PostgreSQL connection: %s", why);
    db->was_up = false;
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    db_pg_stmts_clear(db);
    backoff_fail(&db->backoff);
}

bool db_pg_up(const struct db_pg *db)
{
    return db->conn && PQstatus(db->conn) == CONNECTION_OK;
}

err_t db_pg_ensure(struct db_pg *db)
{
    char opts[64];
    if (db_pg_up(db))
        return OK;
    if (db->conn)
        db_pg_drop(db, PQerrorMessage(db->conn));
    if (!backoff_ready(&db->backoff))
        return ERR_UNAVAIL;

    snprintf(opts, sizeof(opts), "-c statement_timeout=%u", db->statement_timeout_ms);
    const char *const keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
    const char *const vals[] = {db->url, "2", opts, "tether", NULL};
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        char why[256];
        snprintf(why, sizeof(why), "%s", db->conn ? PQerrorMessage(db->conn) : "out of memory");
        why[strcspn(why, "\n")] = '\0';
        if (db->conn)
            PQfinish(db->conn);
        db->conn = NULL;
        if (db->backoff.cur_ms == 0)
            LOG_WARN("db.pg_connect_failed", "could not connect to PostgreSQL: %s", why);
        backoff_fail(&db->backoff);
        return ERR_UNAVAIL;
    }
    backoff_reset(&db->backoff);
    if (!db->was_up)
        LOG_INFO("db.pg_up", "connected to PostgreSQL");
    db->was_up = true;
    return OK;
}

err_t db_pg_exec(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                 PGresult **res)
{
    return db_pg_exec_bin(db, sql, nparams, params, NULL, NULL, res);
}

/* Whether a statement may run now: not in a transaction whose connection broke (never run its
 * rest on a new one), and connected. */
static err_t db_pg_ready(struct db_pg *db)
{
    if (db->tx_lost || (db->in_tx && !db_pg_up(db)))
        return ERR_UNAVAIL;
    return db_pg_ensure(db);
}

/* What a statement's result r (NULL: none) comes to, once for every way of running one: OK with
 * *res = r, or the error, r freed, the connection dropped when it broke. */
static err_t db_pg_result(struct db_pg *db, PGresult *r, uint64_t started_us, PGresult **res)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        pm_store_call("postgres", started_us, OK);
        *res = r;
        return OK;
    }
    if (PQstatus(db->conn) != CONNECTION_OK) {
        pm_store_call("postgres", started_us, ERR_UNAVAIL);
        PQclear(r);
        db_pg_drop(db, PQerrorMessage(db->conn));
        return ERR_UNAVAIL;
    }
    /* only the SQLSTATE and the primary message: DETAIL lines can quote row values (keys) */
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    err_t rc = db_pg_err_of_sqlstate(state);
    pm_store_call("postgres", started_us, rc);
    LOG_WARN("db.pg_query_failed", "statement failed (%s, %s): %s", state ? state : "?",
             err_name(rc), primary ? primary : "no result");
    PQclear(r);
    return rc;
}

/* One statement of a pipelined run. */
struct db_pg_step {
    const char *sql;
    int nparams;
    const char *const *params;
    const int *lens;
    const int *binary;
};

/* The index of sql among the statements of the connection (prepared, or to be: *fresh), or
 * DB_PG_STMTS_MAX when it cannot be one (the cache is full, or out of memory): it runs
 * unprepared. Its name there is db_pg_stmt_name of the index. */
static unsigned db_pg_stmt_find(struct db_pg *db, const char *sql, bool *fresh)
{
    uint64_t h = fnv1a(sql, strlen(sql));
    for (unsigned i = 0; i < db->nstmts; i++)
        if (db->stmts[i].sql && db->stmts[i].hash == h && strcmp(db->stmts[i].sql, sql) == 0) {
            *fresh = !db->stmts[i].ready;
            return i;
        }
    *fresh = false;
    if (db->nstmts == DB_PG_STMTS_MAX || !(db->stmts[db->nstmts].sql = strdup(sql)))
        return DB_PG_STMTS_MAX;
    db->stmts[db->nstmts].hash = h;
    db->stmts[db->nstmts].ready = false;
    *fresh = true;
    return db->nstmts++;
}

static void db_pg_stmt_name(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "tether_%u", i);
}

/* The result of one query of a pipeline, up to its end: the first kept, any more freed. */
static PGresult *db_pg_pipeline_take(PGconn *conn)
{
    PGresult *first = PQgetResult(conn), *more;
    while (first && (more = PQgetResult(conn)))
        PQclear(more);
    return first;
}

#define DB_PG_STEPS_MAX 2

/*
 * Runs n steps in one round trip (pipeline mode), each prepared on its first run. res[i] gets
 * the result of step i, NULL where it did not run: after a failed step PostgreSQL skips the rest
 * of the pipeline. Returns OK when every step succeeded; otherwise the first failure's error,
 * with the results before it kept (the caller frees them) and the rest NULL. A connection that
 * breaks is dropped (ERR_UNAVAIL).
 */
static err_t db_pg_run(struct db_pg *db, const struct db_pg_step *st, unsigned n, PGresult **res)
{
    PGresult *prep[DB_PG_STEPS_MAX] = {0}, *r[DB_PG_STEPS_MAX] = {0}, *sync = NULL;
    unsigned idx[DB_PG_STEPS_MAX];
    bool fresh[DB_PG_STEPS_MAX], sent = true;
    char name[32];
    for (unsigned i = 0; i < n; i++)
        res[i] = NULL;
    if (db_pg_ready(db) != OK)
        return ERR_UNAVAIL;
    PGconn *conn = db->conn;
    uint64_t started_us = clock_mono_us();
    if (!PQenterPipelineMode(conn))
        return db_pg_result(db, NULL, started_us, &res[0]);
    for (unsigned i = 0; i < n && sent; i++) {
        const struct db_pg_step *s = &st[i];
        idx[i] = db_pg_stmt_find(db, s->sql, &fresh[i]);
        if (idx[i] == DB_PG_STMTS_MAX) {
            sent =
                PQsendQueryParams(conn, s->sql, s->nparams, NULL, s->params, s->lens, s->binary, 0);
            continue;
        }
        db_pg_stmt_name(idx[i], name, sizeof(name));
        if (fresh[i])
            sent = PQsendPrepare(conn, name, s->sql, s->nparams, NULL);
        sent =
            sent && PQsendQueryPrepared(conn, name, s->nparams, s->params, s->lens, s->binary, 0);
    }
    if (sent && PQpipelineSync(conn)) {
        for (unsigned i = 0; i < n; i++) {
            if (idx[i] != DB_PG_STMTS_MAX && fresh[i])
                prep[i] = db_pg_pipeline_take(conn);
            r[i] = db_pg_pipeline_take(conn);
        }
        sync = PQgetResult(conn);
    }
    bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (!synced || !PQexitPipelineMode(conn)) {
        for (unsigned i = 0; i < n; i++) {
            PQclear(prep[i]);
            PQclear(r[i]);
        }
        db_pg_drop(db, "a pipelined statement did not complete");
        return ERR_UNAVAIL;
    }
    err_t rc = OK;
    for (unsigned i = 0; i < n; i++) {
        if (prep[i] && PQresultStatus(prep[i]) == PGRES_COMMAND_OK) {
            db->stmts[idx[i]].ready = true;
        } else if (prep[i]) {
            /* not prepared (skipped, or refused): a refusal is the statement's error */
            if (PQresultStatus(prep[i]) != PGRES_PIPELINE_ABORTED) {
                PQclear(r[i]);
                r[i] = prep[i];
                prep[i] = NULL;
            }
        }
        PQclear(prep[i]);
        if (rc != OK) {
            PQclear(r[i]); /* skipped after the failure (PGRES_PIPELINE_ABORTED) */
            continue;
        }
        /* a table changed under a prepared statement ("cached plan must not change result
         * type"), or the statement is gone: it stays so under its name on this connection */
        const char *state = r[i] ? PQresultErrorField(r[i], PG_DIAG_SQLSTATE) : NULL;
        bool stale = idx[i] != DB_PG_STMTS_MAX && state &&
                     (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0);
        rc = db_pg_result(db, r[i], started_us, &res[i]);
        if (stale) { /* its name is spent (libpq 15 cannot close it): the text gets a new one */
            free(db->stmts[idx[i]].sql);
            db->stmts[idx[i]].sql = NULL;
        }
    }
    return rc;
}

err_t db_pg_exec_bin(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                     const int *lens, const int *binary, PGresult **res)
{
    struct db_pg_step st = {sql, nparams, params, lens, binary};
    return db_pg_run(db, &st, 1, res);
}

err_t db_pg_err_of_sqlstate(const char *state)
{
    if (!state || strlen(state) != 5)
        return ERR_INTERNAL;
    if (strcmp(state, "57014") == 0) /* query_canceled: statement_timeout fired */
        return ERR_TIMEOUT;
    if (strcmp(state, "23505") == 0) /* unique_violation */
        return ERR_EXISTS;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) /* serialization, deadlock */
        return ERR_UNAVAIL;
    if (strcmp(state, "55P03") == 0) /* lock_not_available */
        return ERR_UNAVAIL;
    /* 08 connection exception, 53 insufficient resources, 57P0x shutdown / starting up */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strncmp(state, "57P", 3) == 0)
        return ERR_UNAVAIL;
    if (strncmp(state, "22", 2) == 0) /* data exception: a malformed value (e.g. bad JSON) */
        return ERR_INVAL;
    return ERR_INTERNAL;
}

void db_pg_rollback(struct db_pg *db)
{
    PGresult *r;
    if (db->in_tx && !db->tx_lost && db_pg_up(db)) {
        db->in_tx = false; /* ROLLBACK itself may reconnect nothing: checked just above */
        if (db_pg_exec(db, "ROLLBACK", 0, NULL, &r) == OK)
            PQclear(r);
        else if (db->conn && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
            db_pg_drop(db, "could not roll back a transaction");
    }
    db->in_tx = false;
    db->tx_lost = false;
}

err_t db_pg_begin_exec(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                       const int *lens, const int *binary, PGresult **res)
{
    struct db_pg_step st[2] = {{"BEGIN", 0, NULL, NULL, NULL},
                               {sql, nparams, params, lens, binary}};
    PGresult *r[2];
    db->in_tx = false;
    db->tx_lost = false;
    err_t rc = db_pg_run(db, st, 2, r);
    PQclear(r[0]);
    /* open, or open and aborted when the statement failed: the caller's rollback ends it */
    db->in_tx = db->conn && PQtransactionStatus(db->conn) != PQTRANS_IDLE;
    if (rc == OK && !db->in_tx) { /* the statement ended the transaction itself: not ours */
        PQclear(r[1]);
        return ERR_INTERNAL;
    }
    *res = r[1];
    return rc;
}

err_t db_pg_exec_commit(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                        const int *lens, const int *binary, PGresult **res)
{
    struct db_pg_step st[2] = {{sql, nparams, params, lens, binary},
                               {"COMMIT", 0, NULL, NULL, NULL}};
    PGresult *r[2];
    if (!db->in_tx)
        return ERR_UNAVAIL;
    err_t rc = db_pg_run(db, st, 2, r);
    /* a COMMIT of an aborted transaction succeeds as a ROLLBACK: not committed */
    if (rc == OK && strcmp(PQcmdStatus(r[1]), "COMMIT") != 0)
        rc = ERR_INTERNAL;
    PQclear(r[1]);
    if (rc == OK) {
        db->in_tx = false;
        db->tx_lost = false;
        *res = r[0];
        return OK;
    }
    PQclear(r[0]);
    /* the statement failed (the COMMIT did not run: open and aborted), or the COMMIT did not
     * commit (over); a dropped connection is over too, and db_pg_rollback knows it */
    db->in_tx = db->in_tx && (!db->conn || PQtransactionStatus(db->conn) != PQTRANS_IDLE);
    return rc;
}

err_t db_pg_ping(struct db_pg *db)
{
    PGresult *r;
    err_t rc = db_pg_exec(db, "SELECT 1", 0, NULL, &r);
    if (rc == OK)
        PQclear(r);
    return rc;
}
