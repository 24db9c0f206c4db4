/*
 * stream-broker - the .in/.out record streams of sessions (Redis Streams).
 *
 * The skeleton (actors/lib/actor.c) joins the bus, connects Redis, reports
 * ready and answers health.ping; this file names the routes and opens the
 * events socket every appended record is published on. One thread: every
 * handler runs on the actor's loop. What each message does: sb.h,
 * proto/msg.c, docs/stream-broker.md.
 */
#include <stddef.h>
#include <stdio.h>

#include "actor.h"
#include "envelope.h"
#include "log.h"
#include "msg.h"
#include "proc.h"
#include "sb.h"

#define SB_OFF(f) offsetof(struct sb_cfg, f)

static const struct cfg_def sb_cfg_defs[] = {
    {"TETHER_SB_STREAM_MAX_RECORDS", CFG_INT, "100000", 0, 1000000000, SB_OFF(stream_max_records),
     "records one stream keeps; an append trims the oldest beyond it (0: no limit)"},
    {"TETHER_SB_STREAM_MAX_BYTES", CFG_INT, "67108864", 0, 1099511627776LL,
     SB_OFF(stream_max_bytes),
     "metered bytes one stream keeps; an append trims the oldest records beyond it, keeping "
     "at least the newest (0: no limit)"},
    {"TETHER_SB_ENV_MAX_BYTES", CFG_INT, "536870912", 0, 1099511627776LL, SB_OFF(env_max_bytes),
     "metered bytes all streams of one environment may hold; an append that would pass it is "
     "refused with 507, writing nothing (0: no limit)"},
};

/* The one struct sb of the process (actor.state): the spec needs a fixed address for cfg. */
static struct sb sb_state;

struct sb *sb_of(struct actor *a)
{
    return a->state;
}

static const struct actor_route sb_routes[] = {
    {.type = MSG_STREAM_APPEND, .handle = sb_on_stream_append},
    {.type = MSG_STREAM_READ, .handle = sb_on_stream_read},
    {.type = MSG_STREAM_PEEK, .handle = sb_on_stream_peek},
    {.type = MSG_STREAM_TRIM, .handle = sb_on_stream_trim},
    {.type = MSG_STREAM_SEAL, .handle = sb_on_stream_seal},
    {.type = MSG_STREAM_FOLLOW, .handle = sb_on_stream_follow},
    {.type = MSG_RATE_TAKE, .handle = sb_on_rate_take},
};

static err_t sb_init(struct actor *a)
{
    struct sb *sb = &sb_state;
    a->state = sb;
    sb_store_init(sb, a->ra);
    /* receivers accept TETHER_BUS_RECV_MAX (the tree shares it), envelope included */
    sb->reply_max = (size_t)a->cfg.bus_recv_max - ENV_OVERHEAD_MAX;
    return actor_events_open(a, &sb->events);
}

static void sb_fini(struct actor *a)
{
    (void)a;
    sb_store_fini(&sb_state);
}

static const struct actor_spec sb_spec = {
    .name = "stream-broker",
    .stores = ACTOR_STORE_REDIS,
    .routes = sb_routes,
    .nroutes = sizeof(sb_routes) / sizeof(sb_routes[0]),
    .cfg = sb_cfg_defs,
    .ncfg = sizeof(sb_cfg_defs) / sizeof(sb_cfg_defs[0]),
    .cfg_base = &sb_state.cfg,
    .init = sb_init,
    .fini = sb_fini,
};

int main(int argc, char **argv)
{
    return actor_main(&sb_spec, argc, argv);
}
