/*
 * jbuf.c - text buffer and JSON strings (see jbuf.h).
 */
#include "jbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jbuf_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->err != OK)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->err = ERR_NOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jbuf_puts(struct jbuf *b, const char *s)
{
    jbuf_put(b, s, strlen(s));
}

void jbuf_fmt(struct jbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof(tmp)) {
        b->err = ERR_TOOBIG;
        return;
    }
    jbuf_put(b, tmp, (size_t)w);
}

size_t jbuf_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong 3/4-byte forms, surrogates and values above U+10FFFF */
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* jbuf_str and jbuf_bytes: a byte that is not UTF-8 is U+FFFD, or \udcXX when exact. */
static void jbuf_str_any(struct jbuf *b, const char *s, size_t n, size_t max, bool exact)
{
    const unsigned char *u = (const unsigned char *)s;
    char esc[8];
    size_t i = 0;
    bool cut = false;
    jbuf_put(b, "\"", 1);
    while (i < n) {
        size_t len = jbuf_utf8_len(u + i, n - i);
        if (max && i + (len ? len : 1) > max) {
            cut = true;
            break;
        }
        if (len == 0) {
            if (exact) {
                snprintf(esc, sizeof(esc), "\\udc%02x", u[i]); /* u[i] >= 0x80 here */
                jbuf_put(b, esc, 6);
            } else {
                jbuf_puts(b, "\xef\xbf\xbd");
            }
            i++;
            continue;
        }
        /* a run of bytes that need no escape goes in one copy */
        size_t j = i;
        while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\' &&
               (!max || j + 1 <= max))
            j++;
        if (j > i) {
            jbuf_put(b, s + i, j - i);
            i = j;
            continue;
        }
        if (len == 1 && (u[i] == '"' || u[i] == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)u[i];
            jbuf_put(b, esc, 2);
        } else if (len == 1 && u[i] < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
            jbuf_put(b, esc, 6);
        } else {
            jbuf_put(b, s + i, len);
        }
        i += len;
    }
    if (cut)
        jbuf_puts(b, "\xe2\x80\xa6");
    jbuf_put(b, "\"", 1);
}

void jbuf_str(struct jbuf *b, const char *s, size_t n, size_t max)
{
    jbuf_str_any(b, s, n, max, false);
}

void jbuf_bytes(struct jbuf *b, const char *s, size_t n)
{
    jbuf_str_any(b, s, n, 0, true);
}

static const char jbuf_b64_abc[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void jbuf_base64(struct jbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char q[4 * 64];
    size_t k = 0;
    jbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)u[i + 1] << 8;
        if (i + 2 < n)
            v |= u[i + 2];
        q[k++] = jbuf_b64_abc[v >> 18];
        q[k++] = jbuf_b64_abc[(v >> 12) & 63];
        q[k++] = i + 1 < n ? jbuf_b64_abc[(v >> 6) & 63] : '=';
        q[k++] = i + 2 < n ? jbuf_b64_abc[v & 63] : '=';
        if (k == sizeof(q)) {
            jbuf_put(b, q, k);
            k = 0;
        }
    }
    jbuf_put(b, q, k);
    jbuf_put(b, "\"", 1);
}

static int jbuf_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

err_t jbuf_base64_decode(const char *s, size_t n, char *out, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    *len = 0;
    if (n % 4 != 0)
        return ERR_INVAL;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        /* "xx==" and "xxx=" only in the last quantum */
        size_t pad = last ? (u[i + 3] == '=') + (u[i + 3] == '=' && u[i + 2] == '=') : 0;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j >= 4 - pad ? 0 : jbuf_b64_value(u[i + j]);
            if (d < 0)
                return ERR_INVAL;
            v = v << 6 | (uint32_t)d;
        }
        out[o++] = (char)(v >> 16);
        if (pad < 2)
            out[o++] = (char)(v >> 8);
        if (pad < 1)
            out[o++] = (char)v;
    }
    *len = o;
    return OK;
}

void jbuf_free(struct jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
