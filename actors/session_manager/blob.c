/*
 * blob.c - session.blob_put and session.blob_get: the small documents a
 * session keeps for its agent (the SDK's chat snapshot), one per name, in
 * PostgreSQL (table session_blobs, gone with the session). They run on the
 * non-blocking pool (a->pga) and answer from its completion, so a 2 MiB write
 * never holds up the key lookups this actor also serves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "mem.h"
#include "msg.h"
#include "msg_session.h"
#include "sm.h"

#define SM_BLOB_MAX (2u << 20)
#define SM_BLOB_NAME_MAX 64
#define SM_BLOB_TYPE_MAX 255

/* s into buf (cap bytes, 1..cap-1 long, no NUL); false otherwise. */
static bool sm_blob_str(struct slice s, char *buf, size_t cap)
{
    return s.n > 0 && !memchr(s.p, '\0', s.n) && slice_copy(s, buf, cap) == OK;
}

static bool sm_blob_name_ok(const char *name)
{
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
              *p == '-'))
            return false;
    return true;
}

/* env_id, ref and name of a request; replies itself and returns false when unusable. */
static bool sm_blob_args(struct bus_req *req, struct slice env_id, struct slice ref_id,
                         struct slice name_s, char *env, char *ref, char *name)
{
    if (!sm_blob_str(env_id, env, SM_ID_MAX) || !sm_blob_str(ref_id, ref, SM_ID_MAX + 16) ||
        strncmp(ref, "session_", 8) != 0 || !sm_blob_str(name_s, name, SM_BLOB_NAME_MAX + 1) ||
        !sm_blob_name_ok(name)) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "env_id, ref (a friendly session id) and name (1-64 of [a-z0-9._-]) "
                            "are required");
        return false;
    }
    return true;
}

/* ---- session.blob_put ---- */

static void sm_blob_on_put(void *arg, err_t rc, const PGresult *res)
{
    struct bus_req *req = arg;
    struct mp_writer w;
    if (rc != OK) {
        actor_reply_store_err(req, "session.blob_put", rc);
        return;
    }
    if (PQntuples(res) < 1) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "session not found");
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "size", strtoull(PQgetvalue(res, 0, 0), NULL, 10));
    if (mp_writer_err(&w) == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, NULL);
    mp_writer_fini(&w);
}

err_t sm_on_blob_put(struct actor *a, struct bus_req *req)
{
    static const char digits[] = "0123456789abcdef";
    char env[SM_ID_MAX], ref[SM_ID_MAX + 16], name[SM_BLOB_NAME_MAX + 1],
        type[SM_BLOB_TYPE_MAX + 1];
    const struct envelope *e = bus_req_env(req);
    struct msg_session_blob_put m;
    if (msg_decode(&msg_session_blob_put_form, e->body.p, e->body.n, &m) != OK ||
        !sm_blob_str(m.content_type, type, sizeof(type))) {
        (void)bus_reply_err(req, ERR_INVAL,
                            "env_id, ref, name, content_type (1-255 bytes) and body (bin) are "
                            "required");
        return OK;
    }
    if (!sm_blob_args(req, m.env_id, m.ref, m.name, env, ref, name))
        return OK;
    struct slice body = m.body;
    if (body.n > SM_BLOB_MAX) {
        (void)bus_reply_err(req, ERR_TOOBIG, "a session's document holds at most 2 MiB");
        return OK;
    }
    /* bytea's hex input form: text parameters only on the pool */
    char *hex = xmalloc(3 + 2 * body.n);
    hex[0] = '\\';
    hex[1] = 'x';
    for (size_t i = 0; i < body.n; i++) {
        hex[2 + 2 * i] = digits[(unsigned char)body.p[i] >> 4];
        hex[3 + 2 * i] = digits[(unsigned char)body.p[i] & 15];
    }
    hex[2 + 2 * body.n] = '\0';
    const char *params[] = {env, ref, name, type, hex};
    err_t rc = db_pg_async_exec(a->pga,
                                "INSERT INTO session_blobs (session_id, name, content_type, body)"
                                " SELECT s.id, $3, $4, $5::bytea FROM sessions s"
                                " WHERE s.runtime_environment_id = $1 AND s.friendly_id = $2"
                                " ON CONFLICT (session_id, name) DO UPDATE SET"
                                " content_type = EXCLUDED.content_type, body = EXCLUDED.body,"
                                " updated_at = now()"
                                " RETURNING octet_length(body)",
                                5, params, sm_blob_on_put, req);
    free(hex);
    return rc;
}

/* ---- session.blob_get ---- */

static void sm_blob_on_get(void *arg, err_t rc, const PGresult *res)
{
    struct bus_req *req = arg;
    struct mp_writer w;
    size_t n = 0;
    if (rc != OK) {
        actor_reply_store_err(req, "session.blob_get", rc);
        return;
    }
    if (PQntuples(res) < 1) {
        (void)bus_reply_err(req, ERR_NOTFOUND, "no such document");
        return;
    }
    unsigned char *body = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &n);
    if (!body) {
        (void)bus_reply_err(req, ERR_NOMEM, NULL);
        return;
    }
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "content_type", PQgetvalue(res, 0, 0));
    mp_put_str(&w, "body");
    mp_put_bin(&w, body, n);
    mp_put_kv_uint(&w, "updated_at_ms", strtoull(PQgetvalue(res, 0, 2), NULL, 10));
    PQfreemem(body);
    if (mp_writer_err(&w) == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, NULL);
    mp_writer_fini(&w);
}

err_t sm_on_blob_get(struct actor *a, struct bus_req *req)
{
    char env[SM_ID_MAX], ref[SM_ID_MAX + 16], name[SM_BLOB_NAME_MAX + 1];
    const struct envelope *e = bus_req_env(req);
    struct msg_session_blob_get m;
    err_t rc = msg_decode(&msg_session_blob_get_form, e->body.p, e->body.n, &m);
    if (rc != OK)
        m = (struct msg_session_blob_get){SLICE_NULL, SLICE_NULL, SLICE_NULL};
    if (!sm_blob_args(req, m.env_id, m.ref, m.name, env, ref, name))
        return OK;
    const char *params[] = {env, ref, name};
    rc = db_pg_async_exec(a->pga,
                          "SELECT b.content_type, b.body,"
                          " (extract(epoch FROM b.updated_at) * 1000)::bigint"
                          " FROM session_blobs b JOIN sessions s ON s.id = b.session_id"
                          " WHERE s.runtime_environment_id = $1 AND s.friendly_id = $2"
                          " AND b.name = $3",
                          3, params, sm_blob_on_get, req);
    return rc;
}
