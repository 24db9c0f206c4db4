/*
 * db_redis_cluster_int.h - what db_redis_async.c and db_redis_cluster.c give
 * each other, for Redis Cluster mode (db_redis_async.h states the contract
 * callers see). Not for use outside these two files and their tests.
 *
 * A cluster client is a front: one plain client (a "node") per master it has
 * met, each with its own connection, timeout and backoff; the front picks the
 * node by the hash slot of the command's key and follows MOVED and ASK.
 */
#ifndef TETHER_LIB_DB_REDIS_CLUSTER_INT_H
#define TETHER_LIB_DB_REDIS_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "db_redis.h"
#include "db_redis_async.h"

/* Redis Cluster's key space: CRC16(key) mod 16384. */
#define DB_REDIS_CLUSTER_SLOTS 16384u
/* Masters one client connects to at most (each is a connection on the loop: LOOP_MAX_FDS). */
#define DB_REDIS_CLUSTER_NODES_MAX 32u
/* Redirects (MOVED, ASK) one command follows before its error reply goes to the caller. */
#define DB_REDIS_CLUSTER_REDIRECTS_MAX 5u

struct db_redis_cluster;

/* ---- db_redis_async.c: one node's plain client ---- */

/*
 * A plain client of the node at a (a->cluster is ignored), as db_redis_async_new; a node of
 * a cluster does not suggest ?cluster=1 when it answers MOVED.
 */
struct db_redis_async *db_redis_async_node_new(struct loop *l, const struct db_redis_addr *a,
                                               unsigned timeout_ms);

/*
 * db_redis_async_cmd with a command formatted already (redisFormatCommandArgv); hiredis copies
 * it, so cmd may be freed on return. Same answers and errors.
 */
err_t db_redis_async_node_cmd(struct db_redis_async *r, const char *cmd, size_t len,
                              db_redis_async_fn fn, void *arg);

/* ---- db_redis_cluster.c: the front ---- */

/* A cluster client that learns the others from the node at seed; connects lazily. */
struct db_redis_cluster *db_redis_cluster_new(struct loop *l, const struct db_redis_addr *seed,
                                              unsigned timeout_ms);
/* As db_redis_async_free: every pending command fails with ERR_CLOSED before it returns. */
void db_redis_cluster_free(struct db_redis_cluster *c);
/* As db_redis_async_cmd, routed by slot (db_redis_async.h, "Redis Cluster"). */
err_t db_redis_cluster_cmd(struct db_redis_cluster *c, int argc, const char **argv,
                           const size_t *lens, db_redis_async_fn fn, void *arg);
/* True while a connection to some node is established. */
bool db_redis_cluster_up(const struct db_redis_cluster *c);
/* Commands given and not answered yet (a redirected one counts once). */
unsigned db_redis_cluster_pending(const struct db_redis_cluster *c);

/* ---- pure, for routing (and its unit test) ---- */

/* The hash slot of a key: CRC16/XMODEM of its {hash tag} when it has a non-empty one. */
unsigned db_redis_cluster_slot(const char *key, size_t len);

/*
 * The argv index of the key a command is routed by, or -1 for a command with no key (sent to
 * any node): argv[1] in general; EVAL, EVALSHA, FCALL (and their _RO forms) argv[3] when
 * numkeys > 0; XREAD, XREADGROUP the first key after STREAMS; OBJECT, MEMORY, XINFO, XGROUP,
 * BITOP argv[2]. lens may be NULL for C strings.
 */
int db_redis_cluster_key_index(int argc, const char **argv, const size_t *lens);

/*
 * Parses an error reply "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" (host may
 * be empty: the node that answered). False for any other reply or a malformed one.
 */
bool db_redis_cluster_redirect_parse(const char *s, size_t n, bool *ask, unsigned *slot, char *host,
                                     size_t host_cap, int *port);

#endif
