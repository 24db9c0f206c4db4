/*
 * h_runs.c - the runs API and the worker API (docs/workers.md) but the
 * dequeue, which is h_dequeue.c's.
 *
 *   POST /api/v1/runs/:run/heartbeat   extends a lease           (write:runs:<run>)
 *   POST /api/v1/runs/:run/complete    output                    (write:runs:<run>)
 *   POST /api/v1/runs/:run/fail        error; retried or failed  (write:runs:<run>)
 *   POST /api/v2/runs/:run/cancel      the SDK's runs.cancel     (write:runs:<run>)
 *   GET  /api/v3/runs/:run             the SDK's runs.retrieve   (read:runs:<run>)
 *
 * Each is one run-manager message (proto/msg.c). The readers of run-manager
 * replies and the request fields the dequeue takes too are shared with it
 * (runs_int.h). Bodies and tokens are never logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "mp.h"
#include "msg.h"
#include "msg_run.h"
#include "runs_int.h"

#define GW_RUN_NOT_FOUND "Run not found"
#define GW_NOT_LEASED "run is no longer leased to this worker"

static const char *const gw_runs_read_super[] = {"read:runs", "read:all", "admin"};
static const char *const gw_runs_write_super[] = {"write:runs", "write:all", "admin"};

/* ---- reading run-manager replies ---- */

bool gw_mp_str(struct slice m, const char *k, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    out[0] = '\0';
    return mp_map_find(m.p, m.n, k, &v) == OK && mp_read_str(&v, &s) == OK &&
           slice_copy(s, out, cap) == OK;
}

uint64_t gw_mp_u64(struct slice m, const char *k, bool *present)
{
    struct mp_reader v;
    uint64_t u = 0;
    bool ok = mp_map_find(m.p, m.n, k, &v) == OK && mp_read_uint(&v, &u) == OK;
    if (present)
        *present = ok;
    return ok ? u : 0;
}

/* A JSON text field parsed; NULL when absent, nil or (never expected) malformed. */
json_t *gw_mp_json(struct slice m, const char *k)
{
    struct mp_reader v;
    struct slice s;
    if (mp_map_find(m.p, m.n, k, &v) != OK || mp_read_str(&v, &s) != OK)
        return NULL;
    return json_loadb(s.p, s.n, JSON_DECODE_ANY, NULL);
}

json_t *gw_iso_or_null(uint64_t ms)
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
bool gw_runs_int(struct gw_call *c, json_t *o, const char *k, long long min, long long max,
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
bool gw_runs_worker(struct gw_call *c, json_t *o, const char **out)
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

/* Sends a request, m encoded by form f; on a send failure answers the call. */
static void gw_runs_send(struct gw_call *c, uint16_t type, const struct msg_form *f, const void *m,
                         bus_reply_fn cb)
{
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(f, &w, m);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_RUN_MANAGER, type, mp_writer_data(&w), mp_writer_len(&w), cb);
    mp_writer_fini(&w);
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

/* A JSON value as text for the run-manager (a JSON text field, malloc'd), NULL (nil) when absent.
 */
static char *gw_json_text(json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
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
    json_t *o = gw_runs_worker_body(c, &worker);
    if (!o)
        return;
    if (!gw_runs_int(c, o, "leaseSeconds", 1, GW_LEASE_MAX_S, GW_LEASE_DEFAULT_S, &lease_s)) {
        json_decref(o);
        return;
    }
    struct msg_run_heartbeat m = {msg_str(c->auth.env.id), msg_str(c->params.run), msg_str(worker),
                                  (uint64_t)lease_s * 1000};
    gw_runs_send(c, MSG_RUN_HEARTBEAT, &msg_run_heartbeat_form, &m, gw_on_empty_reply);
    json_decref(o);
}

void gw_on_run_complete(struct gw_call *c)
{
    const char *worker;
    json_t *o = gw_runs_worker_body(c, &worker);
    if (!o)
        return;
    /* an absent output is JSON null: the run completed with nothing to say */
    json_t *out = json_object_get(o, "output");
    json_t *null = json_null();
    char *text = gw_json_text(out ? out : null);
    json_decref(null);
    struct msg_run_complete m = {msg_str(c->auth.env.id), msg_str(c->params.run), msg_str(worker),
                                 msg_str(text)};
    gw_runs_send(c, MSG_RUN_COMPLETE, &msg_run_complete_form, &m, gw_on_empty_reply);
    free(text);
    json_decref(o);
}

static void gw_on_fail_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_run_fail_reply r;
    if (gw_runs_failed(c, rc, env, "run.fail"))
        return;
    if (msg_decode(&msg_run_fail_reply_form, env->body.p, env->body.n, &r) != OK) {
        gw_respond_err(c, ERR_PROTO, "run.fail");
        return;
    }
    gw_respond_json(c, 200, json_pack("{s:b}", "retrying", r.retrying), 0);
}

void gw_on_run_fail(struct gw_call *c)
{
    const char *worker;
    json_t *o = gw_runs_worker_body(c, &worker);
    if (!o)
        return;
    char *text = gw_json_text(json_object_get(o, "error"));
    struct msg_run_fail m = {msg_str(c->auth.env.id), msg_str(c->params.run), msg_str(worker),
                             msg_str(text)};
    gw_runs_send(c, MSG_RUN_FAIL, &msg_run_fail_form, &m, gw_on_fail_reply);
    free(text);
    json_decref(o);
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
    if (!gw_runs_authorize(c, "write"))
        return;
    struct msg_run_ref m = {msg_str(c->auth.env.id), msg_str(c->params.run)};
    gw_runs_send(c, MSG_RUN_CANCEL, &msg_run_cancel_form, &m, gw_on_cancel_reply);
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
    struct msg_run_get_reply r;
    if (gw_runs_failed(c, rc, env, "run.get"))
        return;
    if (msg_decode(&msg_run_get_reply_form, env->body.p, env->body.n, &r) != OK) {
        gw_respond_err(c, ERR_PROTO, "run.get");
        return;
    }
    /* a loader: 404 came first; now the credential must be allowed to read it */
    if (gw_runs_authorize(c, "read"))
        gw_respond_json(c, 200, gw_run_object(r.run), 0);
}

void gw_on_run_get(struct gw_call *c)
{
    struct msg_run_ref m = {msg_str(c->auth.env.id), msg_str(c->params.run)};
    gw_runs_send(c, MSG_RUN_GET, &msg_run_get_form, &m, gw_on_get_reply);
}
