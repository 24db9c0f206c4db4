/*
 * msg_session.h - the session-manager's session.* request bodies, typed
 * (msgcodec.h; the catalogue entries of msg.c say what each field means).
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. A field with a
 * _given flag tells absent (false) from present, nil included (true).
 */
#ifndef TETHER_PROTO_MSG_SESSION_H
#define TETHER_PROTO_MSG_SESSION_H

#include "msgcodec.h"

#define MSG_SESSION_ID_MAX 63      /* env and session ids: cuids (25), room for foreign ones */
#define MSG_SESSION_KEY_MAX 1023   /* friendly or external ids, types, task identifiers */
#define MSG_SESSION_JSON_MAX 65535 /* trigger_config, tags, metadata: JSON text */

/* session.create */
struct msg_session_create {
    struct slice env_id, org_id, project_id, env_type, type;
    struct slice external_id; /* nil: none */
    struct slice task_identifier, trigger_config, tags;
    struct slice metadata;   /* nil: none */
    uint64_t expires_at_ms;  /* 0: never */
    struct slice request_id; /* the HTTP request's, for logs */
};
extern const struct msg_form msg_session_create_form;

/* session.get */
struct msg_session_get {
    struct slice env_id, ref; /* ref: friendly id (session_...) or external id */
};
extern const struct msg_form msg_session_get_form;

/* session.update: tags absent leaves them; metadata absent leaves it, nil clears it */
struct msg_session_update {
    struct slice env_id, ref, tags, metadata;
    bool tags_given, metadata_given;
};
extern const struct msg_form msg_session_update_form;

/* session.close */
struct msg_session_close {
    struct slice env_id, ref, reason;
};
extern const struct msg_form msg_session_close_form;

/* session.blob_put (the size limit of body is the handler's: ERR_TOOBIG) */
struct msg_session_blob_put {
    struct slice env_id, ref, name, content_type, body;
};
extern const struct msg_form msg_session_blob_put_form;

/* session.blob_get */
struct msg_session_blob_get {
    struct slice env_id, ref, name;
};
extern const struct msg_form msg_session_blob_get_form;

#endif
