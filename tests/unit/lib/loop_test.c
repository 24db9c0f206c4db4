/*
 * loop_test.c - the poll loop: timers fire in order and once, cancellation,
 * fd callbacks, signals through signalfd, backoff growth and reset.
 */
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "backoff.h"
#include "clock.h"
#include "loop.h"
#include "t.h"

static int order[8], norder;

static void on_timer(struct loop *l, void *arg)
{
    (void)l;
    order[norder++] = (int)(intptr_t)arg;
}

T_TEST(timers)
{
    struct loop l;
    T_OK(loop_init(&l));
    uint64_t a = loop_timer_add(&l, 30, on_timer, (void *)2);
    uint64_t b = loop_timer_add(&l, 10, on_timer, (void *)1);
    uint64_t c = loop_timer_add(&l, 20, on_timer, (void *)9);
    T_ASSERT(a && b && c);
    T_ASSERT(loop_timer_is_pending(&l, c));
    loop_timer_cancel(&l, c);
    T_ASSERT(!loop_timer_is_pending(&l, c));
    uint64_t t0 = clock_mono_ms();
    while (norder < 2 && clock_mono_ms() - t0 < 1000)
        loop_run_once(&l, 100);
    T_EQ(norder, 2);
    T_EQ(order[0], 1);
    T_EQ(order[1], 2);
    loop_run_once(&l, 20);
    T_EQ(norder, 2); /* one-shot */
    loop_fini(&l);
}

static int fd_hits;

static void on_fd(struct loop *l, int fd, short revents, void *arg)
{
    char c;
    (void)l;
    (void)arg;
    if (revents & POLLIN && read(fd, &c, 1) == 1)
        fd_hits++;
}

T_TEST(fds)
{
    struct loop l;
    int p[2];
    T_OK(loop_init(&l));
    T_ASSERT(pipe(p) == 0);
    T_OK(loop_watch(&l, p[0], POLLIN, on_fd, NULL));
    T_ERR(loop_watch(&l, p[0], POLLIN, on_fd, NULL), ERR_EXISTS);
    T_ASSERT(write(p[1], "x", 1) == 1);
    loop_run_once(&l, 100);
    T_EQ(fd_hits, 1);
    loop_unwatch(&l, p[0]);
    T_ASSERT(write(p[1], "y", 1) == 1);
    loop_run_once(&l, 20);
    T_EQ(fd_hits, 1);
    close(p[0]);
    close(p[1]);
    loop_fini(&l);
}

static int got_signal;

static void on_signal(struct loop *l, int signo, void *arg)
{
    (void)arg;
    got_signal = signo;
    loop_stop(l);
}

T_TEST(signals)
{
    struct loop l;
    static const int sigs[] = {SIGUSR1};
    T_OK(loop_init(&l));
    T_OK(loop_signals(&l, sigs, 1, on_signal, NULL));
    kill(getpid(), SIGUSR1);
    loop_run_once(&l, 500);
    T_EQ(got_signal, SIGUSR1);
    T_ASSERT(loop_stopping(&l));
    loop_fini(&l);
}

T_TEST(backoff)
{
    struct backoff b = BACKOFF_INIT(100, 400);
    T_ASSERT(backoff_ready(&b));
    backoff_fail(&b);
    T_EQ(b.cur_ms, 100u);
    T_ASSERT(!backoff_ready(&b));
    backoff_fail(&b);
    T_EQ(b.cur_ms, 200u);
    backoff_fail(&b);
    backoff_fail(&b);
    T_EQ(b.cur_ms, 400u); /* capped */
    uint64_t wait = b.next_mono - clock_mono_ms();
    T_ASSERT(wait >= 290 && wait <= 500); /* 400 +-25% */
    backoff_reset(&b);
    T_ASSERT(backoff_ready(&b));
    T_EQ(b.cur_ms, 0u);
}

int main(void)
{
    T_RUN(timers);
    T_RUN(fds);
    T_RUN(signals);
    T_RUN(backoff);
    return T_DONE();
}
