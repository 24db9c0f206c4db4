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

/* One topic the process subscribes to, with the number of waiters that need it. */
struct gw_topic {
    struct gw_topic *next;
    char env_id[64];
    unsigned refs;
};

struct gw_runs {
    h2o_timeout_t tick;    /* GW_DQ_TICK_MS, for every waiting dequeue */
    struct bus_sub *sub;   /* the run-manager's events; NULL: polling only */
    struct gw_dq *waiters; /* long-polls in progress */
    struct gw_topic *topics;
};

/* A dequeue in progress: the call's state (c->state). */
struct gw_dq {
    struct gw_call *c;
    struct gw_dq *prev, *next; /* in gw_runs.waiters while listed */
    bool listed;
    h2o_timeout_entry_t tick;
    void *request; /* the run.dequeue body, built once (malloc'd) */
    size_t request_n;
    char *tasks; /* the task identifiers, NUL-separated (malloc'd) */
    size_t tasks_n;
    uint64_t deadline_mono; /* 0: no waiting */
    uint64_t next_poll_mono;
    bool calling;      /* a run.dequeue is under way */
    bool wake_pending; /* an event arrived during it: dequeue again at once */
    char worker_id[GW_WORKER_ID_MAX + 1];
};

static void gw_dq_issue(struct gw_dq *dq);

/* The client of a waiting dequeue has gone: runs leased to it would otherwise wait for their
 * lease to end. */
static bool gw_dq_client_gone(struct gw_call *c)
{
    return !c->req || gw_req_client_gone(c->req);
}

static void gw_runs_on_event(void *arg, const char *topic, const struct envelope *env);

static struct gw_runs *gw_runs_get(struct gw *gw)
{
    if (gw->runs)
        return gw->runs;
    struct gw_runs *r = xcalloc(1, sizeof(*r));
    h2o_timeout_init(gw->ctx.loop, &r->tick, GW_DQ_TICK_MS);
    /* without events a long-poll still works, at GW_DQ_POLL_MS's latency */
    if (bus_sub_open_actor(gw->bus, "run-manager", gw_runs_on_event, gw, &r->sub) != OK) {
        LOG_WARN("gw.runs_events", "cannot follow the run-manager's events; dequeues poll");
        r->sub = NULL;
    }
    gw->runs = r;
    return r;
}

static void gw_runs_topic(char *out, size_t cap, const char *env_id)
{
    snprintf(out, cap, "run.queued.%s", env_id);
}

static void gw_runs_topic_ref(struct gw_runs *r, const char *env_id)
{
    char topic[96];
    struct gw_topic *t;
    for (t = r->topics; t; t = t->next)
        if (strcmp(t->env_id, env_id) == 0)
            break;
    if (!t) {
        t = xcalloc(1, sizeof(*t));
        snprintf(t->env_id, sizeof(t->env_id), "%s", env_id);
        t->next = r->topics;
        r->topics = t;
        gw_runs_topic(topic, sizeof(topic), env_id);
        if (r->sub && bus_sub_add(r->sub, topic) != OK)
            LOG_WARN("gw.runs_events", "cannot subscribe to run.queued of environment %s", env_id);
    }
    t->refs++;
}

static void gw_runs_topic_unref(struct gw_runs *r, const char *env_id)
{
    char topic[96];
    for (struct gw_topic **pp = &r->topics, *t; (t = *pp); pp = &t->next) {
        if (strcmp(t->env_id, env_id) != 0)
            continue;
        if (--t->refs == 0) {
            *pp = t->next;
            gw_runs_topic(topic, sizeof(topic), env_id);
            if (r->sub)
                (void)bus_sub_remove(r->sub, topic);
            free(t);
        }
        return;
    }
}

/* Takes dq off every list and timer and frees what it holds; the caller then responds. */
static void gw_dq_done(struct gw_dq *dq)
{
    struct gw_runs *r = dq->c->gw->runs;
    if (h2o_timeout_is_linked(&dq->tick))
        h2o_timeout_unlink(&dq->tick);
    if (dq->listed) {
        if (dq->prev)
            dq->prev->next = dq->next;
        else
            r->waiters = dq->next;
        if (dq->next)
            dq->next->prev = dq->prev;
        dq->listed = false;
        gw_runs_topic_unref(r, dq->c->auth.env.id);
    }
    free(dq->request);
    dq->request = NULL;
    free(dq->tasks);
    dq->tasks = NULL;
}

static void gw_dq_respond_empty(struct gw_dq *dq)
{
    struct gw_call *c = dq->c;
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

static void gw_dq_wake(struct gw_dq *dq)
{
    if (dq->calling) {
        dq->wake_pending = true;
        return;
    }
    if (gw_dq_client_gone(dq->c)) {
        gw_dq_respond_empty(dq); /* to nobody: ends the call without taking a run */
        return;
    }
    if (h2o_timeout_is_linked(&dq->tick))
        h2o_timeout_unlink(&dq->tick);
    gw_dq_issue(dq);
}

static void gw_runs_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw *gw = arg;
    struct gw_runs *r = gw->runs;
    struct msg_run_queued ev;
    const char *env_id = topic + strlen("run.queued.");
    if (!r || strncmp(topic, "run.queued.", strlen("run.queued.")) != 0)
        return;
    /* an event that names no task (or that cannot be read) wakes every waiter of the env */
    if (msg_decode(&msg_run_queued_form, env->body.p, env->body.n, &ev) != OK)
        ev.task_identifier = SLICE_NULL;
    struct slice task = ev.task_identifier;
    /* waking may finish a waiter (and unlink it): walk with the next one saved */
    for (struct gw_dq *dq = r->waiters, *next; dq; dq = next) {
        next = dq->next;
        if (strcmp(dq->c->auth.env.id, env_id) == 0 && (!task.p || gw_dq_wants(dq, task.p, task.n)))
            gw_dq_wake(dq);
    }
}

static void gw_dq_on_tick(h2o_timeout_entry_t *entry)
{
    struct gw_dq *dq = (struct gw_dq *)((char *)entry - offsetof(struct gw_dq, tick));
    struct gw_call *c = dq->c;
    uint64_t now = clock_mono_ms();
    /* the client left, the gateway is stopping, or the wait is over: answer (nobody, maybe) */
    if (gw_dq_client_gone(c) || c->gw->stopping || now >= dq->deadline_mono) {
        gw_dq_respond_empty(dq);
        return;
    }
    if (now >= dq->next_poll_mono) {
        gw_dq_issue(dq);
        return;
    }
    h2o_timeout_link(c->gw->ctx.loop, &c->gw->runs->tick, &dq->tick);
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
    struct msg_run_release rel = {msg_str(dq->c->auth.env.id),
                                  msg_str(dq->worker_id),
                                  {mp_writer_data(&ids), mp_writer_len(&ids)}};
    mp_writer_init(&w);
    msg_encode(&msg_run_release_form, &w, &rel);
    if (mp_writer_err(&ids) == OK && mp_writer_err(&w) == OK)
        (void)bus_call(dq->c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_RELEASE, mp_writer_data(&w),
                       mp_writer_len(&w), &dq->c->trace, gw_on_release_reply, NULL);
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
    struct gw_call *c = dq->c;
    struct mp_reader v;
    struct msg_run_dequeue_reply r = {SLICE_NULL};
    uint32_t n = 0;
    dq->calling = false;
    if (rc == OK && env &&
        msg_decode(&msg_run_dequeue_reply_form, env->body.p, env->body.n, &r) != OK)
        rc = ERR_PROTO;
    if (rc != OK || !env) {
        /* a restarting run-manager is no reason to end a long-poll: try again at the next poll */
        if (dq->deadline_mono && (rc == ERR_UNAVAIL || rc == ERR_TIMEOUT || rc == ERR_CLOSED) &&
            clock_mono_ms() < dq->deadline_mono && c->req) {
            h2o_timeout_link(c->gw->ctx.loop, &c->gw->runs->tick, &dq->tick);
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
        if (gw_dq_client_gone(c)) {
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
    uint64_t now = clock_mono_ms();
    if (!dq->deadline_mono || now >= dq->deadline_mono || gw_dq_client_gone(c) || c->gw->stopping) {
        gw_dq_respond_empty(dq);
        return;
    }
    if (dq->wake_pending) {
        gw_dq_issue(dq);
        return;
    }
    h2o_timeout_link(c->gw->ctx.loop, &c->gw->runs->tick, &dq->tick);
}

static void gw_dq_issue(struct gw_dq *dq)
{
    struct gw_call *c = dq->c;
    dq->calling = true;
    dq->wake_pending = false;
    dq->next_poll_mono = clock_mono_ms() + GW_DQ_POLL_MS;
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
    dq->c = c;
    dq->tick.cb = gw_dq_on_tick;
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
    if (wait_s > 0) {
        /* listen before the first try, so a run queued right after it still wakes us */
        struct gw_runs *r = gw_runs_get(c->gw);
        dq->deadline_mono = clock_mono_ms() + (uint64_t)wait_s * 1000;
        dq->next = r->waiters;
        if (r->waiters)
            r->waiters->prev = dq;
        r->waiters = dq;
        dq->listed = true;
        gw_runs_topic_ref(r, c->auth.env.id);
    }
    gw_dq_issue(dq);
}
