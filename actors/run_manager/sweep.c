/*
 * sweep.c - the run-manager's clock: runs whose time is up.
 *
 * Every TETHER_RM_SWEEP_INTERVAL, four sweeps, each one UPDATE over at
 * most TETHER_RM_SWEEP_BATCH rows picked with FOR UPDATE SKIP LOCKED, so
 * every instance may sweep at once without doing a row twice:
 *   leases     DEQUEUED/EXECUTING past lease_expires_at: the worker is gone;
 *              queued again as attempt + 1 while attempts remain, else CRASHED;
 *   durations  started longer than maxDuration ago: TIMED_OUT;
 *   ttls       PENDING and never started within ttl: EXPIRED;
 *   orphans    PENDING, never started, older than TETHER_RM_ORPHAN_GRACE,
 *              and no session points at it (a lost or never-made claim): CANCELED.
 * A full batch brings the next pass forward, so a backlog drains quickly.
 */
#include <string.h>

#include "log.h"
#include "rm.h"

#define RM_SWEEP_BACKLOG_MS 10 /* delay of the next pass after a full batch */

/* Runs the lease sweep and wakes workers for the runs it queued again. */
static unsigned rm_sweep_leases(struct rm *rm, bool *full)
{
    PGresult *r;
    if (rm_store_sweep_leases(rm->pg, rm->cfg.sweep_batch, &r) != OK)
        return 0;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        const char *status = PQgetvalue(r, i, 2);
        if (strcmp(status, "PENDING") == 0) {
            LOG_INFO("run.lease_expired", "%s: lease expired; queued again", PQgetvalue(r, i, 3));
            rm_publish_queued(rm, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        } else {
            LOG_INFO("run.crashed", "%s: lease expired on its last attempt; CRASHED",
                     PQgetvalue(r, i, 3));
        }
    }
    PQclear(r);
    *full |= n >= rm->cfg.sweep_batch;
    return (unsigned)n;
}

/* One counted sweep; logs what it did. */
static unsigned rm_sweep_counted(struct rm *rm, const char *what, err_t rc, unsigned n, bool *full)
{
    if (rc != OK || n == 0)
        return 0;
    LOG_INFO("run.swept", "%u run(s) %s", n, what);
    *full |= (long long)n >= rm->cfg.sweep_batch;
    return n;
}

static unsigned rm_sweep_pass(struct rm *rm, bool *full)
{
    unsigned total = 0, n = 0;
    err_t rc;
    *full = false;
    /* the store is down: every statement would fail the same way; db_pg has said so once */
    if (db_pg_ensure(rm->pg) != OK)
        return 0;
    total += rm_sweep_leases(rm, full);
    rc = rm_store_sweep_durations(rm->pg, rm->cfg.sweep_batch, &n);
    total += rm_sweep_counted(rm, "timed out (maxDuration)", rc, n, full);
    rc = rm_store_sweep_ttls(rm->pg, rm->cfg.sweep_batch, &n);
    total += rm_sweep_counted(rm, "expired (ttl)", rc, n, full);
    rc = rm_store_sweep_orphans(rm->pg, rm->cfg.sweep_batch, rm->cfg.orphan_grace_ms, &n);
    total += rm_sweep_counted(rm, "canceled as orphans (no session points at them)", rc, n, full);
    n = rm_wait_sweep(rm, rm->cfg.sweep_batch); /* wait.c: wakes that were lost */
    *full |= (long long)n >= rm->cfg.sweep_batch;
    total += n;
    return total;
}

unsigned rm_sweep_once(struct rm *rm)
{
    bool full;
    return rm_sweep_pass(rm, &full);
}

static void rm_sweep_timer(struct loop *l, void *arg)
{
    struct rm *rm = arg;
    bool full = false;
    rm->sweep_timer = 0;
    /* stopping: requests in flight still finish, but nothing new is started */
    if (loop_stopping(l))
        return;
    (void)rm_sweep_pass(rm, &full);
    rm->sweep_timer = loop_timer_add(
        l, full ? RM_SWEEP_BACKLOG_MS : (uint64_t)rm->cfg.sweep_interval_ms, rm_sweep_timer, rm);
}

void rm_sweep_start(struct rm *rm)
{
    if (rm->loop)
        rm->sweep_timer =
            loop_timer_add(rm->loop, (uint64_t)rm->cfg.sweep_interval_ms, rm_sweep_timer, rm);
}
