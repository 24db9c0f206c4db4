/*
 * loop.c - poll(2) loop with timers and signalfd (see loop.h).
 */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

err_t loop_init(struct loop *l)
{
    memset(l, 0, sizeof(*l));
    l->sigfd = -1;
    l->next_timer_id = 1;
    return OK;
}

void loop_fini(struct loop *l)
{
    if (l->sigfd >= 0)
        close(l->sigfd);
    l->sigfd = -1;
    l->nfds = 0;
}

err_t loop_watch(struct loop *l, int fd, short events, loop_fd_fn fn, void *arg)
{
    for (unsigned i = 0; i < l->nfds; i++)
        if (l->fds[i].fd == fd)
            return ERR_EXISTS;
    if (l->nfds == LOOP_MAX_FDS)
        return ERR_NOMEM;
    l->fds[l->nfds++] = (struct loop_fd){fd, events, fn, arg};
    return OK;
}

void loop_unwatch(struct loop *l, int fd)
{
    for (unsigned i = 0; i < l->nfds; i++) {
        if (l->fds[i].fd == fd) {
            l->fds[i] = l->fds[--l->nfds];
            return;
        }
    }
}

uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_fn fn, void *arg)
{
    for (unsigned i = 0; i < LOOP_MAX_TIMERS; i++) {
        if (l->timers[i].id == 0) {
            l->timers[i] = (struct loop_timer){l->next_timer_id++, clock_mono_ms() + delay_ms, fn,
                                               arg};
            return l->timers[i].id;
        }
    }
    LOG_ERROR("loop.timers_full", "cannot add a timer: all %d slots are in use", LOOP_MAX_TIMERS);
    return 0;
}

bool loop_timer_is_pending(const struct loop *l, uint64_t id)
{
    if (id == 0)
        return false;
    for (unsigned i = 0; i < LOOP_MAX_TIMERS; i++)
        if (l->timers[i].id == id)
            return true;
    return false;
}

void loop_timer_cancel(struct loop *l, uint64_t id)
{
    if (id == 0)
        return;
    for (unsigned i = 0; i < LOOP_MAX_TIMERS; i++)
        if (l->timers[i].id == id)
            l->timers[i].id = 0;
}

err_t loop_signals(struct loop *l, const int *signals, unsigned n, loop_signal_fn fn, void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    for (unsigned i = 0; i < n; i++)
        sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        LOG_ERROR("loop.signals", "could not block signals: %s", strerror(errno));
        return ERR_INTERNAL;
    }
    l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (l->sigfd < 0) {
        LOG_ERROR("loop.signals", "could not create signalfd: %s", strerror(errno));
        return ERR_INTERNAL;
    }
    l->sig_fn = fn;
    l->sig_arg = arg;
    return OK;
}

static int loop_next_wait(const struct loop *l, int max_wait_ms)
{
    uint64_t now = clock_mono_ms();
    int64_t wait = max_wait_ms;
    for (unsigned i = 0; i < LOOP_MAX_TIMERS; i++) {
        if (l->timers[i].id == 0)
            continue;
        int64_t d = l->timers[i].due_ms > now ? (int64_t)(l->timers[i].due_ms - now) : 0;
        if (wait < 0 || d < wait)
            wait = d;
    }
    return wait > 60000 ? 60000 : (int)wait;
}

static void loop_fire_timers(struct loop *l)
{
    uint64_t now = clock_mono_ms();
    for (unsigned i = 0; i < LOOP_MAX_TIMERS; i++) {
        struct loop_timer t = l->timers[i];
        if (t.id == 0 || t.due_ms > now)
            continue;
        l->timers[i].id = 0; /* one-shot; freed before the call so fn may re-arm */
        t.fn(l, t.arg);
    }
}

void loop_run_once(struct loop *l, int max_wait_ms)
{
    struct pollfd pfd[LOOP_MAX_FDS + 1];
    struct loop_fd snap[LOOP_MAX_FDS];
    unsigned n = l->nfds, np = 0;

    /* poll over a snapshot: callbacks may watch or unwatch fds while we iterate */
    memcpy(snap, l->fds, n * sizeof(snap[0]));
    for (unsigned i = 0; i < n; i++)
        pfd[np++] = (struct pollfd){snap[i].fd, snap[i].events, 0};
    if (l->sigfd >= 0)
        pfd[np++] = (struct pollfd){l->sigfd, POLLIN, 0};

    int rc = poll(pfd, np, loop_next_wait(l, max_wait_ms));
    if (rc < 0 && errno != EINTR)
        LOG_WARN("loop.poll_failed", "poll failed: %s", strerror(errno));

    if (rc > 0 && l->sigfd >= 0 && pfd[np - 1].revents) {
        struct signalfd_siginfo si;
        while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            if (l->sig_fn)
                l->sig_fn(l, (int)si.ssi_signo, l->sig_arg);
    }
    for (unsigned i = 0; rc > 0 && i < n; i++) {
        if (!pfd[i].revents)
            continue;
        /* skip fds a previous callback in this round unwatched */
        bool live = false;
        for (unsigned j = 0; j < l->nfds; j++)
            if (l->fds[j].fd == snap[i].fd && l->fds[j].fn == snap[i].fn &&
                l->fds[j].arg == snap[i].arg)
                live = true;
        if (live)
            snap[i].fn(l, snap[i].fd, pfd[i].revents, snap[i].arg);
    }
    loop_fire_timers(l);
}

void loop_stop(struct loop *l)
{
    l->stopping = true;
}

bool loop_stopping(const struct loop *l)
{
    return l->stopping;
}
