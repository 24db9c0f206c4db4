/*
 * clickhouse-replicator - PostgreSQL logical replication of sessions into ClickHouse; leader-only.
 *
 * Its domain handlers arrive with later issues; today it joins the bus,
 * connects its store, reports ready and answers health.ping (actors/lib/actor.c).
 */
#include "actor.h"

static const struct actor_spec spec = {
    .name = "clickhouse-replicator",
    .stores = ACTOR_STORE_PG | ACTOR_STORE_CH,
};

int main(int argc, char **argv)
{
    return actor_main(&spec, argc, argv);
}
