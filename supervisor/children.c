/*
 * children.c - the table of children, in dependency order, and its
 * expansion into instances.
 *
 * Start order is table order restricted by deps; stop order is the
 * reverse. A spec with instances_env runs that many copies, named
 * "<name>.<i>"; every process learns the endpoints of all copies of an
 * actor from TETHER_BUS_PEERS_<NAME>, which is exported here.
 */
#include "sv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const struct sv_spec sv_specs[] = {
    {"session-manager", "session-manager", {NULL}, false, true,
     "TETHER_SV_INSTANCES_SESSION_MANAGER"},
    {"run-manager", "run-manager", {"session-manager"}, false, true,
     "TETHER_SV_INSTANCES_RUN_MANAGER"},
    {"stream-broker", "stream-broker", {NULL}, false, true, "TETHER_SV_INSTANCES_STREAM_BROKER"},
    {"waitpoint-registry", "waitpoint-registry", {"stream-broker", "run-manager"}, false, true,
     "TETHER_SV_INSTANCES_WAITPOINT_REGISTRY"},
    {"clickhouse-replicator", "clickhouse-replicator", {"session-manager"}, true, false, NULL},
    {"gateway", "gateway",
     {"session-manager", "run-manager", "stream-broker", "waitpoint-registry"}, false, false,
     "TETHER_GATEWAY_PROCS"},
};

const unsigned sv_nspecs = sizeof(sv_specs) / sizeof(sv_specs[0]);

static unsigned sv_instances(const struct sv *sv, const struct sv_spec *s)
{
    const char *v;
    long n;
    if (!s->instances_env)
        return 1;
    if (strcmp(s->instances_env, "TETHER_GATEWAY_PROCS") == 0)
        return (unsigned)sv->sv.gateway_procs;
    v = getenv(s->instances_env);
    if (!v || !*v)
        return 1;
    n = strtol(v, NULL, 10);
    return n >= 1 && n <= 16 ? (unsigned)n : 1;
}

/* TETHER_BUS_PEERS_<NAME> = every instance's endpoint, unless the operator set it. */
static void sv_export_peers(struct sv *sv, const struct sv_spec *s, unsigned n)
{
    char var[96] = "TETHER_BUS_PEERS_", list[BUS_URL_MAX * 8] = "";
    size_t o = strlen(var);
    for (const char *p = s->name; *p && o + 1 < sizeof(var); p++)
        var[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    var[o] = '\0';
    if (getenv(var))
        return;
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%sipc://%s/%s.%u.ipc", i ? "," : "", sv->bus_dir,
                 s->name, i);
    }
    setenv(var, list, 1);
}

err_t sv_children_build(struct sv *sv)
{
    sv->nchildren = 0;
    for (unsigned i = 0; i < sv_nspecs; i++) {
        const struct sv_spec *s = &sv_specs[i];
        unsigned n = sv_instances(sv, s);
        if (strcmp(s->name, "gateway") != 0)
            sv_export_peers(sv, s, n);
        for (unsigned k = 0; k < n; k++) {
            struct sv_child *c;
            if (sv->nchildren == SV_MAX_CHILDREN) {
                LOG_ERROR("sv.too_many", "cannot run more than %d children", SV_MAX_CHILDREN);
                return ERR_INVAL;
            }
            c = &sv->children[sv->nchildren++];
            memset(c, 0, sizeof(*c));
            c->spec = s;
            c->instance = k;
            c->notify_fd = -1;
            c->want_up = true;
            c->state = SV_DOWN;
            if (n > 1)
                snprintf(c->name, sizeof(c->name), "%s.%u", s->name, k);
            else
                snprintf(c->name, sizeof(c->name), "%s", s->name);
        }
    }
    return OK;
}

struct sv_child *sv_child_find(struct sv *sv, const char *name)
{
    for (unsigned i = 0; i < sv->nchildren; i++)
        if (strcmp(sv->children[i].name, name) == 0)
            return &sv->children[i];
    return NULL;
}
