/*
 * db_pg.h - one PostgreSQL connection that reconnects with backoff.
 *
 * Blocking libpq calls, always bounded: connect_timeout on connect and
 * statement_timeout on every statement. Errors are logged here once, with
 * libpq's detail, and reported as ERR_UNAVAIL (the store is unreachable)
 * or by the statement's SQLSTATE class (db_pg_err_of_sqlstate).
 */
#ifndef TETHER_LIB_DB_PG_H
#define TETHER_LIB_DB_PG_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "backoff.h"
#include "err.h"

struct db_pg {
    char *url;
    PGconn *conn;
    struct backoff backoff;
    unsigned statement_timeout_ms;
    bool was_up; /* for logging transitions only */
    bool in_tx;  /* between db_pg_begin and db_pg_commit/rollback */
    bool tx_lost; /* the connection broke inside that transaction */
};

/* url is copied. No connection is attempted yet. */
void db_pg_init(struct db_pg *db, const char *url, unsigned statement_timeout_ms);
void db_pg_fini(struct db_pg *db);

/* Connects if not connected and the backoff allows; OK when a live connection exists. */
err_t db_pg_ensure(struct db_pg *db);

/* Round trip (SELECT 1); on failure drops the connection so the next ensure reconnects. */
err_t db_pg_ping(struct db_pg *db);

/* True while the connection is believed healthy. */
bool db_pg_up(const struct db_pg *db);

/*
 * Runs a statement with parameters (text format). On OK *res is the result
 * (PGRES_TUPLES_OK or PGRES_COMMAND_OK), which the caller PQclear()s. A
 * connection failure drops the connection and returns ERR_UNAVAIL; a failed
 * statement returns db_pg_err_of_sqlstate() of its SQLSTATE.
 */
err_t db_pg_exec(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                 PGresult **res);

/*
 * The one translation of a SQLSTATE into an err_t: 57014 (statement timeout) ERR_TIMEOUT;
 * 23505 ERR_EXISTS; 40001, 40P01, 55P03, 08xxx, 53xxx, 57P0x ERR_UNAVAIL (transient: the
 * client may retry); 22xxx ERR_INVAL (a malformed value); anything else, or NULL,
 * ERR_INTERNAL.
 */
err_t db_pg_err_of_sqlstate(const char *state);

/*
 * db_pg_exec with some parameters in binary: lens[i] and binary[i] (non-zero
 * = bytes, for a bytea) as libpq's paramLengths/paramFormats; NULL arrays =
 * every parameter text.
 */
err_t db_pg_exec_bin(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                     const int *lens, const int *binary, PGresult **res);

/*
 * A transaction on the connection: every db_pg_exec until db_pg_commit or
 * db_pg_rollback is part of it. While it is open a lost connection is not
 * re-made (the statements after it would run outside the transaction): they
 * fail with ERR_UNAVAIL, and so does the commit. db_pg_commit returns OK
 * only when PostgreSQL committed (a COMMIT of a transaction a failed
 * statement aborted rolls back: ERR_INTERNAL). db_pg_rollback always ends
 * the transaction (a failure to send it drops the connection, which rolls
 * back too). Not nested.
 */
err_t db_pg_begin(struct db_pg *db);
err_t db_pg_commit(struct db_pg *db);
void db_pg_rollback(struct db_pg *db);

#endif
