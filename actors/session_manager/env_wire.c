/*
 * env_wire.c - the env object on the bus: a msgpack map with the fields
 * listed in proto/msg.c, typed in proto/msg_env.h. Reading it back is the
 * callers' business (gateway/auth.c, tetherctl).
 */
#include "msg_env.h"
#include "msg_raw.h"
#include "sm.h"

/* A string field that is NULL in SQL ("" here) goes out as nil. */
static struct slice sm_env_opt(const char *v)
{
    return v[0] ? msg_str(v) : SLICE_NULL;
}

void sm_env_put(struct mp_writer *w, const struct sm_env *env, bool with_keys)
{
    struct msg_env_obj m = {
        .id = msg_str(env->id),
        .type = msg_str(env->type),
        .slug = msg_str(env->slug),
        .organization_id = msg_str(env->org_id),
        .organization_slug = msg_str(env->org_slug),
        .project_id = msg_str(env->project_id),
        .project_slug = msg_str(env->project_slug),
        .parent_id = sm_env_opt(env->parent_id),
        .branch_name = sm_env_opt(env->branch_name),
        .created_at_ms = env->created_at_ms,
    };
    struct mp_writer keys;
    mp_writer_init(&keys);
    if (with_keys) {
        const char *k[SM_SIGNING_KEYS_MAX];
        for (unsigned i = 0; i < env->nsigning_keys; i++)
            k[i] = env->signing_keys[i];
        msg_raw_put_strs(&keys, k, env->nsigning_keys);
        m.api_key = msg_str(env->api_key);
        m.signing_keys = msg_raw_of(&keys);
    }
    msg_encode(&msg_env_obj_form, w, &m);
    msg_raw_done(&keys, w);
}
