/*
 * h_dequeue.c - POST /api/v1/workers/dequeue (docs/workers.md): with the
 * secret key, leases queued runs of the named tasks to a worker, and
 * long-polls.
 *
 * It is one run-manager message (run.dequeue, proto/msg.c). A dequeue with
 * waitSeconds keeps the request open: it subscribes to the run-manager's
 * run.queued.<env> events and dequeues again on each one that names one of
 * its tasks, and every GW_DQ_POLL_MS anyway (an event may be lost), never
 * in a tight loop. Run tokens are minted here, signed like every token of
 * the environment. Bodies and tokens are never logged. The readers of
 * run-manager replies are h_runs.c's (runs_int.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "ids.h"
#include "log.h"
#include "longpoll.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_run.h"
#include "runs_int.h"

#define GW_RUN_TOKEN_TTL_S 3600
#define GW_DQ_TICK_MS 200  /* how often a waiting dequeue checks its deadline and client */
#define GW_DQ_POLL_MS 2000 /* dequeue again this often without an event */
#define GW_DQ_TASKS_MAX 100
#define GW_DQ_TASK_LEN_MAX 256
#define GW_DQ_RUNS_MAX 50
#define GW_DQ_WAIT_MAX_S 60

/* A dequeue in progress: the call's state (c->state). */
struct gw_dq {
    struct gw_lp_waiter lp; /* first: the long-poll's (longpoll.h) */
    void *request;          /* the run.dequeue body, built once (malloc'd) */
    size_t request_n;
    char *tasks; /* the task identifiers, NUL-separated (malloc'd) */
    size_t tasks_n;
    char worker_id[GW_WORKER_ID_MAX + 1];
};

static void gw_dq_lp_issue(struct gw_lp_waiter *w);
static void gw_dq_lp_expire(struct gw_lp_waiter *w);
static bool gw_dq_lp_wants(const struct gw_lp_waiter *w, const struct envelope *env);

static const struct gw_lp_kind gw_dq_kind = {
    .board = GW_LP_DEQUEUE,
    .actor = "run-manager",
    .prefix = "run.queued.",
    .tick_ms = GW_DQ_TICK_MS,
    .poll_ms = GW_DQ_POLL_MS,
    .issue = gw_dq_lp_issue,
    .expire = gw_dq_lp_expire,
    .wants = gw_dq_lp_wants,
};

static void gw_dq_issue(struct gw_dq *dq);

/* Takes dq off the board and timer and frees what it holds; the caller then responds. */
static void gw_dq_done(struct gw_dq *dq)
{
    gw_lp_done(&dq->lp);
    free(dq->request);
    dq->request = NULL;
    free(dq->tasks);
    dq->tasks = NULL;
}

static void gw_dq_respond_empty(struct gw_dq *dq)
{
    struct gw_call *c = dq->lp.c;
    gw_dq_done(dq);
    gw_respond_json(c, 200, json_pack("{s:[],s:s}", "runs", "workerId", dq->worker_id), 0);
}

static bool gw_dq_wants(const struct gw_dq *dq, const char *task, size_t n)
{
    for (size_t o = 0; o < dq->tasks_n;) {
        size_t l = strlen(dq->tasks + o);
        if (l == n && memcmp(dq->tasks + o, task, n) == 0)
            return true;
        o += l + 1;
    }
    return false;
}

static void gw_dq_lp_issue(struct gw_lp_waiter *w)
{
    gw_dq_issue((struct gw_dq *)w);
}

/* the wait is over with no run: to nobody, maybe, which ends the call without taking a run */
static void gw_dq_lp_expire(struct gw_lp_waiter *w)
{
    gw_dq_respond_empty((struct gw_dq *)w);
}

/* an event that names no task (or that cannot be read) wakes every waiter of the env */
static bool gw_dq_lp_wants(const struct gw_lp_waiter *w, const struct envelope *env)
{
    struct msg_run_queued ev;
    if (msg_decode(&msg_run_queued_form, env->body.p, env->body.n, &ev) != OK ||
        !ev.task_identifier.p)
        return true;
    return gw_dq_wants((const struct gw_dq *)w, ev.task_identifier.p, ev.task_identifier.n);
}

static void gw_on_release_reply(void *arg, err_t rc, const struct envelope *env)
{
    (void)arg;
    (void)env;
    /* not given back: the lease sweep takes them back when the lease ends */
    if (rc != OK)
        LOG_WARN("gw.release_failed", "could not give back runs of a departed worker: %s",
                 err_str(rc));
}

/* The client is gone with runs leased to it: hand them back at once. */
static void gw_dq_release(struct gw_dq *dq, struct slice runs, uint32_t n)
{
    struct mp_reader rd;
    struct mp_writer ids, w;
    char id[128];
    uint32_t len;
    mp_writer_init(&ids); /* the runs' ids, from their objects */
    mp_put_array(&ids, n);
    mp_reader_init(&rd, runs.p, runs.n);
    (void)mp_read_array(&rd, &len);
    for (uint32_t i = 0; i < n && i < len; i++) {
        struct slice m;
        if (mp_skip(&rd, &m) != OK)
            break;
        gw_mp_str(m, "id", id, sizeof(id));
        mp_put_str(&ids, id);
    }
    struct msg_run_release rel = {msg_str(dq->lp.c->auth.env.id),
                                  msg_str(dq->worker_id),
                                  {mp_writer_data(&ids), mp_writer_len(&ids)}};
    mp_writer_init(&w);
    msg_encode(&msg_run_release_form, &w, &rel);
    if (mp_writer_err(&ids) == OK && mp_writer_err(&w) == OK)
        (void)bus_call(dq->lp.c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_RELEASE,
                       mp_writer_data(&w), mp_writer_len(&w), &dq->lp.c->trace, gw_on_release_reply,
                       NULL);
    mp_writer_fini(&w);
    mp_writer_fini(&ids);
}

/* One dequeued run for the worker, with a token for its run and its session. */
static json_t *gw_dq_item(struct gw_call *c, struct slice m)
{
    char id[128], task[GW_PARAM_MAX], session[128], key[GW_PARAM_MAX];
    char s1[GW_PARAM_MAX + 32], s2[GW_PARAM_MAX + 32], s3[GW_PARAM_MAX + 32], s4[GW_PARAM_MAX + 32],
        s5[160], s6[160];
    const char *scopes[6];
    unsigned n = 0;
    bool has_idle;
    gw_mp_str(m, "id", id, sizeof(id));
    gw_mp_str(m, "task_identifier", task, sizeof(task));
    bool has_session = gw_mp_str(m, "session_id", session, sizeof(session));
    bool has_key = gw_mp_str(m, "session_key", key, sizeof(key));
    uint64_t idle = gw_mp_u64(m, "idle_timeout_s", &has_idle);

    snprintf(s1, sizeof(s1), "read:runs:%s", id);
    snprintf(s2, sizeof(s2), "write:runs:%s", id);
    scopes[n++] = s1;
    scopes[n++] = s2;
    if (has_session) {
        /* the addressing key (external id, else friendly id), and the friendly id too */
        const char *k = has_key ? key : session;
        snprintf(s3, sizeof(s3), "read:sessions:%s", k);
        snprintf(s4, sizeof(s4), "write:sessions:%s", k);
        scopes[n++] = s3;
        scopes[n++] = s4;
        if (strcmp(k, session) != 0) {
            snprintf(s5, sizeof(s5), "read:sessions:%s", session);
            snprintf(s6, sizeof(s6), "write:sessions:%s", session);
            scopes[n++] = s5;
            scopes[n++] = s6;
        }
    }
    char *token =
        gw_jwt_mint(c->auth.env.signing_key, c->auth.env.id, scopes, n, GW_RUN_TOKEN_TTL_S);
    if (!token)
        return NULL;
    json_t *payload = gw_mp_json(m, "payload");
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "taskIdentifier", json_string(task));
    json_object_set_new(o, "payload", payload ? payload : json_object());
    json_object_set_new(o, "attempt", json_integer((json_int_t)gw_mp_u64(m, "attempt", NULL)));
    json_object_set_new(o, "maxAttempts",
                        json_integer((json_int_t)gw_mp_u64(m, "max_attempts", NULL)));
    json_object_set_new(o, "sessionId", has_session ? json_string(session) : json_null());
    json_object_set_new(o, "sessionKey", has_key ? json_string(key) : json_null());
    if (has_idle)
        json_object_set_new(o, "idleTimeoutInSeconds", json_integer((json_int_t)idle));
    json_object_set_new(o, "leaseExpiresAt",
                        gw_iso_or_null(gw_mp_u64(m, "lease_expires_at_ms", NULL)));
    json_object_set_new(o, "token", json_string(token));
    free(token);
    /* a run resumed after a wait: the waitpoints it waited on, completed (h_run_suspend.c) */
    struct mp_reader rv;
    uint32_t nw;
    if (mp_map_find(m.p, m.n, "waitpoints", &rv) == OK && mp_read_array(&rv, &nw) == OK) {
        json_t *wps = json_array();
        for (uint32_t i = 0; i < nw; i++) {
            struct slice wm;
            if (mp_skip(&rv, &wm) != OK)
                break;
            json_array_append_new(wps, gw_wp_completed_json(wm));
        }
        json_object_set_new(o, "resume", json_pack("{s:o}", "waitpoints", wps));
    }
    return o;
}

static void gw_dq_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_dq *dq = arg;
    struct gw_call *c = dq->lp.c;
    struct mp_reader v;
    struct msg_run_dequeue_reply r = {SLICE_NULL};
    uint32_t n = 0;
    gw_lp_replied(&dq->lp);
    if (rc == OK && env &&
        msg_decode(&msg_run_dequeue_reply_form, env->body.p, env->body.n, &r) != OK)
        rc = ERR_PROTO;
    if (rc != OK || !env) {
        /* a restarting run-manager is no reason to end a long-poll: try again at the next poll */
        if (dq->lp.deadline_mono && (rc == ERR_UNAVAIL || rc == ERR_TIMEOUT || rc == ERR_CLOSED) &&
            clock_mono_ms() < dq->lp.deadline_mono && c->req) {
            gw_lp_tick(&dq->lp);
            return;
        }
        gw_dq_done(dq);
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "run.dequeue");
        return;
    }
    mp_reader_init(&v, r.runs.p, r.runs.n);
    if (mp_read_array(&v, &n) != OK)
        n = 0;
    if (n > 0) {
        if (gw_lp_client_gone(&dq->lp)) {
            gw_dq_release(dq, r.runs, n);
            gw_dq_done(dq);
            gw_respond_json(c, 200, json_object(), 0); /* to nobody: frees the call */
            return;
        }
        json_t *list = json_array();
        for (uint32_t i = 0; i < n; i++) {
            struct slice m;
            json_t *item = mp_skip(&v, &m) == OK ? gw_dq_item(c, m) : NULL;
            if (!item) {
                json_decref(list);
                gw_dq_done(dq);
                gw_respond_err(c, ERR_INTERNAL, "could not build the dequeued run");
                return;
            }
            json_array_append_new(list, item);
        }
        gw_dq_done(dq);
        gw_respond_json(c, 200, json_pack("{s:o,s:s}", "runs", list, "workerId", dq->worker_id), 0);
        return;
    }
    gw_lp_wait_on(&dq->lp);
}

static void gw_dq_issue(struct gw_dq *dq)
{
    struct gw_call *c = dq->lp.c;
    gw_lp_calling(&dq->lp);
    err_t rc = bus_call(c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_DEQUEUE, dq->request,
                        dq->request_n, &c->trace, gw_dq_on_reply, dq);
    if (rc != OK)
        gw_dq_on_reply(dq, rc, NULL);
}

/* taskIdentifiers: 1-100 non-empty strings of at most 256 bytes; false (400 sent) otherwise. */
static bool gw_dq_tasks(struct gw_call *c, json_t *tasks)
{
    size_t i;
    json_t *t;
    if (!json_is_array(tasks) || json_array_size(tasks) < 1 ||
        json_array_size(tasks) > GW_DQ_TASKS_MAX) {
        gw_respond_error(c, 400, "taskIdentifiers must be an array of 1-100 task identifiers", 0);
        return false;
    }
    json_array_foreach(tasks, i, t)
    {
        if (!json_is_string(t) || json_string_length(t) == 0 ||
            json_string_length(t) > GW_DQ_TASK_LEN_MAX ||
            strlen(json_string_value(t)) != json_string_length(t)) {
            gw_respond_error(c, 400, "each task identifier must be a string of 1-256 characters",
                             0);
            return false;
        }
    }
    return true;
}

void gw_on_worker_dequeue(struct gw_call *c)
{
    json_t *tasks = json_object_get(c->body, "taskIdentifiers");
    const char *worker;
    long long max_runs, wait_s, lease_s;
    size_t i;
    json_t *t;
    struct mp_writer tasks_w, w;

    if (!gw_dq_tasks(c, tasks) || !gw_runs_worker(c, c->body, &worker) ||
        !gw_runs_int(c, c->body, "maxRuns", 1, GW_DQ_RUNS_MAX, 1, &max_runs) ||
        !gw_runs_int(c, c->body, "waitSeconds", 0, GW_DQ_WAIT_MAX_S, 0, &wait_s) ||
        !gw_runs_int(c, c->body, "leaseSeconds", 1, GW_LEASE_MAX_S, GW_LEASE_DEFAULT_S, &lease_s))
        return;
    struct gw_dq *dq = xcalloc(1, sizeof(*dq));
    c->state = dq;
    gw_lp_init(&dq->lp, &gw_dq_kind, c);
    if (worker) {
        snprintf(dq->worker_id, sizeof(dq->worker_id), "%s", worker);
    } else {
        /* one per request: the worker learns it from the answer (workerId) */
        static const char hex[] = "0123456789abcdef";
        uint8_t b[8] = {0};
        (void)random_bytes(b, sizeof(b));
        memcpy(dq->worker_id, "wkr_", 4);
        for (int k = 0; k < 8; k++) {
            dq->worker_id[4 + 2 * k] = hex[b[k] >> 4];
            dq->worker_id[5 + 2 * k] = hex[b[k] & 15];
        }
        dq->worker_id[20] = '\0';
    }
    /* the request is the same at every try: build it once */
    mp_writer_init(&tasks_w);
    mp_put_array(&tasks_w, (uint32_t)json_array_size(tasks));
    json_array_foreach(tasks, i, t)
    {
        dq->tasks_n += json_string_length(t) + 1;
        mp_put_str(&tasks_w, json_string_value(t));
    }
    struct msg_run_dequeue m = {
        .env_id = msg_str(c->auth.env.id),
        .task_identifiers = {mp_writer_data(&tasks_w), mp_writer_len(&tasks_w)},
        .max_runs = (uint64_t)max_runs,
        .max_runs_given = true,
        .worker_id = msg_str(dq->worker_id),
        .lease_ms = (uint64_t)lease_s * 1000,
    };
    mp_writer_init(&w);
    msg_encode(&msg_run_dequeue_form, &w, &m);
    if (mp_writer_err(&tasks_w) != OK || mp_writer_err(&w) != OK) {
        mp_writer_fini(&w);
        mp_writer_fini(&tasks_w);
        gw_respond_err(c, ERR_NOMEM, "run.dequeue");
        return;
    }
    dq->request_n = mp_writer_len(&w);
    dq->request = xmalloc(dq->request_n);
    memcpy(dq->request, mp_writer_data(&w), dq->request_n);
    mp_writer_fini(&w);
    mp_writer_fini(&tasks_w);
    dq->tasks = xmalloc(dq->tasks_n);
    size_t o = 0;
    json_array_foreach(tasks, i, t)
    {
        memcpy(dq->tasks + o, json_string_value(t), json_string_length(t) + 1);
        o += json_string_length(t) + 1;
    }
    if (wait_s > 0) /* listen before the first try, so a run queued right after it wakes us */
        gw_lp_listen(&dq->lp, (uint64_t)wait_s * 1000);
    gw_dq_issue(dq);
}
