/*
 * db_redis_async_test.c - the non-blocking Redis client against a real redis-server that the
 * test starts on a free port: pipelined commands answered in order, error replies, a stopped
 * server failing what it held within the timeout while the loop keeps running, a killed server
 * and the reconnect after it, and ERR_CLOSED for what is pending at free.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "db_redis.h"
#include "db_redis_async.h"
#include "log.h"
#include "redis_server.h"
#include "t.h"

static struct loop loop;
static char url[64];
static int port;
static pid_t server = -1;

static void start_server(void)
{
    server = test_redis_start(port);
}

static void stop_server(void)
{
    test_redis_stop(server);
    server = -1;
}

struct answers {
    unsigned n, ok, internal, timeout, unavail, closed;
    long long last;
    bool in_order;
};

static void on_answer(void *arg, err_t rc, const redisReply *rep)
{
    struct answers *a = arg;
    a->n++;
    switch (rc) {
    case OK:
        a->ok++;
        if (rep->type == REDIS_REPLY_INTEGER) {
            if (rep->integer != a->last + 1)
                a->in_order = false;
            a->last = rep->integer;
        }
        break;
    case ERR_INTERNAL:
        a->internal++;
        break;
    case ERR_TIMEOUT:
        a->timeout++;
        break;
    case ERR_UNAVAIL:
        a->unavail++;
        break;
    case ERR_CLOSED:
        a->closed++;
        break;
    default:
        break;
    }
}

static void pump(const struct answers *a, unsigned want, uint64_t max_ms)
{
    uint64_t t0 = clock_mono_ms();
    while (a->n < want && clock_mono_ms() - t0 < max_ms)
        loop_run_once(&loop, 20);
}

static unsigned ticks;
static void on_tick(struct loop *l, void *arg)
{
    (void)arg;
    ticks++;
    (void)loop_timer_add(l, 50, on_tick, NULL);
}

T_TEST(pipelined_in_order)
{
    struct db_redis_async *r;
    struct answers a = {.in_order = true};
    T_OK(db_redis_async_new(&loop, url, 1000, &r));
    const char *del[] = {"DEL", "t:ctr"};
    const char *incr[] = {"INCR", "t:ctr"};
    T_OK(db_redis_async_cmd(r, 2, del, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    a = (struct answers){.in_order = true};
    unsigned sent = 0;
    for (unsigned i = 0; i < 1000; i++)
        sent += db_redis_async_cmd(r, 2, incr, NULL, on_answer, &a) == OK;
    T_EQ(sent, 1000u);
    T_EQ(a.n, 0u); /* never answered from inside cmd */
    T_ASSERT(db_redis_async_pending(r) == 1000u);
    pump(&a, 1000, 5000);
    T_EQ(a.ok, 1000u);
    T_ASSERT(a.in_order);
    T_EQ(a.last, 1000);
    T_ASSERT(db_redis_async_up(r));

    const char *bad[] = {"NOSUCHCOMMAND"};
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 1, bad, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.internal, 1u);
    db_redis_async_free(r);
}

/*
 * kill() returns before a process running on another CPU has stopped: until /proc says it has
 * (state T), it may still answer what it already read. Bounded by 2 s.
 */
static void wait_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    uint64_t t0 = clock_mono_ms();
    while (clock_mono_ms() - t0 < 2000) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        const char *close = strrchr(buf, ')'); /* the state follows the command name */
        if (close && close[1] == ' ' && close[2] == 'T')
            return;
        usleep(1000);
    }
}

T_TEST(stopped_server_times_out)
{
    struct db_redis_async *r;
    struct answers a = {0};
    const char *ping[] = {"PING"};
    T_OK(db_redis_async_new(&loop, url, 300, &r));
    T_OK(db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);

    kill(server, SIGSTOP);
    wait_stopped(server);
    a = (struct answers){0};
    ticks = 0;
    uint64_t tick = loop_timer_add(&loop, 50, on_tick, NULL);
    uint64_t t0 = clock_mono_ms();
    for (int i = 0; i < 10; i++)
        T_OK(db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a));
    pump(&a, 10, 3000);
    uint64_t took = clock_mono_ms() - t0;
    T_EQ(a.n, 10u);
    /* the first past its deadline drops the connection; the rest fail with it: timed out too,
     * or unavailable when they were sent a millisecond later (a slow loop) and were not due yet */
    T_ASSERT(a.timeout >= 1);
    T_EQ(a.timeout + a.unavail, 10u);
    T_ASSERT(took >= 250 && took < 1500);
    T_ASSERT(ticks >= 3); /* the loop ran on while Redis held the commands */
    T_ASSERT(!db_redis_async_up(r));
    kill(server, SIGCONT);
    loop_timer_cancel(&loop, tick);

    /* the next command reconnects once the backoff allows */
    a = (struct answers){0};
    t0 = clock_mono_ms();
    while (a.ok == 0 && clock_mono_ms() - t0 < 5000) {
        if (db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a) == OK)
            pump(&a, a.n + 1, 2000);
        else
            loop_run_once(&loop, 50);
    }
    T_EQ(a.ok, 1u);
    db_redis_async_free(r);
}

T_TEST(killed_server_unavailable_then_back)
{
    struct db_redis_async *r;
    struct answers a = {0};
    const char *ping[] = {"PING"};
    const char *block[] = {"BLPOP", "t:never", "5"};
    T_OK(db_redis_async_new(&loop, url, 10000, &r));
    T_OK(db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a));
    pump(&a, 1, 2000);
    T_EQ(a.ok, 1u);
    a = (struct answers){0};
    T_OK(db_redis_async_cmd(r, 3, block, NULL, on_answer, &a));
    loop_run_once(&loop, 50);
    stop_server();
    pump(&a, 1, 3000);
    T_EQ(a.unavail, 1u);
    /* nothing listens: a connect fails fast, or the command is refused under backoff */
    a = (struct answers){0};
    err_t rc = db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a);
    if (rc == OK)
        pump(&a, 1, 3000);
    T_ASSERT(rc == ERR_UNAVAIL || a.unavail == 1);
    start_server();
    a = (struct answers){0};
    uint64_t t0 = clock_mono_ms();
    while (a.ok == 0 && clock_mono_ms() - t0 < 8000) {
        if (db_redis_async_cmd(r, 1, ping, NULL, on_answer, &a) == OK)
            pump(&a, a.n + 1, 2000);
        else
            loop_run_once(&loop, 50);
    }
    T_EQ(a.ok, 1u);
    db_redis_async_free(r);
}

T_TEST(free_fails_pending)
{
    struct db_redis_async *r;
    struct answers a = {0};
    const char *block[] = {"BLPOP", "t:never", "5"};
    T_OK(db_redis_async_new(&loop, url, 10000, &r));
    T_OK(db_redis_async_cmd(r, 3, block, NULL, on_answer, &a));
    T_OK(db_redis_async_cmd(r, 3, block, NULL, on_answer, &a));
    loop_run_once(&loop, 50);
    db_redis_async_free(r);
    T_EQ(a.n, 2u);
    T_EQ(a.closed, 2u);
    T_ERR(db_redis_async_new(&loop, "http://x", 100, &r), ERR_INVAL);
}

int main(void)
{
    log_init("db-redis-async-test", LOG_LVL_ERROR, false);
    signal(SIGPIPE, SIG_IGN);
    if (loop_init(&loop) != OK)
        return 1;
    port = 20000 + (int)(getpid() % 12000);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    start_server();
    T_RUN(pipelined_in_order);
    T_RUN(stopped_server_times_out);
    T_RUN(killed_server_unavailable_then_back);
    T_RUN(free_fails_pending);
    stop_server();
    loop_fini(&loop);
    return T_DONE();
}
