/*
 * msg_list_test.c - session.list and session.changed (proto/msg_list.h): their golden files,
 * and what the clickhouse-replicator and the gateway's session cache rely on of each.
 */
#include <string.h>

#include "msg_golden.h"
#include "msg_list.h"
#include "msg_raw.h"

#define ENV "cm0env00000000000000000001"

/* w holds the array of the n strings items (a raw field's value). */
static struct slice strs(struct mp_writer *w, const char *const *items, unsigned n)
{
    mp_writer_reset(w);
    msg_raw_put_strs(w, items, n);
    return msg_raw_of(w);
}

T_TEST(golden)
{
    struct mp_writer a, b, c;
    mp_writer_init(&a);
    mp_writer_init(&b);
    mp_writer_init(&c);
    const char *types[] = {"chat.agent"}, *tags[] = {"a", "b"};
    struct msg_session_list list = {
        .env_id = SLICE_LIT(ENV),
        .org_id = SLICE_LIT("cm0org00000000000000000001"),
        .project_id = SLICE_LIT("cm0prj00000000000000000001"),
        .size = 20,
        .after = SLICE_LIT("cm0ses00000000000000000009"), /* before: nil */
        .types = strs(&a, types, 1),
        .tags = strs(&b, tags, 2),
        .tasks = strs(&c, NULL, 0),
        .external_id = SLICE_LIT("chat-42"),
        .statuses = 1 | 2,
        .from_ms = 1767225600000ull, /* to_ms: 0 */
    };
    MSG_GOLDEN(msg_session_list_form, "session.list", list);

    mp_writer_reset(&a);
    mp_put_array(&a, 1);
    mp_put_map(&a, 2); /* a session object: opaque to the codec */
    mp_put_kv_str(&a, "id", "cm0ses00000000000000000008");
    mp_put_kv_str(&a, "friendly_id", "session_cm0ses00000000000000000008");
    struct msg_session_list_reply reply = {msg_raw_of(&a), SLICE_LIT("cm0ses00000000000000000008"),
                                           SLICE_NULL};
    MSG_GOLDEN(msg_session_list_reply_form, "session.list.reply", reply);

    struct msg_session_changed changed = {SLICE_LIT(ENV),
                                          SLICE_LIT("session_cm0ses00000000000000000008"),
                                          SLICE_NULL}; /* no external id: nil */
    MSG_GOLDEN(msg_session_changed_form, "session.changed", changed);
    mp_writer_fini(&c);
    mp_writer_fini(&b);
    mp_writer_fini(&a);
}

/* The replicator's checks: the three ids required, cursors and values within its buffers. */
T_TEST(list_limits)
{
    struct msg_session_list in = {.env_id = SLICE_LIT(ENV), .org_id = SLICE_LIT("o"), .size = 1},
                            out;
    T_ERR(msg_golden_again(&msg_session_list_form, &in, &out), ERR_INVAL); /* no project_id */
    in.project_id = SLICE_LIT("");
    T_ERR(msg_golden_again(&msg_session_list_form, &in, &out), ERR_INVAL); /* empty */
    in.project_id = SLICE_LIT("p");
    T_OK(msg_golden_again(&msg_session_list_form, &in, &out));
    T_ASSERT(!out.after.p && !out.before.p && !out.external_id.p && !out.types.p);
    T_EQ(out.statuses, 0u);

    char id[MSG_SESSION_LIST_ID_MAX + 2];
    memset(id, 'c', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    in.after = msg_str(id); /* 64 bytes: over after[64] */
    T_ERR(msg_golden_again(&msg_session_list_form, &in, &out), ERR_INVAL);
    id[sizeof(id) - 2] = '\0';
    in.after = msg_str(id);
    T_OK(msg_golden_again(&msg_session_list_form, &in, &out));
    in.after = SLICE_NULL;

    char ext[MSG_SESSION_LIST_VAL_MAX + 2];
    memset(ext, 'e', sizeof(ext) - 1);
    ext[sizeof(ext) - 1] = '\0';
    in.external_id = msg_str(ext); /* 257 bytes */
    T_ERR(msg_golden_again(&msg_session_list_form, &in, &out), ERR_INVAL);
    in.external_id = SLICE_LIT(""); /* present and empty: a filter on "" */
    T_OK(msg_golden_again(&msg_session_list_form, &in, &out));
    T_ASSERT(out.external_id.p && out.external_id.n == 0);

    /* the lists: 32 values of 0-256 bytes */
    struct slice v[MSG_SESSION_LIST_VALS_MAX];
    const char *vals[MSG_SESSION_LIST_VALS_MAX + 1];
    unsigned n;
    for (unsigned i = 0; i <= MSG_SESSION_LIST_VALS_MAX; i++)
        vals[i] = i ? "t" : ""; /* an empty value is a value */
    struct mp_writer w;
    mp_writer_init(&w);
    T_OK(msg_raw_strs(strs(&w, vals, MSG_SESSION_LIST_VALS_MAX), v, MSG_SESSION_LIST_VALS_MAX, 0,
                      MSG_SESSION_LIST_VAL_MAX, &n));
    T_EQ(n, (unsigned)MSG_SESSION_LIST_VALS_MAX);
    T_ERR(msg_raw_strs(strs(&w, vals, MSG_SESSION_LIST_VALS_MAX + 1), v, MSG_SESSION_LIST_VALS_MAX,
                       0, MSG_SESSION_LIST_VAL_MAX, &n),
          ERR_INVAL);
    const char *long_val[] = {ext};
    T_ERR(msg_raw_strs(strs(&w, long_val, 1), v, MSG_SESSION_LIST_VALS_MAX, 0,
                       MSG_SESSION_LIST_VAL_MAX, &n),
          ERR_INVAL);
    mp_writer_fini(&w);
}

/* The gateway drops by friendly id and by external id, each only when given. */
T_TEST(changed)
{
    struct msg_session_changed in = {.env_id = SLICE_LIT(ENV), .external_id = SLICE_LIT("x")}, out;
    T_OK(msg_golden_again(&msg_session_changed_form, &in, &out));
    T_ASSERT(out.friendly_id.p == NULL && slice_eq(out.external_id, "x"));
    in.env_id = SLICE_NULL;
    T_ERR(msg_golden_again(&msg_session_changed_form, &in, &out), ERR_INVAL);
    /* a reply without its sessions is malformed */
    struct msg_session_list_reply r;
    T_ERR(msg_decode(&msg_session_list_reply_form, NULL, 0, &r), ERR_INVAL);
}

int main(void)
{
    T_RUN(golden);
    T_RUN(list_limits);
    T_RUN(changed);
    return T_DONE();
}
