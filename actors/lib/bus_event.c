/*
 * bus_event.c - published events (PUB/SUB).
 *
 * An event message is "<topic>\0<envelope>": nng filters subscriptions by
 * byte prefix, so subscribing to "<topic>\0" matches one topic exactly.
 * Events are a latency path, never the source of truth: a subscriber that
 * misses one must be able to recover by reading from the owner.
 */
#include "bus_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "stream.h"

/* a stream's topic is its name plus a prefix: every stream must be followable */
_Static_assert(BUS_TOPIC_MAX > STREAM_NAME_MAX + 16, "BUS_TOPIC_MAX holds no stream topic");

struct bus_pub {
    struct bus_pub *next;
    struct bus *bus;
    nng_socket sock;
};

struct bus_event_item {
    struct bus_item item;
    struct bus_sub *sub;
    nng_msg *msg;
};

err_t bus_event_split(const void *data, size_t n, const char **topic, const void **env,
                      size_t *env_n)
{
    const char *p = data;
    const char *nul = memchr(p, '\0', n < BUS_TOPIC_MAX ? n : BUS_TOPIC_MAX);
    if (!nul)
        return ERR_PROTO;
    *topic = p;
    *env = nul + 1;
    *env_n = n - (size_t)(nul + 1 - p);
    return OK;
}

err_t bus_pub_open(struct bus *b, const char *url, struct bus_pub **out)
{
    struct bus_pub *p = xcalloc(1, sizeof(*p));
    int rv;
    p->bus = b;
    if ((rv = nng_pub0_open(&p->sock)) != 0) {
        LOG_ERROR("bus.pub_failed", "could not open a publisher socket: %s", nng_strerror(rv));
        free(p);
        return bus_nng_err(rv);
    }
    bus_socket_tune(b, p->sock);
    char list[BUS_URL_MAX * 2], *save = NULL;
    if (snprintf(list, sizeof(list), "%s", url) >= (int)sizeof(list)) {
        LOG_ERROR("bus.pub_failed", "endpoint list too long: %s", url);
        nng_close(p->sock);
        free(p);
        return ERR_INVAL;
    }
    for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        if ((rv = nng_listen(p->sock, u, NULL, 0)) != 0) {
            LOG_ERROR("bus.pub_failed", "could not listen on %s: %s", u, nng_strerror(rv));
            nng_close(p->sock);
            free(p);
            return bus_nng_err(rv);
        }
    }
    p->next = b->pubs;
    b->pubs = p;
    *out = p;
    return OK;
}

err_t bus_publish(struct bus_pub *p, const char *topic, uint16_t type, const void *body, size_t n)
{
    struct bus *b = p->bus;
    struct envelope env = {0};
    nng_msg *m;
    uint32_t delay;
    size_t tl = strlen(topic);
    int copies = 1;
    err_t rc;

    if (tl == 0 || tl >= BUS_TOPIC_MAX)
        return ERR_INVAL;
    switch (bus_fault_decide(b, &delay)) {
    case BUS_FAULT_DROP:
        return OK;
    case BUS_FAULT_DUP:
        copies = 2;
        break;
    case BUS_FAULT_DELAY: /* events are not held back: a delay would only reorder them */
    case BUS_FAULT_PASS:
        break;
    }
    env.kind = ENV_EVENT;
    env.type = type;
    env.req_id = atomic_fetch_add(&b->next_req_id, 1);
    memcpy(env.sender, b->self, sizeof(env.sender));
    env.attempt = 1;
    if ((rc = bus_msg_build(&env, topic, body, n, &m)) != OK)
        return rc;
    bus_tap_emit(b, "out", "*", topic, (const char *)nng_msg_body(m) + tl + 1,
                 nng_msg_len(m) - tl - 1);
    while (copies-- > 0) {
        nng_msg *send = m;
        if (copies > 0 && nng_msg_dup(&send, m) != 0)
            continue;
        int rv = nng_sendmsg(p->sock, send, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            nng_msg_free(send);
            if (copies == 0)
                return bus_nng_err(rv);
        }
    }
    return OK;
}

static void bus_event_run(struct bus_item *it)
{
    struct bus_event_item *e = (struct bus_event_item *)it;
    const char *topic;
    const void *eb;
    size_t en;
    struct envelope env;

    if (bus_event_split(nng_msg_body(e->msg), nng_msg_len(e->msg), &topic, &eb, &en) == OK &&
        env_decode(eb, en, &env) == OK && env.kind == ENV_EVENT) {
        bus_tap_emit(e->sub->bus, "in", env.sender, topic, eb, en);
        e->sub->fn(e->sub->arg, topic, &env);
    } else {
        LOG_WARN("bus.bad_event", "dropping a malformed event of %zu bytes", nng_msg_len(e->msg));
    }
    nng_msg_free(e->msg);
    free(e);
}

static void bus_event_drop(struct bus_item *it)
{
    struct bus_event_item *e = (struct bus_event_item *)it;
    nng_msg_free(e->msg);
    free(e);
}

static void bus_sub_cb(void *arg)
{
    struct bus_sub *s = arg;
    int rv = nng_aio_result(s->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv == 0) {
        struct bus_event_item *e = xcalloc(1, sizeof(*e));
        e->item.run = bus_event_run;
        e->item.drop = bus_event_drop;
        e->sub = s;
        e->msg = nng_aio_get_msg(s->aio);
        bus_queue_push(s->bus, &e->item);
    }
    nng_recv_aio(s->sock, s->aio);
}

err_t bus_sub_open(struct bus *b, const char *urls, bus_event_fn fn, void *arg,
                   struct bus_sub **out)
{
    struct bus_sub *s = xcalloc(1, sizeof(*s));
    int rv;
    err_t rc;

    s->bus = b;
    s->fn = fn;
    s->arg = arg;
    if ((rv = nng_sub0_open(&s->sock)) != 0) {
        LOG_ERROR("bus.sub_failed", "could not open a subscriber socket: %s", nng_strerror(rv));
        free(s);
        return bus_nng_err(rv);
    }
    bus_socket_tune(b, s->sock);
    if ((rv = nng_aio_alloc(&s->aio, bus_sub_cb, s)) != 0) {
        nng_close(s->sock);
        free(s);
        return bus_nng_err(rv);
    }
    if ((rc = bus_dial_all(b, s->sock, urls, "event publisher")) != OK) {
        nng_aio_free(s->aio);
        nng_close(s->sock);
        free(s);
        return rc;
    }
    nng_recv_aio(s->sock, s->aio);
    s->next = b->subs;
    b->subs = s;
    *out = s;
    return OK;
}

err_t bus_sub_open_actor(struct bus *b, const char *actor, bus_event_fn fn, void *arg,
                         struct bus_sub **out)
{
    char urls[BUS_URL_MAX * 8];
    bus_actor_events_urls(b, actor, urls, sizeof(urls));
    if (!urls[0]) {
        LOG_ERROR("bus.sub_failed", "no event socket of %s to follow", actor);
        return ERR_INVAL;
    }
    err_t rc = bus_sub_open(b, urls, fn, arg, out);
    if (rc != OK)
        return rc;
    snprintf((*out)->actor, sizeof((*out)->actor), "%s", actor);
    bus_cluster_dial(b, *out);
    return OK;
}

static err_t bus_sub_opt(struct bus_sub *s, const char *opt, const char *topic)
{
    size_t tl = strlen(topic);
    if (tl == 0 || tl >= BUS_TOPIC_MAX)
        return ERR_INVAL;
    /* include the NUL so "a" does not also match "ab" */
    return bus_nng_err(nng_socket_set(s->sock, opt, topic, tl + 1));
}

err_t bus_sub_add(struct bus_sub *s, const char *topic)
{
    return bus_sub_opt(s, NNG_OPT_SUB_SUBSCRIBE, topic);
}

err_t bus_sub_remove(struct bus_sub *s, const char *topic)
{
    return bus_sub_opt(s, NNG_OPT_SUB_UNSUBSCRIBE, topic);
}

void bus_subs_close(struct bus *b)
{
    for (struct bus_sub *s = b->subs, *next; s; s = next) {
        next = s->next;
        bus_cluster_undial(s);
        nng_close(s->sock);
        nng_aio_stop(s->aio);
        nng_aio_free(s->aio);
        free(s); /* queued events of this sub never look at it when dropped */
    }
    b->subs = NULL;
}

void bus_pubs_close(struct bus *b)
{
    for (struct bus_pub *p = b->pubs, *next; p; p = next) {
        next = p->next;
        nng_close(p->sock);
        free(p);
    }
    b->pubs = NULL;
}
