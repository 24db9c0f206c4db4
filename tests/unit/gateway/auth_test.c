/*
 * auth_test.c - credential classification, JWT parsing and verification
 * (tokens minted here and hand-made hostile ones), claim checks, minting,
 * and scope authorization. The gateway's pure auth files are included.
 */
#include "../../../gateway/cred.c"
#include "../../../gateway/jwt.c"
#include "../../../gateway/scope.c"

#include "t.h"

static const char KEY_A[] = "tr_dev_AAAAAAAAAAAAAAAAAAAA";
static const char KEY_B[] = "tr_dev_BBBBBBBBBBBBBBBBBBBB";

static size_t b64url(const void *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tbl[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = tbl[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

/* Builds header.payload.signature with any alg: "none" (empty signature), HS256 or HS512. */
static void make_token(const char *header, const char *payload, const char *alg, const char *key,
                       char *out)
{
    char h[512], p[2048];
    unsigned char mac[64];
    unsigned int ml = 0;
    b64url(header, strlen(header), h);
    b64url(payload, strlen(payload), p);
    sprintf(out, "%s.%s", h, p);
    if (strcmp(alg, "none") == 0) {
        strcat(out, ".");
        return;
    }
    HMAC(strcmp(alg, "HS512") == 0 ? EVP_sha512() : EVP_sha256(), key, (int)strlen(key),
         (unsigned char *)out, strlen(out), mac, &ml);
    strcat(out, ".");
    b64url(mac, ml, out + strlen(out));
}

static void payload(char *out, const char *sub, long exp_off, long nbf_off, bool iss, bool aud)
{
    long now = (long)time(NULL);
    sprintf(out, "{\"pub\":true,\"scopes\":[\"read:sessions:chat-1\"]");
    if (sub)
        sprintf(out + strlen(out), ",\"sub\":\"%s\"", sub);
    if (exp_off)
        sprintf(out + strlen(out), ",\"exp\":%ld", now + exp_off);
    if (nbf_off)
        sprintf(out + strlen(out), ",\"nbf\":%ld", now + nbf_off);
    if (iss)
        strcat(out, ",\"iss\":\"https://id.trigger.dev\"");
    if (aud)
        strcat(out, ",\"aud\":\"https://api.trigger.dev\"");
    strcat(out, "}");
}

T_TEST(classification)
{
    const char *t;
    size_t n;
    char tok[4096], pl[1024];
    T_EQ(gw_auth_classify("", 0, &t, &n), GW_CRED_NONE);
    T_EQ(gw_auth_classify("Bearer ", 7, &t, &n), GW_CRED_NONE);
    T_EQ(gw_auth_classify("pk_dev_abc", 10, &t, &n), GW_CRED_PUBLIC_KEY);
    T_EQ(gw_auth_classify("Bearer tr_dev_abc", 17, &t, &n), GW_CRED_SECRET);
    T_ASSERT(n == 10 && memcmp(t, "tr_dev_abc", 10) == 0);
    T_EQ(gw_auth_classify("tr_dev_abc", 10, &t, &n), GW_CRED_SECRET);
    T_EQ(gw_auth_classify("something-else", 14, &t, &n), GW_CRED_SECRET);
    T_EQ(gw_auth_classify("a.b.c", 5, &t, &n), GW_CRED_SECRET);
    payload(pl, "env1", 60, 0, true, true);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    T_EQ(gw_auth_classify(tok, strlen(tok), &t, &n), GW_CRED_JWT);
    make_token("{\"alg\":\"HS256\"}", "{\"pub\":false,\"sub\":\"x\"}", "HS256", KEY_A, tok);
    T_EQ(gw_auth_classify(tok, strlen(tok), &t, &n), GW_CRED_SECRET); /* not a public token */
    make_token("{\"alg\":\"none\"}", pl, "none", NULL, tok);
    T_EQ(gw_auth_classify(tok, strlen(tok), &t, &n), GW_CRED_JWT); /* a JWT, to be refused */
}

T_TEST(mint_and_verify)
{
    const char *const scopes[] = {"read:sessions:chat-1", "write:sessions:chat-1"};
    char *tok = gw_jwt_mint(KEY_A, "env1", scopes, 2, 3600);
    struct gw_jwt_claims c;
    T_ASSERT(tok != NULL);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_STREQ(c.sub, "env1");
    T_ASSERT(c.pub);
    T_EQ(c.nscopes, 2u);
    T_STREQ(c.scopes[1], "write:sessions:chat-1");
    T_ASSERT(gw_jwt_claims_check(&c, (int64_t)time(NULL)) == NULL);
    T_ASSERT(gw_jwt_signature_ok(tok, strlen(tok), KEY_A, strlen(KEY_A)));
    T_ASSERT(!gw_jwt_signature_ok(tok, strlen(tok), KEY_B, strlen(KEY_B))); /* wrong key */
    gw_jwt_claims_clear(&c);
    free(tok);

    struct gw_env env = {.id = "env1"};
    snprintf(env.signing_key, sizeof(env.signing_key), "%s", KEY_A);
    tok = gw_mint_session_token(&env, "chat:with:colons");
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_STREQ(c.scopes[0], "read:sessions:chat:with:colons");
    T_ASSERT(c.exp - (int64_t)time(NULL) > 3590 && c.exp - (int64_t)time(NULL) <= 3600);
    gw_jwt_claims_clear(&c);
    free(tok);
}

T_TEST(hostile_tokens)
{
    char tok[4096], pl[1024];
    struct gw_jwt_claims c;
    payload(pl, "env1", 60, 0, true, true);

    make_token("{\"alg\":\"none\"}", pl, "none", NULL, tok);
    T_ERR(gw_jwt_parse(tok, strlen(tok), &c), ERR_DENIED);
    T_ASSERT(!gw_jwt_signature_ok(tok, strlen(tok), KEY_A, strlen(KEY_A)));

    make_token("{\"alg\":\"HS512\"}", pl, "HS512", KEY_A, tok);
    T_ERR(gw_jwt_parse(tok, strlen(tok), &c), ERR_DENIED);
    T_ASSERT(!gw_jwt_signature_ok(tok, strlen(tok), KEY_A, strlen(KEY_A)));

    make_token("{\"typ\":\"JWT\"}", pl, "HS256", KEY_A, tok); /* no alg at all */
    T_ERR(gw_jwt_parse(tok, strlen(tok), &c), ERR_DENIED);

    /* tampered payload: the signature no longer matches */
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    char *dot = strchr(tok, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    T_ASSERT(!gw_jwt_signature_ok(tok, strlen(tok), KEY_A, strlen(KEY_A)));

    /* a token signed by environment B's key but naming environment A */
    payload(pl, "envA", 60, 0, true, true);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_B, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_ASSERT(!gw_jwt_signature_ok(tok, strlen(tok), KEY_A, strlen(KEY_A)));
    gw_jwt_claims_clear(&c);

    T_ERR(gw_jwt_parse("x.y", 3, &c), ERR_INVAL);
    T_ERR(gw_jwt_parse("a.b.c.d", 7, &c), ERR_INVAL);
    T_ERR(gw_jwt_parse("!!.!!.!!", 8, &c), ERR_INVAL);
    T_ASSERT(!gw_jwt_signature_ok("a.b.c", 5, KEY_A, strlen(KEY_A)));
    T_ASSERT(!gw_jwt_signature_ok(tok, strlen(tok), "", 0)); /* never verify without a key */
}

T_TEST(claims)
{
    char tok[4096], pl[1024];
    struct gw_jwt_claims c;
    int64_t now = (int64_t)time(NULL);

    payload(pl, "env1", -10, 0, true, true);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_STREQ(gw_jwt_claims_check(&c, now), "Public Access Token has expired");
    gw_jwt_claims_clear(&c);

    payload(pl, "env1", 60, 30, true, true);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_STREQ(gw_jwt_claims_check(&c, now), "Public Access Token is not yet valid");
    gw_jwt_claims_clear(&c);

    payload(pl, NULL, 60, 0, true, true);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_STREQ(c.sub, ""); /* missing subject: the caller refuses it */
    gw_jwt_claims_clear(&c);

    payload(pl, "env1", 60, 0, false, true);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_ASSERT(gw_jwt_claims_check(&c, now) != NULL); /* no issuer */
    gw_jwt_claims_clear(&c);

    payload(pl, "env1", 0, 0, true, true); /* no exp: refused (every real client sets one) */
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_STREQ(gw_jwt_claims_check(&c, now), "Public Access Token has no exp claim");
    gw_jwt_claims_clear(&c);

    /* scopes of the wrong shape become none at all */
    make_token("{\"alg\":\"HS256\"}",
               "{\"pub\":true,\"sub\":\"e\",\"scopes\":\"admin\",\"iss\":\"https://id.trigger.dev\","
               "\"aud\":\"https://api.trigger.dev\"}",
               "HS256", KEY_A, tok);
    T_OK(gw_jwt_parse(tok, strlen(tok), &c));
    T_EQ(c.nscopes, 0u);
    gw_jwt_claims_clear(&c);
}

/* Parses a token whose payload is the standard one plus extra ("\"exp\":0"), then checks it. */
static const char *check_with(const char *extra, int64_t now)
{
    char tok[4096], pl[1024];
    struct gw_jwt_claims c;
    static char why[128];
    snprintf(pl, sizeof(pl),
             "{\"pub\":true,\"sub\":\"env1\",\"iss\":\"https://id.trigger.dev\","
             "\"aud\":\"https://api.trigger.dev\",%s}",
             extra);
    make_token("{\"alg\":\"HS256\"}", pl, "HS256", KEY_A, tok);
    if (gw_jwt_parse(tok, strlen(tok), &c) != OK)
        return "(parse failed)";
    const char *r = gw_jwt_claims_check(&c, now);
    snprintf(why, sizeof(why), "%s", r ? r : "");
    gw_jwt_claims_clear(&c);
    return why;
}

/* exp, nbf and iat are NumericDates: integral JSON numbers; anything else is refused */
T_TEST(claim_types)
{
    int64_t now = (int64_t)time(NULL);
    char extra[128];
    static const char expired[] = "Public Access Token has expired";
    static const char bad_exp[] = "Public Access Token has an invalid exp claim";

    T_STREQ(check_with("\"exp\":0", now), expired); /* the epoch, not "absent" */
    T_STREQ(check_with("\"exp\":-1", now), expired);
    T_STREQ(check_with("\"exp\":0.5", now), bad_exp);
    T_STREQ(check_with("\"exp\":\"1\"", now), bad_exp);
    T_STREQ(check_with("\"exp\":\"99999999999\"", now), bad_exp);
    T_STREQ(check_with("\"exp\":true", now), bad_exp);
    T_STREQ(check_with("\"exp\":null", now), bad_exp);
    T_STREQ(check_with("\"exp\":[1]", now), bad_exp);
    T_STREQ(check_with("\"exp\":1e300", now), bad_exp); /* integral, but no date */
    snprintf(extra, sizeof(extra), "\"exp\":%lld.5", (long long)now + 60);
    T_STREQ(check_with(extra, now), bad_exp);
    snprintf(extra, sizeof(extra), "\"exp\":%lld.0", (long long)now + 60);
    T_STREQ(check_with(extra, now), ""); /* 1.0 is the integer 1 (JSON has one number type) */
    snprintf(extra, sizeof(extra), "\"exp\":%lld", (long long)now + 60);
    T_STREQ(check_with(extra, now), "");
    snprintf(extra, sizeof(extra), "\"exp\":%lld", (long long)now);
    T_STREQ(check_with(extra, now), expired); /* exp is the first second it is invalid */

    snprintf(extra, sizeof(extra), "\"exp\":%lld,\"nbf\":\"%lld\"", (long long)now + 60,
             (long long)now + 30);
    T_STREQ(check_with(extra, now), "Public Access Token has an invalid nbf claim");
    snprintf(extra, sizeof(extra), "\"exp\":%lld,\"nbf\":%lld.25", (long long)now + 60,
             (long long)now - 30);
    T_STREQ(check_with(extra, now), "Public Access Token has an invalid nbf claim");
    snprintf(extra, sizeof(extra), "\"exp\":%lld,\"nbf\":0", (long long)now + 60);
    T_STREQ(check_with(extra, now), ""); /* nbf at the epoch: valid since then */
    snprintf(extra, sizeof(extra), "\"exp\":%lld,\"nbf\":%lld", (long long)now + 60,
             (long long)now);
    T_STREQ(check_with(extra, now), ""); /* valid from nbf on */
    snprintf(extra, sizeof(extra), "\"exp\":%lld,\"iat\":\"yesterday\"", (long long)now + 60);
    T_STREQ(check_with(extra, now), "Public Access Token has an invalid iat claim");
    snprintf(extra, sizeof(extra), "\"exp\":%lld,\"iat\":%lld", (long long)now + 60,
             (long long)now);
    T_STREQ(check_with(extra, now), "");
}

static struct gw_auth jwt_with(const char *const *scopes, unsigned n)
{
    struct gw_auth a;
    memset(&a, 0, sizeof(a));
    a.kind = GW_AUTH_JWT;
    for (unsigned i = 0; i < n; i++)
        a.scopes[a.nscopes++] = (char *)scopes[i];
    return a;
}

T_TEST(scopes)
{
    static const char *const read_super[] = {"read:sessions", "read:all", "admin"};
    static const char *const ids[] = {"session_abc", "chat-1"};
    struct gw_resource res = {"sessions", ids, 2};
    char why[512];

    struct gw_auth secret = {.kind = GW_AUTH_SECRET};
    T_ASSERT(gw_authorize(&secret, "read", &res, 1, read_super, 3, NULL, 0));

    for (unsigned i = 0; i < 3; i++) {
        const char *s[] = {read_super[i]};
        struct gw_auth a = jwt_with(s, 1);
        T_ASSERT(gw_authorize(&a, "read", &res, 1, read_super, 3, NULL, 0));
    }
    const char *exact[] = {"read:sessions:chat-1"};
    struct gw_auth a = jwt_with(exact, 1);
    T_ASSERT(gw_authorize(&a, "read", &res, 1, read_super, 3, NULL, 0)); /* either form works */
    T_ASSERT(!gw_authorize(&a, "write", &res, 1, NULL, 0, why, sizeof(why)));
    T_ASSERT(strstr(why, "'read:sessions:chat-1'") != NULL);

    const char *other[] = {"read:sessions:chat-2", "write:sessions", "admin:sessions"};
    a = jwt_with(other, 3);
    T_ASSERT(!gw_authorize(&a, "read", &res, 1, read_super, 3, NULL, 0));
    /* admin:sessions is not universal; admin:all is not a read super-scope either */
    static const char *const admin_super[] = {"admin:sessions", "admin:all", "admin"};
    T_ASSERT(gw_authorize(&a, "admin", &res, 1, admin_super, 3, NULL, 0));

    /* ids containing ':' match exactly, never by prefix */
    static const char *const colon_ids[] = {"a:b:c"};
    struct gw_resource cr = {"sessions", colon_ids, 1};
    const char *pfx[] = {"read:sessions:a"};
    a = jwt_with(pfx, 1);
    T_ASSERT(!gw_authorize(&a, "read", &cr, 1, NULL, 0, NULL, 0));
    const char *full[] = {"read:sessions:a:b:c"};
    a = jwt_with(full, 1);
    T_ASSERT(gw_authorize(&a, "read", &cr, 1, NULL, 0, NULL, 0));

    /* an absent id is checked as "undefined", like upstream */
    static const char *const none[] = {NULL};
    struct gw_resource nr = {"tasks", none, 1};
    const char *und[] = {"read:tasks:undefined"};
    a = jwt_with(und, 1);
    T_ASSERT(gw_authorize(&a, "read", &nr, 1, NULL, 0, NULL, 0));

    struct gw_auth empty = {.kind = GW_AUTH_JWT};
    T_ASSERT(!gw_authorize(&empty, "read", &res, 1, read_super, 3, NULL, 0));
    T_ASSERT(!gw_authorize(&a, "read", NULL, 0, NULL, 0, NULL, 0)); /* no resources: deny */
}

int main(void)
{
    T_RUN(classification);
    T_RUN(mint_and_verify);
    T_RUN(hostile_tokens);
    T_RUN(claims);
    T_RUN(claim_types);
    T_RUN(scopes);
    return T_DONE();
}
