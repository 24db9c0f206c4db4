/*
 * clickhouse-replicator - PostgreSQL logical replication of sessions into ClickHouse; leader-only.
 *
 * repl.c streams the slot and insert.c inserts batches, ack.c acknowledging
 * an LSN only once ClickHouse holds every row up to it; list.c answers
 * session.list.
 * This file names the settings and the route and starts the pieces. The
 * skeleton (actors/lib/actor.c) joins the bus and reports readiness.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chr.h"
#include "log.h"
#include "msg.h"

#define CHR_OFF(f) offsetof(struct chr_cfg, f)

static const struct cfg_def chr_cfg_defs[] = {
    {"TETHER_CHR_SLOT", CFG_STR, "sessions_to_clickhouse_v1", 0, 0, CHR_OFF(slot),
     "logical replication slot (pgoutput); created at first start, with a backfill of the rows "
     "that exist then"},
    {"TETHER_CHR_PUBLICATION", CFG_STR, "sessions_to_clickhouse_v1_publication", 0, 0,
     CHR_OFF(publication), "publication of the sessions table (sql/postgres/0006)"},
    {"TETHER_CHR_TABLE", CFG_STR, "sessions_v1", 0, 0, CHR_OFF(table),
     "ClickHouse table the rows go to (sql/clickhouse/0001)"},
    {"TETHER_CHR_BATCH_ROWS", CFG_INT, "1000", 1, 100000, CHR_OFF(batch_rows),
     "rows that make a batch go out at once"},
    {"TETHER_CHR_FLUSH_INTERVAL", CFG_MS, "100ms", 1, 250, CHR_OFF(flush_ms),
     "longest a committed row waits for its batch to fill before it is inserted"},
    {"TETHER_CHR_MAX_TRIES", CFG_INT, "5", 1, 100, CHR_OFF(max_tries),
     "tries of a row ClickHouse refuses as bad data before it is logged (with its LSN) and "
     "skipped; an unreachable ClickHouse is retried without limit"},
    {"TETHER_CHR_BACKOFF_MAX", CFG_MS, "5s", 100, 300000, CHR_OFF(backoff_max_ms),
     "longest wait between two insert tries (exponential from 100 ms, with jitter)"},
    {"TETHER_CHR_STATUS_INTERVAL", CFG_MS, "10s", 100, 60000, CHR_OFF(status_ms),
     "standby status updates go at least this often (below the server's wal_sender_timeout)"},
    {"TETHER_CHR_LAG_WARN_BYTES", CFG_INT, "268435456", 1024, 1099511627776LL,
     CHR_OFF(lag_warn_bytes), "WAL the slot may retain before chr.slot_behind is logged"},
    {"TETHER_CHR_LAG_LOG_INTERVAL", CFG_MS, "30s", 100, 3600000, CHR_OFF(lag_log_ms),
     "how often the lag (chr.lag) is logged and the slot's WAL retention checked"},
    {"TETHER_CHR_FRESH_WINDOW", CFG_MS, "5s", 0, 3600000, CHR_OFF(fresh_ms),
     "session.list also reads PostgreSQL rows updated within this window plus the current lag "
     "(read-your-writes)"},
    {"TETHER_CHR_BACKFILL_ROWS", CFG_INT, "1000", 1, 100000, CHR_OFF(backfill_rows),
     "rows per chunk of the initial backfill"},
    {"TETHER_CHR_FENCE_KEY", CFG_STR, NULL, 0, 0, CHR_OFF(fence_key),
     "Redis key of the fencing counter; empty: $TETHER_SV_LEADER_KEY:fence, or {tether:leader}:fence"},
    {"TETHER_CHR_FAULT_FILE", CFG_STR, NULL, 0, 0, CHR_OFF(fault_file),
     "tests only: a file naming a fault point (before_insert, after_insert, mid_backfill: after "
     "a backfill chunk is inserted); the replicator removes it and SIGKILLs itself there. "
     "\"refuse_row MARKER\" makes every insert containing MARKER fail as bad data in ClickHouse"},
};

/* The one struct chr of the process: the actor's spec needs a fixed address for the settings. */
static struct chr chr_state;

static const struct actor_route chr_routes[] = {
    {.type = MSG_SESSION_LIST, .handle = chr_on_session_list},
};

static err_t chr_init(struct actor *a)
{
    struct chr *chr = &chr_state;
    a->state = chr;
    chr->a = a;
    chr->loop = &a->loop;
    const char *tok = getenv("TETHER_FENCING_TOKEN");
    chr->fence_token = tok && *tok ? strtoull(tok, NULL, 10) : 0;
    if (chr->cfg.fence_key && chr->cfg.fence_key[0]) {
        snprintf(chr->fence_key, sizeof(chr->fence_key), "%s", chr->cfg.fence_key);
    } else {
        const char *k = getenv("TETHER_SV_LEADER_KEY");
        snprintf(chr->fence_key, sizeof(chr->fence_key), "%s:fence",
                 k && *k ? k : "{tether:leader}");
    }
    if (chr->fence_token) {
        if (db_redis_async_new(&a->loop, a->cfg.redis_url, 1000, &chr->redis) != OK) {
            LOG_ERROR("cfg.invalid", "invalid TETHER_REDIS_URL");
            return ERR_INVAL;
        }
        LOG_INFO("chr.fencing", "fencing token %" PRIu64 " checked against %s before every write",
                 chr->fence_token, chr->fence_key);
    } else {
        LOG_WARN("chr.unfenced", "no TETHER_FENCING_TOKEN (not started by a supervisor holding "
                 "the lock): writes are not fenced");
    }
    err_t rc = chr_worker_start(&chr->ins, chr, "insert");
    if (rc == OK)
        rc = chr_worker_start(&chr->qry, chr, "query");
    if (rc != OK)
        return rc;
    chr_repl_start(chr);
    return OK;
}

static void chr_fini(struct actor *a)
{
    struct chr *chr = a->state;
    if (!chr)
        return;
    chr_worker_stop(&chr->ins);
    chr_worker_stop(&chr->qry);
    if (chr->redis)
        db_redis_async_free(chr->redis);
    chr->redis = NULL;
    chr_repl_stop(chr);
}

static const struct actor_spec chr_spec = {
    .name = "clickhouse-replicator",
    .stores = ACTOR_STORE_PG | ACTOR_STORE_CH,
    .routes = chr_routes,
    .nroutes = sizeof(chr_routes) / sizeof(chr_routes[0]),
    .cfg = chr_cfg_defs,
    .ncfg = sizeof(chr_cfg_defs) / sizeof(chr_cfg_defs[0]),
    .cfg_base = &chr_state.cfg,
    .init = chr_init,
    .fini = chr_fini,
};

int main(int argc, char **argv)
{
    return actor_main(&chr_spec, argc, argv);
}
