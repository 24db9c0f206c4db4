/*
 * env_wire.c - the env object on the bus: a msgpack map with the fields
 * listed in proto/msg.c. Reading it back is the callers' business
 * (gateway/auth.c, tetherctl).
 */
#include "sm.h"

/* A string field that is NULL in SQL ("" here) goes out as nil. */
static void sm_put_kv_opt(struct mp_writer *w, const char *k, const char *v)
{
    mp_put_str(w, k);
    if (v[0])
        mp_put_str(w, v);
    else
        mp_put_nil(w);
}

void sm_env_put(struct mp_writer *w, const struct sm_env *env, bool with_keys)
{
    mp_put_map(w, with_keys ? 12 : 10);
    mp_put_kv_str(w, "id", env->id);
    mp_put_kv_str(w, "type", env->type);
    mp_put_kv_str(w, "slug", env->slug);
    mp_put_kv_str(w, "organization_id", env->org_id);
    mp_put_kv_str(w, "organization_slug", env->org_slug);
    mp_put_kv_str(w, "project_id", env->project_id);
    mp_put_kv_str(w, "project_slug", env->project_slug);
    sm_put_kv_opt(w, "parent_id", env->parent_id);
    sm_put_kv_opt(w, "branch_name", env->branch_name);
    if (with_keys) {
        mp_put_kv_str(w, "api_key", env->api_key);
        mp_put_str(w, "signing_keys");
        mp_put_array(w, env->nsigning_keys);
        for (unsigned i = 0; i < env->nsigning_keys; i++)
            mp_put_str(w, env->signing_keys[i]);
    }
    mp_put_kv_uint(w, "created_at_ms", env->created_at_ms);
}
