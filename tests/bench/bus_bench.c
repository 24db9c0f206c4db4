/*
 * bus_bench.c - bus round-trip throughput, to measure what the tap costs.
 *
 *   bus_bench [--seconds S] [--inflight N] [--size BYTES] [--tap off|idle|listening]
 *             [--latency] [--raw | --floor]
 *
 * A forked echo server and this client, each with its own bus, over ipc://.
 * The client keeps N bus.echo calls in flight for S seconds and prints one
 * JSON line with the completed calls per second (listening, also the records the listener
 * saw and those the calls made: the tap drops rather than slow the bus). --tap idle opens the tap
 * sockets with nobody connected (the production default); --tap listening
 * also drains both taps from a third process, as `tetherctl tap` would: a
 * listener inside the client would share its nng poll thread and measure
 * itself, not the tap.
 *
 * --latency also times each call, from bus_call to its reply callback on the
 * caller's loop (a bus hop: the request there and the reply back, both
 * processes' threads and sockets), and adds the percentiles in microseconds;
 * use it with --inflight 1. --raw times the same round trip over bare nng
 * REQ/REP sockets on ipc:// (one blocking send and receive a call, an echo
 * thread on the other side): what the bus is measured against. --floor times
 * it over a bare socketpair between the two processes, one write and one read
 * a side: what the kernel and the machine take to wake a process and back.
 */
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "bus.h"
#include "clock.h"
#include "log.h"
#include "loop.h"
#include "mp.h"
#include "msg.h"
#include "msg_sv.h"

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
    struct bus_opts o = {.proc = "bench-server",
                         .dir = bench_dir,
                         .recv_max = 4 << 20,
                         .timeout_ms = 5000,
                         .inflight = 128,
                         .tap = tap};
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

/* Call durations, for --latency and --raw. */
#define BENCH_SAMPLES_MAX (4u << 20)
struct bench_samples {
    uint32_t *us;
    size_t n;
};

static void bench_sample(struct bench_samples *s, uint64_t us)
{
    if (s->us && s->n < BENCH_SAMPLES_MAX)
        s->us[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int bench_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The samples' percentiles as JSON fields (sorts them): ",\"p50_us\":...". */
static void bench_percentiles(struct bench_samples *s, char *out, size_t cap)
{
    if (!s->us || s->n == 0) {
        out[0] = 0;
        return;
    }
    qsort(s->us, s->n, sizeof(s->us[0]), bench_cmp_u32);
    snprintf(out, cap, ",\"p50_us\":%u,\"p99_us\":%u,\"p999_us\":%u", s->us[s->n / 2],
             s->us[s->n * 99 / 100], s->us[s->n * 999 / 1000]);
}

struct bench {
    struct bus_peer *peer;
    const void *body;
    size_t n;
    uint64_t issued_us; /* --latency: when the call in flight was made */
    struct bench_samples lat;
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
        if (bn->counting) {
            bn->done++;
            bench_sample(&bn->lat, clock_mono_us() - bn->issued_us);
        }
    }
    if (!bn->stopping)
        bench_issue(bn);
}

static void bench_issue(struct bench *bn)
{
    bn->issued_us = clock_mono_us();
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

/* --floor: size bytes there and back over a socketpair, for seconds. */
static int bench_floor(double seconds, size_t size)
{
    int sv[2];
    struct bench_samples lat = {calloc(BENCH_SAMPLES_MAX, sizeof(uint32_t)), 0};
    char *buf = calloc(1, size + 1), pct[128];
    unsigned long calls = 0;
    if (!lat.us || !buf || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    pid_t echo = fork();
    if (echo == 0) {
        close(sv[0]);
        for (;;) {
            ssize_t got = read(sv[1], buf, size);
            if (got <= 0 || write(sv[1], buf, (size_t)got) != got)
                _exit(0);
        }
    }
    close(sv[1]);
    uint64_t start = clock_mono_ms();
    while (clock_mono_ms() - start < (uint64_t)(seconds * 1000)) {
        uint64_t at = clock_mono_us();
        size_t back = 0;
        if (write(sv[0], buf, size) != (ssize_t)size)
            break;
        while (back < size) {
            ssize_t got = read(sv[0], buf + back, size - back);
            if (got <= 0)
                return 1;
            back += (size_t)got;
        }
        calls++;
        bench_sample(&lat, clock_mono_us() - at);
    }
    double secs = (double)(clock_mono_ms() - start) / 1000.0;
    close(sv[0]); /* the echo side reads end-of-file and exits */
    waitpid(echo, NULL, 0);
    bench_percentiles(&lat, pct, sizeof(pct));
    printf("{\"bus\":\"socketpair\",\"inflight\":1,\"size\":%zu,\"seconds\":%.2f,\"calls\":%lu,"
           "\"calls_per_s\":%.0f,\"errors\":0%s}\n",
           size, secs, calls, (double)calls / secs, pct);
    free(lat.us);
    free(buf);
    return 0;
}

/* --raw: the echo side, on a bare REP socket. */
static int bench_raw_server(const char *url)
{
    nng_socket rep;
    signal(SIGTERM, bench_on_term);
    if (nng_rep0_open(&rep) != 0 || nng_listen(rep, url, NULL, 0) != 0)
        return 1;
    (void)nng_socket_set_ms(rep, NNG_OPT_RECVTIMEO, 100);
    while (!bench_stop) {
        nng_msg *m;
        if (nng_recvmsg(rep, &m, 0) == 0 && nng_sendmsg(rep, m, 0) != 0)
            nng_msg_free(m);
    }
    return 0; /* the socket goes with the process, as the listener's */
}

/* --raw: bare nng REQ/REP round trips of size bytes for seconds, one at a time. */
static int bench_raw(double seconds, size_t size)
{
    char url[300];
    nng_socket req;
    struct bench_samples lat = {calloc(BENCH_SAMPLES_MAX, sizeof(uint32_t)), 0};
    char *payload = calloc(1, size + 1), pct[128];
    unsigned long calls = 0, errors = 0;
    snprintf(url, sizeof(url), "ipc://%s/raw.ipc", bench_dir);
    pid_t srv = fork();
    if (srv == 0)
        _exit(bench_raw_server(url));
    if (!lat.us || !payload || nng_req0_open(&req) != 0)
        return 1;
    (void)nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 5000);
    for (int i = 0; i < 100 && nng_dial(req, url, NULL, 0) != 0; i++)
        usleep(10 * 1000);
    uint64_t t0 = clock_mono_ms(), start = 0;
    bool counting = false;
    while (1) {
        uint64_t now = clock_mono_ms();
        if (!counting && now - t0 >= 500) {
            counting = true;
            start = now;
        }
        if (counting && now - start >= (uint64_t)(seconds * 1000))
            break;
        void *buf;
        size_t n;
        uint64_t at = clock_mono_us();
        if (nng_send(req, payload, size, 0) != 0 || nng_recv(req, &buf, &n, NNG_FLAG_ALLOC) != 0) {
            errors++;
            continue;
        }
        nng_free(buf, n);
        if (counting) {
            calls++;
            bench_sample(&lat, clock_mono_us() - at);
        }
    }
    double secs = (double)(clock_mono_ms() - start) / 1000.0;
    bench_percentiles(&lat, pct, sizeof(pct));
    printf("{\"bus\":\"raw-nng\",\"inflight\":1,\"size\":%zu,\"seconds\":%.2f,\"calls\":%lu,"
           "\"calls_per_s\":%.0f,\"errors\":%lu%s}\n",
           size, secs, calls, (double)calls / secs, errors, pct);
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    free(lat.us);
    free(payload);
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    unsigned inflight = 64;
    size_t size = 1024;
    const char *tap = "idle";
    bool latency = false, raw = false, floor_ = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--latency") == 0) {
            latency = true;
            continue;
        }
        if (strcmp(argv[i], "--raw") == 0) {
            raw = true;
            continue;
        }
        if (strcmp(argv[i], "--floor") == 0) {
            floor_ = true;
            continue;
        }
        if (i + 1 == argc)
            break;
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--inflight") == 0)
            inflight = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--tap") == 0)
            tap = argv[i + 1];
        i++;
    }
    bool tap_on = strcmp(tap, "off") != 0;
    log_init("bus-bench", LOG_LVL_WARN, true);
    snprintf(bench_dir, sizeof(bench_dir), "/tmp/tether-bench.%d", (int)getpid());
    if (mkdir(bench_dir, 0755) != 0)
        return 1;
    if (raw || floor_) {
        int rc = raw ? bench_raw(seconds, size) : bench_floor(seconds, size);
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", bench_dir);
        return system(cmd) == 0 ? rc : 1;
    }

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
    char pct[128];
    if (latency && !(bn.lat.us = calloc(BENCH_SAMPLES_MAX, sizeof(uint32_t))))
        return 1;
    struct bus_opts o = {.proc = "bench-client",
                         .dir = bench_dir,
                         .recv_max = 4 << 20,
                         .timeout_ms = 5000,
                         .inflight = 1,
                         .tap = tap_on};
    char url[256];
    if (bus_open(&b, &o) != OK)
        return 1;
    bus_actor_url(b, "bench-server", 0, url, sizeof(url));
    if (bus_peer_open(b, "bench-server", url, &bn.peer) != OK)
        return 1;

    struct mp_writer w;
    char *payload = calloc(1, size + 1);
    struct msg_bus_echo echo = {{payload, size}};
    mp_writer_init(&w);
    msg_encode(&msg_bus_echo_form, &w, &echo);
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
    bench_percentiles(&bn.lat, pct, sizeof(pct));
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
           "\"tap_records_made\":%lu%s}\n",
           tap, inflight, size, secs, bn.done, (double)bn.done / secs, bn.errors, listeners,
           (unsigned long long)seen, listening ? 4 * bn.all : 0, pct);
    kill(srv, SIGTERM);
    waitpid(srv, NULL, 0);
    bus_close(b);
    mp_writer_fini(&w);
    free(payload);
    free(bn.lat.us);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", bench_dir);
    return system(cmd) == 0 ? 0 : 1;
}
