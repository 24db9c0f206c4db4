/*
 * mpjson.c - msgpack to JSON rendering (see mpjson.h).
 */
#include "mpjson.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jbuf.h"
#include "mp.h"

static bool mp_json_secret_key(struct slice k)
{
    static const char *const words[] = {"key", "token", "secret", "password", "authorization"};
    for (unsigned w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= k.n; i++)
            if (strncasecmp(k.p + i, words[w], wl) == 0)
                return true;
    }
    return false;
}

static err_t mp_json_value(struct mp_reader *r, struct jbuf *b, size_t max, unsigned depth);

static err_t mp_json_container(struct mp_reader *r, struct jbuf *b, size_t max,
                               unsigned depth, enum mp_type t)
{
    uint32_t n;
    /* depth counts non-empty containers, as mp_skip does, so both accept the same input */
    if (t == MP_ARRAY) {
        if (mp_read_array(r, &n) != OK || (n > 0 && depth >= MP_MAX_DEPTH))
            return ERR_PROTO;
        jbuf_put(b, "[", 1);
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                jbuf_put(b, ",", 1);
            if (mp_json_value(r, b, max, depth + 1) != OK)
                return ERR_PROTO;
        }
        jbuf_put(b, "]", 1);
        return OK;
    }
    if (mp_read_map(r, &n) != OK || (n > 0 && depth >= MP_MAX_DEPTH))
        return ERR_PROTO;
    jbuf_put(b, "{", 1);
    for (uint32_t i = 0; i < n; i++) {
        struct slice k;
        if (i)
            jbuf_put(b, ",", 1);
        if (mp_read_str(r, &k) == OK) {
            jbuf_str(b, k.p, k.n, 0);
            enum mp_type vt;
            if (b->mask && mp_json_secret_key(k) && mp_peek(r, &vt) == OK &&
                (vt == MP_STR || vt == MP_ARRAY)) {
                if (mp_skip_depth(r, NULL, MP_MAX_DEPTH - depth - 1) != OK)
                    return ERR_PROTO;
                jbuf_puts(b, ":\"****\"");
                continue;
            }
        } else {
            /* JSON keys are strings: a scalar key becomes the string of its JSON text; a
             * structured one a placeholder, since rendering it inside a string would double
             * the output per level of nesting */
            enum mp_type kt;
            if (mp_peek(r, &kt) != OK)
                return ERR_PROTO;
            if (kt == MP_ARRAY || kt == MP_MAP || kt == MP_BIN || kt == MP_EXT) {
                /* the key counts the levels around it too, as the masked values do */
                if (mp_skip_depth(r, NULL, MP_MAX_DEPTH - depth - 1) != OK)
                    return ERR_PROTO;
                jbuf_puts(b, "\"$key\"");
            } else {
                struct jbuf kb = {0};
                err_t rc = mp_json_value(r, &kb, max, depth + 1);
                if (rc == OK && kb.err == OK)
                    jbuf_str(b, kb.p, kb.n, 0);
                else if (rc == OK)
                    b->err = kb.err;
                free(kb.p);
                if (rc != OK)
                    return rc;
            }
        }
        jbuf_put(b, ":", 1);
        if (mp_json_value(r, b, max, depth + 1) != OK)
            return ERR_PROTO;
    }
    jbuf_put(b, "}", 1);
    return OK;
}

static err_t mp_json_value(struct mp_reader *r, struct jbuf *b, size_t max, unsigned depth)
{
    enum mp_type t;
    char num[64];
    struct slice s;

    if (mp_peek(r, &t) != OK)
        return ERR_PROTO;
    switch (t) {
    case MP_NIL:
        (void)mp_read_nil(r);
        jbuf_puts(b, "null");
        return OK;
    case MP_BOOL: {
        bool v;
        (void)mp_read_bool(r, &v);
        jbuf_puts(b, v ? "true" : "false");
        return OK;
    }
    case MP_UINT: {
        uint64_t v;
        (void)mp_read_uint(r, &v);
        snprintf(num, sizeof(num), "%" PRIu64, v);
        jbuf_puts(b, num);
        return OK;
    }
    case MP_INT: {
        int64_t v;
        if (mp_read_int(r, &v) != OK)
            return ERR_PROTO;
        snprintf(num, sizeof(num), "%" PRId64, v);
        jbuf_puts(b, num);
        return OK;
    }
    case MP_FLOAT: {
        double v;
        (void)mp_read_float(r, &v);
        if (v != v || v - v != 0)
            jbuf_puts(b, "null"); /* NaN and infinities have no JSON form */
        else {
            snprintf(num, sizeof(num), "%.17g", v);
            jbuf_puts(b, num);
        }
        return OK;
    }
    case MP_STR:
        (void)mp_read_str(r, &s);
        jbuf_str(b, s.p, s.n, max);
        return OK;
    case MP_BIN:
        (void)mp_read_bin(r, &s);
        snprintf(num, sizeof(num), "{\"$bin\":%zu}", s.n);
        jbuf_puts(b, num);
        return OK;
    case MP_EXT:
        if (mp_skip(r, &s) != OK)
            return ERR_PROTO;
        jbuf_puts(b, "{\"$ext\":true}");
        return OK;
    case MP_ARRAY:
    case MP_MAP:
        return mp_json_container(r, b, max, depth, t);
    }
    return ERR_PROTO;
}

static err_t mp_to_json_impl(const void *buf, size_t n, size_t max_str, bool mask, char **out,
                             size_t *len)
{
    struct mp_reader r;
    struct jbuf b = {0};
    err_t rc;

    b.mask = mask;
    mp_reader_init(&r, buf, n);
    rc = mp_json_value(&r, &b, max_str, 0);
    if (rc == OK && mp_reader_left(&r) != 0)
        rc = ERR_PROTO; /* one object, and nothing after it */
    if (rc == OK)
        rc = b.err;
    if (rc == OK && b.p == NULL)
        rc = ERR_PROTO;
    if (rc != OK) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    *len = b.n;
    return OK;
}

err_t mp_to_json(const void *buf, size_t n, size_t max_str, char **out, size_t *len)
{
    return mp_to_json_impl(buf, n, max_str, false, out, len);
}

err_t mp_to_json_masked(const void *buf, size_t n, size_t max_str, char **out, size_t *len)
{
    return mp_to_json_impl(buf, n, max_str, true, out, len);
}
