/*
 * jwt_fuzz.c - libFuzzer target for the Authorization header (gateway/cred.c, jwt.c,
 * scope.c): gw_auth_classify, gw_jwt_parse, gw_jwt_claims_check, gw_jwt_signature_ok (which
 * asks libjwt too), gw_jwt_mint and gw_authorize on the scopes a token carries.
 *
 * Feeds, by byte 0: (0) the rest as an Authorization value; (1) the rest as a token's
 * "header.payload", which the harness signs with the environment's key, so the signature
 * check passes and what follows it is reached; (2) "sub\nscope\nscope..." minted into a
 * token and read back.
 * Checks: the class follows the contract's §3.1 from the prefix and the parse result; parsed
 * claims are bounded and agree with jansson's reading of the payload; claims pass
 * gw_jwt_claims_check only when every §3.2 rule holds; an unsigned or wrongly signed token
 * never verifies, a token signed with the key whose header and payload gw_jwt_parse accepts
 * always does (libjwt's second opinion included), and one changed signature character breaks
 * it; a minted token parses back to its subject and scopes, verifies, and expires; a JWT
 * caller is authorized exactly when a scope it holds names the action on the resource type,
 * with or without the id, or is a super-scope.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>

#include "auth.h"
#include "fuzz.h"
#include "jbuf.h"

#define KEY "tr_dev_signing_key_for_fuzzing"
#define NOW INT64_C(1790000000) /* a fixed "now" for the claim checks: 2026-09 */

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Unpadded base64url, written the straightforward way; NULL when it is not. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *len)
{
    unsigned char *out = malloc(n + 1);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    if (!out)
        abort();
    if (n % 4 == 1) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *len = o;
    return out;
}

static bool dots(const char *t, size_t n, size_t *d0, size_t *d1)
{
    size_t found = 0, d[2] = {0, 0};
    for (size_t i = 0; i < n; i++)
        if (t[i] == '.') {
            if (found == 2)
                return false;
            d[found++] = i;
        }
    *d0 = d[0];
    *d1 = d[1];
    return found == 2;
}

/* Part 0 (header) or 1 (payload) as jansson reads it, or NULL. */
static json_t *part_of(const char *t, size_t n, int part)
{
    size_t d0, d1, len;
    if (!dots(t, n, &d0, &d1))
        return NULL;
    unsigned char *p =
        part == 0 ? b64url_decode(t, d0, &len) : b64url_decode(t + d0 + 1, d1 - d0 - 1, &len);
    if (!p)
        return NULL;
    json_t *j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
    free(p);
    return j;
}

/* Whether part 0 or 1 decodes to bytes holding a NUL. */
static bool part_has_nul(const char *t, size_t n, int part)
{
    size_t d0, d1, len;
    if (!dots(t, n, &d0, &d1))
        return false;
    unsigned char *p =
        part == 0 ? b64url_decode(t, d0, &len) : b64url_decode(t + d0 + 1, d1 - d0 - 1, &len);
    bool nul = p && len && memchr(p, 0, len) != NULL;
    free(p);
    return nul;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = jbuf_utf8_len((const unsigned char *)s + i, n - i)))
            return false;
    return true;
}

/* What gw_jwt_claims_check must say, rule by rule (auth.h). */
static bool claims_ok(const struct gw_jwt_claims *c, int64_t now)
{
    return !c->bad_date && c->has_exp && now < c->exp && (!c->has_nbf || now >= c->nbf) &&
           c->has_iss && strcmp(c->iss, GW_JWT_ISSUER) == 0 && c->has_aud &&
           strcmp(c->aud, GW_JWT_AUDIENCE) == 0;
}

static void check_claims(const char *tok, size_t n, const struct gw_jwt_claims *c)
{
    FUZZ_CHECK(c->nscopes <= GW_MAX_SCOPES);
    FUZZ_CHECK(!c->scopes_invalid || c->nscopes == 0);
    FUZZ_CHECK(strlen(c->sub) < sizeof(c->sub));
    FUZZ_CHECK(c->bad_date == NULL || strcmp(c->bad_date, "exp") == 0 ||
               strcmp(c->bad_date, "nbf") == 0 || strcmp(c->bad_date, "iat") == 0);
    for (int64_t now = NOW - 1; now <= NOW + 1; now++)
        FUZZ_CHECK((gw_jwt_claims_check(c, now) == NULL) == claims_ok(c, now));

    /* the scopes and pub are what jansson reads in the payload */
    json_t *p = part_of(tok, n, 1), *v;
    FUZZ_CHECK(json_is_object(p));
    FUZZ_CHECK(c->pub == json_is_true(json_object_get(p, "pub")));
    v = json_object_get(p, "scopes");
    FUZZ_CHECK(json_is_array(v) || c->nscopes == 0);
    if (!c->scopes_invalid && json_is_array(v)) {
        FUZZ_CHECK(json_array_size(v) == c->nscopes);
        for (unsigned i = 0; i < c->nscopes; i++)
            FUZZ_CHECK(strcmp(json_string_value(json_array_get(v, i)), c->scopes[i]) == 0);
    }
    json_decref(p);
}

/* gw_authorize against the rule of auth.h, for one resource id. */
static void check_authorize(const struct gw_jwt_claims *c, const char *id)
{
    static const char *const super[] = {"read:sessions", "read:all", "admin"};
    struct gw_auth a = {.kind = GW_AUTH_JWT, .nscopes = c->nscopes};
    char want[GW_PARAM_MAX * 2 + 64], reason[1024];
    const char *ids[] = {id};
    struct gw_resource res = {"sessions", ids, 1};
    bool expect = false;
    if (strlen(id) >= GW_PARAM_MAX)
        return; /* ids are path parameters: GW_PARAM_MAX bounds them */
    snprintf(want, sizeof(want), "read:sessions:%s", id);
    for (unsigned i = 0; i < c->nscopes; i++) {
        a.scopes[i] = c->scopes[i];
        expect = expect || strcmp(c->scopes[i], want) == 0 ||
                 strcmp(c->scopes[i], "read:sessions") == 0 ||
                 strcmp(c->scopes[i], "read:all") == 0 || strcmp(c->scopes[i], "admin") == 0;
    }
    reason[0] = '\0';
    bool got = gw_authorize(&a, "read", &res, 1, super, 3, reason, sizeof(reason));
    FUZZ_CHECK(got == expect);
    FUZZ_CHECK(got || strncmp(reason, "Public Access Token is missing", 30) == 0);
    FUZZ_CHECK(strlen(reason) < sizeof(reason));
    a.kind = GW_AUTH_SECRET; /* a secret key may do anything */
    FUZZ_CHECK(gw_authorize(&a, "read", &res, 1, super, 3, NULL, 0));
}

static void check_header(const char *h, size_t n)
{
    const char *tok;
    size_t tn;
    struct gw_jwt_claims c;
    enum gw_cred kind = gw_auth_classify(h, n, &tok, &tn);
    bool bearer = n >= 7 && memcmp(h, "Bearer ", 7) == 0;
    FUZZ_CHECK(tok == h + (bearer ? 7 : 0) && tn == n - (bearer ? 7 : 0));
    err_t rc = gw_jwt_parse(tok, tn, &c);
    FUZZ_CHECK(rc == OK || rc == ERR_INVAL || rc == ERR_DENIED);
    enum gw_cred want = tn == 0                                   ? GW_CRED_NONE
                        : tn >= 3 && memcmp(tok, "pk_", 3) == 0   ? GW_CRED_PUBLIC_KEY
                        : tn >= 3 && memcmp(tok, "tr_", 3) == 0   ? GW_CRED_SECRET
                        : (rc == OK && c.pub) || rc == ERR_DENIED ? GW_CRED_JWT
                                                                  : GW_CRED_SECRET;
    FUZZ_CHECK(kind == want);
    if (rc == OK) {
        check_claims(tok, tn, &c);
        check_authorize(&c, c.sub);
        gw_jwt_claims_clear(&c);
    }
    /* a token that verifies is one gw_jwt_parse reads (a seed may hold one signed with KEY) */
    FUZZ_CHECK(!gw_jwt_signature_ok(tok, tn, KEY, strlen(KEY)) || rc == OK);
    FUZZ_CHECK(!gw_jwt_signature_ok(tok, tn, "", 0));
}

static void check_signed(const char *hp, size_t n)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    struct gw_jwt_claims c;
    size_t ndots = 0;
    for (size_t i = 0; i < n; i++)
        ndots += hp[i] == '.';
    if (n > 8192 || ndots != 1)
        return; /* "header.payload" */
    char *tok = malloc(n + 64);
    if (!tok)
        abort();
    memcpy(tok, hp, n);
    FUZZ_CHECK(HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)hp, n, mac,
                    &maclen) != NULL &&
               maclen == 32);
    tok[n] = '.';
    size_t tn = n + 1 + fuzz_b64url_encode(mac, 32, tok + n + 1);

    err_t rc = gw_jwt_parse(tok, tn, &c);
    bool ok = gw_jwt_signature_ok(tok, tn, KEY, strlen(KEY));
    if (rc == OK) {
        /* a well-formed HS256 token signed with the key verifies - unless its header has a
         * "typ" string other than JWT: libjwt 1.x refuses those (a known divergence from the
         * contract, which does not look at typ; tests/fuzz/README.md) */
        json_t *hdr = part_of(tok, tn, 0), *typ = json_object_get(hdr, "typ");
        bool libjwt_ok = !json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") == 0;
        json_decref(hdr);
        /* and unless a part holds a NUL byte: jansson's json_loadb takes `{"a":1<NUL>}`,
         * libjwt reads the parts as C strings (both refuse the token in the end) */
        libjwt_ok = libjwt_ok && !part_has_nul(tok, tn, 0) && !part_has_nul(tok, tn, 1);
        FUZZ_CHECK(ok == libjwt_ok);
        check_claims(tok, tn, &c);
        gw_jwt_claims_clear(&c);
    }
    FUZZ_CHECK(!gw_jwt_signature_ok(tok, tn, "another key", 11));
    /* one signature character changed (to one that changes its decoded bits) */
    char *last = &tok[tn - 2];
    *last = *last == 'A' ? 'B' : 'A';
    FUZZ_CHECK(!gw_jwt_signature_ok(tok, tn, KEY, strlen(KEY)));
    free(tok);
}

static void check_mint(struct fuzz_in in)
{
    char *sub = fuzz_strdup(fuzz_until(&in, '\n'));
    char *scopes[GW_MAX_SCOPES];
    unsigned n = 0;
    bool text = utf8_valid(sub, strlen(sub)) && strlen(sub) < 64;
    while (in.n && n < GW_MAX_SCOPES) {
        scopes[n] = fuzz_strdup(fuzz_until(&in, '\n'));
        text = text && utf8_valid(scopes[n], strlen(scopes[n]));
        n++;
    }
    if (text) {
        /* the signing path: JSON strings are UTF-8, which every subject and scope Tether
         * mints is (ids pass gw_id_problem) */
        char *tok = gw_jwt_mint(KEY, sub, (const char *const *)scopes, n, 3600);
        struct gw_jwt_claims c;
        FUZZ_CHECK(tok != NULL);
        size_t tn = strlen(tok);
        FUZZ_CHECK(gw_jwt_parse(tok, tn, &c) == OK);
        FUZZ_CHECK(strcmp(c.sub, sub) == 0 && c.pub && !c.scopes_invalid && c.nscopes == n);
        for (unsigned i = 0; i < n; i++)
            FUZZ_CHECK(strcmp(c.scopes[i], scopes[i]) == 0);
        FUZZ_CHECK(c.has_exp && c.has_iat && c.exp == c.iat + 3600);
        FUZZ_CHECK(gw_jwt_claims_check(&c, c.iat) == NULL);
        FUZZ_CHECK(gw_jwt_claims_check(&c, c.exp) != NULL); /* expired from second exp on */
        FUZZ_CHECK(gw_jwt_signature_ok(tok, tn, KEY, strlen(KEY)));
        FUZZ_CHECK(!gw_jwt_signature_ok(tok, tn, "another key", 11));
        const char *tk;
        size_t tkn;
        FUZZ_CHECK(gw_auth_classify(tok, tn, &tk, &tkn) == GW_CRED_JWT);
        check_authorize(&c, n ? scopes[0] : sub);
        gw_jwt_claims_clear(&c);
        free(tok);
    }
    for (unsigned i = 0; i < n; i++)
        free(scopes[i]);
    free(sub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    switch (fuzz_u8(&in) % 3) {
    case 0:
        check_header((const char *)in.p, in.n);
        break;
    case 1:
        check_signed((const char *)in.p, in.n);
        break;
    default:
        check_mint(in);
        break;
    }
    return 0;
}
