/*
 * longpoll.c - requests that wait for an actor's event (see longpoll.h).
 */
#include "longpoll.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "mem.h"

/* One environment the board subscribes to, with the number of waiters that need it. */
struct gw_lp_topic {
    struct gw_lp_topic *next;
    char env_id[64];
    unsigned refs;
};

struct gw_lp_board {
    const struct gw_lp_kind *kind;
    struct gw *gw;
    h2o_timeout_t tick;  /* kind->tick_ms, for every waiter */
    struct bus_sub *sub; /* the actor's events; NULL: polling only */
    struct gw_lp_waiter *waiters;
    struct gw_lp_topic *topics;
};

static void gw_lp_on_event(void *arg, const char *topic, const struct envelope *env);

static struct gw_lp_board *gw_lp_board(struct gw *gw, const struct gw_lp_kind *k)
{
    struct gw_lp_board *b = gw->lp[k->board];
    if (b)
        return b;
    b = xcalloc(1, sizeof(*b));
    b->kind = k;
    b->gw = gw;
    h2o_timeout_init(gw->ctx.loop, &b->tick, k->tick_ms);
    /* without events a long-poll still works, at poll_ms's latency */
    if (bus_sub_open_actor(gw->bus, k->actor, gw_lp_on_event, b, &b->sub) != OK) {
        LOG_WARN("gw.longpoll_events", "cannot follow the %s's events; %s waits poll", k->actor,
                 k->prefix);
        b->sub = NULL;
    }
    gw->lp[k->board] = b;
    return b;
}

/* delta +1 or -1 of the waiters of env_id: the topic is subscribed while it has any. */
static void gw_lp_topic_ref(struct gw_lp_board *b, const char *env_id, int delta)
{
    char topic[128];
    struct gw_lp_topic **pp = &b->topics, *t;
    for (; (t = *pp); pp = &t->next)
        if (strcmp(t->env_id, env_id) == 0)
            break;
    snprintf(topic, sizeof(topic), "%s%s", b->kind->prefix, env_id);
    if (delta > 0) {
        if (!t) {
            t = xcalloc(1, sizeof(*t));
            snprintf(t->env_id, sizeof(t->env_id), "%s", env_id);
            t->next = b->topics;
            b->topics = t;
            if (b->sub && bus_sub_add(b->sub, topic) != OK)
                LOG_WARN("gw.longpoll_events", "cannot subscribe to %s", topic);
        }
        t->refs++;
    } else if (t && --t->refs == 0) {
        *pp = t->next;
        if (b->sub)
            (void)bus_sub_remove(b->sub, topic);
        free(t);
    }
}

bool gw_lp_client_gone(const struct gw_lp_waiter *w)
{
    return !w->c->req || gw_req_client_gone(w->c->req);
}

static void gw_lp_on_tick(h2o_timeout_entry_t *entry)
{
    struct gw_lp_waiter *w =
        (struct gw_lp_waiter *)((char *)entry - offsetof(struct gw_lp_waiter, tick));
    uint64_t now = clock_mono_ms();
    /* the client left, the gateway is stopping, or the wait is over: answer (nobody, maybe) */
    if (gw_lp_client_gone(w) || w->c->gw->stopping || now >= w->deadline_mono) {
        w->kind->expire(w);
        return;
    }
    if (now >= w->next_poll_mono) {
        w->kind->issue(w);
        return;
    }
    gw_lp_tick(w);
}

void gw_lp_init(struct gw_lp_waiter *w, const struct gw_lp_kind *kind, struct gw_call *c)
{
    memset(w, 0, sizeof(*w));
    w->kind = kind;
    w->c = c;
    w->tick.cb = gw_lp_on_tick;
}

void gw_lp_listen(struct gw_lp_waiter *w, uint64_t wait_ms)
{
    struct gw_lp_board *b = gw_lp_board(w->c->gw, w->kind);
    w->deadline_mono = clock_mono_ms() + wait_ms;
    w->prev = NULL;
    w->next = b->waiters;
    if (b->waiters)
        b->waiters->prev = w;
    b->waiters = w;
    w->listed = true;
    gw_lp_topic_ref(b, w->c->auth.env.id, +1);
}

void gw_lp_done(struct gw_lp_waiter *w)
{
    if (h2o_timeout_is_linked(&w->tick))
        h2o_timeout_unlink(&w->tick);
    if (!w->listed)
        return;
    struct gw_lp_board *b = w->c->gw->lp[w->kind->board];
    if (w->prev)
        w->prev->next = w->next;
    else
        b->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->listed = false;
    gw_lp_topic_ref(b, w->c->auth.env.id, -1);
}

void gw_lp_calling(struct gw_lp_waiter *w)
{
    w->calling = true;
    w->wake_pending = false;
    w->next_poll_mono = clock_mono_ms() + w->kind->poll_ms;
}

void gw_lp_replied(struct gw_lp_waiter *w)
{
    w->calling = false;
}

void gw_lp_tick(struct gw_lp_waiter *w)
{
    struct gw_lp_board *b = gw_lp_board(w->c->gw, w->kind);
    if (!h2o_timeout_is_linked(&w->tick))
        h2o_timeout_link(w->c->gw->ctx.loop, &b->tick, &w->tick);
}

void gw_lp_wait_on(struct gw_lp_waiter *w)
{
    uint64_t now = clock_mono_ms();
    if (!w->deadline_mono || now >= w->deadline_mono || gw_lp_client_gone(w) ||
        w->c->gw->stopping) {
        w->kind->expire(w);
        return;
    }
    if (w->wake_pending) {
        w->kind->issue(w);
        return;
    }
    gw_lp_tick(w);
}

static void gw_lp_wake(struct gw_lp_waiter *w)
{
    if (w->calling) {
        w->wake_pending = true;
        return;
    }
    if (gw_lp_client_gone(w)) {
        w->kind->expire(w); /* to nobody: ends the call */
        return;
    }
    if (h2o_timeout_is_linked(&w->tick))
        h2o_timeout_unlink(&w->tick);
    w->kind->issue(w);
}

static void gw_lp_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw_lp_board *b = arg;
    size_t plen = strlen(b->kind->prefix);
    if (strncmp(topic, b->kind->prefix, plen) != 0)
        return;
    const char *env_id = topic + plen;
    /* waking may finish a waiter (and unlist it): walk with the next one saved */
    for (struct gw_lp_waiter *w = b->waiters, *next; w; w = next) {
        next = w->next;
        if (strcmp(w->c->auth.env.id, env_id) == 0 && (!b->kind->wants || b->kind->wants(w, env)))
            gw_lp_wake(w);
    }
}
