/*
 * h_snapshot.c - a session's chat snapshot without an object store: PUT/GET
 * /api/v1/sessions/:session/snapshot-url hand out a presigned URL (the
 * contract's §15, what the SDK's chat.agent writes after each turn and reads
 * at boot), and that URL, /api/v1/sessions/:session/snapshot, takes or gives
 * the document itself. The session-manager keeps it in PostgreSQL
 * (session.blob_put / session.blob_get), so every node sees it.
 *
 * A presigned URL carries its environment, operation and expiry, and an
 * HMAC-SHA256 of them and the session under the environment's signing key:
 * it needs no credential, is good for one operation on one session until it
 * expires (TETHER_GW_SNAPSHOT_URL_TTL), and dies with a key rotation. Wrong,
 * expired or tampered URLs are 403; a snapshot never written is 404 (the SDK
 * then boots without one).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "handlers.h"
#include "mem.h"
#include "msg.h"
#include "msg_session.h"
#include "sessref.h"
#include "streams_int.h" /* gw_parse_u64 */

#define GW_SNAPSHOT_TYPE_MAX 255

/* What a call of these routes carries between its steps (c->state). */
struct gw_snap {
    bool put;
    char friendly[128];
    char sig[65];
    uint64_t expires_s;
};

static struct gw_snap *gw_snap_of(struct gw_call *c)
{
    if (!c->state)
        c->state = xcalloc(1, sizeof(struct gw_snap));
    return c->state;
}

static bool gw_is_put(struct gw_call *c)
{
    return h2o_memis(c->req->method.base, c->req->method.len, H2O_STRLIT("PUT"));
}

/* The URL's signature, in lowercase hex (65 bytes with the NUL); false when it cannot be made. */
static bool gw_snap_sign(const char *key, bool put, const char *env, const char *friendly,
                         uint64_t expires_s, char out[65])
{
    char msg[512];
    int m = snprintf(msg, sizeof(msg), "tether-snapshot\n%s\n%s\n%s\n%" PRIu64, put ? "put" : "get",
                     env, friendly, expires_s);
    out[0] = '\0';
    return m > 0 && (size_t)m < sizeof(msg) && gw_hmac_hex(key, msg, (size_t)m, out);
}

/* ---- PUT/GET /api/v1/sessions/:session/snapshot-url ---- */

static void gw_snapurl_on_session(void *arg, err_t rc, const struct envelope *env)
{
    static const char *const rsuper[] = {"read:sessions", "read:all", "admin"};
    static const char *const wsuper[] = {"write:sessions", "write:all", "admin"};
    struct gw_call *c = arg;
    struct gw_snap *sn = c->state;
    struct slice s;
    char base[512], url[1400];
    if (!gw_session_reply(c, rc, env, &s, "Not found", GW_NO_RETRY, "session.get"))
        return;
    if (!gw_session_authorize(c, s, sn->put ? "write" : "read", sn->put ? wsuper : rsuper, true))
        return;
    if (!gw_sess_str(s, "friendly_id", sn->friendly, sizeof(sn->friendly)) || !sn->friendly[0]) {
        gw_respond_err(c, ERR_PROTO, "session.get");
        return;
    }
    sn->expires_s = clock_wall_ms() / 1000 + (uint64_t)c->gw->gw.snapshot_url_ttl_ms / 1000;
    if (!gw_snap_sign(c->auth.env.signing_key, sn->put, c->auth.env.id, sn->friendly, sn->expires_s,
                      sn->sig)) {
        gw_respond_err(c, ERR_INTERNAL, "could not sign the snapshot URL");
        return;
    }
    gw_public_base(c, base, sizeof(base));
    snprintf(url, sizeof(url),
             "%s/api/v1/sessions/%s/snapshot?env=%s&op=%s&expires=%" PRIu64 "&sig=%s", base,
             sn->friendly, c->auth.env.id, sn->put ? "put" : "get", sn->expires_s, sn->sig);
    gw_respond_json(c, 200, json_pack("{s:s}", "presignedUrl", url), 0);
}

void gw_on_snapshot_url(struct gw_call *c)
{
    gw_snap_of(c)->put = gw_is_put(c);
    err_t rc = gw_session_lookup_cached(c, gw_snapurl_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}

/* ---- PUT/GET /api/v1/sessions/:session/snapshot: the presigned URL ---- */

static void gw_snap_on_put(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    (void)env;
    if (rc == ERR_NOTFOUND)
        gw_respond_error(c, 404, "Not found", GW_NO_RETRY);
    else if (rc == ERR_TOOBIG)
        gw_respond_error(c, 413, "A snapshot holds at most 2 MiB", GW_NO_RETRY);
    else if (rc != OK)
        gw_respond_err(c, rc, "session.blob_put");
    else
        gw_respond_json(c, 200, json_object(), 0);
}

static void gw_snap_on_get(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct mp_reader v;
    struct slice type, body;
    char ct[GW_SNAPSHOT_TYPE_MAX + 1] = "application/octet-stream";
    if (rc == ERR_NOTFOUND) {
        gw_respond_error(c, 404, "Not found", GW_NO_RETRY);
        return;
    }
    if (rc != OK) {
        gw_respond_err(c, rc, "session.blob_get");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "body", &v) != OK || mp_read_bin(&v, &body) != OK) {
        gw_respond_err(c, ERR_PROTO, "session.blob_get");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "content_type", &v) == OK &&
        mp_read_str(&v, &type) == OK && type.n > 0)
        (void)slice_copy(type, ct, sizeof(ct));
    gw_respond_bytes(c, 200, ct, body.p, body.n);
}

static void gw_snap_after_env(struct gw_call *c, int status, const char *error)
{
    struct gw_snap *sn = c->state;
    char want[65];
    struct mp_writer w;
    err_t rc;
    (void)error;
    if (status == 503) {
        gw_respond_err(c, ERR_UNAVAIL, "env.get");
        return;
    }
    /* an unknown environment reads as a bad signature: the URL says nothing more */
    if (status != 0 ||
        !gw_snap_sign(c->auth.env.signing_key, sn->put, c->auth.env.id, c->params.session,
                      sn->expires_s, want) ||
        strlen(sn->sig) != 64 || CRYPTO_memcmp(want, sn->sig, 64) != 0) {
        gw_respond_error(c, 403, "The snapshot URL's signature does not match", GW_NO_RETRY);
        return;
    }
    mp_writer_init(&w);
    if (sn->put) {
        char ct[GW_SNAPSHOT_TYPE_MAX + 1] = "application/octet-stream";
        ssize_t i = h2o_find_header(&c->req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (i >= 0 && c->req->headers.entries[i].value.len > 0 &&
            c->req->headers.entries[i].value.len <= GW_SNAPSHOT_TYPE_MAX &&
            !memchr(c->req->headers.entries[i].value.base, '\0',
                    c->req->headers.entries[i].value.len))
            snprintf(ct, sizeof(ct), "%.*s", (int)c->req->headers.entries[i].value.len,
                     c->req->headers.entries[i].value.base);
        struct msg_session_blob_put m = {
            .env_id = msg_str(c->auth.env.id),
            .ref = msg_str(c->params.session),
            .name = msg_str(GW_SNAPSHOT_NAME),
            .content_type = msg_str(ct),
            .body = c->req->entity.base ? (struct slice){c->req->entity.base, c->req->entity.len}
                                        : (struct slice){"", 0},
        };
        msg_encode(&msg_session_blob_put_form, &w, &m);
    } else {
        struct msg_session_blob_get m = {msg_str(c->auth.env.id), msg_str(c->params.session),
                                         msg_str(GW_SNAPSHOT_NAME)};
        msg_encode(&msg_session_blob_get_form, &w, &m);
    }
    rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_SESSION_MANAGER,
                         sn->put ? MSG_SESSION_BLOB_PUT : MSG_SESSION_BLOB_GET, mp_writer_data(&w),
                         mp_writer_len(&w), sn->put ? gw_snap_on_put : gw_snap_on_get);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, sn->put ? "session.blob_put" : "session.blob_get");
}

void gw_on_snapshot(struct gw_call *c)
{
    struct gw_snap *sn = gw_snap_of(c);
    char env[64], op[8], expires[24];
    uint64_t e = 0;
    sn->put = gw_is_put(c);
    if (!gw_query(c->req, "env", env, sizeof(env)) || !gw_query(c->req, "op", op, sizeof(op)) ||
        !gw_query(c->req, "expires", expires, sizeof(expires)) ||
        !gw_query(c->req, "sig", sn->sig, sizeof(sn->sig)) || !env[0]) {
        gw_respond_error(c, 403, "A snapshot URL needs env, op, expires and sig", GW_NO_RETRY);
        return;
    }
    if (!gw_parse_u64(expires, strlen(expires), &e))
        e = 0; /* refused below, as an expired URL */
    if (strcmp(op, sn->put ? "put" : "get") != 0) {
        gw_respond_error(c, 403, "This snapshot URL is for another method", GW_NO_RETRY);
        return;
    }
    if (e == 0 || e <= clock_wall_ms() / 1000) {
        gw_respond_error(c, 403, "The snapshot URL has expired", GW_NO_RETRY);
        return;
    }
    sn->expires_s = e;
    gw_auth_env(c, env, gw_snap_after_env);
}
