/*
 * healthz.c - GET /healthz: a bus round trip to every actor.
 *
 * 200 when every actor answers "up" within TETHER_GW_HEALTH_TIMEOUT, 503
 * naming the ones that did not. The pings go out at once, in parallel; the
 * answer is built when the last one returns. If the client leaves first,
 * the replies are still collected (the bus calls own `hz`), then dropped.
 *
 * On a node of a cluster that another node leads, the leader-only
 * clickhouse-replicator is not running here by design: it is reported as
 * "standby" without a ping and does not make the node unready, so a load
 * balancer keeps every follower (hz_standby).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "feed.h"
#include "jbuf.h"
#include "gw.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_sv.h"

const char *const gw_actor_names[GW_NPEERS] = {
    "session-manager",    "run-manager",           "stream-broker",
    "waitpoint-registry", "clickhouse-replicator", "supervisor",
};

struct hz_result {
    err_t rc;
    char state[16];
    char store[16];
    uint64_t pid, uptime_ms;
    char name[48];
};

struct hz_ref;

struct hz {
    struct gw *gw;
    h2o_req_t *req;     /* NULL once the client is gone */
    struct hz_ref *ref; /* in req's pool; valid while req is */
    unsigned pending;
    uint64_t started_mono;
    struct hz_result res[GW_NACTORS];
};

struct hz_call {
    struct hz *hz;
    unsigned idx;
};

/* Lives in the request's pool: tells hz when the request goes away. */
struct hz_ref {
    struct hz *hz;
};

static void hz_ref_dispose(void *p)
{
    struct hz_ref *ref = p;
    if (ref->hz)
        ref->hz->req = NULL;
}

/*
 * Whether this node waits on another for the leader-only work: the cluster view names another
 * leader, or lists other nodes while none leads (a failover under way). A node alone keeps the
 * old rule: its replicator must answer.
 */
static bool hz_standby(const struct gw *gw)
{
    const struct bus_cluster *v = bus_cluster_view(gw->bus);
    if (!v->known)
        return false;
    if (v->leader[0])
        return strcmp(v->leader, v->self) != 0;
    return v->n > 1;
}

/* "cluster": the view this node's supervisor last published, null before the first. */
static void hz_cluster_json(const struct gw *gw, struct jbuf *j)
{
    const struct bus_cluster *v = bus_cluster_view(gw->bus);
    if (!v->known) {
        jbuf_puts(j, "null");
        return;
    }
    jbuf_puts(j, "{\"node\":");
    jbuf_str(j, v->self, strlen(v->self), 0);
    jbuf_puts(j, ",\"leader\":");
    if (v->leader[0])
        jbuf_str(j, v->leader, strlen(v->leader), 0);
    else
        jbuf_puts(j, "null");
    jbuf_fmt(j, ",\"view_age_ms\":%" PRIu64 ",\"nodes\":[", clock_mono_ms() - v->seen_mono);
    for (unsigned i = 0; i < v->n; i++) {
        const struct bus_cluster_node *nd = &v->nodes[i];
        jbuf_puts(j, i ? ",{\"node\":" : "{\"node\":");
        jbuf_str(j, nd->node, strlen(nd->node), 0);
        jbuf_puts(j, ",\"addr\":");
        jbuf_str(j, nd->addr, strlen(nd->addr), 0);
        jbuf_fmt(j, ",\"leader\":%s,\"fencing_token\":%" PRIu64 ",\"age_ms\":%" PRIu64 "}",
                 nd->leader ? "true" : "false", nd->fencing_token, nd->age_ms);
    }
    jbuf_puts(j, "]}");
}

static void hz_finish(struct hz *hz)
{
    char body[8192];
    struct jbuf cl = {0};
    size_t o = 0;
    bool all_up = true;
    struct gw *gw = hz->gw;

    gw->inflight--;
    if (!hz->req) {
        free(hz);
        return;
    }
    hz->ref->hz = NULL; /* the pool outlives hz now: its dispose must not reach back */
    o += (size_t)snprintf(body + o, sizeof(body) - o, "{\"actors\":{");
    for (unsigned i = 0; i < GW_NACTORS; i++) {
        struct hz_result *r = &hz->res[i];
        bool up = r->rc == OK && (strcmp(r->state, "up") == 0 || strcmp(r->state, "standby") == 0);
        all_up &= up;
        if (r->rc == OK && strcmp(r->state, "standby") == 0)
            o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"%s\":{\"state\":\"standby\"}",
                                  i ? "," : "", gw_actor_names[i]);
        else if (r->rc == OK)
            o += (size_t)snprintf(body + o, sizeof(body) - o,
                                  "%s\"%s\":{\"state\":\"%s\",\"store\":\"%s\",\"pid\":%" PRIu64
                                  ",\"uptime_ms\":%" PRIu64 "}",
                                  i ? "," : "", gw_actor_names[i], r->state, r->store, r->pid,
                                  r->uptime_ms);
        else
            o += (size_t)snprintf(body + o, sizeof(body) - o,
                                  "%s\"%s\":{\"state\":\"down\",\"error\":\"%s\"}", i ? "," : "",
                                  gw_actor_names[i], err_str(r->rc));
        if (o >= sizeof(body))
            o = sizeof(body) - 1;
    }
    o += (size_t)snprintf(body + o, sizeof(body) - o, "},\"failing\":[");
    for (unsigned i = 0, first = 1; i < GW_NACTORS; i++) {
        struct hz_result *r = &hz->res[i];
        if (r->rc == OK && (strcmp(r->state, "up") == 0 || strcmp(r->state, "standby") == 0))
            continue;
        o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"%s\"", first ? "" : ",",
                              gw_actor_names[i]);
        first = 0;
        if (o >= sizeof(body))
            o = sizeof(body) - 1;
    }
    hz_cluster_json(gw, &cl);
    o += (size_t)snprintf(body + o, sizeof(body) - o,
                          "],\"gateway\":{\"pid\":%ld,\"uptime_ms\":%" PRIu64
                          ",\"feeds\":%u},\"cluster\":%s,\"status\":\"%s\"}",
                          (long)getpid(), clock_mono_ms() - gw->started_mono, gw_feeds_count(gw),
                          cl.err == OK && cl.p ? cl.p : "null", all_up ? "ok" : "degraded");
    jbuf_free(&cl);
    if (o >= sizeof(body))
        o = sizeof(body) - 1;
    gw_send_plain(hz->req, all_up ? 200 : 503, body, o, "/healthz", hz->started_mono, 0);
    free(hz);
}

static void hz_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct hz_call *call = arg;
    struct hz *hz = call->hz;
    struct hz_result *r = &hz->res[call->idx];
    r->rc = rc;
    struct msg_bus_health m;
    if (rc == OK && env && msg_decode(&msg_bus_health_form, env->body.p, env->body.n, &m) == OK) {
        /* r was zeroed: a string too long for its field stays "" */
        (void)slice_copy(m.state, r->state, sizeof(r->state));
        (void)slice_copy(m.store, r->store, sizeof(r->store));
        (void)slice_copy(m.name, r->name, sizeof(r->name));
        r->pid = m.pid;
        r->uptime_ms = m.uptime_ms;
    }
    free(call);
    if (--hz->pending == 0)
        hz_finish(hz);
}

int gw_on_healthz(struct gw *gw, h2o_req_t *req)
{
    struct hz *hz = xcalloc(1, sizeof(*hz));
    struct hz_ref *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), hz_ref_dispose);
    struct bus_trace trace = {.timeout_ms = (uint32_t)gw->gw.health_timeout_ms};
    ssize_t tp = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);

    /* one trace for the whole request: the caller's, or a new one */
    if (tp < 0 || !bus_trace_from_traceparent(&trace, req->headers.entries[tp].value.base,
                                              req->headers.entries[tp].value.len))
        bus_trace_new(&trace);

    ref->hz = hz;
    hz->ref = ref;
    hz->gw = gw;
    hz->req = req;
    hz->pending = GW_NACTORS;
    hz->started_mono = clock_mono_ms();
    gw->inflight++;
    bool standby = hz_standby(gw);
    if (standby) { /* not running here by design: no ping (the others remain, so no finish) */
        snprintf(hz->res[GW_ACTOR_CH_REPLICATOR].state, sizeof(hz->res[0].state), "standby");
        hz->res[GW_ACTOR_CH_REPLICATOR].rc = OK;
        hz->pending--;
    }
    for (unsigned i = 0; i < GW_NACTORS; i++) {
        if (standby && i == GW_ACTOR_CH_REPLICATOR)
            continue;
        struct hz_call *call = xmalloc(sizeof(*call));
        call->hz = hz;
        call->idx = i;
        err_t rc = bus_call(gw->actors[i], MSG_HEALTH_PING, NULL, 0, &trace, hz_on_reply, call);
        if (rc != OK) /* the callback will not run: account for it here */
            hz_on_reply(call, rc, NULL);
    }
    return 0;
}
