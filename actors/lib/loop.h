/*
 * loop.h - the single-threaded poll loop every actor and the supervisor run.
 *
 * File descriptors, one-shot timers (monotonic ms) and signals (through
 * signalfd, so a handler never runs in signal context) all arrive as
 * callbacks on the thread that calls loop_run_once(). Nothing here is
 * thread-safe: other threads reach the loop through an fd (bus.h does this
 * with an eventfd). Capacities are fixed (LOOP_MAX_FDS, LOOP_MAX_TIMERS).
 */
#ifndef TETHER_LIB_LOOP_H
#define TETHER_LIB_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define LOOP_MAX_FDS 64
#define LOOP_MAX_TIMERS 256

struct loop;

typedef void (*loop_fd_fn)(struct loop *l, int fd, short revents, void *arg);
typedef void (*loop_timer_fn)(struct loop *l, void *arg);
typedef void (*loop_signal_fn)(struct loop *l, int signo, void *arg);

struct loop_fd {
    int fd;
    short events;
    loop_fd_fn fn;
    void *arg;
};

struct loop_timer {
    uint64_t id; /* 0 = free slot */
    uint64_t due_ms;
    loop_timer_fn fn;
    void *arg;
};

struct loop {
    struct loop_fd fds[LOOP_MAX_FDS];
    unsigned nfds;
    struct loop_timer timers[LOOP_MAX_TIMERS];
    uint64_t next_timer_id;
    int sigfd;
    loop_signal_fn sig_fn;
    void *sig_arg;
    bool stopping;
};

/* Prepares l (caller-owned storage). */
err_t loop_init(struct loop *l);
/* Closes the signalfd; watched fds stay the caller's to close. */
void loop_fini(struct loop *l);

/* Watches fd for events (POLLIN/POLLOUT). ERR_NOMEM when full, ERR_EXISTS if already watched. */
err_t loop_watch(struct loop *l, int fd, short events, loop_fd_fn fn, void *arg);
void loop_unwatch(struct loop *l, int fd);

/* One-shot timer after delay_ms; returns its id (never 0), or 0 when the table is full. */
uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_fn fn, void *arg);
/* True while timer id has neither fired nor been cancelled. */
bool loop_timer_is_pending(const struct loop *l, uint64_t id);

/* Cancels a pending timer; unknown or fired ids are ignored. */
void loop_timer_cancel(struct loop *l, uint64_t id);

/*
 * Blocks the given signals and delivers them through fn. Call once, before
 * any thread is created (nng starts threads), so every thread inherits the
 * blocked mask and the signals reach the signalfd.
 */
err_t loop_signals(struct loop *l, const int *signals, unsigned n, loop_signal_fn fn, void *arg);

/* Waits at most max_wait_ms (-1 = until something happens) and runs what is ready. */
void loop_run_once(struct loop *l, int max_wait_ms);

void loop_stop(struct loop *l);
bool loop_stopping(const struct loop *l);

#endif
