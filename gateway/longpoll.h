/*
 * longpoll.h - HTTP requests that wait for an actor's event: a waiting dequeue (h_dequeue.c)
 * and a hold (h_run_suspend.c).
 *
 * Each kind has one board per gateway process, made on first use: the actor's events socket,
 * subscribed to <prefix><env id> while somebody of that environment waits, one h2o timeout
 * list ticking every tick_ms, and the waiters. A waiter listens before its first call (so an
 * event that comes right after it is not missed), calls the actor again on each event of its
 * environment that concerns it and every poll_ms anyway (an event may be lost), and ends at its
 * deadline, when its client leaves, or when the gateway stops. The kind's functions decide what
 * a call and an answer are. Everything runs on the gateway's loop thread; nothing is freed
 * before the process ends but the waiters, which their calls own (c->state).
 */
#ifndef TETHER_GW_LONGPOLL_H
#define TETHER_GW_LONGPOLL_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "envelope.h"
#include "gw.h"

struct gw_lp_waiter;

struct gw_lp_kind {
    unsigned board;     /* its index in gw->lp (enum gw_lp_board) */
    const char *actor;  /* whose events: "run-manager" */
    const char *prefix; /* the topic before the env id: "run.queued." */
    unsigned tick_ms;   /* how often a waiter checks its deadline and client */
    unsigned poll_ms;   /* how often it calls again without an event */
    /* calls the actor (again), having called gw_lp_calling; its reply ends the call or
     * calls gw_lp_wait_on */
    void (*issue)(struct gw_lp_waiter *w);
    /* the wait is over with no answer worth waiting for (deadline, client gone, gateway
     * stopping): takes w off the board (gw_lp_done) and responds */
    void (*expire)(struct gw_lp_waiter *w);
    /* whether an event of w's environment concerns w; NULL: every one does */
    bool (*wants)(const struct gw_lp_waiter *w, const struct envelope *env);
};

/* The first member of a kind's call state. */
struct gw_lp_waiter {
    const struct gw_lp_kind *kind;
    struct gw_call *c;
    struct gw_lp_waiter *prev, *next; /* on the board while listed */
    bool listed;
    bool calling;      /* a call to the actor is under way */
    bool wake_pending; /* an event came during it: call again at once */
    h2o_timeout_entry_t tick;
    uint64_t deadline_mono; /* 0: no waiting, the first answer is the answer */
    uint64_t next_poll_mono;
};

void gw_lp_init(struct gw_lp_waiter *w, const struct gw_lp_kind *kind, struct gw_call *c);

/* Waits up to wait_ms from now: w goes on its board, its environment's topic subscribed. */
void gw_lp_listen(struct gw_lp_waiter *w, uint64_t wait_ms);

/* Takes w off its board and timer; the caller then responds. Safe to repeat. */
void gw_lp_done(struct gw_lp_waiter *w);

/* What issue calls as it sends: the call is under way, the next poll poll_ms away. */
void gw_lp_calling(struct gw_lp_waiter *w);

/* What a reply's callback calls first: no call under way any more. */
void gw_lp_replied(struct gw_lp_waiter *w);

/*
 * After an answer that ends nothing: expire when the wait is over (or there is none), call
 * again at once when an event came meanwhile, else wait for the next tick.
 */
void gw_lp_wait_on(struct gw_lp_waiter *w);

/* Waits for the next tick (a retry after a transient failure). */
void gw_lp_tick(struct gw_lp_waiter *w);

/* The client of w has gone (disposed, or its connection closed). */
bool gw_lp_client_gone(const struct gw_lp_waiter *w);

#endif
