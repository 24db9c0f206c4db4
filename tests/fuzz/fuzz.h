/*
 * fuzz.h - what every libFuzzer target in tests/fuzz/ shares: the entry points, FUZZ_CHECK
 * (an invariant that does not hold aborts, and libFuzzer keeps the input as a crash), and
 * small readers that cut one input into the pieces a target feeds.
 *
 * Header-only (static functions): each target is one translation unit plus the libraries.
 */
#ifndef TETHER_FUZZ_H
#define TETHER_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Always on, whatever NDEBUG says: file:line and the condition, then abort(). */
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))

static inline _Noreturn void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
    abort();
}

/* ---- cutting an input ---- */

struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

/* The next byte, or 0 when none is left. */
static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* The bytes up to the next sep (not included; sep is consumed), or all that is left. */
static inline struct fuzz_in fuzz_until(struct fuzz_in *in, uint8_t sep)
{
    const uint8_t *e = in->n ? memchr(in->p, sep, in->n) : NULL;
    struct fuzz_in part = {in->p, e ? (size_t)(e - in->p) : in->n};
    in->p += part.n + (e ? 1 : 0);
    in->n -= part.n + (e ? 1 : 0);
    return part;
}

/* A NUL-terminated malloc'd copy (the input may hold NULs: callers that need C strings see
 * only what precedes the first one). */
static inline char *fuzz_strdup(struct fuzz_in s)
{
    char *c = malloc(s.n + 1);
    if (!c)
        abort();
    if (s.n)
        memcpy(c, s.p, s.n);
    c[s.n] = '\0';
    return c;
}

/* ---- checks shared by several targets ---- */

/* Whether s[0..n) is exactly one JSON value, no white space around it (RFC 8259, numbers of any
 * size): jscan, on the value wrapped in an object; the span check stops `1,"w":2` passing. */
static inline bool fuzz_json_valid(const char *s, size_t n)
{
    static const char *const names[] = {"v"};
    struct slice v;
    char *w = malloc(n + 8);
    if (!w)
        abort();
    memcpy(w, "{\"v\":", 5);
    if (n)
        memcpy(w + 5, s, n);
    w[5 + n] = '}';
    bool ok = jscan_members(w, n + 6, names, &v, 1) == OK && v.n == n;
    free(w);
    return ok;
}

/* The bytes JavaScript's encodeURIComponent leaves alone (every other byte becomes %XX). */
static inline bool fuzz_uri_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("-_.!~*'()", c) != NULL);
}

/* encodeURIComponent of s[0..n) into out (3n + 1 bytes); returns the length. */
static inline size_t fuzz_uri_encode(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (fuzz_uri_unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

/* Unpadded base64url of n bytes into out (4 * ceil(n / 3) + 1 bytes), NUL-terminated; the
 * length. Signs the tokens the harnesses make, so it is written apart from gateway/jwt.c. */
static inline size_t fuzz_b64url_encode(const unsigned char *s, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = abc[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
    return o;
}

#endif
