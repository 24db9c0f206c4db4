/*
 * db_pg_async.h - non-blocking PostgreSQL on a struct loop: a small pool of
 * connections in libpq's pipeline mode, reconnecting with backoff.
 *
 * Each statement is its own implicit transaction (a sync point follows it),
 * so statements never share fate. Statements go to the connection with the
 * fewest in flight, up to DB_PG_ASYNC_DEPTH each; beyond that they wait in
 * one queue, in order. Callbacks run on the loop's thread, exactly once,
 * never from inside db_pg_async_exec(). Each connection prepares a text the
 * first time it sends it and runs it by name after that (up to
 * DB_PG_STMTS_MAX texts, as db_pg.h; one a table change made stale fails
 * once and is prepared anew).
 *
 * Bounds: statement_timeout on the server (as db_pg.h), and a client-side
 * deadline: a connection whose oldest statement is unanswered for timeout_ms
 * is dropped, failing what it held, so a store that stops answering never
 * hangs a request. Statements still queued past their deadline fail too.
 */
#ifndef TETHER_LIB_DB_PG_ASYNC_H
#define TETHER_LIB_DB_PG_ASYNC_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "err.h"
#include "loop.h"

#define DB_PG_ASYNC_DEPTH 32    /* statements in flight on one connection */
#define DB_PG_ASYNC_CONNS_MAX 16
#define DB_PG_ASYNC_PARAMS_MAX 32

struct db_pg_async;

/*
 * The outcome of one statement: OK with res (PGRES_TUPLES_OK or PGRES_COMMAND_OK), or the
 * statement's failure as db_pg_err_of_sqlstate() maps it (res then holds the error result),
 * or ERR_UNAVAIL / ERR_TIMEOUT when the connection was lost or the deadline passed first
 * (res NULL; the statement may or may not have committed), or ERR_CLOSED at free. res is
 * valid only during the call.
 */
typedef void (*db_pg_async_fn)(void *arg, err_t rc, const PGresult *res);

struct db_pg_async_opts {
    const char *url;
    unsigned conns;                /* 1..DB_PG_ASYNC_CONNS_MAX */
    unsigned statement_timeout_ms; /* server side */
    unsigned timeout_ms;           /* client side, per statement, queue time included */
};

/* url is copied; connections are opened at once (non-blocking) and kept open. */
err_t db_pg_async_new(struct loop *l, const struct db_pg_async_opts *o, struct db_pg_async **out);

/* Fails every statement with ERR_CLOSED (callbacks run before it returns) and frees p. */
void db_pg_async_free(struct db_pg_async *p);

/*
 * Sends one statement with text parameters (copied: the caller's may go at once).
 * ERR_INVAL for more than DB_PG_ASYNC_PARAMS_MAX parameters; ERR_UNAVAIL when no connection
 * is up and none can be made yet (backoff). On error fn is never called.
 */
err_t db_pg_async_exec(struct db_pg_async *p, const char *sql, int nparams,
                       const char *const *params, db_pg_async_fn fn, void *arg);

/* True when at least one connection is up. */
bool db_pg_async_up(const struct db_pg_async *p);

/* Statements sent or queued and not answered yet. */
unsigned db_pg_async_pending(const struct db_pg_async *p);

#endif
