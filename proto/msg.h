/*
 * msg.h - the message catalogue: every message type on the bus.
 *
 * A type number is stable once assigned and never reused (it is on the
 * wire). Bodies are msgpack maps; the fields of each are listed in
 * msg_catalogue[] (msg.c), which docs/protocol.md is generated from.
 * Numbers are grouped by owner: 1-63 every process, 64-127 supervisor,
 * 128+ domain actors (assigned by their issues).
 */
#ifndef TETHER_PROTO_MSG_H
#define TETHER_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

enum msg_type {
    MSG_HEALTH_PING = 1, /* any process: liveness and store state */
    MSG_BUS_ECHO = 2,    /* any process: echoes its body (bus tests, benchmarks) */
    MSG_BUS_FAULT = 3,   /* event from the supervisor: fault-injection setting for one process */
    MSG_BUS_TAP = 4,     /* event from the supervisor: the tap listeners' filters */
    MSG_CLUSTER_MEMBERS = 5, /* event from the supervisor: the nodes and their event sockets */

    MSG_SV_STATUS = 64,
    MSG_SV_START = 65,
    MSG_SV_STOP = 66,
    MSG_SV_RESTART = 67,
    MSG_SV_KILL = 68,
    MSG_SV_FAULT_SET = 69,
    MSG_SV_FAULT_LIST = 70,
    MSG_SV_TAP_FILTER = 71,

    /* session-manager: environments and API keys */
    MSG_ENV_RESOLVE_KEY = 128,
    MSG_ENV_GET = 129,
    MSG_ENV_CREATE = 130,
    MSG_ENV_ROTATE_KEY = 131,
    MSG_ENV_BOOTSTRAP = 132,
    MSG_ENV_LIST = 133,

    /* session-manager: sessions */
    MSG_SESSION_CREATE = 140,
    MSG_SESSION_GET = 141,
    MSG_SESSION_UPDATE = 142,
    MSG_SESSION_CLOSE = 143,
    MSG_SESSION_CHANGED = 144, /* event: a session's row changed (close, update, swap) */
    MSG_SESSION_BLOB_PUT = 145,
    MSG_SESSION_BLOB_GET = 146,

    /* run-manager: task runs and the session-run binding */
    MSG_RUN_ENSURE = 160,
    MSG_RUN_SWAP = 161,
    MSG_RUN_GET = 162,
    MSG_RUN_CANCEL = 163,
    MSG_RUN_DEQUEUE = 164,
    MSG_RUN_HEARTBEAT = 165,
    MSG_RUN_COMPLETE = 166,
    MSG_RUN_FAIL = 167,
    MSG_RUN_RELEASE = 168,
    MSG_RUN_QUEUED = 169, /* event from the run-manager: a run became dequeueable */

    /* stream-broker: the .in/.out record streams */
    MSG_STREAM_APPEND = 180,
    MSG_STREAM_READ = 181,
    MSG_STREAM_PEEK = 182,
    MSG_STREAM_TRIM = 183,
    MSG_STREAM_RECORD = 184, /* event from the stream-broker: one appended record */
    MSG_STREAM_SEAL = 185,
    MSG_RATE_TAKE = 186,     /* a token of an environment's rate-limit bucket (the gateway's) */
    MSG_STREAM_FOLLOW = 187, /* follow leases: which streams' records are published */

    /* waitpoint-registry: waitpoints (tokens, session-channel waits, durations) */
    MSG_WP_CREATE = 200,
    MSG_WP_COMPLETE = 201,
    MSG_WP_GET = 202,
    MSG_WP_LIST = 203,
    MSG_WP_BLOCK = 204,
    MSG_WP_COMPLETED = 205, /* event from the waitpoint-registry: waitpoints completed */

    /* run-manager: runs that wait on waitpoints (actors/run_manager/wait.c) */
    MSG_RUN_SUSPEND = 220,
    MSG_RUN_WAKE = 221,

    /* clickhouse-replicator: the sessions list (ClickHouse, merged with recent PostgreSQL rows) */
    MSG_SESSION_LIST = 190,
};

enum msg_kind {
    MSG_K_REQUEST, /* request/reply */
    MSG_K_EVENT,   /* published, no reply */
};

struct msg_def {
    uint16_t type;
    const char *name; /* "area.verb", stable too: tap filters and logs use it */
    enum msg_kind kind;
    const char *handler; /* which process answers or publishes it */
    const char *request; /* body fields of the request/event */
    const char *reply;   /* body fields of the reply ("" for events) */
};

extern const struct msg_def msg_catalogue[];
extern const size_t msg_catalogue_len;

/* Definition of type, or NULL if the catalogue does not know it. */
const struct msg_def *msg_def_find(uint16_t type);

/* Name of type, or "unknown" if not catalogued. */
const char *msg_name(uint16_t type);

/* Type number of name, or 0 when unknown. */
uint16_t msg_type_by_name(const char *name);

#endif
