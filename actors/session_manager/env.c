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
#include "msg_env.h"
#include "msg_raw.h"
#include "sm.h"

/* ---- request fields ---- */

#define SM_ID_REQUIRED "id (a string) is required"

/*
 * Reads req's body as f into m; when it is no such body (not a map, or a field of the wrong
 * kind), or the field required (a member of m, may be NULL) is absent or nil, answers
 * ERR_INVAL with why and returns false.
 */
static bool sm_env_decode(struct bus_req *req, const struct msg_form *f, void *m,
                          const struct slice *required, const char *why)
{
    const struct envelope *e = bus_req_env(req);
    if (msg_decode(f, e->body.p, e->body.n, m) == OK && (!required || required->p))
        return true;
    (void)bus_reply_err(req, ERR_INVAL, why);
    return false;
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
    struct mp_writer obj;
    mp_writer_init(&obj);
    sm_env_put(&obj, env, true);
    struct msg_env_reply m = {
        .env = msg_raw_of(&obj), .created = created > 0, .created_given = created >= 0};
    (void)bus_reply_msg(req, &msg_env_reply_form, &m, &obj);
    mp_writer_fini(&obj);
}

/* ---- env.resolve_key ---- */

err_t sm_on_env_resolve_key(struct actor *a, struct bus_req *req)
{
    char k[API_KEY_MAX], br[SM_BRANCH_MAX], id[SM_ID_MAX];
    struct msg_env_resolve_key m;
    struct sm_env env;
    err_t rc;

    if (!sm_env_decode(req, &msg_env_resolve_key_form, &m, NULL, "key and branch must be strings"))
        return OK;
    struct slice key = m.key, branch = m.branch;
    if (!key.p) {
        (void)bus_reply_err(req, ERR_INVAL, "key is required");
        return OK;
    }
    /* not the shape of a secret key: nothing to look up (and nothing to send to SQL) */
    if (!sm_key_shape_ok(key.p, key.n) || slice_copy(key, k, sizeof(k)) != OK) {
        (void)bus_reply_err(req, ERR_UNAUTH, "invalid API key");
        return OK;
    }
    rc = sm_store_env_by_key(&a->pg, k, id);
    if (rc == OK)
        rc = sm_store_env_get(&a->pg, id, &env);
    if (rc == ERR_NOTFOUND) {
        (void)bus_reply_err(req, ERR_UNAUTH,
                            "invalid API key (unknown, or revoked past its grace "
                            "window)");
        return OK;
    }
    if (rc != OK) {
        actor_reply_store_err(req, "env.resolve_key", rc);
        return OK;
    }
    if (env.archived || env.project_deleted) {
        LOG_DEBUG("env.resolve_refused", "key of environment %s refused: %s", env.id,
                  env.archived ? "archived" : "project deleted");
        (void)bus_reply_err(req, ERR_UNAUTH,
                            "invalid API key (environment archived or project "
                            "deleted)");
        return OK;
    }
    /* a preview root's key authenticates its branches, chosen by x-trigger-branch */
    if (strcmp(env.type, "PREVIEW") == 0 && !env.parent_id[0]) {
        if (!sm_present(branch)) {
            (void)bus_reply_err(req, ERR_UNAUTH, "preview environments need x-trigger-branch");
            return OK;
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
            return OK;
        }
        if (rc != OK) {
            actor_reply_store_err(req, "env.resolve_key", rc);
            return OK;
        }
    }
    sm_reply_env(req, &env, -1);
    return OK;
}

/* ---- env.get ---- */

err_t sm_on_env_get(struct actor *a, struct bus_req *req)
{
    char id[SM_ID_MAX];
    struct msg_env_get m = {0};
    struct sm_env env;
    err_t rc;

    if (!sm_env_decode(req, &msg_env_get_form, &m, &m.id, SM_ID_REQUIRED))
        return OK;
    rc = sm_id_copy(m.id, id) ? sm_store_env_get(&a->pg, id, &env) : ERR_NOTFOUND;
    if (rc == OK && (env.archived || env.project_deleted))
        rc = ERR_NOTFOUND;
    if (rc == ERR_NOTFOUND) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "no such environment");
        return OK;
    }
    if (rc != OK) {
        actor_reply_store_err(req, "env.get", rc);
        return OK;
    }
    sm_reply_env(req, &env, -1);
    return OK;
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
        actor_reply_store_err(req, "env.create", rc);
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
        actor_reply_store_err(req, "env.create", rc);
        return;
    }
    LOG_INFO("env.created", "created preview branch environment %s of %s in %s/%s", env.id,
             parent.id, env.org_slug, env.project_slug);
    sm_reply_env(req, &env, -1);
}

err_t sm_on_env_create(struct actor *a, struct bus_req *req)
{
    char os[SM_SLUG_MAX], ps[SM_SLUG_MAX], ts[SM_TYPE_MAX], org_id[SM_ID_MAX],
        project_id[SM_ID_MAX], key[API_KEY_MAX], id[SM_ID_MAX];
    const char *lt;
    struct msg_env_create m;
    struct sm_env env;
    err_t rc;

    if (!sm_env_decode(req, &msg_env_create_form, &m, NULL,
                       "org, project, type, parent_id and branch must be strings or nil"))
        return OK;
    struct slice org = m.org, project = m.project, type = m.type, parent_id = m.parent_id,
                 branch = m.branch;
    if (!type.p || slice_copy(type, ts, sizeof(ts)) != OK || !(lt = sm_env_type_long(ts))) {
        (void)bus_reply_err(req, ERR_INVAL, "type must be dev, stg, prod or preview");
        return OK;
    }
    if (sm_present(parent_id) || sm_present(branch)) {
        if (!sm_present(parent_id) || !sm_present(branch) || strcmp(lt, "PREVIEW") != 0) {
            (void)bus_reply_err(req, ERR_INVAL,
                                "a preview branch needs type preview, parent_id "
                                "and branch");
            return OK;
        }
        sm_create_branch(a, req, org, project, parent_id, branch);
        return OK;
    }
    if (!sm_slug_valid(org.p, org.n) || slice_copy(org, os, sizeof(os)) != OK ||
        !sm_slug_valid(project.p, project.n) || slice_copy(project, ps, sizeof(ps)) != OK) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "org and project must be 1-64 characters of [A-Za-z0-9._-]");
        return OK;
    }
    rc = sm_store_org_ensure(&a->pg, os, org_id);
    if (rc == OK)
        rc = sm_store_project_ensure(&a->pg, org_id, ps, project_id);
    if (rc == ERR_CONFLICT) {
        (void)bus_reply_err(req, ERR_CONFLICT, "the project is deleted");
        return OK;
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
        return OK;
    }
    if (rc != OK) {
        actor_reply_store_err(req, "env.create", rc);
        return OK;
    }
    LOG_INFO("env.created", "created %s environment %s in %s/%s", lt, env.id, os, ps);
    sm_reply_env(req, &env, -1);
    return OK;
}

/* ---- env.rotate_key ---- */

err_t sm_on_env_rotate_key(struct actor *a, struct bus_req *req)
{
    char id[SM_ID_MAX], key[API_KEY_MAX];
    const char *st;
    uint64_t grace;
    struct msg_env_rotate_key m = {0};
    struct sm_env env;
    err_t rc;

    if (!sm_env_decode(req, &msg_env_rotate_key_form, &m, &m.id, SM_ID_REQUIRED))
        return OK;
    if (msg_raw_uint(m.grace_ms, SM_GRACE_MS_DEFAULT, &grace) != OK || grace > SM_GRACE_MS_MAX) {
        (void)bus_reply_err(req, ERR_INVAL, "grace_ms must be an integer of at most 366 days");
        return OK;
    }
    rc = sm_id_copy(m.id, id) ? sm_store_env_get(&a->pg, id, &env) : ERR_NOTFOUND;
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
        return OK;
    }
    if (rc != OK) {
        actor_reply_store_err(req, "env.rotate_key", rc);
        return OK;
    }
    LOG_INFO("env.key_rotated",
             "new key for environment %s; the old one stays valid for %" PRIu64 " ms", env.id,
             grace);
    sm_reply_env(req, &env, -1);
    return OK;
}

/* ---- env.bootstrap ---- */

err_t sm_on_env_bootstrap(struct actor *a, struct bus_req *req)
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
        return OK;
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
        actor_reply_store_err(req, "env.bootstrap", rc == ERR_NOTFOUND ? ERR_INTERNAL : rc);
        return OK;
    }
    if (env.archived) {
        (void)bus_reply_err(req, ERR_CONFLICT,
                            "the development environment of default/default is archived");
        return OK;
    }
    if (created)
        LOG_INFO("env.created", "created DEVELOPMENT environment %s in default/default", env.id);
    sm_reply_env(req, &env, created ? 1 : 0);
    return OK;
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

err_t sm_on_env_list(struct actor *a, struct bus_req *req)
{
    struct sm_list_ctx ctx = {.n = 0};
    struct mp_writer envs;
    err_t rc;

    mp_writer_init(&ctx.w);
    rc = sm_store_env_list(&a->pg, sm_list_one, &ctx);
    if (rc != OK) {
        mp_writer_fini(&ctx.w);
        actor_reply_store_err(req, "env.list", rc);
        return OK;
    }
    /* the array's length is known only now: header first, then the entries as they are */
    mp_writer_init(&envs);
    mp_put_array(&envs, ctx.n);
    if (ctx.n > 0)
        mp_put_raw(&envs, mp_writer_data(&ctx.w), mp_writer_len(&ctx.w));
    msg_raw_done(&ctx.w, &envs);
    struct msg_env_list_reply m = {msg_raw_of(&envs)};
    (void)bus_reply_msg(req, &msg_env_list_reply_form, &m, &envs);
    mp_writer_fini(&envs);
    return OK;
}
