/*
 * msg_list.c - the field tables of session.list and session.changed (msg_list.h).
 */
#include "msg_list.h"

#define ID MSG_SESSION_LIST_ID_MAX
#define REQ MSGF_REQUIRED
#define NIL MSGF_NIL

#define S struct msg_session_list
static const struct msg_field list_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, ID),
    MSGF(S, org_id, MSGF_STR, REQ, ID),
    MSGF(S, project_id, MSGF_STR, REQ, ID),
    MSGF(S, size, MSGF_U64, 0, 0),
    MSGF(S, after, MSGF_STR, NIL, ID),
    MSGF(S, before, MSGF_STR, NIL, ID),
    MSGF(S, types, MSGF_RAW, 0, 0),
    MSGF(S, tags, MSGF_RAW, 0, 0),
    MSGF(S, tasks, MSGF_RAW, 0, 0),
    MSGF(S, external_id, MSGF_STR, NIL, MSG_SESSION_LIST_VAL_MAX),
    MSGF(S, statuses, MSGF_U64, 0, 0),
    MSGF(S, from_ms, MSGF_U64, 0, 0),
    MSGF(S, to_ms, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_session_list_form = MSG_FORM("session.list request", list_fields);

#define S struct msg_session_list_reply
static const struct msg_field list_reply_fields[] = {
    MSGF(S, sessions, MSGF_RAW, REQ, 0),
    MSGF(S, next, MSGF_STR, NIL, 0),
    MSGF(S, previous, MSGF_STR, NIL, 0),
};
#undef S
const struct msg_form msg_session_list_reply_form =
    MSG_FORM("session.list reply", list_reply_fields);

#define S struct msg_session_changed
static const struct msg_field changed_fields[] = {
    MSGF(S, env_id, MSGF_STR, REQ, MSG_SESSION_ID_MAX),
    MSGF(S, friendly_id, MSGF_STR, NIL, MSG_SESSION_KEY_MAX),
    MSGF(S, external_id, MSGF_STR, NIL, MSG_SESSION_KEY_MAX),
};
#undef S
const struct msg_form msg_session_changed_form = MSG_FORM("session.changed event", changed_fields);
