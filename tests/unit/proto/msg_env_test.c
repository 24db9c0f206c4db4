/*
 * msg_env_test.c - the env.* bodies (proto/msg_env.h): their golden files, and what the
 * session-manager, the gateway and tetherctl rely on of each.
 */
#include <string.h>

#include "msg_env.h"
#include "msg_golden.h"
#include "msg_raw.h"

#define KEY "tr_dev_0123456789abcdefghij"
#define OLD_KEY "tr_dev_jihgfedcba9876543210"

/* An env object as the session-manager writes it (with its keys when keys is not NULL). */
static void env_obj(struct mp_writer *w, struct mp_writer *keys)
{
    struct msg_env_obj o = {
        .id = SLICE_LIT("cm0env00000000000000000001"),
        .type = SLICE_LIT("DEVELOPMENT"),
        .slug = SLICE_LIT("dev"),
        .organization_id = SLICE_LIT("cm0org00000000000000000001"),
        .organization_slug = SLICE_LIT("acme"),
        .project_id = SLICE_LIT("cm0prj00000000000000000001"),
        .project_slug = SLICE_LIT("web"),
        .created_at_ms = 1767225600000ull,
    };
    if (keys) {
        const char *k[] = {KEY, OLD_KEY};
        msg_raw_put_strs(keys, k, 2);
        o.api_key = SLICE_LIT(KEY);
        o.signing_keys = msg_raw_of(keys);
    }
    msg_encode(&msg_env_obj_form, w, &o);
}

T_TEST(golden)
{
    struct msg_env_resolve_key resolve = {.key = SLICE_LIT(KEY)}; /* no branch: nil */
    MSG_GOLDEN(msg_env_resolve_key_form, "env.resolve_key", resolve);
    struct msg_env_get get = {SLICE_LIT("cm0env00000000000000000001")};
    MSG_GOLDEN(msg_env_get_form, "env.get", get);
    struct msg_env_create create = {.org = SLICE_LIT("acme"),
                                    .project = SLICE_LIT("web"),
                                    .type = SLICE_LIT("dev")}; /* parent_id, branch: nil */
    MSG_GOLDEN(msg_env_create_form, "env.create", create);
    struct msg_env_create branch = {.type = SLICE_LIT("preview"),
                                    .parent_id = SLICE_LIT("cm0env00000000000000000002"),
                                    .branch = SLICE_LIT("feature/x")};
    MSG_GOLDEN(msg_env_create_form, "env.create.branch", branch);

    struct mp_writer g, obj, keys, arr;
    mp_writer_init(&g);
    mp_put_uint(&g, 3600000);
    struct msg_env_rotate_key rotate = {SLICE_LIT("cm0env00000000000000000001"), msg_raw_of(&g)};
    MSG_GOLDEN(msg_env_rotate_key_form, "env.rotate_key", rotate);
    mp_writer_fini(&g);

    /* the replies: {env} with the keys, {env, created}, {envs: [env without keys]} */
    mp_writer_init(&obj);
    mp_writer_init(&keys);
    env_obj(&obj, &keys);
    struct msg_env_reply reply = {.env = msg_raw_of(&obj)};
    MSG_GOLDEN(msg_env_reply_form, "env.get.reply", reply);
    reply.created_given = true;
    reply.created = true;
    MSG_GOLDEN(msg_env_reply_form, "env.bootstrap.reply", reply);
    mp_writer_reset(&obj);
    mp_writer_init(&arr);
    mp_put_array(&arr, 1);
    env_obj(&arr, NULL);
    struct msg_env_list_reply list = {msg_raw_of(&arr)};
    MSG_GOLDEN(msg_env_list_reply_form, "env.list.reply", list);
    mp_writer_fini(&arr);
    mp_writer_fini(&keys);
    mp_writer_fini(&obj);
}

/* The handlers answer absent fields with words of their own: nothing is required. */
T_TEST(nothing_required)
{
    struct msg_env_resolve_key r;
    struct msg_env_get g;
    struct msg_env_create c;
    T_OK(msg_decode(&msg_env_resolve_key_form, NULL, 0, &r));
    T_ASSERT(r.key.p == NULL && r.branch.p == NULL);
    T_OK(msg_decode(&msg_env_get_form, NULL, 0, &g));
    T_ASSERT(g.id.p == NULL);
    T_OK(msg_decode(&msg_env_create_form, NULL, 0, &c));
    T_ASSERT(!c.org.p && !c.project.p && !c.type.p && !c.parent_id.p && !c.branch.p);

    /* an empty key or id is present (ERR_UNAUTH, ERR_NOTFOUND), a long one is read whole */
    char long_id[300];
    memset(long_id, 'c', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    struct msg_env_get in = {msg_str(long_id)};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_env_get_form, &w, &in);
    T_OK(msg_decode(&msg_env_get_form, mp_writer_data(&w), mp_writer_len(&w), &g));
    T_EQ(g.id.n, sizeof(long_id) - 1);
    mp_writer_reset(&w);
    struct msg_env_resolve_key empty = {.key = SLICE_LIT("")};
    msg_encode(&msg_env_resolve_key_form, &w, &empty);
    T_OK(msg_decode(&msg_env_resolve_key_form, mp_writer_data(&w), mp_writer_len(&w), &r));
    T_ASSERT(r.key.p != NULL && r.key.n == 0);

    /* a key of the wrong kind is refused by the decoder */
    mp_writer_reset(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "key", 7);
    T_ERR(msg_decode(&msg_env_resolve_key_form, mp_writer_data(&w), mp_writer_len(&w), &r),
          ERR_INVAL);
    mp_writer_fini(&w);
}

/* grace_ms: a uint, nil or absent for the default, anything else refused */
T_TEST(rotate_key_grace)
{
    struct msg_env_rotate_key in = {.id = SLICE_LIT("e")}, out;
    struct mp_writer w, g;
    uint64_t grace = 1;
    mp_writer_init(&w);
    msg_encode(&msg_env_rotate_key_form, &w, &in); /* grace_ms: nil */
    T_OK(msg_decode(&msg_env_rotate_key_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_OK(msg_raw_uint(out.grace_ms, 86400000, &grace));
    T_EQ(grace, 86400000u);
    T_OK(msg_decode(&msg_env_rotate_key_form, NULL, 0, &out)); /* absent */
    T_OK(msg_raw_uint(out.grace_ms, 86400000, &grace));
    T_EQ(grace, 86400000u);

    mp_writer_init(&g);
    mp_put_uint(&g, 0); /* 0: revoke now, not the default */
    in.grace_ms = msg_raw_of(&g);
    mp_writer_reset(&w);
    msg_encode(&msg_env_rotate_key_form, &w, &in);
    T_OK(msg_decode(&msg_env_rotate_key_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_OK(msg_raw_uint(out.grace_ms, 86400000, &grace));
    T_EQ(grace, 0u);

    mp_writer_reset(&g);
    mp_put_str(&g, "1h");
    in.grace_ms = msg_raw_of(&g);
    mp_writer_reset(&w);
    msg_encode(&msg_env_rotate_key_form, &w, &in);
    T_OK(msg_decode(&msg_env_rotate_key_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ERR(msg_raw_uint(out.grace_ms, 86400000, &grace), ERR_INVAL);
    mp_writer_fini(&g);
    mp_writer_fini(&w);
}

/* What the gateway and tetherctl read of an env object. */
T_TEST(env_object)
{
    struct mp_writer obj, keys;
    struct msg_env_obj o;
    struct slice k[MSG_ENV_SIGNING_KEYS_MAX];
    unsigned n = 0;
    mp_writer_init(&obj);
    mp_writer_init(&keys);
    env_obj(&obj, &keys);
    T_OK(msg_decode(&msg_env_obj_form, mp_writer_data(&obj), mp_writer_len(&obj), &o));
    T_ASSERT(slice_eq(o.id, "cm0env00000000000000000001") && slice_eq(o.api_key, KEY));
    T_ASSERT(o.parent_id.p == NULL && o.branch_name.p == NULL); /* written as nil */
    T_OK(msg_raw_strs(o.signing_keys, k, MSG_ENV_SIGNING_KEYS_MAX, 0, SIZE_MAX, &n));
    T_EQ(n, 2u);
    T_ASSERT(slice_eq(k[0], KEY) && slice_eq(k[1], OLD_KEY));
    T_EQ(o.created_at_ms, 1767225600000ull);

    /* without keys (env.list): neither key field is written */
    mp_writer_reset(&obj);
    env_obj(&obj, NULL);
    T_OK(msg_decode(&msg_env_obj_form, mp_writer_data(&obj), mp_writer_len(&obj), &o));
    T_ASSERT(o.api_key.p == NULL && o.signing_keys.p == NULL);
    T_ASSERT(memmem(mp_writer_data(&obj), mp_writer_len(&obj), "api_key", 7) == NULL);

    /* a reply without its env object is malformed; created is told from absent */
    struct msg_env_reply r;
    T_ERR(msg_decode(&msg_env_reply_form, NULL, 0, &r), ERR_INVAL);
    struct msg_env_reply in = {.env = msg_raw_of(&obj), .created_given = true};
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_env_reply_form, &w, &in);
    T_OK(msg_decode(&msg_env_reply_form, mp_writer_data(&w), mp_writer_len(&w), &r));
    T_ASSERT(r.created_given && !r.created);
    mp_writer_fini(&w);
    mp_writer_fini(&keys);
    mp_writer_fini(&obj);
}

int main(void)
{
    T_RUN(golden);
    T_RUN(nothing_required);
    T_RUN(rotate_key_grace);
    T_RUN(env_object);
    return T_DONE();
}
