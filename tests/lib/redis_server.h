/*
 * redis_server.h - a throwaway redis-server for the unit tests of the Redis clients: no
 * persistence, loopback only, its stdout discarded. Header-only (static), like t.h.
 */
#ifndef TETHER_TESTS_REDIS_SERVER_H
#define TETHER_TESTS_REDIS_SERVER_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "db_redis.h"

/* Starts redis-server on port and waits (at most 5 s) until it answers PING; its pid, or -1. */
static pid_t test_redis_start(int port)
{
    char p[16], url[64];
    snprintf(p, sizeof(p), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        (void)dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    struct db_redis sync;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    (void)db_redis_init(&sync, url, 200);
    uint64_t t0 = clock_mono_ms();
    while (clock_mono_ms() - t0 < 5000) {
        sync.backoff.next_mono = 0; /* a ping at every turn, not at the backoff's pace */
        if (db_redis_ping(&sync) == OK)
            break;
        usleep(20000);
    }
    db_redis_fini(&sync);
    return pid;
}

/* SIGKILL and reap; nothing for a pid <= 0. */
static void test_redis_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    (void)waitpid(pid, NULL, 0);
}

#endif
