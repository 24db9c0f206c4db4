/*
 * bus_test.c - the bus inside one process: a server thread and a client.
 * Round trips, error replies, deadlines, a request the server drops as
 * expired, malformed messages from a raw peer, exact-topic events, fault
 * parsing and injection, the tap's listener count and its batches; a held reply (sent
 * only when released, or replaced by an error) and a duplicated request
 * that keeps its origin and req_id; a dialer nng stopped redialing, replaced.
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "bus.h"
#include "bus_int.h" /* the client's dials, to break one */
#include "clock.h"
#include "log.h"
#include "stream.h"
#include "mp.h"
#include "mpjson.h"
#include "msg.h"
#include "t.h"

#define MSG_TEST_HOLD 60000 /* a type the server holds without replying */
#define MSG_TEST_FAIL 60001
#define MSG_TEST_HELD 60002     /* answered through bus_req_hold / bus_req_release */
#define MSG_TEST_HELD_ERR 60003 /* held, then replaced by an error */
#define MSG_TEST_SEEN 60004     /* records (origin, req_id) of every arrival */

/* What the server saw (server thread writes, test reads after the call returned). */
static struct {
    unsigned n;
    uint64_t origin[4], req_id[4];
    int held_ok; /* the held reply was visible before release, the request still valid */
} seen;

static char dir[128];
static char url[256];
static struct bus *srv;
static volatile int srv_stop;
static struct bus_req *held;

static void on_request(struct bus_req *req, void *arg)
{
    const struct envelope *env = bus_req_env(req);
    (void)arg;
    if (env->type == MSG_TEST_HOLD) {
        held = req; /* never answered: the caller must time out */
        return;
    }
    if (env->type == MSG_TEST_FAIL) {
        bus_reply_err(req, ERR_CONFLICT, "no way");
        return;
    }
    if (env->type == MSG_TEST_HELD || env->type == MSG_TEST_HELD_ERR) {
        bus_req_hold(req);
        int none_before = bus_req_held(req) == NULL;
        bus_reply(req, env->body.p, env->body.n);
        const struct envelope *h = bus_req_held(req);
        /* the request is still ours: its body can be read after the reply was built */
        seen.held_ok = none_before && h && h->kind == ENV_REPLY && h->body.n == env->body.n &&
                       bus_req_env(req)->type == env->type;
        if (env->type == MSG_TEST_HELD)
            bus_req_release(req);
        else
            bus_req_release_err(req, ERR_UNAVAIL, "could not commit");
        return;
    }
    if (env->type == MSG_TEST_SEEN) {
        if (seen.n < 4) {
            seen.origin[seen.n] = env->origin;
            seen.req_id[seen.n] = env->req_id;
        }
        seen.n++;
    }
    bus_reply(req, env->body.p, env->body.n);
}

static void *server_thread(void *arg)
{
    (void)arg;
    while (!srv_stop) {
        struct pollfd p = {bus_fd(srv), POLLIN, 0};
        if (poll(&p, 1, 20) > 0)
            bus_dispatch(srv);
    }
    return NULL;
}

static struct bus *client;
static struct bus_peer *peer;

struct result {
    int done;
    err_t rc;
    char data[64];
    char errmsg[64];
};

static void on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct result *r = arg;
    struct mp_reader v;
    struct slice s;
    r->done = 1;
    r->rc = rc;
    if (env && env->body.n && mp_map_find(env->body.p, env->body.n, "data", &v) == OK &&
        mp_read_str(&v, &s) == OK)
        (void)slice_copy(s, r->data, sizeof(r->data));
    if (env && env->err_msg.p)
        (void)slice_copy(env->err_msg, r->errmsg, sizeof(r->errmsg));
}

static void pump_until(struct bus *b, int *flag, uint64_t ms)
{
    uint64_t t0 = clock_mono_ms();
    while (!*flag && clock_mono_ms() - t0 < ms) {
        struct pollfd p = {bus_fd(b), POLLIN, 0};
        if (poll(&p, 1, 20) > 0)
            bus_dispatch(b);
    }
}

static void body_with(struct mp_writer *w, const char *data)
{
    mp_writer_init(w);
    mp_put_map(w, 1);
    mp_put_kv_str(w, "data", data);
}

T_TEST(round_trip)
{
    struct mp_writer w;
    struct result r = {0};
    body_with(&w, "hello");
    T_OK(bus_call(peer, MSG_BUS_ECHO, mp_writer_data(&w), mp_writer_len(&w), NULL, on_reply, &r));
    pump_until(client, &r.done, 3000);
    T_ASSERT(r.done);
    T_OK(r.rc);
    T_STREQ(r.data, "hello");
    mp_writer_fini(&w);
}

T_TEST(sync_call)
{
    struct bus_msg m;
    struct mp_writer w;
    body_with(&w, "sync");
    T_OK(bus_call_sync(peer, MSG_BUS_ECHO, mp_writer_data(&w), mp_writer_len(&w), 2000, &m));
    T_EQ(m.env.kind, ENV_REPLY);
    T_EQ(m.env.attempt, 1u);
    T_STREQ(m.env.sender, "test-server");
    bus_msg_free(&m);
    mp_writer_fini(&w);
}

T_TEST(error_reply)
{
    struct result r = {0};
    T_OK(bus_call(peer, MSG_TEST_FAIL, NULL, 0, NULL, on_reply, &r));
    pump_until(client, &r.done, 3000);
    T_ERR(r.rc, ERR_CONFLICT);
    T_STREQ(r.errmsg, "no way");
}

T_TEST(deadline)
{
    struct result r = {0};
    struct bus_trace tr = {.timeout_ms = 150};
    uint64_t t0 = clock_mono_ms();
    T_OK(bus_call(peer, MSG_TEST_HOLD, NULL, 0, &tr, on_reply, &r));
    pump_until(client, &r.done, 3000);
    uint64_t took = clock_mono_ms() - t0;
    T_ERR(r.rc, ERR_TIMEOUT);
    T_ASSERT(took >= 140 && took < 1000);
}

T_TEST(malformed_from_raw_peer)
{
    nng_socket s;
    T_OK(nng_req0_open(&s));
    T_OK(nng_dial(s, url, NULL, 0));
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 200);
    static const unsigned char junk[][6] = {
        {0xc1}, {0x9b, 0x01}, {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00}, {0x91, 0x02},
    };
    for (unsigned i = 0; i < 4; i++) {
        char *buf;
        size_t n;
        T_OK(nng_send(s, (void *)junk[i], sizeof(junk[i]), 0));
        T_ERR(nng_recv(s, &buf, &n, NNG_FLAG_ALLOC), NNG_ETIMEDOUT); /* dropped, no reply */
    }
    nng_close(s);
    struct bus_msg m;
    T_OK(bus_call_sync(peer, MSG_BUS_ECHO, NULL, 0, 2000, &m)); /* and the server lives on */
    bus_msg_free(&m);
}

struct events {
    int n;
    char last[32];
};

static void on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct events *e = arg;
    (void)env;
    e->n++;
    snprintf(e->last, sizeof(e->last), "%s", topic);
}

T_TEST(events_exact_topic)
{
    struct bus_pub *pub;
    struct bus_sub *sub;
    struct events ev = {0};
    char purl[256];
    snprintf(purl, sizeof(purl), "ipc://%s/events.ipc", dir);
    T_OK(bus_pub_open(client, purl, &pub));
    T_OK(bus_sub_open(client, purl, on_event, &ev, &sub));
    T_OK(bus_sub_add(sub, "a"));
    T_ERR(bus_sub_add(sub, ""), ERR_INVAL);
    usleep(100000); /* PUB/SUB slow joiner */
    T_OK(bus_publish(pub, "ab", MSG_BUS_ECHO, NULL, 0));
    T_OK(bus_publish(pub, "a", MSG_BUS_ECHO, NULL, 0));
    int done = 0;
    uint64_t t0 = clock_mono_ms();
    while (ev.n < 1 && clock_mono_ms() - t0 < 2000)
        pump_until(client, &done, 50);
    pump_until(client, &done, 100);
    T_EQ(ev.n, 1);
    T_STREQ(ev.last, "a");
}

/* The topic of a stream with the longest addressing key can be followed. */
T_TEST(events_long_topic)
{
    struct bus_pub *pub;
    struct bus_sub *sub;
    struct events ev = {0};
    char purl[256], topic[STREAM_NAME_MAX], key[STREAM_KEY_MAX + 1];
    snprintf(purl, sizeof(purl), "ipc://%s/events-long.ipc", dir);
    memset(key, 'k', STREAM_KEY_MAX);
    key[STREAM_KEY_MAX] = '\0';
    T_OK(stream_topic(topic, sizeof(topic), "cm0envaaaaaaaaaaaaaaaaaaaa", key, NULL, "out"));
    T_OK(bus_pub_open(client, purl, &pub));
    T_OK(bus_sub_open(client, purl, on_event, &ev, &sub));
    T_OK(bus_sub_add(sub, topic));
    usleep(100000); /* PUB/SUB slow joiner */
    T_OK(bus_publish(pub, topic, MSG_BUS_ECHO, NULL, 0));
    int done = 0;
    uint64_t t0 = clock_mono_ms();
    while (ev.n < 1 && clock_mono_ms() - t0 < 2000)
        pump_until(client, &done, 50);
    T_EQ(ev.n, 1);
}

T_TEST(fault_parse)
{
    struct bus_fault f;
    T_OK(bus_fault_parse("drop=0.1 dup=0.05 delay=50ms", &f));
    T_ASSERT(f.drop == 0.1 && f.dup == 0.05 && f.delay_ms == 50 && f.delay_rate == 1.0);
    T_OK(bus_fault_parse("delay=2s,delay_rate=0.5", &f));
    T_ASSERT(f.delay_ms == 2000 && f.delay_rate == 0.5);
    T_OK(bus_fault_parse("off", &f));
    T_ASSERT(f.drop == 0 && f.delay_ms == 0);
    T_ERR(bus_fault_parse("drop=2", &f), ERR_INVAL);
    T_ERR(bus_fault_parse("drop=-0.1", &f), ERR_INVAL);
    T_ERR(bus_fault_parse("explode=1", &f), ERR_INVAL);
    T_ERR(bus_fault_parse("delay=soon", &f), ERR_INVAL);
}

T_TEST(fault_drop_times_out_cleanly)
{
    struct bus_fault f = {.drop = 1.0};
    struct result r = {0};
    struct bus_trace tr = {.timeout_ms = 100};
    bus_fault_set(client, &f);
    T_OK(bus_call(peer, MSG_BUS_ECHO, NULL, 0, &tr, on_reply, &r));
    pump_until(client, &r.done, 2000);
    T_ERR(r.rc, ERR_TIMEOUT);
    memset(&f, 0, sizeof(f));
    bus_fault_set(client, &f);
    struct bus_msg m;
    T_OK(bus_call_sync(peer, MSG_BUS_ECHO, NULL, 0, 2000, &m));
    bus_msg_free(&m);
}

/* nng 1.5.2 gives up on a dialer whose new connection fails its handshake with NNG_ECLOSED
 * (bus_redial.c): closing the peer's dialer behind the bus's back leaves it the same way, with
 * no pipe and nobody redialing. The bus dials anew within BUS_REDIAL_AFTER_MS and a check. */
T_TEST(dead_dialer_is_replaced)
{
    struct bus_msg m;
    nng_dialer d = bus_dial_dialer(client, client->dials);
    char *u = NULL;
    T_ASSERT(nng_dialer_get_string(d, NNG_OPT_URL, &u) == 0);
    T_STREQ(u, url); /* the peer's dial, the client's only one */
    nng_strfree(u);
    T_ASSERT(nng_dialer_close(d) == 0);
    uint64_t t0 = clock_mono_ms();
    T_OK(bus_call_sync(peer, MSG_BUS_ECHO, NULL, 0, 3000, &m));
    bus_msg_free(&m);
    T_ASSERT(clock_mono_ms() - t0 < 2000); /* nng alone never answers it: no dialer is left */
}

T_TEST(held_reply)
{
    struct mp_writer w;
    struct result r = {0}, e = {0};
    body_with(&w, "kept");
    T_OK(bus_call(peer, MSG_TEST_HELD, mp_writer_data(&w), mp_writer_len(&w), NULL, on_reply, &r));
    pump_until(client, &r.done, 3000);
    T_OK(r.rc);
    T_STREQ(r.data, "kept");
    T_ASSERT(seen.held_ok);
    seen.held_ok = 0;
    T_OK(bus_call(peer, MSG_TEST_HELD_ERR, mp_writer_data(&w), mp_writer_len(&w), NULL, on_reply,
                  &e));
    pump_until(client, &e.done, 3000);
    T_ERR(e.rc, ERR_UNAVAIL);
    T_STREQ(e.errmsg, "could not commit");
    T_ASSERT(seen.held_ok);
    mp_writer_fini(&w);
}

T_TEST(duplicate_keeps_request_id)
{
    struct bus_fault f = {.dup = 1.0};
    struct result r = {0};
    seen.n = 0;
    bus_fault_set(client, &f);
    T_OK(bus_call(peer, MSG_TEST_SEEN, NULL, 0, NULL, on_reply, &r));
    memset(&f, 0, sizeof(f));
    bus_fault_set(client, &f);
    pump_until(client, &r.done, 3000);
    T_OK(r.rc);
    uint64_t t0 = clock_mono_ms();
    while (seen.n < 2 && clock_mono_ms() - t0 < 2000)
        usleep(10000);
    T_EQ(seen.n, 2u);
    T_ASSERT(seen.origin[0] != 0);
    T_EQ(seen.origin[0], seen.origin[1]);
    T_EQ(seen.req_id[0], seen.req_id[1]);
    /* the next call is another request: same origin, another id */
    struct result r2 = {0};
    T_OK(bus_call(peer, MSG_TEST_SEEN, NULL, 0, NULL, on_reply, &r2));
    pump_until(client, &r2.done, 3000);
    T_EQ(seen.n, 3u);
    T_EQ(seen.origin[2], seen.origin[0]);
    T_ASSERT(seen.req_id[2] != seen.req_id[0]);
}

T_TEST(traceparent)
{
    struct bus_trace tr = {0};
    const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    T_ASSERT(bus_trace_from_traceparent(&tr, tp, sizeof(tp) - 1));
    T_STREQ(tr.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    T_ASSERT(!bus_trace_from_traceparent(&tr, "00-zz", 5));
    const char zero[] = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    T_ASSERT(!bus_trace_from_traceparent(&tr, zero, sizeof(zero) - 1));
    bus_trace_new(&tr);
    T_ASSERT(env_trace_valid(tr.trace_id, strlen(tr.trace_id)));
}

T_TEST(log_escape)
{
    char out[32];
    T_EQ(log_json_escape("a\"b\\c\n", 6, out, sizeof(out)), (size_t)9);
    T_STREQ(out, "a\\\"b\\\\c\\n");
    /* a cut never splits a UTF-8 sequence: "é" is 2 bytes */
    log_json_escape("abc\xc3\xa9", 5, out, 5);
    T_STREQ(out, "abc");
}

/* The tap sends batches: every record of every message decodes, and 40 calls arrive as fewer
 * messages than records, within the flush interval. */
T_TEST(tap_batches)
{
    nng_socket sub;
    char tap_url[300];
    unsigned records = 0, messages = 0, in = 0, out = 0, bad = 0, cut_ok = 0;
    snprintf(tap_url, sizeof(tap_url), "ipc://%s/tap/test-server.ipc", dir);
    T_ASSERT(nng_sub0_open(&sub) == 0);
    T_ASSERT(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0) == 0);
    T_ASSERT(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 200) == 0);
    T_ASSERT(nng_dial(sub, tap_url, NULL, 0) == 0);
    for (int i = 0; i < 200 && bus_tap_listeners(srv) == 0; i++)
        usleep(5000);
    T_EQ(bus_tap_listeners(srv), 1u);

    struct mp_writer w;
    body_with(&w, "tapped");
    unsigned failed = 0;
    /* two large: each body crosses whole, the tap's copy is cut to what a listener shows (by
     * the flusher, and for one too large to copy whole, by the thread that mirrors it) */
    static char big[40001];
    for (size_t size = 4000; size <= 40000; size += 36000) {
        memset(big, 'b', size);
        big[size] = '\0';
        struct mp_writer bw;
        body_with(&bw, big);
        struct bus_msg bm;
        T_OK(bus_call_sync(peer, MSG_BUS_ECHO, mp_writer_data(&bw), mp_writer_len(&bw), 2000,
                           &bm));
        T_EQ(bm.env.body.n, mp_writer_len(&bw));
        bus_msg_free(&bm);
        mp_writer_fini(&bw);
    }
    for (int i = 0; i < 40; i++) {
        struct bus_msg m;
        if (bus_call_sync(peer, MSG_BUS_ECHO, mp_writer_data(&w), mp_writer_len(&w), 2000, &m) !=
            OK)
            failed++;
        else
            bus_msg_free(&m);
    }
    mp_writer_fini(&w);
    T_EQ(failed, 0u);

    uint64_t t0 = clock_mono_ms();
    while ((records < 80 || cut_ok < 4) && clock_mono_ms() - t0 < 2000) {
        char *buf;
        size_t n;
        if (nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC) != 0)
            continue;
        messages++;
        struct mp_reader r;
        mp_reader_init(&r, buf, n);
        while (mp_reader_left(&r) > 0) {
            uint32_t fields;
            uint64_t ts, inst, whole;
            struct slice proc, d, peer_name, topic, envb;
            struct envelope env;
            if (mp_read_array(&r, &fields) != OK || fields != 8 || mp_read_uint(&r, &ts) != OK ||
                mp_read_str(&r, &proc) != OK || mp_read_uint(&r, &inst) != OK ||
                mp_read_str(&r, &d) != OK || mp_read_str_or_nil(&r, &peer_name) != OK ||
                mp_read_str_or_nil(&r, &topic) != OK || mp_read_bin(&r, &envb) != OK ||
                mp_read_uint(&r, &whole) != OK || env_decode(envb.p, envb.n, &env) != OK) {
                bad++;
                break;
            }
            if (env.type != MSG_BUS_ECHO)
                continue;
            if (whole > 4000) { /* the large one: a short copy that still decodes and renders */
                char *json = NULL;
                size_t jn;
                if (envb.n < 600 && mp_to_json(env.body.p, env.body.n, 256, &json, &jn) == OK &&
                    strstr(json, "\xe2\x80\xa6") != NULL && jn < 300)
                    cut_ok++;
                free(json);
                continue;
            }
            records++;
            if (slice_eq(d, "in") && env.kind == ENV_REQUEST)
                in++;
            else if (slice_eq(d, "out") && env.kind == ENV_REPLY)
                out++;
        }
        nng_free(buf, n);
    }
    T_EQ(bad, 0u);
    T_EQ(cut_ok, 4u); /* each received and answered */
    T_EQ(in, 40u);
    T_EQ(out, 40u);
    T_ASSERT(messages < records);
    T_ASSERT(nng_close(sub) == 0);
    for (int i = 0; i < 200 && bus_tap_listeners(srv) != 0; i++)
        usleep(5000);
}

int main(void)
{
    pthread_t th;
    log_init("bus-test", LOG_LVL_ERROR, true);
    snprintf(dir, sizeof(dir), "/tmp/tether-bus-test.%d", (int)getpid());
    mkdir(dir, 0755);
    struct bus_opts so = {.proc = "test-server", .dir = dir, .recv_max = 4 << 20,
                          .timeout_ms = 2000, .inflight = 8, .tap = true};
    struct bus_opts co = {.proc = "test-client", .dir = dir, .recv_max = 4 << 20,
                          .timeout_ms = 2000, .inflight = 1};
    if (bus_open(&srv, &so) != OK || bus_open(&client, &co) != OK)
        return 1;
    bus_actor_url(srv, "test-server", 0, url, sizeof(url));
    if (bus_serve(srv, url, on_request, NULL, NULL) != OK ||
        bus_peer_open(client, "test-server", url, &peer) != OK)
        return 1;
    pthread_create(&th, NULL, server_thread, NULL);

    T_RUN(round_trip);
    T_RUN(sync_call);
    T_RUN(dead_dialer_is_replaced); /* before other tests add dials to the client */
    T_RUN(error_reply);
    T_RUN(deadline);
    T_RUN(malformed_from_raw_peer);
    T_RUN(events_exact_topic);
    T_RUN(events_long_topic);
    T_RUN(fault_parse);
    T_RUN(fault_drop_times_out_cleanly);
    T_RUN(held_reply);
    T_RUN(duplicate_keeps_request_id);
    T_RUN(traceparent);
    T_RUN(log_escape);
    T_ASSERT(bus_tap_listeners(srv) == 0);
    T_RUN(tap_batches);
    T_ASSERT(bus_tap_listeners(srv) == 0);

    srv_stop = 1;
    pthread_join(th, NULL);
    bus_close(client);
    bus_close(srv); /* also frees the held request */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return T_DONE();
}
