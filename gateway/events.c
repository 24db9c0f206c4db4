/*
 * events.c - where an actor publishes its events (see gw.h).
 */
#include <stdio.h>
#include <string.h>

#include "gw.h"

void gw_events_urls(struct gw *gw, const char *actor, char *out, size_t cap)
{
    char peers[BUS_URL_MAX * 8], prefix[64], *save = NULL;
    size_t o = 0, pl;
    snprintf(prefix, sizeof(prefix), "%s.", actor);
    pl = strlen(prefix);
    bus_actor_peers(gw->bus, actor, peers, sizeof(peers));
    out[0] = '\0';
    for (char *u = strtok_r(peers, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        /* ipc://<dir>/<actor>.<n>.ipc -> ipc://<dir>/<actor>.events.<n>.ipc */
        char *base = strrchr(u, '/');
        if (!base || strncmp(++base, prefix, pl) != 0)
            continue;
        int w = snprintf(out + o, cap - o, "%s%.*s%sevents.%s", o ? "," : "", (int)(base - u), u,
                         prefix, base + pl);
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
    }
}
