/*
 * tap_filter.c - tap listeners' filters and the test of a record against one (tap_filter.h).
 */
#include "tap_filter.h"

#include <stddef.h>
#include <string.h>

#include "msg.h"
#include "msg_sv.h"

/* The fields in one table: the wire names and where each lives. */
static const struct {
    const char *name;
    size_t off, cap;
} tap_fields[] = {
    {"actor", offsetof(struct tap_filter, actor), sizeof(((struct tap_filter *)0)->actor)},
    {"type", offsetof(struct tap_filter, type), sizeof(((struct tap_filter *)0)->type)},
    {"trace", offsetof(struct tap_filter, trace), sizeof(((struct tap_filter *)0)->trace)},
    {"status", offsetof(struct tap_filter, status), sizeof(((struct tap_filter *)0)->status)},
    {"session", offsetof(struct tap_filter, session), sizeof(((struct tap_filter *)0)->session)},
    {"env", offsetof(struct tap_filter, env), sizeof(((struct tap_filter *)0)->env)},
};
#define TAP_NFIELDS (sizeof(tap_fields) / sizeof(tap_fields[0]))

const char *const tap_filter_names[] = {"actor", "type", "trace", "status", "session", "env"};
const unsigned tap_filter_nnames = TAP_NFIELDS;

static int tap_field(const char *name)
{
    for (size_t i = 0; i < TAP_NFIELDS; i++)
        if (strcmp(tap_fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

err_t tap_filter_set(struct tap_filter *f, const char *name, const char *value)
{
    int i = tap_field(name);
    if (i < 0)
        return ERR_NOTFOUND;
    size_t n = strlen(value);
    if (n == 0)
        return ERR_INVAL;
    if (n >= tap_fields[i].cap)
        return ERR_TOOBIG;
    memcpy((char *)f + tap_fields[i].off, value, n + 1);
    return OK;
}

size_t tap_filter_room(const char *name)
{
    int i = tap_field(name);
    return i < 0 ? 0 : tap_fields[i].cap - 1;
}

bool tap_filter_empty(const struct tap_filter *f)
{
    for (size_t i = 0; i < TAP_NFIELDS; i++)
        if (((const char *)f + tap_fields[i].off)[0])
            return false;
    return true;
}

static bool tap_occurs(const char *needle, const char *topic, const void *bytes, size_t n)
{
    size_t k = strlen(needle);
    return memmem(bytes, n, needle, k) != NULL || (topic && strstr(topic, needle) != NULL);
}

bool tap_filter_match(const struct tap_filter *f, const char *proc, const char *peer,
                      const char *topic, const struct envelope *env, const void *env_bytes,
                      size_t n)
{
    if (f->actor[0] && strcmp(f->actor, proc) != 0 && !(peer && strcmp(f->actor, peer) == 0) &&
        strncmp(proc, f->actor, strlen(f->actor)) != 0)
        return false;
    if (f->type[0] && strcmp(f->type, msg_name(env->type)) != 0)
        return false;
    if (f->trace[0] && strcmp(f->trace, env->trace_id) != 0)
        return false;
    if (f->status[0]) {
        bool ok = strcmp(f->status, "ok") == 0 ? env->kind == ENV_REPLY
                  : strcmp(f->status, "error") == 0
                      ? env->kind == ENV_ERROR
                      : env->kind == ENV_ERROR && strcmp(f->status, err_name(env->err_code)) == 0;
        if (!ok)
            return false;
    }
    if (f->session[0] && !tap_occurs(f->session, topic, env_bytes, n))
        return false;
    if (f->env[0] && !tap_occurs(f->env, topic, env_bytes, n))
        return false;
    return true;
}

void tap_filter_put(struct mp_writer *w, const struct tap_filter *f)
{
    uint32_t set = 0;
    for (size_t i = 0; i < TAP_NFIELDS; i++)
        set += ((const char *)f + tap_fields[i].off)[0] != '\0';
    mp_put_map(w, set);
    for (size_t i = 0; i < TAP_NFIELDS; i++) {
        const char *v = (const char *)f + tap_fields[i].off;
        if (v[0])
            mp_put_kv_str(w, tap_fields[i].name, v);
    }
}

err_t tap_filter_read(const void *map, size_t n, struct tap_filter *f)
{
    struct mp_reader r;
    uint32_t pairs;
    memset(f, 0, sizeof(*f));
    mp_reader_init(&r, map, n);
    if (mp_read_map(&r, &pairs) != OK)
        return ERR_PROTO;
    for (uint32_t p = 0; p < pairs; p++) {
        struct slice k, v;
        if (mp_read_str(&r, &k) != OK)
            return ERR_PROTO;
        size_t i = 0;
        while (i < TAP_NFIELDS && !slice_eq(k, tap_fields[i].name))
            i++;
        if (i == TAP_NFIELDS) { /* a field a later listener may add: skipped */
            if (mp_skip(&r, &v) != OK)
                return ERR_PROTO;
            continue;
        }
        if (mp_read_str(&r, &v) != OK || (v.n && memchr(v.p, '\0', v.n)))
            return ERR_PROTO;
        if (slice_copy(v, (char *)f + tap_fields[i].off, tap_fields[i].cap) != OK)
            return ERR_TOOBIG;
    }
    return OK;
}

err_t tap_filter_request_put(struct mp_writer *w, const char *id, const struct tap_filter *want,
                             bool cancel)
{
    struct mp_writer fw; /* the filter */
    mp_writer_init(&fw);
    if (!cancel)
        tap_filter_put(&fw, want);
    struct msg_sv_tap_filter m = {
        .id = msg_str(id),
        .cancel = cancel,
        .filter = {mp_writer_data(&fw), mp_writer_len(&fw)}, /* none with cancel */
    };
    msg_encode(&msg_sv_tap_filter_form, w, &m);
    err_t rc = mp_writer_err(&fw) != OK ? mp_writer_err(&fw) : mp_writer_err(w);
    mp_writer_fini(&fw);
    return rc;
}
