/*
 * auth.c - authenticating a request (see auth.h).
 *
 * Secret keys and environments are looked up over the bus (session-manager)
 * and cached for TETHER_GW_AUTH_CACHE_TTL; a validated token is cached by
 * its SHA-256 until that TTL or its exp, whichever is first, so a client
 * reusing a token costs a hash and a copy. Caches hold key digests, never a
 * key as an index, and nothing here logs a key or a token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "log.h"
#include "mem.h"
#include "mp.h"
#include "msg.h"
#include "msg_env.h"
#include "msg_raw.h"

#define GW_CACHE_SLOTS 4096
#define GW_CACHE_PROBE 8
#define GW_MAX_SIGNING_KEYS 4

struct gw_env_entry {
    unsigned char digest[32];
    uint64_t expires_mono; /* 0 = free */
    struct gw_env env;
    char keys[GW_MAX_SIGNING_KEYS][128];
    unsigned nkeys;
};

struct gw_token_entry {
    unsigned char digest[32];
    uint64_t expires_mono;
    struct gw_env env;
    char *scopes[GW_MAX_SCOPES];
    unsigned nscopes;
};

/* One gateway process, one loop thread: plain static tables. */
static struct gw_env_entry gw_by_key[GW_CACHE_SLOTS];
static struct gw_env_entry gw_by_id[GW_CACHE_SLOTS];
static struct gw_token_entry gw_tokens[GW_CACHE_SLOTS];

static void gw_digest(const char *a, size_t an, const char *b, size_t bn, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    /* "ab"+"c" must differ from "a"+"bc", hence the NUL between the parts */
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) || !EVP_DigestUpdate(ctx, a, an) ||
        !EVP_DigestUpdate(ctx, "\0", 1) || !EVP_DigestUpdate(ctx, b, bn) ||
        !EVP_DigestFinal_ex(ctx, out, &n))
        memset(out, 0,
               32); /* cannot happen short of OOM; an all-zero digest only misses the cache */
    EVP_MD_CTX_free(ctx);
}

static unsigned gw_slot(const unsigned char d[32])
{
    return ((unsigned)d[0] << 24 | (unsigned)d[1] << 16 | (unsigned)d[2] << 8 | d[3]) %
           GW_CACHE_SLOTS;
}

static struct gw_env_entry *gw_env_cache_find(struct gw_env_entry *t, const unsigned char d[32])
{
    uint64_t now = clock_mono_ms();
    unsigned s = gw_slot(d);
    for (unsigned i = 0; i < GW_CACHE_PROBE; i++) {
        struct gw_env_entry *e = &t[(s + i) % GW_CACHE_SLOTS];
        if (e->expires_mono > now && memcmp(e->digest, d, 32) == 0)
            return e;
    }
    return NULL;
}

static struct gw_env_entry *gw_env_cache_slot(struct gw_env_entry *t, const unsigned char d[32])
{
    uint64_t now = clock_mono_ms();
    unsigned s = gw_slot(d);
    struct gw_env_entry *oldest = &t[s];
    for (unsigned i = 0; i < GW_CACHE_PROBE; i++) {
        struct gw_env_entry *e = &t[(s + i) % GW_CACHE_SLOTS];
        if (e->expires_mono <= now || memcmp(e->digest, d, 32) == 0)
            return e;
        if (e->expires_mono < oldest->expires_mono)
            oldest = e;
    }
    return oldest;
}

static void gw_token_entry_clear(struct gw_token_entry *e)
{
    for (unsigned i = 0; i < e->nscopes; i++)
        free(e->scopes[i]);
    e->nscopes = 0;
    e->expires_mono = 0;
}

void gw_auth_clear(struct gw_auth *a)
{
    for (unsigned i = 0; i < a->nscopes; i++)
        free(a->scopes[i]);
    a->nscopes = 0;
}

/* ---- reading env objects from the session-manager ---- */

/* s into out (cap bytes): "" when absent or too long. */
static void gw_env_str(struct slice s, char *out, size_t cap)
{
    out[0] = '\0';
    if (s.p)
        (void)slice_copy(s, out, cap);
}

/* Fills an entry from a reply body {env: {...}}; false when malformed. */
static bool gw_env_from_reply(const struct envelope *env, struct gw_env_entry *e)
{
    struct msg_env_reply r;
    struct msg_env_obj o;
    struct slice keys[MSG_ENV_SIGNING_KEYS_MAX];
    unsigned n;
    if (!env || env->body.n == 0 ||
        msg_decode(&msg_env_reply_form, env->body.p, env->body.n, &r) != OK ||
        msg_decode(&msg_env_obj_form, r.env.p, r.env.n, &o) != OK ||
        msg_raw_strs(o.signing_keys, keys, MSG_ENV_SIGNING_KEYS_MAX, 0, SIZE_MAX, &n) != OK)
        return false;
    memset(&e->env, 0, sizeof(e->env));
    gw_env_str(o.id, e->env.id, sizeof(e->env.id));
    gw_env_str(o.type, e->env.type, sizeof(e->env.type));
    gw_env_str(o.organization_id, e->env.org_id, sizeof(e->env.org_id));
    gw_env_str(o.project_id, e->env.project_id, sizeof(e->env.project_id));
    e->nkeys = 0;
    for (unsigned i = 0; i < n; i++)
        if (e->nkeys < GW_MAX_SIGNING_KEYS && slice_copy(keys[i], e->keys[e->nkeys], 128) == OK)
            e->nkeys++;
    if (!e->env.id[0] || e->nkeys == 0)
        return false;
    snprintf(e->env.signing_key, sizeof(e->env.signing_key), "%s", e->keys[0]);
    return true;
}

/* ---- the two lookups ---- */

struct gw_auth_op {
    struct gw_call *call;
    gw_auth_done_fn done;
    unsigned char digest[32];
    char *token; /* JWT being validated (owned) */
    size_t token_n;
    struct gw_jwt_claims claims;
    bool env_only; /* gw_auth_env: claims.sub is the environment id, no token to verify */
};

static void gw_auth_op_free(struct gw_auth_op *op)
{
    gw_jwt_claims_clear(&op->claims);
    free(op->token);
    free(op);
}

static uint64_t gw_cache_ttl(const struct gw_call *c)
{
    return (uint64_t)c->gw->gw.auth_cache_ttl_ms;
}

static void gw_auth_fail_unavail(struct gw_auth_op *op, err_t rc)
{
    LOG_WARN("gw.auth_unavailable", "could not authenticate: %s", err_str(rc));
    op->done(op->call, 503, "Service temporarily unavailable; retry");
    gw_auth_op_free(op);
}

static void gw_on_resolve_key(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_auth_op *op = arg;
    struct gw_env_entry tmp;
    if (rc == ERR_UNAUTH || rc == ERR_NOTFOUND) {
        op->done(op->call, 401, "Invalid API Key");
        gw_auth_op_free(op);
        return;
    }
    if (rc != OK || !gw_env_from_reply(env, &tmp)) {
        gw_auth_fail_unavail(op, rc == OK ? ERR_PROTO : rc);
        return;
    }
    struct gw_env_entry *e = gw_env_cache_slot(gw_by_key, op->digest);
    *e = tmp;
    memcpy(e->digest, op->digest, 32);
    e->expires_mono = clock_mono_ms() + gw_cache_ttl(op->call);
    op->call->auth.kind = GW_AUTH_SECRET;
    op->call->auth.env = e->env;
    op->done(op->call, 0, NULL);
    gw_auth_op_free(op);
}

/* Verifies op's token against the environment entry and finishes. */
static void gw_jwt_finish(struct gw_auth_op *op, const struct gw_env_entry *e)
{
    struct gw_call *c = op->call;
    bool sig = false;
    for (unsigned i = 0; i < e->nkeys && !sig; i++)
        sig = gw_jwt_signature_ok(op->token, op->token_n, e->keys[i], strlen(e->keys[i]));
    if (!sig) {
        op->done(c, 401,
                 "Public Access Token is invalid: signature verification failed. See "
                 "https://trigger.dev/docs/frontend/overview#authentication");
        gw_auth_op_free(op);
        return;
    }
    const char *why = gw_jwt_claims_check(&op->claims, (int64_t)time(NULL));
    if (why) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "%s. See https://trigger.dev/docs/frontend/overview#authentication", why);
        op->done(c, 401, msg);
        gw_auth_op_free(op);
        return;
    }
    c->auth.kind = GW_AUTH_JWT;
    c->auth.env = e->env;
    /* the scopes move to the call; the cache keeps its own copies */
    struct gw_token_entry *t = &gw_tokens[gw_slot(op->digest)];
    gw_token_entry_clear(t);
    uint64_t ttl = gw_cache_ttl(c);
    if (op->claims.has_exp) { /* always, once the claims passed */
        /* in seconds: exp is the token's to choose, and far ones overflow as ms */
        int64_t left_s = op->claims.exp - (int64_t)time(NULL);
        if (left_s <= 0)
            ttl = 0;
        else if ((uint64_t)left_s < ttl / 1000)
            ttl = (uint64_t)left_s * 1000;
    }
    memcpy(t->digest, op->digest, 32);
    t->env = e->env;
    for (unsigned i = 0; i < op->claims.nscopes; i++) {
        t->scopes[t->nscopes++] = xstrdup(op->claims.scopes[i]);
        c->auth.scopes[c->auth.nscopes++] = op->claims.scopes[i];
        op->claims.scopes[i] = NULL;
    }
    op->claims.nscopes = 0;
    t->expires_mono = ttl ? clock_mono_ms() + ttl : 0;
    op->done(c, 0, NULL);
    gw_auth_op_free(op);
}

static void gw_on_env_get(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_auth_op *op = arg;
    struct gw_env_entry tmp;
    unsigned char d[32];
    if (rc == ERR_NOTFOUND) {
        if (op->env_only)
            op->done(op->call, 404, "Not found");
        else
            op->done(op->call, 401,
                     "Public Access Token is invalid: environment not found. See "
                     "https://trigger.dev/docs/frontend/overview#authentication");
        gw_auth_op_free(op);
        return;
    }
    if (rc != OK || !gw_env_from_reply(env, &tmp)) {
        gw_auth_fail_unavail(op, rc == OK ? ERR_PROTO : rc);
        return;
    }
    gw_digest(op->claims.sub, strlen(op->claims.sub), "", 0, d);
    struct gw_env_entry *e = gw_env_cache_slot(gw_by_id, d);
    *e = tmp;
    memcpy(e->digest, d, 32);
    e->expires_mono = clock_mono_ms() + gw_cache_ttl(op->call);
    if (op->env_only) {
        op->call->auth.env = e->env;
        op->done(op->call, 0, NULL);
        gw_auth_op_free(op);
        return;
    }
    gw_jwt_finish(op, e);
}

static void gw_auth_secret(struct gw_call *c, const char *key, size_t n, gw_auth_done_fn done)
{
    struct gw_auth_op *op;
    struct mp_writer w;
    ssize_t bi =
        c->req ? h2o_find_header_by_str(&c->req->headers, H2O_STRLIT("x-trigger-branch"), -1) : -1;
    const char *branch = bi >= 0 ? c->req->headers.entries[bi].value.base : "";
    size_t bn = bi >= 0 ? c->req->headers.entries[bi].value.len : 0;

    op = xcalloc(1, sizeof(*op));
    op->call = c;
    op->done = done;
    gw_digest(key, n, branch, bn, op->digest);
    struct gw_env_entry *e = gw_env_cache_find(gw_by_key, op->digest);
    if (e) {
        c->auth.kind = GW_AUTH_SECRET;
        c->auth.env = e->env;
        done(c, 0, NULL);
        gw_auth_op_free(op);
        return;
    }
    if (n > 256) { /* no key is this long: refuse before it reaches the bus */
        done(c, 401, "Invalid API Key");
        gw_auth_op_free(op);
        return;
    }
    struct msg_env_resolve_key m = {
        .key = {key, n},
        .branch = bn > 0 && bn <= 256 ? (struct slice){branch, bn} : SLICE_NULL,
    };
    mp_writer_init(&w);
    msg_encode(&msg_env_resolve_key_form, &w, &m);
    err_t rc = bus_call(c->gw->actors[GW_ACTOR_SESSION_MANAGER], MSG_ENV_RESOLVE_KEY,
                        mp_writer_data(&w), mp_writer_len(&w), &c->trace, gw_on_resolve_key, op);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_auth_fail_unavail(op, rc);
}

static void gw_auth_jwt(struct gw_call *c, const char *token, size_t n, gw_auth_done_fn done)
{
    struct gw_auth_op *op = xcalloc(1, sizeof(*op));
    unsigned char d[32];
    struct mp_writer w;

    op->call = c;
    op->done = done;
    gw_digest(token, n, "", 0, op->digest);

    err_t rc = gw_jwt_parse(token, n, &op->claims);
    if (rc != OK) {
        done(c, 401,
             "Public Access Token is invalid. See "
             "https://trigger.dev/docs/frontend/overview#authentication");
        gw_auth_op_free(op);
        return;
    }
    if (!op->claims.sub[0]) {
        done(c, 401,
             "Public Access Token is invalid: missing subject. See "
             "https://trigger.dev/docs/frontend/overview#authentication");
        gw_auth_op_free(op);
        return;
    }
    op->token = xstrndup(token, n);
    op->token_n = n;
    gw_digest(op->claims.sub, strlen(op->claims.sub), "", 0, d);
    struct gw_env_entry *e = gw_env_cache_find(gw_by_id, d);
    if (e) {
        gw_jwt_finish(op, e);
        return;
    }
    struct msg_env_get m = {msg_str(op->claims.sub)};
    mp_writer_init(&w);
    msg_encode(&msg_env_get_form, &w, &m);
    rc = bus_call(c->gw->actors[GW_ACTOR_SESSION_MANAGER], MSG_ENV_GET, mp_writer_data(&w),
                  mp_writer_len(&w), &c->trace, gw_on_env_get, op);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_auth_fail_unavail(op, rc);
}

/*
 * A token validated moments ago is recognised by its digest before it is
 * classified, so a client reusing its token pays a hash, not two base64
 * decodes and two JSON parses.
 */
static bool gw_auth_token_cached(struct gw_call *c, const char *h, size_t len)
{
    unsigned char d[32];
    if (!(c->route->auth & GW_AUTH_JWT))
        return false;
    if (len >= 7 && memcmp(h, "Bearer ", 7) == 0) {
        h += 7;
        len -= 7;
    }
    if (len < 16 || memcmp(h, "tr_", 3) == 0 || memcmp(h, "pk_", 3) == 0)
        return false;
    gw_digest(h, len, "", 0, d);
    struct gw_token_entry *t = &gw_tokens[gw_slot(d)];
    if (t->expires_mono <= clock_mono_ms() || memcmp(t->digest, d, 32) != 0)
        return false;
    c->auth.kind = GW_AUTH_JWT;
    c->auth.env = t->env;
    for (unsigned i = 0; i < t->nscopes; i++)
        c->auth.scopes[c->auth.nscopes++] = xstrdup(t->scopes[i]);
    return true;
}

void gw_auth_env(struct gw_call *c, const char *env_id, gw_auth_done_fn done)
{
    unsigned char d[32];
    struct mp_writer w;
    if (!env_id[0] || strlen(env_id) >= sizeof(((struct gw_jwt_claims *)0)->sub)) {
        done(c, 404, "Not found");
        return;
    }
    gw_digest(env_id, strlen(env_id), "", 0, d);
    struct gw_env_entry *e = gw_env_cache_find(gw_by_id, d);
    if (e) {
        c->auth.env = e->env;
        done(c, 0, NULL);
        return;
    }
    struct gw_auth_op *op = xcalloc(1, sizeof(*op));
    op->call = c;
    op->done = done;
    op->env_only = true;
    snprintf(op->claims.sub, sizeof(op->claims.sub), "%s", env_id);
    struct msg_env_get m = {msg_str(env_id)};
    mp_writer_init(&w);
    msg_encode(&msg_env_get_form, &w, &m);
    err_t rc = bus_call(c->gw->actors[GW_ACTOR_SESSION_MANAGER], MSG_ENV_GET, mp_writer_data(&w),
                        mp_writer_len(&w), &c->trace, gw_on_env_get, op);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_auth_fail_unavail(op, rc);
}

void gw_auth_begin(struct gw_call *c, gw_auth_done_fn done)
{
    if (c->route->auth == 0) { /* a capability URL: its handler checks what the URL carries */
        done(c, 0, NULL);
        return;
    }
    ssize_t i = h2o_find_header(&c->req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        gw_auth_bearer(c, NULL, 0, done);
    else
        gw_auth_bearer(c, c->req->headers.entries[i].value.base,
                       c->req->headers.entries[i].value.len, done);
}

void gw_auth_bearer(struct gw_call *c, const char *value, size_t len, gw_auth_done_fn done)
{
    const char *token = NULL;
    size_t n = 0;
    enum gw_cred kind = GW_CRED_NONE;

    if (value && gw_auth_token_cached(c, value, len)) {
        done(c, 0, NULL);
        return;
    }
    if (value)
        kind = gw_auth_classify(value, len, &token, &n);
    switch (kind) {
    case GW_CRED_NONE:
        done(c, 401, "Invalid API Key");
        return;
    case GW_CRED_PUBLIC_KEY:
        done(c, 401, "Public API keys are not allowed for this request");
        return;
    case GW_CRED_JWT:
        if (!(c->route->auth & GW_AUTH_JWT)) {
            done(c, 401, "Public JWT API keys are not allowed for this request");
            return;
        }
        gw_auth_jwt(c, token, n, done);
        return;
    case GW_CRED_SECRET:
        gw_auth_secret(c, token, n, done);
        return;
    }
}
