/*
 * env_check_test.c - the session-manager's pure parts: input checks
 * (env_check.c) and the env object on the wire (env_wire.c). The store and
 * the handlers are covered by tests/integration/env_test.sh.
 */
#include "../../../../actors/session_manager/env_check.c"
#include "../../../../actors/session_manager/env_wire.c"

#include "t.h"

#define S(lit) (lit), (sizeof(lit) - 1)

T_TEST(types)
{
    T_STREQ(sm_env_type_long("dev"), "DEVELOPMENT");
    T_STREQ(sm_env_type_long("stg"), "STAGING");
    T_STREQ(sm_env_type_long("prod"), "PRODUCTION");
    T_STREQ(sm_env_type_long("preview"), "PREVIEW");
    T_ASSERT(sm_env_type_long("DEVELOPMENT") == NULL);
    T_ASSERT(sm_env_type_long("") == NULL);
    T_ASSERT(sm_env_type_long("dev ") == NULL);
    T_STREQ(sm_env_type_short("PREVIEW"), "preview");
    T_STREQ(sm_env_type_short("STAGING"), "stg");
    T_ASSERT(sm_env_type_short("dev") == NULL);
}

T_TEST(names)
{
    T_ASSERT(sm_slug_valid(S("acme")));
    T_ASSERT(sm_slug_valid(S("A-b_c.9")));
    T_ASSERT(!sm_slug_valid(S("")));
    T_ASSERT(!sm_slug_valid(NULL, 0));
    T_ASSERT(!sm_slug_valid(S("a b")));
    T_ASSERT(!sm_slug_valid(S("a/b")));
    T_ASSERT(!sm_slug_valid(S("a\0b")));
    T_ASSERT(!sm_slug_valid(S("caf\xc3\xa9")));
    T_ASSERT(sm_slug_valid(S("0123456789012345678901234567890123456789012345678901234567890123")));
    T_ASSERT(
        !sm_slug_valid(S("01234567890123456789012345678901234567890123456789012345678901234")));
    T_ASSERT(sm_branch_valid(S("feature/login-1.2_x")));
    T_ASSERT(!sm_branch_valid(S("bad name")));
    T_ASSERT(!sm_branch_valid(S("x\0")));
    T_ASSERT(!sm_branch_valid(S("")));
}

T_TEST(key_shape)
{
    T_ASSERT(sm_key_shape_ok(S("tr_dev_0123456789abcdefghij")));
    T_ASSERT(sm_key_shape_ok(S("tr_preview_ABCDEFGHIJ0123456789")));
    T_ASSERT(!sm_key_shape_ok(S("pk_dev_0123456789abcdefghij")));
    T_ASSERT(!sm_key_shape_ok(S("tr_")));
    T_ASSERT(!sm_key_shape_ok(S("tr")));
    T_ASSERT(!sm_key_shape_ok(NULL, 0));
    T_ASSERT(!sm_key_shape_ok(S("tr_dev_'; DROP TABLE x")));
    T_ASSERT(!sm_key_shape_ok(S("tr_dev_abc\0def")));
    T_ASSERT(!sm_key_shape_ok(S("tr_dev_\xff\xfe")));
    /* as long as API_KEY_MAX - 1 is the limit; a longer string names no key */
    char longk[API_KEY_MAX + 8];
    memset(longk, 'a', sizeof(longk));
    memcpy(longk, "tr_", 3);
    T_ASSERT(sm_key_shape_ok(longk, API_KEY_MAX - 1));
    T_ASSERT(!sm_key_shape_ok(longk, API_KEY_MAX));
    /* every key api_key_new draws has the accepted shape */
    const char *types[] = {"dev", "stg", "prod", "preview"};
    for (unsigned i = 0; i < 4; i++) {
        char k[API_KEY_MAX];
        T_OK(api_key_new(types[i], k));
        T_ASSERT(sm_key_shape_ok(k, strlen(k)));
    }
}

T_TEST(ct_equal)
{
    T_ASSERT(sm_ct_equal(S("tr_dev_abc"), S("tr_dev_abc")));
    T_ASSERT(!sm_ct_equal(S("tr_dev_abc"), S("tr_dev_abd")));
    T_ASSERT(!sm_ct_equal(S("tr_dev_abc"), S("tr_dev_ab")));
    T_ASSERT(!sm_ct_equal(S("Tr_dev_abc"), S("tr_dev_abc")));
    T_ASSERT(sm_ct_equal(S(""), S("")));
    T_ASSERT(!sm_ct_equal(S("a\0b"), S("a\0c")));
}

static struct sm_env sample_env(void)
{
    struct sm_env e;
    memset(&e, 0, sizeof(e));
    strcpy(e.id, "cabcdefghijklmnopqrstuvwx");
    strcpy(e.type, "PREVIEW");
    strcpy(e.slug, "feature/x");
    strcpy(e.org_id, "corg");
    strcpy(e.org_slug, "acme");
    strcpy(e.project_id, "cproj");
    strcpy(e.project_slug, "web");
    strcpy(e.parent_id, "cparent");
    strcpy(e.branch_name, "feature/x");
    strcpy(e.api_key, "tr_preview_0123456789abcdefghij");
    strcpy(e.signing_keys[0], "tr_preview_AAAAAAAAAAAAAAAAAAAA");
    strcpy(e.signing_keys[1], "tr_preview_BBBBBBBBBBBBBBBBBBBB");
    e.nsigning_keys = 2;
    e.created_at_ms = 1763742480123ULL;
    return e;
}

static const char *get_str(struct mp_writer *w, const char *key, char *buf, size_t cap)
{
    struct mp_reader v;
    struct slice s;
    buf[0] = '\0';
    if (mp_map_find(mp_writer_data(w), mp_writer_len(w), key, &v) != OK)
        return "<absent>";
    if (mp_read_str_or_nil(&v, &s) != OK)
        return "<not a string>";
    if (!s.p)
        return "<nil>";
    return slice_copy(s, buf, cap) == OK ? buf : "<too long>";
}

T_TEST(env_object)
{
    struct sm_env e = sample_env();
    struct mp_writer w;
    struct mp_reader r, v;
    uint32_t n;
    char buf[128];

    mp_writer_init(&w);
    sm_env_put(&w, &e, true);
    T_OK(mp_writer_err(&w));
    mp_reader_init(&r, mp_writer_data(&w), mp_writer_len(&w));
    T_OK(mp_read_map(&r, &n));
    T_EQ(n, 12u);
    T_STREQ(get_str(&w, "id", buf, sizeof(buf)), "cabcdefghijklmnopqrstuvwx");
    T_STREQ(get_str(&w, "type", buf, sizeof(buf)), "PREVIEW");
    T_STREQ(get_str(&w, "organization_slug", buf, sizeof(buf)), "acme");
    T_STREQ(get_str(&w, "project_id", buf, sizeof(buf)), "cproj");
    T_STREQ(get_str(&w, "parent_id", buf, sizeof(buf)), "cparent");
    T_STREQ(get_str(&w, "branch_name", buf, sizeof(buf)), "feature/x");
    T_STREQ(get_str(&w, "api_key", buf, sizeof(buf)), "tr_preview_0123456789abcdefghij");
    T_OK(mp_map_find(mp_writer_data(&w), mp_writer_len(&w), "signing_keys", &v));
    T_OK(mp_read_array(&v, &n));
    T_EQ(n, 2u);
    T_OK(mp_map_find(mp_writer_data(&w), mp_writer_len(&w), "created_at_ms", &v));
    uint64_t ms = 0;
    T_OK(mp_read_uint(&v, &ms));
    T_EQ(ms, 1763742480123ULL);
    mp_writer_fini(&w);

    /* a root: parent and branch are nil; the list form has no key at all */
    e.parent_id[0] = e.branch_name[0] = '\0';
    mp_writer_init(&w);
    sm_env_put(&w, &e, false);
    T_OK(mp_writer_err(&w));
    mp_reader_init(&r, mp_writer_data(&w), mp_writer_len(&w));
    T_OK(mp_read_map(&r, &n));
    T_EQ(n, 10u);
    T_STREQ(get_str(&w, "parent_id", buf, sizeof(buf)), "<nil>");
    T_STREQ(get_str(&w, "branch_name", buf, sizeof(buf)), "<nil>");
    T_STREQ(get_str(&w, "api_key", buf, sizeof(buf)), "<absent>");
    T_ERR(mp_map_find(mp_writer_data(&w), mp_writer_len(&w), "signing_keys", &v), ERR_NOTFOUND);
    /* the whole map is well-formed: skipping it consumes every byte */
    mp_reader_init(&r, mp_writer_data(&w), mp_writer_len(&w));
    T_OK(mp_skip(&r, NULL));
    T_EQ(mp_reader_left(&r), 0u);
    mp_writer_fini(&w);
}

int main(void)
{
    T_RUN(types);
    T_RUN(names);
    T_RUN(key_shape);
    T_RUN(ct_equal);
    T_RUN(env_object);
    return T_DONE();
}
