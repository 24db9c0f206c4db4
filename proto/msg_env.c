/*
 * msg_env.c - the field tables of the env.* bodies (msg_env.h).
 */
#include "msg_env.h"

#define S struct msg_env_resolve_key
static const struct msg_field resolve_key_fields[] = {
    MSGF(S, key, MSGF_STR, 0, 0),
    MSGF(S, branch, MSGF_STR, MSGF_NIL, 0),
};
#undef S
const struct msg_form msg_env_resolve_key_form =
    MSG_FORM("env.resolve_key request", resolve_key_fields);

#define S struct msg_env_get
static const struct msg_field get_fields[] = {
    MSGF(S, id, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_env_get_form = MSG_FORM("env.get request", get_fields);

#define S struct msg_env_create
static const struct msg_field create_fields[] = {
    MSGF(S, org, MSGF_STR, MSGF_NIL, 0),    MSGF(S, project, MSGF_STR, MSGF_NIL, 0),
    MSGF(S, type, MSGF_STR, MSGF_NIL, 0),   MSGF(S, parent_id, MSGF_STR, MSGF_NIL, 0),
    MSGF(S, branch, MSGF_STR, MSGF_NIL, 0),
};
#undef S
const struct msg_form msg_env_create_form = MSG_FORM("env.create request", create_fields);

#define S struct msg_env_rotate_key
static const struct msg_field rotate_key_fields[] = {
    MSGF(S, id, MSGF_STR, 0, 0),
    MSGF(S, grace_ms, MSGF_RAW, MSGF_NIL, 0),
};
#undef S
const struct msg_form msg_env_rotate_key_form =
    MSG_FORM("env.rotate_key request", rotate_key_fields);

#define S struct msg_env_obj
static const struct msg_field obj_fields[] = {
    MSGF(S, id, MSGF_STR, 0, 0),
    MSGF(S, type, MSGF_STR, 0, 0),
    MSGF(S, slug, MSGF_STR, 0, 0),
    MSGF(S, organization_id, MSGF_STR, 0, 0),
    MSGF(S, organization_slug, MSGF_STR, 0, 0),
    MSGF(S, project_id, MSGF_STR, 0, 0),
    MSGF(S, project_slug, MSGF_STR, 0, 0),
    MSGF(S, parent_id, MSGF_STR, MSGF_NIL, 0),
    MSGF(S, branch_name, MSGF_STR, MSGF_NIL, 0),
    MSGF(S, api_key, MSGF_STR, 0, 0),
    MSGF(S, signing_keys, MSGF_RAW, 0, 0),
    MSGF(S, created_at_ms, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_env_obj_form = MSG_FORM("env object", obj_fields);

#define S struct msg_env_reply
static const struct msg_field reply_fields[] = {
    MSGF(S, env, MSGF_RAW, MSGF_REQUIRED, 0),
    MSGF_G(S, created, MSGF_BOOL, 0, 0),
};
#undef S
const struct msg_form msg_env_reply_form = MSG_FORM("env reply", reply_fields);

#define S struct msg_env_list_reply
static const struct msg_field list_reply_fields[] = {
    MSGF(S, envs, MSGF_RAW, MSGF_REQUIRED, 0),
};
#undef S
const struct msg_form msg_env_list_reply_form = MSG_FORM("env.list reply", list_reply_fields);
