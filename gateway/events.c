/*
 * events.c - where an actor publishes its events (see gw.h).
 */
#include <stdio.h>
#include <string.h>

#include "gw.h"

void gw_events_urls(struct gw *gw, const char *actor, char *out, size_t cap)
{
    bus_actor_events_urls(gw->bus, actor, out, cap);
}
