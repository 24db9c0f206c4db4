/*
 * msg_env.h - the session-manager's env.* bodies, typed (msgcodec.h; the
 * catalogue entries of msg.c say what each field means).
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. The request
 * tables set no limits and mark nothing required: the handlers answer each
 * unusable value with a code of its own (an id that is no cuid is
 * ERR_NOTFOUND, a key of the wrong shape ERR_UNAUTH, a bad slug ERR_INVAL
 * naming the rule), as they did before the bodies were typed. env.bootstrap
 * and env.list carry no body.
 */
#ifndef TETHER_PROTO_MSG_ENV_H
#define TETHER_PROTO_MSG_ENV_H

#include "msgcodec.h"

#define MSG_ENV_SIGNING_KEYS_MAX 8 /* an env object's signing keys: the current + 7 in grace */

/* env.resolve_key */
struct msg_env_resolve_key {
    struct slice key;    /* absent or nil: ERR_INVAL */
    struct slice branch; /* x-trigger-branch; nil: none */
};
extern const struct msg_form msg_env_resolve_key_form;

/* env.get */
struct msg_env_get {
    struct slice id;
};
extern const struct msg_form msg_env_get_form;

/* env.create: a root environment (org, project, type) or a preview branch (type, parent_id,
 * branch); every field is written, nil when not given */
struct msg_env_create {
    struct slice org, project, type, parent_id, branch;
};
extern const struct msg_form msg_env_create_form;

/* env.rotate_key */
struct msg_env_rotate_key {
    struct slice id;
    struct slice grace_ms; /* raw: a uint, or nil for the default 24 h (msg_raw_uint) */
};
extern const struct msg_form msg_env_rotate_key_form;

/* The env object of the replies (the catalogue's comment above env.resolve_key). */
struct msg_env_obj {
    struct slice id, type, slug, organization_id, organization_slug, project_id, project_slug;
    struct slice parent_id, branch_name; /* nil unless a preview branch */
    struct slice api_key;                /* absent in env.list's objects */
    struct slice signing_keys; /* raw: an array of keys (msg_raw_strs); absent in env.list's */
    uint64_t created_at_ms;
};
extern const struct msg_form msg_env_obj_form;

/* The reply of env.resolve_key, env.get, env.create, env.rotate_key and env.bootstrap. */
struct msg_env_reply {
    struct slice env; /* raw: an env object (msg_env_obj) */
    bool created;     /* env.bootstrap: whether it made the environment */
    bool created_given;
};
extern const struct msg_form msg_env_reply_form;

/* The reply of env.list. */
struct msg_env_list_reply {
    struct slice envs; /* raw: an array of env objects, without keys */
};
extern const struct msg_form msg_env_list_reply_form;

#endif
