/*
 * h_runs.c - the runs API and the worker API (docs/workers.md).
 *
 *   POST /api/v1/workers/dequeue       secret key; leases queued runs, long-polls
 *   POST /api/v1/runs/:run/heartbeat   extends a lease           (write:runs:<run>)
 *   POST /api/v1/runs/:run/complete    output                    (write:runs:<run>)
 *   POST /api/v1/runs/:run/fail        error; retried or failed  (write:runs:<run>)
 *   POST /api/v2/runs/:run/cancel      the SDK's runs.cancel     (write:runs:<run>)
 *   GET  /api/v3/runs/:run             the SDK's runs.retrieve   (read:runs:<run>)
 *
 * Each is one run-manager message (proto/msg.c). A dequeue with
 * waitSeconds keeps the request open: it subscribes to the run-manager's
 * run.queued.<env> events and dequeues again on each one that names one of
 * its tasks, and every GW_DQ_POLL_MS anyway (an event may be lost), never
 * in a tight loop. Run tokens are minted here, signed like every token of
 * the environment. Bodies and tokens are never logged.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "ids.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"

#define GW_RUN_TOKEN_TTL_S 3600
#define GW_DQ_TICK_MS 200  /* how often a waiting dequeue checks its deadline and client */
#define GW_DQ_POLL_MS 2000 /* dequeue again this often without an event */
#define GW_DQ_TASKS_MAX 100
#define GW_DQ_TASK_LEN_MAX 256
#define GW_DQ_RUNS_MAX 50
#define GW_DQ_WAIT_MAX_S 60
#define GW_LEASE_DEFAULT_S 30
#define GW_LEASE_MAX_S 3600
#define GW_WORKER_ID_MAX 128
#define GW_RUN_NOT_FOUND "Run not found"
#define GW_NOT_LEASED "run is no longer leased to this worker"

static const char *const gw_runs_read_super[] = {"read:runs", "read:all", "admin"};
static const char *const gw_runs_write_super[] = {"write:runs", "write:all", "admin"};

/* ---- reading run-manager replies ---- */

static bool gw_mp_str(struct slice m, const char *k, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    out[0] = '\0';
    return mp_map_find(m.p, m.n, k, &v) == OK && mp_read_str(&v, &s) == OK &&
           slice_copy(s, out, cap) == OK;
}

static uint64_t gw_mp_u64(struct slice m, const char *k, bool *present)
{
    struct mp_reader v;
    uint64_t u = 0;
    bool ok = mp_map_find(m.p, m.n, k, &v) == OK && mp_read_uint(&v, &u) == OK;
    if (present)
        *present = ok;
    return ok ? u : 0;
}

static bool gw_mp_bool(struct slice m, const char *k)
{
    struct mp_reader v;
    bool b = false;
    if (mp_map_find(m.p, m.n, k, &v) == OK)
        (void)mp_read_bool(&v, &b);
    return b;
}

/* A JSON text field parsed; NULL when absent, nil or (never expected) malformed. */
static json_t *gw_mp_json(struct slice m, const char *k)
{
    struct mp_reader v;
    struct slice s;
    if (mp_map_find(m.p, m.n, k, &v) != OK || mp_read_str(&v, &s) != OK)
        return NULL;
    return json_loadb(s.p, s.n, JSON_DECODE_ANY, NULL);
}

static json_t *gw_iso_or_null(uint64_t ms)
{
    char buf[32];
    if (ms == 0)
        return json_null();
    clock_iso8601(ms, buf, sizeof(buf));
    return json_string(buf);
}

/* ---- requests ---- */

/* The body of a GW_BODY_RAW route: empty is {}, else it must be a JSON object. */
static json_t *gw_runs_body(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *o;
    if (n == 0)
        return json_object();
    o = json_loadb(req->entity.base, n, JSON_DECODE_ANY, NULL);
    if (!o) {
        gw_respond_error(c, 400, "Invalid JSON", 0);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        gw_respond_error(c, 400, "Expected object, received something else", 0);
        return NULL;
    }
    return o;
}

/* An optional integer field within [min, max] (def when absent); false (400 sent) otherwise. */
static bool gw_runs_int(struct gw_call *c, json_t *o, const char *k, long long min, long long max,
                        long long def, long long *out)
{
    json_t *v = json_object_get(o, k);
    char msg[160];
    *out = def;
    if (!v || json_is_null(v))
        return true;
    if (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max) {
        *out = json_integer_value(v);
        return true;
    }
    snprintf(msg, sizeof(msg), "%s must be an integer from %lld to %lld", k, min, max);
    gw_respond_error(c, 400, msg, 0);
    return false;
}

/* An optional workerId: NULL when absent; false (400 sent) when not a string of 1-128 bytes. */
static bool gw_runs_worker(struct gw_call *c, json_t *o, const char **out)
{
    json_t *v = json_object_get(o, "workerId");
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > GW_WORKER_ID_MAX) {
        gw_respond_error(c, 400, "workerId must be a string of 1-128 characters", 0);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* write/read on runs:<the URL's run>; false (403 sent) when the credential may not. */
static bool gw_runs_authorize(struct gw_call *c, const char *action)
{
    const char *ids[] = {c->params.run};
    struct gw_resource res = {"runs", ids, 1};
    char why[2048];
    bool write = strcmp(action, "write") == 0;
    if (gw_authorize(&c->auth, action, &res, 1, write ? gw_runs_write_super : gw_runs_read_super, 3,
                     why, sizeof(why)))
        return true;
    gw_respond_forbidden(c, why);
    return false;
}

/* Sends a request whose body w built; on a send failure answers the call. */
static void gw_runs_send(struct gw_call *c, uint16_t type, struct mp_writer *w, bus_reply_fn cb)
{
    err_t rc = mp_writer_err(w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_RUN_MANAGER, type, mp_writer_data(w), mp_writer_len(w), cb);
    mp_writer_fini(w);
    if (rc != OK)
        gw_respond_err(c, rc, msg_name(type));
}

/* The errors every run message shares; true when it answered. */
static bool gw_runs_failed(struct gw_call *c, err_t rc, const struct envelope *env, const char *op)
{
    if (rc == OK && env)
        return false;
    if (rc == ERR_NOTFOUND)
        gw_respond_error(c, 404, GW_RUN_NOT_FOUND, 0);
    else if (rc == ERR_CONFLICT)
        gw_respond_error(c, 409, GW_NOT_LEASED, GW_NO_RETRY);
    else
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, op);
    return true;
}

/* The start of every run message: {env_id, run, ...} with n more fields to come. */
static void gw_runs_begin(struct gw_call *c, struct mp_writer *w, uint32_t more)
{
    mp_writer_init(w);
    mp_put_map(w, 2 + more);
    mp_put_kv_str(w, "env_id", c->auth.env.id);
    mp_put_kv_str(w, "run", c->params.run);
}

/* A JSON value as text for the run-manager (a JSON text field), or nil when absent. */
static void gw_put_json_text(struct mp_writer *w, const char *k, json_t *v)
{
    mp_put_str(w, k);
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (text)
        mp_put_str(w, text);
    else
        mp_put_nil(w);
    free(text);
}

/* ---- heartbeat, complete, fail ---- */

static void gw_on_empty_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (!gw_runs_failed(c, rc, env, "run"))
        gw_respond_json(c, 200, json_object(), 0);
}

/*
 * What heartbeat, complete and fail start with: write access to the run (an action: 403
 * before anything about the run is known), the body, its workerId. NULL when the call has
 * been answered; else the body, which the caller releases (*worker borrows from it).
 */
static json_t *gw_runs_worker_body(struct gw_call *c, const char **worker)
{
    if (!gw_runs_authorize(c, "write"))
        return NULL;
    json_t *o = gw_runs_body(c);
    if (o && !gw_runs_worker(c, o, worker)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void gw_on_run_heartbeat(struct gw_call *c)
{
    const char *worker;
    long long lease_s;
    struct mp_writer w;
    json_t *o = gw_runs_worker_body(c, &worker);
    if (!o)
        return;
    if (!gw_runs_int(c, o, "leaseSeconds", 1, GW_LEASE_MAX_S, GW_LEASE_DEFAULT_S, &lease_s)) {
        json_decref(o);
        return;
    }
    gw_runs_begin(c, &w, 2);
    mp_put_kv_str(&w, "worker_id", worker);
    mp_put_kv_uint(&w, "lease_ms", (uint64_t)lease_s * 1000);
    json_decref(o);
    gw_runs_send(c, MSG_RUN_HEARTBEAT, &w, gw_on_empty_reply);
}

void gw_on_run_complete(struct gw_call *c)
{
    const char *worker;
    struct mp_writer w;
    json_t *o = gw_runs_worker_body(c, &worker);
    if (!o)
        return;
    gw_runs_begin(c, &w, 2);
    mp_put_kv_str(&w, "worker_id", worker);
    /* an absent output is JSON null: the run completed with nothing to say */
    json_t *out = json_object_get(o, "output");
    json_t *null = json_null();
    gw_put_json_text(&w, "output", out ? out : null);
    json_decref(null);
    json_decref(o);
    gw_runs_send(c, MSG_RUN_COMPLETE, &w, gw_on_empty_reply);
}

static void gw_on_fail_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_runs_failed(c, rc, env, "run.fail"))
        return;
    gw_respond_json(c, 200, json_pack("{s:b}", "retrying", gw_mp_bool(env->body, "retrying")), 0);
}

void gw_on_run_fail(struct gw_call *c)
{
    const char *worker;
    struct mp_writer w;
    json_t *o = gw_runs_worker_body(c, &worker);
    if (!o)
        return;
    gw_runs_begin(c, &w, 2);
    mp_put_kv_str(&w, "worker_id", worker);
    gw_put_json_text(&w, "error", json_object_get(o, "error"));
    json_decref(o);
    gw_runs_send(c, MSG_RUN_FAIL, &w, gw_on_fail_reply);
}

/* ---- cancel ---- */

static void gw_on_cancel_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (!gw_runs_failed(c, rc, env, "run.cancel"))
        gw_respond_json(c, 200, json_pack("{s:s}", "id", c->params.run), 0);
}

void gw_on_run_cancel(struct gw_call *c)
{
    struct mp_writer w;
    if (!gw_runs_authorize(c, "write"))
        return;
    gw_runs_begin(c, &w, 0);
    gw_runs_send(c, MSG_RUN_CANCEL, &w, gw_on_cancel_reply);
}

/* ---- retrieve: the SDK's RetrieveRunResponse ---- */

static bool gw_status_in(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

/*
 * The SDK's SerializedError: {message: string, name?, stackTrace?}. A worker
 * may have failed with anything, so only string fields are passed on, and
 * a non-object becomes its text as the message.
 */
static json_t *gw_serialized_error(json_t *e)
{
    json_t *out = json_object();
    json_t *msg = json_is_object(e) ? json_object_get(e, "message") : NULL;
    if (json_is_string(msg)) {
        json_object_set(out, "message", msg);
    } else if (json_is_string(e)) {
        json_object_set(out, "message", e);
    } else {
        char *text = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
        json_object_set_new(out, "message", json_string(text ? text : "unknown error"));
        free(text);
    }
    if (json_is_object(e)) {
        json_t *name = json_object_get(e, "name"), *stack = json_object_get(e, "stackTrace");
        if (!json_is_string(stack))
            stack = json_object_get(e, "stack");
        if (json_is_string(name))
            json_object_set(out, "name", name);
        if (json_is_string(stack))
            json_object_set(out, "stackTrace", stack);
    }
    return out;
}

/* A run object of the run-manager (proto/msg.c) in the shape runs.retrieve parses. */
static json_t *gw_run_object(struct slice m)
{
    static const char *const queued[] = {"QUEUED", "DELAYED", "PENDING_VERSION"};
    static const char *const executing[] = {"EXECUTING", "DEQUEUED", "REATTEMPTING"};
    static const char *const finished[] = {"COMPLETED",      "CANCELED", "FAILED",   "CRASHED",
                                           "SYSTEM_FAILURE", "EXPIRED",  "TIMED_OUT"};
    static const char *const failed[] = {"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED",
                                         "TIMED_OUT"};
    char id[128], status[32], task[GW_PARAM_MAX], session[128];
    bool has_ttl;
    gw_mp_str(m, "id", id, sizeof(id));
    gw_mp_str(m, "status", status, sizeof(status));
    gw_mp_str(m, "task_identifier", task, sizeof(task));
    uint64_t created = gw_mp_u64(m, "created_at_ms", NULL);
    uint64_t updated = gw_mp_u64(m, "updated_at_ms", NULL);
    uint64_t started = gw_mp_u64(m, "started_at_ms", NULL);
    uint64_t completed = gw_mp_u64(m, "completed_at_ms", NULL);
    uint64_t ttl_s = gw_mp_u64(m, "ttl_s", &has_ttl);

    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "taskIdentifier", json_string(task));
    json_object_set_new(o, "isQueued", json_boolean(gw_status_in(status, queued, 3)));
    json_object_set_new(o, "isExecuting", json_boolean(gw_status_in(status, executing, 3)));
    json_object_set_new(o, "isWaiting", json_boolean(strcmp(status, "WAITING") == 0));
    json_object_set_new(o, "isCompleted", json_boolean(gw_status_in(status, finished, 7)));
    json_object_set_new(o, "isSuccess", json_boolean(strcmp(status, "COMPLETED") == 0));
    json_object_set_new(o, "isFailed", json_boolean(gw_status_in(status, failed, 5)));
    json_object_set_new(o, "isCancelled", json_boolean(strcmp(status, "CANCELED") == 0));
    json_object_set_new(o, "isTest", json_false());
    json_object_set_new(o, "createdAt", gw_iso_or_null(created));
    json_object_set_new(o, "updatedAt", gw_iso_or_null(updated));
    if (started)
        json_object_set_new(o, "startedAt", gw_iso_or_null(started));
    if (completed)
        json_object_set_new(o, "finishedAt", gw_iso_or_null(completed));
    if (completed && strcmp(status, "EXPIRED") == 0)
        json_object_set_new(o, "expiredAt", gw_iso_or_null(completed));
    if (has_ttl) {
        char t[32];
        snprintf(t, sizeof(t), "%llus", (unsigned long long)ttl_s);
        json_object_set_new(o, "ttl", json_string(t));
    }
    json_t *tags = gw_mp_json(m, "tags");
    json_object_set_new(o, "tags", json_is_array(tags) ? tags : (json_decref(tags), json_array()));
    json_object_set_new(o, "costInCents", json_integer(0));
    json_object_set_new(o, "baseCostInCents", json_integer(0));
    json_object_set_new(
        o, "durationMs",
        json_integer(started && completed > started ? (json_int_t)(completed - started) : 0));
    json_object_set_new(o, "depth", json_integer(0));
    json_object_set_new(o, "triggerFunction", json_string("trigger"));
    json_object_set_new(o, "relatedRuns", json_object());
    /* attempts begun: the current attempt number once the run has been handed out */
    json_object_set_new(o, "attemptCount",
                        json_integer(started ? (json_int_t)gw_mp_u64(m, "attempt", NULL) : 0));
    json_t *payload = gw_mp_json(m, "payload");
    if (payload)
        json_object_set_new(o, "payload", payload);
    json_t *output = gw_mp_json(m, "output");
    if (output)
        json_object_set_new(o, "output", output);
    json_t *error = gw_mp_json(m, "error");
    if (error) {
        json_object_set_new(o, "error", gw_serialized_error(error));
        json_decref(error);
    }
    /* Tether's own: the session the run belongs to (the SDK drops unknown keys) */
    json_object_set_new(o, "sessionId",
                        gw_mp_str(m, "session_id", session, sizeof(session)) ? json_string(session)
                                                                             : json_null());
    return o;
}

static void gw_on_get_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct mp_reader v;
    struct slice run;
    if (gw_runs_failed(c, rc, env, "run.get"))
        return;
    if (mp_map_find(env->body.p, env->body.n, "run", &v) != OK || mp_skip(&v, &run) != OK) {
        gw_respond_err(c, ERR_PROTO, "run.get");
        return;
    }
    /* a loader: 404 came first; now the credential must be allowed to read it */
    if (gw_runs_authorize(c, "read"))
        gw_respond_json(c, 200, gw_run_object(run), 0);
}

void gw_on_run_get(struct gw_call *c)
{
    struct mp_writer w;
    gw_runs_begin(c, &w, 0);
    gw_runs_send(c, MSG_RUN_GET, &w, gw_on_get_reply);
}

/* ---- dequeue and its long-poll ---- */

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

/*
 * True when the client of a waiting dequeue has gone. h2o notices a closed
 * connection only when it reads from it, which it does not while a request
 * is being handled, so we peek: 0 bytes is the peer's FIN. Runs leased to a
 * departed client would otherwise wait for their lease to end.
 */
static bool gw_dq_client_gone(struct gw_call *c)
{
    char b;
    if (!c->req)
        return true;
    h2o_conn_t *conn = c->req->conn;
    h2o_socket_t *sock =
        conn && conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
    if (!sock)
        return false;
    ssize_t n = recv(h2o_socket_get_fd(sock), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void gw_runs_on_event(void *arg, const char *topic, const struct envelope *env);

static struct gw_runs *gw_runs_get(struct gw *gw)
{
    char urls[BUS_URL_MAX * 8];
    if (gw->runs)
        return gw->runs;
    struct gw_runs *r = xcalloc(1, sizeof(*r));
    h2o_timeout_init(gw->ctx.loop, &r->tick, GW_DQ_TICK_MS);
    gw_events_urls(gw, "run-manager", urls, sizeof(urls));
    /* without events a long-poll still works, at GW_DQ_POLL_MS's latency */
    if (!urls[0] || bus_sub_open(gw->bus, urls, gw_runs_on_event, gw, &r->sub) != OK) {
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
    struct mp_reader v;
    struct slice task = SLICE_NULL;
    const char *env_id = topic + strlen("run.queued.");
    if (!r || strncmp(topic, "run.queued.", strlen("run.queued.")) != 0)
        return;
    if (env->body.n && mp_map_find(env->body.p, env->body.n, "task_identifier", &v) == OK)
        (void)mp_read_str(&v, &task);
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
    struct mp_writer w;
    char id[128];
    uint32_t len;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env_id", dq->c->auth.env.id);
    mp_put_kv_str(&w, "worker_id", dq->worker_id);
    mp_put_str(&w, "runs");
    mp_put_array(&w, n);
    mp_reader_init(&rd, runs.p, runs.n);
    (void)mp_read_array(&rd, &len);
    for (uint32_t i = 0; i < n && i < len; i++) {
        struct slice m;
        if (mp_skip(&rd, &m) != OK)
            break;
        gw_mp_str(m, "id", id, sizeof(id));
        mp_put_str(&w, id);
    }
    if (mp_writer_err(&w) == OK)
        (void)bus_call(dq->c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_RELEASE, mp_writer_data(&w),
                       mp_writer_len(&w), &dq->c->trace, gw_on_release_reply, NULL);
    mp_writer_fini(&w);
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
    /* a run resumed after a wait: the waitpoints it waited on, completed (h_waitpoints.c) */
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
    struct slice runs;
    uint32_t n = 0;
    dq->calling = false;
    if (rc == OK && env &&
        (mp_map_find(env->body.p, env->body.n, "runs", &v) != OK || mp_skip(&v, &runs) != OK)) {
        rc = ERR_PROTO;
    }
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
    mp_reader_init(&v, runs.p, runs.n);
    if (mp_read_array(&v, &n) != OK)
        n = 0;
    if (n > 0) {
        if (gw_dq_client_gone(c)) {
            gw_dq_release(dq, runs, n);
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
    struct mp_writer w;

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
    mp_writer_init(&w);
    mp_put_map(&w, 5);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_str(&w, "task_identifiers");
    mp_put_array(&w, (uint32_t)json_array_size(tasks));
    json_array_foreach(tasks, i, t)
    {
        dq->tasks_n += json_string_length(t) + 1;
        mp_put_str(&w, json_string_value(t));
    }
    mp_put_kv_uint(&w, "max_runs", (uint64_t)max_runs);
    mp_put_kv_str(&w, "worker_id", dq->worker_id);
    mp_put_kv_uint(&w, "lease_ms", (uint64_t)lease_s * 1000);
    if (mp_writer_err(&w) != OK) {
        mp_writer_fini(&w);
        gw_respond_err(c, ERR_NOMEM, "run.dequeue");
        return;
    }
    dq->request_n = mp_writer_len(&w);
    dq->request = xmalloc(dq->request_n);
    memcpy(dq->request, mp_writer_data(&w), dq->request_n);
    mp_writer_fini(&w);
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
