/*
 * db_redis_async.h - one non-blocking Redis connection on a struct loop
 * (hiredis's async API, driven by loop.h), reconnecting with backoff.
 *
 * Commands are written as they are given and pipelined: many may be in
 * flight at once, and their callbacks run in the order Redis answers, on
 * the loop's thread. Each command's callback runs exactly once, never from
 * inside db_redis_async_cmd(). A connection that leaves its oldest command
 * unanswered for timeout_ms is dropped, so a store that stops answering
 * fails what it held instead of hanging it; the next command reconnects
 * once the backoff allows.
 *
 * Nothing here blocks: the connect is non-blocking and bounded by the same
 * timeout, AUTH and SELECT are pipelined ahead of the first command.
 *
 * Redis Cluster (a URL with ?cluster=1): the client is a front over one such
 * connection per master, learnt from the URL's node (CLUSTER SLOTS, asked
 * again after a MOVED, a lost node or a map that does not cover every slot).
 * A command goes to the master of its key's hash slot (a command with no key
 * to any master); MOVED and ASK (with ASKING first) are followed up to
 * DB_REDIS_CLUSTER_REDIRECTS_MAX times, each hop bounded by the timeout; the
 * other error replies (CROSSSLOT, TRYAGAIN, CLUSTERDOWN) reach the callback.
 * Order is kept per master: a redirected command may be overtaken by a later
 * one. The keys of one script or multi-key command must share a hash tag.
 * SCRIPT LOAD and SCRIPT FLUSH go to every known master. No replicas, no
 * MULTI/EXEC, no blocking commands beyond the timeout.
 */
#ifndef TETHER_LIB_DB_REDIS_ASYNC_H
#define TETHER_LIB_DB_REDIS_ASYNC_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis.h>

#include "err.h"
#include "loop.h"

struct db_redis_async;

/*
 * The answer to one command. rc is OK (reply holds Redis's answer), ERR_INTERNAL (an error
 * reply, in reply), ERR_TIMEOUT (no answer within the timeout), ERR_UNAVAIL (the connection
 * was lost first) or ERR_CLOSED (the client was freed). With ERR_TIMEOUT and ERR_UNAVAIL the
 * command may or may not have run. reply is NULL unless rc is OK or ERR_INTERNAL, and is
 * valid only during the call.
 */
typedef void (*db_redis_async_fn)(void *arg, err_t rc, const redisReply *reply);

/*
 * Parses url (redis://[:password@]host:port[/db][?cluster=0|1], db_redis_addr_parse);
 * ERR_INVAL if malformed. Connects lazily.
 */
err_t db_redis_async_new(struct loop *l, const char *url, unsigned timeout_ms,
                         struct db_redis_async **out);

/*
 * Fails every pending command with ERR_CLOSED (their callbacks run before this returns) and
 * frees r. Must not be called from one of r's own callbacks.
 */
void db_redis_async_free(struct db_redis_async *r);

/*
 * Sends a command given as argv (binary-safe; lens may be NULL for C strings); fn(arg, ...)
 * gets its answer. ERR_UNAVAIL when there is no connection and the backoff forbids a new one
 * yet, ERR_NOMEM; on error fn is never called.
 */
err_t db_redis_async_cmd(struct db_redis_async *r, int argc, const char **argv,
                         const size_t *lens, db_redis_async_fn fn, void *arg);

/* True while a connection is established (in a Cluster: to some node). */
bool db_redis_async_up(const struct db_redis_async *r);

/* Commands sent and not answered yet (in a Cluster, a redirected one counts once). */
unsigned db_redis_async_pending(const struct db_redis_async *r);

/*
 * True when key holds a Redis Cluster hash tag: a non-empty "{...}" (the first '{' to the
 * first '}' after it). Keys with the same tag live in one slot.
 */
bool db_redis_key_has_tag(const char *key, size_t len);

#endif
