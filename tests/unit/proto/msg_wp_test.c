/*
 * msg_wp_test.c - the wp.* bodies (proto/msg_wp.h): their golden files, and what the
 * waitpoint-registry and the gateway rely on of each.
 */
#include <stdlib.h>
#include <string.h>

#include "msg_golden.h"
#include "msg_raw.h"
#include "msg_wp.h"

#define ENV "cm0env00000000000000000001"
#define WP "waitpoint_cm0wpt00000000000000000001"

/* w holds the array of the n strings items (a raw field's value). */
static struct slice strs(struct mp_writer *w, const char *const *items, unsigned n)
{
    mp_writer_reset(w);
    msg_raw_put_strs(w, items, n);
    return msg_raw_of(w);
}

/* A waitpoint object: opaque to the codec, two of its fields are enough. */
static struct slice waitpoint(struct mp_writer *w)
{
    mp_writer_reset(w);
    mp_put_map(w, 2);
    mp_put_kv_str(w, "id", WP);
    mp_put_kv_str(w, "status", "PENDING");
    return msg_raw_of(w);
}

T_TEST(golden_requests)
{
    struct mp_writer a, b;
    mp_writer_init(&a);
    mp_writer_init(&b);
    const char *tags[] = {"a", "b"};
    struct msg_wp_create stream = {
        .env_id = SLICE_LIT(ENV),
        .kind = SLICE_LIT("SESSION_STREAM"),
        .run = SLICE_LIT("run_cm0run00000000000000000001"),
        .timeout_at_ms = 1767225600000ull,
        .tags = strs(&a, tags, 2),
        .key = SLICE_LIT("chat-42"),
        .io = SLICE_LIT("in"),
        .from_seq_given = true, /* 0: from the first record */
    };
    MSG_GOLDEN(msg_wp_create_form, "wp.create", stream);
    struct msg_wp_create token = {
        .env_id = SLICE_LIT(ENV),
        .kind = SLICE_LIT("MANUAL"), /* run: nil */
        .idempotency_key = SLICE_LIT("idem-1"),
        .idempotency_ttl_ms = 3600000,
        .tags = strs(&a, NULL, 0),
    };
    MSG_GOLDEN(msg_wp_create_form, "wp.create.token", token);
    struct msg_wp_complete complete = {SLICE_LIT(ENV), SLICE_LIT(WP), SLICE_LIT("{\"ok\":true}"),
                                       SLICE_LIT("application/json")};
    MSG_GOLDEN(msg_wp_complete_form, "wp.complete", complete);
    struct msg_wp_get get = {SLICE_LIT(ENV), SLICE_LIT(WP), SLICE_LIT("MANUAL"), false};
    MSG_GOLDEN(msg_wp_get_form, "wp.get", get);
    struct msg_wp_get any = {SLICE_NULL, SLICE_LIT(WP), SLICE_LIT("MANUAL"), true};
    MSG_GOLDEN(msg_wp_get_form, "wp.get.any_env", any);
    const char *st[] = {"PENDING", "TIMED_OUT"};
    struct msg_wp_list list = {
        .env_id = SLICE_LIT(ENV),
        .kind = SLICE_LIT("MANUAL"),
        .statuses = strs(&a, st, 2),
        .tags = strs(&b, tags, 1), /* idempotency_key, after: nil */
        .limit = 25,
    };
    MSG_GOLDEN(msg_wp_list_form, "wp.list", list);
    struct msg_wp_block block = {SLICE_LIT(ENV), SLICE_LIT(WP),
                                 SLICE_LIT("run_cm0run00000000000000000001")};
    MSG_GOLDEN(msg_wp_block_form, "wp.block", block);
    const char *ids[] = {WP, "waitpoint_cm0wpt00000000000000000002"};
    struct msg_wp_completed completed = {strs(&a, ids, 2)};
    MSG_GOLDEN(msg_wp_completed_form, "wp.completed", completed);
    mp_writer_fini(&b);
    mp_writer_fini(&a);
}

T_TEST(golden_replies)
{
    struct mp_writer a, b;
    mp_writer_init(&a);
    mp_writer_init(&b);
    struct msg_wp_reply created = {.waitpoint = waitpoint(&a), .is_cached_given = true};
    MSG_GOLDEN(msg_wp_reply_form, "wp.create.reply", created);
    struct msg_wp_reply completed = {
        .waitpoint = waitpoint(&a), .completed = true, .completed_given = true};
    MSG_GOLDEN(msg_wp_reply_form, "wp.complete.reply", completed);
    struct msg_wp_reply got = {.waitpoint = waitpoint(&a)};
    MSG_GOLDEN(msg_wp_reply_form, "wp.get.reply", got);
    struct slice one = waitpoint(&a);
    mp_put_array(&b, 1);
    mp_put_raw(&b, one.p, one.n);
    struct msg_wp_list_reply listed = {msg_raw_of(&b), true};
    MSG_GOLDEN(msg_wp_list_reply_form, "wp.list.reply", listed);
    mp_writer_fini(&b);
    mp_writer_fini(&a);
}

/* env_id is required but by wp.get (any_env); the limits are the registry's buffers. */
T_TEST(required_and_limits)
{
    struct msg_wp_create c = {.kind = SLICE_LIT("MANUAL")}, cout;
    T_ERR(msg_golden_again(&msg_wp_create_form, &c, &cout), ERR_INVAL);
    c.env_id = SLICE_LIT(ENV);
    T_OK(msg_golden_again(&msg_wp_create_form, &c, &cout));
    T_ASSERT(!cout.from_seq_given && cout.tags.p == NULL && cout.key.p == NULL);
    c.kind = SLICE_LIT("SESSION_STREAM_X"); /* 16 bytes: over kind[16] */
    T_ERR(msg_golden_again(&msg_wp_create_form, &c, &cout), ERR_INVAL);

    struct msg_wp_get g = {.id = SLICE_LIT(WP)}, gout;
    T_OK(msg_golden_again(&msg_wp_get_form, &g, &gout));
    T_ASSERT(gout.env_id.p == NULL && !gout.any_env);
    char id[MSG_WP_ID_MAX + 2];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    g.id = msg_str(id); /* 80 bytes: over ref[80] */
    T_ERR(msg_golden_again(&msg_wp_get_form, &g, &gout), ERR_INVAL);

    struct msg_wp_block bl = {.id = SLICE_LIT(WP)}, blout;
    T_ERR(msg_golden_again(&msg_wp_block_form, &bl, &blout), ERR_INVAL);
    struct msg_wp_list l = {.env_id = SLICE_LIT(ENV)}, lout;
    T_ERR(msg_golden_again(&msg_wp_list_form, &l, &lout), ERR_INVAL); /* no kind */

    /* an output of the registry's size passes, one byte more does not */
    struct msg_wp_complete m = {.env_id = SLICE_LIT(ENV), .id = SLICE_LIT(WP)}, mout;
    char *big = malloc(MSG_WP_OUTPUT_MAX + 1);
    memset(big, 'o', MSG_WP_OUTPUT_MAX + 1);
    m.output = (struct slice){big, MSG_WP_OUTPUT_MAX};
    T_OK(msg_golden_again(&msg_wp_complete_form, &m, &mout));
    m.output.n++;
    T_ERR(msg_golden_again(&msg_wp_complete_form, &m, &mout), ERR_INVAL);
    free(big);
}

/* tags and statuses: what msg_raw_strs lets through to the registry's checks */
T_TEST(string_arrays)
{
    struct slice items[MSG_WP_TAGS_MAX];
    unsigned n = 99;
    struct mp_writer w;
    mp_writer_init(&w);
    const char *eleven[11] = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"};
    T_OK(msg_raw_strs(SLICE_NULL, items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n));
    T_EQ(n, 0u);
    T_OK(msg_raw_strs(strs(&w, eleven, 10), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n));
    T_EQ(n, 10u);
    T_ASSERT(slice_eq(items[9], "10"));
    T_ERR(msg_raw_strs(strs(&w, eleven, 11), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n),
          ERR_INVAL);
    const char *empty[] = {""};
    T_ERR(msg_raw_strs(strs(&w, empty, 1), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n),
          ERR_INVAL);
    char long_tag[MSG_WP_TAG_MAX + 2];
    memset(long_tag, 't', sizeof(long_tag) - 1);
    long_tag[sizeof(long_tag) - 1] = '\0';
    const char *lt[] = {long_tag};
    T_ERR(msg_raw_strs(strs(&w, lt, 1), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n), ERR_INVAL);
    mp_writer_reset(&w);
    mp_put_array(&w, 1);
    mp_put_strn(&w, "a\0b", 3); /* a NUL inside */
    T_ERR(msg_raw_strs(msg_raw_of(&w), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n), ERR_INVAL);
    mp_writer_reset(&w);
    mp_put_nil(&w); /* nil: none */
    T_OK(msg_raw_strs(msg_raw_of(&w), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n));
    T_EQ(n, 0u);
    mp_writer_reset(&w);
    mp_put_str(&w, "a"); /* a string is no array */
    T_ERR(msg_raw_strs(msg_raw_of(&w), items, MSG_WP_TAGS_MAX, 1, MSG_WP_TAG_MAX, &n), ERR_INVAL);
    mp_writer_fini(&w);
}

/* the flags of the one reply form: each told from absent */
T_TEST(reply_flags)
{
    struct mp_writer a;
    mp_writer_init(&a);
    struct msg_wp_reply in = {.waitpoint = waitpoint(&a),
                              .is_cached = true,
                              .is_cached_given = true},
                        out;
    T_OK(msg_golden_again(&msg_wp_reply_form, &in, &out));
    T_ASSERT(out.is_cached && out.is_cached_given && !out.completed_given);
    T_ASSERT(out.waitpoint.n == in.waitpoint.n);
    struct msg_wp_reply none = {0};
    T_ERR(msg_golden_again(&msg_wp_reply_form, &none, &out), ERR_INVAL); /* no waitpoint */
    mp_writer_fini(&a);
}

int main(void)
{
    T_RUN(golden_requests);
    T_RUN(golden_replies);
    T_RUN(required_and_limits);
    T_RUN(string_arrays);
    T_RUN(reply_flags);
    return T_DONE();
}
