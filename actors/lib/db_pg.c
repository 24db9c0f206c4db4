/*
 * db_pg.c - PostgreSQL connection with reconnect and backoff (see db_pg.h).
 */
#include "db_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

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

err_t db_pg_exec_bin(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                     const int *lens, const int *binary, PGresult **res)
{
    PGresult *r;
    ExecStatusType st;
    /* a transaction whose connection broke is over: never run its rest on a new one */
    if (db->tx_lost || (db->in_tx && !db_pg_up(db)))
        return ERR_UNAVAIL;
    if (db_pg_ensure(db) != OK)
        return ERR_UNAVAIL;
    uint64_t started_us = clock_mono_us();
    r = PQexecParams(db->conn, sql, nparams, NULL, params, lens, binary, 0);
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
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

err_t db_pg_begin(struct db_pg *db)
{
    PGresult *r;
    db->in_tx = false;
    db->tx_lost = false;
    err_t rc = db_pg_exec(db, "BEGIN", 0, NULL, &r);
    if (rc != OK)
        return rc;
    PQclear(r);
    db->in_tx = true;
    return OK;
}

err_t db_pg_commit(struct db_pg *db)
{
    PGresult *r;
    err_t rc = db_pg_exec(db, "COMMIT", 0, NULL, &r);
    if (rc == OK) {
        /* COMMIT of an aborted transaction succeeds as a ROLLBACK */
        if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
            rc = ERR_INTERNAL;
        PQclear(r);
    } else if (!db->tx_lost && db_pg_up(db)) {
        db_pg_rollback(db);
    }
    db->in_tx = false;
    db->tx_lost = false;
    return rc;
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

err_t db_pg_ping(struct db_pg *db)
{
    PGresult *r;
    err_t rc = db_pg_exec(db, "SELECT 1", 0, NULL, &r);
    if (rc == OK)
        PQclear(r);
    return rc;
}
