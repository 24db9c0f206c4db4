/*
 * msgcodec.h - typed message bodies: a struct per message, and the one
 * table-driven codec that reads and writes them.
 *
 * Each message of the catalogue (msg.h) that has a typed body declares a
 * struct and a table of its fields (proto/msg_<area>.h): the field's key on
 * the wire, its kind, where it lives in the struct, and its limits. The
 * codec walks a body's map once, so a handler reads its request in one call
 * and works on C fields; a sender fills the struct and encodes it, so the
 * two ends of a hop cannot disagree on a key's spelling or kind.
 *
 * Decoding borrows: every string, binary and raw field of the struct points
 * into the body it was decoded from and is valid only while that body is.
 * Unknown keys are skipped (a newer sender may add fields); a known key of
 * the wrong kind, a string over its limit, or a required field missing is
 * ERR_INVAL; a body that is not a well-formed map is ERR_PROTO. A nil value
 * is accepted for every field that is not required and reads as absent.
 *
 * Encoding writes the fields in table order: a field with a presence flag
 * is written when the flag is set (a NULL string as nil); a string or raw
 * field with a NULL pointer is written as nil when it is MSGF_NIL, left out
 * otherwise;
 * a number or bool is always written unless MSGF_OMIT0 (then left out when
 * zero). The order is fixed, so the golden files of tests/golden/msg/ pin
 * every body's bytes.
 */
#ifndef TETHER_PROTO_MSGCODEC_H
#define TETHER_PROTO_MSGCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mp.h"

enum msgf_kind {
    MSGF_STR,  /* struct slice: a msgpack str */
    MSGF_BIN,  /* struct slice: a msgpack bin (a str is taken too) */
    MSGF_U64,  /* uint64_t */
    MSGF_I64,  /* int64_t */
    MSGF_F64,  /* double: a float or an integer */
    MSGF_BOOL, /* bool */
    MSGF_RAW,  /* struct slice: any one msgpack value, its encoding as it stands */
};

enum {
    MSGF_REQUIRED = 1, /* absent or nil is ERR_INVAL (for a string: empty too) */
    MSGF_NIL = 2,      /* encode: a NULL string or raw field is written as nil, not left out */
    MSGF_OMIT0 = 4,    /* encode: a zero number or false bool is left out */
};

#define MSGF_NO_GIVEN SIZE_MAX

struct msg_field {
    const char *key;
    enum msgf_kind kind;
    unsigned flags;
    size_t off;       /* of the value in the struct */
    size_t given_off; /* of a bool set when the key is present (nil included); MSGF_NO_GIVEN */
    size_t max;       /* strings and binaries: the longest accepted, in bytes (0: no limit) */
};

struct msg_form {
    const char *name; /* "session.create request", for logs and tests */
    const struct msg_field *fields;
    unsigned nfields;
};

/* A field of struct S without and with a presence flag; M is the member, MAX its limit. */
#define MSGF(S, M, KIND, FLAGS, MAX)                                                               \
    {                                                                                              \
#M, KIND, FLAGS, offsetof(S, M), MSGF_NO_GIVEN, MAX                                        \
    }
#define MSGF_G(S, M, KIND, FLAGS, MAX)                                                             \
    {                                                                                              \
#M, KIND, FLAGS, offsetof(S, M), offsetof(S, M##_given), MAX                               \
    }
#define MSG_FORM(NAME, TABLE)                                                                      \
    {                                                                                              \
        NAME, TABLE, sizeof(TABLE) / sizeof(TABLE[0])                                              \
    }

/* Reads body (n bytes; n == 0 reads as an empty map) into out, which it zeroes first. */
err_t msg_decode(const struct msg_form *f, const void *body, size_t n, void *out);

/* Appends in's body to w; the writer's error (ERR_NOMEM) is the caller's to check. */
void msg_encode(const struct msg_form *f, struct mp_writer *w, const void *in);

/* A slice of a NUL-terminated string (NULL gives SLICE_NULL): what senders fill structs with. */
struct slice msg_str(const char *s);

/*
 * A decoded string field as a C string in buf (cap bytes), for what needs one (SQL text
 * parameters): false, and buf "", when it is absent, holds a NUL (which would silently shorten
 * it) or does not fit.
 */
bool msg_cstr(struct slice s, char *buf, size_t cap);

#endif
