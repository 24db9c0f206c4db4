/*
 * db_pg_async_driver.c - the non-blocking PostgreSQL pool against the real PostgreSQL of the
 * integration tests (TETHER_PG_URL), for tests/integration/db_pg_async_test.sh. Prints TAP.
 *
 * Checks: thousands of pipelined statements over several connections, all answered with
 * their own result; a failed statement fails alone (each is its own transaction); the
 * server's statement_timeout is ERR_TIMEOUT; the loop runs on while statements are in flight;
 * a client deadline drops a connection that does not answer; connections killed by the server
 * fail what they held with ERR_UNAVAIL and come back; free fails what is pending.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "db_pg_async.h"
#include "log.h"
#include "t.h"

static struct loop loop;
static const char *url;

struct outcome {
    unsigned n, ok, wrong, timeout, unavail, inval, closed, other;
};

struct call {
    struct outcome *o;
    int want; /* the value the statement returns, or -1 */
};

static void on_done(void *arg, err_t rc, const PGresult *res)
{
    struct call *c = arg;
    struct outcome *o = c->o;
    o->n++;
    switch (rc) {
    case OK:
        if (c->want >= 0 && (PQntuples(res) != 1 || atoi(PQgetvalue(res, 0, 0)) != c->want))
            o->wrong++;
        else
            o->ok++;
        break;
    case ERR_TIMEOUT:
        o->timeout++;
        break;
    case ERR_UNAVAIL:
        o->unavail++;
        break;
    case ERR_INVAL:
        o->inval++;
        break;
    case ERR_CLOSED:
        o->closed++;
        break;
    default:
        o->other++;
        break;
    }
}

static void pump(const struct outcome *o, unsigned want, uint64_t max_ms)
{
    uint64_t t0 = clock_mono_ms();
    while (o->n < want && clock_mono_ms() - t0 < max_ms)
        loop_run_once(&loop, 20);
}

static struct db_pg_async *pool(unsigned conns, unsigned stmt_ms, unsigned timeout_ms)
{
    struct db_pg_async *p = NULL;
    struct db_pg_async_opts o = {url, conns, stmt_ms, timeout_ms};
    if (db_pg_async_new(&loop, &o, &p) != OK)
        return NULL;
    uint64_t t0 = clock_mono_ms();
    while (!db_pg_async_up(p) && clock_mono_ms() - t0 < 5000)
        loop_run_once(&loop, 20);
    /* let every connection come up */
    for (int i = 0; i < 10; i++)
        loop_run_once(&loop, 20);
    return p;
}

#define N_MANY 3000
static struct call many[N_MANY];

T_TEST(pipelined_many)
{
    struct db_pg_async *p = pool(4, 5000, 10000);
    struct outcome o = {0};
    T_ASSERT(p && db_pg_async_up(p));
    char v[16];
    unsigned sent = 0;
    uint64_t t0 = clock_mono_ms();
    for (int i = 0; i < N_MANY; i++) {
        many[i] = (struct call){&o, i};
        snprintf(v, sizeof(v), "%d", i);
        const char *params[] = {v};
        sent += db_pg_async_exec(p, "SELECT $1::int", 1, params, on_done, &many[i]) == OK;
    }
    T_EQ(sent, (unsigned)N_MANY);
    T_EQ(o.n, 0u); /* never answered from inside exec */
    pump(&o, N_MANY, 20000);
    printf("# %d pipelined statements in %llu ms\n", N_MANY,
           (unsigned long long)(clock_mono_ms() - t0));
    T_EQ(o.ok, (unsigned)N_MANY);
    T_EQ(o.wrong, 0u);
    T_EQ(db_pg_async_pending(p), 0u);
    db_pg_async_free(p);
}

T_TEST(failure_is_alone)
{
    struct db_pg_async *p = pool(1, 5000, 10000);
    struct outcome o = {0};
    struct call a = {&o, 1}, bad = {&o, -1}, b = {&o, 2};
    T_OK(db_pg_async_exec(p, "SELECT 1", 0, NULL, on_done, &a));
    T_OK(db_pg_async_exec(p, "SELECT 'x'::int", 0, NULL, on_done, &bad));
    T_OK(db_pg_async_exec(p, "SELECT 2", 0, NULL, on_done, &b));
    pump(&o, 3, 5000);
    T_EQ(o.ok, 2u);
    T_EQ(o.inval, 1u); /* 22P02 */
    const char *null_param[] = {NULL};
    struct call n = {&o, -1};
    T_OK(db_pg_async_exec(p, "SELECT $1::text IS NULL", 1, null_param, on_done, &n));
    pump(&o, 4, 5000);
    T_EQ(o.ok, 3u);
    T_ERR(db_pg_async_exec(p, "SELECT 1", DB_PG_ASYNC_PARAMS_MAX + 1, NULL, on_done, &n),
          ERR_INVAL);
    db_pg_async_free(p);
}

static long long got_value = -1;
static void on_value(void *arg, err_t rc, const PGresult *res)
{
    unsigned *n = arg;
    (*n)++;
    got_value = rc == OK && PQntuples(res) == 1 ? atoll(PQgetvalue(res, 0, 0)) : -1;
}

/* The same text is prepared once per connection and run by name, even while its Parse is still
 * ahead in the pipeline; a text that cannot be prepared fails as itself; a statement a table
 * change made stale fails once and is prepared anew. */
T_TEST(prepared_statements)
{
    struct db_pg_async *p = pool(1, 5000, 10000);
    struct outcome o = {0};
    static struct call same[200];
    char v[16], table[64], sql[160];
    unsigned sent = 0;
    T_ASSERT(p && db_pg_async_up(p));
    for (int i = 0; i < 200; i++) {
        same[i] = (struct call){&o, i + 1};
        snprintf(v, sizeof(v), "%d", i);
        const char *params[] = {v};
        sent += db_pg_async_exec(p, "SELECT $1::int + 1", 1, params, on_done, &same[i]) == OK;
    }
    T_EQ(sent, 200u);
    pump(&o, 200, 10000);
    T_EQ(o.ok, 200u); /* one Parse, 199 executions by its name, sent before it was answered */

    unsigned n = 0;
    T_OK(db_pg_async_exec(p,
                          "SELECT count(*) FROM pg_prepared_statements"
                          " WHERE name LIKE 'tether_async_%' AND statement = 'SELECT $1::int + 1'",
                          0, NULL, on_value, &n));
    for (uint64_t t0 = clock_mono_ms(); n < 1 && clock_mono_ms() - t0 < 5000;)
        loop_run_once(&loop, 20);
    T_EQ(got_value, 1); /* prepared on the connection, once */

    memset(&o, 0, sizeof(o));
    struct call bad1 = {&o, -1}, bad2 = {&o, -1}, after = {&o, 7};
    T_OK(db_pg_async_exec(p, "SELECT no_such_column", 0, NULL, on_done, &bad1));
    T_OK(db_pg_async_exec(p, "SELECT no_such_column", 0, NULL, on_done, &bad2));
    T_OK(db_pg_async_exec(p, "SELECT 7", 0, NULL, on_done, &after));
    pump(&o, 3, 5000);
    T_EQ(o.ok, 1u);                     /* the one after them */
    T_EQ(o.ok + o.other + o.inval, 3u); /* both failed as themselves, not the pool */

    snprintf(table, sizeof(table), "dpa_prep_%d", (int)getpid());
    memset(&o, 0, sizeof(o));
    struct call mk = {&o, -1}, r1 = {&o, -1}, alter = {&o, -1}, r2 = {&o, -1}, r3 = {&o, -1};
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (a int)", table);
    T_OK(db_pg_async_exec(p, sql, 0, NULL, on_done, &mk));
    pump(&o, 1, 5000);
    snprintf(sql, sizeof(sql), "SELECT * FROM %s", table);
    T_OK(db_pg_async_exec(p, sql, 0, NULL, on_done, &r1));
    pump(&o, 2, 5000);
    char alter_sql[160];
    snprintf(alter_sql, sizeof(alter_sql), "ALTER TABLE %s ADD COLUMN b int", table);
    T_OK(db_pg_async_exec(p, alter_sql, 0, NULL, on_done, &alter));
    pump(&o, 3, 5000);
    T_EQ(o.ok, 3u); /* made, read, altered */
    T_OK(db_pg_async_exec(p, sql, 0, NULL, on_done, &r2));
    pump(&o, 4, 5000);
    T_EQ(o.ok, 3u); /* the stale one fails once ("cached plan must not change result type") */
    T_OK(db_pg_async_exec(p, sql, 0, NULL, on_done, &r3));
    pump(&o, 5, 5000);
    T_EQ(o.ok, 4u); /* and is prepared anew */
    struct call drop = {&o, -1};
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    T_OK(db_pg_async_exec(p, sql, 0, NULL, on_done, &drop));
    pump(&o, 6, 5000);
    db_pg_async_free(p);
}

static unsigned ticks;
static void on_tick(struct loop *l, void *arg)
{
    (void)arg;
    ticks++;
    (void)loop_timer_add(l, 20, on_tick, NULL);
}

T_TEST(timeouts_and_a_free_loop)
{
    struct db_pg_async *p = pool(2, 300, 10000);
    struct outcome o = {0};
    struct call slow = {&o, -1}, quick = {&o, 7};
    ticks = 0;
    uint64_t tick = loop_timer_add(&loop, 20, on_tick, NULL);
    T_OK(db_pg_async_exec(p, "SELECT pg_sleep(2)", 0, NULL, on_done, &slow));
    T_OK(db_pg_async_exec(p, "SELECT 7", 0, NULL, on_done, &quick));
    pump(&o, 2, 5000);
    T_EQ(o.timeout, 1u); /* 57014 from the server's statement_timeout */
    T_EQ(o.ok, 1u);
    T_ASSERT(ticks >= 8); /* the loop ran while the statement slept */
    db_pg_async_free(p);

    /* a client deadline shorter than the statement: the connection is dropped */
    p = pool(1, 5000, 300);
    o = (struct outcome){0};
    uint64_t t0 = clock_mono_ms();
    T_OK(db_pg_async_exec(p, "SELECT pg_sleep(3)", 0, NULL, on_done, &slow));
    pump(&o, 1, 5000);
    uint64_t took = clock_mono_ms() - t0;
    T_EQ(o.timeout, 1u);
    T_ASSERT(took >= 250 && took < 1500);
    /* and the pool reconnects */
    o = (struct outcome){0};
    t0 = clock_mono_ms();
    while (o.ok == 0 && clock_mono_ms() - t0 < 8000) {
        if (db_pg_async_exec(p, "SELECT 7", 0, NULL, on_done, &quick) == OK)
            pump(&o, o.n + 1, 2000);
        else
            loop_run_once(&loop, 50);
    }
    T_EQ(o.ok, 1u);
    db_pg_async_free(p);
    loop_timer_cancel(&loop, tick);
}

T_TEST(killed_connections_come_back)
{
    struct db_pg_async *p = pool(2, 5000, 10000);
    struct outcome o = {0};
    struct call s1 = {&o, -1}, s2 = {&o, -1}, kill = {&o, -1};
    T_OK(db_pg_async_exec(p, "SELECT pg_sleep(5)", 0, NULL, on_done, &s1));
    T_OK(db_pg_async_exec(p, "SELECT pg_sleep(5)", 0, NULL, on_done, &s2));
    for (int i = 0; i < 10; i++)
        loop_run_once(&loop, 20);
    /* a third connection (its own pool) terminates every backend named tether but itself */
    struct db_pg_async *killer = pool(1, 5000, 10000);
    struct outcome ko = {0};
    kill.o = &ko;
    T_OK(db_pg_async_exec(killer,
                          "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE application_name = 'tether' AND pid <> pg_backend_pid() "
                          "AND query LIKE 'SELECT pg_sleep(5)%'",
                          0, NULL, on_done, &kill));
    pump(&ko, 1, 5000);
    pump(&o, 2, 5000);
    T_EQ(o.unavail, 2u);
    struct call q = {&o, 3};
    o = (struct outcome){0};
    uint64_t t0 = clock_mono_ms();
    while (o.ok == 0 && clock_mono_ms() - t0 < 8000) {
        if (db_pg_async_exec(p, "SELECT 3", 0, NULL, on_done, &q) == OK)
            pump(&o, o.n + 1, 2000);
        else
            loop_run_once(&loop, 50);
    }
    T_EQ(o.ok, 1u);
    db_pg_async_free(killer);

    o = (struct outcome){0};
    /* both still running when the pool goes: neither may answer first */
    T_OK(db_pg_async_exec(p, "SELECT pg_sleep(5)", 0, NULL, on_done, &s1));
    T_OK(db_pg_async_exec(p, "SELECT pg_sleep(5)", 0, NULL, on_done, &s2));
    loop_run_once(&loop, 20);
    db_pg_async_free(p);
    T_EQ(o.n, 2u);
    T_EQ(o.closed, 2u);
}

int main(void)
{
    url = getenv("TETHER_PG_URL");
    if (!url) {
        fprintf(stderr, "db_pg_async_driver: TETHER_PG_URL is not set\n");
        return 100;
    }
    log_init("db-pg-async-driver", LOG_LVL_ERROR, false);
    if (loop_init(&loop) != OK)
        return 1;
    T_RUN(pipelined_many);
    T_RUN(failure_is_alone);
    T_RUN(prepared_statements);
    T_RUN(timeouts_and_a_free_loop);
    T_RUN(killed_connections_come_back);
    loop_fini(&loop);
    return T_DONE();
}
