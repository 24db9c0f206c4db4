/*
 * stream-broker - the .in/.out record streams (Redis Streams).
 *
 * Its domain handlers arrive with later issues; today it joins the bus,
 * connects its store, reports ready and answers health.ping (actors/lib/actor.c).
 */
#include "actor.h"

static const struct actor_spec spec = {
    .name = "stream-broker",
    .stores = ACTOR_STORE_REDIS,
};

int main(int argc, char **argv)
{
    return actor_main(&spec, argc, argv);
}
