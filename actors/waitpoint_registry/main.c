/*
 * waitpoint-registry - waitpoints on session channels (Redis pending sets + PostgreSQL).
 *
 * Its domain handlers arrive with later issues; today it joins the bus,
 * connects its store, reports ready and answers health.ping (actors/lib/actor.c).
 */
#include "actor.h"

static const struct actor_spec spec = {
    .name = "waitpoint-registry",
    .stores = ACTOR_STORE_REDIS | ACTOR_STORE_PG,
};

int main(int argc, char **argv)
{
    return actor_main(&spec, argc, argv);
}
