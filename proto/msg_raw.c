/*
 * msg_raw.c - arrays of strings and defaulted uints in raw fields (msg_raw.h).
 */
#include "msg_raw.h"

#include <string.h>

struct slice msg_raw_of(const struct mp_writer *w)
{
    if (mp_writer_err(w) != OK)
        return SLICE_NULL;
    return (struct slice){mp_writer_data(w), mp_writer_len(w)};
}

void msg_raw_done(struct mp_writer *w, struct mp_writer *body)
{
    if (mp_writer_err(w) != OK && mp_writer_err(body) == OK)
        body->err = mp_writer_err(w);
    mp_writer_fini(w);
}

void msg_raw_put_strs(struct mp_writer *w, const char *const *items, unsigned n)
{
    mp_put_array(w, n);
    for (unsigned i = 0; i < n; i++)
        mp_put_str(w, items[i]);
}

/* A reader of raw; false when raw is absent or nil. */
static bool msg_raw_open(struct slice raw, struct mp_reader *r)
{
    enum mp_type t;
    if (!raw.p)
        return false;
    mp_reader_init(r, raw.p, raw.n);
    return !(mp_peek(r, &t) == OK && t == MP_NIL);
}

err_t msg_raw_strs(struct slice raw, struct slice *items, unsigned max, size_t item_min,
                   size_t item_max, unsigned *n)
{
    struct mp_reader r;
    uint32_t len;
    *n = 0;
    if (!msg_raw_open(raw, &r))
        return OK;
    if (mp_read_array(&r, &len) != OK || len > max)
        return ERR_INVAL;
    for (uint32_t i = 0; i < len; i++) {
        if (mp_read_str(&r, &items[i]) != OK || items[i].n < item_min || items[i].n > item_max ||
            (items[i].n && memchr(items[i].p, '\0', items[i].n)))
            return ERR_INVAL;
    }
    *n = len;
    return OK;
}

err_t msg_raw_array(struct slice raw, struct mp_reader *r, uint32_t *n)
{
    *n = 0;
    if (!raw.p)
        return ERR_INVAL;
    mp_reader_init(r, raw.p, raw.n);
    return mp_read_array(r, n) == OK ? OK : ERR_INVAL;
}

err_t msg_raw_uint(struct slice raw, uint64_t def, uint64_t *out)
{
    struct mp_reader r;
    *out = def;
    if (!msg_raw_open(raw, &r))
        return OK;
    return mp_read_uint(&r, out) == OK ? OK : ERR_INVAL;
}
