/*
 * wire.c - reading request bodies and sending replies, for every handler.
 *
 * Bodies are msgpack maps (proto/msg.c). A field of the wrong type is
 * ERR_INVAL; a missing one is the caller's decision. Strings are copied
 * into bounded buffers (or borrowed as slices valid until the reply).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "rm.h"

struct rm *rm_of(struct actor *a)
{
    return a->state;
}

/* Positions v at the value of key; false when body has no such key (or is empty). */
static bool rm_find(struct slice body, const char *key, struct mp_reader *v, err_t *rc)
{
    *rc = OK;
    if (body.n == 0)
        return false;
    err_t e = mp_map_find(body.p, body.n, key, v);
    if (e == ERR_NOTFOUND)
        return false;
    if (e != OK) {
        *rc = ERR_INVAL;
        return false;
    }
    return true;
}

err_t rm_field_slice(struct slice body, const char *key, struct slice *out)
{
    struct mp_reader v;
    err_t rc;
    *out = SLICE_NULL;
    if (!rm_find(body, key, &v, &rc))
        return rc;
    return mp_read_str_or_nil(&v, out) == OK ? OK : ERR_INVAL;
}

err_t rm_field_str(struct slice body, const char *key, char *buf, size_t cap, bool *present)
{
    struct slice s;
    buf[0] = '\0';
    if (present)
        *present = false;
    if (rm_field_slice(body, key, &s) != OK)
        return ERR_INVAL;
    if (!s.p)
        return OK;
    /* a NUL inside would silently shorten what reaches SQL */
    if (memchr(s.p, '\0', s.n) || slice_copy(s, buf, cap) != OK)
        return ERR_INVAL;
    if (present)
        *present = true;
    return OK;
}

err_t rm_field_uint(struct slice body, const char *key, uint64_t def, uint64_t *out)
{
    struct mp_reader v;
    enum mp_type t;
    err_t rc;
    *out = def;
    if (!rm_find(body, key, &v, &rc))
        return rc;
    if (mp_peek(&v, &t) != OK)
        return ERR_INVAL;
    if (t == MP_NIL)
        return OK;
    return mp_read_uint(&v, out) == OK ? OK : ERR_INVAL;
}

err_t rm_field_strings(struct slice body, const char *key, struct slice *items, unsigned max,
                       unsigned *n)
{
    struct mp_reader v;
    uint32_t len;
    err_t rc;
    *n = 0;
    if (!rm_find(body, key, &v, &rc) || mp_read_array(&v, &len) != OK || len > max)
        return ERR_INVAL;
    for (uint32_t i = 0; i < len; i++)
        if (mp_read_str(&v, &items[i]) != OK)
            return ERR_INVAL;
    *n = len;
    return OK;
}

err_t rm_field_json(struct slice body, const char *key, char **out)
{
    struct slice s;
    *out = NULL;
    if (rm_field_slice(body, key, &s) != OK)
        return ERR_INVAL;
    if (!s.p)
        return OK;
    if (s.n > RM_JSON_MAX)
        return ERR_TOOBIG;
    if (memchr(s.p, '\0', s.n))
        return ERR_INVAL;
    *out = xstrndup(s.p, s.n);
    return OK;
}

void rm_reply_writer(struct bus_req *req, struct mp_writer *w)
{
    if (mp_writer_err(w) == OK)
        (void)bus_reply(req, mp_writer_data(w), mp_writer_len(w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
}

void rm_reply_store_err(struct bus_req *req, const char *op, err_t rc)
{
    if (rc == ERR_UNAVAIL) {
        (void)bus_reply_err(req, ERR_UNAVAIL,
                            "the run store (PostgreSQL) is unavailable; retry later");
        return;
    }
    /* db_pg logged the statement's failure; this line says which operation it broke */
    LOG_ERROR("run.store_failed", "%s: unexpected store result: %s", op, err_name(rc));
    (void)bus_reply_err(req, ERR_INTERNAL, "unexpected result from the run store");
}
