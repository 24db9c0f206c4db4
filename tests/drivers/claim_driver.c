/*
 * claim_driver.c - drives the run-manager's claim (run.ensure, run.swap)
 * concurrently, for tests/integration/runs_test.sh.
 *
 * It needs a database and, for the bus modes, a running tree, so it is no
 * unit test: tests/drivers/ holds the programs integration tests drive.
 * runs_test.sh runs it with a mode and checks the database afterwards:
 *
 *   claim_driver threads ENV SESSION N REASON
 *       N threads, each with its own PostgreSQL connection, call rm_ensure()
 *       (claim.c, included here) at once: real races in the claim UPDATE.
 *   claim_driver swap-threads ENV SESSION CALLING N REASON
 *       the same with rm_swap().
 *   claim_driver bus ENV REASON N SESSION...
 *       N run.ensure calls over the bus at once (call i for SESSION i mod the
 *       count), retried on ERR_UNAVAIL/ERR_TIMEOUT/ERR_CLOSED for 30 s (the
 *       run-manager may be killed meanwhile). CT_SPREAD_MS=n sends call i
 *       i * n ms after the first instead of all at once.
 *   claim_driver swap-bus ENV SESSION CALLING N REASON
 *       N run.swap calls over the bus at once.
 *
 * Output: one line per call, "ok <session> <run id> <0|1 triggered/swapped>"
 * or "err <session> <ERR_NAME> <message>", then "# ..." summaries. Exit 0
 * when every call answered OK, 1 otherwise, 100 on bad usage.
 */
#include "../../actors/run_manager/check.c"
#include "../../actors/run_manager/claim.c"
#include "../../actors/run_manager/run_store.c"
#include "../../actors/run_manager/trigger.c"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "msg.h"

#define CT_MAX_CALLS 256
#define CT_RETRY_MS 200
#define CT_DEADLINE_MS 30000

struct ct_call {
    const char *env_id, *session_id, *calling, *reason;
    bool swap;
    pthread_barrier_t *barrier;
    /* outcome */
    err_t rc;
    char msg[160];
    struct rm_claim claim;
    /* bus mode */
    bool done;
    uint64_t retry_at; /* mono ms; 0 = not waiting to retry */
    unsigned tries;
};

static void ct_print(const struct ct_call *c)
{
    if (c->rc == OK)
        printf("ok %s %s %d\n", c->session_id, c->claim.run_id, c->claim.triggered ? 1 : 0);
    else
        printf("err %s %s %s\n", c->session_id, err_name(c->rc), c->msg);
}

static int ct_summary(const struct ct_call *calls, unsigned n)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        ct_print(&calls[i]);
        ok += calls[i].rc == OK;
    }
    printf("# %u of %u calls answered OK\n", ok, n);
    fflush(stdout);
    return ok == n ? 0 : 1;
}

/* ---- threads: the claim code itself, one connection per thread ---- */

static void *ct_thread(void *arg)
{
    struct ct_call *c = arg;
    struct db_pg pg;
    struct rm rm = {.cfg = {.lease_default_ms = 30000,
                            .sweep_interval_ms = 1000,
                            .sweep_batch = 100,
                            .orphan_grace_ms = 5000}};
    const char *why = NULL;
    db_pg_init(&pg, getenv("TETHER_PG_URL"), 5000);
    rm.pg = &pg;
    /* connect before the barrier, so the race is in the statements, not in the handshakes */
    c->rc = db_pg_ensure(&pg);
    pthread_barrier_wait(c->barrier);
    if (c->rc == OK)
        c->rc = c->swap
                    ? rm_swap(&rm, c->env_id, c->session_id, c->calling, c->reason, &c->claim, &why)
                    : rm_ensure(&rm, c->env_id, c->session_id, c->reason, &c->claim);
    snprintf(c->msg, sizeof(c->msg), "%s", why ? why : err_str(c->rc));
    db_pg_fini(&pg);
    return NULL;
}

static int ct_threads(struct ct_call *calls, unsigned n)
{
    pthread_t th[CT_MAX_CALLS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, n);
    for (unsigned i = 0; i < n; i++) {
        calls[i].barrier = &barrier;
        if (pthread_create(&th[i], NULL, ct_thread, &calls[i]) != 0) {
            fprintf(stderr, "claim_driver: cannot start thread %u\n", i);
            exit(111);
        }
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    return ct_summary(calls, n);
}

/* ---- bus: the running run-manager(s) ---- */

static struct bus_peer *ct_peer;
static unsigned ct_pending;

static void ct_send(struct ct_call *c);

static void ct_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct ct_call *c = arg;
    c->rc = rc;
    c->msg[0] = '\0';
    if (rc == OK) {
        struct msg_run_ensure_reply e = {SLICE_NULL, false};
        struct msg_run_swap_reply s = {SLICE_NULL, false};
        err_t d = c->swap ? msg_decode(&msg_run_swap_reply_form, env->body.p, env->body.n, &s)
                          : msg_decode(&msg_run_ensure_reply_form, env->body.p, env->body.n, &e);
        c->claim.triggered = c->swap ? s.swapped : e.triggered;
        if (d != OK || slice_copy(c->swap ? s.run_id : e.run_id, c->claim.run_id, RM_RUN_MAX) != OK)
            c->rc = ERR_PROTO;
    } else if (env && env->err_msg.p) {
        snprintf(c->msg, sizeof(c->msg), "%.*s", (int)env->err_msg.n, env->err_msg.p);
    } else {
        snprintf(c->msg, sizeof(c->msg), "%s", err_str(rc));
    }
    /* the run-manager was down or restarting: callers retry, and so do we */
    if ((rc == ERR_UNAVAIL || rc == ERR_TIMEOUT || rc == ERR_CLOSED) && c->tries < 100) {
        c->retry_at = clock_mono_ms() + CT_RETRY_MS;
        return;
    }
    c->done = true;
    ct_pending--;
}

static void ct_send(struct ct_call *c)
{
    struct mp_writer w;
    mp_writer_init(&w);
    if (c->swap) {
        struct msg_run_swap m = {msg_str(c->env_id), msg_str(c->session_id), msg_str(c->calling),
                                 msg_str(c->reason)};
        msg_encode(&msg_run_swap_form, &w, &m);
    } else {
        struct msg_run_ensure m = {msg_str(c->env_id), msg_str(c->session_id), msg_str(c->reason)};
        msg_encode(&msg_run_ensure_form, &w, &m);
    }
    struct bus_trace trace = {.timeout_ms = 10000};
    bus_trace_new(&trace);
    c->tries++;
    c->retry_at = 0;
    err_t rc = bus_call(ct_peer, c->swap ? MSG_RUN_SWAP : MSG_RUN_ENSURE, mp_writer_data(&w),
                        mp_writer_len(&w), &trace, ct_on_reply, c);
    mp_writer_fini(&w);
    if (rc != OK)
        ct_on_reply(c, rc, NULL);
}

static int ct_bus(struct ct_call *calls, unsigned n)
{
    struct bus *b;
    char dir[BUS_URL_MAX];
    const char *bus_dir = getenv("TETHER_BUS_DIR"), *run_dir = getenv("TETHER_RUN_DIR");
    if (bus_dir && *bus_dir)
        snprintf(dir, sizeof(dir), "%s", bus_dir);
    else
        snprintf(dir, sizeof(dir), "%s/bus", run_dir ? run_dir : ".");
    struct bus_opts bo = {
        .proc = "claim-test", .dir = dir, .recv_max = 4u << 20, .timeout_ms = 10000, .inflight = 1};
    if (bus_open(&b, &bo) != OK || bus_peer_open_actor(b, "run-manager", &ct_peer) != OK) {
        fprintf(stderr, "claim_driver: cannot open the bus in %s\n", dir);
        return 111;
    }
    /* CT_SPREAD_MS: call i leaves i * spread ms after the first (a kill can land mid-burst) */
    const char *sp = getenv("CT_SPREAD_MS");
    uint64_t spread = sp ? strtoull(sp, NULL, 10) : 0, start = clock_mono_ms();
    uint64_t deadline = start + CT_DEADLINE_MS + spread * n;
    ct_pending = n;
    for (unsigned i = 0; i < n; i++) {
        if (spread && i > 0)
            calls[i].retry_at = start + spread * i;
        else
            ct_send(&calls[i]);
    }
    while (ct_pending > 0 && clock_mono_ms() < deadline) {
        struct pollfd pfd = {.fd = bus_fd(b), .events = POLLIN};
        (void)poll(&pfd, 1, 20);
        bus_dispatch(b);
        uint64_t now = clock_mono_ms();
        for (unsigned i = 0; i < n; i++)
            if (!calls[i].done && calls[i].retry_at && calls[i].retry_at <= now)
                ct_send(&calls[i]);
    }
    for (unsigned i = 0; i < n; i++)
        if (!calls[i].done && calls[i].rc == OK)
            calls[i].rc = ERR_TIMEOUT;
    int code = ct_summary(calls, n);
    bus_close(b);
    return code;
}

static int ct_usage(void)
{
    fprintf(stderr, "usage: claim_driver threads ENV SESSION N REASON\n"
                    "       claim_driver swap-threads ENV SESSION CALLING N REASON\n"
                    "       claim_driver bus ENV REASON N SESSION...\n"
                    "       claim_driver swap-bus ENV SESSION CALLING N REASON\n");
    return 100;
}

static unsigned ct_count(const char *s)
{
    long v = strtol(s, NULL, 10);
    return v >= 1 && v <= CT_MAX_CALLS ? (unsigned)v : 0;
}

int main(int argc, char **argv)
{
    static struct ct_call calls[CT_MAX_CALLS];
    unsigned n;
    if (argc < 2)
        return ct_usage();
    log_init("claim-test", LOG_LVL_WARN, false);
    const char *mode = argv[1];
    bool swap = strncmp(mode, "swap-", 5) == 0;
    bool threads = strcmp(mode, "threads") == 0 || strcmp(mode, "swap-threads") == 0;
    if (strcmp(mode, "bus") == 0) {
        if (argc < 6 || !(n = ct_count(argv[4])))
            return ct_usage();
        for (unsigned i = 0; i < n; i++)
            calls[i] = (struct ct_call){.env_id = argv[2],
                                        .reason = argv[3],
                                        .session_id = argv[5 + i % (unsigned)(argc - 5)]};
        return ct_bus(calls, n);
    }
    if (!threads && strcmp(mode, "swap-bus") != 0)
        return ct_usage();
    if (argc != (swap ? 7 : 6) || !(n = ct_count(argv[swap ? 5 : 4])))
        return ct_usage();
    for (unsigned i = 0; i < n; i++)
        calls[i] = (struct ct_call){.env_id = argv[2],
                                    .session_id = argv[3],
                                    .calling = swap ? argv[4] : NULL,
                                    .reason = argv[swap ? 6 : 5],
                                    .swap = swap};
    if (threads && !getenv("TETHER_PG_URL")) {
        fprintf(stderr, "claim_driver: TETHER_PG_URL is not set\n");
        return 100;
    }
    return threads ? ct_threads(calls, n) : ct_bus(calls, n);
}
