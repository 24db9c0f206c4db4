/*
 * child.c - one child's life: spawn, readiness, death, restart policy, stop.
 *
 * sv_reconcile() compares what each child is doing with what it should be
 * doing (operator intent, dependencies up, leader lock held, supervisor
 * not stopping) and takes one step toward it. Every event (a death, a
 * readiness byte, a timer, a command) ends with a reconcile, so the rules
 * live in one place.
 *
 * Restart policy (s6-supervise, OTP): at least min_restart_ms between two
 * spawns; a child that was up for min_restart_ms or more restarts at once,
 * one that dies sooner waits an exponential backoff (reset after stable_ms
 * of readiness); `intensity` deaths within `period_ms` mark it failed; exit
 * code 100 means permanent failure and is never restarted.
 */
#include "sv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "pmetrics.h"
#include "proc.h"

extern char **environ;

static void sv_on_timer(struct loop *l, void *arg);

const char *sv_state_name(enum sv_state s)
{
    static const char *const names[] = {"down",    "starting", "up",    "backoff",
                                        "stopping", "stopped",  "failed"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static void sv_set_state(struct sv_child *c, enum sv_state s)
{
    if (c->state != s)
        LOG_DEBUG("sv.state", "%s: %s -> %s", c->name, sv_state_name(c->state), sv_state_name(s));
    c->state = s;
}

static void sv_timer_set(struct sv *sv, struct sv_child *c, uint64_t ms)
{
    loop_timer_cancel(&sv->loop, c->timer);
    c->timer = loop_timer_add(&sv->loop, ms, sv_on_timer, sv);
}

static bool sv_deps_up(const struct sv *sv, const struct sv_child *c)
{
    uint64_t now = clock_mono_ms();
    for (unsigned d = 0; d < SV_MAX_DEPS && c->spec->deps[d]; d++) {
        for (unsigned i = 0; i < sv->nchildren; i++) {
            const struct sv_child *o = &sv->children[i];
            if (strcmp(o->spec->name, c->spec->deps[d]) == 0 && o->state != SV_UP) {
                /* A dependency that cannot come back, or that has been trying for too long
                 * (its store is down), does not hold others hostage: the gateway must come up
                 * to answer /healthz with a 503 that names it. */
                if (o->state == SV_FAILED || o->state == SV_STOPPED ||
                    o->state == SV_BACKOFF || (o->spec->leader_only && !sv->leader) ||
                    (o->state == SV_STARTING &&
                     now - o->spawned_mono >= (uint64_t)sv->sv.start_timeout_ms))
                    continue;
                return false;
            }
        }
    }
    return true;
}

/* Whether c may run at all. Dependencies are not part of it: they order the start only,
 * so a dependency's death never takes its dependents down with it. */
static bool sv_may_run(const struct sv *sv, const struct sv_child *c)
{
    return !sv->stopping && c->want_up && (!c->spec->leader_only || sv->leader);
}

/* ---- spawning ---- */

static void sv_on_notify(struct loop *l, int fd, short revents, void *arg);

/* Builds the child's environment: ours plus what it must know about its place. */
static char **sv_child_env(struct sv *sv, const struct sv_child *c, char *store, size_t cap)
{
    static const char *const ours[] = {"TETHER_CHILD_NAME=", "TETHER_INSTANCE=",
                                       "TETHER_NOTIFY_FD=",  "TETHER_PARENT_FD=",
                                       "TETHER_FAULT=",      "TETHER_FENCING_TOKEN=",
                                       "TETHER_BUS_EVENTS_LISTEN=", NULL};
    size_t n = 0, used = 0;
    char **env;
    const struct bus_fault *f = sv_fault_for(sv, c);

    for (char **e = environ; *e; e++)
        n++;
    env = calloc(n + 8, sizeof(*env));
    if (!env)
        return NULL;
    n = 0;
    for (char **e = environ; *e; e++) {
        bool skip = false;
        for (unsigned i = 0; ours[i]; i++)
            if (strncmp(*e, ours[i], strlen(ours[i])) == 0)
                skip = true;
        if (!skip)
            env[n++] = *e;
    }
#define SV_PUT(...)                                                                                \
    do {                                                                                           \
        int w_ = snprintf(store + used, cap - used, __VA_ARGS__);                                  \
        if (w_ < 0 || (size_t)w_ >= cap - used) {                                                  \
            free(env);                                                                             \
            return NULL;                                                                           \
        }                                                                                          \
        env[n++] = store + used;                                                                   \
        used += (size_t)w_ + 1;                                                                    \
    } while (0)
    SV_PUT("TETHER_CHILD_NAME=%s", c->name);
    SV_PUT("TETHER_INSTANCE=%u", c->instance);
    SV_PUT("TETHER_NOTIFY_FD=3");
    SV_PUT("TETHER_PARENT_FD=4");
    if (f)
        SV_PUT("TETHER_FAULT=drop=%g dup=%g delay=%ums delay_rate=%g", f->drop, f->dup,
               f->delay_ms, f->delay_rate);
    if (c->spec->leader_only)
        SV_PUT("TETHER_FENCING_TOKEN=%" PRIu64, sv->fencing_token);
    if (c->events_port)
        SV_PUT("TETHER_BUS_EVENTS_LISTEN=tcp://%s:%u", sv->sv.node_addr, c->events_port);
    if (c->requests_port)
        SV_PUT("TETHER_BUS_REQUESTS_LISTEN=tcp://%s:%u", sv->sv.node_addr, c->requests_port);
#undef SV_PUT
    env[n] = NULL;
    return env;
}

static void sv_spawn(struct sv *sv, struct sv_child *c)
{
    char path[1024], envstore[2048];
    const char *cmd = NULL;
    char var[96] = "TETHER_SV_CMD_";
    int nfd[2];
    char **env;
    pid_t pid;

    /* TETHER_SV_CMD_<NAME> replaces the command (a wrapper, a debugger, a chaos test) */
    size_t o = strlen(var);
    for (const char *p = c->spec->name; *p && o + 1 < sizeof(var); p++)
        var[o++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    var[o] = '\0';
    cmd = getenv(var);
    snprintf(path, sizeof(path), "%s/%s", sv->sv.bin_dir, c->spec->bin);

    if (pipe2(nfd, O_CLOEXEC) != 0) {
        LOG_ERROR("sv.spawn_failed", "%s: could not create the readiness pipe: %s", c->name,
                  strerror(errno));
        sv_set_state(c, SV_BACKOFF);
        sv_timer_set(sv, c, (uint64_t)sv->sv.min_restart_ms);
        return;
    }
    env = sv_child_env(sv, c, envstore, sizeof(envstore));
    pid = env ? fork() : -1;
    if (pid == 0) {
        /* In the child: only async-signal-safe calls until exec. */
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL); /* the supervisor blocks signals for signalfd */
        setpgid(0, 0);                        /* a terminal's Ctrl-C reaches only the supervisor */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(EXIT_TEMPORARY);
        if (dup2(nfd[1], 3) < 0 || dup2(sv->parent_pipe[0], 4) < 0)
            _exit(EXIT_TEMPORARY);
        for (int fd = 5; fd < 1024; fd++)
            close(fd);
        if (cmd && *cmd) {
            char *const argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
            execve("/bin/sh", argv, env);
        } else {
            char *const argv[] = {path, NULL};
            execve(path, argv, env);
        }
        _exit(EXIT_PERMANENT); /* nothing to run: restarting will not help */
    }
    free(env);
    close(nfd[1]);
    if (pid < 0) {
        LOG_ERROR("sv.spawn_failed", "%s: could not fork: %s", c->name, strerror(errno));
        close(nfd[0]);
        sv_set_state(c, SV_BACKOFF);
        sv_timer_set(sv, c, (uint64_t)sv->sv.min_restart_ms);
        return;
    }
    c->pid = pid;
    c->notify_fd = nfd[0];
    c->spawned_mono = c->last_spawn_mono = clock_mono_ms();
    c->ready_mono = 0;
    (void)loop_watch(&sv->loop, c->notify_fd, POLLIN, sv_on_notify, sv);
    sv_set_state(c, SV_STARTING);
    LOG_INFO("sv.spawned", "%s: started pid %d%s%s", c->name, (int)pid, cmd ? " via " : "",
             cmd ? var : "");
}

static void sv_notify_close(struct sv *sv, struct sv_child *c)
{
    if (c->notify_fd >= 0) {
        loop_unwatch(&sv->loop, c->notify_fd);
        close(c->notify_fd);
    }
    c->notify_fd = -1;
}

static void sv_on_notify(struct loop *l, int fd, short revents, void *arg)
{
    struct sv *sv = arg;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)l;
    (void)revents;
    for (unsigned i = 0; i < sv->nchildren; i++) {
        struct sv_child *c = &sv->children[i];
        if (c->notify_fd != fd)
            continue;
        if (n > 0 && memchr(buf, '\n', (size_t)n) && c->state == SV_STARTING) {
            c->ready_mono = clock_mono_ms();
            sv_set_state(c, SV_UP);
            LOG_INFO("sv.ready", "%s: ready after %" PRIu64 "ms", c->name,
                     c->ready_mono - c->spawned_mono);
        }
        if (n <= 0 || c->state == SV_UP)
            sv_notify_close(sv, c); /* readiness is said once */
        break;
    }
    sv_reconcile(sv);
}

/* ---- stopping ---- */

static void sv_signal(struct sv_child *c, int sig)
{
    if (c->pid > 0 && kill(c->pid, sig) != 0 && errno != ESRCH)
        LOG_WARN("sv.kill_failed", "%s: could not send signal %d: %s", c->name, sig,
                 strerror(errno));
}

static void sv_begin_stop(struct sv *sv, struct sv_child *c)
{
    sv_signal(c, SIGTERM);
    sv_set_state(c, SV_STOPPING);
    /* the child has TETHER_SHUTDOWN_GRACE to finish; after that plus a margin, SIGKILL */
    sv_timer_set(sv, c, (uint64_t)(sv->cfg.shutdown_grace_ms + sv->sv.kill_after_ms));
    LOG_INFO("sv.stopping", "%s: sent SIGTERM to pid %d", c->name, (int)c->pid);
}

/* ---- deaths ---- */

static void sv_describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "signal %d", WTERMSIG(status));
    else
        snprintf(out, cap, "status %d", status);
}

static unsigned sv_deaths_within(struct sv_child *c, uint64_t now, uint64_t window)
{
    unsigned n = 0;
    unsigned have = c->ndeaths < SV_TALLY ? c->ndeaths : SV_TALLY;
    for (unsigned i = 0; i < have; i++)
        if (now - c->deaths[i] <= window)
            n++;
    return n;
}

void sv_child_exited(struct sv *sv, pid_t pid, int status)
{
    struct sv_child *c = NULL;
    uint64_t now = clock_mono_ms();

    for (unsigned i = 0; i < sv->nchildren; i++)
        if (sv->children[i].pid == pid)
            c = &sv->children[i];
    if (!c)
        return;

    sv_describe_status(status, c->last_exit, sizeof(c->last_exit));
    c->pid = 0;
    sv_notify_close(sv, c);
    loop_timer_cancel(&sv->loop, c->timer);
    c->timer = 0;

    if (c->state == SV_STOPPING) {
        LOG_INFO("sv.stopped", "%s: stopped (%s)", c->name, c->last_exit);
        sv_set_state(c, c->want_up ? SV_DOWN : SV_STOPPED);
        return;
    }

    bool was_up = c->state == SV_UP;
    uint64_t up_for = was_up ? now - c->ready_mono : 0;
    c->deaths[c->ndeaths++ % SV_TALLY] = now;
    if (was_up && up_for >= (uint64_t)sv->sv.stable_ms)
        c->consecutive = 0;
    c->consecutive++;

    if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_PERMANENT) {
        LOG_ERROR("sv.failed", "%s: exited 100 (permanent failure); not restarting", c->name);
        sv_set_state(c, SV_FAILED);
        return;
    }
    if (sv_deaths_within(c, now, (uint64_t)sv->sv.period_ms) >= (unsigned)sv->sv.intensity) {
        LOG_ERROR("sv.failed",
                  "%s: died %lld times within %lldms (last: %s); giving up until started again",
                  c->name, sv->sv.intensity, sv->sv.period_ms, c->last_exit);
        sv_set_state(c, SV_FAILED);
        return;
    }

    uint64_t delay;
    if (was_up && up_for >= (uint64_t)sv->sv.min_restart_ms) {
        delay = 0; /* it had been fine: bring it straight back */
    } else {
        unsigned shift = c->consecutive > 16 ? 16 : c->consecutive - 1;
        delay = (uint64_t)sv->sv.min_restart_ms << shift;
        if (delay > (uint64_t)sv->sv.backoff_max_ms)
            delay = (uint64_t)sv->sv.backoff_max_ms;
    }
    /* never two spawns closer than min_restart_ms */
    if (now + delay < c->last_spawn_mono + (uint64_t)sv->sv.min_restart_ms)
        delay = c->last_spawn_mono + (uint64_t)sv->sv.min_restart_ms - now;
    c->restarts++;
    pm_add(pm_seriesf(PM_SV_RESTARTS, "child=\"%s\"", c->name), 1);
    LOG_WARN("sv.died", "%s: pid %d died (%s) after %" PRIu64 "ms; restarting in %" PRIu64 "ms",
             c->name, (int)pid, c->last_exit, now - c->spawned_mono, delay);
    sv_set_state(c, SV_BACKOFF);
    sv_timer_set(sv, c, delay);
}

/* ---- timers and reconcile ---- */

static void sv_on_timer(struct loop *l, void *arg)
{
    (void)l;
    sv_reconcile(arg); /* backoff over or kill deadline reached: sv_step sees which */
}

static void sv_step(struct sv *sv, struct sv_child *c, uint64_t now)
{
    bool run = sv_may_run(sv, c);
    switch (c->state) {
    case SV_DOWN:
    case SV_STOPPED:
        if (run && sv_deps_up(sv, c)) {
            if (now >= c->last_spawn_mono + (uint64_t)sv->sv.min_restart_ms ||
                c->last_spawn_mono == 0)
                sv_spawn(sv, c);
            else {
                sv_set_state(c, SV_BACKOFF);
                sv_timer_set(sv, c, c->last_spawn_mono + (uint64_t)sv->sv.min_restart_ms - now);
            }
        }
        break;
    case SV_BACKOFF:
        if (!run) {
            loop_timer_cancel(&sv->loop, c->timer);
            c->timer = 0;
            sv_set_state(c, c->want_up ? SV_DOWN : SV_STOPPED);
        } else if (!loop_timer_is_pending(&sv->loop, c->timer)) {
            sv_spawn(sv, c);
        }
        break;
    case SV_STARTING:
    case SV_UP:
        if (!run)
            sv_begin_stop(sv, c);
        break;
    case SV_STOPPING:
        if (sv->fast_stop || !loop_timer_is_pending(&sv->loop, c->timer)) {
            LOG_WARN("sv.sigkill", "%s: pid %d did not stop in time; sending SIGKILL", c->name,
                     (int)c->pid);
            sv_signal(c, SIGKILL);
            sv_timer_set(sv, c, 1000);
        }
        break;
    case SV_FAILED:
        break;
    }
}

void sv_reconcile(struct sv *sv)
{
    uint64_t now = clock_mono_ms();
    if (sv->stopping) {
        /* reverse dependency order: a child is stopped only once all after it are down */
        for (int i = (int)sv->nchildren - 1; i >= 0; i--) {
            struct sv_child *c = &sv->children[i];
            if (c->pid > 0 || c->state == SV_STOPPING) {
                sv_step(sv, c, now);
                /* siblings of the same spec stop together; earlier specs wait */
                int j = i - 1;
                while (j >= 0 && sv->children[j].spec == c->spec)
                    sv_step(sv, &sv->children[j--], now);
                return;
            }
            sv_step(sv, c, now); /* cancels backoff timers of dead children */
        }
        return;
    }
    for (unsigned i = 0; i < sv->nchildren; i++)
        sv_step(sv, &sv->children[i], now);
}

void sv_child_start(struct sv *sv, struct sv_child *c)
{
    c->want_up = true;
    if (c->state == SV_FAILED || c->state == SV_STOPPED) {
        c->consecutive = 0;
        c->ndeaths = 0;
        sv_set_state(c, SV_DOWN);
        c->last_spawn_mono = 0;
    }
    sv_reconcile(sv);
}

void sv_child_stop(struct sv *sv, struct sv_child *c)
{
    c->want_up = false;
    sv_reconcile(sv);
}

void sv_child_restart(struct sv *sv, struct sv_child *c)
{
    c->want_up = true;
    if (c->pid > 0 && (c->state == SV_UP || c->state == SV_STARTING)) {
        sv_begin_stop(sv, c);
        c->last_spawn_mono = 0; /* an operator restart is not throttled */
        return;
    }
    sv_child_start(sv, c);
}

bool sv_all_down(const struct sv *sv)
{
    for (unsigned i = 0; i < sv->nchildren; i++)
        if (sv->children[i].pid > 0)
            return false;
    return true;
}

void sv_kill_all(struct sv *sv)
{
    for (unsigned i = 0; i < sv->nchildren; i++)
        sv_signal(&sv->children[i], SIGKILL);
}
