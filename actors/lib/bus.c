/*
 * bus.c - the bus core: the owner's completion queue, request servers and
 * peers (see bus.h). Events live in bus_event.c, the tap in bus_tap.c and
 * fault injection in bus_fault.c.
 *
 * Every nng aio callback here runs on an nng thread and touches only its
 * own context; anything for the owner goes through bus_queue_push().
 */
#include "bus_int.h"
#include "pmetrics.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "clock.h"
#include "ids.h"
#include "log.h"
#include "mem.h"
#include "msg.h"

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
    (void)b;
    snprintf(list, sizeof(list), "%s", urls);
    for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ')
            u++;
        if (*u == '\0')
            continue;
        int rv = nng_dial(s, u, NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            LOG_ERROR("bus.dial_failed", "cannot dial %s at %s: %s", what, u, nng_strerror(rv));
            return bus_nng_err(rv);
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

static void bus_trace_fill(char *out)
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

static void bus_servers_close(struct bus *b);
static void bus_peers_close(struct bus *b);
static void bus_peers_free(struct bus *b);

void bus_close(struct bus *b)
{
    if (!b)
        return;
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
    bus_tap_close(b);
    if (b->efd >= 0)
        close(b->efd);
    if (b->qmtx)
        nng_mtx_free(b->qmtx);
    if (b->fmtx)
        nng_mtx_free(b->fmtx);
    free(b);
}

/* ---- servers ---- */

enum bus_sctx_state {
    SCTX_RECV,   /* waiting for a request */
    SCTX_DELAY,  /* a fault delays this request */
    SCTX_OWNER,  /* queued for or held by the handler */
    SCTX_SEND,   /* the reply is being sent */
};

struct bus_req {
    struct bus_item item;
    struct bus_sctx *sc; /* NULL for a fault duplicate, whose reply is discarded */
    struct bus *bus;
    struct bus_server *srv;
    nng_msg *msg;
    struct envelope env;
    uint64_t started_us; /* when its handler was called, for the figures (pmetrics.h) */
    bool hold;     /* bus_req_hold: the reply is built and kept, not sent */
    nng_msg *held; /* the reply kept (its envelope in held_env) */
    struct envelope held_env;
};

struct bus_sctx {
    struct bus_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    enum bus_sctx_state state;
    struct bus_req req;
};

struct bus_server {
    struct bus_server *next;
    struct bus *bus;
    nng_socket sock;
    bus_handler_fn fn;
    void *arg;
    unsigned n;
    struct bus_sctx *ctxs;
};

static void bus_sctx_recv(struct bus_sctx *sc)
{
    sc->state = SCTX_RECV;
    sc->req.hold = false;
    sc->req.held = NULL;
    nng_aio_set_timeout(sc->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(sc->ctx, sc->aio);
}

static void bus_req_run(struct bus_item *it)
{
    struct bus_req *r = (struct bus_req *)it;
    uint64_t now = clock_wall_ms();

    /* The caller gave up while this waited in the queue: do no work for nobody. */
    if (r->env.deadline_ms && r->env.deadline_ms < now) {
        LOG_DEBUG("bus.expired", "dropping %s request %" PRIx64 " from %s: deadline passed %" PRIu64
                                 "ms ago",
                  msg_name(r->env.type), r->env.req_id, r->env.sender, now - r->env.deadline_ms);
        pm_add(pm_seriesf(PM_BUS_DEADLINE_MISSED, "type=\"%s\"", msg_name(r->env.type)), 1);
        nng_msg_free(r->msg);
        r->msg = NULL;
        if (r->sc)
            bus_sctx_recv(r->sc);
        else
            free(r);
        return;
    }
    r->bus->inflight++;
    r->started_us = clock_mono_us();
    log_context_set(r->env.req_id, r->env.trace_id);
    r->srv->fn(r, r->srv->arg);
    log_context_clear();
}

static void bus_req_drop(struct bus_item *it)
{
    struct bus_req *r = (struct bus_req *)it;
    if (r->msg)
        nng_msg_free(r->msg);
    r->msg = NULL;
    if (!r->sc)
        free(r);
}

/* A fault duplicate: the same request handled a second time, its reply thrown away. */
static void bus_req_duplicate(struct bus_sctx *sc)
{
    struct bus_req *d = xcalloc(1, sizeof(*d));
    if (nng_msg_dup(&d->msg, sc->req.msg) != 0 ||
        env_decode(nng_msg_body(d->msg), nng_msg_len(d->msg), &d->env) != OK) {
        if (d->msg)
            nng_msg_free(d->msg);
        free(d);
        return;
    }
    d->bus = sc->srv->bus;
    d->srv = sc->srv;
    d->item.run = bus_req_run;
    d->item.drop = bus_req_drop;
    bus_queue_push(d->bus, &d->item);
}

static void bus_sctx_deliver(struct bus_sctx *sc)
{
    sc->state = SCTX_OWNER;
    bus_queue_push(sc->srv->bus, &sc->req.item);
}

static void bus_sctx_cb(void *arg)
{
    struct bus_sctx *sc = arg;
    struct bus *b = sc->srv->bus;
    int rv = nng_aio_result(sc->aio);
    uint32_t delay = 0;

    switch (sc->state) {
    case SCTX_RECV: {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
            return;
        if (rv != 0) {
            LOG_WARN("bus.recv_failed", "could not receive a request: %s", nng_strerror(rv));
            bus_sctx_recv(sc);
            return;
        }
        nng_msg *m = nng_aio_get_msg(sc->aio);
        sc->req.msg = m;
        if (env_decode(nng_msg_body(m), nng_msg_len(m), &sc->req.env) != OK ||
            sc->req.env.kind != ENV_REQUEST) {
            LOG_WARN("bus.bad_envelope", "dropping a malformed request of %zu bytes",
                     nng_msg_len(m));
            nng_msg_free(m);
            sc->req.msg = NULL;
            bus_sctx_recv(sc);
            return;
        }
        bus_tap_emit(b, "in", sc->req.env.sender, NULL, nng_msg_body(m), nng_msg_len(m));
        if (sc->req.env.attempt > 1)
            pm_add(pm_seriesf(PM_BUS_RESENDS, "type=\"%s\"", msg_name(sc->req.env.type)), 1);
        switch (bus_fault_decide(b, &delay)) {
        case BUS_FAULT_DROP:
            nng_msg_free(m);
            sc->req.msg = NULL;
            bus_sctx_recv(sc);
            return;
        case BUS_FAULT_DELAY:
            sc->state = SCTX_DELAY;
            nng_sleep_aio((nng_duration)delay, sc->aio);
            return;
        case BUS_FAULT_DUP:
            bus_req_duplicate(sc);
            break;
        case BUS_FAULT_PASS:
            break;
        }
        bus_sctx_deliver(sc);
        return;
    }
    case SCTX_DELAY:
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            nng_msg_free(sc->req.msg);
            sc->req.msg = NULL;
            return;
        }
        bus_sctx_deliver(sc);
        return;
    case SCTX_SEND:
        if (rv != 0) {
            nng_msg *m = nng_aio_get_msg(sc->aio);
            if (m)
                nng_msg_free(m); /* after a failed send the message is still ours */
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
                return;
            LOG_DEBUG("bus.reply_failed", "could not send a reply: %s", nng_strerror(rv));
        }
        bus_sctx_recv(sc);
        return;
    case SCTX_OWNER:
        return; /* cannot happen: no aio is armed while the owner holds the request */
    }
}

const struct envelope *bus_req_env(const struct bus_req *req)
{
    return &req->env;
}

/* Sends the reply m (NULL: it could not be built, rc says why) and releases r. */
static err_t bus_req_send(struct bus_req *r, nng_msg *m, err_t rc)
{
    r->bus->inflight--;
    nng_msg_free(r->msg);
    r->msg = NULL;
    r->hold = false;
    r->held = NULL;

    if (!r->sc) { /* a fault duplicate: its reply goes nowhere, but the tap sees it */
        if (m) {
            bus_tap_emit(r->bus, "out", r->env.sender, NULL, nng_msg_body(m), nng_msg_len(m));
            nng_msg_free(m);
        }
        free(r);
        return rc;
    }
    struct bus_sctx *sc = r->sc;
    if (rc != OK) {
        LOG_ERROR("bus.reply_failed", "could not encode a reply: %s", err_str(rc));
        bus_sctx_recv(sc); /* the caller will time out */
        return rc;
    }
    bus_tap_emit(r->bus, "out", r->env.sender, NULL, nng_msg_body(m), nng_msg_len(m));
    sc->state = SCTX_SEND;
    nng_aio_set_msg(sc->aio, m);
    nng_aio_set_timeout(sc->aio, r->bus->timeout_ms);
    nng_ctx_send(sc->ctx, sc->aio);
    return OK;
}

/* The request's figures (pmetrics.h): its outcome and how long its handler took. */
static void bus_req_count(const struct bus_req *r, const char *outcome)
{
    const char *type = msg_name(r->env.type);
    uint64_t now = clock_mono_us();
    pm_add(pm_seriesf(PM_BUS_REQUESTS, "type=\"%s\",outcome=\"%s\"", type, outcome), 1);
    pm_observe_us(pm_seriesf(PM_BUS_DURATION, "type=\"%s\"", type),
                  now > r->started_us ? now - r->started_us : 0);
}

static err_t bus_req_finish(struct bus_req *r, uint8_t kind, err_t code, const char *emsg,
                            const void *body, size_t n)
{
    struct envelope env = r->env;
    nng_msg *m = NULL;
    err_t rc;

    env.kind = kind;
    env.err_code = code;
    env.err_msg = emsg ? (struct slice){emsg, strnlen(emsg, ENV_ERRMSG_MAX)} : SLICE_NULL;
    bus_req_count(r, kind == ENV_REPLY ? "ok" : err_name(code));
    memcpy(env.sender, r->bus->self, sizeof(env.sender));
    rc = bus_msg_build(&env, NULL, body, n, &m);
    if (r->hold && !r->held && rc == OK &&
        env_decode(nng_msg_body(m), nng_msg_len(m), &r->held_env) == OK) {
        r->held = m; /* kept for bus_req_release; the request stays valid until then */
        return OK;
    }
    return bus_req_send(r, m, rc);
}

void bus_req_hold(struct bus_req *req)
{
    req->hold = true;
}

const struct envelope *bus_req_held(const struct bus_req *req)
{
    return req->held ? &req->held_env : NULL;
}

err_t bus_req_release(struct bus_req *req)
{
    nng_msg *m = req->held;
    if (!m)
        return ERR_INVAL;
    return bus_req_send(req, m, OK);
}

err_t bus_req_release_err(struct bus_req *req, err_t code, const char *msg)
{
    if (req->held)
        nng_msg_free(req->held);
    req->held = NULL;
    req->hold = false;
    return bus_reply_err(req, code, msg);
}

err_t bus_reply(struct bus_req *req, const void *body, size_t n)
{
    return bus_req_finish(req, ENV_REPLY, OK, NULL, body, n);
}

err_t bus_reply_err(struct bus_req *req, err_t code, const char *msg)
{
    if (code == OK)
        code = ERR_INTERNAL;
    return bus_req_finish(req, ENV_ERROR, code, msg ? msg : err_str(code), NULL, 0);
}

err_t bus_serve(struct bus *b, const char *url, bus_handler_fn fn, void *arg,
                struct bus_server **out)
{
    struct bus_server *s = xcalloc(1, sizeof(*s));
    char list[BUS_URL_MAX * 4];
    char *save = NULL;
    int rv;

    s->bus = b;
    s->fn = fn;
    s->arg = arg;
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        LOG_ERROR("bus.listen_failed", "could not open a reply socket: %s", nng_strerror(rv));
        free(s);
        return bus_nng_err(rv);
    }
    bus_socket_tune(b, s->sock);
    snprintf(list, sizeof(list), "%s", url);
    for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        if ((rv = nng_listen(s->sock, u, NULL, 0)) != 0) {
            LOG_ERROR("bus.listen_failed", "could not listen on %s: %s", u, nng_strerror(rv));
            nng_close(s->sock);
            free(s);
            return bus_nng_err(rv);
        }
    }
    s->n = b->ctx_per_server;
    s->ctxs = xcalloc(s->n, sizeof(*s->ctxs));
    for (unsigned i = 0; i < s->n; i++) {
        struct bus_sctx *sc = &s->ctxs[i];
        sc->srv = s;
        sc->req.sc = sc;
        sc->req.bus = b;
        sc->req.srv = s;
        sc->req.item.run = bus_req_run;
        sc->req.item.drop = bus_req_drop;
        if ((rv = nng_ctx_open(&sc->ctx, s->sock)) != 0 ||
            (rv = nng_aio_alloc(&sc->aio, bus_sctx_cb, sc)) != 0) {
            LOG_ERROR("bus.listen_failed", "could not open a context: %s", nng_strerror(rv));
            s->n = i + (sc->aio ? 1 : 0);
            s->next = b->servers;
            b->servers = s;
            return bus_nng_err(rv);
        }
    }
    for (unsigned i = 0; i < s->n; i++)
        bus_sctx_recv(&s->ctxs[i]);
    s->next = b->servers;
    b->servers = s;
    if (out)
        *out = s;
    return OK;
}

static void bus_servers_close(struct bus *b)
{
    struct bus_server *s = b->servers;
    while (s) {
        struct bus_server *next = s->next;
        nng_close(s->sock);
        for (unsigned i = 0; i < s->n; i++) {
            if (s->ctxs[i].aio) {
                nng_aio_stop(s->ctxs[i].aio);
                nng_aio_free(s->ctxs[i].aio);
            }
            /* a request the owner still holds is freed here; it never replies after close */
            if (s->ctxs[i].state == SCTX_OWNER && s->ctxs[i].req.msg)
                nng_msg_free(s->ctxs[i].req.msg);
            if (s->ctxs[i].state == SCTX_OWNER && s->ctxs[i].req.held)
                nng_msg_free(s->ctxs[i].req.held);
            s->ctxs[i].req.msg = NULL;
            s->ctxs[i].req.held = NULL;
        }
        free(s->ctxs);
        free(s);
        s = next;
    }
    b->servers = NULL;
}

/* ---- peers and calls ---- */

struct bus_peer {
    struct bus_peer *next;
    struct bus *bus;
    char name[BUS_NAME_MAX];
    nng_socket sock;
    nng_mtx *mtx;            /* guards calls */
    struct bus_call *calls;  /* live calls, so bus_close can stop them */
};

enum bus_call_state {
    CALL_DELAYED, /* a fault holds the request back */
    CALL_DROPPED, /* a fault dropped it: wait out the deadline */
    CALL_SEND,
    CALL_RECV,
    CALL_DONE,
};

struct bus_call {
    struct bus_item item;
    struct bus_call *prev, *next;
    struct bus_peer *peer;
    nng_ctx ctx;
    nng_aio *aio;
    enum bus_call_state state;
    bus_reply_fn cb;
    void *arg;
    nng_msg *req;       /* a copy of the request, kept for a re-send */
    nng_msg *reply;
    struct envelope env;
    err_t rc;
    uint64_t deadline_mono;
    uint32_t attempt;
};

static void bus_call_unlink(struct bus_call *c)
{
    struct bus_peer *p = c->peer;
    nng_mtx_lock(p->mtx);
    if (c->prev)
        c->prev->next = c->next;
    else if (p->calls == c)
        p->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    nng_mtx_unlock(p->mtx);
}

static void bus_call_free(struct bus_call *c)
{
    bus_call_unlink(c);
    if (c->aio) {
        nng_aio_stop(c->aio);
        nng_aio_free(c->aio);
    }
    nng_ctx_close(c->ctx);
    if (c->req)
        nng_msg_free(c->req);
    if (c->reply)
        nng_msg_free(c->reply);
    free(c);
}

static void bus_call_run(struct bus_item *it)
{
    struct bus_call *c = (struct bus_call *)it;
    c->cb(c->arg, c->rc, c->reply ? &c->env : NULL);
    bus_call_free(c);
}

static void bus_call_drop(struct bus_item *it)
{
    bus_call_free((struct bus_call *)it);
}

static void bus_call_complete(struct bus_call *c, err_t rc)
{
    c->state = CALL_DONE;
    c->rc = rc;
    bus_queue_push(c->peer->bus, &c->item);
}

static int32_t bus_call_left(const struct bus_call *c)
{
    uint64_t now = clock_mono_ms();
    return c->deadline_mono > now ? (int32_t)(c->deadline_mono - now) : 0;
}

static void bus_call_send(struct bus_call *c)
{
    nng_msg *m;
    int32_t left = bus_call_left(c);
    if (left <= 0) {
        bus_call_complete(c, ERR_TIMEOUT);
        return;
    }
    if (nng_msg_dup(&m, c->req) != 0) {
        bus_call_complete(c, ERR_NOMEM);
        return;
    }
    bus_tap_emit(c->peer->bus, "out", c->peer->name, NULL, nng_msg_body(m), nng_msg_len(m));
    c->state = CALL_SEND;
    nng_aio_set_msg(c->aio, m);
    nng_aio_set_timeout(c->aio, left);
    nng_ctx_send(c->ctx, c->aio);
}

/* Rewrites the attempt field of the stored request for a re-send. */
static err_t bus_call_bump_attempt(struct bus_call *c)
{
    struct envelope env;
    nng_msg *m;
    struct slice body;
    if (env_decode(nng_msg_body(c->req), nng_msg_len(c->req), &env) != OK)
        return ERR_INTERNAL;
    body = env.body;
    env.attempt = ++c->attempt;
    if (bus_msg_build(&env, NULL, body.p, body.n, &m) != OK)
        return ERR_NOMEM;
    nng_msg_free(c->req);
    c->req = m;
    return OK;
}

static void bus_call_cb(void *arg)
{
    struct bus_call *c = arg;
    int rv = nng_aio_result(c->aio);

    switch (c->state) {
    case CALL_DELAYED:
        if (rv == NNG_ECANCELED || rv == NNG_ECLOSED) {
            bus_call_complete(c, ERR_CLOSED);
            return;
        }
        bus_call_send(c);
        return;
    case CALL_DROPPED:
        bus_call_complete(c, rv == NNG_ECANCELED || rv == NNG_ECLOSED ? ERR_CLOSED : ERR_TIMEOUT);
        return;
    case CALL_SEND:
        if (rv != 0) {
            nng_msg *m = nng_aio_get_msg(c->aio);
            if (m)
                nng_msg_free(m);
            bus_call_complete(c, bus_nng_err(rv));
            return;
        }
        c->state = CALL_RECV;
        nng_aio_set_timeout(c->aio, bus_call_left(c) > 0 ? bus_call_left(c) : 1);
        nng_ctx_recv(c->ctx, c->aio);
        return;
    case CALL_RECV: {
        if (rv == NNG_ECONNRESET && bus_call_left(c) > 0 && bus_call_bump_attempt(c) == OK) {
            /* the instance holding our request died: send it again, to whoever is there */
            LOG_DEBUG("bus.resend", "re-sending to %s (attempt %u)", c->peer->name, c->attempt);
            bus_call_send(c);
            return;
        }
        if (rv != 0) {
            bus_call_complete(c, bus_nng_err(rv));
            return;
        }
        nng_msg *m = nng_aio_get_msg(c->aio);
        if (env_decode(nng_msg_body(m), nng_msg_len(m), &c->env) != OK ||
            (c->env.kind != ENV_REPLY && c->env.kind != ENV_ERROR)) {
            LOG_WARN("bus.bad_envelope", "malformed reply of %zu bytes from %s", nng_msg_len(m),
                     c->peer->name);
            nng_msg_free(m);
            bus_call_complete(c, ERR_PROTO);
            return;
        }
        bus_tap_emit(c->peer->bus, "in", c->peer->name, NULL, nng_msg_body(m), nng_msg_len(m));
        c->reply = m;
        bus_call_complete(c, c->env.kind == ENV_ERROR ? c->env.err_code : OK);
        return;
    }
    case CALL_DONE:
        return;
    }
}

err_t bus_peer_open(struct bus *b, const char *name, const char *urls, struct bus_peer **out)
{
    struct bus_peer *p = xcalloc(1, sizeof(*p));
    int rv;
    err_t rc;

    p->bus = b;
    snprintf(p->name, sizeof(p->name), "%s", name);
    if ((rv = nng_mtx_alloc(&p->mtx)) != 0) {
        free(p);
        return bus_nng_err(rv);
    }
    if ((rv = nng_req0_open(&p->sock)) != 0) {
        LOG_ERROR("bus.peer_failed", "could not open a request socket: %s", nng_strerror(rv));
        nng_mtx_free(p->mtx);
        free(p);
        return bus_nng_err(rv);
    }
    bus_socket_tune(b, p->sock);
    /* nng's own timed re-send is off: we re-send ourselves, counting attempts */
    (void)nng_socket_set_ms(p->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if ((rc = bus_dial_all(b, p->sock, urls, name)) != OK) {
        nng_close(p->sock);
        nng_mtx_free(p->mtx);
        free(p);
        return rc;
    }
    p->next = b->peers;
    b->peers = p;
    *out = p;
    return OK;
}

err_t bus_peer_open_actor(struct bus *b, const char *actor, struct bus_peer **out)
{
    char urls[BUS_URL_MAX * 8];
    bus_actor_peers(b, actor, urls, sizeof(urls));
    return bus_peer_open(b, actor, urls, out);
}

static err_t bus_call_prepare(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                              const struct bus_trace *trace, uint32_t timeout_ms,
                              struct bus_call **out)
{
    struct bus *b = p->bus;
    struct bus_call *c = xcalloc(1, sizeof(*c));
    struct envelope env = {0};
    uint32_t tmo = timeout_ms ? timeout_ms : (trace && trace->timeout_ms ? trace->timeout_ms
                                                                         : b->timeout_ms);
    int rv;
    err_t rc;

    env.kind = ENV_REQUEST;
    env.type = type;
    env.req_id = atomic_fetch_add(&b->next_req_id, 1);
    if (trace && trace->trace_id[0])
        snprintf(env.trace_id, sizeof(env.trace_id), "%s", trace->trace_id);
    else
        bus_trace_fill(env.trace_id);
    memcpy(env.sender, b->self, sizeof(env.sender));
    env.deadline_ms = clock_wall_ms() + tmo;
    env.attempt = 1;
    env.origin = b->origin;
    if ((rc = bus_msg_build(&env, NULL, body, n, &c->req)) != OK) {
        free(c);
        return rc;
    }
    if ((rv = nng_ctx_open(&c->ctx, p->sock)) != 0) {
        nng_msg_free(c->req);
        free(c);
        return bus_nng_err(rv);
    }
    c->peer = p;
    c->attempt = 1;
    c->deadline_mono = clock_mono_ms() + tmo;
    c->item.run = bus_call_run;
    c->item.drop = bus_call_drop;
    *out = c;
    return OK;
}

static void bus_call_ignore(void *arg, err_t rc, const struct envelope *env)
{
    (void)arg;
    (void)rc;
    (void)env;
}

/* Sends a copy of c's request as a call of its own, its reply ignored (a fault duplicate). */
static void bus_call_twin(const struct bus_call *c)
{
    struct bus_peer *p = c->peer;
    struct bus_call *d = xcalloc(1, sizeof(*d));
    if (nng_msg_dup(&d->req, c->req) != 0) {
        free(d);
        return;
    }
    if (nng_ctx_open(&d->ctx, p->sock) != 0) {
        nng_msg_free(d->req);
        free(d);
        return;
    }
    if (nng_aio_alloc(&d->aio, bus_call_cb, d) != 0) {
        nng_ctx_close(d->ctx);
        nng_msg_free(d->req);
        free(d);
        return;
    }
    d->peer = p;
    d->attempt = c->attempt;
    d->deadline_mono = c->deadline_mono;
    d->cb = bus_call_ignore;
    d->item.run = bus_call_run;
    d->item.drop = bus_call_drop;
    nng_mtx_lock(p->mtx);
    d->next = p->calls;
    if (p->calls)
        p->calls->prev = d;
    p->calls = d;
    nng_mtx_unlock(p->mtx);
    bus_call_send(d);
}

static err_t bus_call_start(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                            const struct bus_trace *trace, bus_reply_fn cb, void *arg,
                            bool faults)
{
    struct bus_call *c;
    uint32_t delay = 0;
    int rv;
    err_t rc = bus_call_prepare(p, type, body, n, trace, 0, &c);
    if (rc != OK)
        return rc;
    if ((rv = nng_aio_alloc(&c->aio, bus_call_cb, c)) != 0) {
        nng_ctx_close(c->ctx);
        nng_msg_free(c->req);
        free(c);
        return bus_nng_err(rv);
    }
    c->cb = cb;
    c->arg = arg;
    nng_mtx_lock(p->mtx);
    c->next = p->calls;
    if (p->calls)
        p->calls->prev = c;
    p->calls = c;
    nng_mtx_unlock(p->mtx);

    switch (faults ? bus_fault_decide(p->bus, &delay) : BUS_FAULT_PASS) {
    case BUS_FAULT_DROP:
        c->state = CALL_DROPPED;
        nng_sleep_aio(bus_call_left(c), c->aio);
        break;
    case BUS_FAULT_DELAY:
        c->state = CALL_DELAYED;
        nng_sleep_aio((nng_duration)delay, c->aio);
        break;
    case BUS_FAULT_DUP:
        /* the duplicate is the same request (same req_id and origin, as a network would
         * duplicate it), travelling as a call of its own whose reply is ignored */
        bus_call_twin(c);
        bus_call_send(c);
        break;
    case BUS_FAULT_PASS:
        bus_call_send(c);
        break;
    }
    return OK;
}

err_t bus_call(struct bus_peer *p, uint16_t type, const void *body, size_t n,
               const struct bus_trace *trace, bus_reply_fn cb, void *arg)
{
    return bus_call_start(p, type, body, n, trace, cb, arg, true);
}

/* One blocking send or receive on the call's context. */
static int bus_call_wait(struct bus_call *c, nng_aio *aio, bool send)
{
    nng_aio_set_timeout(aio, bus_call_left(c) > 0 ? bus_call_left(c) : 1);
    if (send)
        nng_ctx_send(c->ctx, aio);
    else
        nng_ctx_recv(c->ctx, aio);
    nng_aio_wait(aio);
    return nng_aio_result(aio);
}

err_t bus_call_sync(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                    uint32_t timeout_ms, struct bus_msg *reply)
{
    struct bus_call *c;
    nng_aio *aio = NULL;
    nng_msg *m = NULL;
    int rv;
    err_t rc = bus_call_prepare(p, type, body, n, NULL, timeout_ms, &c);

    memset(reply, 0, sizeof(*reply));
    if (rc != OK)
        return rc;
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
        goto out;
    do {
        if (bus_call_left(c) <= 0) {
            rv = NNG_ETIMEDOUT;
            break;
        }
        if ((rv = nng_msg_dup(&m, c->req)) != 0)
            break;
        bus_tap_emit(p->bus, "out", p->name, NULL, nng_msg_body(m), nng_msg_len(m));
        nng_aio_set_msg(aio, m);
        if ((rv = bus_call_wait(c, aio, true)) != 0) {
            nng_msg_free(m);
            break;
        }
        rv = bus_call_wait(c, aio, false);
    } while (rv == NNG_ECONNRESET && bus_call_bump_attempt(c) == OK);

out:
    if (rv == 0) {
        m = nng_aio_get_msg(aio);
        if (env_decode(nng_msg_body(m), nng_msg_len(m), &reply->env) != OK ||
            (reply->env.kind != ENV_REPLY && reply->env.kind != ENV_ERROR)) {
            nng_msg_free(m);
            memset(reply, 0, sizeof(*reply));
            rc = ERR_PROTO;
        } else {
            bus_tap_emit(p->bus, "in", p->name, NULL, nng_msg_body(m), nng_msg_len(m));
            reply->_nng = m;
            rc = reply->env.kind == ENV_ERROR ? reply->env.err_code : OK;
        }
    } else {
        rc = bus_nng_err(rv);
    }
    if (aio)
        nng_aio_free(aio);
    nng_ctx_close(c->ctx);
    nng_msg_free(c->req);
    free(c);
    return rc;
}

void bus_msg_free(struct bus_msg *m)
{
    if (m && m->_nng)
        nng_msg_free(m->_nng);
    if (m)
        m->_nng = NULL;
}

static void bus_peers_close(struct bus *b)
{
    struct bus_peer *p = b->peers;
    while (p) {
        struct bus_peer *next = p->next;
        nng_close(p->sock);
        /* stop every live call; their completions land in the queue and are dropped there */
        nng_mtx_lock(p->mtx);
        struct bus_call *c = p->calls;
        nng_mtx_unlock(p->mtx);
        for (; c; c = c->next)
            nng_aio_stop(c->aio);
        p = next;
    }
    /* free the peers only after bus_close drained the queue of their calls */
}

static void bus_peers_free(struct bus *b)
{
    struct bus_peer *p = b->peers;
    while (p) {
        struct bus_peer *next = p->next;
        nng_mtx_free(p->mtx);
        free(p);
        p = next;
    }
    b->peers = NULL;
}
