/*
 * healthz.c - GET /healthz: a bus round trip to every actor.
 *
 * 200 when every actor answers "up" within TETHER_GW_HEALTH_TIMEOUT, 503
 * naming the ones that did not. The pings go out at once, in parallel; the
 * answer is built when the last one returns. If the client leaves first,
 * the replies are still collected (the bus calls own `hz`), then dropped.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "feed.h"
#include "gw.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"

const char *const gw_actor_names[GW_NPEERS] = {
    "session-manager", "run-manager",           "stream-broker",
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
    h2o_req_t *req;        /* NULL once the client is gone */
    struct hz_ref *ref;    /* in req's pool; valid while req is */
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

static void hz_str(const struct envelope *env, const char *key, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    out[0] = '\0';
    if (env->body.n && mp_map_find(env->body.p, env->body.n, key, &v) == OK &&
        mp_read_str(&v, &s) == OK)
        (void)slice_copy(s, out, cap);
}

static uint64_t hz_uint(const struct envelope *env, const char *key)
{
    struct mp_reader v;
    uint64_t u = 0;
    if (env->body.n && mp_map_find(env->body.p, env->body.n, key, &v) == OK)
        (void)mp_read_uint(&v, &u);
    return u;
}

static void hz_finish(struct hz *hz)
{
    char body[4096];
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
        bool up = r->rc == OK && strcmp(r->state, "up") == 0;
        all_up &= up;
        if (r->rc == OK)
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
        if (r->rc == OK && strcmp(r->state, "up") == 0)
            continue;
        o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"%s\"", first ? "" : ",",
                              gw_actor_names[i]);
        first = 0;
        if (o >= sizeof(body))
            o = sizeof(body) - 1;
    }
    o += (size_t)snprintf(body + o, sizeof(body) - o,
                          "],\"gateway\":{\"pid\":%ld,\"uptime_ms\":%" PRIu64
                          ",\"feeds\":%u},\"status\":\"%s\"}",
                          (long)getpid(), clock_mono_ms() - gw->started_mono, gw_feeds_count(gw),
                          all_up ? "ok" : "degraded");
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
    if (rc == OK && env) {
        hz_str(env, "state", r->state, sizeof(r->state));
        hz_str(env, "store", r->store, sizeof(r->store));
        hz_str(env, "name", r->name, sizeof(r->name));
        r->pid = hz_uint(env, "pid");
        r->uptime_ms = hz_uint(env, "uptime_ms");
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
    for (unsigned i = 0; i < GW_NACTORS; i++) {
        struct hz_call *call = xmalloc(sizeof(*call));
        call->hz = hz;
        call->idx = i;
        err_t rc = bus_call(gw->actors[i], MSG_HEALTH_PING, NULL, 0, &trace, hz_on_reply, call);
        if (rc != OK) /* the callback will not run: account for it here */
            hz_on_reply(call, rc, NULL);
    }
    return 0;
}
