/*
 * db_pg_async.c - pipelined, non-blocking PostgreSQL on a struct loop
 * (see db_pg_async.h).
 *
 * In pipeline mode a statement followed by a sync yields, in order: its
 * result, a NULL, then PGRES_PIPELINE_SYNC. Each connection keeps its
 * statements in that order and walks each through those two phases.
 *
 * Each connection prepares a statement the first time it sends its text (the
 * Parse goes in the same pipeline, just before the execution: its result and
 * its NULL come first), and executes it by name after that, for up to
 * DB_PG_STMTS_MAX texts, as db_pg does on the blocking connection: planning
 * is then paid once per connection, not once per call.
 */
#include "db_pg_async.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "db_pg.h"
#include "fnv.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

#define DPA_TICK_MS 50

struct dpa_stmt {
    struct dpa_stmt *next;
    db_pg_async_fn fn;
    void *arg;
    uint64_t due_mono;
    uint64_t started_us; /* for the figures (pmetrics.h) */
    int slot;            /* its prepared statement on the connection; -1: sent as text */
    bool prep_pending;   /* the result of its Parse (sent just before it) is still to come */
    bool got_null;       /* its results are in; the sync is next */
    err_t rc;            /* on the failed list: its outcome */
    PGresult *res;
    int nparams;
    char *sql; /* sql and the parameters live in this one allocation's tail */
    const char *params[DB_PG_ASYNC_PARAMS_MAX];
};

enum dpa_state {
    DPA_DOWN,
    DPA_CONNECTING,
    DPA_UP,
};

struct dpa_conn {
    struct db_pg_async *p;
    PGconn *pc;
    enum dpa_state state;
    int fd; /* watched in the loop, -1 when not */
    short events;
    bool want_write; /* PQflush left output behind */
    uint64_t connect_due_mono;
    struct dpa_stmt *head, *tail; /* sent, in order */
    unsigned n;
    struct backoff backoff;
    bool was_up;
    /* the statements prepared on pc, by text; a spent one (sql NULL) keeps its name unused */
    struct dpa_prepared {
        char *sql;
        uint64_t hash;
    } prep[DB_PG_STMTS_MAX];
    unsigned nprep;
};

struct db_pg_async {
    struct loop *loop;
    char *url;
    char options[64];
    unsigned timeout_ms;
    unsigned nconns;
    struct dpa_conn conns[DB_PG_ASYNC_CONNS_MAX];
    struct dpa_stmt *qhead, *qtail; /* waiting for room on a connection */
    unsigned nqueued;
    uint64_t tick;
    bool closing;
    bool in_exec;            /* callbacks may not run now: failures wait on failed */
    struct dpa_stmt *failed; /* failed inside db_pg_async_exec, finished by a timer */
    uint64_t failed_timer;
};

static void dpa_on_fd(struct loop *l, int fd, short revents, void *arg);

/* ---- prepared statements, per connection ---- */

/* The slot of sql on c; *fresh when it must be prepared first; -1 when c has no room left. */
static int dpa_prep_find(struct dpa_conn *c, const char *sql, bool *fresh)
{
    uint64_t h = fnv1a(sql, strlen(sql));
    for (unsigned i = 0; i < c->nprep; i++)
        if (c->prep[i].sql && c->prep[i].hash == h && strcmp(c->prep[i].sql, sql) == 0) {
            /* prepared, or its Parse is ahead of this in the pipeline: it runs first */
            *fresh = false;
            return (int)i;
        }
    *fresh = true;
    if (c->nprep == DB_PG_STMTS_MAX || !(c->prep[c->nprep].sql = strdup(sql)))
        return -1;
    c->prep[c->nprep].hash = h;
    return (int)c->nprep++;
}

/* A slot whose statement failed to prepare or went stale: the text gets a new name next time
 * (libpq 15 has no call to close a prepared statement). */
static void dpa_prep_spend(struct dpa_conn *c, int slot)
{
    if (slot < 0 || (unsigned)slot >= c->nprep)
        return;
    free(c->prep[slot].sql);
    c->prep[slot].sql = NULL;
}

/* A new connection has none prepared. */
static void dpa_prep_clear(struct dpa_conn *c)
{
    for (unsigned i = 0; i < c->nprep; i++)
        free(c->prep[i].sql);
    memset(c->prep, 0, sizeof(c->prep));
    c->nprep = 0;
}

/* ---- statements ---- */

static struct dpa_stmt *dpa_stmt_new(const char *sql, int nparams, const char *const *params,
                                     db_pg_async_fn fn, void *arg, unsigned timeout_ms)
{
    size_t need = strlen(sql) + 1;
    for (int i = 0; i < nparams; i++)
        need += params[i] ? strlen(params[i]) + 1 : 0;
    struct dpa_stmt *st = xcalloc(1, sizeof(*st) + need);
    char *w = (char *)(st + 1);
    st->fn = fn;
    st->arg = arg;
    st->due_mono = clock_mono_ms() + timeout_ms;
    st->started_us = clock_mono_us();
    st->nparams = nparams;
    st->sql = w;
    w = stpcpy(w, sql) + 1;
    for (int i = 0; i < nparams; i++) {
        if (!params[i])
            continue; /* SQL NULL */
        st->params[i] = w;
        w = stpcpy(w, params[i]) + 1;
    }
    return st;
}

/* Runs the statement's callback and frees it. */
static void dpa_stmt_finish(struct dpa_stmt *st, err_t rc)
{
    pm_store_call("postgres", st->started_us, rc);
    st->fn(st->arg, rc, st->res);
    if (st->res)
        PQclear(st->res);
    free(st);
}

/* The failure of a statement whose connection went away: a deadline passed or the link did. */
static err_t dpa_lost_rc(const struct db_pg_async *p, const struct dpa_stmt *st, uint64_t now)
{
    if (p->closing)
        return ERR_CLOSED;
    return now >= st->due_mono ? ERR_TIMEOUT : ERR_UNAVAIL;
}

/* Finishes what failed inside db_pg_async_exec, from the loop. */
static void dpa_finish_failed(struct loop *l, void *arg)
{
    struct db_pg_async *p = arg;
    (void)l;
    while (p->failed) {
        struct dpa_stmt *st = p->failed;
        p->failed = st->next;
        dpa_stmt_finish(st, st->rc);
    }
}

/* ---- connections ---- */

static void dpa_watch(struct dpa_conn *c, short events)
{
    int fd = c->pc ? PQsocket(c->pc) : -1;
    if (c->fd == fd && c->events == events)
        return;
    if (c->fd >= 0)
        loop_unwatch(c->p->loop, c->fd);
    c->fd = -1;
    c->events = 0;
    if (fd >= 0 && events && loop_watch(c->p->loop, fd, events, dpa_on_fd, c) == OK) {
        c->fd = fd;
        c->events = events;
    }
}

static void dpa_conn_drop(struct dpa_conn *c, const char *why)
{
    struct db_pg_async *p = c->p;
    struct dpa_stmt *lost = c->head;
    uint64_t now = clock_mono_ms();
    if (c->was_up && !p->closing)
        LOG_WARN("db.pg_down", "lost a PostgreSQL connection: %s", why);
    c->was_up = false;
    dpa_watch(c, 0);
    if (c->pc)
        PQfinish(c->pc);
    c->pc = NULL;
    c->state = DPA_DOWN;
    c->head = c->tail = NULL;
    c->n = 0;
    c->want_write = false;
    dpa_prep_clear(c);
    if (!p->closing)
        backoff_fail(&c->backoff);
    while (lost) {
        struct dpa_stmt *next = lost->next;
        if (p->in_exec) {
            lost->rc = dpa_lost_rc(p, lost, now);
            lost->next = p->failed;
            p->failed = lost;
            if (!loop_timer_is_pending(p->loop, p->failed_timer))
                p->failed_timer = loop_timer_add(p->loop, 0, dpa_finish_failed, p);
        } else {
            dpa_stmt_finish(lost, dpa_lost_rc(p, lost, now));
        }
        lost = next;
    }
}

static void dpa_conn_flush(struct dpa_conn *c)
{
    int f = PQflush(c->pc);
    if (f < 0) {
        dpa_conn_drop(c, PQerrorMessage(c->pc));
        return;
    }
    c->want_write = f == 1;
    dpa_watch(c, (short)(POLLIN | (c->want_write ? POLLOUT : 0)));
}

/* Sends st on c (which is up and has room); on failure c is dropped and st fails with it. */
static void dpa_conn_send(struct dpa_conn *c, struct dpa_stmt *st)
{
    st->next = NULL;
    if (c->tail)
        c->tail->next = st;
    else
        c->head = st;
    c->tail = st;
    c->n++;
    bool fresh = false, sent;
    st->slot = dpa_prep_find(c, st->sql, &fresh);
    st->prep_pending = st->slot >= 0 && fresh;
    if (st->slot < 0) {
        sent = PQsendQueryParams(c->pc, st->sql, st->nparams, NULL, st->params, NULL, NULL, 0);
    } else {
        char name[32];
        snprintf(name, sizeof(name), "tether_async_%d", st->slot);
        sent = (!fresh || PQsendPrepare(c->pc, name, st->sql, st->nparams, NULL)) &&
               PQsendQueryPrepared(c->pc, name, st->nparams, st->params, NULL, NULL, 0);
    }
    if (!sent || !PQpipelineSync(c->pc)) {
        dpa_conn_drop(c, PQerrorMessage(c->pc));
        return;
    }
    dpa_conn_flush(c);
}

/* The up connection with the most room, or NULL. */
static struct dpa_conn *dpa_pick(struct db_pg_async *p)
{
    struct dpa_conn *best = NULL;
    for (unsigned i = 0; i < p->nconns; i++) {
        struct dpa_conn *c = &p->conns[i];
        if (c->state == DPA_UP && c->n < DB_PG_ASYNC_DEPTH && (!best || c->n < best->n))
            best = c;
    }
    return best;
}

/* Moves queued statements onto connections with room, oldest first. */
static void dpa_drain_queue(struct db_pg_async *p)
{
    struct dpa_conn *c;
    while (p->qhead && (c = dpa_pick(p))) {
        struct dpa_stmt *st = p->qhead;
        p->qhead = st->next;
        if (!p->qhead)
            p->qtail = NULL;
        p->nqueued--;
        dpa_conn_send(c, st);
    }
}

static void dpa_conn_connected(struct dpa_conn *c)
{
    if (PQsetnonblocking(c->pc, 1) != 0 || PQenterPipelineMode(c->pc) != 1) {
        dpa_conn_drop(c, PQerrorMessage(c->pc));
        return;
    }
    c->state = DPA_UP;
    backoff_reset(&c->backoff);
    if (!c->was_up)
        LOG_INFO("db.pg_up", "connected to PostgreSQL (non-blocking, pipelined)");
    c->was_up = true;
    dpa_watch(c, POLLIN);
    dpa_drain_queue(c->p);
}

static void dpa_conn_poll_connect(struct dpa_conn *c)
{
    switch (PQconnectPoll(c->pc)) {
    case PGRES_POLLING_READING:
        dpa_watch(c, POLLIN);
        return;
    case PGRES_POLLING_WRITING:
        dpa_watch(c, POLLOUT);
        return;
    case PGRES_POLLING_OK:
        dpa_conn_connected(c);
        return;
    default: {
        char why[256];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(c->pc));
        why[strcspn(why, "\n")] = '\0';
        if (c->backoff.cur_ms == 0)
            LOG_WARN("db.pg_connect_failed", "could not connect to PostgreSQL: %s", why);
        dpa_conn_drop(c, why);
        return;
    }
    }
}

static void dpa_conn_start(struct dpa_conn *c)
{
    struct db_pg_async *p = c->p;
    const char *const keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
    const char *const vals[] = {p->url, "2", p->options, "tether", NULL};
    if (!backoff_ready(&c->backoff))
        return;
    c->pc = PQconnectStartParams(keys, vals, 1);
    if (!c->pc || PQstatus(c->pc) == CONNECTION_BAD) {
        if (c->backoff.cur_ms == 0)
            LOG_WARN("db.pg_connect_failed", "could not start a PostgreSQL connection: %s",
                     c->pc ? PQerrorMessage(c->pc) : "out of memory");
        if (c->pc)
            PQfinish(c->pc);
        c->pc = NULL;
        backoff_fail(&c->backoff);
        return;
    }
    c->state = DPA_CONNECTING;
    c->connect_due_mono = clock_mono_ms() + p->timeout_ms;
    dpa_watch(c, POLLOUT); /* libpq: after PQconnectStart, wait for writable */
}

/* Hands every result libpq has ready to its statement, completing those whose sync came. */
static void dpa_conn_read(struct dpa_conn *c)
{
    if (!PQconsumeInput(c->pc)) {
        dpa_conn_drop(c, PQerrorMessage(c->pc));
        return;
    }
    while (c->head && c->state == DPA_UP && !PQisBusy(c->pc)) {
        struct dpa_stmt *st = c->head;
        PGresult *r = PQgetResult(c->pc);
        if (st->prep_pending) {
            if (!r) {
                st->prep_pending = false;
            } else if (PQresultStatus(r) != PGRES_COMMAND_OK && !st->res) {
                /* not prepared: its error is the statement's (the execution is skipped) */
                st->res = r;
                dpa_prep_spend(c, st->slot);
            } else {
                PQclear(r);
            }
            continue;
        }
        if (!st->got_null) {
            if (r)
                st->res ? PQclear(r) : (void)(st->res = r); /* one statement, one result */
            else
                st->got_null = true;
            continue;
        }
        if (!r)
            break; /* nothing more yet: wait for input */
        ExecStatusType s = PQresultStatus(r);
        PQclear(r);
        if (s != PGRES_PIPELINE_SYNC) {
            dpa_conn_drop(c, "out of step with the pipeline");
            return;
        }
        c->head = st->next;
        if (!c->head)
            c->tail = NULL;
        c->n--;
        err_t rc = OK;
        ExecStatusType rs = st->res ? PQresultStatus(st->res) : PGRES_FATAL_ERROR;
        if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
            const char *state = st->res ? PQresultErrorField(st->res, PG_DIAG_SQLSTATE) : NULL;
            const char *primary =
                st->res ? PQresultErrorField(st->res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
            rc = db_pg_err_of_sqlstate(state);
            LOG_WARN("db.pg_query_failed", "statement failed (%s, %s): %s", state ? state : "?",
                     err_name(rc), primary ? primary : "no result");
            /* a table changed under a prepared statement ("cached plan must not change result
             * type"), or the statement is gone: the next call prepares the text anew */
            if (state && (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0))
                dpa_prep_spend(c, st->slot);
        }
        dpa_stmt_finish(st, rc); /* may send more: the loop re-checks c */
    }
    if (c->state == DPA_UP)
        dpa_drain_queue(c->p);
}

static void dpa_on_fd(struct loop *l, int fd, short revents, void *arg)
{
    struct dpa_conn *c = arg;
    (void)l;
    (void)fd;
    if (c->state == DPA_CONNECTING) {
        dpa_conn_poll_connect(c);
        return;
    }
    if (c->state != DPA_UP)
        return;
    if ((revents & POLLOUT) && c->want_write) {
        dpa_conn_flush(c);
        if (c->state != DPA_UP)
            return;
    }
    if (revents & (POLLIN | POLLERR | POLLHUP))
        dpa_conn_read(c);
}

/* Deadlines, reconnects. Runs every DPA_TICK_MS for the pool's life. */
static void dpa_tick(struct loop *l, void *arg)
{
    struct db_pg_async *p = arg;
    uint64_t now = clock_mono_ms();
    for (unsigned i = 0; i < p->nconns; i++) {
        struct dpa_conn *c = &p->conns[i];
        if (c->state == DPA_CONNECTING && now >= c->connect_due_mono) {
            if (c->backoff.cur_ms == 0)
                LOG_WARN("db.pg_connect_failed", "could not connect to PostgreSQL: timed out");
            dpa_conn_drop(c, "connect timed out");
        } else if (c->state == DPA_UP && c->head && now >= c->head->due_mono) {
            char why[64];
            snprintf(why, sizeof(why), "no answer within %u ms", p->timeout_ms);
            dpa_conn_drop(c, why);
        }
        if (c->state == DPA_DOWN)
            dpa_conn_start(c);
    }
    while (p->qhead && now >= p->qhead->due_mono) {
        struct dpa_stmt *st = p->qhead;
        p->qhead = st->next;
        if (!p->qhead)
            p->qtail = NULL;
        p->nqueued--;
        dpa_stmt_finish(st, ERR_TIMEOUT);
    }
    p->tick = loop_timer_add(l, DPA_TICK_MS, dpa_tick, p);
}

/* ---- the contract ---- */

err_t db_pg_async_new(struct loop *l, const struct db_pg_async_opts *o, struct db_pg_async **out)
{
    if (!o->url || o->conns == 0 || o->conns > DB_PG_ASYNC_CONNS_MAX)
        return ERR_INVAL;
    struct db_pg_async *p = xcalloc(1, sizeof(*p));
    p->loop = l;
    p->url = xstrdup(o->url);
    p->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
    p->nconns = o->conns;
    snprintf(p->options, sizeof(p->options), "-c statement_timeout=%u",
             o->statement_timeout_ms ? o->statement_timeout_ms : 5000);
    for (unsigned i = 0; i < p->nconns; i++) {
        p->conns[i] = (struct dpa_conn){.p = p, .fd = -1, .backoff = BACKOFF_INIT(100, 5000)};
        dpa_conn_start(&p->conns[i]);
    }
    p->tick = loop_timer_add(l, DPA_TICK_MS, dpa_tick, p);
    *out = p;
    return OK;
}

void db_pg_async_free(struct db_pg_async *p)
{
    if (!p)
        return;
    p->closing = true;
    loop_timer_cancel(p->loop, p->tick);
    for (unsigned i = 0; i < p->nconns; i++)
        dpa_conn_drop(&p->conns[i], "closing");
    while (p->qhead) {
        struct dpa_stmt *st = p->qhead;
        p->qhead = st->next;
        dpa_stmt_finish(st, ERR_CLOSED);
    }
    loop_timer_cancel(p->loop, p->failed_timer);
    dpa_finish_failed(p->loop, p);
    free(p->url);
    free(p);
}

err_t db_pg_async_exec(struct db_pg_async *p, const char *sql, int nparams,
                       const char *const *params, db_pg_async_fn fn, void *arg)
{
    if (nparams < 0 || nparams > DB_PG_ASYNC_PARAMS_MAX)
        return ERR_INVAL;
    bool live = false;
    for (unsigned i = 0; i < p->nconns; i++)
        live |= p->conns[i].state != DPA_DOWN;
    if (!live)
        return ERR_UNAVAIL;
    struct dpa_stmt *st = dpa_stmt_new(sql, nparams, params, fn, arg, p->timeout_ms);
    struct dpa_conn *c;
    if (!p->qhead && (c = dpa_pick(p))) {
        p->in_exec = true; /* a send failure drops c: its callbacks must not run from here */
        dpa_conn_send(c, st);
        p->in_exec = false;
        return OK;
    }
    if (p->qtail)
        p->qtail->next = st;
    else
        p->qhead = st;
    p->qtail = st;
    p->nqueued++;
    return OK;
}

bool db_pg_async_up(const struct db_pg_async *p)
{
    for (unsigned i = 0; i < p->nconns; i++)
        if (p->conns[i].state == DPA_UP)
            return true;
    return false;
}

unsigned db_pg_async_pending(const struct db_pg_async *p)
{
    unsigned n = p->nqueued;
    for (unsigned i = 0; i < p->nconns; i++)
        n += p->conns[i].n;
    return n;
}
