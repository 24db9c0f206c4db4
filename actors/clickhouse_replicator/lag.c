/*
 * lag.c - how far the replicator is behind: the lag in bytes and time, logged
 * (chr.lag) with the slot's health from pg_replication_slots (on the query
 * worker), and set on /metrics every second.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chr.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

uint64_t chr_lag_bytes(const struct chr *chr)
{
    return chr->server_end_lsn > chr->acked_lsn ? chr->server_end_lsn - chr->acked_lsn : 0;
}

uint64_t chr_lag_ms(const struct chr *chr)
{
    uint64_t oldest = chr->inflight.n ? chr->inflight.oldest_commit_us : 0;
    if (!oldest && chr->pending.n)
        oldest = chr->pending.oldest_commit_us;
    if (!oldest)
        return 0;
    uint64_t at = oldest / 1000 + CHR_PG_EPOCH_MS, now = clock_wall_ms();
    return now > at ? now - at : 0;
}

/* Slot health from pg_replication_slots (on the query worker). */
struct chr_slot_job {
    struct chr_job job;
    struct chr *chr;
    char wal_status[24];
    char keep[24];
    long long retained;
};

static void chr_slot_run(struct chr_job *j, struct chr_worker *w)
{
    struct chr_slot_job *sj = (struct chr_slot_job *)j;
    const char *p[] = {sj->chr->cfg.slot};
    PGresult *r = NULL;
    j->rc =
        db_pg_exec(&w->pg,
                   "SELECT COALESCE(wal_status, ''), current_setting('max_slot_wal_keep_size'), "
                   "COALESCE(pg_current_wal_lsn() - restart_lsn, 0)::bigint "
                   "FROM pg_replication_slots WHERE slot_name = $1",
                   1, p, &r);
    if (j->rc != OK)
        return;
    if (PQntuples(r) == 1) {
        snprintf(sj->wal_status, sizeof(sj->wal_status), "%s", PQgetvalue(r, 0, 0));
        snprintf(sj->keep, sizeof(sj->keep), "%s", PQgetvalue(r, 0, 1));
        sj->retained = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    } else {
        j->rc = ERR_NOTFOUND;
    }
    PQclear(r);
}

static void chr_slot_done(struct chr_job *j)
{
    struct chr_slot_job *sj = (struct chr_slot_job *)j;
    struct chr *chr = sj->chr;
    if (j->rc == OK) {
        if (strcmp(sj->keep, "-1") == 0 && !chr->warned_keep) {
            LOG_WARN("chr.wal_unbounded",
                     "max_slot_wal_keep_size is -1: a stalled slot retains WAL without limit");
            chr->warned_keep = true;
        }
        if (strcmp(sj->wal_status, "unreserved") == 0 || strcmp(sj->wal_status, "lost") == 0 ||
            sj->retained > chr->cfg.lag_warn_bytes)
            LOG_WARN("chr.slot_behind",
                     "slot %s retains %lld bytes of WAL (wal_status %s, max_slot_wal_keep_size "
                     "%s)",
                     chr->cfg.slot, sj->retained, sj->wal_status, sj->keep);
    }
    free(sj);
}

static const struct chr_job_ops chr_slot_ops = {chr_slot_run, chr_slot_done};

void chr_lag_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    uint64_t bytes = chr_lag_bytes(chr), ms = chr_lag_ms(chr);
    LOG_INFO("chr.lag",
             "behind by %" PRIu64 " bytes, %" PRIu64 " ms; rows inserted %" PRIu64
             ", skipped %" PRIu64 ", batches %" PRIu64 ", failed inserts %" PRIu64,
             bytes, ms, chr->rows_inserted, chr->rows_skipped, chr->batches, chr->insert_failures);
    if (bytes > (uint64_t)chr->cfg.lag_warn_bytes)
        LOG_WARN("chr.slot_behind", "the slot is %" PRIu64 " bytes behind the server's WAL end",
                 bytes);
    if (chr->setup_done && chr->qry.busy < 4) {
        struct chr_slot_job *sj = xcalloc(1, sizeof(*sj));
        sj->job.ops = &chr_slot_ops;
        sj->chr = chr;
        chr_worker_submit(&chr->qry, &sj->job);
    }
    chr->lag_timer = loop_timer_add(l, (uint64_t)chr->cfg.lag_log_ms, chr_lag_timer, chr);
}

/* The lag as /metrics shows it (pmetrics.h), every second: cheap, from what is in memory. */
void chr_figures_timer(struct loop *l, void *arg)
{
    struct chr *chr = arg;
    pm_set(pm_series(PM_REPL_LAG, ""), (int64_t)chr_lag_ms(chr));
    pm_set(pm_series(PM_REPL_LAG_BYTES, ""), (int64_t)chr_lag_bytes(chr));
    chr->figures_timer = loop_timer_add(l, 1000, chr_figures_timer, chr);
}
