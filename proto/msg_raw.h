/*
 * msg_raw.h - values of typed bodies that the codec carries as MSGF_RAW fields
 * (msgcodec.h has no array kind, and a number field cannot tell nil from 0):
 * arrays of strings, and a uint whose nil means "the default".
 *
 * A sender writes the value into a writer of its own and points the raw field
 * at its bytes (msg_raw_of); once the body is encoded, msg_raw_done frees that
 * writer and passes any failure of it on to the body's writer. A receiver
 * reads the value back from the field; strings borrow from the body.
 */
#ifndef TETHER_PROTO_MSG_RAW_H
#define TETHER_PROTO_MSG_RAW_H

#include "msgcodec.h"

/* The bytes written to w so far, as a raw field's value (SLICE_NULL when w has failed). */
struct slice msg_raw_of(const struct mp_writer *w);

/* Frees w (a raw value's writer); when writing w failed, body fails with the same error. */
void msg_raw_done(struct mp_writer *w, struct mp_writer *body);

/* Writes items (n C strings) as a msgpack array. */
void msg_raw_put_strs(struct mp_writer *w, const char *const *items, unsigned n);

/*
 * Reads raw (absent, nil: no items) as an array of at most max strings, each item_min to
 * item_max bytes without a NUL, into items (borrowed from raw). ERR_INVAL for anything else.
 */
err_t msg_raw_strs(struct slice raw, struct slice *items, unsigned max, size_t item_min,
                   size_t item_max, unsigned *n);

/* Opens raw as an array: r then reads its n items. ERR_INVAL when it is none (absent too). */
err_t msg_raw_array(struct slice raw, struct mp_reader *r, uint32_t *n);

/* Reads raw as a uint into *out: def when absent or nil; ERR_INVAL for anything else. */
err_t msg_raw_uint(struct slice raw, uint64_t def, uint64_t *out);

#endif
