/*
 * sessref.c - reading session objects and resolving a URL's session (see sessref.h).
 */
#include "sessref.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "gw.h"
#include "mp.h"
#include "msg.h"

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

err_t gw_session_lookup(struct gw_call *c, bus_reply_fn cb)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "ref", c->params.session);
    err_t rc = bus_call(c->gw->actors[GW_ACTOR_SESSION_MANAGER], MSG_SESSION_GET,
                        mp_writer_data(&w), mp_writer_len(&w), &c->trace, cb, c);
    mp_writer_fini(&w);
    return rc;
}

/* Authorizes `action` on the row's ids (friendly and external) plus, optionally, the URL value. */
bool gw_session_authorize(struct gw_call *c, struct slice s, const char *action,
                          const char *const *super, bool with_url)
{
    char friendly[128], ext[GW_PARAM_MAX];
    const char *ids[3];
    unsigned n = 0;
    char why[2048];
    if (with_url)
        ids[n++] = c->params.session;
    if (s.n) {
        gw_sess_str(s, "friendly_id", friendly, sizeof(friendly));
        ids[n++] = friendly;
        ids[n++] = gw_sess_str(s, "external_id", ext, sizeof(ext)) ? ext : "";
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
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env_id", c->auth.env.id);
    mp_put_kv_str(&w, "session_id", id);
    mp_put_kv_str(&w, "reason", reason);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(c->gw->actors[GW_ACTOR_RUN_MANAGER], MSG_RUN_ENSURE, mp_writer_data(&w),
                      mp_writer_len(&w), &c->trace, cb, c);
    mp_writer_fini(&w);
    return rc;
}
