/*
 * sessref.c - reading session objects and resolving a URL's session (see sessref.h).
 */
#include "sessref.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "gw.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_list.h"
#include "msg_run.h"
#include "msg_session.h"
#include "sesscache.h"
#include "stream.h"

bool gw_sess_str(struct slice m, const char *k, char *out, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    out[0] = '\0';
    if (mp_map_find(m.p, m.n, k, &v) != OK || mp_read_str(&v, &s) != OK)
        return false;
    return slice_copy(s, out, cap) == OK;
}

uint64_t gw_sess_u64(struct slice m, const char *k)
{
    struct mp_reader v;
    uint64_t u = 0;
    if (mp_map_find(m.p, m.n, k, &v) == OK)
        (void)mp_read_uint(&v, &u);
    return u;
}

/* The session object inside a reply {session: {...}}. */
bool gw_reply_session(const struct envelope *env, struct slice *out)
{
    struct mp_reader v;
    return env && env->body.n && mp_map_find(env->body.p, env->body.n, "session", &v) == OK &&
           mp_skip(&v, out) == OK;
}

bool gw_session_reply(struct gw_call *c, err_t rc, const struct envelope *env, struct slice *s,
                      const char *not_found, unsigned flags, const char *what)
{
    if (rc == ERR_NOTFOUND) {
        gw_respond_error(c, 404, not_found, flags);
        return false;
    }
    if (rc != OK || !gw_reply_session(env, s)) {
        gw_respond_err(c, rc == OK ? ERR_PROTO : rc, what);
        return false;
    }
    return true;
}

/* ---- the cache of session rows ---- */

static void gw_sessions_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw *gw = arg;
    char env_id[128], id[GW_PARAM_MAX];
    struct msg_session_changed m;
    (void)topic;
    if (msg_decode(&msg_session_changed_form, env->body.p, env->body.n, &m) != OK ||
        slice_copy(m.env_id, env_id, sizeof(env_id)) != OK)
        return;
    if (m.friendly_id.p && slice_copy(m.friendly_id, id, sizeof(id)) == OK)
        gw_sesscache_drop(gw->sessions, env_id, id);
    if (m.external_id.p && slice_copy(m.external_id, id, sizeof(id)) == OK)
        gw_sesscache_drop(gw->sessions, env_id, id);
}

err_t gw_sessions_open(struct gw *gw)
{
    gw->sessions =
        gw_sesscache_new((size_t)gw->gw.session_cache_max, (uint64_t)gw->gw.session_cache_ttl_ms);
    if (gw->gw.session_cache_max == 0)
        return OK;
    if (bus_sub_open_actor(gw->bus, "session-manager", gw_sessions_on_event, gw,
                           &gw->session_events) != OK ||
        bus_sub_add(gw->session_events, "session.changed") != OK) {
        LOG_ERROR("gw.sessions", "cannot follow session.changed: session rows are not cached");
        gw->gw.session_cache_max = 0;
        gw_sesscache_free(gw->sessions);
        gw->sessions = gw_sesscache_new(0, 0);
    }
    return OK;
}

/* A cached lookup on its way to the session-manager: the answer is kept on the way back, then
 * the call resumes as gw_call_bus would resume it. */
struct gw_lookup {
    struct gw_call *c;
    bus_reply_fn cb;
    char env[128];
    char ref[GW_PARAM_MAX];
};

static void gw_lookup_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_lookup *lk = arg;
    struct gw_call *c = lk->c;
    struct slice s;
    if (rc == OK && gw_reply_session(env, &s))
        gw_sesscache_put(c->gw->sessions, lk->env, lk->ref, env->body.p, env->body.n);
    bus_reply_fn cb = lk->cb;
    free(lk);
    gw_call_resume(c, cb, rc, env); /* the row is cached even when the client has gone */
}

err_t gw_session_lookup_cached(struct gw_call *c, bus_reply_fn cb)
{
    void *body;
    size_t n;
    if (gw_sesscache_get(c->gw->sessions, c->auth.env.id, c->params.session, &body, &n)) {
        struct envelope env = {.kind = ENV_REPLY, .type = MSG_SESSION_GET};
        env.body = (struct slice){body, n};
        cb(c, OK, &env); /* c may be gone now */
        free(body);
        return OK;
    }
    struct gw_lookup *lk = xcalloc(1, sizeof(*lk));
    lk->c = c;
    lk->cb = cb;
    snprintf(lk->env, sizeof(lk->env), "%s", c->auth.env.id);
    snprintf(lk->ref, sizeof(lk->ref), "%s", c->params.session);
    struct msg_session_get m = {msg_str(c->auth.env.id), msg_str(c->params.session)};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_get_form, &w, &m);
    err_t rc = bus_call(c->gw->actors[GW_ACTOR_SESSION_MANAGER], MSG_SESSION_GET,
                        mp_writer_data(&w), mp_writer_len(&w), &c->trace, gw_lookup_on_reply, lk);
    mp_writer_fini(&w);
    if (rc != OK)
        free(lk);
    return rc;
}

err_t gw_session_lookup(struct gw_call *c, bus_reply_fn cb)
{
    struct msg_session_get m = {msg_str(c->auth.env.id), msg_str(c->params.session)};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_get_form, &w, &m);
    err_t rc = gw_call_bus(c, GW_ACTOR_SESSION_MANAGER, MSG_SESSION_GET, mp_writer_data(&w),
                           mp_writer_len(&w), cb);
    mp_writer_fini(&w);
    return rc;
}

/* Authorizes `action` on the row's ids (friendly and external) plus, optionally, the URL value. */
bool gw_session_authorize(struct gw_call *c, struct slice s, const char *action,
                          const char *const *super, bool with_url)
{
    char friendly[128], ext[GW_PARAM_MAX];
    char narrow[6][GW_PARAM_MAX + STREAM_CHANNEL_MAX + 24];
    const char *ids[9];
    unsigned n = 0;
    char why[2048];
    if (with_url)
        ids[n++] = c->params.session;
    if (s.n) {
        gw_sess_str(s, "friendly_id", friendly, sizeof(friendly));
        ids[n++] = friendly;
        ids[n++] = gw_sess_str(s, "external_id", ext, sizeof(ext)) ? ext : "";
    }
    if (c->params.channel[0]) {
        /* a side channel's route: the session's scopes cover it, and so do the channel's own,
         * "<action>:sessions:<id>:channels:<name>" and the same ":<io>" */
        unsigned base = n;
        for (unsigned i = 0; i < base; i++) {
            snprintf(narrow[2 * i], sizeof(narrow[0]), "%s:channels:%s", ids[i], c->params.channel);
            snprintf(narrow[2 * i + 1], sizeof(narrow[0]), "%s:channels:%s:%s", ids[i],
                     c->params.channel, c->params.io);
            ids[n++] = narrow[2 * i];
            ids[n++] = narrow[2 * i + 1];
        }
    }
    unsigned nsuper = 0;
    while (nsuper < 3 && super[nsuper]) /* a NULL ends the list early: no super-scope counts */
        nsuper++;
    struct gw_resource res = {"sessions", ids, n};
    if (gw_authorize(&c->auth, action, &res, 1, super, nsuper, why, sizeof(why)))
        return true;
    gw_respond_forbidden(c, why);
    return false;
}

err_t gw_run_ensure(struct gw_call *c, struct slice s, const char *reason, bus_reply_fn cb)
{
    char id[128];
    struct mp_writer w;
    gw_sess_str(s, "id", id, sizeof(id));
    struct msg_run_ensure m = {msg_str(c->auth.env.id), msg_str(id), msg_str(reason)};
    mp_writer_init(&w);
    msg_encode(&msg_run_ensure_form, &w, &m);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_RUN_MANAGER, MSG_RUN_ENSURE, mp_writer_data(&w),
                         mp_writer_len(&w), cb);
    mp_writer_fini(&w);
    return rc;
}
