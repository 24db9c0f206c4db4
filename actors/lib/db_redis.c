/*
 * db_redis.c - Redis connection with reconnect and backoff (see db_redis.h).
 */
#include "db_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pmetrics.h"

/* The query of a Redis URL: "cluster=0" or "cluster=1", nothing else (a typo is an error). */
static err_t db_redis_query_parse(struct db_redis_addr *a, const char *q)
{
    if (strcmp(q, "cluster=1") == 0)
        a->cluster = true;
    else if (strcmp(q, "cluster=0") != 0)
        return ERR_INVAL;
    return OK;
}

err_t db_redis_addr_parse(struct db_redis_addr *a, const char *url)
{
    char rest[768];
    const char *p;
    const char *at, *colon, *slash, *query;
    memset(a, 0, sizeof(*a));
    if (strncmp(url, "redis://", 8) != 0)
        return ERR_INVAL;
    p = url + 8;
    at = strchr(p, '@');
    if (at) {
        const char *pw = memchr(p, ':', (size_t)(at - p));
        if (pw && snprintf(a->password, sizeof(a->password), "%.*s", (int)(at - pw - 1), pw + 1) >=
                      (int)sizeof(a->password))
            return ERR_INVAL;
        p = at + 1;
    }
    /* the query is cut off after the password: a password may hold a '?' */
    query = strchr(p, '?');
    if (query) {
        if ((size_t)(query - p) >= sizeof(rest) || db_redis_query_parse(a, query + 1) != OK)
            return ERR_INVAL;
        memcpy(rest, p, (size_t)(query - p));
        rest[query - p] = '\0';
        p = rest;
    }
    colon = strchr(p, ':');
    slash = strchr(p, '/');
    size_t hl = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0 || hl >= sizeof(a->host))
        return ERR_INVAL;
    memcpy(a->host, p, hl);
    a->host[hl] = '\0';
    a->port = colon ? atoi(colon + 1) : 6379;
    if (a->port <= 0 || a->port > 65535)
        return ERR_INVAL;
    a->db = slash ? atoi(slash + 1) : 0;
    if (a->cluster && a->db != 0)
        return ERR_INVAL;
    return OK;
}

err_t db_redis_init(struct db_redis *r, const char *url, unsigned timeout_ms)
{
    memset(r, 0, sizeof(*r));
    r->backoff = (struct backoff)BACKOFF_INIT(100, 5000);
    r->timeout_ms = timeout_ms ? timeout_ms : 2000;
    return db_redis_addr_parse(&r->addr, url);
}

void db_redis_fini(struct db_redis *r)
{
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
}

bool db_redis_up(const struct db_redis *r)
{
    return r->ctx && r->ctx->err == 0;
}

static void db_redis_drop(struct db_redis *r, const char *why)
{
    if (r->was_up)
        LOG_WARN("db.redis_down", "lost the Redis connection: %s", why);
    r->was_up = false;
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
    backoff_fail(&r->backoff);
}

static struct timeval db_redis_tv(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* Runs one setup command right after connecting; false on any failure. */
static bool db_redis_setup(struct db_redis *r, const char *fmt, const char *arg)
{
    redisReply *rep = redisCommand(r->ctx, fmt, arg);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    return ok;
}

err_t db_redis_ensure(struct db_redis *r)
{
    char dbs[16];
    if (db_redis_up(r))
        return OK;
    if (r->ctx)
        db_redis_drop(r, r->ctx->errstr);
    if (!backoff_ready(&r->backoff))
        return ERR_UNAVAIL;
    r->ctx = redisConnectWithTimeout(r->addr.host, r->addr.port, db_redis_tv(r->timeout_ms));
    if (!r->ctx || r->ctx->err) {
        if (r->backoff.cur_ms == 0)
            LOG_WARN("db.redis_connect_failed", "could not connect to Redis at %s:%d: %s", r->addr.host,
                     r->addr.port, r->ctx ? r->ctx->errstr : "out of memory");
        if (r->ctx)
            redisFree(r->ctx);
        r->ctx = NULL;
        backoff_fail(&r->backoff);
        return ERR_UNAVAIL;
    }
    snprintf(dbs, sizeof(dbs), "%d", r->addr.db);
    if (redisSetTimeout(r->ctx, db_redis_tv(r->timeout_ms)) != REDIS_OK ||
        (r->addr.password[0] && !db_redis_setup(r, "AUTH %s", r->addr.password)) ||
        (r->addr.db && !db_redis_setup(r, "SELECT %s", dbs))) {
        db_redis_drop(r, "could not authenticate or select the database");
        return ERR_UNAVAIL;
    }
    backoff_reset(&r->backoff);
    if (!r->was_up)
        LOG_INFO("db.redis_up", "connected to Redis at %s:%d", r->addr.host, r->addr.port);
    r->was_up = true;
    return OK;
}

err_t db_redis_cmd(struct db_redis *r, int argc, const char **argv, const size_t *lens,
                   redisReply **reply)
{
    redisReply *rep;
    if (db_redis_ensure(r) != OK)
        return ERR_UNAVAIL;
    uint64_t started_us = clock_mono_us();
    rep = redisCommandArgv(r->ctx, argc, argv, lens);
    if (!rep) {
        pm_store_call("redis", started_us, ERR_UNAVAIL);
        db_redis_drop(r, r->ctx->errstr[0] ? r->ctx->errstr : "no reply");
        return ERR_UNAVAIL;
    }
    *reply = rep;
    err_t rc = rep->type == REDIS_REPLY_ERROR ? ERR_INTERNAL : OK;
    pm_store_call("redis", started_us, rc);
    return rc;
}

err_t db_redis_ping(struct db_redis *r)
{
    const char *argv[] = {"PING"};
    redisReply *rep;
    err_t rc = db_redis_cmd(r, 1, argv, NULL, &rep);
    if (rc == OK || rc == ERR_INTERNAL)
        freeReplyObject(rep);
    return rc;
}
