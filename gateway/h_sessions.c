/*
 * h_sessions.c - the sessions API (the contract's §5.1, §5.3-§5.6).
 *
 * The gateway validates bodies against the contract's schemas (unknown keys
 * are dropped, as zod does), authorizes, and orchestrates: create is
 * session.create (session-manager) then run.ensure (run-manager) then a
 * session token minted here; end-and-continue is session.get then run.swap.
 * Rows travel as session objects (proto/msg.c) and are rendered here as
 * the contract's SessionItem.
 *
 * The bodies are checked by h_sessions_validate.c (sessions_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_run.h"
#include "msg_session.h"
#include "sessions_int.h"
#include "sessref.h"

/* A session object kept between two bus calls (its bytes are copied out of the reply). */
struct gw_sess_state {
    char *session; /* msgpack map, malloc'd */
    size_t session_n;
    bool is_cached;
    char reason[16];
    char calling_run[256];
};

/* ---- reading a session object ---- */

static json_t *gw_sess_json(struct slice m, const char *k)
{
    struct mp_reader v;
    struct slice s;
    if (mp_map_find(m.p, m.n, k, &v) != OK || mp_read_str(&v, &s) != OK)
        return json_null();
    json_t *j = json_loadb(s.p, s.n, JSON_DECODE_ANY, NULL);
    return j ? j : json_null();
}

static json_t *gw_iso(uint64_t ms)
{
    char buf[32];
    if (ms == 0)
        return json_null();
    clock_iso8601(ms, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *gw_str_or_null(struct slice m, const char *k)
{
    char buf[GW_PARAM_MAX];
    return gw_sess_str(m, k, buf, sizeof(buf)) ? json_string(buf) : json_null();
}

json_t *gw_session_item(struct slice m, enum gw_item_form form)
{
    char run[128], friendly[160];
    json_t *item = json_object();
    json_object_set_new(item, "id", gw_str_or_null(m, "friendly_id"));
    json_object_set_new(item, "externalId", gw_str_or_null(m, "external_id"));
    json_object_set_new(item, "type", gw_str_or_null(m, "type"));
    json_object_set_new(item, "taskIdentifier", gw_str_or_null(m, "task_identifier"));
    if (form == GW_ITEM_FULL)
        json_object_set_new(item, "triggerConfig", gw_sess_json(m, "trigger_config"));
    if (gw_sess_str(m, "current_run_id", run, sizeof(run)) && run[0]) {
        snprintf(friendly, sizeof(friendly), "run_%s", run);
        json_object_set_new(item, "currentRunId", json_string(friendly));
    } else {
        json_object_set_new(item, "currentRunId", json_null());
    }
    json_t *tags = gw_sess_json(m, "tags");
    json_object_set_new(item, "tags",
                        json_is_array(tags) ? tags : (json_decref(tags), json_array()));
    json_t *md = gw_sess_json(m, "metadata");
    if (form == GW_ITEM_LISTED && !json_is_object(md)) { /* a list shows an object or null */
        json_decref(md);
        md = json_null();
    }
    json_object_set_new(item, "metadata", md);
    json_object_set_new(item, "closedAt", gw_iso(gw_sess_u64(m, "closed_at_ms")));
    json_object_set_new(item, "closedReason", gw_str_or_null(m, "closed_reason"));
    json_object_set_new(item, "expiresAt", gw_iso(gw_sess_u64(m, "expires_at_ms")));
    json_object_set_new(item, "createdAt", gw_iso(gw_sess_u64(m, "created_at_ms")));
    json_object_set_new(item, "updatedAt", gw_iso(gw_sess_u64(m, "updated_at_ms")));
    return item;
}

static void gw_state_free(void *p)
{
    struct gw_sess_state *st = p;
    free(st->session);
    free(st);
}

static void gw_state_keep(struct gw_call *c, struct slice s)
{
    struct gw_sess_state *st = c->state;
    if (!st) {
        c->state = st = xcalloc(1, sizeof(*st));
        c->state_free = gw_state_free;
    }
    free(st->session);
    st->session = xmalloc(s.n);
    memcpy(st->session, s.p, s.n);
    st->session_n = s.n;
}

static void gw_state_free_session(struct gw_call *c)
{
    struct gw_sess_state *st = c->state;
    if (st) {
        free(st->session);
        st->session = NULL;
    }
}

/* ---- create ---- */

static void gw_create_on_ensure(void *arg, err_t rc, const struct envelope *env);

static bool gw_session_closed_or_expired(struct gw_call *c, struct slice s, int status,
                                         const char *closed_msg)
{
    char reason[512];
    uint64_t closed = gw_sess_u64(s, "closed_at_ms"), expires = gw_sess_u64(s, "expires_at_ms");
    if (closed) {
        json_t *b = json_pack("{s:s,s:s}", "error", closed_msg, "code", "session_closed");
        if (gw_sess_str(s, "closed_reason", reason, sizeof(reason)))
            json_object_set_new(b, "closedReason", json_string(reason));
        gw_respond_json(c, status, b, status == 409 ? GW_NO_RETRY : 0);
        return true;
    }
    if (expires && expires < clock_wall_ms()) {
        gw_respond_json(c, status,
                        json_pack("{s:s,s:s}", "error",
                                  status == 409 ? "Session has expired; use a different externalId"
                                                : "Cannot end-and-continue an expired session",
                                  "code", "session_expired"),
                        status == 409 ? GW_NO_RETRY : 0);
        return true;
    }
    return false;
}

static uint16_t gw_msg(const char *name)
{
    return msg_type_by_name(name);
}

static void gw_create_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s;
    struct mp_reader v;
    bool cached = false;
    if (rc != OK || !gw_reply_session(env, &s)) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, "session.create");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "is_cached", &v) == OK)
        (void)mp_read_bool(&v, &cached);
    if (gw_session_closed_or_expired(c, s, 409, "Session is closed; use a different externalId"))
        return;
    gw_state_keep(c, s);
    ((struct gw_sess_state *)c->state)->is_cached = cached;

    /* a live run: the run-manager ensures one (trigger first, then the optimistic claim) */
    rc = gw_run_ensure(c, s, cached ? "continuation" : "initial", gw_create_on_ensure);
    if (rc != OK)
        gw_respond_err(c, rc, "run.ensure");
}

static void gw_create_on_ensure(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_sess_state *st = c->state;
    struct slice s = {st->session, st->session_n};
    char run[160], ext[GW_PARAM_MAX], friendly[128];
    if (rc == ERR_INVAL) { /* trigger-time validation: 422 with its message (§5.1) */
        char msg[ENV_ERRMSG_MAX + 1] = "Invalid trigger configuration";
        if (env && env->err_msg.p)
            (void)slice_copy(env->err_msg, msg, sizeof(msg));
        gw_respond_error(c, 422, msg, 0);
        return;
    }
    if (rc == ERR_UNAVAIL || rc == ERR_TIMEOUT || rc == ERR_CLOSED) {
        gw_respond_err(c, rc, "run.ensure");
        return;
    }
    struct msg_run_ensure_reply r;
    if (rc != OK || !env ||
        msg_decode(&msg_run_ensure_reply_form, env->body.p, env->body.n, &r) != OK ||
        slice_copy(r.run_id, run, sizeof(run)) != OK) {
        LOG_WARN("gw.ensure_failed", "run.ensure failed: %s", err_str(rc == OK ? ERR_PROTO : rc));
        gw_respond_error(c, 500, "Something went wrong", 0);
        return;
    }
    json_t *item = gw_session_item(s, GW_ITEM_FULL);
    json_object_set_new(item, "currentRunId", json_string(run));
    json_object_set_new(item, "runId", json_string(run));
    /* the token is minted on the addressing key: the externalId when the row has one */
    gw_sess_str(s, "friendly_id", friendly, sizeof(friendly));
    bool has_ext = gw_sess_str(s, "external_id", ext, sizeof(ext)) && ext[0];
    char *token = gw_mint_session_token(&c->auth.env, has_ext ? ext : friendly);
    if (!token) {
        json_decref(item);
        gw_respond_err(c, ERR_INTERNAL, "could not mint the session token");
        return;
    }
    json_object_set_new(item, "publicAccessToken", json_string(token));
    free(token);
    json_object_set_new(item, "isCached", json_boolean(st->is_cached));
    gw_state_free_session(c);
    gw_respond_json(c, st->is_cached ? 200 : 201, item, 0);
}

void gw_on_session_create(struct gw_call *c)
{
    json_t *b = c->body;
    uint64_t expires = 0;
    json_t *tc;

    if (!gw_req_str(b, "type", 1, 64, "type") || !gw_external_id(b, false) ||
        !gw_req_str(b, "taskIdentifier", 1, 128, "taskIdentifier") ||
        !gw_str_array(b, "tags", 10, 128, "tags") ||
        !gw_expires_at(json_object_get(b, "expiresAt"), &expires)) {
        gw_respond_error(c, 400, gw_verr, 0);
        return;
    }
    json_t *meta = json_object_get(b, "metadata");
    if (meta && !json_is_object(meta) && !json_is_null(meta)) {
        gw_respond_error(c, 400, "Validation error: Expected object at \"metadata\"", 0);
        return;
    }
    if (!(tc = gw_trigger_config(json_object_get(b, "triggerConfig")))) {
        gw_respond_error(c, 400, gw_verr, 0);
        return;
    }
    const char *task = json_string_value(json_object_get(b, "taskIdentifier"));
    const char *const ids[] = {task};
    struct gw_resource res = {"tasks", ids, 1};
    static const char *const super[] = {"write:sessions", "admin", "write:all"};
    char why[2048];
    if (!gw_authorize(&c->auth, "write", &res, 1, super, 3, why, sizeof(why))) {
        json_decref(tc);
        gw_respond_forbidden(c, why);
        return;
    }

    char *tc_text = json_dumps(tc, JSON_COMPACT);
    json_t *tags = json_object_get(b, "tags");
    char *tags_text = tags && json_is_array(tags) ? json_dumps(tags, JSON_COMPACT) : NULL;
    char *meta_text = meta && json_is_object(meta) ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_t *ext = json_object_get(b, "externalId");
    struct msg_session_create m = {
        .env_id = msg_str(c->auth.env.id),
        .org_id = msg_str(c->auth.env.org_id),
        .project_id = msg_str(c->auth.env.project_id),
        .env_type = msg_str(c->auth.env.type),
        .type = msg_str(json_string_value(json_object_get(b, "type"))),
        .external_id = msg_str(json_is_string(ext) ? json_string_value(ext) : NULL),
        .task_identifier = msg_str(task),
        .trigger_config = msg_str(tc_text),
        .tags = msg_str(tags_text ? tags_text : "[]"),
        .metadata = msg_str(meta_text),
        .expires_at_ms = expires,
        .request_id = msg_str(c->request_id),
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_create_form, &w, &m);
    free(tc_text);
    free(tags_text);
    free(meta_text);
    json_decref(tc);
    err_t rc = gw_call_bus(c, GW_ACTOR_SESSION_MANAGER, MSG_SESSION_CREATE, mp_writer_data(&w),
                           mp_writer_len(&w), gw_create_on_session);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "session.create");
}

/* ---- get (a loader: 404 before 403) ---- */

static void gw_get_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s;
    static const char *const super[] = {"read:sessions", "read:all", "admin"};
    if (!gw_session_reply(c, rc, env, &s, "Not found", GW_NO_RETRY, "session.get"))
        return;
    if (!gw_session_authorize(c, s, "read", super, false))
        return;
    gw_respond_json(c, 200, gw_session_item(s, GW_ITEM_FULL), 0);
}

void gw_on_session_get(struct gw_call *c)
{
    err_t rc = gw_session_lookup(c, gw_get_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- update (PATCH): admin on the URL value; externalId is immutable ---- */

static void gw_update_on_updated(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s;
    if (!gw_session_reply(c, rc, env, &s, "Session not found", 0, "session.update"))
        return;
    gw_respond_json(c, 200, gw_session_item(s, GW_ITEM_FULL), 0);
}

static void gw_update_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s;
    char ext[GW_PARAM_MAX];
    if (!gw_session_reply(c, rc, env, &s, "Session not found", 0, "session.get"))
        return;
    json_t *want = json_object_get(c->body, "externalId");
    if (want) {
        bool has = gw_sess_str(s, "external_id", ext, sizeof(ext));
        bool same = json_is_null(want) ? !has : (has && strcmp(ext, json_string_value(want)) == 0);
        if (!same) {
            gw_respond_error(c, 422, "externalId cannot be changed after the session is created",
                             GW_NO_RETRY);
            return;
        }
    }
    json_t *tags = json_object_get(c->body, "tags");
    json_t *meta = json_object_get(c->body, "metadata");
    if (!tags && !meta) { /* nothing to change: the row as it is */
        gw_respond_json(c, 200, gw_session_item(s, GW_ITEM_FULL), 0);
        return;
    }
    char *tags_text = tags ? json_dumps(tags, JSON_COMPACT) : NULL;
    char *meta_text = meta && !json_is_null(meta) ? json_dumps(meta, JSON_COMPACT) : NULL;
    struct msg_session_update m = {
        .env_id = msg_str(c->auth.env.id),
        .ref = msg_str(c->params.session),
        .tags = msg_str(tags_text),
        .tags_given = tags != NULL,
        .metadata = msg_str(meta_text), /* given as nil: clears */
        .metadata_given = meta != NULL,
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_update_form, &w, &m);
    free(tags_text);
    free(meta_text);
    rc = gw_call_bus(c, GW_ACTOR_SESSION_MANAGER, MSG_SESSION_UPDATE, mp_writer_data(&w),
                     mp_writer_len(&w), gw_update_on_updated);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "session.update");
}

void gw_on_session_update(struct gw_call *c)
{
    static const char *const super[] = {"admin:sessions", "admin:all", "admin"};
    json_t *meta = json_object_get(c->body, "metadata");
    if (!gw_str_array(c->body, "tags", 10, 128, "tags") || !gw_external_id(c->body, true)) {
        gw_respond_error(c, 400, gw_verr, 0);
        return;
    }
    if (meta && !json_is_object(meta) && !json_is_null(meta)) {
        gw_respond_error(c, 400, "Validation error: Expected object at \"metadata\"", 0);
        return;
    }
    /* an action route: authorization (on the URL value only) before the 404 */
    if (!gw_session_authorize(c, SLICE_NULL, "admin", super, true))
        return;
    err_t rc = gw_session_lookup(c, gw_update_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- close ---- */

static void gw_close_on_closed(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s;
    if (!gw_session_reply(c, rc, env, &s, "Resource not found", 0, "session.close"))
        return;
    gw_respond_json(c, 200, gw_session_item(s, GW_ITEM_FULL), 0);
}

void gw_on_session_close(struct gw_call *c)
{
    static const char *const super[] = {"admin:sessions", "admin:all", "admin"};
    json_t *reason = json_object_get(c->body, "reason");
    if (reason && !json_is_null(reason) && !gw_opt_str(c->body, "reason", 0, 256, "reason")) {
        gw_respond_error(c, 400, gw_verr, 0);
        return;
    }
    if (!gw_session_authorize(c, SLICE_NULL, "admin", super, true))
        return;
    struct msg_session_close m = {
        .env_id = msg_str(c->auth.env.id),
        .ref = msg_str(c->params.session),
        .reason = msg_str(json_is_string(reason) ? json_string_value(reason) : NULL),
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_close_form, &w, &m);
    err_t rc = gw_call_bus(c, GW_ACTOR_SESSION_MANAGER, MSG_SESSION_CLOSE, mp_writer_data(&w),
                           mp_writer_len(&w), gw_close_on_closed);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "session.close");
}

/* ---- end-and-continue ---- */

static void gw_eac_on_swap(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    char run[160];
    struct msg_run_swap_reply r;
    if (rc == ERR_NOTFOUND) {
        gw_respond_error(c, 404, "callingRunId not found in this environment", 0);
        return;
    }
    if (rc != OK || !env ||
        msg_decode(&msg_run_swap_reply_form, env->body.p, env->body.n, &r) != OK ||
        slice_copy(r.run_id, run, sizeof(run)) != OK) {
        if (rc == ERR_UNAVAIL || rc == ERR_TIMEOUT)
            gw_respond_err(c, rc, "run.swap");
        else
            gw_respond_error(c, 500, "Failed to swap session run", 0);
        return;
    }
    gw_respond_json(c, 200, json_pack("{s:s,s:b}", "runId", run, "swapped", r.swapped), 0);
}

static void gw_eac_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct slice s = SLICE_NULL;
    static const char *const super[] = {"write:sessions", "write:all", "admin"};
    if (rc != OK && rc != ERR_NOTFOUND) {
        gw_respond_err(c, rc, "session.get");
        return;
    }
    if (rc == OK && !gw_reply_session(env, &s)) {
        gw_respond_err(c, ERR_PROTO, "session.get");
        return;
    }
    /* an action route: authorize on everything we know, then say the row is missing */
    if (!gw_session_authorize(c, s, "write", super, true))
        return;
    if (rc == ERR_NOTFOUND) {
        gw_respond_error(c, 404, "Resource not found", 0);
        return;
    }
    if (gw_session_closed_or_expired(c, s, 400, "Cannot end-and-continue a closed session"))
        return;
    uint16_t t = gw_msg("run.swap");
    if (!t) {
        gw_respond_err(c, ERR_UNAVAIL, "run.swap is not in the catalogue");
        return;
    }
    char id[128];
    gw_sess_str(s, "id", id, sizeof(id));
    const char *reason = json_string_value(json_object_get(c->body, "reason"));
    static const char *const reasons[] = {"initial", "continuation", "upgrade", "manual"};
    const char *mapped = "manual";
    for (unsigned i = 0; reason && i < 4; i++)
        if (strcmp(reason, reasons[i]) == 0)
            mapped = reasons[i];
    struct msg_run_swap m = {
        .env_id = msg_str(c->auth.env.id),
        .session_id = msg_str(id),
        .calling_run_id = msg_str(json_string_value(json_object_get(c->body, "callingRunId"))),
        .reason = msg_str(mapped),
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_run_swap_form, &w, &m);
    rc = gw_call_bus(c, GW_ACTOR_RUN_MANAGER, t, mp_writer_data(&w), mp_writer_len(&w),
                     gw_eac_on_swap);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "run.swap");
}

void gw_on_session_end_and_continue(struct gw_call *c)
{
    if (!gw_req_str(c->body, "callingRunId", 1, 256, "callingRunId") ||
        !gw_req_str(c->body, "reason", 0, 64, "reason") ||
        !gw_opt_str(c->body, "externalDeploymentId", 0, 128, "externalDeploymentId")) {
        gw_respond_error(c, 400, gw_verr, 0);
        return;
    }
    err_t rc = gw_session_lookup(c, gw_eac_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}
