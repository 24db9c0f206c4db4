/*
 * waitpoint-registry - waitpoints: tokens, session-channel waits and
 * durations (PostgreSQL rows, a Redis registration per channel, api
 * contract §5.10, §12).
 *
 * The skeleton (actors/lib/actor.c) joins the bus, probes the stores and
 * answers health.ping; this file names the routes and settings, and in
 * init opens the non-blocking store clients on the actor's loop, the peers
 * (stream-broker for reads, run-manager for wakes) and starts the drain,
 * the sweep and the timer (drain.c). What each message does: wp.h,
 * proto/msg.c, docs/waitpoint-registry.md.
 */
#include <stddef.h>
#include <stdio.h>

#include "actor.h"
#include "log.h"
#include "msg.h"
#include "proc.h"
#include "wp.h"

#define WP_OFF(f) offsetof(struct wp_cfg, f)

static const struct cfg_def wp_cfg_defs[] = {
    {"TETHER_WP_SWEEP_INTERVAL", CFG_MS, "2s", 50, 60000, WP_OFF(sweep_interval_ms),
     "how often pending session-channel waitpoints are reconciled with their channels (a "
     "record whose drain was lost completes its waiters within this)"},
    {"TETHER_WP_TIMER_TICK", CFG_MS, "200ms", 10, 1000, WP_OFF(timer_tick_ms),
     "how often due timeouts and durations are fired (each fires within this of its due time)"},
    {"TETHER_WP_BATCH", CFG_INT, "1000", 1, 100000, WP_OFF(batch),
     "waitpoints one timer statement fires, and channel cursors one sweep reads, at most"},
    {"TETHER_WP_PG_CONNS", CFG_INT, "4", 1, 16, WP_OFF(pg_conns),
     "PostgreSQL connections of the registry's non-blocking pool"},
};

static struct wp wp_state;

struct wp *wp_of(struct actor *a)
{
    return a->state;
}

static const struct actor_route wp_routes[] = {
    {.type = MSG_WP_CREATE, .handle = wp_on_create},
    {.type = MSG_WP_COMPLETE, .handle = wp_on_complete},
    {.type = MSG_WP_GET, .handle = wp_on_get},
    {.type = MSG_WP_LIST, .handle = wp_on_list},
    {.type = MSG_WP_BLOCK, .handle = wp_on_block},
};

static err_t wp_init(struct actor *a)
{
    struct wp *wp = &wp_state;
    a->state = wp;
    wp->a = a;
    wp->loop = &a->loop;
    struct db_pg_async_opts o = {
        .url = a->cfg.pg_url,
        .conns = (unsigned)wp->cfg.pg_conns,
        .statement_timeout_ms = (unsigned)a->cfg.pg_statement_timeout_ms,
        .timeout_ms = (unsigned)a->cfg.pg_statement_timeout_ms + 2000,
    };
    err_t rc = db_pg_async_new(&a->loop, &o, &wp->pg);
    if (rc != OK)
        return rc;
    rc = db_redis_async_new(&a->loop, a->cfg.redis_url, 2000, &wp->redis);
    if (rc != OK)
        return rc;
    if ((rc = bus_peer_open_actor(a->bus, "stream-broker", &wp->broker)) != OK ||
        (rc = bus_peer_open_actor(a->bus, "run-manager", &wp->rm)) != OK)
        return rc;
    if ((rc = actor_events_open(a, &wp->events)) != OK)
        return rc;
    return wp_drain_start(wp);
}

static void wp_fini(struct actor *a)
{
    struct wp *wp = a->state;
    if (!wp)
        return;
    db_pg_async_free(wp->pg);
    wp->pg = NULL;
    if (wp->redis)
        db_redis_async_free(wp->redis);
    wp->redis = NULL;
    LOG_INFO("wp.stats", "completed %llu by drains, %llu by sweeps, %llu by the timer",
             (unsigned long long)wp->drained, (unsigned long long)wp->swept,
             (unsigned long long)wp->fired);
}

static const struct actor_spec wp_spec = {
    .name = "waitpoint-registry",
    .stores = ACTOR_STORE_REDIS | ACTOR_STORE_PG,
    .routes = wp_routes,
    .nroutes = sizeof(wp_routes) / sizeof(wp_routes[0]),
    .cfg = wp_cfg_defs,
    .ncfg = sizeof(wp_cfg_defs) / sizeof(wp_cfg_defs[0]),
    .cfg_base = &wp_state.cfg,
    .init = wp_init,
    .fini = wp_fini,
};

int main(int argc, char **argv)
{
    return actor_main(&wp_spec, argc, argv);
}
