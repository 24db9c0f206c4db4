/*
 * actor_events.c - where an actor instance publishes its events.
 *
 * Beside the request endpoint, ipc://<bus dir>/<actor>.events.<instance>.ipc,
 * which this node's gateways derive from the request endpoints
 * (bus_actor_events_urls); and, on a clustered node, the tcp:// endpoint the
 * supervisor gave in TETHER_BUS_EVENTS_LISTEN, which it advertises in the
 * cluster registry so that other nodes' gateways dial it (bus_cluster.c).
 */
#include <stdio.h>

#include "actor.h"
#include "log.h"
#include "proc.h"

err_t actor_events_open(struct actor *a, struct bus_pub **out)
{
    char dir[BUS_URL_MAX], url[BUS_URL_MAX * 2];
    const char *tcp = a->cfg.bus_events_listen;
    cfg_bus_dir(&a->cfg, dir, sizeof(dir));
    int w = snprintf(url, sizeof(url), "ipc://%s/%s.events.%u.ipc%s%s", dir, a->spec->name,
                     proc_instance(), tcp && *tcp ? "," : "", tcp ? tcp : "");
    if (w < 0 || (size_t)w >= sizeof(url) || (size_t)w >= BUS_URL_MAX * 2 - 1) {
        LOG_ERROR("actor.events", "the bus directory is too long for an endpoint: %s", dir);
        return ERR_INVAL;
    }
    err_t rc = bus_pub_open(a->bus, url, out);
    if (rc == OK)
        LOG_INFO("actor.events", "publishing events on %s", url);
    return rc;
}
