/*
 * h_waitpoint_tokens.c - waitpoint tokens (docs/waitpoint-registry.md): the
 * waitpoints a run waits on until someone completes them.
 *
 *   POST /api/v1/waitpoints/tokens                   wait.createToken
 *   GET  /api/v1/waitpoints/tokens                   wait.listTokens
 *   GET  /api/v1/waitpoints/tokens/:waitpoint        wait.retrieveToken
 *   POST /api/v1/waitpoints/tokens/:waitpoint/complete  wait.completeToken
 *   POST /api/v1/waitpoints/tokens/:waitpoint/callback/:hash  a token's url (no credential)
 *
 * Blocking a run on a token is h_waitpoints.c's, as is what every waitpoint
 * route shares (waitpoints_int.h). A token's url is its callback, signed with
 * an HMAC of its id (gw_wp_hash). Outputs are never logged.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "gw.h"
#include "handlers.h"
#include "mp.h"
#include "msg.h"
#include "msg_raw.h"
#include "msg_wp.h"
#include "waitpoints_int.h"

#define GW_WP_LIST_MAX 100

static const char *const gw_wp_write_super[] = {"write:waitpoints", "write:all", "admin"};
static const char *const gw_wp_read_super[] = {"read:waitpoints", "read:all", "admin"};

/* The public status of a token: WAITING while PENDING. */
static const char *gw_wp_status(const char *s)
{
    return strcmp(s, "PENDING") == 0 ? "WAITING" : s;
}

/*
 * The callback hash of a token: HMAC-SHA256 of its friendly id under the environment's
 * current signing key, in lowercase hex (65 bytes with the NUL). false when it cannot be made.
 */
static bool gw_wp_hash(const char *key, const char *id, char out[65])
{
    return gw_hmac_hex(key, id, strlen(id), out);
}

/*
 * A token's url: its callback, POST <base>/api/v1/waitpoints/tokens/<id>/callback/<hash>,
 * which completes it without a credential (gw_on_token_callback).
 */
static json_t *gw_wp_url(struct gw_call *c, const char *id)
{
    char base[512], url[1024], hash[65];
    gw_public_base(c, base, sizeof(base));
    if (!gw_wp_hash(c->auth.env.signing_key, id, hash))
        return json_null();
    snprintf(url, sizeof(url), "%s/api/v1/waitpoints/tokens/%s/callback/%s", base, id, hash);
    return json_string(url);
}

/* A waitpoint object as the SDK's WaitpointTokenItem (+ output fields when with_output). */
static json_t *gw_wp_token_json(struct gw_call *c, struct slice m, bool with_output)
{
    char id[128], status[32], idem[GW_WP_IDEM_MAX + 1], type[128];
    gw_wp_str(m, "id", id, sizeof(id));
    gw_wp_str(m, "status", status, sizeof(status));
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "url", gw_wp_url(c, id));
    json_object_set_new(o, "status", json_string(gw_wp_status(status)));
    gw_wp_set_date(o, "completedAt", gw_wp_u64(m, "completed_at_ms"));
    gw_wp_set_date(o, "timeoutAt", gw_wp_u64(m, "timeout_at_ms"));
    if (gw_wp_str(m, "idempotency_key", idem, sizeof(idem)))
        json_object_set_new(o, "idempotencyKey", json_string(idem));
    gw_wp_set_date(o, "idempotencyKeyExpiresAt", gw_wp_u64(m, "idempotency_key_expires_at_ms"));
    struct mp_reader v;
    struct slice tags;
    json_t *t = NULL;
    if (mp_map_find(m.p, m.n, "tags", &v) == OK && mp_read_str(&v, &tags) == OK)
        t = json_loadb(tags.p, tags.n, 0, NULL);
    json_object_set_new(o, "tags", json_is_array(t) ? t : (json_decref(t), json_array()));
    gw_wp_set_date(o, "createdAt", gw_wp_u64(m, "created_at_ms"));
    if (with_output) {
        struct slice out;
        if (mp_map_find(m.p, m.n, "output", &v) == OK && mp_read_str(&v, &out) == OK)
            json_object_set_new(o, "output", json_stringn(out.p, out.n));
        if (gw_wp_str(m, "output_type", type, sizeof(type)))
            json_object_set_new(o, "outputType", json_string(type));
        json_object_set_new(o, "outputIsError", json_boolean(gw_wp_bool(m, "output_is_error")));
    }
    return o;
}

/* ---- tokens ---- */

static void gw_token_on_created(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_wp_reply r;
    char id[128];
    if (!gw_wp_created(c, rc, env, &r, id, sizeof(id)))
        return;
    /* the token the SDK hands to whoever completes it: write:waitpoints:<id> for 24 h */
    char scope[160];
    snprintf(scope, sizeof(scope), "write:waitpoints:%s", id);
    const char *scopes[] = {scope};
    char *jwt = gw_jwt_mint(c->auth.env.signing_key, c->auth.env.id, scopes, 1, 86400);
    if (jwt) {
        gw_add_header(c, "x-trigger-jwt", jwt);
        free(jwt);
    }
    json_t *b = json_pack("{s:s,s:b}", "id", id, "isCached", r.is_cached);
    json_object_set_new(b, "url", gw_wp_url(c, id));
    gw_respond_json(c, 200, b, 0);
}

void gw_on_token_create(struct gw_call *c)
{
    struct gw_wp_state *st = gw_wp_st(c);
    char why[2048];
    struct gw_resource res = {"waitpoints", NULL, 0};
    if (!gw_authorize(&c->auth, "write", &res, 1, gw_wp_write_super, 3, why, sizeof(why))) {
        gw_respond_forbidden(c, why);
        return;
    }
    snprintf(st->kind, sizeof(st->kind), "MANUAL");
    if (!gw_wp_common(c, c->body, "timeout"))
        return;
    gw_wp_create(c, NULL, gw_token_on_created);
}

static bool gw_token_authorize(struct gw_call *c, const char *action)
{
    const char *ids[] = {c->params.waitpoint};
    struct gw_resource res = {"waitpoints", ids, 1};
    char why[2048];
    if (gw_authorize(&c->auth, action, &res, 1,
                     action[0] == 'w' ? gw_wp_write_super : gw_wp_read_super, 3, why, sizeof(why)))
        return true;
    gw_respond_forbidden(c, why);
    return false;
}

static void gw_token_on_get(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_wp_reply r;
    if (gw_wp_failed(c, rc, env, "wp.get"))
        return;
    if (!gw_wp_reply(env, &r, NULL, 0)) {
        gw_respond_err(c, ERR_PROTO, "wp.get");
        return;
    }
    gw_respond_json(c, 200, gw_wp_token_json(c, r.waitpoint, true), 0);
}

/* wp.get of the URL's token: of the caller's environment, or of any (the callback). */
static void gw_wp_token_get(struct gw_call *c, bool any_env, bus_reply_fn cb)
{
    struct msg_wp_get m = {
        .env_id = msg_str(any_env ? NULL : c->auth.env.id),
        .id = msg_str(c->params.waitpoint),
        .kind = msg_str("MANUAL"),
        .any_env = any_env,
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_wp_get_form, &w, &m);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_GET, &w, cb);
}

void gw_on_token_get(struct gw_call *c)
{
    if (!gw_token_authorize(c, "read"))
        return;
    gw_wp_token_get(c, false, gw_token_on_get);
}

/* wp.complete of the URL's token with output (JSON text, NULL: none). */
static void gw_wp_token_complete(struct gw_call *c, const char *output, bus_reply_fn cb)
{
    struct msg_wp_complete m = {
        .env_id = msg_str(c->auth.env.id),
        .id = msg_str(c->params.waitpoint),
        .output = msg_str(output),
        .output_type = msg_str("application/json"),
    };
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_wp_complete_form, &w, &m);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_COMPLETE, &w, cb);
}

static void gw_token_on_completed(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_failed(c, rc, env, "wp.complete"))
        return;
    gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
}

void gw_on_token_complete(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *o = NULL, *data = NULL;
    if (!gw_token_authorize(c, "write"))
        return;
    if (n) {
        o = json_loadb(req->entity.base, n, JSON_DECODE_ANY, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            gw_respond_error(c, 400,
                             o ? "Expected object, received something else" : "Invalid JSON", 0);
            return;
        }
        data = json_object_get(o, "data");
    }
    /* the output is the data as JSON text: the SDK parses it back (outputType JSON) */
    char *text =
        data && !json_is_null(data) ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    gw_wp_token_complete(c, text, gw_token_on_completed);
    free(text);
    json_decref(o);
}

/* ---- POST /api/v1/waitpoints/tokens/:waitpoint/callback/:hash ---- */

/*
 * A token's url is a capability: whoever holds it completes the token with the request body
 * as its output (any JSON value; a body that is no JSON is {}), once. The route reads no
 * credential: the waitpoint is found by its id alone (wp.get any_env), its environment's
 * signing key recomputes the hash, compared in constant time. 404 for no such token, 401 for
 * a wrong hash, 413 over the route's cap; a token already completed or timed out answers
 * success and changes nothing (write-once).
 */
static void gw_callback_on_completed(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    if (gw_wp_failed(c, rc, env, "wp.complete"))
        return;
    gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
}

static void gw_callback_on_env(struct gw_call *c, int status, const char *error)
{
    struct gw_wp_state *st = gw_wp_st(c);
    char hash[65];
    if (status == 404) {
        gw_respond_error(c, 404, GW_WP_NOT_FOUND, 0);
        return;
    }
    if (status) {
        if (status == 503)
            gw_add_header(c, "x-should-retry", "true");
        gw_respond_error(c, status, error, 0);
        return;
    }
    if (!gw_wp_hash(c->auth.env.signing_key, c->params.waitpoint, hash) ||
        CRYPTO_memcmp(hash, c->params.hash, 64) != 0) {
        gw_respond_error(c, 401, "Invalid URL, hash doesn't match", GW_NO_RETRY);
        return;
    }
    if (strcmp(st->kind, "PENDING") != 0) {
        gw_respond_json(c, 200, json_pack("{s:b}", "success", 1), 0);
        return;
    }
    h2o_req_t *req = c->req;
    size_t n = req && req->entity.base ? req->entity.len : 0;
    json_t *body = n ? json_loadb(req->entity.base, n, JSON_DECODE_ANY, NULL) : NULL;
    if (!body)
        body = json_object(); /* no JSON: {} (and freed below like a parsed body) */
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (!text) {
        gw_respond_err(c, ERR_NOMEM, "callback output");
        return;
    }
    gw_wp_token_complete(c, text, gw_callback_on_completed);
    free(text);
}

static void gw_callback_on_get(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_wp_state *st = gw_wp_st(c);
    struct msg_wp_reply r;
    char env_id[64];
    if (gw_wp_failed(c, rc, env, "wp.get"))
        return;
    if (!gw_wp_reply(env, &r, NULL, 0) ||
        !gw_wp_str(r.waitpoint, "env_id", env_id, sizeof(env_id))) {
        gw_respond_err(c, ERR_PROTO, "wp.get");
        return;
    }
    gw_wp_str(r.waitpoint, "status", st->kind, sizeof(st->kind)); /* kept: PENDING or not */
    gw_auth_env(c, env_id, gw_callback_on_env);
}

void gw_on_token_callback(struct gw_call *c)
{
    const char *h = c->params.hash;
    /* the hash's shape is checked before anything is looked up */
    if (strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64) {
        gw_respond_error(c, 401, "Invalid URL, hash doesn't match", GW_NO_RETRY);
        return;
    }
    gw_wp_token_get(c, true, gw_callback_on_get);
}

/* The value of ?name= (percent-decoded), or false. */
static bool gw_wp_query(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    if (!req || req->query_at == SIZE_MAX)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t o = 0;
            for (const char *v = q + nl + 1; v < e && o + 1 < cap; v++) {
                if (*v == '%' && e - v >= 3 && isxdigit((unsigned char)v[1]) &&
                    isxdigit((unsigned char)v[2])) {
                    char hex[3] = {v[1], v[2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    v += 2;
                } else {
                    out[o++] = *v == '+' ? ' ' : *v;
                }
            }
            out[o] = '\0';
            return true;
        }
        q = e + 1;
    }
    return false;
}

static void gw_token_on_list(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_wp_list_reply r;
    struct mp_reader v;
    uint32_t n;
    if (gw_wp_failed(c, rc, env, "wp.list"))
        return;
    if (msg_decode(&msg_wp_list_reply_form, env->body.p, env->body.n, &r) != OK ||
        msg_raw_array(r.waitpoints, &v, &n) != OK) {
        gw_respond_err(c, ERR_PROTO, "wp.list");
        return;
    }
    json_t *data = json_array(), *last = NULL;
    for (uint32_t i = 0; i < n; i++) {
        struct slice m;
        if (mp_skip(&v, &m) != OK)
            break;
        json_t *item = gw_wp_token_json(c, m, false);
        last = json_object_get(item, "id");
        json_array_append_new(data, item);
    }
    json_t *pag = json_object();
    if (r.more && last)
        json_object_set(pag, "next", last);
    gw_respond_json(c, 200, json_pack("{s:o,s:o}", "data", data, "pagination", pag), 0);
}

void gw_on_token_list(struct gw_call *c)
{
    char status[128] = "", idem[GW_WP_IDEM_MAX + 1] = "", tags[2048] = "", after[128] = "";
    char limit_s[16] = "";
    long limit = 25;
    struct gw_resource res = {"waitpoints", NULL, 0};
    char why[2048];
    struct mp_writer w;
    if (!gw_authorize(&c->auth, "read", &res, 1, gw_wp_read_super, 3, why, sizeof(why))) {
        gw_respond_forbidden(c, why);
        return;
    }
    if (!gw_wp_query(c->req, "filter%5Bstatus%5D", status, sizeof(status)))
        (void)gw_wp_query(c->req, "filter[status]", status, sizeof(status));
    if (!gw_wp_query(c->req, "filter%5BidempotencyKey%5D", idem, sizeof(idem)))
        (void)gw_wp_query(c->req, "filter[idempotencyKey]", idem, sizeof(idem));
    if (!gw_wp_query(c->req, "filter%5Btags%5D", tags, sizeof(tags)))
        (void)gw_wp_query(c->req, "filter[tags]", tags, sizeof(tags));
    if (!gw_wp_query(c->req, "page%5Bafter%5D", after, sizeof(after)))
        (void)gw_wp_query(c->req, "page[after]", after, sizeof(after));
    if (gw_wp_query(c->req, "page%5Bsize%5D", limit_s, sizeof(limit_s)) ||
        gw_wp_query(c->req, "page[size]", limit_s, sizeof(limit_s))) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end || limit < 1 || limit > GW_WP_LIST_MAX) {
            gw_respond_error(c, 400, "page[size] must be 1-100", 0);
            return;
        }
    }
    /* statuses as the SDK names them: WAITING is the stored PENDING */
    const char *sts[3];
    unsigned nst = 0;
    char *save = NULL;
    for (char *t = strtok_r(status, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "WAITING") && nst < 3)
            sts[nst++] = "PENDING";
        else if ((!strcmp(t, "COMPLETED") || !strcmp(t, "TIMED_OUT")) && nst < 3)
            sts[nst++] = t;
        else {
            gw_respond_error(c, 400, "filter[status] must be WAITING, COMPLETED or TIMED_OUT", 0);
            return;
        }
    }
    const char *tg[GW_WP_TAGS_MAX];
    unsigned ntg = 0;
    save = NULL;
    for (char *t = strtok_r(tags, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (ntg >= GW_WP_TAGS_MAX || strlen(t) > GW_WP_TAG_MAX) {
            gw_respond_error(c, 400, "filter[tags] must be at most 10 tags", 0);
            return;
        }
        tg[ntg++] = t;
    }
    if (after[0] && strncmp(after, "waitpoint_", 10) != 0) {
        gw_respond_error(c, 400, "page[after] must be a waitpoint id", 0);
        return;
    }
    struct mp_writer st_raw, tg_raw;
    mp_writer_init(&st_raw);
    msg_raw_put_strs(&st_raw, sts, nst);
    mp_writer_init(&tg_raw);
    msg_raw_put_strs(&tg_raw, tg, ntg);
    struct msg_wp_list m = {
        .env_id = msg_str(c->auth.env.id),
        .kind = msg_str("MANUAL"),
        .statuses = msg_raw_of(&st_raw),
        .idempotency_key = msg_str(idem[0] ? idem : NULL),
        .tags = msg_raw_of(&tg_raw),
        .after = msg_str(after[0] ? after : NULL),
        .limit = (uint64_t)limit,
    };
    mp_writer_init(&w);
    msg_encode(&msg_wp_list_form, &w, &m);
    msg_raw_done(&st_raw, &w);
    msg_raw_done(&tg_raw, &w);
    gw_wp_send(c, GW_ACTOR_WAITPOINT_REGISTRY, MSG_WP_LIST, &w, gw_token_on_list);
}
