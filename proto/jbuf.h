/*
 * jbuf.h - a growable text buffer for building JSON, and the JSON string
 * encoders Tether uses for bytes of unknown origin: lossy for display
 * (jbuf_str), lossless for records (jbuf_bytes, jbuf_base64).
 *
 * Errors are sticky: after an allocation failure every call is a no-op and
 * err says ERR_NOMEM, so a writer checks once at the end. The buffer owns p
 * (free() it, or jbuf_free); p is NUL-terminated whenever n > 0.
 */
#ifndef TETHER_PROTO_JBUF_H
#define TETHER_PROTO_JBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct jbuf {
    char *p;
    size_t n, cap;
    err_t err;
    bool mask; /* mpjson: render secret-named values as "****" */
};

void jbuf_put(struct jbuf *b, const char *s, size_t n);
void jbuf_puts(struct jbuf *b, const char *s);
/* printf-style; output longer than 256 bytes is an error (it is for numbers and short keys). */
void jbuf_fmt(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * A JSON string of s[0..n): escapes what JSON needs, replaces bytes that are
 * not UTF-8 with U+FFFD (as a text decoder does), and cuts after max bytes
 * (0 = no limit) on a character boundary, marking the cut with an ellipsis.
 */
void jbuf_str(struct jbuf *b, const char *s, size_t n, size_t max);
/*
 * A JSON string of the bytes s[0..n), losslessly: like jbuf_str (no cut),
 * but each byte that is not part of valid UTF-8 becomes the escape \udcXX
 * (XX its value, always 80-ff), PEP 383's "surrogateescape". Valid UTF-8
 * never encodes a surrogate, so a reader gets the bytes back exactly: in
 * JavaScript each lone U+DC80-U+DCFF code unit is one byte, in Python
 * s.encode("utf-8", "surrogateescape"). NUL is \u0000. For records, which
 * are bytes, where the answer must be JSON text.
 */
void jbuf_bytes(struct jbuf *b, const char *s, size_t n);
/* A JSON string of s[0..n) in base64 (RFC 4648, standard alphabet, padded). */
void jbuf_base64(struct jbuf *b, const char *s, size_t n);
/*
 * Decodes padded standard base64 s[0..n) into out, which holds at least
 * JBUF_BASE64_DECODED_MAX(n) bytes; *len is the decoded length. ERR_INVAL
 * when s is not that (a length not a multiple of 4, a character outside the
 * alphabet, padding anywhere but at the end).
 */
#define JBUF_BASE64_DECODED_MAX(n) ((n) / 4 * 3)
err_t jbuf_base64_decode(const char *s, size_t n, char *out, size_t *len);
/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not one. */
size_t jbuf_utf8_len(const unsigned char *s, size_t n);
void jbuf_free(struct jbuf *b);

#endif
