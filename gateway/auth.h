/*
 * auth.h - who is calling: credential classification, secret keys, JWTs,
 * scopes, and minting tokens.
 *
 * Classification follows the contract's §3.1 exactly: "Bearer " is
 * stripped; "pk_" is a public key (always 401); "tr_" is a secret key
 * (resolved by the session-manager); three dot-separated parts whose
 * payload says "pub": true is a public JWT; anything else is treated as a
 * secret key and fails. JWTs (§3.2) must be HS256 - the algorithm is
 * checked from the header before anything is verified, so "none" and every
 * other algorithm are refused - signed with one of the environment's
 * signing keys (the parent's for a preview branch, grace-window keys
 * included), with iss "https://id.trigger.dev" and aud
 * "https://api.trigger.dev"; exp and nbf are checked here, since libjwt
 * 1.10 checks no claim. exp is required; exp, nbf and iat must be
 * NumericDates (integral JSON numbers). Signatures are compared in constant
 * time.
 */
#ifndef TETHER_GW_AUTH_H
#define TETHER_GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define GW_JWT_ISSUER "https://id.trigger.dev"
#define GW_JWT_AUDIENCE "https://api.trigger.dev"

enum gw_cred {
    GW_CRED_NONE,       /* no Authorization value */
    GW_CRED_PUBLIC_KEY, /* pk_... */
    GW_CRED_SECRET,     /* tr_..., or anything unrecognised (fails lookup) */
    GW_CRED_JWT,        /* three parts, payload with "pub": true */
};

/* Classifies an Authorization header value; token and n are set to the credential. */
enum gw_cred gw_auth_classify(const char *header, size_t len, const char **token, size_t *n);

/* Outcome of authentication: OK, or the 401 (or 503) to answer. */
typedef void (*gw_auth_done_fn)(struct gw_call *c, int status, const char *error);

/*
 * Authenticates c (filling c->auth) and calls done once, on the loop
 * thread: status 0 on success, else the status and error text to send.
 * Lookups go over the bus and are cached briefly (TETHER_GW_AUTH_CACHE_TTL).
 */
void gw_auth_begin(struct gw_call *c, gw_auth_done_fn done);

/*
 * The same from an Authorization value already in hand (value NULL: none), for a caller that
 * has no h2o request: the S2 append sessions (s2s.h) hand in their HTTP/2 header. c->req may
 * be NULL; no X-Trigger-Branch is read then. c->route->auth says which credentials count.
 */
void gw_auth_bearer(struct gw_call *c, const char *value, size_t len, gw_auth_done_fn done);

/*
 * For a route without a credential (route auth 0: a capability URL such as a token's
 * callback), once its handler knows which environment the URL names: fills c->auth.env
 * (signing key included; c->auth.kind stays 0, no scope) and calls done once: 0, 404 when
 * there is no such environment, 503 when the session-manager is unavailable. Cached as the
 * environments of tokens are. Loop thread.
 */
void gw_auth_env(struct gw_call *c, const char *env_id, gw_auth_done_fn done);

/* Frees what authentication stored in a (scopes). */
void gw_auth_clear(struct gw_auth *a);

/* ---- JWT (jwt.c) ---- */

struct gw_jwt_claims {
    char sub[64];
    bool pub;
    int64_t exp, nbf, iat;      /* NumericDates (s); meaningful when has_* */
    bool has_exp, has_nbf, has_iat;
    const char *bad_date;       /* "exp", "nbf" or "iat": present but not a NumericDate */
    char iss[64], aud[64];
    bool has_iss, has_aud;
    char *scopes[GW_MAX_SCOPES];/* malloc'd; gw_jwt_claims_clear */
    unsigned nscopes;
    bool scopes_invalid;        /* claims failed the schema: scopes treated as [] */
};

/*
 * Parses a JWT without verifying it: the header must be exactly alg HS256
 * (ERR_DENIED otherwise) and the payload a JSON object (ERR_INVAL).
 */
err_t gw_jwt_parse(const char *token, size_t n, struct gw_jwt_claims *claims);
void gw_jwt_claims_clear(struct gw_jwt_claims *claims);

/* True when token's HS256 signature matches key (constant-time comparison). */
bool gw_jwt_signature_ok(const char *token, size_t n, const char *key, size_t keylen);

/*
 * Checks the claims (0 s leeway): exp, nbf and iat are NumericDates when
 * present; exp is required and the token is expired from second exp on (exp 0
 * expired at the epoch); it is valid from nbf on; iss and aud must match.
 * Returns NULL or the reason it fails.
 */
const char *gw_jwt_claims_check(const struct gw_jwt_claims *claims, int64_t now_s);

/*
 * Mints an HS256 token: sub, pub: true, scopes, iss, aud, iat, exp = now +
 * ttl_s. Returns a malloc'd string (free()), or NULL.
 */
char *gw_jwt_mint(const char *key, const char *sub, const char *const *scopes, unsigned nscopes,
                  int64_t ttl_s);

/*
 * The session token the contract mints on create: read and write scopes on
 * the session's addressing key, valid 1 h.
 */
char *gw_mint_session_token(const struct gw_env *env, const char *addressing_key);

/*
 * What a capability URL carries instead of a credential (a token's callback, a snapshot URL):
 * HMAC-SHA256 of msg[0..n) under key (an environment's signing key), in lowercase hex (65 bytes
 * with the NUL). false, out "", when key is empty or the HMAC cannot be made (jwt.c).
 */
bool gw_hmac_hex(const char *key, const char *msg, size_t n, char out[65]);

/* ---- scopes (scope.c) ---- */

/* One resource type and the ids a request touches ({"sessions", [friendly, external]}). */
struct gw_resource {
    const char *type;
    const char *const *ids;
    unsigned nids;
};

/*
 * The contract's authorization (§3.3, SEED): secret keys pass; a JWT passes
 * if it holds a super-scope, or "<action>:<type>:<id>" or "<action>:<type>"
 * for some id of some resource. Exact string comparison. On refusal,
 * reason (cap bytes) says why, listing the token's scopes.
 */
bool gw_authorize(const struct gw_auth *a, const char *action, const struct gw_resource *res,
                  unsigned nres, const char *const *super, unsigned nsuper, char *reason,
                  size_t cap);

#endif
