/*
 * db_pg.h - one PostgreSQL connection that reconnects with backoff.
 *
 * Blocking libpq calls, always bounded: connect_timeout on connect and
 * statement_timeout on every statement. Each statement is prepared on the
 * connection the first time it runs there (in the same round trip) and
 * executed by name after that: PostgreSQL then parses and plans it once, not
 * every time (the plans were about half of PostgreSQL's work on a session
 * create, docs/rationale.md). Errors are logged here once, with
 * libpq's detail, and reported as ERR_UNAVAIL (the store is unreachable)
 * or by the statement's SQLSTATE class (db_pg_err_of_sqlstate).
 */
#ifndef TETHER_LIB_DB_PG_H
#define TETHER_LIB_DB_PG_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "backoff.h"
#include "err.h"

/* Statements prepared on the connection, by their text: the first DB_PG_STMTS_MAX distinct
 * ones; later ones run unprepared. */
#define DB_PG_STMTS_MAX 64
struct db_pg_stmt {
    uint64_t hash;
    char *sql;  /* NULL: its name went stale and is not used again */
    bool ready; /* prepared: a failed prepare is tried again on the next run */
};

struct db_pg {
    char *url;
    PGconn *conn;
    struct db_pg_stmt stmts[DB_PG_STMTS_MAX]; /* of conn: cleared when it is dropped */
    unsigned nstmts;
    struct backoff backoff;
    unsigned statement_timeout_ms;
    bool was_up; /* for logging transitions only */
    bool in_tx;  /* between db_pg_begin_exec and db_pg_exec_commit/rollback */
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
 * A transaction on the connection: db_pg_begin_exec opens it, and every db_pg_exec until
 * db_pg_exec_commit or db_pg_rollback is part of it. While it is open a lost connection is not
 * re-made (the statements after it would run outside the transaction): they fail with
 * ERR_UNAVAIL, and so does the commit. Each end carries a statement in the same round trip, for
 * the paths that run one transaction per request (a create is two): on this kind of machine a
 * round trip to PostgreSQL costs about as much as a small statement. Not nested.
 *
 * db_pg_begin_exec opens the transaction and runs a statement as its first (as db_pg_exec_bin),
 * pipelined. *res is the statement's result. When the statement fails the transaction is open
 * and aborted: db_pg_rollback ends it.
 *
 * db_pg_exec_commit runs a statement of the open transaction (as db_pg_exec_bin) and COMMIT
 * after it, pipelined. OK only when the statement succeeded and PostgreSQL committed; *res is
 * the statement's result. A failed statement leaves the transaction open and aborted (the
 * COMMIT is not run): db_pg_rollback ends it. A failed COMMIT ends it.
 *
 * db_pg_rollback always ends the transaction (a failure to send it drops the connection, which
 * rolls back too).
 */
err_t db_pg_begin_exec(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                       const int *lens, const int *binary, PGresult **res);
err_t db_pg_exec_commit(struct db_pg *db, const char *sql, int nparams, const char *const *params,
                        const int *lens, const int *binary, PGresult **res);
void db_pg_rollback(struct db_pg *db);

#endif
