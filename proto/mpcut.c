/*
 * mpcut.c - a copy of a msgpack object cut for display (mpcut.h).
 */
#include "mpcut.h"

#include <string.h>

#include "jbuf.h"

static err_t mp_cut_value(struct mp_reader *r, struct mp_writer *w, size_t max, unsigned depth);

static err_t mp_cut_str(struct slice s, struct mp_writer *w, size_t max)
{
    char out[MP_CUT_STR_MAX + 3];
    const unsigned char *u = (const unsigned char *)s.p;
    size_t i = 0;
    if (s.n <= max) {
        mp_put_strn(w, s.p, s.n);
        return OK;
    }
    /* whole sequences only, an invalid byte counting as one: jbuf_str's rule */
    while (i < s.n) {
        size_t len = jbuf_utf8_len(u + i, s.n - i);
        if (i + (len ? len : 1) > max)
            break;
        i += len ? len : 1;
    }
    memcpy(out, s.p, i);
    memcpy(out + i, "\xe2\x80\xa6", 3);
    mp_put_strn(w, out, i + 3);
    return OK;
}

/*
 * A bin or an ext as the rendering shows it: {"$bin": length} or {"$ext": true}. The placeholder
 * is a map, one level deeper than the value: where no container may open any more (the depth
 * mp_skip allows), the value stays whole, so the copy is never refused where the input is not.
 */
static err_t mp_cut_placeholder(struct mp_reader *r, struct mp_writer *w, enum mp_type t,
                                unsigned depth)
{
    struct mp_reader at = *r;
    struct slice raw, bin;
    if (mp_skip(r, &raw) != OK)
        return ERR_PROTO;
    if (depth >= MP_MAX_DEPTH) {
        mp_put_raw(w, raw.p, raw.n);
        return OK;
    }
    mp_put_map(w, 1);
    if (t == MP_BIN && mp_read_bin(&at, &bin) == OK) {
        mp_put_str(w, "$bin");
        mp_put_uint(w, bin.n);
    } else {
        mp_put_str(w, "$ext");
        mp_put_bool(w, true);
    }
    return OK;
}

static err_t mp_cut_container(struct mp_reader *r, struct mp_writer *w, size_t max, unsigned depth,
                              enum mp_type t)
{
    uint32_t n;
    /* depth counts non-empty containers, as mp_skip does, so both accept the same input */
    if (t == MP_ARRAY) {
        if (mp_read_array(r, &n) != OK || (n > 0 && depth >= MP_MAX_DEPTH))
            return ERR_PROTO;
        mp_put_array(w, n);
        for (uint32_t i = 0; i < n; i++)
            if (mp_cut_value(r, w, max, depth + 1) != OK)
                return ERR_PROTO;
        return OK;
    }
    if (mp_read_map(r, &n) != OK || (n > 0 && depth >= MP_MAX_DEPTH))
        return ERR_PROTO;
    mp_put_map(w, n);
    for (uint32_t i = 0; i < n; i++) {
        enum mp_type kt;
        struct slice k;
        /* a string key stays whole, as the rendering shows it (and masks by it) */
        if (mp_peek(r, &kt) == OK && kt == MP_STR) {
            if (mp_read_str(r, &k) != OK)
                return ERR_PROTO;
            mp_put_strn(w, k.p, k.n);
        } else if (mp_cut_value(r, w, max, depth + 1) != OK) {
            return ERR_PROTO;
        }
        if (mp_cut_value(r, w, max, depth + 1) != OK)
            return ERR_PROTO;
    }
    return OK;
}

static err_t mp_cut_value(struct mp_reader *r, struct mp_writer *w, size_t max, unsigned depth)
{
    enum mp_type t;
    struct slice s;
    if (mp_peek(r, &t) != OK)
        return ERR_PROTO;
    switch (t) {
    case MP_STR:
        if (mp_read_str(r, &s) != OK)
            return ERR_PROTO;
        return mp_cut_str(s, w, max);
    case MP_BIN:
    case MP_EXT:
        return mp_cut_placeholder(r, w, t, depth);
    case MP_ARRAY:
    case MP_MAP:
        return mp_cut_container(r, w, max, depth, t);
    case MP_NIL:
    case MP_BOOL:
    case MP_UINT:
    case MP_INT:
    case MP_FLOAT:
        if (mp_skip(r, &s) != OK)
            return ERR_PROTO;
        mp_put_raw(w, s.p, s.n);
        return OK;
    }
    return ERR_PROTO;
}

err_t mp_cut(const void *buf, size_t n, size_t max_str, struct mp_writer *w)
{
    struct mp_reader r;
    if (max_str == 0 || max_str > MP_CUT_STR_MAX)
        return ERR_INVAL;
    mp_reader_init(&r, buf, n);
    err_t rc = mp_cut_value(&r, w, max_str, 0);
    if (rc == OK && mp_reader_left(&r) != 0)
        rc = ERR_PROTO; /* one object, and nothing after it */
    return rc == OK ? mp_writer_err(w) : rc;
}

err_t mp_cut_element(const void *buf, size_t n, uint32_t index, size_t max_str,
                     struct mp_writer *w)
{
    struct mp_reader r;
    struct slice s;
    uint32_t count;
    if (max_str == 0 || max_str > MP_CUT_STR_MAX)
        return ERR_INVAL;
    mp_reader_init(&r, buf, n);
    if (mp_read_array(&r, &count) != OK)
        return ERR_PROTO;
    /* the elements around the cut one go in two copies, not one each: the tap cuts every
     * large envelope on the thread that sends it */
    const uint8_t *from = buf;
    for (uint32_t i = 0; i < count; i++) {
        if (i == index) {
            mp_put_raw(w, from, (size_t)(r.p - from));
            err_t rc = mp_cut_value(&r, w, max_str, 1);
            if (rc != OK)
                return rc;
            from = r.p;
        } else if (mp_skip(&r, &s) != OK) {
            return ERR_PROTO;
        }
    }
    if (mp_reader_left(&r) != 0)
        return ERR_PROTO; /* one object, and nothing after it */
    mp_put_raw(w, from, (size_t)(r.p - from));
    return mp_writer_err(w);
}
