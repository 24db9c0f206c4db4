/*
 * msg_list.h - the sessions list (session.list, the clickhouse-replicator's)
 * and the session.changed event, typed (msgcodec.h; the catalogue entries of
 * msg.c say what each field means). The session.* requests of the
 * session-manager are msg_session.h's.
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. Arrays of
 * strings travel as raw fields (msg_raw.h). The session objects of the
 * list's reply stay untyped: the gateway renders them field by field.
 */
#ifndef TETHER_PROTO_MSG_LIST_H
#define TETHER_PROTO_MSG_LIST_H

#include "msg_session.h"
#include "msgcodec.h"

#define MSG_SESSION_LIST_ID_MAX 63    /* env, org, project ids and cursors (cuids) */
#define MSG_SESSION_LIST_VALS_MAX 32  /* types, tags, tasks: at most 32 values ... */
#define MSG_SESSION_LIST_VAL_MAX 256  /* ... of at most 256 bytes each */
#define MSG_SESSION_LIST_SIZE_MAX 100 /* size: 1-100 */

/* session.list */
struct msg_session_list {
    struct slice env_id, org_id, project_id;
    uint64_t size;
    struct slice after, before;      /* cursors (internal ids); nil: none */
    struct slice types, tags, tasks; /* raw: [str]; empty: any */
    struct slice external_id;        /* nil: any */
    uint64_t statuses;               /* bits: 1 ACTIVE, 2 CLOSED, 4 EXPIRED; 0: any */
    uint64_t from_ms, to_ms;         /* created within; 0: unbounded */
};
extern const struct msg_form msg_session_list_form;

/* session.list's reply */
struct msg_session_list_reply {
    struct slice sessions;       /* raw: [session], newest first */
    struct slice next, previous; /* cursors; nil: none */
};
extern const struct msg_form msg_session_list_reply_form;

/* session.changed, on topic "session.changed": gateways drop their cached copy of the row */
struct msg_session_changed {
    struct slice env_id;
    struct slice friendly_id, external_id; /* nil: none */
};
extern const struct msg_form msg_session_changed_form;

#endif
