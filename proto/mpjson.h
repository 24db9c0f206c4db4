/*
 * mpjson.h - renders msgpack as JSON text, for the tap, tetherctl and logs.
 *
 * Binary values become {"$bin": <length>} (the bytes are not shown) and
 * strings longer than max_str are cut with "…" appended, so a 1 MiB record
 * does not become a 1 MiB tap line. Map keys that are not strings are
 * rendered as JSON strings of their JSON form.
 */
#ifndef TETHER_PROTO_MPJSON_H
#define TETHER_PROTO_MPJSON_H

#include <stddef.h>

#include "err.h"

/*
 * Renders the single msgpack object in buf[0..n) as JSON. On success *out
 * is a malloc'd NUL-terminated string the caller frees, *len its length.
 * max_str 0 means no limit. ERR_PROTO on malformed input, ERR_NOMEM.
 */
err_t mp_to_json(const void *buf, size_t n, size_t max_str, char **out, size_t *len);

/*
 * Like mp_to_json, but a string (or array of strings) under a map key that
 * names a secret (containing "key", "token", "secret", "password" or
 * "authorization", any case) is rendered as "****". For anything shown to
 * operators: the tap, tetherctl.
 */
err_t mp_to_json_masked(const void *buf, size_t n, size_t max_str, char **out, size_t *len);

#endif
