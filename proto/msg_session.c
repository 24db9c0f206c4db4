/*
 * msg_session.c - the field tables of the session.* requests (msg_session.h).
 */
#include "msg_session.h"

#define ID MSG_SESSION_ID_MAX
#define KEY MSG_SESSION_KEY_MAX
#define JSON MSG_SESSION_JSON_MAX
#define REQ MSGF_REQUIRED

#define S struct msg_session_create
static const struct msg_field create_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, org_id, MSGF_STR, 0, ID),
    MSGF(S, project_id, MSGF_STR, 0, ID),
    MSGF(S, env_type, MSGF_STR, 0, KEY),
    MSGF(S, type, MSGF_STR, REQ, KEY),
    MSGF(S, external_id, MSGF_STR, MSGF_NIL, KEY),
    MSGF(S, task_identifier, MSGF_STR, REQ, KEY),
    MSGF(S, trigger_config, MSGF_STR, REQ, JSON),
    MSGF(S, tags, MSGF_STR, 0, JSON),
    MSGF(S, metadata, MSGF_STR, MSGF_NIL, JSON),
    MSGF(S, expires_at_ms, MSGF_U64, 0, 0),
    MSGF(S, request_id, MSGF_STR, 0, KEY),
};
#undef S
const struct msg_form msg_session_create_form = MSG_FORM("session.create request", create_fields);

#define S struct msg_session_get
static const struct msg_field get_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, ref, MSGF_STR, REQ, KEY),
};
#undef S
const struct msg_form msg_session_get_form = MSG_FORM("session.get request", get_fields);

#define S struct msg_session_update
static const struct msg_field update_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, ref, MSGF_STR, REQ, KEY),
    MSGF_G(S, tags, MSGF_STR, 0, JSON),
    MSGF_G(S, metadata, MSGF_STR, 0, JSON),
};
#undef S
const struct msg_form msg_session_update_form = MSG_FORM("session.update request", update_fields);

#define S struct msg_session_close
static const struct msg_field close_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, ref, MSGF_STR, REQ, KEY),
    MSGF(S, reason, MSGF_STR, MSGF_NIL, 0),
};
#undef S
const struct msg_form msg_session_close_form = MSG_FORM("session.close request", close_fields);

#define S struct msg_session_blob_put
static const struct msg_field blob_put_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID), MSGF(S, ref, MSGF_STR, REQ, KEY),
    MSGF(S, name, MSGF_STR, REQ, KEY),  MSGF(S, content_type, MSGF_STR, REQ, KEY),
    MSGF(S, body, MSGF_BIN, REQ, 0),
};
#undef S
const struct msg_form msg_session_blob_put_form =
    MSG_FORM("session.blob_put request", blob_put_fields);

#define S struct msg_session_blob_get
static const struct msg_field blob_get_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, ref, MSGF_STR, REQ, KEY),
    MSGF(S, name, MSGF_STR, REQ, KEY),
};
#undef S
const struct msg_form msg_session_blob_get_form =
    MSG_FORM("session.blob_get request", blob_get_fields);
