/*
 * envdata.c - pure helpers: the envelope data of a record body (what a
 * session-channel waiter completes with, api contract §5.10/§12) and
 * PostgreSQL array literals. No I/O.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "jbuf.h"
#include "mem.h"
#include "wp.h"

#define WP_JSON_DEPTH 64

static size_t wp_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* End of the JSON string starting at s[i] == '"' (just past its closing quote), or 0. */
static size_t wp_skip_str(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* End of the JSON value at s[i] (past it), or 0 when malformed (only its shape is checked). */
static size_t wp_skip_value(const char *s, size_t n, size_t i, unsigned depth)
{
    if (i >= n || depth > WP_JSON_DEPTH)
        return 0;
    if (s[i] == '"')
        return wp_skip_str(s, n, i);
    if (s[i] == '{' || s[i] == '[') {
        char close = s[i] == '{' ? '}' : ']';
        bool obj = s[i] == '{';
        i = wp_ws(s, n, i + 1);
        if (i < n && s[i] == close)
            return i + 1;
        for (;;) {
            if (obj) {
                if (i >= n || s[i] != '"' || !(i = wp_skip_str(s, n, i)))
                    return 0;
                i = wp_ws(s, n, i);
                if (i >= n || s[i] != ':')
                    return 0;
                i = wp_ws(s, n, i + 1);
            }
            if (!(i = wp_skip_value(s, n, i, depth + 1)))
                return 0;
            i = wp_ws(s, n, i);
            if (i < n && s[i] == ',') {
                i = wp_ws(s, n, i + 1);
                continue;
            }
            return i < n && s[i] == close ? i + 1 : 0;
        }
    }
    /* a number, true, false, null: up to a delimiter */
    size_t j = i;
    while (j < n && !strchr(",]} \t\r\n", s[j]))
        j++;
    return j > i ? j : 0;
}

static int wp_hex4(const char *s)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value(s[k]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

static void wp_put_utf8(struct jbuf *b, uint32_t cp)
{
    char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (char)cp, k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)), k = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), k = 4;
    }
    jbuf_put(b, u, k);
}

/* Decodes the JSON string s[i..end) (quotes included) into b; false on a NUL or a bad escape. */
static bool wp_decode_str(struct jbuf *b, const char *s, size_t i, size_t end)
{
    for (i++; i + 1 < end; i++) {
        if (s[i] != '\\') {
            jbuf_put(b, s + i, 1);
            continue;
        }
        char e = s[++i];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char out[] = "\"\\/\b\f\n\r\t";
            jbuf_put(b, out + (simple - "\"\\/bfnrt"), 1);
            continue;
        }
        if (e != 'u' || i + 4 >= end)
            return false;
        int cp = wp_hex4(s + i + 1);
        i += 4;
        if (cp <= 0)
            return false;
        if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < end && s[i + 1] == '\\' && s[i + 2] == 'u') {
            int lo = wp_hex4(s + i + 3);
            if (lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
        }
        wp_put_utf8(b, (uint32_t)(cp >= 0xd800 && cp < 0xe000 ? 0xfffd : cp));
    }
    return true;
}

/* Copies s[0..n) into b as valid UTF-8 without NUL (U+FFFD for anything else). */
static void wp_put_clean(struct jbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = s[i] ? jbuf_utf8_len((const unsigned char *)s + i, n - i) : 0;
        if (k == 0) {
            jbuf_puts(b, "\xef\xbf\xbd");
            i++;
        } else {
            jbuf_put(b, s + i, k);
            i += k;
        }
    }
}

/* The span of the top-level "data" member's value of the object in s, or false. */
static bool wp_find_data(const char *s, size_t n, size_t *vs, size_t *ve)
{
    size_t i = wp_ws(s, n, 0);
    if (i >= n || s[i] != '{')
        return false;
    i = wp_ws(s, n, i + 1);
    while (i < n && s[i] == '"') {
        size_t ks = i, ke = wp_skip_str(s, n, i);
        if (!ke)
            return false;
        i = wp_ws(s, n, ke);
        if (i >= n || s[i] != ':')
            return false;
        i = wp_ws(s, n, i + 1);
        size_t e = wp_skip_value(s, n, i, 0);
        if (!e)
            return false;
        if (ke - ks == 6 && memcmp(s + ks, "\"data\"", 6) == 0) {
            *vs = i;
            *ve = e;
            return true;
        }
        i = wp_ws(s, n, e);
        if (i < n && s[i] == ',')
            i = wp_ws(s, n, i + 1);
        else
            return false;
    }
    return false;
}

char *wp_envelope_data(const char *body, size_t n)
{
    struct jbuf b = {0};
    size_t vs, ve;
    if (body && wp_find_data(body, n, &vs, &ve)) {
        if (body[vs] == '"') {
            struct jbuf d = {0};
            if (wp_decode_str(&d, body, vs, ve)) {
                wp_put_clean(&b, d.p ? d.p : "", d.n);
                jbuf_free(&d);
                goto done;
            }
            jbuf_free(&d);
        }
        wp_put_clean(&b, body + vs, ve - vs);
    } else if (body) {
        wp_put_clean(&b, body, n);
    }
done:
    jbuf_put(&b, "", 0);
    if (b.err != OK) {
        jbuf_free(&b);
        return NULL;
    }
    if (!b.p)
        return xstrndup("", 0);
    return b.p;
}

char *wp_pg_array(const struct slice *items, unsigned n)
{
    struct jbuf b = {0};
    jbuf_put(&b, "{", 1);
    for (unsigned i = 0; i < n; i++) {
        if (memchr(items[i].p, '\0', items[i].n)) {
            jbuf_free(&b);
            return NULL;
        }
        if (i)
            jbuf_put(&b, ",", 1);
        jbuf_put(&b, "\"", 1);
        for (size_t k = 0; k < items[i].n; k++) {
            if (items[i].p[k] == '"' || items[i].p[k] == '\\')
                jbuf_put(&b, "\\", 1);
            jbuf_put(&b, items[i].p + k, 1);
        }
        jbuf_put(&b, "\"", 1);
    }
    jbuf_put(&b, "}", 1);
    if (b.err != OK) {
        jbuf_free(&b);
        return NULL;
    }
    return b.p;
}
