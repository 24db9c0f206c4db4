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
#include "db_redis.h"
#include "loop.h"

enum actor_store {
    ACTOR_STORE_PG = 1,
    ACTOR_STORE_REDIS = 2,
    ACTOR_STORE_CH = 4,
};

struct actor;

/* A request handler: fills and sends the reply with bus_reply()/bus_reply_err(). */
typedef void (*actor_handler_fn)(struct actor *a, struct bus_req *req);

struct actor_route {
    uint16_t type;
    actor_handler_fn fn;
};

struct actor_spec {
    const char *name;                  /* "session-manager" */
    unsigned stores;                   /* enum actor_store bits */
    const struct actor_route *routes;
    unsigned nroutes;
    const struct cfg_def *cfg;         /* process-specific settings, may be NULL */
    unsigned ncfg;
    void *cfg_base;
    err_t (*init)(struct actor *a);    /* after the stores are declared, before serving */
    void (*fini)(struct actor *a);
};

struct actor {
    const struct actor_spec *spec;
    struct cfg_common cfg;
    struct loop loop;
    struct bus *bus;
    struct db_pg pg;
    struct db_redis redis;
    struct db_ch ch;
    bool ready;        /* told the supervisor */
    bool stores_ok;    /* every declared store answered at the last probe */
    uint64_t started_mono;
    uint64_t stop_deadline_mono;
    int parent_fd;
    void *state;       /* the actor's own */
};

/*
 * The one reply to a failed store call of a handler: transient trouble (ERR_UNAVAIL,
 * ERR_TIMEOUT) goes back as itself with "the <store> store is unavailable; retry later", so
 * the gateway answers 503 with x-should-retry: true; ERR_INVAL (a value the store refused)
 * as itself; anything else is logged here once as <what>.store_failed and answered
 * ERR_INTERNAL. The store wrapper has logged the native detail already.
 */
void actor_reply_store_err(struct bus_req *req, const char *what, err_t rc);

/* Runs the actor; returns the process exit code (0, EXIT_PERMANENT or EXIT_TEMPORARY). */
int actor_main(const struct actor_spec *spec, int argc, char **argv);

#endif
