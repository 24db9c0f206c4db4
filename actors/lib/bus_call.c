/*
 * bus_call.c - the client side of the bus: peers (REQ sockets dialled to a
 * server's URLs, bus_peer_open) and calls on them (bus_call, bus_call_sync),
 * with the re-send of a call whose reply did not come. See bus.h.
 *
 * Every nng aio callback here runs on an nng thread and touches only its
 * own context; anything for the owner goes through bus_queue_push().
 */
#include "bus_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/req.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

/* ---- peers and calls ---- */

struct bus_peer {
    struct bus_peer *next;
    struct bus *bus;
    char name[BUS_NAME_MAX];
    nng_socket sock;
    nng_mtx *mtx;           /* guards calls */
    struct bus_call *calls; /* live calls, so bus_close can stop them */
    /* bus_peer_open_leader: the dial to the leader node's instance (owner thread only) */
    bool follow_leader;
    struct bus_dial *remote; /* NULL: no dial to a leader elsewhere */
    char remote_url[BUS_URL_MAX];
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
    nng_msg *req; /* a copy of the request, kept for a re-send */
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

/*
 * Dials the leader's endpoint for p's actor as the view names it, closing the dial to a
 * previous leader. nng's REQ sends only on connected pipes: on a follower the ipc:// dial to
 * the absent local instance never connects, so every call goes to the leader; on the leader
 * there is no remote dial.
 */
static void bus_peer_cluster(struct bus *b, struct bus_peer *p)
{
    char url[BUS_URL_MAX] = "";
    if (!bus_cluster_leader_url(b, p->name, url, sizeof(url)))
        url[0] = '\0';
    if (p->remote && strcmp(url, p->remote_url) == 0)
        return;
    if (p->remote) {
        LOG_INFO("bus.cluster_undial", "no longer calling %s at %s (not the leader now)", p->name,
                 p->remote_url);
        bus_dial_close(b, p->remote);
        p->remote = NULL;
        p->remote_url[0] = '\0';
    }
    if (!url[0])
        return;
    err_t rc = bus_dial(b, p->sock, url, &p->remote);
    if (rc != OK) {
        LOG_WARN("bus.cluster_dial_failed", "cannot call %s on the leader at %s: %s", p->name,
                 url, err_str(rc));
        p->remote = NULL;
        return;
    }
    snprintf(p->remote_url, sizeof(p->remote_url), "%s", url);
    LOG_INFO("bus.cluster_dial", "calling %s on the leader at %s", p->name, url);
}

void bus_peers_cluster(struct bus *b)
{
    for (struct bus_peer *p = b->peers; p; p = p->next)
        if (p->follow_leader)
            bus_peer_cluster(b, p);
}

err_t bus_peer_open_leader(struct bus *b, const char *actor, struct bus_peer **out)
{
    err_t rc = bus_peer_open_actor(b, actor, out);
    if (rc != OK)
        return rc;
    (*out)->follow_leader = true;
    bus_peer_cluster(b, *out);
    return OK;
}

static err_t bus_call_prepare(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                              const struct bus_trace *trace, uint32_t timeout_ms,
                              struct bus_call **out)
{
    struct bus *b = p->bus;
    struct bus_call *c = xcalloc(1, sizeof(*c));
    struct envelope env = {0};
    uint32_t tmo =
        timeout_ms ? timeout_ms : (trace && trace->timeout_ms ? trace->timeout_ms : b->timeout_ms);
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
                            const struct bus_trace *trace, bus_reply_fn cb, void *arg, bool faults)
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

void bus_peers_close(struct bus *b)
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

void bus_peers_free(struct bus *b)
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
