/*
 * h_run_suspend.c - POST /api/v1/runs/:run/suspend (docs/workers.md): a
 * worker gives a blocked run back (run.suspend), or, with hold, keeps it
 * until its waitpoints complete, long-polling with waitSeconds; and the
 * completed waitpoints a resumed run carries (gw_wp_completed_json, also the
 * dequeue's). What every waitpoint route shares is h_waitpoints.c's
 * (waitpoints_int.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "log.h"
#include "longpoll.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_run.h"
#include "waitpoints_int.h"

/* A completed waitpoint as a worker resumes with it (the SDK's CompletedWaitpoint). */
json_t *gw_wp_completed_json(struct slice m)
{
    char id[128], kind[32], status[32], type[128];
    struct mp_reader v;
    struct slice out;
    gw_wp_str(m, "id", id, sizeof(id));
    gw_wp_str(m, "kind", kind, sizeof(kind));
    gw_wp_str(m, "status", status, sizeof(status));
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", id, "type",
                          strcmp(kind, "DURATION") == 0 ? "DATETIME" : "MANUAL", "status", status);
    if (mp_map_find(m.p, m.n, "output", &v) == OK && mp_read_str(&v, &out) == OK)
        json_object_set_new(o, "output", json_stringn(out.p, out.n));
    if (gw_wp_str(m, "output_type", type, sizeof(type)))
        json_object_set_new(o, "outputType", json_string(type));
    json_object_set_new(o, "outputIsError", json_boolean(gw_wp_bool(m, "output_is_error")));
    gw_wp_set_date(o, "completedAt", gw_wp_u64(m, "completed_at_ms"));
    return o;
}

/*
 * A hold with waitSeconds keeps the request open until the run has nothing pending, the
 * deadline passes, the client leaves or the gateway stops. Like a waiting dequeue (h_dequeue.c)
 * it listens before its first try: it subscribes to the waitpoint-registry's
 * wp.completed.<env> events and asks run.suspend (hold) again on each one of its environment,
 * and every GW_HOLD_POLL_MS anyway (an event may be lost).
 */
#define GW_HOLD_WAIT_MAX_S 60
#define GW_HOLD_TICK_MS 200
#define GW_HOLD_POLL_MS 2000

/* A suspend or hold in progress: the call's state (c->state). */
struct gw_hold {
    struct gw_lp_waiter lp; /* first: the long-poll's (longpoll.h) */
    bool hold;
    uint64_t pending; /* what the last reply said */
    char worker[132];
};

static void gw_hold_issue(struct gw_hold *h);
static void gw_hold_respond_pending(struct gw_hold *h);

static void gw_hold_lp_issue(struct gw_lp_waiter *w)
{
    gw_hold_issue((struct gw_hold *)w);
}

static void gw_hold_lp_expire(struct gw_lp_waiter *w)
{
    gw_hold_respond_pending((struct gw_hold *)w);
}

/* every wp.completed of the environment may be one the run waits on */
static const struct gw_lp_kind gw_hold_kind = {
    .board = GW_LP_HOLD,
    .actor = "waitpoint-registry",
    .prefix = "wp.completed.",
    .tick_ms = GW_HOLD_TICK_MS,
    .poll_ms = GW_HOLD_POLL_MS,
    .issue = gw_hold_lp_issue,
    .expire = gw_hold_lp_expire,
    .wants = NULL,
};

static void gw_hold_respond_pending(struct gw_hold *h)
{
    struct gw_call *c = h->lp.c;
    gw_lp_done(&h->lp);
    gw_respond_json(c, 200,
                    json_pack("{s:b,s:I,s:[]}", "suspended", 0, "pending", (json_int_t)h->pending,
                              "waitpoints"),
                    0);
}

static void gw_suspend_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_hold *h = c->state;
    struct msg_run_suspend_reply r = {false, 0, SLICE_NULL};
    struct mp_reader v;
    uint32_t n = 0;
    gw_lp_replied(&h->lp);
    if (rc == OK && env &&
        msg_decode(&msg_run_suspend_reply_form, env->body.p, env->body.n, &r) != OK)
        rc = ERR_PROTO;
    if (rc == OK && env && h->lp.listed && !r.suspended && (h->pending = r.pending) > 0) {
        gw_lp_wait_on(&h->lp); /* still waiting: wait on, unless it is time to answer */
        return;
    }
    gw_lp_done(&h->lp);
    if (rc == ERR_NOTFOUND) {
        gw_respond_error(c, 404, GW_WP_RUN_NOT_FOUND, 0);
        return;
    }
    if (rc == ERR_CONFLICT) {
        gw_respond_error(c, 409, "run is no longer leased to this worker", GW_NO_RETRY);
        return;
    }
    if (rc != OK || !env) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "run.suspend");
        return;
    }
    json_t *wps = json_array();
    mp_reader_init(&v, r.waitpoints.p, r.waitpoints.n);
    if (r.waitpoints.p && mp_read_array(&v, &n) == OK) {
        for (uint32_t i = 0; i < n; i++) {
            struct slice m;
            if (mp_skip(&v, &m) != OK)
                break;
            json_array_append_new(wps, gw_wp_completed_json(m));
        }
    }
    gw_respond_json(c, 200,
                    json_pack("{s:b,s:I,s:o}", "suspended", r.suspended, "pending",
                              (json_int_t)r.pending, "waitpoints", wps),
                    0);
}

static void gw_hold_issue(struct gw_hold *h)
{
    struct gw_call *c = h->lp.c;
    gw_lp_calling(&h->lp);
    struct msg_run_suspend m = {msg_str(c->auth.env.id), msg_str(c->params.run),
                                msg_str(h->worker[0] ? h->worker : NULL), h->hold};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_run_suspend_form, &w, &m);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_SUSPEND, mp_writer_data(&w),
                      mp_writer_len(&w), &c->trace, gw_suspend_on_reply, c);
    mp_writer_fini(&w);
    if (rc != OK) {
        gw_lp_done(&h->lp);
        gw_respond_err(c, rc, "run.suspend");
    }
}

void gw_on_run_suspend(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *o = NULL, *v;
    long long wait_s = 0;
    if (!gw_wp_authorize_run(c))
        return;
    struct gw_hold *h = xcalloc(1, sizeof(*h));
    gw_lp_init(&h->lp, &gw_hold_kind, c);
    c->state = h;
    if (n) {
        o = json_loadb(req->entity.base, n, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            gw_respond_error(c, 400, "Expected a JSON object", 0);
            return;
        }
        v = json_object_get(o, "workerId");
        if (v && !json_is_null(v)) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128) {
                json_decref(o);
                gw_respond_error(c, 400, "workerId must be a string of 1-128 characters", 0);
                return;
            }
            snprintf(h->worker, sizeof(h->worker), "%s", json_string_value(v));
        }
        v = json_object_get(o, "hold");
        if (v && !json_is_null(v)) {
            if (!json_is_boolean(v)) {
                json_decref(o);
                gw_respond_error(c, 400, "hold must be a boolean", 0);
                return;
            }
            h->hold = json_is_true(v);
        }
        v = json_object_get(o, "waitSeconds");
        if (v && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > GW_HOLD_WAIT_MAX_S || (!h->hold && json_integer_value(v))) {
                json_decref(o);
                gw_respond_error(c, 400, "waitSeconds must be an integer 0-60, with hold: true", 0);
                return;
            }
            wait_s = json_integer_value(v);
        }
        json_decref(o);
    }
    if (wait_s > 0) /* listen before the first try, so a completion right after wakes us */
        gw_lp_listen(&h->lp, (uint64_t)wait_s * 1000);
    gw_hold_issue(h);
}
