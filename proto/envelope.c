/*
 * envelope.c - encoding and bounded decoding of the bus envelope.
 */
#include "envelope.h"

#include <string.h>

#define ENV_FIELDS 11

int env_trace_valid(const char *trace, size_t n)
{
    int nonzero = 0;
    if (n != ENV_TRACE_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = trace[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        nonzero |= c != '0';
    }
    return nonzero;
}

err_t env_encode(struct mp_writer *w, const struct envelope *env)
{
    size_t tl = strnlen(env->trace_id, sizeof(env->trace_id));
    size_t sl = strnlen(env->sender, sizeof(env->sender));

    /* refuse here whatever env_decode would refuse at the other end */
    if (env->kind < ENV_REQUEST || env->kind > ENV_EVENT || sl > ENV_SENDER_MAX ||
        env->err_msg.n > ENV_ERRMSG_MAX || (unsigned)env->err_code > UINT16_MAX ||
        (tl != 0 && !env_trace_valid(env->trace_id, tl)) ||
        (env->kind == ENV_ERROR) != (env->err_code != OK))
        return ERR_INVAL;
    if (env->body.n > 0) {
        struct mp_reader br;
        enum mp_type bt;
        struct slice raw;
        mp_reader_init(&br, env->body.p, env->body.n);
        if (mp_peek(&br, &bt) != OK || bt != MP_MAP ||
            mp_skip_depth(&br, &raw, MP_MAX_DEPTH - 1) != OK || raw.n != env->body.n)
            return ERR_INVAL;
    }

    mp_put_array(w, env->origin ? ENV_FIELDS + 1 : ENV_FIELDS);
    mp_put_uint(w, ENV_VERSION);
    mp_put_uint(w, env->kind);
    mp_put_uint(w, env->type);
    mp_put_uint(w, env->req_id);
    mp_put_strn(w, env->trace_id, tl);
    mp_put_strn(w, env->sender, sl);
    mp_put_uint(w, env->deadline_ms);
    mp_put_uint(w, env->attempt);
    mp_put_uint(w, (uint64_t)env->err_code);
    if (env->err_msg.p)
        mp_put_strn(w, env->err_msg.p, env->err_msg.n);
    else
        mp_put_nil(w);
    if (env->body.n > 0)
        mp_put_raw(w, env->body.p, env->body.n);
    else
        mp_put_nil(w);
    if (env->origin)
        mp_put_uint(w, env->origin);
    return mp_writer_err(w);
}

static err_t env_read_bounded(struct mp_reader *r, uint64_t max, uint64_t *v)
{
    if (mp_read_uint(r, v) != OK || *v > max)
        return ERR_PROTO;
    return OK;
}

err_t env_decode(const void *buf, size_t n, struct envelope *env)
{
    struct mp_reader r;
    uint32_t fields;
    uint64_t v;
    struct slice s;
    enum mp_type t;

    memset(env, 0, sizeof(*env));
    mp_reader_init(&r, buf, n);
    if (mp_read_array(&r, &fields) != OK || fields < ENV_FIELDS)
        return ERR_PROTO;

    if (env_read_bounded(&r, UINT8_MAX, &v) != OK || v != ENV_VERSION)
        return ERR_PROTO;
    env->version = (uint8_t)v;
    if (env_read_bounded(&r, ENV_EVENT, &v) != OK || v < ENV_REQUEST)
        return ERR_PROTO;
    env->kind = (uint8_t)v;
    if (env_read_bounded(&r, UINT16_MAX, &v) != OK)
        return ERR_PROTO;
    env->type = (uint16_t)v;
    if (mp_read_uint(&r, &env->req_id) != OK)
        return ERR_PROTO;

    if (mp_read_str(&r, &s) != OK || (s.n != 0 && !env_trace_valid(s.p, s.n)))
        return ERR_PROTO;
    memcpy(env->trace_id, s.p, s.n);
    env->trace_id[s.n] = '\0';

    if (mp_read_str(&r, &s) != OK || s.n > ENV_SENDER_MAX || memchr(s.p, '\0', s.n))
        return ERR_PROTO;
    memcpy(env->sender, s.p, s.n);
    env->sender[s.n] = '\0';

    if (mp_read_uint(&r, &env->deadline_ms) != OK)
        return ERR_PROTO;
    if (env_read_bounded(&r, UINT32_MAX, &v) != OK)
        return ERR_PROTO;
    env->attempt = (uint32_t)v;
    if (env_read_bounded(&r, UINT16_MAX, &v) != OK)
        return ERR_PROTO;
    env->err_code = (err_t)v;
    if (mp_read_str_or_nil(&r, &env->err_msg) != OK || env->err_msg.n > ENV_ERRMSG_MAX)
        return ERR_PROTO;
    if ((env->kind == ENV_ERROR) != (env->err_code != OK))
        return ERR_PROTO;

    if (mp_peek(&r, &t) != OK)
        return ERR_PROTO;
    if (t == MP_NIL) {
        (void)mp_read_nil(&r);
        env->body = SLICE_NULL;
    } else if (t == MP_MAP) {
        /* the envelope array is itself one level of nesting */
        if (mp_skip_depth(&r, &env->body, MP_MAX_DEPTH - 1) != OK)
            return ERR_PROTO;
    } else {
        return ERR_PROTO;
    }

    /* The twelfth is origin when it is an unsigned integer; anything else is an extra. */
    uint32_t i = ENV_FIELDS;
    if (fields > ENV_FIELDS && mp_peek(&r, &t) == OK && t == MP_UINT) {
        if (mp_read_uint(&r, &env->origin) != OK)
            return ERR_PROTO;
        i++;
    }
    /* Later versions may append fields: skip them, but they must be well formed. */
    for (; i < fields; i++)
        if (mp_skip(&r, NULL) != OK)
            return ERR_PROTO;
    if (mp_reader_left(&r) != 0)
        return ERR_PROTO;
    return OK;
}
