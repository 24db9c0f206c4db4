/*
 * msg_forms.c - the typed body of each message (msg_forms.h), in catalogue order.
 */
#include "msg_forms.h"

#include "msg.h"
#include "msg_env.h"
#include "msg_list.h"
#include "msg_run.h"
#include "msg_session.h"
#include "msg_stream.h"
#include "msg_sv.h"
#include "msg_wp.h"

#define SESSION_OBJ "a session object, read by the gateway's renderer (gw_session_item)"

const struct msg_forms msg_forms[] = {
    {MSG_HEALTH_PING, NULL, &msg_bus_health_form, NULL},
    {MSG_BUS_ECHO, &msg_bus_echo_form, &msg_bus_echo_form, NULL},
    {MSG_BUS_FAULT, &msg_bus_fault_form, NULL, NULL},
    {MSG_BUS_TAP, &msg_bus_tap_form, NULL, NULL},
    {MSG_CLUSTER_MEMBERS, &msg_bus_cluster_form, NULL, NULL},
    {MSG_SV_STATUS, NULL, &msg_sv_status_reply_form, NULL},
    {MSG_SV_START, &msg_sv_child_form, &msg_sv_child_reply_form, NULL},
    {MSG_SV_STOP, &msg_sv_child_form, &msg_sv_child_reply_form, NULL},
    {MSG_SV_RESTART, &msg_sv_child_form, &msg_sv_child_reply_form, NULL},
    {MSG_SV_KILL, &msg_sv_kill_form, &msg_sv_child_reply_form, NULL},
    {MSG_SV_FAULT_SET, &msg_sv_fault_set_form, &msg_sv_fault_set_reply_form, NULL},
    {MSG_SV_FAULT_LIST, NULL, &msg_sv_fault_list_reply_form, NULL},
    {MSG_SV_TAP_FILTER, &msg_sv_tap_filter_form, &msg_sv_tap_filter_reply_form, NULL},
    {MSG_ENV_RESOLVE_KEY, &msg_env_resolve_key_form, &msg_env_reply_form, NULL},
    {MSG_ENV_GET, &msg_env_get_form, &msg_env_reply_form, NULL},
    {MSG_ENV_CREATE, &msg_env_create_form, &msg_env_reply_form, NULL},
    {MSG_ENV_ROTATE_KEY, &msg_env_rotate_key_form, &msg_env_reply_form, NULL},
    {MSG_ENV_BOOTSTRAP, NULL, &msg_env_reply_form, NULL},
    {MSG_ENV_LIST, NULL, &msg_env_list_reply_form, NULL},
    {MSG_SESSION_CREATE, &msg_session_create_form, NULL, SESSION_OBJ},
    {MSG_SESSION_GET, &msg_session_get_form, NULL, SESSION_OBJ},
    {MSG_SESSION_UPDATE, &msg_session_update_form, NULL, SESSION_OBJ},
    {MSG_SESSION_CLOSE, &msg_session_close_form, NULL, SESSION_OBJ},
    {MSG_SESSION_CHANGED, &msg_session_changed_form, NULL, NULL},
    {MSG_SESSION_BLOB_PUT, &msg_session_blob_put_form, NULL, "{size}, read by the snapshot route"},
    {MSG_SESSION_BLOB_GET, &msg_session_blob_get_form, NULL,
     "{content_type, body, updated_at_ms}, read by the snapshot and transcript routes"},
    {MSG_SESSION_LIST, &msg_session_list_form, &msg_session_list_reply_form, NULL},
    {MSG_RUN_ENSURE, &msg_run_ensure_form, &msg_run_ensure_reply_form, NULL},
    {MSG_RUN_SWAP, &msg_run_swap_form, &msg_run_swap_reply_form, NULL},
    {MSG_RUN_GET, &msg_run_get_form, &msg_run_get_reply_form, NULL},
    {MSG_RUN_CANCEL, &msg_run_cancel_form, &msg_run_cancel_reply_form, NULL},
    {MSG_RUN_DEQUEUE, &msg_run_dequeue_form, &msg_run_dequeue_reply_form, NULL},
    {MSG_RUN_HEARTBEAT, &msg_run_heartbeat_form, &msg_run_heartbeat_reply_form, NULL},
    {MSG_RUN_COMPLETE, &msg_run_complete_form, NULL, NULL},
    {MSG_RUN_FAIL, &msg_run_fail_form, &msg_run_fail_reply_form, NULL},
    {MSG_RUN_RELEASE, &msg_run_release_form, &msg_run_release_reply_form, NULL},
    {MSG_RUN_QUEUED, &msg_run_queued_form, NULL, NULL},
    {MSG_RUN_SUSPEND, &msg_run_suspend_form, &msg_run_suspend_reply_form, NULL},
    {MSG_RUN_WAKE, &msg_run_wake_form, &msg_run_wake_reply_form, NULL},
    {MSG_STREAM_APPEND, &msg_stream_append_form, &msg_stream_append_reply_form, NULL},
    {MSG_STREAM_READ, &msg_stream_read_form, &msg_stream_range_form, NULL},
    {MSG_STREAM_PEEK, &msg_stream_peek_form, &msg_stream_range_form, NULL},
    {MSG_STREAM_TRIM, &msg_stream_trim_form, &msg_stream_trim_reply_form, NULL},
    {MSG_STREAM_RECORD, &msg_stream_record_form, NULL, NULL},
    {MSG_STREAM_SEAL, &msg_stream_seal_form, &msg_stream_seal_reply_form, NULL},
    {MSG_RATE_TAKE, &msg_rate_take_form, &msg_rate_take_reply_form, NULL},
    {MSG_STREAM_FOLLOW, &msg_stream_follow_form, &msg_stream_follow_reply_form, NULL},
    {MSG_WP_CREATE, &msg_wp_create_form, &msg_wp_reply_form, NULL},
    {MSG_WP_COMPLETE, &msg_wp_complete_form, &msg_wp_reply_form, NULL},
    {MSG_WP_GET, &msg_wp_get_form, &msg_wp_reply_form, NULL},
    {MSG_WP_LIST, &msg_wp_list_form, &msg_wp_list_reply_form, NULL},
    {MSG_WP_BLOCK, &msg_wp_block_form, &msg_wp_reply_form, NULL},
    {MSG_WP_COMPLETED, &msg_wp_completed_form, NULL, NULL},
};

const size_t msg_forms_len = sizeof(msg_forms) / sizeof(msg_forms[0]);

const struct msg_forms *msg_forms_of(uint16_t type)
{
    for (size_t i = 0; i < msg_forms_len; i++)
        if (msg_forms[i].type == type)
            return &msg_forms[i];
    return NULL;
}
