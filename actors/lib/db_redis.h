/*
 * db_redis.h - one Redis connection (hiredis, synchronous) that reconnects
 * with backoff.
 *
 * Every command is bounded by a socket timeout. A connection error drops
 * the connection (the next call reconnects once the backoff allows) and is
 * reported as ERR_UNAVAIL; an error reply is ERR_INTERNAL with the reply
 * handed back so the caller can read it.
 *
 * It talks to the one node of the URL, also when the URL says ?cluster=1: a
 * keyed command for a slot another master serves answers MOVED (an error
 * reply, ERR_INTERNAL). No process sends commands through it (tests ping
 * with it); their Redis calls go through db_redis_async.h, which routes by
 * slot in a Cluster.
 */
#ifndef TETHER_LIB_DB_REDIS_H
#define TETHER_LIB_DB_REDIS_H

#include <stdbool.h>

#include <hiredis.h>

#include "backoff.h"
#include "err.h"

/*
 * Where a Redis is and how to log in: parsed from
 * redis://[:password@]host:port[/db][?cluster=0|1]. cluster=1 names one node of a Redis
 * Cluster (a seed: the others are learnt from it); a Cluster has database 0 only.
 */
struct db_redis_addr {
    char host[256];
    int port;
    char password[256];
    int db;
    bool cluster;
};

/* Parses url into a; ERR_INVAL if malformed, with a query other than cluster=0|1, or a db != 0
 * with cluster=1. */
err_t db_redis_addr_parse(struct db_redis_addr *a, const char *url);

struct db_redis {
    struct db_redis_addr addr;
    unsigned timeout_ms;
    redisContext *ctx;
    struct backoff backoff;
    bool was_up;
};

/* Parses url (db_redis_addr_parse); ERR_INVAL if malformed. */
err_t db_redis_init(struct db_redis *r, const char *url, unsigned timeout_ms);
void db_redis_fini(struct db_redis *r);

err_t db_redis_ensure(struct db_redis *r);
bool db_redis_up(const struct db_redis *r);
err_t db_redis_ping(struct db_redis *r);

/*
 * Runs a command given as argv (binary-safe). On OK or ERR_INTERNAL (an
 * error reply) *reply is set and the caller frees it with freeReplyObject.
 */
err_t db_redis_cmd(struct db_redis *r, int argc, const char **argv, const size_t *lens,
                   redisReply **reply);

#endif
