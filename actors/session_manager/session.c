/*
 * session.c - the session.* handlers: create (idempotent upsert), get,
 * update (tags, metadata) and close (write-once).
 *
 * The gateway has validated every body against the contract and hands
 * JSON over as text; this actor checks sizes and shapes it depends on and
 * lets PostgreSQL parse the JSON (a malformed document is ERR_INVAL).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "msg.h"
#include "proc.h"
#include "sm.h"

#define SM_JSON_MAX (64u * 1024)

/* Copies a string field into buf; absent or nil gives "" and *present=false. */
static err_t sm_field(const struct envelope *env, const char *key, char *buf, size_t cap,
                      bool *present)
{
    struct mp_reader v;
    struct slice s;
    buf[0] = '\0';
    if (present)
        *present = false;
    if (env->body.n == 0 || mp_map_find(env->body.p, env->body.n, key, &v) != OK)
        return OK;
    if (mp_read_str_or_nil(&v, &s) != OK)
        return ERR_INVAL;
    if (!s.p)
        return OK;
    if (present)
        *present = true;
    return slice_copy(s, buf, cap) == OK ? OK : ERR_INVAL;
}

static bool sm_has_key(const struct envelope *env, const char *key)
{
    struct mp_reader v;
    return env->body.n && mp_map_find(env->body.p, env->body.n, key, &v) == OK;
}

static void sm_put_text_or_nil(struct mp_writer *w, const char *k, PGresult *r, int col)
{
    mp_put_str(w, k);
    if (PQgetisnull(r, 0, col))
        mp_put_nil(w);
    else
        mp_put_strn(w, PQgetvalue(r, 0, col), (size_t)PQgetlength(r, 0, col));
}

static void sm_put_u64(struct mp_writer *w, const char *k, PGresult *r, int col)
{
    mp_put_kv_uint(w, k, strtoull(PQgetvalue(r, 0, col), NULL, 10));
}

/* Writes row 0 of a SM_SESSION_COLS result as a session object. */
static void sm_session_write(struct mp_writer *w, PGresult *r)
{
    mp_put_map(w, 15);
    sm_put_text_or_nil(w, "id", r, 0);
    sm_put_text_or_nil(w, "friendly_id", r, 1);
    sm_put_text_or_nil(w, "external_id", r, 2);
    sm_put_text_or_nil(w, "type", r, 3);
    sm_put_text_or_nil(w, "task_identifier", r, 4);
    sm_put_text_or_nil(w, "trigger_config", r, 5);
    sm_put_text_or_nil(w, "tags", r, 6);
    sm_put_text_or_nil(w, "metadata", r, 7);
    sm_put_text_or_nil(w, "current_run_id", r, 8);
    sm_put_u64(w, "current_run_version", r, 9);
    sm_put_u64(w, "closed_at_ms", r, 10);
    sm_put_text_or_nil(w, "closed_reason", r, 11);
    sm_put_u64(w, "expires_at_ms", r, 12);
    sm_put_u64(w, "created_at_ms", r, 13);
    sm_put_u64(w, "updated_at_ms", r, 14);
}

/* Replies {session[, is_cached]} from a one-row result, ERR_NOTFOUND for none. */
static void sm_reply_session(struct bus_req *req, err_t rc, PGresult *r, int is_cached)
{
    struct mp_writer w;
    if (rc != OK) {
        actor_reply_store_err(req, "session", rc);
        return;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        bus_reply_err(req, ERR_NOTFOUND, "session not found");
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, is_cached >= 0 ? 2 : 1);
    mp_put_str(&w, "session");
    sm_session_write(&w, r);
    if (is_cached >= 0)
        mp_put_kv_bool(&w, "is_cached", is_cached);
    if (mp_writer_err(&w) == OK)
        bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        bus_reply_err(req, ERR_NOMEM, NULL);
    mp_writer_fini(&w);
    PQclear(r);
}

void sm_on_session_create(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    static char trigger_config[SM_JSON_MAX], tags[SM_JSON_MAX], metadata[SM_JSON_MAX];
    char env_id[SM_ID_MAX], org_id[SM_ID_MAX], project_id[SM_ID_MAX], env_type[SM_TYPE_MAX];
    char type[SM_KEY_MAX], ext[SM_KEY_MAX], task[SM_KEY_MAX];
    bool has_ext = false, has_meta = false, cached = false;
    struct mp_reader v;
    uint64_t exp_ms = 0;
    PGresult *r = NULL;

    if (sm_field(env, "env_id", env_id, sizeof(env_id), NULL) != OK ||
        sm_field(env, "org_id", org_id, sizeof(org_id), NULL) != OK ||
        sm_field(env, "project_id", project_id, sizeof(project_id), NULL) != OK ||
        sm_field(env, "env_type", env_type, sizeof(env_type), NULL) != OK ||
        sm_field(env, "type", type, sizeof(type), NULL) != OK ||
        sm_field(env, "external_id", ext, sizeof(ext), &has_ext) != OK ||
        sm_field(env, "task_identifier", task, sizeof(task), NULL) != OK ||
        sm_field(env, "trigger_config", trigger_config, sizeof(trigger_config), NULL) != OK ||
        sm_field(env, "tags", tags, sizeof(tags), NULL) != OK ||
        sm_field(env, "metadata", metadata, sizeof(metadata), &has_meta) != OK || !env_id[0] ||
        !type[0] || !task[0] || !trigger_config[0]) {
        bus_reply_err(req, ERR_INVAL, "malformed session.create");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "expires_at_ms", &v) == OK)
        (void)mp_read_uint(&v, &exp_ms);
    struct sm_session_new s = {
        .env_id = env_id,
        .org_id = org_id,
        .project_id = project_id,
        .env_type = env_type,
        .type = type,
        .external_id = has_ext ? ext : NULL,
        .task_identifier = task,
        .trigger_config = trigger_config,
        .tags = tags[0] ? tags : "[]",
        .metadata = has_meta ? metadata : NULL,
        .expires_at_ms = exp_ms,
    };
    err_t rc = sm_store_session_upsert(&a->pg, &s, &r, &cached);
    sm_reply_session(req, rc, r, cached);
}

void sm_on_session_get(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char env_id[SM_ID_MAX], key[SM_KEY_MAX];
    PGresult *r = NULL;
    if (sm_field(env, "env_id", env_id, sizeof(env_id), NULL) != OK ||
        sm_field(env, "ref", key, sizeof(key), NULL) != OK || !env_id[0] || !key[0]) {
        bus_reply_err(req, ERR_INVAL, "session.get needs env_id and ref");
        return;
    }
    err_t rc = sm_store_session_get(&a->pg, env_id, key, &r);
    sm_reply_session(req, rc, r, -1);
}

/* ---- the bus peers of session rows: the stream-broker's seals, session.changed events ---- */

static struct bus_peer *sm_broker;
static struct bus_pub *sm_events;

err_t sm_session_init(struct actor *a)
{
    err_t rc = bus_peer_open_actor(a->bus, "stream-broker", &sm_broker);
    if (rc != OK)
        return rc;
    return actor_events_open(a, &sm_events);
}

/* session.changed for row 0 of r: every gateway drops its cached copy (a latency path). */
static void sm_publish_changed(const char *env_id, PGresult *r)
{
    struct mp_writer w;
    if (!sm_events || PQntuples(r) == 0)
        return;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env_id", env_id);
    sm_put_text_or_nil(&w, "friendly_id", r, 1);
    sm_put_text_or_nil(&w, "external_id", r, 2);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_publish(sm_events, "session.changed", MSG_SESSION_CHANGED, mp_writer_data(&w),
                         mp_writer_len(&w));
    if (rc != OK)
        LOG_WARN("session.publish_failed", "could not publish session.changed: %s", err_str(rc));
    mp_writer_fini(&w);
}

void sm_on_session_update(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char env_id[SM_ID_MAX], key[SM_KEY_MAX];
    static char tags[SM_JSON_MAX], metadata[SM_JSON_MAX];
    bool has_tags = false, has_meta_val = false;
    PGresult *r = NULL;
    if (sm_field(env, "env_id", env_id, sizeof(env_id), NULL) != OK ||
        sm_field(env, "ref", key, sizeof(key), NULL) != OK ||
        sm_field(env, "tags", tags, sizeof(tags), &has_tags) != OK ||
        sm_field(env, "metadata", metadata, sizeof(metadata), &has_meta_val) != OK || !env_id[0] ||
        !key[0]) {
        bus_reply_err(req, ERR_INVAL, "malformed session.update");
        return;
    }
    /* metadata present as nil means "clear it"; absent means "leave it" */
    bool set_meta = sm_has_key(env, "metadata");
    err_t rc = sm_store_session_update(&a->pg, env_id, key, has_tags ? tags : NULL, set_meta,
                                       has_meta_val ? metadata : NULL, &r);
    if (rc == OK)
        sm_publish_changed(env_id, r);
    sm_reply_session(req, rc, r, -1);
}

/* A close whose row is written, waiting for the stream-broker's seal before it answers. */
struct sm_close {
    struct bus_req *req;
    PGresult *row;
};

static void sm_close_on_sealed(void *arg, err_t rc, const struct envelope *env)
{
    struct sm_close *cl = arg;
    (void)env;
    if (rc == OK) {
        sm_reply_session(cl->req, OK, cl->row, -1);
    } else {
        /* closed in PostgreSQL, not yet sealed: the close is idempotent, its retry seals */
        LOG_WARN("session.seal_failed", "a closed session's streams could not be sealed: %s",
                 err_str(rc));
        PQclear(cl->row);
        bus_reply_err(cl->req, ERR_UNAVAIL,
                      "the session is closed but its streams are not sealed yet; retry");
    }
    free(cl);
}

void sm_on_session_close(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char env_id[SM_ID_MAX], key[SM_KEY_MAX], reason[512];
    bool has_reason = false;
    PGresult *r = NULL;
    if (sm_field(env, "env_id", env_id, sizeof(env_id), NULL) != OK ||
        sm_field(env, "ref", key, sizeof(key), NULL) != OK ||
        sm_field(env, "reason", reason, sizeof(reason), &has_reason) != OK || !env_id[0] ||
        !key[0]) {
        bus_reply_err(req, ERR_INVAL, "malformed session.close");
        return;
    }
    err_t rc = sm_store_session_close(&a->pg, env_id, key, has_reason ? reason : NULL, &r);
    if (rc != OK || PQntuples(r) == 0) {
        sm_reply_session(req, rc, r, -1);
        return;
    }
    sm_publish_changed(env_id, r);
    /*
     * The answer waits for the seal: once a client has it, no gateway, whatever it caches,
     * gets an append into either stream (the stream-broker refuses them). Every close seals,
     * the first and any repeat, so a close answered 503 is completed by its retry.
     */
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env", env_id);
    /* the streams' addressing key: the external id when there is one (gateway/h_streams.c) */
    int kcol = PQgetisnull(r, 0, 2) || PQgetlength(r, 0, 2) == 0 ? 1 : 2;
    mp_put_str(&w, "key");
    mp_put_strn(&w, PQgetvalue(r, 0, kcol), (size_t)PQgetlength(r, 0, kcol));
    mp_put_str(&w, "reason");
    if (PQgetisnull(r, 0, 11))
        mp_put_nil(&w);
    else
        mp_put_strn(&w, PQgetvalue(r, 0, 11), (size_t)PQgetlength(r, 0, 11));
    struct sm_close *cl = xcalloc(1, sizeof(*cl));
    cl->req = req;
    cl->row = r;
    rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(sm_broker, MSG_STREAM_SEAL, mp_writer_data(&w), mp_writer_len(&w), NULL,
                      sm_close_on_sealed, cl);
    mp_writer_fini(&w);
    if (rc != OK)
        sm_close_on_sealed(cl, rc, NULL);
}
