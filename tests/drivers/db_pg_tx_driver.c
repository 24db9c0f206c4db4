/*
 * db_pg_tx_driver.c - the ends of a PostgreSQL transaction that carry a statement
 * (db_pg_begin_exec, db_pg_exec_commit) and the once routes' claim and save on them, against
 * the real PostgreSQL of the integration tests (TETHER_PG_URL), for
 * tests/integration/db_pg_tx_test.sh. Prints TAP.
 *
 * Checks: what a transaction wrote is seen by another connection only once committed; a failed
 * last statement commits nothing and the rollback leaves the connection usable; a failed first
 * statement likewise; a key claimed and saved is found again with its answer; a save that finds
 * no claimed row commits nothing of the transaction; a prepared statement that a table change
 * made stale fails once and is prepared anew.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor_once.h"
#include "clock.h"
#include "db_pg.h"
#include "log.h"
#include "t.h"

static struct db_pg a, b; /* b looks at what a committed */
static unsigned long run; /* this run's rows are its own */

/* Rows of the driver's table with this id, as another connection sees them; -1 on failure. */
static int seen(const char *id)
{
    PGresult *r;
    const char *p[] = {id};
    if (db_pg_exec(&b, "SELECT count(*) FROM db_pg_tx_driver WHERE id = $1", 1, p, &r) != OK)
        return -1;
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static bool usable(struct db_pg *db)
{
    PGresult *r;
    if (db_pg_exec(db, "SELECT 1", 0, NULL, &r) != OK)
        return false;
    PQclear(r);
    return !db->in_tx;
}

static void id_of(char *id, size_t cap, const char *what)
{
    snprintf(id, cap, "%lu-%s", run, what);
}

T_TEST(committed_is_seen_once_committed)
{
    char id[64], second[64];
    PGresult *r;
    id_of(id, sizeof(id), "one");
    id_of(second, sizeof(second), "two");
    const char *first[] = {id};
    T_OK(db_pg_begin_exec(&a, "INSERT INTO db_pg_tx_driver (id) VALUES ($1) RETURNING 1", 1, first,
                          NULL, NULL, &r));
    T_EQ(PQntuples(r), 1);
    PQclear(r);
    T_ASSERT(a.in_tx);
    T_EQ(seen(id), 0);
    const char *p[] = {second};
    T_OK(db_pg_exec_commit(&a, "INSERT INTO db_pg_tx_driver (id) VALUES ($1)", 1, p, NULL, NULL,
                           &r));
    PQclear(r);
    T_ASSERT(!a.in_tx);
    T_EQ(seen(id), 1);
    T_EQ(seen(second), 1);
}

T_TEST(failed_last_statement_commits_nothing)
{
    char id[64];
    PGresult *r = NULL;
    id_of(id, sizeof(id), "last-fails");
    const char *p[] = {id};
    T_OK(
        db_pg_begin_exec(&a, "INSERT INTO db_pg_tx_driver (id) VALUES ($1)", 1, p, NULL, NULL, &r));
    PQclear(r);
    T_ASSERT(db_pg_exec_commit(&a, "SELECT 1 / 0", 0, NULL, NULL, NULL, &r) != OK);
    T_ASSERT(a.in_tx); /* open and aborted: the COMMIT did not run */
    db_pg_rollback(&a);
    T_EQ(seen(id), 0);
    T_ASSERT(usable(&a));
}

T_TEST(failed_first_statement_commits_nothing)
{
    char id[64];
    PGresult *r = NULL;
    id_of(id, sizeof(id), "one"); /* committed above: the first statement's insert conflicts */
    const char *p[] = {id};
    T_ERR(
        db_pg_begin_exec(&a, "INSERT INTO db_pg_tx_driver (id) VALUES ($1)", 1, p, NULL, NULL, &r),
        ERR_EXISTS);
    T_ASSERT(a.in_tx);
    db_pg_rollback(&a);
    T_ASSERT(usable(&a));
}

static void key_of(struct actor_once_key *k, uint64_t req_id)
{
    struct envelope env;
    memset(&env, 0, sizeof(env));
    env.kind = ENV_REQUEST;
    env.type = 1;
    env.origin = 0x7e57000000000000u | (run & 0xffffffffu);
    env.req_id = req_id;
    env.body = (struct slice){"body", 4};
    actor_once_key_of(&env, 60000, clock_wall_ms(), k);
}

T_TEST(once_claim_and_save)
{
    struct actor_once_key k;
    struct actor_once_prev prev;
    bool first = false;
    key_of(&k, 1);
    T_OK(actor_once_claim(&a, &k, &first, &prev));
    T_ASSERT(first);
    T_OK(actor_once_save_commit(&a, &k, "answer", 6));
    T_ASSERT(!a.in_tx);
    /* a second arrival: taken, with the first answer */
    T_OK(actor_once_claim(&a, &k, &first, &prev));
    T_ASSERT(!first);
    T_ASSERT(prev.same);
    T_EQ(prev.n, (size_t)6);
    T_ASSERT(prev.body && memcmp(prev.body, "answer", 6) == 0);
    actor_once_prev_free(&prev);
    db_pg_rollback(&a);
    T_ASSERT(usable(&a));
}

T_TEST(once_save_without_its_row_commits_nothing)
{
    struct actor_once_key k;
    struct actor_once_prev prev;
    bool first = false;
    char id[64];
    PGresult *r;
    key_of(&k, 2);
    id_of(id, sizeof(id), "effect");
    T_OK(actor_once_claim(&a, &k, &first, &prev));
    T_ASSERT(first);
    /* the handler's effect, then the claimed row gone from under the save */
    const char *p[] = {id}, *kp[] = {k.key};
    T_OK(db_pg_exec(&a, "INSERT INTO db_pg_tx_driver (id) VALUES ($1)", 1, p, &r));
    PQclear(r);
    T_OK(db_pg_exec(&a, "DELETE FROM bus_replies WHERE req_key = $1::uuid", 1, kp, &r));
    PQclear(r);
    T_ASSERT(actor_once_save_commit(&a, &k, "answer", 6) != OK);
    db_pg_rollback(&a);
    T_EQ(seen(id), 0);
    T_ASSERT(usable(&a));
}

T_TEST(a_statement_gone_stale_is_prepared_anew)
{
    PGresult *r;
    char ddl[160];
    snprintf(ddl, sizeof(ddl), "ALTER TABLE db_pg_tx_stale ADD COLUMN c%lu integer", run);
    T_OK(db_pg_exec(&b, "CREATE TABLE IF NOT EXISTS db_pg_tx_stale (id integer)", 0, NULL, &r));
    PQclear(r);
    T_OK(db_pg_exec(&a, "SELECT * FROM db_pg_tx_stale", 0, NULL, &r)); /* prepared here */
    PQclear(r);
    T_OK(db_pg_exec(&b, ddl, 0, NULL, &r));
    PQclear(r);
    /* the prepared plan's result type changed: refused once, then on a new connection */
    T_ASSERT(db_pg_exec(&a, "SELECT * FROM db_pg_tx_stale", 0, NULL, &r) != OK);
    T_OK(db_pg_exec(&a, "SELECT * FROM db_pg_tx_stale", 0, NULL, &r));
    PQclear(r);
}

int main(void)
{
    PGresult *r;
    const char *url = getenv("TETHER_PG_URL");
    if (!url) {
        fprintf(stderr, "db_pg_tx_driver: TETHER_PG_URL is not set\n");
        return 100;
    }
    log_init("db-pg-tx-driver", LOG_LVL_ERROR, false);
    run = (unsigned long)clock_wall_ms();
    db_pg_init(&a, url, 5000);
    db_pg_init(&b, url, 5000);
    if (db_pg_exec(&b, "CREATE TABLE IF NOT EXISTS db_pg_tx_driver (id text PRIMARY KEY)", 0, NULL,
                   &r) != OK)
        return 1;
    PQclear(r);
    T_RUN(committed_is_seen_once_committed);
    T_RUN(failed_last_statement_commits_nothing);
    T_RUN(failed_first_statement_commits_nothing);
    T_RUN(once_claim_and_save);
    T_RUN(once_save_without_its_row_commits_nothing);
    T_RUN(a_statement_gone_stale_is_prepared_anew);
    db_pg_fini(&a);
    db_pg_fini(&b);
    return T_DONE();
}
