/*
 * actor.c - the common life of an actor process (see actor.h).
 */
#include "actor.h"

#include <inttypes.h>
#include <poll.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor_once.h"
#include "clock.h"
#include "log.h"
#include "pmetrics.h"
#include "mp.h"
#include "msg.h"
#include "msg_sv.h"
#include "proc.h"

#define ACTOR_PROBE_MS 1000
#define ACTOR_OFF(f) offsetof(struct actor, f)

/* Settings of actors with once routes (their --print-config-doc lists them). */
static const struct cfg_def actor_once_defs[] = {
    {"TETHER_BUS_REPLY_KEEP", CFG_MS, "10m", 1000, 86400000, ACTOR_OFF(reply_keep_ms),
     "how long past its deadline the first answer of a non-idempotent request is kept, so that a "
     "re-send of it gets that answer back (covers clock skew between hosts)"},
    {"TETHER_BUS_REPLY_SWEEP", CFG_MS, "10s", 100, 3600000, ACTOR_OFF(reply_sweep_ms),
     "how often expired first answers are deleted (1000 at a time; a full batch brings the next "
     "pass forward)"},
};

/* Readiness and health follow the last answer of each declared store's probe. */
static void actor_stores_seen(struct actor *a)
{
    unsigned s = a->spec->stores;
    bool ok = (!(s & ACTOR_STORE_PG) || a->pg_ok) && (!(s & ACTOR_STORE_REDIS) || a->redis_ok) &&
              (!(s & ACTOR_STORE_CH) || a->ch_ok);
    a->stores_ok = ok;
    if (ok && !a->ready) {
        a->ready = true;
        proc_notify_ready();
        LOG_INFO("actor.ready", "ready (bus bound, stores reachable) after %" PRIu64 "ms",
                 clock_mono_ms() - a->started_mono);
    }
}

static void actor_on_pg_probe(void *arg, err_t rc, const PGresult *res)
{
    struct actor *a = arg;
    (void)res;
    a->pg_probing = false;
    a->pg_ok = rc == OK;
    actor_stores_seen(a);
}

static void actor_on_redis_probe(void *arg, err_t rc, const redisReply *rep)
{
    struct actor *a = arg;
    (void)rep;
    a->redis_probing = false;
    a->redis_ok = rc == OK;
    actor_stores_seen(a);
}

/*
 * PostgreSQL and Redis are probed through the non-blocking clients: a store that hangs
 * never holds up the loop, its probe simply stays unanswered until the client's timeout.
 */
static void actor_probe_stores(struct actor *a)
{
    unsigned s = a->spec->stores;
    if ((s & ACTOR_STORE_PG) && !a->pg_probing) {
        if (db_pg_async_exec(a->pga, "SELECT 1", 0, NULL, actor_on_pg_probe, a) == OK)
            a->pg_probing = true;
        else
            a->pg_ok = false;
    }
    if ((s & ACTOR_STORE_REDIS) && !a->redis_probing) {
        const char *ping[] = {"PING"};
        if (db_redis_async_cmd(a->ra, 1, ping, NULL, actor_on_redis_probe, a) == OK)
            a->redis_probing = true;
        else
            a->redis_ok = false;
    }
    if (s & ACTOR_STORE_CH) /* one bounded round trip (1 s) */
        a->ch_ok = db_ch_ping(&a->ch) == OK;
    actor_stores_seen(a);
}

static void actor_probe_timer(struct loop *l, void *arg)
{
    struct actor *a = arg;
    actor_probe_stores(a);
    /* before the first success probe faster, so readiness follows the store quickly */
    (void)loop_timer_add(l, a->ready ? ACTOR_PROBE_MS : 100, actor_probe_timer, a);
}

static void actor_on_health(struct actor *a, struct bus_req *req)
{
    struct msg_bus_health m = {
        .name = msg_str(proc_child_name(a->spec->name)),
        .instance = proc_instance(),
        .pid = (uint64_t)getpid(),
        .state = msg_str(a->stores_ok ? "up" : "degraded"),
        .store = msg_str(a->stores_ok ? "ok" : "unreachable"),
        .uptime_ms = clock_mono_ms() - a->started_mono,
    };
    (void)bus_reply_msg(req, &msg_bus_health_form, &m, NULL);
}

/* bus.echo: the body goes back as it came, read or not (msg_bus_echo is what senders put). */
static void actor_on_echo(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    (void)a;
    bus_reply(req, env->body.p, env->body.n);
}

/* ---- once routes ---- */

void actor_once_nothing_done(struct actor *a)
{
    a->once_nothing_done = true;
}

/* Ends the transaction of a once route: committed already (actor_once_save_commit), or rolled
 * back here; the actor's on_tx hears which. */
static void actor_tx_end(struct actor *a, bool committed)
{
    if (!committed)
        db_pg_rollback(&a->pg);
    if (a->spec->on_tx)
        a->spec->on_tx(a, committed ? ACTOR_TX_COMMIT : ACTOR_TX_ROLLBACK);
}

/* A second arrival: the first answer, or a refusal when the key names another request. */
static void actor_once_replay(struct bus_req *req, const struct actor_once_key *k,
                              const struct actor_once_prev *prev)
{
    const struct envelope *env = bus_req_env(req);
    if (!prev->same) {
        LOG_ERROR("bus.req_key_reused",
                  "request %s (%s from %s) has the key of an earlier request of another type or "
                  "body; refused",
                  k->key, msg_name(env->type), env->sender);
        (void)bus_reply_err(req, ERR_CONFLICT, "request id already used by another request");
        return;
    }
    LOG_INFO("bus.replayed",
             "%s request %s from %s (attempt %u) was handled already: its first "
             "answer again",
             msg_name(env->type), k->key, env->sender, env->attempt);
    (void)bus_reply(req, prev->body, prev->n);
}

/* Runs rt's handler on req, and answers a failure it returns (actor_handler_fn). */
static void actor_call(struct actor *a, const struct actor_route *rt, struct bus_req *req)
{
    err_t rc = rt->handle(a, req);
    if (rc != OK)
        actor_reply_err(req, rc);
}

/*
 * Runs a once route: claim the request's key, handle it, keep the answer and
 * commit, in one transaction; the answer leaves only after the commit, so a
 * caller never sees an answer whose effect could still be rolled back.
 */
static void actor_serve_once(struct actor *a, const struct actor_route *rt, struct bus_req *req)
{
    struct actor_once_key k;
    struct actor_once_prev prev;
    bool first = false;

    actor_once_key_of(bus_req_env(req), (uint64_t)a->reply_keep_ms, clock_wall_ms(), &k);
    err_t rc = actor_once_claim(&a->pg, &k, &first, &prev);
    if (rc != OK || !first)
        db_pg_rollback(&a->pg);
    if (rc != OK) {
        (void)bus_reply_err(req, ERR_UNAVAIL,
                            "the store (PostgreSQL) could not record the request; retry");
        return;
    }
    if (!first) {
        actor_once_replay(req, &k, &prev);
        actor_once_prev_free(&prev);
        return;
    }

    a->once_nothing_done = false;
    if (a->spec->on_tx)
        a->spec->on_tx(a, ACTOR_TX_BEGIN);
    bus_req_hold(req);
    actor_call(a, rt, req);
    const struct envelope *ans = bus_req_held(req);
    if (!ans) {
        /* an ASSERT: a once route answers before it returns (actor.h) */
        LOG_ERROR("actor.once_async", "the %s handler returned without answering",
                  msg_name(k.type));
        abort();
    }
    if (ans->kind != ENV_REPLY || a->once_nothing_done) {
        actor_tx_end(a, false);
        (void)bus_req_release(req);
        return;
    }
    bool committed = actor_once_save_commit(&a->pg, &k, ans->body.p, ans->body.n) == OK;
    actor_tx_end(a, committed);
    if (!committed) {
        /* the effect's fate is what PostgreSQL decided; the caller must not take it as done */
        (void)bus_req_release_err(req, ERR_UNAVAIL,
                                  "the store (PostgreSQL) could not commit the request; retry");
        return;
    }
    (void)bus_req_release(req);
}

void actor_once_serve(struct actor *a, struct bus_req *req)
{
    uint16_t type = bus_req_env(req)->type;
    const struct actor_route *rt = type < ACTOR_ROUTE_TYPES ? a->route_of[type] : NULL;
    if (rt && rt->once) {
        actor_serve_once(a, rt, req);
        return;
    }
    /* an ASSERT: only a once route's fast answer hands a request back */
    LOG_ERROR("actor.once_unrouted", "no once route for message type %u (%s)", type,
              msg_name(type));
    (void)bus_reply_err(req, ERR_INTERNAL, "no once route for the request");
}

static void actor_once_sweep_timer(struct loop *l, void *arg)
{
    struct actor *a = arg;
    unsigned n = 0;
    if (db_pg_up(&a->pg) && actor_once_sweep(&a->pg, &n) == OK && n > 0)
        LOG_DEBUG("bus.replies_swept", "deleted %u expired first answers", n);
    (void)loop_timer_add(l, n >= ACTOR_ONCE_SWEEP_BATCH ? 100 : (uint64_t)a->reply_sweep_ms,
                         actor_once_sweep_timer, a);
}

static bool actor_has_once(const struct actor_spec *spec)
{
    for (unsigned i = 0; i < spec->nroutes; i++)
        if (spec->routes[i].once)
            return (spec->stores & ACTOR_STORE_PG) != 0;
    return false;
}

static void actor_on_request(struct bus_req *req, void *arg)
{
    struct actor *a = arg;
    const struct envelope *env = bus_req_env(req);

    switch (env->type) {
    case MSG_HEALTH_PING:
        actor_on_health(a, req);
        return;
    case MSG_BUS_ECHO:
        actor_on_echo(a, req);
        return;
    default:
        break;
    }
    const struct actor_route *rt = env->type < ACTOR_ROUTE_TYPES ? a->route_of[env->type] : NULL;
    if (rt) {
        if (rt->once && (a->spec->stores & ACTOR_STORE_PG) && actor_once_applies(env)) {
            if (!rt->fast || !rt->fast(a, req))
                actor_serve_once(a, rt, req);
        } else
            actor_call(a, rt, req);
        return;
    }
    LOG_WARN("bus.unknown_type", "no handler for message type %u (%s) from %s", env->type,
             msg_name(env->type), env->sender);
    bus_reply_err(req, ERR_PROTO, "unknown message type");
}

static void actor_on_bus(struct loop *l, int fd, short revents, void *arg)
{
    (void)l;
    (void)fd;
    (void)revents;
    bus_dispatch(((struct actor *)arg)->bus);
}

static void actor_begin_stop(struct actor *a, const char *why)
{
    if (loop_stopping(&a->loop)) {
        /* a second request to stop means now (PostgreSQL's fast shutdown) */
        a->stop_deadline_mono = clock_mono_ms();
        return;
    }
    LOG_INFO("actor.stopping", "stopping: %s", why);
    a->stop_deadline_mono = clock_mono_ms() + (uint64_t)a->cfg.shutdown_grace_ms;
    loop_stop(&a->loop);
}

static void actor_on_signal(struct loop *l, int signo, void *arg)
{
    struct actor *a = arg;
    (void)l;
    if (signo == SIGTERM || signo == SIGINT)
        actor_begin_stop(a, signo == SIGTERM ? "SIGTERM" : "SIGINT");
    /* SIGHUP: nothing reloadable yet; ignored rather than fatal */
}

static void actor_on_parent(struct loop *l, int fd, short revents, void *arg)
{
    struct actor *a = arg;
    (void)revents;
    if (proc_parent_gone(fd)) {
        loop_unwatch(l, fd);
        LOG_WARN("actor.orphaned", "the supervisor is gone; exiting");
        a->stop_deadline_mono = clock_mono_ms();
        loop_stop(l);
    }
}

static int actor_run(struct actor *a, int argc, char **argv)
{
    const struct actor_spec *spec = a->spec;
    struct cfg_table tables[3] = {
        {cfg_common_defs, cfg_common_defs_len, &a->cfg},
    };
    size_t ntables = 1;
    if (actor_has_once(spec))
        tables[ntables++] = (struct cfg_table)CFG_TABLE(actor_once_defs, a);
    if (spec->cfg)
        tables[ntables++] = (struct cfg_table){spec->cfg, spec->ncfg, spec->cfg_base};
    enum cfg_action action;
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    char url[BUS_URL_MAX * 2];
    const char *listen;

    log_init(spec->name, LOG_LVL_INFO, true);
    for (unsigned i = 0; i < spec->nroutes; i++) {
        const struct actor_route *rt = &spec->routes[i];
        /* an ASSERT of the route table: a type it can index, one route a type, a handler */
        if (rt->type >= ACTOR_ROUTE_TYPES || a->route_of[rt->type] || !rt->handle) {
            LOG_ERROR("actor.bad_route", "route %u (%s) is out of range, repeated or empty",
                      rt->type, msg_name(rt->type));
            return EXIT_PERMANENT;
        }
        a->route_of[rt->type] = rt;
    }
    if (cfg_load(tables, ntables, argc, argv, spec->name, &action) != OK)
        return EXIT_PERMANENT;
    if (action == CFG_PRINTED)
        return 0;
    if (cfg_common_apply(&a->cfg, proc_child_name(spec->name)) != OK)
        return EXIT_PERMANENT;
    a->started_mono = clock_mono_ms();
    /* figures are a view, not a duty: without the file the actor serves on, uncounted */
    (void)pm_open(a->cfg.run_dir, proc_child_name(spec->name));

    /* signals first: nng's threads must inherit the blocked mask */
    if (loop_init(&a->loop) != OK || loop_signals(&a->loop, sigs, 3, actor_on_signal, a) != OK)
        return EXIT_TEMPORARY;
    signal(SIGPIPE, SIG_IGN);

    char busdir[BUS_URL_MAX];
    cfg_bus_dir(&a->cfg, busdir, sizeof(busdir));
    struct bus_opts bo = {
        .proc = spec->name,
        .self = proc_child_name(spec->name),
        .instance = proc_instance(),
        .dir = busdir,
        .recv_max = (size_t)a->cfg.bus_recv_max,
        .timeout_ms = (uint32_t)a->cfg.bus_timeout_ms,
        .inflight = (unsigned)a->cfg.bus_inflight,
        .tap = a->cfg.bus_tap,
        .follow_faults = true,
    };
    if (bus_open(&a->bus, &bo) != OK)
        return EXIT_TEMPORARY;
    listen = getenv("TETHER_BUS_LISTEN");
    if (!listen || !*listen) {
        bus_actor_url(a->bus, spec->name, bo.instance, url, sizeof(url));
        listen = url;
    }
    /* on a clustered node the leader-only actor also serves the other nodes' gateways */
    const char *tcp = a->cfg.bus_requests_listen;
    if (tcp && *tcp) {
        char both[sizeof(url)];
        int w = snprintf(both, sizeof(both), "%s,%s", listen, tcp);
        if (w < 0 || (size_t)w >= sizeof(both)) {
            LOG_ERROR("cfg.invalid", "TETHER_BUS_REQUESTS_LISTEN is too long: %s", tcp);
            return EXIT_PERMANENT;
        }
        memcpy(url, both, (size_t)w + 1);
        listen = url;
    }

    if (spec->stores & ACTOR_STORE_PG)
        db_pg_init(&a->pg, a->cfg.pg_url, (unsigned)a->cfg.pg_statement_timeout_ms);
    if (spec->stores & ACTOR_STORE_PG) {
        struct db_pg_async_opts po = {
            .url = a->cfg.pg_url,
            .conns = (unsigned)a->cfg.pg_pool,
            .statement_timeout_ms = (unsigned)a->cfg.pg_statement_timeout_ms,
            .timeout_ms = (unsigned)a->cfg.bus_timeout_ms,
        };
        if (db_pg_async_new(&a->loop, &po, &a->pga) != OK)
            return EXIT_PERMANENT;
    }
    if ((spec->stores & ACTOR_STORE_REDIS) &&
        db_redis_async_new(&a->loop, a->cfg.redis_url, 2000, &a->ra) != OK) {
        LOG_ERROR("cfg.invalid",
                  "invalid TETHER_REDIS_URL (redis://[:password@]host:port[/db][?cluster=1])");
        return EXIT_PERMANENT;
    }
    if ((spec->stores & ACTOR_STORE_REDIS) &&
        db_redis_init(&a->redis, a->cfg.redis_url, 2000) != OK) {
        LOG_ERROR("cfg.invalid",
                  "invalid TETHER_REDIS_URL (redis://[:password@]host:port[/db][?cluster=1])");
        return EXIT_PERMANENT;
    }
    if ((spec->stores & ACTOR_STORE_CH) && db_ch_init(&a->ch, a->cfg.ch_url, 5000) != OK)
        return EXIT_TEMPORARY;
    if (spec->init && spec->init(a) != OK)
        return EXIT_TEMPORARY;

    if (bus_serve(a->bus, listen, actor_on_request, a, NULL) != OK)
        return EXIT_TEMPORARY;
    if (loop_watch(&a->loop, bus_fd(a->bus), POLLIN, actor_on_bus, a) != OK)
        return EXIT_TEMPORARY;
    a->parent_fd = proc_parent_fd();
    if (a->parent_fd >= 0)
        (void)loop_watch(&a->loop, a->parent_fd, POLLIN, actor_on_parent, a);
    LOG_INFO("actor.started", "serving %s", listen);

    actor_probe_timer(&a->loop, a);
    if (actor_has_once(spec))
        (void)loop_timer_add(&a->loop, (uint64_t)a->reply_sweep_ms, actor_once_sweep_timer, a);
    while (!loop_stopping(&a->loop) ||
           (bus_inflight(a->bus) > 0 && clock_mono_ms() < a->stop_deadline_mono))
        loop_run_once(&a->loop, loop_stopping(&a->loop) ? 50 : -1);
    if (bus_inflight(a->bus) > 0)
        LOG_WARN("actor.abandoned", "stopping with %u requests unanswered", bus_inflight(a->bus));
    return 0;
}

int actor_main(const struct actor_spec *spec, int argc, char **argv)
{
    struct actor a;
    memset(&a, 0, sizeof(a));
    a.spec = spec;
    a.parent_fd = -1;
    int code = actor_run(&a, argc, argv);

    /* first: what they still hold is answered ERR_CLOSED, through the bus and the state */
    db_redis_async_free(a.ra);
    db_pg_async_free(a.pga);
    if (spec->fini)
        spec->fini(&a);
    bus_close(a.bus);
    if (spec->stores & ACTOR_STORE_PG)
        db_pg_fini(&a.pg);
    if (spec->stores & ACTOR_STORE_REDIS)
        db_redis_fini(&a.redis);
    if (spec->stores & ACTOR_STORE_CH)
        db_ch_fini(&a.ch);
    loop_fini(&a.loop);
    struct cfg_table tables[3] = {
        {cfg_common_defs, cfg_common_defs_len, &a.cfg},
    };
    size_t ntables = 1;
    if (actor_has_once(spec))
        tables[ntables++] = (struct cfg_table)CFG_TABLE(actor_once_defs, &a);
    if (spec->cfg)
        tables[ntables++] = (struct cfg_table){spec->cfg, spec->ncfg, spec->cfg_base};
    pm_close();
    cfg_free(tables, ntables);
    if (code == 0)
        LOG_INFO("actor.stopped", "stopped");
    return code;
}

void actor_reply_err(struct bus_req *req, err_t rc)
{
    const char *name = msg_name(bus_req_env(req)->type);
    char msg[128];
    switch (rc) {
    case ERR_UNAVAIL:
    case ERR_TIMEOUT:
    case ERR_CLOSED:
        (void)bus_reply_err(req, rc == ERR_TIMEOUT ? ERR_TIMEOUT : ERR_UNAVAIL,
                            "the store is unavailable; retry later");
        return;
    case ERR_INVAL:
    case ERR_PROTO:
        snprintf(msg, sizeof(msg), "invalid %s request", name);
        (void)bus_reply_err(req, ERR_INVAL, msg);
        return;
    case ERR_NOTFOUND:
    case ERR_CONFLICT:
    case ERR_EXISTS:
    case ERR_TOOBIG:
    case ERR_DENIED:
    case ERR_UNAUTH:
    case ERR_QUOTA:
        (void)bus_reply_err(req, rc, err_str(rc));
        return;
    default:
        break;
    }
    LOG_ERROR("actor.handler_failed", "%s: unexpected result %s", name, err_name(rc));
    (void)bus_reply_err(req, ERR_INTERNAL, "internal error");
}

void actor_reply_store_err(struct bus_req *req, const char *what, err_t rc)
{
    char msg[160];
    switch (rc) {
    case ERR_UNAVAIL:
    case ERR_TIMEOUT:
    case ERR_CLOSED: /* CLOSED: the client is closing, as the process stops */
        snprintf(msg, sizeof(msg), "%s: the store is unavailable; retry later", what);
        (void)bus_reply_err(req, rc == ERR_TIMEOUT ? ERR_TIMEOUT : ERR_UNAVAIL, msg);
        return;
    case ERR_INVAL:
        actor_reply_err(req, rc);
        return;
    default:
        break;
    }
    char ev[48];
    snprintf(ev, sizeof(ev), "%s.store_failed", what);
    LOG_ERROR(ev, "unexpected store result: %s", err_name(rc));
    snprintf(msg, sizeof(msg), "%s: unexpected result from the store", what);
    (void)bus_reply_err(req, ERR_INTERNAL, msg);
}
