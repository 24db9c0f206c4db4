/*
 * mp.c - bounded msgpack reader and msgpack-c based writer.
 *
 * The reader decodes the msgpack format by hand rather than through
 * msgpack_unpack(), because the library allocates zone memory sized from the
 * lengths the input declares; here a declared length is only ever compared
 * with the bytes that are actually present.
 */
#include "mp.h"

#include <string.h>

bool slice_eq(struct slice a, const char *cstr)
{
    size_t n = strlen(cstr);
    return a.n == n && (n == 0 || memcmp(a.p, cstr, n) == 0);
}

err_t slice_copy(struct slice s, char *buf, size_t cap)
{
    if (cap == 0 || s.n >= cap)
        return ERR_TOOBIG;
    if (s.n > 0)
        memcpy(buf, s.p, s.n);
    buf[s.n] = '\0';
    return OK;
}

void mp_reader_init(struct mp_reader *r, const void *buf, size_t n)
{
    r->p = buf;
    r->end = r->p + n;
}

size_t mp_reader_left(const struct mp_reader *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t mp_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * One decoded object head: its type, and either its scalar value or, for
 * str/bin/ext, the payload slice, or for array/map the element count.
 */
struct mp_head {
    enum mp_type type;
    uint64_t u;
    int64_t i;
    double f;
    struct slice payload;
    uint32_t count;
};

static err_t mp_take(struct mp_reader *r, size_t n, const uint8_t **out)
{
    if (mp_reader_left(r) < n)
        return ERR_PROTO;
    *out = r->p;
    r->p += n;
    return OK;
}

static err_t mp_take_payload(struct mp_reader *r, uint64_t n, struct slice *s)
{
    const uint8_t *p;
    if (n > mp_reader_left(r))
        return ERR_PROTO;
    if (mp_take(r, (size_t)n, &p) != OK)
        return ERR_PROTO;
    s->p = (const char *)p;
    s->n = (size_t)n;
    return OK;
}

static err_t mp_take_len(struct mp_reader *r, unsigned width, uint64_t *n)
{
    const uint8_t *p;
    if (mp_take(r, width, &p) != OK)
        return ERR_PROTO;
    *n = mp_be(p, width);
    return OK;
}

/* Containers: every element is at least one byte, so a count above what is left is a lie. */
static err_t mp_check_count(struct mp_reader *r, uint64_t n, unsigned per_elem, uint32_t *out)
{
    if (n > UINT32_MAX || n * per_elem > mp_reader_left(r))
        return ERR_PROTO;
    *out = (uint32_t)n;
    return OK;
}

static err_t mp_head_read(struct mp_reader *r, struct mp_head *h)
{
    const uint8_t *b;
    uint64_t n;
    if (mp_take(r, 1, &b) != OK)
        return ERR_PROTO;
    uint8_t c = *b;
    memset(h, 0, sizeof(*h));

    if (c <= 0x7f) {
        h->type = MP_UINT;
        h->u = c;
        return OK;
    }
    if (c >= 0xe0) {
        h->type = MP_INT;
        h->i = (int8_t)c;
        return OK;
    }
    if ((c & 0xf0) == 0x80) {
        h->type = MP_MAP;
        return mp_check_count(r, c & 0x0f, 2, &h->count);
    }
    if ((c & 0xf0) == 0x90) {
        h->type = MP_ARRAY;
        return mp_check_count(r, c & 0x0f, 1, &h->count);
    }
    if ((c & 0xe0) == 0xa0) {
        h->type = MP_STR;
        return mp_take_payload(r, c & 0x1f, &h->payload);
    }

    switch (c) {
    case 0xc0:
        h->type = MP_NIL;
        return OK;
    case 0xc2:
    case 0xc3:
        h->type = MP_BOOL;
        h->u = c == 0xc3;
        return OK;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        h->type = MP_BIN;
        if (mp_take_len(r, 1u << (c - 0xc4), &n) != OK)
            return ERR_PROTO;
        return mp_take_payload(r, n, &h->payload);
    case 0xc7:
    case 0xc8:
    case 0xc9:
        h->type = MP_EXT;
        if (mp_take_len(r, 1u << (c - 0xc7), &n) != OK)
            return ERR_PROTO;
        return mp_take_payload(r, n + 1, &h->payload); /* type byte + data */
    case 0xca: {
        uint64_t bits;
        float f;
        uint32_t b32;
        if (mp_take_len(r, 4, &bits) != OK)
            return ERR_PROTO;
        b32 = (uint32_t)bits;
        memcpy(&f, &b32, sizeof(f));
        h->type = MP_FLOAT;
        h->f = f;
        return OK;
    }
    case 0xcb: {
        uint64_t bits;
        if (mp_take_len(r, 8, &bits) != OK)
            return ERR_PROTO;
        memcpy(&h->f, &bits, sizeof(h->f));
        h->type = MP_FLOAT;
        return OK;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        h->type = MP_UINT;
        return mp_take_len(r, 1u << (c - 0xcc), &h->u);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        unsigned w = 1u << (c - 0xd0);
        if (mp_take_len(r, w, &n) != OK)
            return ERR_PROTO;
        /* sign-extend the w-byte two's complement value */
        if (w < 8 && (n >> (w * 8 - 1)) & 1)
            n |= ~((UINT64_C(1) << (w * 8)) - 1);
        int64_t v;
        memcpy(&v, &n, sizeof(v));
        if (v >= 0) {
            h->type = MP_UINT;
            h->u = (uint64_t)v;
        } else {
            h->type = MP_INT;
            h->i = v;
        }
        return OK;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->type = MP_EXT;
        return mp_take_payload(r, (1u << (c - 0xd4)) + 1, &h->payload);
    case 0xd9:
    case 0xda:
    case 0xdb:
        h->type = MP_STR;
        if (mp_take_len(r, 1u << (c - 0xd9), &n) != OK)
            return ERR_PROTO;
        return mp_take_payload(r, n, &h->payload);
    case 0xdc:
    case 0xdd:
        h->type = MP_ARRAY;
        if (mp_take_len(r, c == 0xdc ? 2 : 4, &n) != OK)
            return ERR_PROTO;
        return mp_check_count(r, n, 1, &h->count);
    case 0xde:
    case 0xdf:
        h->type = MP_MAP;
        if (mp_take_len(r, c == 0xde ? 2 : 4, &n) != OK)
            return ERR_PROTO;
        return mp_check_count(r, n, 2, &h->count);
    default:
        return ERR_PROTO; /* 0xc1 is never used */
    }
}

err_t mp_peek(const struct mp_reader *r, enum mp_type *t)
{
    struct mp_reader copy = *r;
    struct mp_head h;
    if (mp_head_read(&copy, &h) != OK)
        return ERR_PROTO;
    *t = h.type;
    return OK;
}

static err_t mp_read_typed(struct mp_reader *r, enum mp_type want, struct mp_head *h)
{
    struct mp_reader save = *r;
    if (mp_head_read(r, h) != OK || h->type != want) {
        *r = save;
        return ERR_PROTO;
    }
    return OK;
}

err_t mp_read_nil(struct mp_reader *r)
{
    struct mp_head h;
    return mp_read_typed(r, MP_NIL, &h);
}

err_t mp_read_bool(struct mp_reader *r, bool *v)
{
    struct mp_head h;
    if (mp_read_typed(r, MP_BOOL, &h) != OK)
        return ERR_PROTO;
    *v = h.u != 0;
    return OK;
}

err_t mp_read_uint(struct mp_reader *r, uint64_t *v)
{
    struct mp_head h;
    if (mp_read_typed(r, MP_UINT, &h) != OK)
        return ERR_PROTO;
    *v = h.u;
    return OK;
}

err_t mp_read_int(struct mp_reader *r, int64_t *v)
{
    struct mp_reader save = *r;
    struct mp_head h;
    if (mp_head_read(r, &h) != OK)
        goto bad;
    if (h.type == MP_INT) {
        *v = h.i;
        return OK;
    }
    if (h.type == MP_UINT && h.u <= INT64_MAX) {
        *v = (int64_t)h.u;
        return OK;
    }
bad:
    *r = save;
    return ERR_PROTO;
}

err_t mp_read_float(struct mp_reader *r, double *v)
{
    struct mp_reader save = *r;
    struct mp_head h;
    if (mp_head_read(r, &h) != OK)
        goto bad;
    switch (h.type) {
    case MP_FLOAT:
        *v = h.f;
        return OK;
    case MP_UINT:
        *v = (double)h.u;
        return OK;
    case MP_INT:
        *v = (double)h.i;
        return OK;
    default:
        break;
    }
bad:
    *r = save;
    return ERR_PROTO;
}

err_t mp_read_str(struct mp_reader *r, struct slice *s)
{
    struct mp_head h;
    if (mp_read_typed(r, MP_STR, &h) != OK)
        return ERR_PROTO;
    *s = h.payload;
    return OK;
}

err_t mp_read_bin(struct mp_reader *r, struct slice *s)
{
    struct mp_head h;
    if (mp_read_typed(r, MP_BIN, &h) != OK)
        return ERR_PROTO;
    *s = h.payload;
    return OK;
}

err_t mp_read_str_or_nil(struct mp_reader *r, struct slice *s)
{
    if (mp_read_nil(r) == OK) {
        *s = SLICE_NULL;
        return OK;
    }
    return mp_read_str(r, s);
}

err_t mp_read_array(struct mp_reader *r, uint32_t *n)
{
    struct mp_head h;
    if (mp_read_typed(r, MP_ARRAY, &h) != OK)
        return ERR_PROTO;
    *n = h.count;
    return OK;
}

err_t mp_read_map(struct mp_reader *r, uint32_t *n)
{
    struct mp_head h;
    if (mp_read_typed(r, MP_MAP, &h) != OK)
        return ERR_PROTO;
    *n = h.count;
    return OK;
}

/*
 * Skipping is iterative: `pending` counts the objects still to consume at
 * each open level, so hostile nesting costs a bounded array, not the stack.
 */
err_t mp_skip(struct mp_reader *r, struct slice *raw)
{
    return mp_skip_depth(r, raw, MP_MAX_DEPTH);
}

err_t mp_skip_depth(struct mp_reader *r, struct slice *raw, unsigned max_depth)
{
    uint64_t pending[MP_MAX_DEPTH + 1];
    unsigned depth = 0;
    const uint8_t *start = r->p;
    struct mp_reader save = *r;

    pending[0] = 1;
    while (1) {
        struct mp_head h;
        if (mp_head_read(r, &h) != OK)
            goto bad;
        pending[depth]--;
        if (h.type == MP_ARRAY || h.type == MP_MAP) {
            uint64_t n = h.type == MP_MAP ? (uint64_t)h.count * 2 : h.count;
            if (n > 0) {
                if (depth >= max_depth || depth == MP_MAX_DEPTH)
                    goto bad;
                pending[++depth] = n;
                continue;
            }
        }
        while (depth > 0 && pending[depth] == 0)
            depth--;
        if (depth == 0 && pending[0] == 0)
            break;
    }
    if (raw) {
        raw->p = (const char *)start;
        raw->n = (size_t)(r->p - start);
    }
    return OK;
bad:
    *r = save;
    return ERR_PROTO;
}

err_t mp_map_find(const void *buf, size_t n, const char *key, struct mp_reader *val)
{
    struct mp_reader r;
    uint32_t count;
    mp_reader_init(&r, buf, n);
    if (mp_read_map(&r, &count) != OK)
        return ERR_PROTO;
    for (uint32_t i = 0; i < count; i++) {
        struct slice k;
        if (mp_read_str(&r, &k) != OK)
            return ERR_PROTO;
        if (slice_eq(k, key)) {
            *val = r;
            return OK;
        }
        if (mp_skip(&r, NULL) != OK)
            return ERR_PROTO;
    }
    return ERR_NOTFOUND;
}

/* ---- writer ---- */

static int mp_writer_sink(void *data, const char *buf, size_t len)
{
    struct mp_writer *w = data;
    if (w->err != OK)
        return -1;
    if (msgpack_sbuffer_write(&w->sb, buf, len) != 0) {
        w->err = ERR_NOMEM;
        return -1;
    }
    return 0;
}

void mp_writer_init(struct mp_writer *w)
{
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, w, mp_writer_sink);
    w->err = OK;
}

void mp_writer_fini(struct mp_writer *w)
{
    msgpack_sbuffer_destroy(&w->sb);
    msgpack_sbuffer_init(&w->sb);
}

void mp_writer_reset(struct mp_writer *w)
{
    w->sb.size = 0;
    w->err = OK;
}

err_t mp_writer_err(const struct mp_writer *w)
{
    return w->err;
}

const void *mp_writer_data(const struct mp_writer *w)
{
    return w->sb.data;
}

size_t mp_writer_len(const struct mp_writer *w)
{
    return w->sb.size;
}

void mp_put_nil(struct mp_writer *w)
{
    msgpack_pack_nil(&w->pk);
}

void mp_put_bool(struct mp_writer *w, bool v)
{
    if (v)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
}

void mp_put_uint(struct mp_writer *w, uint64_t v)
{
    msgpack_pack_uint64(&w->pk, v);
}

void mp_put_int(struct mp_writer *w, int64_t v)
{
    msgpack_pack_int64(&w->pk, v);
}

void mp_put_double(struct mp_writer *w, double v)
{
    msgpack_pack_double(&w->pk, v);
}

void mp_put_strn(struct mp_writer *w, const char *s, size_t n)
{
    if (n > UINT32_MAX) {
        w->err = ERR_TOOBIG;
        return;
    }
    msgpack_pack_str(&w->pk, n);
    if (n > 0)
        msgpack_pack_str_body(&w->pk, s, n);
}

void mp_put_str(struct mp_writer *w, const char *s)
{
    if (s == NULL)
        mp_put_nil(w);
    else
        mp_put_strn(w, s, strlen(s));
}

void mp_put_bin(struct mp_writer *w, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        w->err = ERR_TOOBIG;
        return;
    }
    msgpack_pack_bin(&w->pk, n);
    if (n > 0)
        msgpack_pack_bin_body(&w->pk, p, n);
}

void mp_put_array(struct mp_writer *w, uint32_t n)
{
    msgpack_pack_array(&w->pk, n);
}

void mp_put_map(struct mp_writer *w, uint32_t n)
{
    msgpack_pack_map(&w->pk, n);
}

void mp_put_raw(struct mp_writer *w, const void *p, size_t n)
{
    if (n > 0)
        mp_writer_sink(w, p, n);
}

void mp_put_kv_str(struct mp_writer *w, const char *k, const char *v)
{
    mp_put_str(w, k);
    mp_put_str(w, v);
}

void mp_put_kv_uint(struct mp_writer *w, const char *k, uint64_t v)
{
    mp_put_str(w, k);
    mp_put_uint(w, v);
}

void mp_put_kv_int(struct mp_writer *w, const char *k, int64_t v)
{
    mp_put_str(w, k);
    mp_put_int(w, v);
}

void mp_put_kv_bool(struct mp_writer *w, const char *k, bool v)
{
    mp_put_str(w, k);
    mp_put_bool(w, v);
}
