/*
 * jscan.h - finds members of a JSON object as spans of its text, without
 * decoding anything, so a value can be copied into another JSON text exactly
 * as it was written (escapes such as \u0000 or \udcff included).
 *
 * The whole text is validated (RFC 8259, UTF-8, at most JSCAN_DEPTH_MAX
 * nested containers), so a span it answers is itself valid JSON. Lone
 * surrogate escapes are accepted: JSON's grammar allows them and
 * jbuf_bytes writes them. Pure, no allocation.
 */
#ifndef TETHER_PROTO_JSCAN_H
#define TETHER_PROTO_JSCAN_H

#include <stddef.h>

#include "err.h"
#include "mp.h"

#define JSCAN_DEPTH_MAX 256

/*
 * When s[0..n) is exactly one JSON object (whitespace around it allowed),
 * sets vals[i] to the text of the value of its member names[i] (the last
 * one when a name repeats, as JSON.parse does; names are compared as
 * written, unescaped) or SLICE_NULL when it has none. ERR_INVAL otherwise,
 * and every vals[i] is then SLICE_NULL.
 */
err_t jscan_members(const char *s, size_t n, const char *const *names, struct slice *vals,
                    size_t nnames);

#endif
