/*
 * bus_bench.c - bus round-trip throughput, to measure what the tap costs.
 *
 *   bus_bench [--seconds S] [--inflight N] [--size BYTES] [--tap off|idle|listening]
 *
 * A forked echo server and this client, each with its own bus, over ipc://.
 * The client keeps N bus.echo calls in flight for S seconds and prints one
 * JSON line with the completed calls per second (listening, also the records the listener
 * saw and those the calls made: the tap drops rather than slow the bus). --tap idle opens the tap
 * sockets with nobody connected (the production default); --tap listening
 * also drains both taps from a third process, as `tetherctl tap` would: a
 * listener inside the client would share its nng poll thread and measure
 * itself, not the tap.
 */
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "bus.h"
#include "clock.h"
#include "log.h"
#include "loop.h"
#include "mp.h"
#include "msg.h"

static char bench_dir[128];
static volatile sig_atomic_t bench_stop;

static void bench_on_term(int sig)
{
    (void)sig;
    bench_stop = 1;
}

static void bench_echo(struct bus_req *req, void *arg)
{
    (void)arg;
    bus_reply(req, bus_req_env(req)->body.p, bus_req_env(req)->body.n);
}

static int bench_server(bool tap)
{
    struct bus *b;
    char url[256];
    struct bus_opts o = {.proc = "bench-server", .dir = bench_dir, .recv_max = 4 << 20,
                         .timeout_ms = 5000, .inflight = 128, .tap = tap};
    signal(SIGTERM, bench_on_term);
    if (bus_open(&b, &o) != OK)
        return 1;
    bus_actor_url(b, "bench-server", 0, url, sizeof(url));
    if (bus_serve(b, url, bench_echo, NULL, NULL) != OK)
        return 1;
    while (!bench_stop) {
        struct pollfd p = {bus_fd(b), POLLIN, 0};
        if (poll(&p, 1, 100) > 0)
            bus_dispatch(b);
    }
    bus_close(b);
    return 0;
}

struct bench {
    struct bus_peer *peer;
    const void *body;
    size_t n;
    unsigned long done, errors, all; /* all: every call answered, warm-up too */
    bool counting, stopping;
    unsigned inflight;
};

static void bench_issue(struct bench *bn);

static void bench_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct bench *bn = arg;
    (void)env;
    bn->inflight--;
    if (rc != OK)
        bn->errors++;
    else {
        bn->all++;
        if (bn->counting)
            bn->done++;
    }
    if (!bn->stopping)
        bench_issue(bn);
}

static void bench_issue(struct bench *bn)
{
    if (bus_call(bn->peer, MSG_BUS_ECHO, bn->body, bn->n, NULL, bench_on_reply, bn) == OK)
        bn->inflight++;
    else
        bn->errors++;
}

/*
 * The listener: one SUB socket dialling both taps, taking everything until SIGTERM, and
 * counting the records (so that the figure says what was mirrored, not only how fast): it
 * writes the count to out at the end. It never closes its socket: nng 1.5's nng_close of a SUB
 * socket still taking messages at full rate hangs now and then in its reaper; _exit closes it.
 */
static int bench_listener(int out)
{
    uint64_t records = 0;
    nng_socket sub;
    char url[300];
    signal(SIGTERM, bench_on_term);
    if (nng_sub0_open(&sub) != 0)
        return 1;
    (void)nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    (void)nng_socket_set_size(sub, NNG_OPT_RECVMAXSZ, 8 << 20);
    (void)nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 100);
    (void)nng_socket_set_ms(sub, NNG_OPT_RECONNMINT, 10);
    snprintf(url, sizeof(url), "ipc://%s/tap/bench-server.ipc", bench_dir);
    (void)nng_dial(sub, url, NULL, NNG_FLAG_NONBLOCK);
    snprintf(url, sizeof(url), "ipc://%s/tap/bench-client.ipc", bench_dir);
    (void)nng_dial(sub, url, NULL, NNG_FLAG_NONBLOCK);
    while (!bench_stop) {
        char *buf;
        size_t n;
        if (nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC) == 0) {
            struct mp_reader r;
            struct slice rec;
            mp_reader_init(&r, buf, n);
            while (mp_reader_left(&r) > 0 && mp_skip(&r, &rec) == OK)
                records++;
            nng_free(buf, n);
        }
    }
    return write(out, &records, sizeof(records)) == (ssize_t)sizeof(records) ? 0 : 1;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    unsigned inflight = 64;
    size_t size = 1024;
    const char *tap = "idle";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--inflight") == 0)
            inflight = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--tap") == 0)
            tap = argv[i + 1];
    }
    bool tap_on = strcmp(tap, "off") != 0;
    log_init("bus-bench", LOG_LVL_WARN, true);
    snprintf(bench_dir, sizeof(bench_dir), "/tmp/tether-bench.%d", (int)getpid());
    if (mkdir(bench_dir, 0755) != 0)
        return 1;

    bool listening = strcmp(tap, "listening") == 0;
    pid_t srv = fork();
    if (srv == 0)
        _exit(bench_server(tap_on));
    int counts[2] = {-1, -1};
    if (listening && pipe(counts) != 0)
        return 1;
    pid_t lis = listening ? fork() : -1;
    if (lis == 0)
        _exit(bench_listener(counts[1]));

    struct bus *b;
    struct bench bn = {0};
    struct bus_opts o = {.proc = "bench-client", .dir = bench_dir, .recv_max = 4 << 20,
                         .timeout_ms = 5000, .inflight = 1, .tap = tap_on};
    char url[256];
    if (bus_open(&b, &o) != OK)
        return 1;
    bus_actor_url(b, "bench-server", 0, url, sizeof(url));
    if (bus_peer_open(b, "bench-server", url, &bn.peer) != OK)
        return 1;

    struct mp_writer w;
    char *payload = calloc(1, size + 1);
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "data");
    mp_put_bin(&w, payload, size);
    bn.body = mp_writer_data(&w);
    bn.n = mp_writer_len(&w);

    /* wait for the server, then warm up for 0.5 s before counting */
    struct bus_msg m;
    for (int i = 0; i < 100 && bus_call_sync(bn.peer, MSG_BUS_ECHO, NULL, 0, 100, &m) != OK; i++)
        ;
    bus_msg_free(&m);
    for (int i = 0; listening && i < 100 && bus_tap_listeners(b) == 0; i++)
        usleep(10 * 1000);
    for (unsigned i = 0; i < inflight; i++)
        bench_issue(&bn);
    uint64_t t0 = clock_mono_ms(), start = 0;
    while (1) {
        uint64_t now = clock_mono_ms();
        if (!bn.counting && now - t0 >= 500) {
            bn.counting = true;
            start = now;
        }
        if (bn.counting && now - start >= (uint64_t)(seconds * 1000))
            break;
        struct pollfd p = {bus_fd(b), POLLIN, 0};
        if (poll(&p, 1, 100) > 0)
            bus_dispatch(b);
    }
    double secs = (double)(clock_mono_ms() - start) / 1000.0;
    bn.counting = false;
    bn.stopping = true;
    while (bn.inflight > 0) {
        struct pollfd p = {bus_fd(b), POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0)
            break;
        bus_dispatch(b);
    }
    /* what the listener saw of every call made since it was connected: four records each
     * (the call sent and its reply received here, the call received and the reply sent by the
     * server); the last flush comes within 50 ms */
    uint64_t seen = 0;
    unsigned listeners = bus_tap_listeners(b);
    if (lis > 0) {
        usleep(150 * 1000);
        kill(lis, SIGTERM);
        waitpid(lis, NULL, 0);
        if (read(counts[0], &seen, sizeof(seen)) != (ssize_t)sizeof(seen))
            seen = 0;
    }
    printf("{\"tap\":\"%s\",\"inflight\":%u,\"size\":%zu,\"seconds\":%.2f,\"calls\":%lu,"
           "\"calls_per_s\":%.0f,\"errors\":%lu,\"tap_listeners\":%u,\"tap_records_seen\":%llu,"
           "\"tap_records_made\":%lu}\n",
           tap, inflight, size, secs, bn.done, (double)bn.done / secs, bn.errors,
           listeners, (unsigned long long)seen, listening ? 4 * bn.all : 0);
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    bus_close(b);
    mp_writer_fini(&w);
    free(payload);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", bench_dir);
    return system(cmd) == 0 ? 0 : 1;
}
