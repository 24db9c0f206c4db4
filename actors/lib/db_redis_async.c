/*
 * db_redis_async.c - non-blocking Redis on a struct loop (see db_redis_async.h).
 *
 * hiredis owns the connection and its queue of callbacks; this file gives it
 * the loop's fd events (the adapter hooks below), bounds every command and
 * the connect by one deadline timer, and keeps the backoff between connects.
 * A Redis Cluster URL makes the client a front over one such client per
 * master (db_redis_cluster.c); everything below is then one node's.
 */
#include "db_redis_async.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <async.h>

#include "backoff.h"
#include "clock.h"
#include "db_redis.h"
#include "db_redis_cluster_int.h"
#include "log.h"
#include "mem.h"
#include "pmetrics.h"

struct dra_cmd {
    struct dra_cmd *next;
    struct db_redis_async *r;
    db_redis_async_fn fn; /* NULL for the connection's own AUTH / SELECT */
    void *arg;
    uint64_t due_mono;
    uint64_t started_us; /* for the figures (pmetrics.h) */
};

struct db_redis_async {
    struct loop *loop;
    struct db_redis_addr addr;
    unsigned timeout_ms;
    redisAsyncContext *ac; /* NULL while disconnected */
    int fd;                /* watched in loop, -1 when not */
    short events;          /* what hiredis asked for (POLLIN | POLLOUT) */
    bool connected;
    bool was_up;           /* for logging transitions only */
    bool closing;          /* db_redis_async_free() is failing what is pending */
    uint64_t connect_due_mono;
    uint64_t timer;        /* the deadline check; 0 when not armed */
    struct dra_cmd *head, *tail; /* sent, unanswered; Redis answers in this order */
    unsigned npending;
    struct backoff backoff;
    struct db_redis_cluster *cluster; /* non-NULL: a cluster front, the fields above unused */
    bool node;                        /* one node of a cluster: MOVED is the front's business */
    bool moved_hinted;                /* for logging once only */
};

/* ---- the loop adapter hiredis drives ---- */

static void dra_on_fd(struct loop *l, int fd, short revents, void *arg);

static void dra_apply_events(struct db_redis_async *r)
{
    if (r->fd >= 0)
        loop_unwatch(r->loop, r->fd);
    r->fd = -1;
    if (r->ac && r->events &&
        loop_watch(r->loop, r->ac->c.fd, r->events, dra_on_fd, r) == OK)
        r->fd = r->ac->c.fd;
}

static void dra_add_read(void *p)
{
    struct db_redis_async *r = p;
    r->events |= POLLIN;
    dra_apply_events(r);
}

static void dra_del_read(void *p)
{
    struct db_redis_async *r = p;
    r->events &= (short)~POLLIN;
    dra_apply_events(r);
}

static void dra_add_write(void *p)
{
    struct db_redis_async *r = p;
    r->events |= POLLOUT;
    dra_apply_events(r);
}

static void dra_del_write(void *p)
{
    struct db_redis_async *r = p;
    r->events &= (short)~POLLOUT;
    dra_apply_events(r);
}

/* hiredis is about to free the context: after this r has no connection. */
static void dra_cleanup(void *p)
{
    struct db_redis_async *r = p;
    r->events = 0;
    r->ac = NULL;
    r->connected = false;
    dra_apply_events(r);
}

static void dra_on_fd(struct loop *l, int fd, short revents, void *arg)
{
    struct db_redis_async *r = arg;
    (void)l;
    (void)fd;
    if (r->ac && (revents & (POLLIN | POLLERR | POLLHUP)))
        redisAsyncHandleRead(r->ac);
    if (r->ac && (revents & (POLLOUT | POLLERR)))
        redisAsyncHandleWrite(r->ac);
}

/* ---- connection ---- */

static void dra_drop(struct db_redis_async *r, const char *why)
{
    if (!r->ac)
        return;
    if (r->was_up && !r->closing)
        LOG_WARN("db.redis_down", "lost the connection to Redis at %s:%d: %s", r->addr.host,
                 r->addr.port, why);
    r->was_up = false;
    backoff_fail(&r->backoff);
    redisAsyncFree(r->ac); /* pending callbacks run with no reply (deferred inside one) */
}

static void dra_on_connect(const redisAsyncContext *ac, int status)
{
    struct db_redis_async *r = ac->ev.data;
    if (status != REDIS_OK) {
        if (r->backoff.cur_ms == 0)
            LOG_WARN("db.redis_connect_failed", "could not connect to Redis at %s:%d: %s",
                     r->addr.host, r->addr.port, ac->errstr);
        backoff_fail(&r->backoff);
        return; /* hiredis frees the context next */
    }
    r->connected = true;
    backoff_reset(&r->backoff);
    if (!r->was_up)
        LOG_INFO("db.redis_up", "connected to Redis at %s:%d", r->addr.host, r->addr.port);
    r->was_up = true;
}

static void dra_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct db_redis_async *r = ac->ev.data;
    if (status != REDIS_OK && r->was_up)
        LOG_WARN("db.redis_down", "lost the connection to Redis at %s:%d: %s", r->addr.host,
                 r->addr.port, ac->errstr);
    if (status != REDIS_OK) {
        r->was_up = false;
        backoff_fail(&r->backoff);
    }
}

static void dra_timer(struct loop *l, void *arg);

/* Arms the deadline check for the earliest of the connect and the oldest command. */
static void dra_arm(struct db_redis_async *r)
{
    if (r->timer && loop_timer_is_pending(r->loop, r->timer))
        return; /* it re-arms itself for what is due next when it fires */
    uint64_t due = 0;
    if (r->ac && !r->connected)
        due = r->connect_due_mono;
    if (r->head && (!due || r->head->due_mono < due))
        due = r->head->due_mono;
    if (!due)
        return;
    uint64_t now = clock_mono_ms();
    r->timer = loop_timer_add(r->loop, due > now ? due - now : 0, dra_timer, r);
}

static void dra_timer(struct loop *l, void *arg)
{
    struct db_redis_async *r = arg;
    uint64_t now = clock_mono_ms();
    (void)l;
    r->timer = 0;
    if (r->ac && !r->connected && now >= r->connect_due_mono) {
        if (r->backoff.cur_ms == 0)
            LOG_WARN("db.redis_connect_failed", "could not connect to Redis at %s:%d: timed out",
                     r->addr.host, r->addr.port);
        dra_drop(r, "connect timed out");
    } else if (r->head && now >= r->head->due_mono) {
        char why[64];
        snprintf(why, sizeof(why), "no answer within %u ms", r->timeout_ms);
        dra_drop(r, why);
    }
    dra_arm(r);
}

static void dra_unlink(struct db_redis_async *r, struct dra_cmd *c)
{
    struct dra_cmd **pp = &r->head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = c->next;
    if (r->tail == c)
        r->tail = prev;
    r->npending--;
}

static void dra_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct dra_cmd *c = privdata;
    struct db_redis_async *r = c->r;
    const redisReply *rep = reply;
    (void)ac;
    dra_unlink(r, c);
    err_t rc;
    bool redirect = false; /* a Cluster node's MOVED or ASK: the front sends it on */
    if (rep) {
        rc = rep->type == REDIS_REPLY_ERROR ? ERR_INTERNAL : OK;
        bool moved = rc == ERR_INTERNAL && rep->len > 6 && memcmp(rep->str, "MOVED ", 6) == 0;
        redirect = r->node && (moved || (rc == ERR_INTERNAL && rep->len > 4 &&
                                         memcmp(rep->str, "ASK ", 4) == 0));
        if (moved && !r->node && !r->moved_hinted) {
            LOG_WARN("db.redis_cluster_hint",
                     "Redis at %s:%d answered MOVED: it is a Redis Cluster node; add ?cluster=1 "
                     "to its URL",
                     r->addr.host, r->addr.port);
            r->moved_hinted = true;
        }
    } else if (r->closing)
        rc = ERR_CLOSED;
    else
        rc = clock_mono_ms() >= c->due_mono ? ERR_TIMEOUT : ERR_UNAVAIL;
    if (c->fn) {
        if (!redirect) /* counted once, by the hop that answers */
            pm_store_call("redis", c->started_us, rc);
        c->fn(c->arg, rc, rep);
    } else if (rc == ERR_INTERNAL) {
        LOG_WARN("db.redis_setup_failed", "Redis refused AUTH or SELECT: %s", rep->str);
        dra_drop(r, "could not authenticate or select the database");
    }
    free(c);
}

static struct dra_cmd *dra_cmd_new(struct db_redis_async *r, db_redis_async_fn fn, void *arg)
{
    struct dra_cmd *c = xcalloc(1, sizeof(*c));
    c->r = r;
    c->fn = fn;
    c->arg = arg;
    c->due_mono = clock_mono_ms() + r->timeout_ms;
    c->started_us = clock_mono_us();
    return c;
}

/* c was handed to hiredis: it is the newest command in flight. */
static void dra_cmd_sent(struct db_redis_async *r, struct dra_cmd *c)
{
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    r->npending++;
    dra_arm(r);
}

static err_t dra_send(struct db_redis_async *r, int argc, const char **argv, const size_t *lens,
                      db_redis_async_fn fn, void *arg)
{
    struct dra_cmd *c = dra_cmd_new(r, fn, arg);
    if (redisAsyncCommandArgv(r->ac, dra_on_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return ERR_UNAVAIL;
    }
    dra_cmd_sent(r, c);
    return OK;
}

static err_t dra_connect(struct db_redis_async *r)
{
    if (!backoff_ready(&r->backoff))
        return ERR_UNAVAIL;
    redisAsyncContext *ac = redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac)
        return ERR_NOMEM;
    if (ac->err) {
        if (r->backoff.cur_ms == 0)
            LOG_WARN("db.redis_connect_failed", "could not connect to Redis at %s:%d: %s",
                     r->addr.host, r->addr.port, ac->errstr);
        redisAsyncFree(ac);
        backoff_fail(&r->backoff);
        return ERR_UNAVAIL;
    }
    r->ac = ac;
    r->connected = false;
    r->connect_due_mono = clock_mono_ms() + r->timeout_ms;
    ac->ev.data = r;
    ac->ev.addRead = dra_add_read;
    ac->ev.delRead = dra_del_read;
    ac->ev.addWrite = dra_add_write;
    ac->ev.delWrite = dra_del_write;
    ac->ev.cleanup = dra_cleanup;
    redisAsyncSetConnectCallback(ac, dra_on_connect);
    redisAsyncSetDisconnectCallback(ac, dra_on_disconnect);
    dra_add_write(r); /* the connect completes when the socket turns writable */

    char dbs[16];
    snprintf(dbs, sizeof(dbs), "%d", r->addr.db);
    const char *auth[] = {"AUTH", r->addr.password};
    const char *sel[] = {"SELECT", dbs};
    if ((r->addr.password[0] && dra_send(r, 2, auth, NULL, NULL, NULL) != OK) ||
        (r->addr.db && dra_send(r, 2, sel, NULL, NULL, NULL) != OK)) {
        dra_drop(r, "could not queue AUTH or SELECT");
        return ERR_UNAVAIL;
    }
    dra_arm(r);
    return OK;
}

/* ---- the contract ---- */

static struct db_redis_async *dra_new(struct loop *l, const struct db_redis_addr *a,
                                      unsigned timeout_ms)
{
    struct db_redis_async *r = xcalloc(1, sizeof(*r));
    r->addr = *a;
    r->loop = l;
    r->timeout_ms = timeout_ms ? timeout_ms : 2000;
    r->fd = -1;
    r->backoff = (struct backoff)BACKOFF_INIT(100, 5000);
    return r;
}

err_t db_redis_async_new(struct loop *l, const char *url, unsigned timeout_ms,
                         struct db_redis_async **out)
{
    struct db_redis_addr a;
    if (db_redis_addr_parse(&a, url) != OK)
        return ERR_INVAL;
    struct db_redis_async *r = dra_new(l, &a, timeout_ms);
    if (a.cluster)
        r->cluster = db_redis_cluster_new(l, &a, r->timeout_ms);
    *out = r;
    return OK;
}

void db_redis_async_free(struct db_redis_async *r)
{
    if (!r)
        return;
    if (r->cluster) {
        db_redis_cluster_free(r->cluster);
        free(r);
        return;
    }
    r->closing = true;
    if (r->ac)
        redisAsyncFree(r->ac);
    if (r->timer)
        loop_timer_cancel(r->loop, r->timer);
    free(r);
}

err_t db_redis_async_cmd(struct db_redis_async *r, int argc, const char **argv,
                         const size_t *lens, db_redis_async_fn fn, void *arg)
{
    err_t rc;
    if (r->cluster)
        return db_redis_cluster_cmd(r->cluster, argc, argv, lens, fn, arg);
    if (!r->ac && (rc = dra_connect(r)) != OK)
        return rc;
    return dra_send(r, argc, argv, lens, fn, arg);
}

bool db_redis_async_up(const struct db_redis_async *r)
{
    if (r->cluster)
        return db_redis_cluster_up(r->cluster);
    return r->ac && r->connected;
}

unsigned db_redis_async_pending(const struct db_redis_async *r)
{
    if (r->cluster)
        return db_redis_cluster_pending(r->cluster);
    return r->npending;
}

/* ---- for db_redis_cluster.c ---- */

struct db_redis_async *db_redis_async_node_new(struct loop *l, const struct db_redis_addr *a,
                                               unsigned timeout_ms)
{
    struct db_redis_async *r = dra_new(l, a, timeout_ms);
    r->addr.cluster = false;
    r->node = true;
    return r;
}

err_t db_redis_async_node_cmd(struct db_redis_async *r, const char *cmd, size_t len,
                              db_redis_async_fn fn, void *arg)
{
    err_t rc;
    if (!r->ac && (rc = dra_connect(r)) != OK)
        return rc;
    struct dra_cmd *c = dra_cmd_new(r, fn, arg);
    if (redisAsyncFormattedCommand(r->ac, dra_on_reply, c, cmd, len) != REDIS_OK) {
        free(c);
        return ERR_UNAVAIL;
    }
    dra_cmd_sent(r, c);
    return OK;
}
