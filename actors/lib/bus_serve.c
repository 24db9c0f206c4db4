/*
 * bus_serve.c - the server side of the bus: REP sockets with a pool of
 * contexts per server (bus_serve), the request a handler gets (bus_req_*)
 * and its reply (bus_reply*). See bus.h.
 *
 * Every nng aio callback here runs on an nng thread and touches only its
 * own context; anything for the owner goes through bus_queue_push().
 */
#include "bus_int.h"
#include "pmetrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/rep.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "msg.h"

/* ---- servers ---- */

enum bus_sctx_state {
    SCTX_RECV,  /* waiting for a request */
    SCTX_DELAY, /* a fault delays this request */
    SCTX_OWNER, /* queued for or held by the handler */
    SCTX_SEND,  /* the reply is being sent */
};

struct bus_req {
    struct bus_item item;
    struct bus_sctx *sc; /* NULL for a fault duplicate, whose reply is discarded */
    struct bus *bus;
    struct bus_server *srv;
    nng_msg *msg;
    struct envelope env;
    uint64_t started_us; /* when its handler was called, for the figures (pmetrics.h) */
    bool hold;           /* bus_req_hold: the reply is built and kept, not sent */
    nng_msg *held;       /* the reply kept (its envelope in held_env) */
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
        LOG_DEBUG("bus.expired",
                  "dropping %s request %" PRIx64 " from %s: deadline passed %" PRIu64 "ms ago",
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

err_t bus_reply_msg(struct bus_req *req, const struct msg_form *f, const void *m,
                    const struct mp_writer *raw)
{
    struct mp_writer w;
    err_t rc;
    if (raw && mp_writer_err(raw) != OK)
        return bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
    mp_writer_init(&w);
    msg_encode(f, &w, m);
    if (mp_writer_err(&w) == OK)
        rc = bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        rc = bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
    mp_writer_fini(&w);
    return rc;
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

void bus_servers_close(struct bus *b)
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
