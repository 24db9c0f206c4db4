/*
 * jwt.c - parsing, verifying and minting HS256 JSON Web Tokens (see auth.h).
 *
 * Verification order: the header must say alg HS256 (decided before any
 * key is touched, so "none" or HS512 never reach a verifier); the
 * signature is recomputed with OpenSSL and compared with CRYPTO_memcmp;
 * only a token that passed is handed to libjwt's decoder, always with the
 * key (a NULL key would skip the check). Claims are read with jansson.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "log.h"
#include "mem.h"

#define GW_JWT_MAX 16384 /* a token longer than this is refused unparsed */

static int gw_b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url into out (cap bytes); returns the length or -1. */
static long gw_b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = gw_b64url_val(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* Splits a token into its three parts; false unless there are exactly three. */
static bool gw_jwt_split(const char *t, size_t n, size_t dots[2])
{
    unsigned found = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '.') {
            if (found == 2)
                return false;
            dots[found++] = i;
        }
    }
    return found == 2;
}

static json_t *gw_jwt_part_json(const char *s, size_t n)
{
    unsigned char buf[GW_JWT_MAX];
    long len = gw_b64url_decode(s, n, buf, sizeof(buf));
    if (len < 0)
        return NULL;
    return json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
}

void gw_jwt_claims_clear(struct gw_jwt_claims *c)
{
    for (unsigned i = 0; i < c->nscopes; i++)
        free(c->scopes[i]);
    c->nscopes = 0;
}

static void gw_jwt_copy_str(json_t *obj, const char *key, char *out, size_t cap, bool *has)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v)) {
        snprintf(out, cap, "%s", json_string_value(v));
        if (has)
            *has = true;
    } else if (has) {
        *has = v != NULL; /* present but of the wrong type: still "has", and will not match */
    }
}

/*
 * Reads a NumericDate claim: absent is fine (*has false); present, it must be
 * an integral JSON number. JSON has one number type, so 1.0 is the integer 1;
 * 0.5, "1", true or null are not dates, nor is a real beyond +-2^53 (no exact
 * integer, and its conversion would overflow). False when present and invalid.
 */
static bool gw_jwt_date(json_t *payload, const char *key, int64_t *out, bool *has)
{
    json_t *v = json_object_get(payload, key);
    *has = v != NULL;
    *out = 0;
    if (!v)
        return true;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return true;
        }
    }
    return false;
}

err_t gw_jwt_parse(const char *token, size_t n, struct gw_jwt_claims *c)
{
    size_t dots[2];
    json_t *hdr, *payload, *v;

    memset(c, 0, sizeof(*c));
    if (n == 0 || n > GW_JWT_MAX || !gw_jwt_split(token, n, dots))
        return ERR_INVAL;
    hdr = gw_jwt_part_json(token, dots[0]);
    if (!hdr)
        return ERR_INVAL;
    /* HS256 and nothing else; decided from the header before any verification */
    v = json_object_get(hdr, "alg");
    bool hs256 = json_is_string(v) && strcmp(json_string_value(v), "HS256") == 0;
    json_decref(hdr);
    if (!hs256)
        return ERR_DENIED;

    payload = gw_jwt_part_json(token + dots[0] + 1, dots[1] - dots[0] - 1);
    if (!json_is_object(payload)) {
        json_decref(payload);
        return ERR_INVAL;
    }
    gw_jwt_copy_str(payload, "sub", c->sub, sizeof(c->sub), NULL);
    c->pub = json_is_true(json_object_get(payload, "pub"));
    if (!gw_jwt_date(payload, "exp", &c->exp, &c->has_exp))
        c->bad_date = "exp";
    else if (!gw_jwt_date(payload, "nbf", &c->nbf, &c->has_nbf))
        c->bad_date = "nbf";
    else if (!gw_jwt_date(payload, "iat", &c->iat, &c->has_iat))
        c->bad_date = "iat";
    gw_jwt_copy_str(payload, "iss", c->iss, sizeof(c->iss), &c->has_iss);
    v = json_object_get(payload, "aud");
    if (json_is_array(v) && json_array_size(v) > 0) /* aud may be an array: one must match */
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *a = json_array_get(v, i);
            c->has_aud = true;
            if (json_is_string(a) && strcmp(json_string_value(a), GW_JWT_AUDIENCE) == 0)
                snprintf(c->aud, sizeof(c->aud), "%s", GW_JWT_AUDIENCE);
        }
    else
        gw_jwt_copy_str(payload, "aud", c->aud, sizeof(c->aud), &c->has_aud);

    /* scopes: an array of strings, else (like the contract's lenient parse) none at all */
    v = json_object_get(payload, "scopes");
    if (v && !json_is_array(v))
        c->scopes_invalid = true;
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || c->nscopes == GW_MAX_SCOPES) {
            c->scopes_invalid = true;
            break;
        }
        c->scopes[c->nscopes++] = xstrdup(json_string_value(s));
    }
    if (c->scopes_invalid)
        gw_jwt_claims_clear(c);
    json_decref(payload);
    return OK;
}

bool gw_jwt_signature_ok(const char *token, size_t n, const char *key, size_t keylen)
{
    size_t dots[2];
    unsigned char mac[EVP_MAX_MD_SIZE], sig[64];
    unsigned int maclen = 0;
    long siglen;

    if (keylen == 0 || n > GW_JWT_MAX || !gw_jwt_split(token, n, dots))
        return false;
    siglen = gw_b64url_decode(token + dots[1] + 1, n - dots[1] - 1, sig, sizeof(sig));
    if (siglen != 32)
        return false;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)token, dots[1], mac,
              &maclen) ||
        maclen != 32)
        return false;
    if (CRYPTO_memcmp(mac, sig, 32) != 0)
        return false;

    /* the signature is good; libjwt decodes it too, with the key, as a second opinion */
    char *copy = xstrndup(token, n);
    jwt_t *j = NULL;
    int rv = jwt_decode(&j, copy, (const unsigned char *)key, (int)keylen);
    bool ok = rv == 0 && j && jwt_get_alg(j) == JWT_ALG_HS256;
    if (j)
        jwt_free(j);
    free(copy);
    return ok;
}

const char *gw_jwt_claims_check(const struct gw_jwt_claims *c, int64_t now_s)
{
    if (c->bad_date) {
        if (strcmp(c->bad_date, "exp") == 0)
            return "Public Access Token has an invalid exp claim";
        if (strcmp(c->bad_date, "nbf") == 0)
            return "Public Access Token has an invalid nbf claim";
        return "Public Access Token has an invalid iat claim";
    }
    /* every token a real client holds has one (jose's would accept none: we do not) */
    if (!c->has_exp)
        return "Public Access Token has no exp claim";
    if (now_s >= c->exp)
        return "Public Access Token has expired";
    if (c->has_nbf && now_s < c->nbf)
        return "Public Access Token is not yet valid";
    if (!c->has_iss || strcmp(c->iss, GW_JWT_ISSUER) != 0)
        return "Public Access Token has an invalid issuer claim";
    if (!c->has_aud || strcmp(c->aud, GW_JWT_AUDIENCE) != 0)
        return "Public Access Token has an invalid audience claim";
    return NULL;
}

char *gw_jwt_mint(const char *key, const char *sub, const char *const *scopes, unsigned nscopes,
                  int64_t ttl_s)
{
    jwt_t *j = NULL;
    char *out = NULL;
    json_t *grants = json_object(), *arr = json_array();
    char *gj = NULL;
    int64_t now = (int64_t)time(NULL);

    if (!grants || !arr || jwt_new(&j) != 0)
        goto done;
    for (unsigned i = 0; i < nscopes; i++)
        json_array_append_new(arr, json_string(scopes[i]));
    json_object_set(grants, "scopes", arr);
    gj = json_dumps(grants, JSON_COMPACT);
    if (!gj || jwt_add_grant(j, "sub", sub) != 0 || jwt_add_grant_bool(j, "pub", 1) != 0 ||
        jwt_add_grants_json(j, gj) != 0 || jwt_add_grant(j, "iss", GW_JWT_ISSUER) != 0 ||
        jwt_add_grant(j, "aud", GW_JWT_AUDIENCE) != 0 || jwt_add_grant_int(j, "iat", now) != 0 ||
        jwt_add_grant_int(j, "exp", now + ttl_s) != 0 ||
        jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)key, (int)strlen(key)) != 0)
        goto done;
    out = jwt_encode_str(j);
done:
    if (j)
        jwt_free(j);
    free(gj);
    json_decref(arr);
    json_decref(grants);
    return out;
}

char *gw_mint_session_token(const struct gw_env *env, const char *addressing_key)
{
    char r[GW_PARAM_MAX + 32], w[GW_PARAM_MAX + 32];
    snprintf(r, sizeof(r), "read:sessions:%s", addressing_key);
    snprintf(w, sizeof(w), "write:sessions:%s", addressing_key);
    const char *const scopes[] = {r, w};
    return gw_jwt_mint(env->signing_key, env->id, scopes, 2, 3600);
}

bool gw_hmac_hex(const char *key, const char *msg, size_t n, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    out[0] = '\0';
    if (!key[0] ||
        !HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, n, mac, &len) ||
        len != 32)
        return false;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return true;
}
