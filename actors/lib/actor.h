/*
 * actor.h - the skeleton every actor process runs.
 *
 * actor_main() loads configuration, joins the bus on the actor's endpoint,
 * connects the stores the actor declares, reports ready to the supervisor
 * once the bus is bound and every store answers, and then serves requests
 * from one poll loop until SIGTERM (finishing in-flight requests within
 * TETHER_SHUTDOWN_GRACE) or the supervisor's death. health.ping and
 * bus.echo are answered here; everything else goes to the actor's routes.
 */
#ifndef TETHER_LIB_ACTOR_H
#define TETHER_LIB_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "cfg.h"
#include "db_ch.h"
#include "db_pg.h"
#include "db_pg_async.h"
#include "db_redis.h"
#include "db_redis_async.h"
#include "loop.h"

enum actor_store {
    ACTOR_STORE_PG = 1,
    ACTOR_STORE_REDIS = 2,
    ACTOR_STORE_CH = 4,
};

struct actor;

/*
 * A request handler. OK: it has answered req (bus_reply, bus_reply_err) or will answer it
 * from a completion it armed, which then answers a failure with actor_reply_err. Any other
 * code: it has not answered and will not, and the dispatcher answers with actor_reply_err,
 * the one translation of a code into an answer. So a handler returns its decoder's or its
 * store's code as it stands, and answers by itself only what carries words of its own
 * ("session not found").
 */
typedef err_t (*actor_handler_fn)(struct actor *a, struct bus_req *req);

/*
 * A route with once set is a non-idempotent write, handled once per request
 * (docs/bus.md, "Requests handled once"): its handler runs inside a
 * PostgreSQL transaction on a->pg that also records its answer under the
 * request's key, and a second arrival of the request gets that answer back
 * without running the handler. Such a handler must reply before it returns
 * and must not end the transaction itself; an error answer rolls back all
 * it wrote (a re-send then runs it again), as does actor_once_nothing_done.
 * Effects outside PostgreSQL (events) must wait for the spec's on_tx.
 */
struct actor_route {
    uint16_t type;
    actor_handler_fn handle;
    bool once;
    /*
     * A once route's read-only answer, tried before the transaction. False: handle the request
     * the once way now (fast replied nothing). True: fast took the request and answers it
     * itself, at once or from a store completion (a->pga), either with a reply (the request
     * changes nothing now, so nothing is recorded and a re-send is simply answered again) or
     * by handing it back with actor_once_serve() when a write is needed. May be NULL.
     */
    bool (*fast)(struct actor *a, struct bus_req *req);
};

/* How the transaction of a once route goes (actor_spec.on_tx). */
enum actor_tx {
    ACTOR_TX_BEGIN,    /* before the handler runs */
    ACTOR_TX_COMMIT,   /* its effect and answer are committed; the answer is being sent */
    ACTOR_TX_ROLLBACK, /* nothing it wrote remains */
};

struct actor_spec {
    const char *name; /* "session-manager" */
    unsigned stores;  /* enum actor_store bits */
    const struct actor_route *routes;
    unsigned nroutes;
    const struct cfg_def *cfg; /* process-specific settings, may be NULL */
    unsigned ncfg;
    void *cfg_base;
    err_t (*init)(struct actor *a); /* after the stores are declared, before serving */
    void (*fini)(struct actor *a);
    void (*on_tx)(struct actor *a, enum actor_tx t); /* once routes only; may be NULL */
};

#define ACTOR_ROUTE_TYPES 256 /* message types a route may serve: 0-255 (msg.h) */

struct actor {
    const struct actor_spec *spec;
    const struct actor_route *route_of[ACTOR_ROUTE_TYPES]; /* the spec's routes by type */
    struct cfg_common cfg;
    struct loop loop;
    struct bus *bus;
    struct db_pg pg;
    struct db_redis redis;
    struct db_ch ch;
    struct db_pg_async *pga;     /* non-blocking pool (ACTOR_STORE_PG): probes, new handlers */
    struct db_redis_async *ra;   /* non-blocking Redis (ACTOR_STORE_REDIS) */
    bool pg_ok, redis_ok, ch_ok; /* the last probe of each */
    bool pg_probing, redis_probing;
    bool ready;     /* told the supervisor */
    bool stores_ok; /* every declared store answered at the last probe */
    uint64_t started_mono;
    uint64_t stop_deadline_mono;
    int parent_fd;
    void *state; /* the actor's own */
    /* once routes (actor.c) */
    long long reply_keep_ms;  /* TETHER_BUS_REPLY_KEEP */
    long long reply_sweep_ms; /* TETHER_BUS_REPLY_SWEEP */
    bool once_nothing_done;   /* set by actor_once_nothing_done during the handler */
};

/*
 * The one translation of a handler's failure into its answer (the dispatcher's, and a
 * completion's): transient trouble (ERR_UNAVAIL, ERR_TIMEOUT, ERR_CLOSED) goes back as
 * ERR_UNAVAIL or ERR_TIMEOUT with "the store is unavailable; retry later", so the gateway
 * answers 503 with x-should-retry: true; ERR_INVAL and ERR_PROTO (the decoder's, or a value
 * the store refused) as ERR_INVAL "invalid <message> request"; the codes a caller acts on
 * (ERR_NOTFOUND, ERR_CONFLICT, ERR_EXISTS, ERR_TOOBIG, ERR_DENIED, ERR_UNAUTH, ERR_QUOTA) as
 * themselves; anything else is logged here, once, as actor.handler_failed and answered
 * ERR_INTERNAL. The store wrapper has logged the native detail already.
 */
void actor_reply_err(struct bus_req *req, err_t rc);

/*
 * The answer to a failed store call, named by what (the operation, "run.ensure"): transient
 * trouble (ERR_UNAVAIL, ERR_TIMEOUT, ERR_CLOSED) as ERR_UNAVAIL or ERR_TIMEOUT "<what>: the store
 * is unavailable; retry later"; a value the store refused (ERR_INVAL) as actor_reply_err does;
 * anything else logged once as <what>.store_failed and answered ERR_INTERNAL. The store
 * wrapper has logged the native detail already.
 */
void actor_reply_store_err(struct bus_req *req, const char *what, err_t rc);

/*
 * Called by the handler of a once route whose answer changed nothing (a
 * dequeue that found no run): the transaction is rolled back and no answer
 * is kept, so a re-send runs the handler again, as harmlessly.
 */
void actor_once_nothing_done(struct actor *a);

/*
 * Handles req the once way (its route's handler inside the transaction): what a route's fast
 * answer calls when the request it took needs a write after all. Owner's thread.
 */
void actor_once_serve(struct actor *a, struct bus_req *req);

/*
 * Opens the instance's event socket: ipc://<bus dir>/<actor>.events.<instance>.ipc, and the
 * tcp:// endpoint of TETHER_BUS_EVENTS_LISTEN when the supervisor set one (actor_events.c).
 */
err_t actor_events_open(struct actor *a, struct bus_pub **out);

/* Runs the actor; returns the process exit code (0, EXIT_PERMANENT or EXIT_TEMPORARY). */
int actor_main(const struct actor_spec *spec, int argc, char **argv);

#endif
