/*
 * msg_run_test.c - the run.* bodies (proto/msg_run.h): their golden files, and what the
 * run-manager and the gateway rely on of each.
 */
#include <stdlib.h>
#include <string.h>

#include "msg_golden.h"
#include "msg_run.h"

#define ENV "env_1"
#define RUN "run_cm00000000000000000000001"
#define SESS "cm000000000000000000sess1"
#define WKR "wkr_0123456789abcdef"

/* A raw field of a sample: pre-encoded msgpack of a literal. */
#define RAW(lit) ((struct slice){(lit), sizeof(lit) - 1})

T_TEST(golden_claim)
{
    struct msg_run_ensure ensure = {SLICE_LIT(ENV), SLICE_LIT(SESS), SLICE_LIT("initial")};
    MSG_GOLDEN(msg_run_ensure_form, "run.ensure", ensure);
    struct msg_run_ensure_reply ensured = {SLICE_LIT(RUN), true};
    MSG_GOLDEN(msg_run_ensure_reply_form, "run.ensure.reply", ensured);
    struct msg_run_swap swap = {SLICE_LIT(ENV), SLICE_LIT(SESS), SLICE_LIT(RUN),
                                SLICE_LIT("manual")};
    MSG_GOLDEN(msg_run_swap_form, "run.swap", swap);
    struct msg_run_swap_reply swapped = {SLICE_LIT(RUN), false};
    MSG_GOLDEN(msg_run_swap_reply_form, "run.swap.reply", swapped);
}

T_TEST(golden_runs)
{
    struct msg_run_ref ref = {SLICE_LIT(ENV), SLICE_LIT(RUN)};
    MSG_GOLDEN(msg_run_get_form, "run.get", ref);
    MSG_GOLDEN(msg_run_cancel_form, "run.cancel", ref);
    /* {id, status: "QUEUED"} */
    struct msg_run_get_reply got = {RAW("\x82\xa2id\xbd" RUN "\xa6status\xa6QUEUED")};
    MSG_GOLDEN(msg_run_get_reply_form, "run.get.reply", got);
    struct msg_run_cancel_reply canceled = {SLICE_LIT(RUN), SLICE_LIT("CANCELED"), true};
    MSG_GOLDEN(msg_run_cancel_reply_form, "run.cancel.reply", canceled);
}

T_TEST(golden_worker)
{
    struct msg_run_dequeue dq = {
        .env_id = SLICE_LIT(ENV),
        .task_identifiers = RAW("\x92\xa5"
                                "agent\xa5other"),
        .max_runs = 2,
        .max_runs_given = true,
        .worker_id = SLICE_LIT(WKR),
        .lease_ms = 30000,
    };
    MSG_GOLDEN(msg_run_dequeue_form, "run.dequeue", dq);
    /* [{id, attempt: 1}] */
    struct msg_run_dequeue_reply dqd = {RAW("\x91\x82\xa2id\xbd" RUN "\xa7"
                                            "attempt\x01")};
    MSG_GOLDEN(msg_run_dequeue_reply_form, "run.dequeue.reply", dqd);
    /* no worker id: written as nil, as the gateway always did */
    struct msg_run_heartbeat hb = {SLICE_LIT(ENV), SLICE_LIT(RUN), SLICE_NULL, 30000};
    MSG_GOLDEN(msg_run_heartbeat_form, "run.heartbeat", hb);
    struct msg_run_heartbeat_reply hbd = {1767225630000ull};
    MSG_GOLDEN(msg_run_heartbeat_reply_form, "run.heartbeat.reply", hbd);
    struct msg_run_complete done = {SLICE_LIT(ENV), SLICE_LIT(RUN), SLICE_LIT(WKR),
                                    SLICE_LIT("{\"ok\":true}")};
    MSG_GOLDEN(msg_run_complete_form, "run.complete", done);
    struct msg_run_fail fail = {SLICE_LIT(ENV), SLICE_LIT(RUN), SLICE_LIT(WKR), SLICE_NULL};
    MSG_GOLDEN(msg_run_fail_form, "run.fail", fail);
    struct msg_run_fail_reply failed = {true, 2};
    MSG_GOLDEN(msg_run_fail_reply_form, "run.fail.reply", failed);
    struct msg_run_release rel = {SLICE_LIT(ENV), SLICE_LIT(WKR), RAW("\x91\xbd" RUN)};
    MSG_GOLDEN(msg_run_release_form, "run.release", rel);
    struct msg_run_release_reply released = {1};
    MSG_GOLDEN(msg_run_release_reply_form, "run.release.reply", released);
}

T_TEST(golden_wait)
{
    struct msg_run_suspend sus = {SLICE_LIT(ENV), SLICE_LIT(RUN), SLICE_LIT(WKR), true};
    MSG_GOLDEN(msg_run_suspend_form, "run.suspend", sus);
    /* [{id, status: "COMPLETED"}] */
    struct msg_run_suspend_reply sud = {
        false, 0,
        RAW("\x91\x82\xa2id\xd9\x24waitpoint_cm000000000000000000000wp1\xa6status\xa9"
            "COMPLETED")};
    MSG_GOLDEN(msg_run_suspend_reply_form, "run.suspend.reply", sud);
    struct msg_run_wake wake = {RAW("\x92\xba"
                                    "cm000000000000000000000wp1\xba"
                                    "cm000000000000000000000wp2")};
    MSG_GOLDEN(msg_run_wake_form, "run.wake", wake);
    struct msg_run_wake_reply woken = {1};
    MSG_GOLDEN(msg_run_wake_reply_form, "run.wake.reply", woken);
    struct msg_run_queued queued = {SLICE_LIT("agent")};
    MSG_GOLDEN(msg_run_queued_form, "run.queued", queued);
}

/* A body written by hand (the map header, then pairs), decoded with form into out. */
struct body {
    struct mp_writer w;
};

static void body_start(struct body *b, uint32_t pairs)
{
    mp_writer_init(&b->w);
    mp_put_map(&b->w, pairs);
}

static err_t body_decode(struct body *b, const struct msg_form *f, void *out)
{
    /* from an exact-size copy, kept until the next decode: the slices borrow from it */
    static char *last;
    size_t n = mp_writer_len(&b->w);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, mp_writer_data(&b->w), n);
    err_t rc = msg_decode(f, copy, n, out);
    free(last);
    last = copy;
    mp_writer_fini(&b->w);
    return rc;
}

/* env_id and session_id are required, of at most 63 bytes; reason is the handler's to check */
T_TEST(claim_requires)
{
    struct body b;
    struct msg_run_ensure m;
    char id[MSG_RUN_ID_MAX + 2];

    body_start(&b, 1);
    mp_put_kv_str(&b.w, "env_id", ENV);
    T_ERR(body_decode(&b, &msg_run_ensure_form, &m), ERR_INVAL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "session_id", "");
    T_ERR(body_decode(&b, &msg_run_ensure_form, &m), ERR_INVAL);

    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0'; /* 64 bytes */
    body_start(&b, 2);
    mp_put_kv_str(&b.w, "env_id", id);
    mp_put_kv_str(&b.w, "session_id", SESS);
    T_ERR(body_decode(&b, &msg_run_ensure_form, &m), ERR_INVAL);

    id[MSG_RUN_ID_MAX] = '\0'; /* 63 */
    body_start(&b, 2);
    mp_put_kv_str(&b.w, "env_id", id);
    mp_put_kv_str(&b.w, "session_id", SESS);
    T_OK(body_decode(&b, &msg_run_ensure_form, &m));
    T_ASSERT(m.reason.p == NULL); /* absent: "reason must be ...", the handler's answer */

    /* a calling run of any length decodes: what is not a run id is the handler's ERR_NOTFOUND */
    char *longer = malloc(2001);
    memset(longer, 'r', 2000);
    longer[2000] = '\0';
    struct msg_run_swap s;
    body_start(&b, 4);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "session_id", SESS);
    mp_put_kv_str(&b.w, "calling_run_id", longer);
    mp_put_kv_str(&b.w, "reason", longer);
    T_OK(body_decode(&b, &msg_run_swap_form, &s));
    T_EQ(s.calling_run_id.n, 2000u);
    T_EQ(s.reason.n, 2000u);
    free(longer);
}

/* run absent is ERR_INVAL (the handler's check), empty or long is present: ERR_NOTFOUND */
T_TEST(run_ref_present)
{
    struct body b;
    struct msg_run_ref m;

    body_start(&b, 1);
    mp_put_kv_str(&b.w, "env_id", ENV);
    T_OK(body_decode(&b, &msg_run_get_form, &m));
    T_ASSERT(m.run.p == NULL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "run", NULL); /* nil */
    T_OK(body_decode(&b, &msg_run_cancel_form, &m));
    T_ASSERT(m.run.p == NULL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "run", "");
    T_OK(body_decode(&b, &msg_run_get_form, &m));
    T_ASSERT(m.run.p != NULL && m.run.n == 0);

    body_start(&b, 1);
    mp_put_kv_str(&b.w, "run", RUN);
    T_ERR(body_decode(&b, &msg_run_get_form, &m), ERR_INVAL); /* no env_id */
}

/* worker_id: nil or absent is none, at most 128 bytes; output and error have no limit here */
T_TEST(worker_fields)
{
    struct body b;
    struct msg_run_heartbeat hb;
    struct msg_run_complete done;
    char worker[MSG_RUN_WORKER_MAX + 2];

    struct msg_run_heartbeat in = {SLICE_LIT(ENV), SLICE_LIT(RUN), SLICE_NULL, 0};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_run_heartbeat_form, &w, &in);
    T_OK(msg_decode(&msg_run_heartbeat_form, mp_writer_data(&w), mp_writer_len(&w), &hb));
    T_ASSERT(hb.worker_id.p == NULL);
    T_EQ(hb.lease_ms, 0u); /* the configured default, the handler's */
    mp_writer_fini(&w);

    memset(worker, 'w', sizeof(worker) - 1);
    worker[sizeof(worker) - 1] = '\0'; /* 129 bytes */
    body_start(&b, 3);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "run", RUN);
    mp_put_kv_str(&b.w, "worker_id", worker);
    T_ERR(body_decode(&b, &msg_run_heartbeat_form, &hb), ERR_INVAL);

    worker[MSG_RUN_WORKER_MAX] = '\0';
    body_start(&b, 3);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "run", RUN);
    mp_put_kv_str(&b.w, "worker_id", worker);
    T_OK(body_decode(&b, &msg_run_heartbeat_form, &hb));
    T_EQ(hb.worker_id.n, (size_t)MSG_RUN_WORKER_MAX);

    body_start(&b, 3);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "run", RUN);
    mp_put_kv_int(&b.w, "lease_ms", -1000);
    T_ERR(body_decode(&b, &msg_run_heartbeat_form, &hb), ERR_INVAL);

    /* over 4 MiB decodes: ERR_TOOBIG is the handler's answer, not ERR_INVAL */
    size_t big = (4u << 20) + 1;
    char *json = malloc(big);
    memset(json, ' ', big);
    json[0] = '1';
    body_start(&b, 3);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "run", RUN);
    mp_put_str(&b.w, "output");
    mp_put_strn(&b.w, json, big);
    T_OK(body_decode(&b, &msg_run_complete_form, &done));
    T_EQ(done.output.n, big);
    T_ASSERT(done.worker_id.p == NULL);
    free(json);
}

/* max_runs absent is 1 to the handler: given tells it from 0 (out of range) */
T_TEST(dequeue_fields)
{
    struct body b;
    struct msg_run_dequeue m;

    body_start(&b, 3);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "worker_id", WKR);
    mp_put_str(&b.w, "task_identifiers");
    mp_put_array(&b.w, 0);
    T_OK(body_decode(&b, &msg_run_dequeue_form, &m));
    T_ASSERT(!m.max_runs_given && m.lease_ms == 0 && m.task_identifiers.n == 1);

    body_start(&b, 3);
    mp_put_kv_str(&b.w, "env_id", ENV);
    mp_put_kv_str(&b.w, "worker_id", WKR);
    mp_put_kv_uint(&b.w, "max_runs", 0);
    T_OK(body_decode(&b, &msg_run_dequeue_form, &m));
    T_ASSERT(m.max_runs_given && m.max_runs == 0 && m.task_identifiers.p == NULL);

    body_start(&b, 1);
    mp_put_kv_str(&b.w, "env_id", ENV); /* no worker_id */
    T_ERR(body_decode(&b, &msg_run_dequeue_form, &m), ERR_INVAL);
}

/* what the gateway and the claim driver rely on of the replies, and the event */
T_TEST(replies)
{
    struct body b;
    struct msg_run_ensure_reply e;
    struct msg_run_suspend_reply s;
    struct msg_run_queued q;
    char run[MSG_RUN_REF_MAX + 2];

    body_start(&b, 1);
    mp_put_kv_bool(&b.w, "triggered", true);
    T_ERR(body_decode(&b, &msg_run_ensure_reply_form, &e), ERR_INVAL); /* no run_id */

    memset(run, 'r', sizeof(run) - 1);
    run[sizeof(run) - 1] = '\0'; /* 160 bytes: past the gateway's buffer */
    body_start(&b, 1);
    mp_put_kv_str(&b.w, "run_id", run);
    T_ERR(body_decode(&b, &msg_run_ensure_reply_form, &e), ERR_INVAL);

    body_start(&b, 2);
    mp_put_kv_bool(&b.w, "suspended", true);
    mp_put_kv_uint(&b.w, "pending", 3);
    T_OK(body_decode(&b, &msg_run_suspend_reply_form, &s));
    T_ASSERT(s.suspended && s.pending == 3 && s.waitpoints.p == NULL);

    struct msg_run_get_reply g;
    body_start(&b, 0);
    T_ERR(body_decode(&b, &msg_run_get_reply_form, &g), ERR_INVAL); /* no run */

    body_start(&b, 0);
    T_OK(body_decode(&b, &msg_run_queued_form, &q));
    T_ASSERT(q.task_identifier.p == NULL); /* none named: every waiter of the env wakes */
}

int main(void)
{
    T_RUN(golden_claim);
    T_RUN(golden_runs);
    T_RUN(golden_worker);
    T_RUN(golden_wait);
    T_RUN(claim_requires);
    T_RUN(run_ref_present);
    T_RUN(worker_fields);
    T_RUN(dequeue_fields);
    T_RUN(replies);
    return T_DONE();
}
