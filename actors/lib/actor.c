/*
 * actor.c - the common life of an actor process (see actor.h).
 */
#include "actor.h"

#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mp.h"
#include "msg.h"
#include "proc.h"

#define ACTOR_PROBE_MS 1000

static void actor_probe_stores(struct actor *a)
{
    bool ok = true;
    unsigned s = a->spec->stores;
    if ((s & ACTOR_STORE_PG) && db_pg_ping(&a->pg) != OK)
        ok = false;
    if ((s & ACTOR_STORE_REDIS) && db_redis_ping(&a->redis) != OK)
        ok = false;
    if ((s & ACTOR_STORE_CH) && db_ch_ping(&a->ch) != OK)
        ok = false;
    a->stores_ok = ok;
    if (ok && !a->ready) {
        a->ready = true;
        proc_notify_ready();
        LOG_INFO("actor.ready", "ready (bus bound, stores reachable) after %" PRIu64 "ms",
                 clock_mono_ms() - a->started_mono);
    }
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
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 6);
    mp_put_kv_str(&w, "name", proc_child_name(a->spec->name));
    mp_put_kv_uint(&w, "instance", proc_instance());
    mp_put_kv_uint(&w, "pid", (uint64_t)getpid());
    mp_put_kv_str(&w, "state", a->stores_ok ? "up" : "degraded");
    mp_put_kv_str(&w, "store", a->stores_ok ? "ok" : "unreachable");
    mp_put_kv_uint(&w, "uptime_ms", clock_mono_ms() - a->started_mono);
    if (mp_writer_err(&w) == OK)
        bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        bus_reply_err(req, ERR_NOMEM, NULL);
    mp_writer_fini(&w);
}

static void actor_on_echo(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    (void)a;
    bus_reply(req, env->body.p, env->body.n);
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
    for (unsigned i = 0; i < a->spec->nroutes; i++) {
        if (a->spec->routes[i].type == env->type) {
            a->spec->routes[i].fn(a, req);
            return;
        }
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
    struct cfg_table tables[2] = {
        {cfg_common_defs, cfg_common_defs_len, &a->cfg},
        {spec->cfg, spec->ncfg, spec->cfg_base},
    };
    size_t ntables = spec->cfg ? 2 : 1;
    enum cfg_action action;
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    char url[BUS_URL_MAX];
    const char *listen;

    log_init(spec->name, LOG_LVL_INFO, true);
    if (cfg_load(tables, ntables, argc, argv, spec->name, &action) != OK)
        return EXIT_PERMANENT;
    if (action == CFG_PRINTED)
        return 0;
    if (cfg_common_apply(&a->cfg, proc_child_name(spec->name)) != OK)
        return EXIT_PERMANENT;
    a->started_mono = clock_mono_ms();

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

    if (spec->stores & ACTOR_STORE_PG)
        db_pg_init(&a->pg, a->cfg.pg_url, (unsigned)a->cfg.pg_statement_timeout_ms);
    if ((spec->stores & ACTOR_STORE_REDIS) && db_redis_init(&a->redis, a->cfg.redis_url, 2000) != OK) {
        LOG_ERROR("cfg.invalid", "invalid TETHER_REDIS_URL (redis://[:password@]host:port[/db])");
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
    struct cfg_table tables[2] = {
        {cfg_common_defs, cfg_common_defs_len, &a.cfg},
        {spec->cfg, spec->ncfg, spec->cfg_base},
    };
    cfg_free(tables, spec->cfg ? 2 : 1);
    if (code == 0)
        LOG_INFO("actor.stopped", "stopped");
    return code;
}

void actor_reply_store_err(struct bus_req *req, const char *what, err_t rc)
{
    char msg[128];
    switch (rc) {
    case ERR_UNAVAIL:
    case ERR_TIMEOUT:
        snprintf(msg, sizeof(msg), "the %s store is unavailable; retry later", what);
        (void)bus_reply_err(req, rc, msg);
        return;
    case ERR_INVAL:
        snprintf(msg, sizeof(msg), "the %s store refused a value", what);
        (void)bus_reply_err(req, ERR_INVAL, msg);
        return;
    default:
        break;
    }
    char ev[48];
    snprintf(ev, sizeof(ev), "%s.store_failed", what);
    LOG_ERROR(ev, "unexpected store result: %s", err_name(rc));
    snprintf(msg, sizeof(msg), "unexpected result from the %s store", what);
    (void)bus_reply_err(req, ERR_INTERNAL, msg);
}
