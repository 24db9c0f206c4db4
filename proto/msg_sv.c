/*
 * msg_sv.c - the field tables of health.ping's reply, bus.echo, the supervisor's events and
 * its control requests (msg_sv.h).
 */
#include "msg_sv.h"

#define NAME MSG_SV_NAME_MAX
#define REQ MSGF_REQUIRED

#define S struct msg_bus_health
static const struct msg_field health_fields[] = {
    MSGF(S, name, MSGF_STR, 0, 0),  MSGF(S, instance, MSGF_U64, 0, 0),
    MSGF(S, pid, MSGF_U64, 0, 0),   MSGF(S, state, MSGF_STR, 0, 0),
    MSGF(S, store, MSGF_STR, 0, 0), MSGF(S, uptime_ms, MSGF_U64, 0, 0),
};
static const struct msg_field sv_health_fields[] = {
    MSGF(S, name, MSGF_STR, 0, 0),
    MSGF(S, state, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_bus_health_form = MSG_FORM("health.ping reply", health_fields);
const struct msg_form msg_sv_health_form =
    MSG_FORM("health.ping reply (supervisor)", sv_health_fields);

#define S struct msg_bus_echo
static const struct msg_field echo_fields[] = {
    MSGF(S, data, MSGF_BIN, 0, 0),
};
#undef S
const struct msg_form msg_bus_echo_form = MSG_FORM("bus.echo request", echo_fields);

#define S struct msg_bus_fault
static const struct msg_field fault_fields[] = {
    MSGF(S, target, MSGF_STR, REQ, 0),   MSGF(S, drop, MSGF_F64, 0, 0),
    MSGF(S, dup, MSGF_F64, 0, 0),        MSGF(S, delay_ms, MSGF_U64, 0, 0),
    MSGF(S, delay_rate, MSGF_F64, 0, 0),
};
#undef S
const struct msg_form msg_bus_fault_form = MSG_FORM("bus.fault event", fault_fields);

#define S struct msg_bus_tap
static const struct msg_field tap_fields[] = {
    MSGF(S, filters, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_bus_tap_form = MSG_FORM("bus.tap event", tap_fields);

#define S struct msg_bus_cluster
static const struct msg_field cluster_fields[] = {
    MSGF(S, self, MSGF_STR, 0, 0),
    MSGF(S, leader, MSGF_STR, 0, 0),
    MSGF(S, nodes, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_bus_cluster_form = MSG_FORM("cluster.members event", cluster_fields);

#define S struct msg_bus_cluster_node
static const struct msg_field node_fields[] = {
    MSGF(S, node, MSGF_STR, 0, 0),    MSGF(S, addr, MSGF_STR, 0, 0),
    MSGF(S, leader, MSGF_BOOL, 0, 0), MSGF(S, fencing_token, MSGF_U64, 0, 0),
    MSGF(S, age_ms, MSGF_U64, 0, 0),  MSGF(S, requests, MSGF_RAW, 0, 0),
    MSGF(S, events, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_bus_cluster_node_form = MSG_FORM("cluster.members node", node_fields);

#define S struct msg_sv_status_reply
static const struct msg_field status_fields[] = {
    MSGF(S, node, MSGF_STR, 0, 0),          MSGF(S, leader, MSGF_BOOL, 0, 0),
    MSGF(S, fencing_token, MSGF_U64, 0, 0), MSGF(S, cluster, MSGF_RAW, MSGF_NIL, 0),
    MSGF(S, children, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_sv_status_reply_form = MSG_FORM("sv.status reply", status_fields);

#define S struct msg_sv_status_child
static const struct msg_field child_fields[] = {
    MSGF(S, name, MSGF_STR, 0, 0),     MSGF(S, state, MSGF_STR, 0, 0),
    MSGF(S, pid, MSGF_U64, 0, 0),      MSGF(S, uptime_ms, MSGF_U64, 0, 0),
    MSGF(S, restarts, MSGF_U64, 0, 0), MSGF(S, leader_only, MSGF_BOOL, 0, 0),
    MSGF(S, ready, MSGF_BOOL, 0, 0),   MSGF(S, last_exit, MSGF_STR, 0, 0),
    MSGF(S, fault, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_sv_status_child_form = MSG_FORM("sv.status child", child_fields);

#define S struct msg_sv_child
static const struct msg_field child_cmd_fields[] = {
    MSGF(S, name, MSGF_STR, 0, NAME),
};
static const struct msg_field kill_fields[] = {
    MSGF(S, name, MSGF_STR, 0, NAME),
    MSGF_G(S, signal, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_sv_child_form =
    MSG_FORM("sv.start/stop/restart request", child_cmd_fields);
const struct msg_form msg_sv_kill_form = MSG_FORM("sv.kill request", kill_fields);

#define S struct msg_sv_child_reply
static const struct msg_field child_reply_fields[] = {
    MSGF(S, name, MSGF_STR, 0, 0),
    MSGF(S, state, MSGF_STR, 0, 0),
};
#undef S
const struct msg_form msg_sv_child_reply_form =
    MSG_FORM("sv.start/stop/restart/kill reply", child_reply_fields);

#define S struct msg_sv_fault_set
static const struct msg_field fault_set_fields[] = {
    MSGF(S, name, MSGF_STR, 0, NAME),    MSGF(S, drop, MSGF_F64, 0, 0),
    MSGF(S, dup, MSGF_F64, 0, 0),        MSGF(S, delay_ms, MSGF_U64, 0, 0),
    MSGF(S, delay_rate, MSGF_F64, 0, 0),
};
#undef S
const struct msg_form msg_sv_fault_set_form = MSG_FORM("sv.fault_set request", fault_set_fields);

#define S struct msg_sv_fault_set_reply
static const struct msg_field fault_set_reply_fields[] = {
    MSGF(S, fault, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_sv_fault_set_reply_form =
    MSG_FORM("sv.fault_set reply", fault_set_reply_fields);

#define S struct msg_sv_fault_list_reply
static const struct msg_field fault_list_reply_fields[] = {
    MSGF(S, faults, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_sv_fault_list_reply_form =
    MSG_FORM("sv.fault_list reply", fault_list_reply_fields);

#define S struct msg_sv_tap_filter
static const struct msg_field tap_filter_fields[] = {
    MSGF(S, id, MSGF_STR, REQ, MSG_SV_TAP_ID_MAX),
    MSGF(S, cancel, MSGF_BOOL, MSGF_OMIT0, 0),
    MSGF(S, filter, MSGF_RAW, 0, 0),
};
#undef S
const struct msg_form msg_sv_tap_filter_form = MSG_FORM("sv.tap_filter request", tap_filter_fields);

#define S struct msg_sv_tap_filter_reply
static const struct msg_field tap_filter_reply_fields[] = {
    MSGF(S, listeners, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_sv_tap_filter_reply_form =
    MSG_FORM("sv.tap_filter reply", tap_filter_reply_fields);
