/*
 * bus_redial.c - the bus's dials, and a thread that replaces a dialer nng
 * has stopped redialing.
 *
 * nng 1.5.2 (Debian 12's) gives up on a dialer for good when the SP
 * handshake of a new connection fails with NNG_ECLOSED: its connect
 * callback takes that error for "the dialer is closing" and schedules no
 * retry. A connection that lands in the backlog of a listener whose process
 * is dying (kill -9: the process's established connections close before its
 * listening socket does) gets exactly that, EPIPE on its first send. The
 * caller then never reaches that actor again, although the actor is back
 * (upstream fixed it after 1.5.2: nng issue #1518).
 *
 * So every dial of the bus goes through bus_dial(), which records it and
 * counts its connected pipes (pipe notifications). A thread of its own looks
 * every BUS_REDIAL_CHECK_MS: a dial without a pipe for BUS_REDIAL_AFTER_MS is
 * closed and dialed anew. A healthy dialer reconnects within RECONNMAXT
 * (100 ms) of its peer being back, so a dial past the threshold is either
 * that dead dialer or a peer still away, which costs one close and one dial.
 *
 * Locking: b->dial_mtx guards the list and every record's fields. nng runs
 * pipe callbacks inside a dialer's connect completion, and closing a dialer
 * waits for that completion, so a dialer is never closed or started with the
 * mutex held. Records are freed by the thread only (or at bus_close), so a
 * record it holds stays valid while the mutex is dropped.
 */
#include "bus_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

struct bus_dial {
    struct bus_dial *next;
    nng_socket sock;
    nng_dialer d;
    uint32_t d_id;       /* nng_dialer_id(d): what a pipe names */
    unsigned pipes;      /* connected pipes of d */
    uint64_t down_since; /* clock_mono_ms: since when d has had no pipe */
    bool closed;         /* bus_dial_close was called: the thread frees it */
    bool busy;           /* the thread is replacing d, unlocked */
    bool told;           /* this down period's first redial was logged */
    char url[BUS_URL_MAX];
};

static struct bus_dial *bus_dial_by_id(struct bus *b, uint32_t id)
{
    for (struct bus_dial *r = b->dials; r; r = r->next)
        if (r->d_id == id && !r->closed)
            return r;
    return NULL;
}

static void bus_dial_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct bus *b = arg;
    uint32_t id = (uint32_t)nng_dialer_id(nng_pipe_dialer(p));
    nng_mtx_lock(b->dial_mtx);
    struct bus_dial *r = bus_dial_by_id(b, id);
    if (r && ev == NNG_PIPE_EV_ADD_POST) {
        r->pipes++;
        r->told = false;
    } else if (r && ev == NNG_PIPE_EV_REM_POST && r->pipes > 0 && --r->pipes == 0)
        r->down_since = clock_mono_ms();
    nng_mtx_unlock(b->dial_mtx);
}

err_t bus_dial(struct bus *b, nng_socket s, const char *url, struct bus_dial **out)
{
    struct bus_dial *r = xcalloc(1, sizeof(*r));
    int rv;

    if (strlen(url) >= sizeof(r->url)) {
        free(r);
        return ERR_INVAL;
    }
    r->sock = s;
    snprintf(r->url, sizeof(r->url), "%s", url);
    /* every pipe of the socket is told to bus_dial_pipe_cb; setting it again is harmless */
    if ((rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, bus_dial_pipe_cb, b)) != 0 ||
        (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, bus_dial_pipe_cb, b)) != 0 ||
        /* created, then started: its id is known before its first pipe is */
        (rv = nng_dialer_create(&r->d, s, r->url)) != 0) {
        free(r);
        return bus_nng_err(rv);
    }
    nng_mtx_lock(b->dial_mtx);
    r->d_id = (uint32_t)nng_dialer_id(r->d);
    r->down_since = clock_mono_ms();
    r->next = b->dials;
    b->dials = r;
    nng_mtx_unlock(b->dial_mtx);
    if ((rv = nng_dialer_start(r->d, NNG_FLAG_NONBLOCK)) != 0) {
        bus_dial_close(b, r);
        return bus_nng_err(rv);
    }
    if (out)
        *out = r;
    return OK;
}

void bus_dial_close(struct bus *b, struct bus_dial *r)
{
    nng_dialer d = NNG_DIALER_INITIALIZER;
    if (!r)
        return;
    nng_mtx_lock(b->dial_mtx);
    r->closed = true;
    if (!r->busy) /* a busy record's dialer is the thread's to close */
        d = r->d;
    nng_mtx_unlock(b->dial_mtx);
    if (nng_dialer_id(d) > 0)
        (void)nng_dialer_close(d);
}

/* Replaces r's dialer (r is busy; called unlocked). */
static void bus_dial_replace(struct bus *b, struct bus_dial *r, nng_dialer old)
{
    nng_dialer d;
    bool start = false, tell = false;
    (void)nng_dialer_close(old);
    int rv = nng_dialer_create(&d, r->sock, r->url);
    nng_mtx_lock(b->dial_mtx);
    r->busy = false;
    r->down_since = clock_mono_ms();
    if (rv == 0 && !r->closed) {
        r->d = d;
        r->d_id = (uint32_t)nng_dialer_id(d);
        start = true;
        tell = !r->told;
        r->told = true;
    }
    nng_mtx_unlock(b->dial_mtx);
    if (rv != 0) {
        LOG_WARN("bus.redial_failed", "could not dial %s again: %s", r->url, nng_strerror(rv));
        return;
    }
    if (!start) {
        (void)nng_dialer_close(d);
        return;
    }
    pm_add(b->redials, 1);
    /* once per time without a connection: a peer that stays away is dialed every check */
    if (tell)
        LOG_INFO("bus.redial", "no connection to %s for %d ms: dialing it anew", r->url,
                 BUS_REDIAL_AFTER_MS);
    if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
        LOG_WARN("bus.redial_failed", "could not dial %s again: %s", r->url, nng_strerror(rv));
}

static void bus_redialer(void *arg)
{
    struct bus *b = arg;
    nng_mtx_lock(b->dial_mtx);
    while (!b->dial_stopping) {
        (void)nng_cv_until(b->dial_cv, nng_clock() + BUS_REDIAL_CHECK_MS);
        uint64_t now = clock_mono_ms();
        for (struct bus_dial **pp = &b->dials; *pp && !b->dial_stopping;) {
            struct bus_dial *r = *pp;
            if (r->closed && !r->busy) {
                *pp = r->next;
                free(r);
                continue;
            }
            if (!r->closed && !r->busy && r->pipes == 0 &&
                now - r->down_since >= BUS_REDIAL_AFTER_MS) {
                r->busy = true;
                nng_dialer old = r->d;
                nng_mtx_unlock(b->dial_mtx);
                bus_dial_replace(b, r, old);
                nng_mtx_lock(b->dial_mtx);
                /* r is still linked (only this thread unlinks); records added meanwhile went
                 * in at the head, before it */
            }
            pp = &r->next;
        }
    }
    nng_mtx_unlock(b->dial_mtx);
}

err_t bus_redial_open(struct bus *b)
{
    int rv;
    if ((rv = nng_mtx_alloc(&b->dial_mtx)) != 0 ||
        (rv = nng_cv_alloc(&b->dial_cv, b->dial_mtx)) != 0 ||
        (rv = nng_thread_create(&b->redialer, bus_redialer, b)) != 0) {
        LOG_ERROR("bus.open_failed", "could not start the redial thread: %s", nng_strerror(rv));
        return bus_nng_err(rv);
    }
    b->redials = pm_series(PM_BUS_REDIALS, "");
    return OK;
}

void bus_redial_stop(struct bus *b)
{
    if (!b->redialer)
        return;
    nng_mtx_lock(b->dial_mtx);
    b->dial_stopping = true;
    nng_cv_wake(b->dial_cv);
    nng_mtx_unlock(b->dial_mtx);
    nng_thread_destroy(b->redialer); /* joins it */
    b->redialer = NULL;
}

void bus_redial_free(struct bus *b)
{
    bus_redial_stop(b);
    for (struct bus_dial *r = b->dials, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    b->dials = NULL;
    if (b->dial_cv)
        nng_cv_free(b->dial_cv);
    b->dial_cv = NULL;
    if (b->dial_mtx)
        nng_mtx_free(b->dial_mtx);
    b->dial_mtx = NULL;
}

nng_dialer bus_dial_dialer(struct bus *b, const struct bus_dial *r)
{
    nng_mtx_lock(b->dial_mtx);
    nng_dialer d = r->d;
    nng_mtx_unlock(b->dial_mtx);
    return d;
}
