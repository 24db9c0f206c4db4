/*
 * bus_cluster.c - the cluster view of this node's supervisor, and the dials
 * it makes to other nodes' event sockets.
 *
 * The supervisor reads the node registry in Redis every second and
 * publishes what it found as cluster.members on its event socket (the one
 * bus.fault travels on). Each process keeps the latest view (for /healthz)
 * and, for every subscriber opened with bus_sub_open_actor, dials the
 * tcp:// event sockets of that actor on every other node, closing the dials
 * of nodes that left. So a record appended through any node's broker is
 * published straight to every node's gateways, with no hop through another
 * gateway. Events stay a latency path: a view that is late or lost only
 * delays a subscriber until its feed reads the gap from the broker.
 */
#include "bus_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "msg_sv.h"

/* At most this many event sockets of one actor on one node (TETHER_SV_INSTANCES_* <= 16). */
#define BUS_CLUSTER_URLS 16

struct bus_cluster_item {
    struct bus_item item;
    struct bus *bus;
    nng_msg *msg;
};

const struct bus_cluster *bus_cluster_view(const struct bus *b)
{
    return &b->cluster;
}

/* s into out (cap bytes); "" when absent or too long. */
static void bus_cluster_cstr(struct slice s, char *out, size_t cap)
{
    if (slice_copy(s, out, cap) != OK)
        out[0] = '\0';
}

/* The nodes of a cluster.members body: *r at the first of *n; false when it lists none. */
static bool bus_cluster_nodes(const void *body, size_t len, struct msg_bus_cluster *m,
                              struct mp_reader *r, uint32_t *n)
{
    if (msg_decode(&msg_bus_cluster_form, body, len, m) != OK || !m->nodes.p)
        return false;
    mp_reader_init(r, m->nodes.p, m->nodes.n);
    return mp_read_array(r, n) == OK;
}

/* The next node of r (bus_cluster_nodes) into nd: 1; 0 when it is no node (skipped); -1 when
 * the rest cannot be read. */
static int bus_cluster_node_next(struct mp_reader *r, struct msg_bus_cluster_node *nd)
{
    struct slice raw;
    if (mp_skip(r, &raw) != OK)
        return -1;
    return msg_decode(&msg_bus_cluster_node_form, raw.p, raw.n, nd) == OK;
}

/* Parses the event body into view; false when it is not a cluster.members body. */
static bool bus_cluster_parse(const struct envelope *env, struct bus_cluster *view)
{
    struct msg_bus_cluster m;
    struct msg_bus_cluster_node nd;
    struct mp_reader r;
    uint32_t n;
    memset(view, 0, sizeof(*view));
    if (!bus_cluster_nodes(env->body.p, env->body.n, &m, &r, &n))
        return false;
    bus_cluster_cstr(m.self, view->self, sizeof(view->self));
    bus_cluster_cstr(m.leader, view->leader, sizeof(view->leader));
    if (!view->self[0])
        return false;
    for (uint32_t i = 0; i < n; i++) {
        int got = bus_cluster_node_next(&r, &nd);
        if (got < 0)
            return false;
        if (!got || view->n == BUS_CLUSTER_NODES)
            continue; /* more nodes than a view holds: the rest are not dialled */
        struct bus_cluster_node *v = &view->nodes[view->n];
        bus_cluster_cstr(nd.node, v->node, sizeof(v->node));
        if (!v->node[0])
            continue;
        bus_cluster_cstr(nd.addr, v->addr, sizeof(v->addr));
        v->leader = nd.leader;
        v->fencing_token = nd.fencing_token;
        v->age_ms = nd.age_ms;
        view->n++;
    }
    view->known = true;
    view->seen_mono = clock_mono_ms();
    return true;
}

/* The kept bodies of the nodes, for bus_cluster_dial; replaced with each view. */
static void bus_cluster_keep_raw(struct bus *b, const struct envelope *env)
{
    free(b->cluster_body);
    b->cluster_body = xmalloc(env->body.n ? env->body.n : 1);
    memcpy(b->cluster_body, env->body.p, env->body.n);
    b->cluster_body_n = env->body.n;
}

static struct bus_sub_remote *bus_cluster_find(struct bus_sub *s, const char *url)
{
    for (struct bus_sub_remote *r = s->remotes; r; r = r->next)
        if (strcmp(r->url, url) == 0)
            return r;
    return NULL;
}

/* Marks (and dials when new) one URL an other node advertises for s's actor. */
static void bus_cluster_want(struct bus_sub *s, struct slice url)
{
    char u[BUS_URL_MAX];
    if (slice_copy(url, u, sizeof(u)) != OK || strncmp(u, "tcp://", 6) != 0)
        return; /* only the network endpoints: ipc:// names a path on the other host */
    struct bus_sub_remote *r = bus_cluster_find(s, u);
    if (r) {
        r->keep = true;
        return;
    }
    r = xcalloc(1, sizeof(*r));
    snprintf(r->url, sizeof(r->url), "%s", u);
    err_t rc = bus_dial(s->bus, s->sock, r->url, &r->dial);
    if (rc != OK) {
        LOG_WARN("bus.cluster_dial_failed", "cannot follow %s's events at %s: %s", s->actor, r->url,
                 err_str(rc));
        free(r);
        return;
    }
    LOG_INFO("bus.cluster_dial", "following %s's events at %s", s->actor, r->url);
    r->keep = true;
    r->next = s->remotes;
    s->remotes = r;
}

void bus_cluster_dial(struct bus *b, struct bus_sub *s)
{
    const struct bus_cluster *view = &b->cluster;
    struct msg_bus_cluster m;
    struct msg_bus_cluster_node nd;
    struct mp_reader nodes;
    uint32_t n;

    if (!s->actor[0] || !view->known)
        return;
    for (struct bus_sub_remote *r = s->remotes; r; r = r->next)
        r->keep = false;
    if (bus_cluster_nodes(b->cluster_body, b->cluster_body_n, &m, &nodes, &n)) {
        int got;
        for (uint32_t i = 0; i < n && (got = bus_cluster_node_next(&nodes, &nd)) >= 0; i++) {
            struct mp_reader urls;
            uint32_t nu;
            char node[BUS_CLUSTER_NAME_MAX];
            bus_cluster_cstr(nd.node, node, sizeof(node));
            if (!got || !node[0] || strcmp(node, view->self) == 0)
                continue; /* this node's own events come over ipc:// */
            /* events: {<actor>: [url]}, keyed by actor name */
            if (!nd.events.p || mp_map_find(nd.events.p, nd.events.n, s->actor, &urls) != OK ||
                mp_read_array(&urls, &nu) != OK)
                continue;
            for (uint32_t j = 0; j < nu && j < BUS_CLUSTER_URLS; j++) {
                struct slice u;
                if (mp_read_str(&urls, &u) != OK)
                    break;
                bus_cluster_want(s, u);
            }
        }
    }
    for (struct bus_sub_remote **pp = &s->remotes; *pp;) {
        struct bus_sub_remote *r = *pp;
        if (r->keep) {
            pp = &r->next;
            continue;
        }
        LOG_INFO("bus.cluster_undial", "no longer following %s's events at %s (node gone)",
                 s->actor, r->url);
        bus_dial_close(s->bus, r->dial);
        *pp = r->next;
        free(r);
    }
}

bool bus_cluster_leader_url(const struct bus *b, const char *actor, char *out, size_t cap)
{
    const struct bus_cluster *view = &b->cluster;
    struct msg_bus_cluster m;
    struct msg_bus_cluster_node nd;
    struct mp_reader nodes;
    uint32_t n;

    if (!view->known || !view->leader[0] || strcmp(view->leader, view->self) == 0 ||
        !bus_cluster_nodes(b->cluster_body, b->cluster_body_n, &m, &nodes, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        char node[BUS_CLUSTER_NAME_MAX];
        struct mp_reader v;
        struct slice url;
        int got = bus_cluster_node_next(&nodes, &nd);
        if (got < 0)
            return false;
        bus_cluster_cstr(got ? nd.node : SLICE_NULL, node, sizeof(node));
        if (strcmp(node, view->leader) != 0)
            continue;
        if (!nd.requests.p)
            return false;
        /* requests: {<actor>: url}, keyed by actor name */
        out[0] = '\0';
        if (mp_map_find(nd.requests.p, nd.requests.n, actor, &v) == OK &&
            mp_read_str(&v, &url) == OK)
            bus_cluster_cstr(url, out, cap);
        /* only the network endpoints: ipc:// names a path on the other host */
        return strncmp(out, "tcp://", 6) == 0;
    }
    return false;
}

void bus_cluster_undial(struct bus_sub *s)
{
    for (struct bus_sub_remote *r = s->remotes, *next; r; r = next) {
        next = r->next;
        bus_dial_close(s->bus, r->dial);
        free(r);
    }
    s->remotes = NULL;
}

static void bus_cluster_run(struct bus_item *it)
{
    struct bus_cluster_item *ci = (struct bus_cluster_item *)it;
    struct bus *b = ci->bus;
    const char *topic;
    const void *eb;
    size_t en;
    struct envelope env;
    struct bus_cluster view;

    if (bus_event_split(nng_msg_body(ci->msg), nng_msg_len(ci->msg), &topic, &eb, &en) == OK &&
        env_decode(eb, en, &env) == OK && bus_cluster_parse(&env, &view)) {
        b->cluster = view;
        bus_cluster_keep_raw(b, &env);
        for (struct bus_sub *s = b->subs; s; s = s->next)
            bus_cluster_dial(b, s);
        bus_peers_cluster(b);
    }
    nng_msg_free(ci->msg);
    free(ci);
}

static void bus_cluster_drop(struct bus_item *it)
{
    struct bus_cluster_item *ci = (struct bus_cluster_item *)it;
    nng_msg_free(ci->msg);
    free(ci);
}

void bus_cluster_event(struct bus *b, nng_msg *m)
{
    struct bus_cluster_item *ci = xcalloc(1, sizeof(*ci));
    ci->item.run = bus_cluster_run;
    ci->item.drop = bus_cluster_drop;
    ci->bus = b;
    ci->msg = m;
    bus_queue_push(b, &ci->item);
}
