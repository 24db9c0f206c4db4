/*
 * bus.c - the bus core: open and close, the owner's completion queue and
 * its dispatch, actor URLs and the helpers the bus modules share (see bus.h).
 * Request servers live in bus_serve.c, peers and calls in bus_call.c, events
 * in bus_event.c, the tap in bus_tap.c and fault injection in bus_fault.c.
 *
 * Every nng aio callback here runs on an nng thread and touches only its
 * own context; anything for the owner goes through bus_queue_push().
 */
#include "bus_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "ids.h"
#include "log.h"
#include "mem.h"

/* ---- shared helpers ---- */

err_t bus_nng_err(int rv)
{
    switch (rv) {
    case 0:
        return OK;
    case NNG_ENOMEM:
        return ERR_NOMEM;
    case NNG_ETIMEDOUT:
        return ERR_TIMEOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return ERR_CLOSED;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
        return ERR_INVAL;
    case NNG_EMSGSIZE:
        return ERR_TOOBIG;
    case NNG_ECONNREFUSED:
    case NNG_ECONNRESET:
    case NNG_ECONNSHUT:
    case NNG_EADDRINUSE:
        return ERR_UNAVAIL;
    case NNG_EPROTO:
        return ERR_PROTO;
    default:
        return ERR_INTERNAL;
    }
}

void bus_socket_tune(struct bus *b, nng_socket s)
{
    /* Return codes ignored on purpose: an option a socket type lacks is harmless. */
    (void)nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, b->recv_max);
    (void)nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 10);
    /* a restarted peer is back within ~100 ms; redialing an ipc path that often is cheap */
    (void)nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 100);
}

err_t bus_dial_all(struct bus *b, nng_socket s, const char *urls, const char *what)
{
    char list[BUS_URL_MAX * 8];
    char *save = NULL;
    int dialed = 0;
    snprintf(list, sizeof(list), "%s", urls);
    for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ')
            u++;
        if (*u == '\0')
            continue;
        err_t rc = bus_dial(b, s, u, NULL);
        if (rc != OK) {
            LOG_ERROR("bus.dial_failed", "cannot dial %s at %s: %s", what, u, err_str(rc));
            return rc;
        }
        dialed++;
    }
    if (dialed == 0) {
        LOG_ERROR("bus.dial_failed", "no endpoint to dial for %s", what);
        return ERR_INVAL;
    }
    return OK;
}

err_t bus_msg_build(const struct envelope *env, const char *topic, const void *body, size_t n,
                    nng_msg **out)
{
    struct mp_writer w;
    struct envelope e = *env;
    nng_msg *m;
    err_t rc;
    int rv;

    e.body = (struct slice){body, body ? n : 0};
    mp_writer_init(&w);
    if (topic)
        mp_put_raw(&w, topic, strlen(topic) + 1); /* "<topic>\0" then the envelope */
    rc = env_encode(&w, &e);
    if (rc != OK) {
        mp_writer_fini(&w);
        return rc;
    }
    rv = nng_msg_alloc(&m, 0);
    if (rv == 0)
        rv = nng_msg_append(m, mp_writer_data(&w), mp_writer_len(&w));
    mp_writer_fini(&w);
    if (rv != 0) {
        if (m)
            nng_msg_free(m);
        return bus_nng_err(rv);
    }
    *out = m;
    return OK;
}

void bus_trace_fill(char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < ENV_TRACE_LEN; i += 8) {
        uint32_t r = nng_random();
        for (int j = 0; j < 8; j++, r >>= 4)
            out[i + j] = hex[r & 15];
    }
    out[ENV_TRACE_LEN] = '\0';
    if (!env_trace_valid(out, ENV_TRACE_LEN))
        out[0] = '1'; /* all zero is not a valid trace id */
}

void bus_trace_new(struct bus_trace *trace)
{
    bus_trace_fill(trace->trace_id);
}

bool bus_trace_from_traceparent(struct bus_trace *trace, const char *v, size_t n)
{
    /* version "00", then the trace id; later versions keep the same prefix layout */
    if (n < 55 || v[2] != '-' || v[35] != '-' || !env_trace_valid(v + 3, ENV_TRACE_LEN))
        return false;
    memcpy(trace->trace_id, v + 3, ENV_TRACE_LEN);
    trace->trace_id[ENV_TRACE_LEN] = '\0';
    return true;
}

/* ---- the owner's queue ---- */

void bus_queue_push(struct bus *b, struct bus_item *it)
{
    bool was_empty;
    it->next = NULL;
    nng_mtx_lock(b->qmtx);
    was_empty = b->qhead == NULL;
    if (b->qtail)
        b->qtail->next = it;
    else
        b->qhead = it;
    b->qtail = it;
    nng_mtx_unlock(b->qmtx);
    if (was_empty) {
        uint64_t one = 1;
        (void)!write(b->efd, &one, sizeof(one));
    }
}

static struct bus_item *bus_queue_take_all(struct bus *b)
{
    struct bus_item *all;
    uint64_t v;
    nng_mtx_lock(b->qmtx);
    all = b->qhead;
    b->qhead = b->qtail = NULL;
    /* reset the eventfd under the lock so a push after this re-arms it */
    (void)!read(b->efd, &v, sizeof(v));
    nng_mtx_unlock(b->qmtx);
    return all;
}

void bus_dispatch(struct bus *b)
{
    struct bus_item *it = bus_queue_take_all(b);
    while (it) {
        struct bus_item *next = it->next;
        it->run(it);
        it = next;
    }
}

int bus_fd(const struct bus *b)
{
    return b->efd;
}

const char *bus_proc(const struct bus *b)
{
    return b->proc;
}

unsigned bus_inflight(const struct bus *b)
{
    return b->inflight;
}

void bus_actor_url(const struct bus *b, const char *actor, unsigned instance, char *out,
                   size_t cap)
{
    snprintf(out, cap, "ipc://%s/%s.%u.ipc", b->dir, actor, instance);
}

void bus_actor_peers(const struct bus *b, const char *actor, char *out, size_t cap)
{
    char var[96] = "TETHER_BUS_PEERS_";
    size_t o = strlen(var);
    for (const char *p = actor; *p && o + 1 < sizeof(var); p++)
        var[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    var[o] = '\0';
    const char *env = getenv(var);
    if (env && *env)
        snprintf(out, cap, "%s", env);
    else
        bus_actor_url(b, actor, 0, out, cap);
}

void bus_actor_events_urls(const struct bus *b, const char *actor, char *out, size_t cap)
{
    char peers[BUS_URL_MAX * 8], prefix[64], *save = NULL;
    size_t o = 0, pl;
    snprintf(prefix, sizeof(prefix), "%s.", actor);
    pl = strlen(prefix);
    bus_actor_peers(b, actor, peers, sizeof(peers));
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

/* ---- lifecycle ---- */

err_t bus_open(struct bus **out, const struct bus_opts *opts)
{
    struct bus *b = xcalloc(1, sizeof(*b));
    int rv;

    snprintf(b->proc, sizeof(b->proc), "%.31s", opts->proc);
    if (opts->self && *opts->self)
        snprintf(b->self, sizeof(b->self), "%.44s", opts->self);
    else
        snprintf(b->self, sizeof(b->self), "%.31s", opts->proc);
    b->instance = opts->instance;
    snprintf(b->dir, sizeof(b->dir), "%s", opts->dir);
    b->recv_max = opts->recv_max;
    b->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 5000;
    b->ctx_per_server = opts->inflight ? opts->inflight : 16;
    atomic_init(&b->next_req_id, ((uint64_t)nng_random() << 32) | 1);
    /* 64 bits of the kernel's randomness: with req_id, unique across processes and restarts */
    if (random_bytes(&b->origin, sizeof(b->origin)) != OK)
        b->origin = ((uint64_t)nng_random() << 32) ^ nng_random() ^ clock_mono_ms();
    if (b->origin == 0)
        b->origin = 1;
    atomic_init(&b->tap_pipes, 0);
    for (unsigned i = 0; i < BUS_TAP_SLOTS; i++)
        atomic_init(&b->tap_slot[i].raw, NULL);
    atomic_init(&b->tap_ready, NULL);
    atomic_init(&b->tap_raws, 0);
    atomic_init(&b->tap_nready, 0);
    atomic_init(&b->fault_on, false);
    b->efd = -1;

    if ((rv = nng_mtx_alloc(&b->qmtx)) != 0 || (rv = nng_mtx_alloc(&b->fmtx)) != 0) {
        LOG_ERROR("bus.open_failed", "could not allocate a mutex: %s", nng_strerror(rv));
        bus_close(b);
        return bus_nng_err(rv);
    }
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0) {
        LOG_ERROR("bus.open_failed", "could not create an eventfd: %s", strerror(errno));
        bus_close(b);
        return ERR_INTERNAL;
    }
    if (bus_redial_open(b) != OK) {
        bus_close(b);
        return ERR_UNAVAIL;
    }
    if (opts->tap && bus_tap_open(b) != OK) {
        bus_close(b);
        return ERR_UNAVAIL;
    }
    if (opts->follow_faults && bus_fault_follow(b) != OK) {
        bus_close(b);
        return ERR_UNAVAIL;
    }
    const char *env_fault = getenv("TETHER_FAULT");
    if (env_fault && *env_fault) {
        struct bus_fault f;
        if (bus_fault_parse(env_fault, &f) == OK)
            bus_fault_set(b, &f);
        else
            LOG_WARN("bus.fault_invalid", "ignoring TETHER_FAULT=\"%s\"", env_fault);
    }
    *out = b;
    return OK;
}

void bus_close(struct bus *b)
{
    if (!b)
        return;
    bus_redial_stop(b); /* nothing dials anew on a socket that is closing */
    bus_fault_unfollow(b);
    bus_servers_close(b);
    bus_peers_close(b);
    bus_subs_close(b);
    bus_pubs_close(b);
    /* what the sockets' last completions queued is dropped, not delivered */
    if (b->qmtx) {
        struct bus_item *it = bus_queue_take_all(b);
        while (it) {
            struct bus_item *next = it->next;
            it->drop(it);
            it = next;
        }
    }
    bus_peers_free(b);
    free(b->cluster_body);
    bus_tap_close(b);
    bus_redial_free(b);
    if (b->efd >= 0)
        close(b->efd);
    if (b->qmtx)
        nng_mtx_free(b->qmtx);
    if (b->fmtx)
        nng_mtx_free(b->fmtx);
    free(b);
}
