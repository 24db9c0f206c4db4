/*
 * bus_fault.c - run-time fault injection on this process's bus traffic.
 *
 * The supervisor publishes a bus.fault event per process on its event
 * socket (and again every second, so a restarted process catches up); each
 * process applies the one addressed to its own name. While no fault is set
 * the hot path pays one atomic load. The same subscription carries bus.tap,
 * the tap listeners' filters, which bus_tap.c applies, and cluster.members,
 * the nodes of the cluster, which bus_cluster.c keeps and dials.
 */
#include "bus_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/pubsub0/sub.h>

#include "cfg.h"
#include "log.h"
#include "msg.h"
#include "msg_sv.h"

#define BUS_FAULT_TOPIC "bus.fault"
#define BUS_TAP_TOPIC "bus.tap"
#define BUS_CLUSTER_TOPIC "cluster.members"

void bus_supervisor_events_url(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "ipc://%s/supervisor.events.ipc", dir);
}

static bool bus_fault_is_zero(const struct bus_fault *f)
{
    return f->drop <= 0 && f->dup <= 0 && (f->delay_ms == 0 || f->delay_rate <= 0);
}

void bus_fault_set(struct bus *b, const struct bus_fault *f)
{
    nng_mtx_lock(b->fmtx);
    bool changed = memcmp(&b->fault, f, sizeof(*f)) != 0;
    b->fault = *f;
    atomic_store(&b->fault_on, !bus_fault_is_zero(f));
    nng_mtx_unlock(b->fmtx);
    if (changed)
        LOG_INFO("bus.fault_set",
                 "fault injection now drop=%.3f dup=%.3f delay=%ums delay_rate=%.3f", f->drop,
                 f->dup, f->delay_ms, f->delay_rate);
}

void bus_fault_get(struct bus *b, struct bus_fault *f)
{
    nng_mtx_lock(b->fmtx);
    *f = b->fault;
    nng_mtx_unlock(b->fmtx);
}

static double bus_fault_roll(void)
{
    return (double)nng_random() / 4294967296.0;
}

enum bus_fault_action bus_fault_decide(struct bus *b, uint32_t *delay_ms)
{
    struct bus_fault f;
    if (!atomic_load_explicit(&b->fault_on, memory_order_relaxed))
        return BUS_FAULT_PASS;
    bus_fault_get(b, &f);
    if (f.drop > 0 && bus_fault_roll() < f.drop)
        return BUS_FAULT_DROP;
    if (f.delay_ms > 0 && f.delay_rate > 0 && bus_fault_roll() < f.delay_rate) {
        *delay_ms = f.delay_ms;
        return BUS_FAULT_DELAY;
    }
    if (f.dup > 0 && bus_fault_roll() < f.dup)
        return BUS_FAULT_DUP;
    return BUS_FAULT_PASS;
}

static bool bus_fault_fraction(const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= 0 && d <= 1))
        return false;
    *out = d;
    return true;
}

err_t bus_fault_parse(const char *s, struct bus_fault *f)
{
    char buf[256];
    char *save = NULL;
    bool rate_given = false;
    memset(f, 0, sizeof(*f));
    if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
        return ERR_INVAL;
    for (char *tok = strtok_r(buf, " ,", &save); tok; tok = strtok_r(NULL, " ,", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (strcmp(tok, "off") == 0 || strcmp(tok, "none") == 0)
                continue;
            return ERR_INVAL;
        }
        *eq++ = '\0';
        if (strcmp(tok, "drop") == 0) {
            if (!bus_fault_fraction(eq, &f->drop))
                return ERR_INVAL;
        } else if (strcmp(tok, "dup") == 0 || strcmp(tok, "duplicate") == 0) {
            if (!bus_fault_fraction(eq, &f->dup))
                return ERR_INVAL;
        } else if (strcmp(tok, "delay") == 0) {
            long long ms;
            if (!cfg_parse_ms(eq, &ms) || ms > MSG_SV_DELAY_MAX)
                return ERR_INVAL;
            f->delay_ms = (uint32_t)ms;
        } else if (strcmp(tok, "delay_rate") == 0) {
            if (!bus_fault_fraction(eq, &f->delay_rate))
                return ERR_INVAL;
            rate_given = true;
        } else {
            return ERR_INVAL;
        }
    }
    if (f->delay_ms > 0 && !rate_given)
        f->delay_rate = 1.0;
    return OK;
}

/* Applies a bus.fault event if it names this process. Runs on an nng thread. */
static void bus_fault_apply_event(struct bus *b, const struct envelope *env)
{
    struct msg_bus_fault m;
    if (env->type != MSG_BUS_FAULT ||
        msg_decode(&msg_bus_fault_form, env->body.p, env->body.n, &m) != OK)
        return;
    if (!slice_eq(m.target, b->self) && !slice_eq(m.target, b->proc))
        return;
    struct bus_fault f = {
        .drop = m.drop,
        .dup = m.dup,
        .delay_ms = m.delay_ms <= MSG_SV_DELAY_MAX ? (uint32_t)m.delay_ms : 0,
        .delay_rate = m.delay_rate,
    };
    bus_fault_set(b, &f);
}

static void bus_fault_cb(void *arg)
{
    struct bus *b = arg;
    int rv = nng_aio_result(b->fault_aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(b->fault_aio);
        const char *topic;
        const void *eb;
        size_t en;
        struct envelope env;
        if (bus_event_split(nng_msg_body(m), nng_msg_len(m), &topic, &eb, &en) == OK &&
            env_decode(eb, en, &env) == OK) {
            if (env.type == MSG_CLUSTER_MEMBERS) {
                bus_cluster_event(b, m); /* read on the owner's thread: it dials */
                m = NULL;
            } else if (env.type == MSG_BUS_TAP) {
                bus_tap_filters_event(b, &env);
            } else {
                bus_fault_apply_event(b, &env);
            }
        }
        if (m)
            nng_msg_free(m);
    }
    nng_recv_aio(b->fault_sub, b->fault_aio);
}

err_t bus_fault_follow(struct bus *b)
{
    char url[BUS_URL_MAX + 64];
    int rv;

    bus_supervisor_events_url(b->dir, url, sizeof(url));
    if ((rv = nng_sub0_open(&b->fault_sub)) != 0) {
        LOG_ERROR("bus.fault_follow", "could not open a subscriber socket: %s", nng_strerror(rv));
        return bus_nng_err(rv);
    }
    bus_socket_tune(b, b->fault_sub);
    (void)nng_socket_set(b->fault_sub, NNG_OPT_SUB_SUBSCRIBE, BUS_FAULT_TOPIC,
                         sizeof(BUS_FAULT_TOPIC)); /* with the NUL: an exact topic */
    (void)nng_socket_set(b->fault_sub, NNG_OPT_SUB_SUBSCRIBE, BUS_TAP_TOPIC,
                         sizeof(BUS_TAP_TOPIC)); /* the tap listeners' filters */
    (void)nng_socket_set(b->fault_sub, NNG_OPT_SUB_SUBSCRIBE, BUS_CLUSTER_TOPIC,
                         sizeof(BUS_CLUSTER_TOPIC)); /* the nodes, for bus_sub_open_actor */
    err_t rc = (rv = nng_aio_alloc(&b->fault_aio, bus_fault_cb, b)) != 0
                   ? bus_nng_err(rv)
                   : bus_dial(b, b->fault_sub, url, NULL);
    if (rc != OK) {
        LOG_ERROR("bus.fault_follow", "could not follow %s: %s", url, err_str(rc));
        if (b->fault_aio)
            nng_aio_free(b->fault_aio);
        b->fault_aio = NULL;
        nng_close(b->fault_sub);
        return rc;
    }
    b->fault_sub_open = true;
    nng_recv_aio(b->fault_sub, b->fault_aio);
    return OK;
}

void bus_fault_unfollow(struct bus *b)
{
    if (!b->fault_sub_open)
        return;
    nng_close(b->fault_sub);
    nng_aio_stop(b->fault_aio);
    nng_aio_free(b->fault_aio);
    b->fault_aio = NULL;
    b->fault_sub_open = false;
}
