/*
 * echo-agent - an example Tether worker: it dequeues runs of the `echo` task
 * and, for each, answers every message on the session's .in stream with an
 * echo on .out. See README.md next to this file.
 *
 * main.c reads the configuration, long-polls the dequeue route for as many
 * runs as it has free slots, starts one thread per run (run.c), and on
 * SIGTERM/SIGINT stops dequeuing, lets the runs complete for up to 5 s, and
 * exits. Exit codes: 0 stopped on a signal; 100 bad configuration (including
 * a secret key or task the server refuses); 111 could not start.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "http.h"
#include "jlog.h"

#define EA_EXIT_CONFIG 100
#define EA_EXIT_START 111
#define EA_WAIT_SECONDS 30 /* dequeue long-poll */
#define EA_GRACE_MS 5000L  /* on shutdown, runs get this long to complete */

/* The only state a signal handler touches: how many stop signals came (main reads it). */
static volatile sig_atomic_t ea_signals;

static void ea_on_signal(int sig)
{
    (void)sig;
    if (ea_signals < 2)
        ea_signals++;
}

static int ea_stopping(void *arg)
{
    (void)arg;
    return ea_signals > 0;
}

static long ea_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for CLOCK_MONOTONIC */
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration ---- */

/* Copies getenv(name) (or def when unset or empty) into out; false (and logged) when it is
 * missing or does not fit. */
static bool ea_env(const char *name, const char *def, char *out, size_t cap)
{
    const char *v = getenv(name);
    if (!v || !v[0])
        v = def;
    if (!v || !v[0]) {
        LOG_ERROR("config.invalid", NULL, "%s is not set", name);
        return false;
    }
    if (strlen(v) >= cap) {
        LOG_ERROR("config.invalid", NULL, "%s is longer than %zu characters", name, cap - 1);
        return false;
    }
    memcpy(out, v, strlen(v) + 1);
    return true;
}

static bool ea_env_int(const char *name, const char *def, int lo, int hi, int *out)
{
    char n[32];
    char *end;
    if (!ea_env(name, def, n, sizeof(n)))
        return false;
    errno = 0;
    long v = strtol(n, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        LOG_ERROR("config.invalid", NULL, "%s must be an integer in %d..%d, not \"%s\"", name, lo,
                  hi, n);
        return false;
    }
    *out = (int)v;
    return true;
}

/* Reads every setting and reports every problem before giving up. */
static ea_err_t ea_cfg_load(struct ea_cfg *c)
{
    bool ok = true;
    ok &= ea_env("TETHER_URL", "http://127.0.0.1:8787", c->url, sizeof(c->url));
    size_t ul = strlen(c->url);
    while (ul > 0 && c->url[ul - 1] == '/')
        c->url[--ul] = '\0';
    if (ok && strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0) {
        LOG_ERROR("config.invalid", NULL, "TETHER_URL must start with http:// or https://");
        ok = false;
    }
    if (!getenv("TETHER_SECRET_KEY") || !getenv("TETHER_SECRET_KEY")[0]) {
        LOG_ERROR("config.invalid", NULL,
                  "TETHER_SECRET_KEY is not set: the dequeue route needs the environment's "
                  "secret key");
        ok = false;
    } else {
        ok &= ea_env("TETHER_SECRET_KEY", NULL, c->key, sizeof(c->key));
    }
    ok &= ea_env("TETHER_ECHO_TASK", "echo", c->task, sizeof(c->task));
    ok &= ea_env_int("TETHER_ECHO_MAX_RUNS", "8", 1, EA_MAX_RUNS_CAP, &c->max_runs);
    /* 3 s at least, so that a heartbeat every lease/3 is a whole second apart */
    ok &= ea_env_int("TETHER_ECHO_LEASE_SECONDS", "30", 3, 3600, &c->lease_s);
    ok &= ea_env_int("TETHER_ECHO_SLEEP_SECONDS", "3600", 0, 7 * 86400, &c->sleep_s);

    /* The worker id stays the same across dequeues so the server knows who holds a lease. */
    char host[HOST_NAME_MAX + 1];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(c->worker_id, sizeof(c->worker_id), "echo-%.100s-%ld", host, (long)getpid());
    return ok ? EA_OK : EA_ERR_INVAL;
}

/* ---- the slot table ---- */

struct ea_main {
    struct ea_agent ag;
    struct http_client http;
    /* Runs in progress. We ask for at most cfg.max_runs at once; the table is bigger so that a
     * server handing out more than asked for does not make us drop leased runs. */
    struct ea_run *slots[EA_MAX_RUNS_CAP];
};

/* Joins the runs that ended; returns how many are still running. */
static int ea_reap(struct ea_main *m)
{
    int busy = 0;
    for (int i = 0; i < EA_MAX_RUNS_CAP; i++) {
        if (!m->slots[i])
            continue;
        if (ea_run_ended(m->slots[i])) {
            ea_run_join(m->slots[i]);
            m->slots[i] = NULL;
        } else {
            busy++;
        }
    }
    return busy;
}

/* Waits up to ms for a run to end; the caller reaps and loops (and sees signals then). */
static void ea_wait_run_end(struct ea_main *m, long ms)
{
    struct timespec until;
    bool any_ended = false;
    (void)clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    (void)pthread_mutex_lock(&m->ag.mu);
    for (int i = 0; i < EA_MAX_RUNS_CAP; i++)
        any_ended |= m->slots[i] && ea_run_ended(m->slots[i]);
    if (!any_ended) /* a run ending sets its flag under mu before it broadcasts */
        (void)pthread_cond_timedwait(&m->ag.cv, &m->ag.mu, &until);
    (void)pthread_mutex_unlock(&m->ag.mu);
}

/* ---- dequeue ---- */

/*
 * Asks for up to `want` runs, waiting EA_WAIT_SECONDS when none is queued.
 * On EA_OK *runs is the answer's runs array (a new reference, maybe empty).
 * EA_ERR_INVAL: the server refused our key or task (a configuration error).
 */
static ea_err_t ea_dequeue(struct ea_main *m, int want, json_t **runs)
{
    const struct ea_cfg *c = &m->ag.cfg;
    char url[sizeof(c->url) + 64];
    struct http_resp rs = HTTP_RESP_ZERO;
    json_t *body = json_pack("{s:[s],s:i,s:i,s:s,s:i}", "taskIdentifiers", c->task, "maxRuns", want,
                             "waitSeconds", EA_WAIT_SECONDS, "workerId", c->worker_id,
                             "leaseSeconds", c->lease_s);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_t *ans = NULL;
    ea_err_t rc = EA_ERR_NOMEM;
    *runs = NULL;
    json_decref(body);
    if (!text)
        return rc;
    snprintf(url, sizeof(url), "%s/api/v1/workers/dequeue", c->url);
    struct http_req rq = {.method = "POST",
                          .url = url,
                          .bearer = c->key,
                          .content_type = "application/json",
                          .body = text,
                          .body_len = strlen(text),
                          /* above waitSeconds, as the route asks */
                          .timeout_ms = (EA_WAIT_SECONDS + 15) * 1000L,
                          .max_body = EA_ANSWER_MAX,
                          .should_abort = ea_stopping};
    rc = http_do(&m->http, &rq, &rs);
    if (rc == EA_OK && rs.status == 200) {
        ans = json_loadb(rs.body ? rs.body : "", rs.body_len, 0, NULL);
        if (json_is_array(json_object_get(ans, "runs"))) {
            *runs = json_incref(json_object_get(ans, "runs"));
        } else {
            /* the body is not logged: it may hold run tokens */
            LOG_WARN("dequeue.failed", NULL, "the answer has no runs array");
            rc = EA_ERR_PROTO;
        }
    } else if (rc == EA_OK && (rs.status == 400 || rs.status == 401 || rs.status == 403)) {
        LOG_ERROR("dequeue.refused", NULL, "dequeue answered %ld: %.200s", rs.status,
                  rs.body ? rs.body : "");
        rc = EA_ERR_INVAL;
    } else if (rc == EA_OK) {
        LOG_WARN("dequeue.failed", NULL, "dequeue answered %ld: %.200s", rs.status,
                 rs.body ? rs.body : "");
        rc = EA_ERR_HTTP;
    } else if (rc != EA_ERR_ABORTED) {
        LOG_WARN("dequeue.failed", NULL, "could not dequeue: %s (%s)", ea_err_str(rc), rs.err);
    }
    json_decref(ans);
    http_resp_fini(&rs);
    free(text);
    return rc;
}

/* Starts every run of a dequeue answer in a free slot. */
static void ea_start_runs(struct ea_main *m, json_t *runs)
{
    size_t i;
    json_t *desc;
    json_array_foreach(runs, i, desc)
    {
        int slot = 0;
        while (slot < EA_MAX_RUNS_CAP && m->slots[slot])
            slot++;
        if (slot == EA_MAX_RUNS_CAP) {
            LOG_ERROR("run.no_slot", json_string_value(json_object_get(desc, "id")),
                      "%d runs in progress already; the run is left to its lease", EA_MAX_RUNS_CAP);
            continue;
        }
        (void)ea_run_start(&m->ag, desc, &m->slots[slot]); /* logs its own failures */
    }
}

/* The dequeue loop: until a signal, or until the server refuses our configuration. */
static int ea_serve(struct ea_main *m)
{
    unsigned fails = 0;
    while (!ea_stopping(NULL)) {
        int busy = ea_reap(m);
        if (busy >= m->ag.cfg.max_runs) {
            ea_wait_run_end(m, 250);
            continue;
        }
        json_t *runs = NULL;
        long t0 = ea_now_ms();
        ea_err_t rc = ea_dequeue(m, m->ag.cfg.max_runs - busy, &runs);
        if (rc == EA_ERR_INVAL)
            return EA_EXIT_CONFIG;
        if (rc == EA_OK) {
            fails = 0;
            /* an empty answer long before waitSeconds means the server does not long-poll:
             * do not turn that into a busy loop */
            if (json_array_size(runs) == 0 && ea_now_ms() - t0 < 1000)
                (void)http_sleep_ms(1000, ea_stopping, NULL);
            ea_start_runs(m, runs);
            json_decref(runs);
            continue;
        }
        if (rc != EA_ERR_ABORTED)
            (void)http_sleep_ms(http_backoff_ms(fails), ea_stopping, NULL);
        if (fails < 16)
            fails++;
    }
    return 0;
}

/* Stops the runs: they complete within EA_GRACE_MS, else (or at a second signal) are
 * abandoned to their leases. */
static void ea_shutdown(struct ea_main *m)
{
    int busy = ea_reap(m);
    atomic_store(&m->ag.stopping, 1);
    if (busy > 0)
        LOG_INFO("agent.stopping", NULL, "stopping: %d run(s) complete now", busy);
    long t0 = ea_now_ms();
    while ((busy = ea_reap(m)) > 0 && ea_signals < 2 && ea_now_ms() - t0 < EA_GRACE_MS)
        ea_wait_run_end(m, 100);
    if (busy > 0) {
        LOG_WARN("agent.abandon", NULL, "%d run(s) still busy: leaving them to their leases", busy);
        atomic_store(&m->ag.abandon, 1);
    }
    for (int i = 0; i < EA_MAX_RUNS_CAP; i++) {
        if (m->slots[i]) {
            ea_run_join(m->slots[i]); /* every wait polls abandon: this takes about a second */
            m->slots[i] = NULL;
        }
    }
}

static bool ea_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ea_on_signal;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGINT, &sa, NULL) != 0)
        return false;
    /* a peer closing a socket must be an error code, not a process kill */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL) == 0;
}

int main(int argc, char **argv)
{
    static struct ea_main m; /* static: the slot table need not live on the stack */
    const char *fmt = getenv("TETHER_LOG_FORMAT");
    int code;

    (void)argv;
    jlog_init("echo-agent", !(fmt && strcmp(fmt, "text") == 0));
    if (argc > 1) {
        LOG_ERROR("config.invalid", NULL,
                  "echo-agent takes no arguments; it is configured by TETHER_* variables "
                  "(see examples/echo-agent/README.md)");
        return EA_EXIT_CONFIG;
    }
    if (ea_cfg_load(&m.ag.cfg) != EA_OK)
        return EA_EXIT_CONFIG;
    atomic_init(&m.ag.stopping, 0);
    atomic_init(&m.ag.abandon, 0);
    /* jansson seeds its hash function lazily; doing it now keeps that off the threads */
    json_object_seed(0);
    if (pthread_mutex_init(&m.ag.mu, NULL) != 0 || pthread_cond_init(&m.ag.cv, NULL) != 0 ||
        !ea_signals_install()) {
        LOG_ERROR("agent.start_failed", NULL, "could not set up locks or signals: %s",
                  strerror(errno));
        return EA_EXIT_START;
    }
    if (http_global_init() != EA_OK || http_client_init(&m.http) != EA_OK) {
        LOG_ERROR("agent.start_failed", NULL, "could not initialise libcurl");
        return EA_EXIT_START;
    }
    LOG_INFO("agent.started", NULL,
             "worker %s serving task \"%s\" from %s, up to %d run(s) at once, lease %d s",
             m.ag.cfg.worker_id, m.ag.cfg.task, m.ag.cfg.url, m.ag.cfg.max_runs, m.ag.cfg.lease_s);

    code = ea_serve(&m);
    ea_shutdown(&m);

    http_client_fini(&m.http);
    http_global_fini();
    (void)pthread_cond_destroy(&m.ag.cv);
    (void)pthread_mutex_destroy(&m.ag.mu);
    LOG_INFO("agent.stopped", NULL, "%s",
             code == 0 ? "stopped on a signal" : "stopped: the server refused the configuration");
    return code;
}
