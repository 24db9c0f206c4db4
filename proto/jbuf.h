/*
 * jbuf.h - a growable text buffer for building JSON, and the one JSON
 * string encoder Tether uses for bytes of unknown origin.
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
/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not one. */
size_t jbuf_utf8_len(const unsigned char *s, size_t n);
void jbuf_free(struct jbuf *b);

#endif
