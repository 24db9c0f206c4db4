/*
 * env.c - the env.* handlers: decode and check a request, call the store,
 * encode the reply. Bodies are exactly those of proto/msg.c. Errors: bad
 * input is ERR_INVAL (with what is wrong), a key that authenticates nothing
 * is ERR_UNAUTH, a store failure is ERR_UNAVAIL. Keys are never logged nor
 * put in an error message; logs name environments by id.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "sm.h"

#define SM_UNAVAIL_MSG "the environment store (PostgreSQL) is unavailable; retry later"

/* ---- request fields ---- */

/*
 * The string field key of body into *out: SLICE_NULL when absent or nil.
 * ERR_INVAL when body is not a map or the field is not a string.
 */
static err_t sm_field_str(struct slice body, const char *key, struct slice *out)
{
    struct mp_reader v;
    err_t rc;
    *out = SLICE_NULL;
    if (body.n == 0)
        return OK;
    rc = mp_map_find(body.p, body.n, key, &v);
    if (rc == ERR_NOTFOUND)
        return OK;
    if (rc != OK || mp_read_str_or_nil(&v, out) != OK)
        return ERR_INVAL;
    return OK;
}

/* The uint field key of body into *out, def when absent or nil; ERR_INVAL otherwise. */
static err_t sm_field_uint(struct slice body, const char *key, uint64_t def, uint64_t *out)
{
    struct mp_reader v;
    enum mp_type t;
    err_t rc;
    *out = def;
    if (body.n == 0)
        return OK;
    rc = mp_map_find(body.p, body.n, key, &v);
    if (rc == ERR_NOTFOUND)
        return OK;
    if (rc != OK || mp_peek(&v, &t) != OK)
        return ERR_INVAL;
    if (t == MP_NIL)
        return OK;
    return mp_read_uint(&v, out) == OK ? OK : ERR_INVAL;
}

static bool sm_present(struct slice s)
{
    return s.p != NULL && s.n > 0;
}

/* An id from the wire: every id this actor hands out is a cuid, so anything else names nothing. */
static bool sm_id_copy(struct slice s, char *out)
{
    return cuid_valid(s.p, s.n) && slice_copy(s, out, SM_ID_MAX) == OK;
}

/* ---- replies ---- */

/* Replies {env: {...}} (with created when created >= 0). */
static void sm_reply_env(struct bus_req *req, const struct sm_env *env, int created)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, created >= 0 ? 2 : 1);
    mp_put_str(&w, "env");
    sm_env_put(&w, env, true);
    if (created >= 0)
        mp_put_kv_bool(&w, "created", created > 0);
    if (mp_writer_err(&w) == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
    mp_writer_fini(&w);
}

/*
 * A failure of the store: ERR_UNAVAIL (db_pg has logged the detail), or a
 * row we cannot read (a bug or a foreign write: logged here, once).
 */
static void sm_reply_store_err(struct bus_req *req, const char *op, err_t rc)
{
    if (rc == ERR_UNAVAIL) {
        (void)bus_reply_err(req, ERR_UNAVAIL, SM_UNAVAIL_MSG);
        return;
    }
    LOG_ERROR("env.store_failed", "%s: unexpected store result: %s", op, err_name(rc));
    (void)bus_reply_err(req, ERR_INTERNAL, "unexpected result from the environment store");
}

/* ---- env.resolve_key ---- */

void sm_on_env_resolve_key(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body, key, branch;
    char k[API_KEY_MAX], br[SM_BRANCH_MAX], id[SM_ID_MAX];
    struct sm_env env;
    err_t rc;

    if (sm_field_str(body, "key", &key) != OK || sm_field_str(body, "branch", &branch) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, "key and branch must be strings");
        return;
    }
    if (!key.p) {
        (void)bus_reply_err(req, ERR_INVAL, "key is required");
        return;
    }
    /* not the shape of a secret key: nothing to look up (and nothing to send to SQL) */
    if (!sm_key_shape_ok(key.p, key.n) || slice_copy(key, k, sizeof(k)) != OK) {
        (void)bus_reply_err(req, ERR_UNAUTH, "invalid API key");
        return;
    }
    rc = sm_store_env_by_key(&a->pg, k, id);
    if (rc == OK)
        rc = sm_store_env_get(&a->pg, id, &env);
    if (rc == ERR_NOTFOUND) {
        (void)bus_reply_err(req, ERR_UNAUTH,
                            "invalid API key (unknown, or revoked past its grace "
                            "window)");
        return;
    }
    if (rc != OK) {
        sm_reply_store_err(req, "env.resolve_key", rc);
        return;
    }
    if (env.archived || env.project_deleted) {
        LOG_DEBUG("env.resolve_refused", "key of environment %s refused: %s", env.id,
                  env.archived ? "archived" : "project deleted");
        (void)bus_reply_err(req, ERR_UNAUTH,
                            "invalid API key (environment archived or project "
                            "deleted)");
        return;
    }
    /* a preview root's key authenticates its branches, chosen by x-trigger-branch */
    if (strcmp(env.type, "PREVIEW") == 0 && !env.parent_id[0]) {
        if (!sm_present(branch)) {
            (void)bus_reply_err(req, ERR_UNAUTH, "preview environments need x-trigger-branch");
            return;
        }
        rc = ERR_NOTFOUND;
        if (sm_branch_valid(branch.p, branch.n) && slice_copy(branch, br, sizeof(br)) == OK) {
            rc = sm_store_env_branch(&a->pg, env.id, br, id);
            if (rc == OK)
                rc = sm_store_env_get(&a->pg, id, &env);
            if (rc == OK && env.archived)
                rc = ERR_NOTFOUND;
        }
        if (rc == ERR_NOTFOUND) {
            (void)bus_reply_err(req, ERR_UNAUTH, "no such preview branch");
            return;
        }
        if (rc != OK) {
            sm_reply_store_err(req, "env.resolve_key", rc);
            return;
        }
    }
    sm_reply_env(req, &env, -1);
}

/* ---- env.get ---- */

void sm_on_env_get(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body, sid;
    char id[SM_ID_MAX];
    struct sm_env env;
    err_t rc;

    if (sm_field_str(body, "id", &sid) != OK || !sid.p) {
        (void)bus_reply_err(req, ERR_INVAL, "id (a string) is required");
        return;
    }
    rc = sm_id_copy(sid, id) ? sm_store_env_get(&a->pg, id, &env) : ERR_NOTFOUND;
    if (rc == OK && (env.archived || env.project_deleted))
        rc = ERR_NOTFOUND;
    if (rc == ERR_NOTFOUND) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "no such environment");
        return;
    }
    if (rc != OK) {
        sm_reply_store_err(req, "env.get", rc);
        return;
    }
    sm_reply_env(req, &env, -1);
}

/* ---- env.create ---- */

/* Creates a preview branch of parent_id; replies itself. */
static void sm_create_branch(struct actor *a, struct bus_req *req, struct slice org,
                             struct slice project, struct slice parent_id, struct slice branch)
{
    char pid[SM_ID_MAX], br[SM_BRANCH_MAX], key[API_KEY_MAX], id[SM_ID_MAX];
    struct sm_env parent, env;
    err_t rc;

    if (!sm_branch_valid(branch.p, branch.n) || slice_copy(branch, br, sizeof(br)) != OK) {
        (void)bus_reply_err(req, ERR_INVAL, "branch must be 1-64 characters of [A-Za-z0-9._/-]");
        return;
    }
    rc = sm_id_copy(parent_id, pid) ? sm_store_env_get(&a->pg, pid, &parent) : ERR_NOTFOUND;
    if (rc == ERR_NOTFOUND || (rc == OK && (parent.archived || parent.project_deleted))) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "no such parent environment");
        return;
    }
    if (rc != OK) {
        sm_reply_store_err(req, "env.create", rc);
        return;
    }
    if (strcmp(parent.type, "PREVIEW") != 0 || parent.parent_id[0]) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "parent_id must name a preview environment (not a branch)");
        return;
    }
    /* org and project are optional for a branch, but must not contradict the parent */
    if ((sm_present(org) && !slice_eq(org, parent.org_slug)) ||
        (sm_present(project) && !slice_eq(project, parent.project_slug))) {
        char msg[256];
        snprintf(msg, sizeof(msg), "the parent environment belongs to %s/%s", parent.org_slug,
                 parent.project_slug);
        (void)bus_reply_err(req, ERR_INVAL, msg);
        return;
    }
    rc = ERR_CONFLICT;
    for (int t = 0; t < 3 && rc == ERR_CONFLICT; t++) {
        if ((rc = api_key_new("preview", key)) != OK)
            break;
        rc = sm_store_env_insert_branch(&a->pg, &parent, br, key, id);
    }
    if (rc == OK)
        rc = sm_store_env_get(&a->pg, id, &env);
    if (rc == ERR_EXISTS) {
        char msg[256];
        snprintf(msg, sizeof(msg), "environment %s already has a branch named \"%s\"", parent.id,
                 br);
        (void)bus_reply_err(req, ERR_EXISTS, msg);
        return;
    }
    if (rc != OK) {
        sm_reply_store_err(req, "env.create", rc);
        return;
    }
    LOG_INFO("env.created", "created preview branch environment %s of %s in %s/%s", env.id,
             parent.id, env.org_slug, env.project_slug);
    sm_reply_env(req, &env, -1);
}

void sm_on_env_create(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body, org, project, type, parent_id, branch;
    char os[SM_SLUG_MAX], ps[SM_SLUG_MAX], ts[SM_TYPE_MAX], org_id[SM_ID_MAX],
        project_id[SM_ID_MAX], key[API_KEY_MAX], id[SM_ID_MAX];
    const char *lt;
    struct sm_env env;
    err_t rc;

    if (sm_field_str(body, "org", &org) != OK || sm_field_str(body, "project", &project) != OK ||
        sm_field_str(body, "type", &type) != OK ||
        sm_field_str(body, "parent_id", &parent_id) != OK ||
        sm_field_str(body, "branch", &branch) != OK) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "org, project, type, parent_id and branch must be strings or nil");
        return;
    }
    if (!type.p || slice_copy(type, ts, sizeof(ts)) != OK || !(lt = sm_env_type_long(ts))) {
        (void)bus_reply_err(req, ERR_INVAL, "type must be dev, stg, prod or preview");
        return;
    }
    if (sm_present(parent_id) || sm_present(branch)) {
        if (!sm_present(parent_id) || !sm_present(branch) || strcmp(lt, "PREVIEW") != 0) {
            (void)bus_reply_err(req, ERR_INVAL,
                                "a preview branch needs type preview, parent_id "
                                "and branch");
            return;
        }
        sm_create_branch(a, req, org, project, parent_id, branch);
        return;
    }
    if (!sm_slug_valid(org.p, org.n) || slice_copy(org, os, sizeof(os)) != OK ||
        !sm_slug_valid(project.p, project.n) || slice_copy(project, ps, sizeof(ps)) != OK) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "org and project must be 1-64 characters of [A-Za-z0-9._-]");
        return;
    }
    rc = sm_store_org_ensure(&a->pg, os, org_id);
    if (rc == OK)
        rc = sm_store_project_ensure(&a->pg, org_id, ps, project_id);
    if (rc == ERR_CONFLICT) {
        (void)bus_reply_err(req, ERR_CONFLICT, "the project is deleted");
        return;
    }
    /* a collision of the random id or key (ERR_CONFLICT) is retried with fresh ones */
    if (rc == OK) {
        rc = ERR_CONFLICT;
        for (int t = 0; t < 3 && rc == ERR_CONFLICT; t++) {
            if ((rc = api_key_new(ts, key)) != OK)
                break;
            rc = sm_store_env_insert_root(&a->pg, org_id, project_id, lt, ts, key, id);
        }
    }
    if (rc == OK)
        rc = sm_store_env_get(&a->pg, id, &env);
    if (rc == ERR_EXISTS) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s/%s already has a %s environment", os, ps, lt);
        (void)bus_reply_err(req, ERR_EXISTS, msg);
        return;
    }
    if (rc != OK) {
        sm_reply_store_err(req, "env.create", rc);
        return;
    }
    LOG_INFO("env.created", "created %s environment %s in %s/%s", lt, env.id, os, ps);
    sm_reply_env(req, &env, -1);
}

/* ---- env.rotate_key ---- */

void sm_on_env_rotate_key(struct actor *a, struct bus_req *req)
{
    struct slice body = bus_req_env(req)->body, sid;
    char id[SM_ID_MAX], key[API_KEY_MAX];
    const char *st;
    uint64_t grace;
    struct sm_env env;
    err_t rc;

    if (sm_field_str(body, "id", &sid) != OK || !sid.p) {
        (void)bus_reply_err(req, ERR_INVAL, "id (a string) is required");
        return;
    }
    if (sm_field_uint(body, "grace_ms", SM_GRACE_MS_DEFAULT, &grace) != OK ||
        grace > SM_GRACE_MS_MAX) {
        (void)bus_reply_err(req, ERR_INVAL, "grace_ms must be an integer of at most 366 days");
        return;
    }
    rc = sm_id_copy(sid, id) ? sm_store_env_get(&a->pg, id, &env) : ERR_NOTFOUND;
    if (rc == OK && (env.archived || env.project_deleted))
        rc = ERR_NOTFOUND;
    if (rc == OK) {
        /* the new key carries the environment's type, like the old one */
        st = sm_env_type_short(env.type);
        rc = st ? api_key_new(st, key) : ERR_INTERNAL;
    }
    if (rc == OK)
        rc = sm_store_env_rotate(&a->pg, id, key, grace);
    if (rc == OK)
        rc = sm_store_env_get(&a->pg, id, &env);
    if (rc == ERR_NOTFOUND) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "no such environment");
        return;
    }
    if (rc != OK) {
        sm_reply_store_err(req, "env.rotate_key", rc);
        return;
    }
    LOG_INFO("env.key_rotated",
             "new key for environment %s; the old one stays valid for %" PRIu64 " ms", env.id,
             grace);
    sm_reply_env(req, &env, -1);
}

/* ---- env.bootstrap ---- */

void sm_on_env_bootstrap(struct actor *a, struct bus_req *req)
{
    char org_id[SM_ID_MAX], project_id[SM_ID_MAX], id[SM_ID_MAX], key[API_KEY_MAX];
    struct sm_env env;
    bool created = false;
    err_t rc;

    id[0] = '\0';
    rc = sm_store_org_ensure(&a->pg, "default", org_id);
    if (rc == OK)
        rc = sm_store_project_ensure(&a->pg, org_id, "default", project_id);
    if (rc == ERR_CONFLICT) {
        (void)bus_reply_err(req, ERR_CONFLICT, "the project default/default is deleted");
        return;
    }
    /*
     * Look first, insert if missing, look again if someone else inserted in
     * between: concurrent callers (or instances) all end on the one row the
     * unique index lets in.
     */
    for (int t = 0; t < 3 && rc == OK; t++) {
        rc = sm_store_env_find_root(&a->pg, project_id, "DEVELOPMENT", id);
        if (rc != ERR_NOTFOUND)
            break;
        if ((rc = api_key_new("dev", key)) != OK)
            break;
        rc = sm_store_env_insert_root(&a->pg, org_id, project_id, "DEVELOPMENT", "dev", key, id);
        if (rc == OK) {
            created = true;
            break;
        }
        if (rc == ERR_EXISTS || rc == ERR_CONFLICT)
            rc = OK; /* lost a race or drew a colliding key: look again */
    }
    if (rc == OK && !id[0])
        rc = ERR_INTERNAL;
    if (rc == OK)
        rc = sm_store_env_get(&a->pg, id, &env);
    if (rc != OK) {
        sm_reply_store_err(req, "env.bootstrap", rc == ERR_NOTFOUND ? ERR_INTERNAL : rc);
        return;
    }
    if (env.archived) {
        (void)bus_reply_err(req, ERR_CONFLICT,
                            "the development environment of default/default is archived");
        return;
    }
    if (created)
        LOG_INFO("env.created", "created DEVELOPMENT environment %s in default/default", env.id);
    sm_reply_env(req, &env, created ? 1 : 0);
}

/* ---- env.list ---- */

struct sm_list_ctx {
    struct mp_writer w; /* the entries, without the array header */
    uint32_t n;
};

static void sm_list_one(void *arg, const struct sm_env *env)
{
    struct sm_list_ctx *ctx = arg;
    sm_env_put(&ctx->w, env, false);
    ctx->n++;
}

void sm_on_env_list(struct actor *a, struct bus_req *req)
{
    struct sm_list_ctx ctx = {.n = 0};
    struct mp_writer w;
    err_t rc;

    mp_writer_init(&ctx.w);
    rc = sm_store_env_list(&a->pg, sm_list_one, &ctx);
    if (rc != OK) {
        mp_writer_fini(&ctx.w);
        sm_reply_store_err(req, "env.list", rc);
        return;
    }
    /* the array's length is known only now: header first, then the entries as they are */
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "envs");
    mp_put_array(&w, ctx.n);
    if (ctx.n > 0)
        mp_put_raw(&w, mp_writer_data(&ctx.w), mp_writer_len(&ctx.w));
    if (mp_writer_err(&ctx.w) == OK && mp_writer_err(&w) == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
    mp_writer_fini(&w);
    mp_writer_fini(&ctx.w);
}
