/*
 * err.h - Tether's error codes.
 *
 * These numbers travel on the bus inside error replies, so they are stable:
 * a code is never renumbered or reused. Append new codes at the end.
 */
#ifndef TETHER_PROTO_ERR_H
#define TETHER_PROTO_ERR_H

typedef enum {
    OK = 0,
    ERR_NOMEM = 1,     /* an allocation failed */
    ERR_INVAL = 2,     /* the input is malformed or out of range */
    ERR_TIMEOUT = 3,   /* a deadline passed before the work finished */
    ERR_CLOSED = 4,    /* the object or peer is closed or shutting down */
    ERR_PROTO = 5,     /* a message violates the wire protocol */
    ERR_NOTFOUND = 6,  /* no such object */
    ERR_CONFLICT = 7,  /* the object's state forbids the operation */
    ERR_UNAVAIL = 8,   /* a store or peer is unreachable; retry later */
    ERR_INTERNAL = 9,  /* a bug or an unexpected failure */
    ERR_TOOBIG = 10,   /* the input exceeds a size limit */
    ERR_DENIED = 11,   /* the caller is not allowed to do this */
    ERR_UNAUTH = 12,   /* the caller could not be authenticated */
    ERR_EXISTS = 13,   /* the object already exists */
    ERR_QUOTA = 14,    /* a storage quota is used up; retrying will not help until room is made */
} err_t;

#define ERR_MAX_CODE 14

/* Short lower-case description of code; never NULL, "unknown error" for codes not above. */
const char *err_str(err_t code);

/* Stable identifier ("ERR_TIMEOUT") for logs and JSON; never NULL. */
const char *err_name(err_t code);

#endif
