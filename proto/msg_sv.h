/*
 * msg_sv.h - the bodies every process and the supervisor speak, typed (msgcodec.h; the
 * catalogue entries of msg.c say what each field means): health.ping's reply, bus.echo, the
 * supervisor's events (bus.fault, bus.tap, cluster.members) and its control requests (sv.*)
 * with their replies.
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. A list of maps (the children of
 * sv.status, the nodes of cluster.members, the faults of sv.fault_list, the filters of
 * bus.tap) is a raw field holding the array: the code that builds or reads it loops over its
 * elements, each of which has a form of its own where it is flat (msg_sv_status_child,
 * msg_bus_cluster_node, msg_bus_fault) or a codec of its own (tap_filter.h). The maps keyed
 * by actor name of a node (requests, events) are raw as well: their keys are no fields.
 *
 * health.ping, sv.status and sv.fault_list have no request body: their senders send none.
 */
#ifndef TETHER_PROTO_MSG_SV_H
#define TETHER_PROTO_MSG_SV_H

#include "msgcodec.h"

#define MSG_SV_NAME_MAX 39      /* a child's name, a base name, supervisor or tetherctl */
#define MSG_SV_TAP_ID_MAX 63    /* a tap listener's id */
#define MSG_SV_SIGNAL_MAX 64    /* sv.kill's signal: 1 to this */
#define MSG_SV_DELAY_MAX 600000 /* a fault's delay_ms: a larger one reads as none */

/*
 * health.ping's reply. An actor's has every field (msg_bus_health_form); the supervisor's
 * only name and state (msg_sv_health_form).
 */
struct msg_bus_health {
    struct slice name; /* the process's name (gateway.1) */
    uint64_t instance; /* of its name, 0 for the first */
    uint64_t pid;
    struct slice state; /* "up", "degraded"; the supervisor's "up" or "stopping" */
    struct slice store; /* "ok", "unreachable" */
    uint64_t uptime_ms;
};
extern const struct msg_form msg_bus_health_form;
extern const struct msg_form msg_sv_health_form;

/* bus.echo: the request, and its reply (the request's body, unchanged) */
struct msg_bus_echo {
    struct slice data; /* bin */
};
extern const struct msg_form msg_bus_echo_form;

/*
 * bus.fault: the fault injection setting of one target, also an element of sv.fault_set's and
 * sv.fault_list's replies.
 */
struct msg_bus_fault {
    struct slice target; /* a process's name or base name */
    double drop, dup;    /* fractions, 0-1 */
    uint64_t delay_ms;   /* past MSG_SV_DELAY_MAX: none */
    double delay_rate;   /* fraction, 0-1 */
};
extern const struct msg_form msg_bus_fault_form;

/* bus.tap: the filters of every listener that registered one */
struct msg_bus_tap {
    struct slice filters; /* raw: an array of tap_filter maps (tap_filter_put) */
};
extern const struct msg_form msg_bus_tap_form;

/* cluster.members: the nodes of the registry as this node's supervisor last read it */
struct msg_bus_cluster {
    struct slice self;   /* this node */
    struct slice leader; /* "" while none leads */
    struct slice nodes;  /* raw: an array of msg_bus_cluster_node maps */
};
extern const struct msg_form msg_bus_cluster_form;

/* One node of cluster.members */
struct msg_bus_cluster_node {
    struct slice node, addr;
    bool leader;
    uint64_t fencing_token; /* 0 unless leader */
    uint64_t age_ms;        /* since its last heartbeat */
    struct slice requests;  /* raw: {<actor>: tcp:// url}, the leader-only actors' sockets */
    struct slice events;    /* raw: {<actor>: [tcp:// url]}, the event sockets */
};
extern const struct msg_form msg_bus_cluster_node_form;

/* sv.status's reply */
struct msg_sv_status_reply {
    struct slice node;
    bool leader;
    uint64_t fencing_token; /* 0 unless leader */
    struct slice cluster;   /* raw: the last cluster.members body; nil before the first */
    struct slice children;  /* raw: an array of msg_sv_status_child maps */
};
extern const struct msg_form msg_sv_status_reply_form;

/* One child of sv.status's reply */
struct msg_sv_status_child {
    struct slice name, state;
    uint64_t pid, uptime_ms, restarts; /* pid and uptime_ms 0 when it runs none */
    bool leader_only, ready;
    struct slice last_exit; /* "exit 1", "signal 9", "" */
    struct slice fault;     /* "drop=0.1 dup=0 delay=0ms delay_rate=0", "" */
};
extern const struct msg_form msg_sv_status_child_form;

/*
 * sv.start, sv.stop, sv.restart (msg_sv_child_form: name) and sv.kill (msg_sv_kill_form: name
 * and signal, SIGKILL when not given).
 */
struct msg_sv_child {
    struct slice name;
    uint64_t signal;
    bool signal_given;
};
extern const struct msg_form msg_sv_child_form;
extern const struct msg_form msg_sv_kill_form;

/* The reply of a child command: the child's state right after it */
struct msg_sv_child_reply {
    struct slice name, state;
};
extern const struct msg_form msg_sv_child_reply_form;

/* sv.fault_set (all zero clears the target's setting) */
struct msg_sv_fault_set {
    struct slice name;
    double drop, dup;
    uint64_t delay_ms;
    double delay_rate;
};
extern const struct msg_form msg_sv_fault_set_form;

/* sv.fault_set's reply: the setting stored, as its bus.fault body */
struct msg_sv_fault_set_reply {
    struct slice fault; /* raw: a msg_bus_fault map */
};
extern const struct msg_form msg_sv_fault_set_reply_form;

/* sv.fault_list's reply */
struct msg_sv_fault_list_reply {
    struct slice faults; /* raw: an array of msg_bus_fault maps */
};
extern const struct msg_form msg_sv_fault_list_reply_form;

/* sv.tap_filter: a listener's filter registered (or renewed) under its id, or cancelled */
struct msg_sv_tap_filter {
    struct slice id;
    bool cancel;         /* written only when true */
    struct slice filter; /* raw: a tap_filter map (tap_filter_put); absent: matches all */
};
extern const struct msg_form msg_sv_tap_filter_form;

/* sv.tap_filter's reply */
struct msg_sv_tap_filter_reply {
    uint64_t listeners; /* with a filter, now */
};
extern const struct msg_form msg_sv_tap_filter_reply_form;

#endif
