/*
 * msg_session_test.c - the session.* request bodies (proto/msg_session.h): their golden
 * files, and what the session-manager relies on of each.
 */
#include <string.h>

#include "msg_golden.h"
#include "msg_session.h"

T_TEST(golden)
{
    struct msg_session_create create = {
        .env_id = SLICE_LIT("env_1"),
        .org_id = SLICE_LIT("org_1"),
        .project_id = SLICE_LIT("proj_1"),
        .env_type = SLICE_LIT("DEVELOPMENT"),
        .type = SLICE_LIT("chat.agent"),
        .external_id = SLICE_LIT("chat-42"),
        .task_identifier = SLICE_LIT("agent"),
        .trigger_config = SLICE_LIT("{\"basePayload\":{}}"),
        .tags = SLICE_LIT("[\"a\"]"),
        .expires_at_ms = 1767225600000ull,
        .request_id = SLICE_LIT("req-1"),
    };
    MSG_GOLDEN(msg_session_create_form, "session.create", create);
    struct msg_session_get get = {SLICE_LIT("env_1"), SLICE_LIT("chat-42")};
    MSG_GOLDEN(msg_session_get_form, "session.get", get);
    struct msg_session_update update = {
        .env_id = SLICE_LIT("env_1"),
        .ref = SLICE_LIT("session_abc"),
        .metadata_given = true, /* nil: clears */
    };
    MSG_GOLDEN(msg_session_update_form, "session.update", update);
    struct msg_session_close close = {SLICE_LIT("env_1"), SLICE_LIT("session_abc"),
                                      SLICE_LIT("done")};
    MSG_GOLDEN(msg_session_close_form, "session.close", close);
    struct msg_session_blob_put put = {SLICE_LIT("env_1"), SLICE_LIT("session_abc"),
                                       SLICE_LIT("snapshot"), SLICE_LIT("application/json"),
                                       SLICE_LIT("{}")};
    MSG_GOLDEN(msg_session_blob_put_form, "session.blob_put", put);
    struct msg_session_blob_get bget = {SLICE_LIT("env_1"), SLICE_LIT("session_abc"),
                                        SLICE_LIT("snapshot")};
    MSG_GOLDEN(msg_session_blob_get_form, "session.blob_get", bget);
}

/* update tells "leave" (absent) from "clear" (nil) from "set" */
T_TEST(update_metadata_three_ways)
{
    struct msg_session_update in = {.env_id = SLICE_LIT("e"), .ref = SLICE_LIT("r")}, out;
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_update_form, &w, &in);
    T_OK(msg_decode(&msg_session_update_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(!out.metadata_given && !out.tags_given);
    mp_writer_reset(&w);
    in.metadata_given = true;
    msg_encode(&msg_session_update_form, &w, &in);
    T_OK(msg_decode(&msg_session_update_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(out.metadata_given && out.metadata.p == NULL);
    mp_writer_reset(&w);
    in.metadata = SLICE_LIT("{\"k\":1}");
    msg_encode(&msg_session_update_form, &w, &in);
    T_OK(msg_decode(&msg_session_update_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(out.metadata_given && slice_eq(out.metadata, "{\"k\":1}"));
    mp_writer_fini(&w);
}

T_TEST(create_requires)
{
    struct msg_session_create in = {
        .env_id = SLICE_LIT("e"), .type = SLICE_LIT("t"), .task_identifier = SLICE_LIT("k")};
    struct msg_session_create out;
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_session_create_form, &w, &in); /* no trigger_config */
    T_ERR(msg_decode(&msg_session_create_form, mp_writer_data(&w), mp_writer_len(&w), &out),
          ERR_INVAL);
    mp_writer_reset(&w);
    in.trigger_config = SLICE_LIT("{}");
    msg_encode(&msg_session_create_form, &w, &in);
    T_OK(msg_decode(&msg_session_create_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(out.external_id.p == NULL && out.metadata.p == NULL);
    mp_writer_fini(&w);
}

int main(void)
{
    T_RUN(golden);
    T_RUN(update_metadata_three_ways);
    T_RUN(create_requires);
    return T_DONE();
}
