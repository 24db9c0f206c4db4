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
#include "msg_list.h"
#include "msg_session.h"
#include "msg_stream.h"
#include "proc.h"
#include "sm.h"

#define SM_JSON_MAX (64u * 1024)

/* s as a C string in buf (msg_cstr), or NULL. */
static const char *sm_cstr(struct slice s, char *buf, size_t cap)
{
    return msg_cstr(s, buf, cap) ? buf : NULL;
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

err_t sm_on_session_create(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    static char trigger_config[SM_JSON_MAX], tags[SM_JSON_MAX], metadata[SM_JSON_MAX];
    char env_id[SM_ID_MAX], org_id[SM_ID_MAX], project_id[SM_ID_MAX], env_type[SM_KEY_MAX];
    char type[SM_KEY_MAX], ext[SM_KEY_MAX], task[SM_KEY_MAX];
    struct msg_session_create m;
    bool cached = false;
    PGresult *r = NULL;

    err_t rc = msg_decode(&msg_session_create_form, env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    struct sm_session_new s = {
        .env_id = sm_cstr(m.env_id, env_id, sizeof(env_id)),
        .org_id = m.org_id.p ? sm_cstr(m.org_id, org_id, sizeof(org_id)) : "",
        .project_id = m.project_id.p ? sm_cstr(m.project_id, project_id, sizeof(project_id)) : "",
        .env_type = m.env_type.p ? sm_cstr(m.env_type, env_type, sizeof(env_type)) : "",
        .type = sm_cstr(m.type, type, sizeof(type)),
        .external_id = m.external_id.p ? sm_cstr(m.external_id, ext, sizeof(ext)) : NULL,
        .task_identifier = sm_cstr(m.task_identifier, task, sizeof(task)),
        .trigger_config = sm_cstr(m.trigger_config, trigger_config, sizeof(trigger_config)),
        .tags = m.tags.n ? sm_cstr(m.tags, tags, sizeof(tags)) : "[]",
        .metadata = m.metadata.p ? sm_cstr(m.metadata, metadata, sizeof(metadata)) : NULL,
        .expires_at_ms = m.expires_at_ms,
    };
    if (!s.env_id || !s.org_id || !s.project_id || !s.env_type || !s.type ||
        (m.external_id.p && !s.external_id) || !s.task_identifier || !s.trigger_config || !s.tags ||
        (m.metadata.p && !s.metadata))
        return ERR_INVAL; /* a NUL inside a string */
    rc = sm_store_session_upsert(&a->pg, &s, &r, &cached);
    sm_reply_session(req, rc, r, cached);
    return OK;
}

err_t sm_on_session_get(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char env_id[SM_ID_MAX], key[SM_KEY_MAX];
    struct msg_session_get m;
    PGresult *r = NULL;
    err_t rc = msg_decode(&msg_session_get_form, env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    if (!sm_cstr(m.env_id, env_id, sizeof(env_id)) || !sm_cstr(m.ref, key, sizeof(key)))
        return ERR_INVAL;
    rc = sm_store_session_get(&a->pg, env_id, key, &r);
    sm_reply_session(req, rc, r, -1);
    return OK;
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
    struct slice ids[2]; /* friendly_id, external_id: columns 1 and 2, nil when NULL */
    for (int i = 0; i < 2; i++)
        ids[i] = PQgetisnull(r, 0, 1 + i)
                     ? SLICE_NULL
                     : (struct slice){PQgetvalue(r, 0, 1 + i), (size_t)PQgetlength(r, 0, 1 + i)};
    struct msg_session_changed m = {msg_str(env_id), ids[0], ids[1]};
    mp_writer_init(&w);
    msg_encode(&msg_session_changed_form, &w, &m);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_publish(sm_events, "session.changed", MSG_SESSION_CHANGED, mp_writer_data(&w),
                         mp_writer_len(&w));
    if (rc != OK)
        LOG_WARN("session.publish_failed", "could not publish session.changed: %s", err_str(rc));
    mp_writer_fini(&w);
}

err_t sm_on_session_update(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char env_id[SM_ID_MAX], key[SM_KEY_MAX];
    static char tags[SM_JSON_MAX], metadata[SM_JSON_MAX];
    struct msg_session_update m;
    PGresult *r = NULL;
    err_t rc = msg_decode(&msg_session_update_form, env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    if (!sm_cstr(m.env_id, env_id, sizeof(env_id)) || !sm_cstr(m.ref, key, sizeof(key)) ||
        (m.tags.p && !sm_cstr(m.tags, tags, sizeof(tags))) ||
        (m.metadata.p && !sm_cstr(m.metadata, metadata, sizeof(metadata))))
        return ERR_INVAL;
    /* metadata present as nil means "clear it"; absent means "leave it" */
    rc = sm_store_session_update(&a->pg, env_id, key, m.tags.p ? tags : NULL, m.metadata_given,
                                 m.metadata.p ? metadata : NULL, &r);
    if (rc == OK)
        sm_publish_changed(env_id, r);
    sm_reply_session(req, rc, r, -1);
    return OK;
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

err_t sm_on_session_close(struct actor *a, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    char env_id[SM_ID_MAX], key[SM_KEY_MAX], reason[512];
    struct msg_session_close m;
    PGresult *r = NULL;
    err_t rc = msg_decode(&msg_session_close_form, env->body.p, env->body.n, &m);
    if (rc != OK)
        return rc;
    if (!sm_cstr(m.env_id, env_id, sizeof(env_id)) || !sm_cstr(m.ref, key, sizeof(key)) ||
        (m.reason.p && !sm_cstr(m.reason, reason, sizeof(reason))))
        return ERR_INVAL;
    rc = sm_store_session_close(&a->pg, env_id, key, m.reason.p ? reason : NULL, &r);
    if (rc != OK || PQntuples(r) == 0) {
        sm_reply_session(req, rc, r, -1);
        return OK;
    }
    sm_publish_changed(env_id, r);
    /*
     * The answer waits for the seal: once a client has it, no gateway, whatever it caches,
     * gets an append into either stream (the stream-broker refuses them). Every close seals,
     * the first and any repeat, so a close answered 503 is completed by its retry.
     */
    /* the streams' addressing key: the external id when there is one (gateway/h_streams.c) */
    int kcol = PQgetisnull(r, 0, 2) || PQgetlength(r, 0, 2) == 0 ? 1 : 2;
    struct msg_stream_seal seal = {
        .env = msg_str(env_id),
        .key = {PQgetvalue(r, 0, kcol), (size_t)PQgetlength(r, 0, kcol)},
        .reason = PQgetisnull(r, 0, 11)
                      ? SLICE_NULL /* written as nil */
                      : (struct slice){PQgetvalue(r, 0, 11), (size_t)PQgetlength(r, 0, 11)},
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_stream_seal_form, &w, &seal);
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
    return OK;
}
