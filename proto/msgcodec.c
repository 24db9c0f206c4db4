/*
 * msgcodec.c - the table-driven codec of typed message bodies (see msgcodec.h).
 */
#include "msgcodec.h"

#include <string.h>

struct slice msg_str(const char *s)
{
    return s ? (struct slice){s, strlen(s)} : SLICE_NULL;
}

bool msg_cstr(struct slice s, char *buf, size_t cap)
{
    if (!s.p || memchr(s.p, '\0', s.n) || slice_copy(s, buf, cap) != OK) {
        if (cap)
            buf[0] = '\0';
        return false;
    }
    return true;
}

static const struct msg_field *msgf_find(const struct msg_form *f, struct slice key, unsigned *idx)
{
    for (unsigned i = 0; i < f->nfields; i++)
        if (slice_eq(key, f->fields[i].key)) {
            *idx = i;
            return &f->fields[i];
        }
    return NULL;
}

/* Whether a value of type t can be read as a field of kind k. */
static bool msgf_kind_takes(enum msgf_kind k, enum mp_type t)
{
    switch (k) {
    case MSGF_STR:
        return t == MP_STR;
    case MSGF_BIN:
        return t == MP_STR || t == MP_BIN;
    case MSGF_U64:
        return t == MP_UINT;
    case MSGF_I64:
        return t == MP_UINT || t == MP_INT;
    case MSGF_F64:
        return t == MP_UINT || t == MP_INT || t == MP_FLOAT;
    case MSGF_BOOL:
        return t == MP_BOOL;
    case MSGF_RAW:
        return true;
    }
    return false;
}

/* Reads the value of fd (of type t, which its kind takes); ERR_PROTO on malformed input. */
static err_t msgf_read(const struct msg_field *fd, enum mp_type t, struct mp_reader *r, char *out)
{
    void *v = out + fd->off;
    struct slice s;
    err_t rc;

    switch (fd->kind) {
    case MSGF_STR:
    case MSGF_BIN:
        rc = t == MP_STR ? mp_read_str(r, &s) : mp_read_bin(r, &s);
        break;
    case MSGF_RAW:
        rc = mp_skip(r, &s);
        break;
    case MSGF_U64:
        return mp_read_uint(r, v);
    case MSGF_I64:
        return mp_read_int(r, v) == OK ? OK : ERR_INVAL; /* a uint past INT64_MAX */
    case MSGF_F64:
        return mp_read_float(r, v);
    case MSGF_BOOL:
        return mp_read_bool(r, v);
    default:
        return ERR_INTERNAL;
    }
    if (rc != OK)
        return rc;
    if (fd->max && s.n > fd->max)
        return ERR_INVAL;
    if (!s.p) /* an empty string of a body: still present, and not nil */
        s.p = "";
    memcpy(v, &s, sizeof(s));
    return OK;
}

err_t msg_decode(const struct msg_form *f, const void *body, size_t n, void *out_)
{
    char *out = out_;
    uint64_t seen = 0;
    uint32_t pairs = 0;
    struct mp_reader r;
    err_t rc;

    if (f->nfields > 64)
        return ERR_INTERNAL;
    /* every field, given flags too, lies inside the struct the table describes */
    for (unsigned i = 0; i < f->nfields; i++)
        if (f->fields[i].given_off != MSGF_NO_GIVEN)
            *(bool *)(out + f->fields[i].given_off) = false;
    for (unsigned i = 0; i < f->nfields; i++) {
        const struct msg_field *fd = &f->fields[i];
        void *v = out + fd->off;
        switch (fd->kind) {
        case MSGF_STR:
        case MSGF_BIN:
        case MSGF_RAW:
            memcpy(v, &SLICE_NULL, sizeof(struct slice));
            break;
        case MSGF_U64:
            *(uint64_t *)v = 0;
            break;
        case MSGF_I64:
            *(int64_t *)v = 0;
            break;
        case MSGF_F64:
            *(double *)v = 0;
            break;
        case MSGF_BOOL:
            *(bool *)v = false;
            break;
        }
    }
    if (n > 0) {
        mp_reader_init(&r, body, n);
        if ((rc = mp_read_map(&r, &pairs)) != OK)
            return ERR_PROTO;
    }
    for (uint32_t k = 0; k < pairs; k++) {
        struct slice key;
        unsigned idx = 0;
        enum mp_type t;
        if (mp_read_str(&r, &key) != OK)
            return ERR_PROTO;
        const struct msg_field *fd = msgf_find(f, key, &idx);
        if (!fd || (seen & (1ull << idx))) { /* unknown, or a repeat: the first one counts */
            if (mp_skip(&r, NULL) != OK)
                return ERR_PROTO;
            continue;
        }
        seen |= 1ull << idx;
        if (fd->given_off != MSGF_NO_GIVEN)
            *(bool *)(out + fd->given_off) = true;
        if (mp_peek(&r, &t) != OK)
            return ERR_PROTO;
        if (t == MP_NIL && fd->kind != MSGF_RAW) {
            (void)mp_read_nil(&r);
            seen &= ~(1ull << idx); /* nil reads as absent for the required check */
            continue;
        }
        if (!msgf_kind_takes(fd->kind, t))
            return ERR_INVAL;
        if ((rc = msgf_read(fd, t, &r, out)) != OK)
            return rc;
    }
    if (n > 0 && mp_reader_left(&r) != 0)
        return ERR_PROTO;
    for (unsigned i = 0; i < f->nfields; i++) {
        const struct msg_field *fd = &f->fields[i];
        if (!(fd->flags & MSGF_REQUIRED))
            continue;
        if (!(seen & (1ull << i)))
            return ERR_INVAL;
        if (fd->kind == MSGF_STR && ((const struct slice *)(out + fd->off))->n == 0)
            return ERR_INVAL;
    }
    return OK;
}

/* Whether fd is written at all. */
static bool msgf_written(const struct msg_field *fd, const char *in)
{
    const void *v = in + fd->off;
    if (fd->given_off != MSGF_NO_GIVEN) /* written when given, as nil when empty */
        return *(const bool *)(in + fd->given_off);
    switch (fd->kind) {
    case MSGF_STR:
    case MSGF_BIN:
    case MSGF_RAW:
        return ((const struct slice *)v)->p || (fd->flags & MSGF_NIL);
    case MSGF_U64:
        return !(fd->flags & MSGF_OMIT0) || *(const uint64_t *)v;
    case MSGF_I64:
        return !(fd->flags & MSGF_OMIT0) || *(const int64_t *)v;
    case MSGF_F64:
        return !(fd->flags & MSGF_OMIT0) || *(const double *)v != 0;
    case MSGF_BOOL:
        return !(fd->flags & MSGF_OMIT0) || *(const bool *)v;
    }
    return false;
}

void msg_encode(const struct msg_form *f, struct mp_writer *w, const void *in_)
{
    const char *in = in_;
    uint32_t n = 0;
    for (unsigned i = 0; i < f->nfields; i++)
        n += msgf_written(&f->fields[i], in);
    mp_put_map(w, n);
    for (unsigned i = 0; i < f->nfields; i++) {
        const struct msg_field *fd = &f->fields[i];
        const void *v = in + fd->off;
        if (!msgf_written(fd, in))
            continue;
        mp_put_str(w, fd->key);
        switch (fd->kind) {
        case MSGF_STR:
        case MSGF_BIN:
        case MSGF_RAW: {
            const struct slice *s = v;
            if (!s->p)
                mp_put_nil(w);
            else if (fd->kind == MSGF_STR)
                mp_put_strn(w, s->p, s->n);
            else if (fd->kind == MSGF_BIN)
                mp_put_bin(w, s->p, s->n);
            else
                mp_put_raw(w, s->p, s->n);
            break;
        }
        case MSGF_U64:
            mp_put_uint(w, *(const uint64_t *)v);
            break;
        case MSGF_I64:
            mp_put_int(w, *(const int64_t *)v);
            break;
        case MSGF_F64:
            mp_put_double(w, *(const double *)v);
            break;
        case MSGF_BOOL:
            mp_put_bool(w, *(const bool *)v);
            break;
        }
    }
}
