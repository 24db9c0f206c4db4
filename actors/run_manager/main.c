/*
 * run-manager - task runs and the session-run binding (PostgreSQL).
 *
 * The skeleton (actors/lib/actor.c) joins the bus, connects the store,
 * reports ready and answers health.ping; this file names the routes and
 * the settings, opens the events socket (run.queued, for long-polling
 * workers) and arms the sweep timer. One thread: every handler and sweep
 * runs on the actor's loop. What each message does: rm.h, proto/msg.c,
 * docs/run-manager.md.
 */
#include <stddef.h>
#include <stdio.h>

#include "actor.h"
#include "log.h"
#include "msg.h"
#include "proc.h"
#include "rm.h"

#define RM_OFF(f) offsetof(struct rm_cfg, f)

static const struct cfg_def rm_cfg_defs[] = {
    {"TETHER_RM_LEASE_DEFAULT", CFG_MS, "30s", 1000, 3600000, RM_OFF(lease_default_ms),
     "lease a worker gets on a dequeued run when it asks for none; it must heartbeat before the "
     "lease ends or the run is taken back"},
    {"TETHER_RM_SWEEP_INTERVAL", CFG_MS, "1s", 50, 60000, RM_OFF(sweep_interval_ms),
     "how often expired leases, maxDuration, ttl and orphaned runs are swept"},
    {"TETHER_RM_SWEEP_BATCH", CFG_INT, "100", 1, 10000, RM_OFF(sweep_batch),
     "runs one sweep statement changes at most (a full batch brings the next pass forward)"},
    {"TETHER_RM_ORPHAN_GRACE", CFG_MS, "5s", 1000, 3600000, RM_OFF(orphan_grace_ms),
     "age after which a queued, never started run that no session points at is canceled"},
};

/* The one struct rm of the process: the actor's spec needs a fixed address for the settings. */
static struct rm rm_state;

static const struct actor_route rm_routes[] = {
    {.type = MSG_RUN_ENSURE, .handle = rm_on_run_ensure, .once = true, .fast = rm_fast_run_ensure},
    {.type = MSG_RUN_SWAP, .handle = rm_on_run_swap, .once = true},
    {.type = MSG_RUN_GET, .handle = rm_on_run_get},
    {.type = MSG_RUN_CANCEL, .handle = rm_on_run_cancel, .once = true},
    {.type = MSG_RUN_DEQUEUE, .handle = rm_on_run_dequeue, .once = true},
    {.type = MSG_RUN_HEARTBEAT, .handle = rm_on_run_heartbeat},
    {.type = MSG_RUN_COMPLETE, .handle = rm_on_run_complete, .once = true},
    {.type = MSG_RUN_FAIL, .handle = rm_on_run_fail, .once = true},
    {.type = MSG_RUN_RELEASE, .handle = rm_on_run_release, .once = true},
    {.type = MSG_RUN_SUSPEND, .handle = rm_on_run_suspend},
    {.type = MSG_RUN_WAKE, .handle = rm_on_run_wake},
};

/* Once routes run in a transaction: run.queued waits for its commit (a worker woken earlier
 * would not see the run yet) and is dropped with a rollback (there is no run). */
static void rm_on_tx(struct actor *a, enum actor_tx t)
{
    struct rm *rm = rm_of(a);
    switch (t) {
    case ACTOR_TX_BEGIN:
        rm->defer_events = true;
        rm->npending = 0;
        return;
    case ACTOR_TX_COMMIT:
        rm->defer_events = false;
        rm_publish_pending(rm);
        return;
    case ACTOR_TX_ROLLBACK:
        rm->defer_events = false;
        rm->npending = 0;
        return;
    }
}

static err_t rm_init(struct actor *a)
{
    struct rm *rm = &rm_state;
    a->state = rm;
    rm->pg = &a->pg;
    rm->loop = &a->loop;
    err_t rc = actor_events_open(a, &rm->events);
    if (rc != OK)
        return rc;
    rm_sweep_start(rm);
    return OK;
}

static const struct actor_spec rm_spec = {
    .name = "run-manager",
    .stores = ACTOR_STORE_PG,
    .routes = rm_routes,
    .nroutes = sizeof(rm_routes) / sizeof(rm_routes[0]),
    .cfg = rm_cfg_defs,
    .ncfg = sizeof(rm_cfg_defs) / sizeof(rm_cfg_defs[0]),
    .cfg_base = &rm_state.cfg,
    .init = rm_init,
    .on_tx = rm_on_tx,
};

int main(int argc, char **argv)
{
    return actor_main(&rm_spec, argc, argv);
}
