/*
 * msg_wp.c - the field tables of the wp.* bodies (msg_wp.h).
 */
#include "msg_wp.h"

#define REQ MSGF_REQUIRED
#define NIL MSGF_NIL

#define S struct msg_wp_create
static const struct msg_field create_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, MSG_WP_ENV_MAX),
    MSGF(S, kind, MSGF_STR, REQ, MSG_WP_KIND_MAX),
    MSGF(S, run, MSGF_STR, NIL, MSG_WP_RUN_MAX),
    MSGF(S, idempotency_key, MSGF_STR, NIL, MSG_WP_IDEM_MAX),
    MSGF(S, idempotency_ttl_ms, MSGF_U64, 0, 0),
    MSGF(S, timeout_at_ms, MSGF_U64, 0, 0),
    MSGF(S, tags, MSGF_RAW, 0, 0),
    MSGF(S, key, MSGF_STR, 0, MSG_WP_KEY_MAX),
    MSGF(S, io, MSGF_STR, 0, MSG_WP_IO_MAX),
    MSGF_G(S, from_seq, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_wp_create_form = MSG_FORM("wp.create request", create_fields);

#define S struct msg_wp_complete
static const struct msg_field complete_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, MSG_WP_ENV_MAX),
    MSGF(S, id, MSGF_STR, 0, MSG_WP_ID_MAX),
    MSGF(S, output, MSGF_STR, NIL, MSG_WP_OUTPUT_MAX),
    MSGF(S, output_type, MSGF_STR, 0, MSG_WP_TYPE_MAX),
};
#undef S
const struct msg_form msg_wp_complete_form = MSG_FORM("wp.complete request", complete_fields);

#define S struct msg_wp_get
static const struct msg_field get_fields[] = {
    MSGF(S, env_id, MSGF_STR, 0, MSG_WP_ENV_MAX),
    MSGF(S, id, MSGF_STR, 0, MSG_WP_ID_MAX),
    MSGF(S, kind, MSGF_STR, 0, MSG_WP_KIND_MAX),
    MSGF(S, any_env, MSGF_BOOL, MSGF_OMIT0, 0),
};
#undef S
const struct msg_form msg_wp_get_form = MSG_FORM("wp.get request", get_fields);

#define S struct msg_wp_list
static const struct msg_field list_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, MSG_WP_ENV_MAX),
    MSGF(S, kind, MSGF_STR, REQ, MSG_WP_KIND_MAX),
    MSGF(S, statuses, MSGF_RAW, 0, 0),
    MSGF(S, idempotency_key, MSGF_STR, NIL, MSG_WP_IDEM_MAX),
    MSGF(S, tags, MSGF_RAW, 0, 0),
    MSGF(S, after, MSGF_STR, NIL, MSG_WP_ID_MAX),
    MSGF(S, limit, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_wp_list_form = MSG_FORM("wp.list request", list_fields);

#define S struct msg_wp_block
static const struct msg_field block_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, MSG_WP_ENV_MAX),
    MSGF(S, id, MSGF_STR, 0, MSG_WP_ID_MAX),
    MSGF(S, run, MSGF_STR, 0, MSG_WP_RUN_MAX),
};
#undef S
const struct msg_form msg_wp_block_form = MSG_FORM("wp.block request", block_fields);

#define S struct msg_wp_completed
static const struct msg_field completed_fields[] = {
    MSGF(S, waitpoint_ids, MSGF_RAW, REQ, 0),
};
#undef S
const struct msg_form msg_wp_completed_form = MSG_FORM("wp.completed event", completed_fields);

#define S struct msg_wp_reply
static const struct msg_field reply_fields[] = {
    MSGF(S, waitpoint, MSGF_RAW, REQ, 0),
    MSGF_G(S, is_cached, MSGF_BOOL, 0, 0),
    MSGF_G(S, completed, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_wp_reply_form = MSG_FORM("wp reply", reply_fields);

#define S struct msg_wp_list_reply
static const struct msg_field list_reply_fields[] = {
    MSGF(S, waitpoints, MSGF_RAW, REQ, 0),
    MSGF(S, more, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_wp_list_reply_form = MSG_FORM("wp.list reply", list_reply_fields);
