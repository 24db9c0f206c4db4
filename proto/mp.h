/*
 * mp.h - bounded msgpack reading and msgpack writing.
 *
 * The reader never allocates: it walks a byte range and hands out borrowed
 * slices into it. Every length read from the input is checked against the
 * bytes that remain before it is used, and nesting is capped at
 * MP_MAX_DEPTH, so truncated or hostile input yields ERR_PROTO, never a
 * crash or an allocation. The writer wraps msgpack-c's packer over a
 * growable buffer and remembers the first failure, so callers check once;
 * the caller reads the bytes with mp_writer_data/len while the writer lives.
 */
#ifndef TETHER_PROTO_MP_H
#define TETHER_PROTO_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "err.h"

#define MP_MAX_DEPTH 32

/* A borrowed byte range; valid only while the buffer it points into lives. */
struct slice {
    const char *p;
    size_t n;
};

#define SLICE_NULL ((struct slice){NULL, 0})
#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})

bool slice_eq(struct slice a, const char *cstr);

/* Copies s into buf (of size cap) with a NUL; ERR_TOOBIG if it does not fit. */
err_t slice_copy(struct slice s, char *buf, size_t cap);

enum mp_type {
    MP_NIL,
    MP_BOOL,
    MP_UINT,   /* a non-negative integer, whatever its encoding */
    MP_INT,    /* a negative integer */
    MP_FLOAT,
    MP_STR,
    MP_BIN,
    MP_ARRAY,
    MP_MAP,
    MP_EXT,
};

struct mp_reader {
    const uint8_t *p;
    const uint8_t *end;
};

void mp_reader_init(struct mp_reader *r, const void *buf, size_t n);
size_t mp_reader_left(const struct mp_reader *r);

/* Type of the next object without consuming it; ERR_PROTO at end of input or on a reserved byte. */
err_t mp_peek(const struct mp_reader *r, enum mp_type *t);

/* Each reader consumes one object of the named type; ERR_PROTO on any other type or truncation. */
err_t mp_read_nil(struct mp_reader *r);
err_t mp_read_bool(struct mp_reader *r, bool *v);
err_t mp_read_uint(struct mp_reader *r, uint64_t *v);
err_t mp_read_int(struct mp_reader *r, int64_t *v);      /* any integer that fits int64 */
err_t mp_read_float(struct mp_reader *r, double *v);     /* float32, float64 or an integer */
err_t mp_read_str(struct mp_reader *r, struct slice *s);
err_t mp_read_bin(struct mp_reader *r, struct slice *s);
err_t mp_read_str_or_nil(struct mp_reader *r, struct slice *s); /* nil gives SLICE_NULL */

/* Container headers. *n is checked against the bytes left (each element needs at least one). */
err_t mp_read_array(struct mp_reader *r, uint32_t *n);
err_t mp_read_map(struct mp_reader *r, uint32_t *n);

/* Skips one complete object, however nested (up to MP_MAX_DEPTH), and returns its raw bytes. */
err_t mp_skip(struct mp_reader *r, struct slice *raw);

/* mp_skip with a tighter nesting limit (non-empty containers), for objects inside others. */
err_t mp_skip_depth(struct mp_reader *r, struct slice *raw, unsigned max_depth);

/*
 * Writer. All mp_put_* calls are no-ops once one has failed; mp_writer_err()
 * reports the first failure. The buffer is owned by the writer and freed by
 * mp_writer_fini().
 */
struct mp_writer {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    err_t err;
};

void mp_writer_init(struct mp_writer *w);
void mp_writer_fini(struct mp_writer *w);
void mp_writer_reset(struct mp_writer *w);
err_t mp_writer_err(const struct mp_writer *w);
const void *mp_writer_data(const struct mp_writer *w);
size_t mp_writer_len(const struct mp_writer *w);

void mp_put_nil(struct mp_writer *w);
void mp_put_bool(struct mp_writer *w, bool v);
void mp_put_uint(struct mp_writer *w, uint64_t v);
void mp_put_int(struct mp_writer *w, int64_t v);
void mp_put_double(struct mp_writer *w, double v);
void mp_put_str(struct mp_writer *w, const char *s); /* NULL writes nil */
void mp_put_strn(struct mp_writer *w, const char *s, size_t n);
void mp_put_bin(struct mp_writer *w, const void *p, size_t n);
void mp_put_array(struct mp_writer *w, uint32_t n);
void mp_put_map(struct mp_writer *w, uint32_t n);
void mp_put_raw(struct mp_writer *w, const void *p, size_t n); /* pre-encoded msgpack */

/* Convenience for map bodies: a string key followed by a value. */
void mp_put_kv_str(struct mp_writer *w, const char *k, const char *v);
void mp_put_kv_uint(struct mp_writer *w, const char *k, uint64_t v);
void mp_put_kv_int(struct mp_writer *w, const char *k, int64_t v);
void mp_put_kv_bool(struct mp_writer *w, const char *k, bool v);

/*
 * Map lookup: finds key in the map at the start of buf (a whole encoded map)
 * and returns a reader positioned at its value. ERR_NOTFOUND when absent,
 * ERR_PROTO when buf is not a well-formed map.
 */
err_t mp_map_find(const void *buf, size_t n, const char *key, struct mp_reader *val);

#endif
