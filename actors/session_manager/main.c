/*
 * session-manager - session rows, environments and API keys (PostgreSQL).
 *
 * Its domain handlers arrive with later issues; today it joins the bus,
 * connects its store, reports ready and answers health.ping (actors/lib/actor.c).
 */
#include "actor.h"

static const struct actor_spec spec = {
    .name = "session-manager",
    .stores = ACTOR_STORE_PG,
};

int main(int argc, char **argv)
{
    return actor_main(&spec, argc, argv);
}
