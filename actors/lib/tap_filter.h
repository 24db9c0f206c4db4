/*
 * tap_filter.h - what a tap listener wants to see, and the test of one tap record against it.
 *
 * A listener (tetherctl tap) registers its filter with the supervisor (sv.tap_filter, renewed
 * every second); the supervisor publishes every registered filter as a bus.tap event every
 * second and on each change; each process then mirrors only the messages that match one of
 * them, before copying anything (bus_tap.c), but only while every listener connected to it has
 * registered one: a listener that did not (an older tetherctl, a bench) still sees everything.
 * The listener applies its own filter again, with this same test.
 *
 * An empty field matches anything. The fields:
 *  - actor: the mirroring process's name or its peer's is the value, or the process's name
 *    starts with it ("gateway" covers gateway.0 and gateway.1);
 *  - type: the message name (session.get);
 *  - trace: the envelope's trace id;
 *  - status: "ok" (a reply), "error" (any error reply), or an error code (ERR_NOTFOUND);
 *  - session, env: the value occurs in the envelope (body and all) or the event's topic: a
 *    session's id or external id, an environment's id. Cheap and never misses; it may let
 *    through a message that merely mentions the value.
 */
#ifndef TETHER_LIB_TAP_FILTER_H
#define TETHER_LIB_TAP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "envelope.h"
#include "err.h"
#include "mp.h"

#define TAP_FILTERS_MAX 16       /* listeners with a filter, per node */
#define TAP_FILTER_LEASE_MS 3000 /* a filter not renewed for this long is gone */

struct tap_filter {
    char actor[64];
    char type[64];
    char trace[40];
    char status[32];
    char session[260];
    char env[64];
};

/* The fields' names, as the wire, the query and tetherctl's flags (--actor) spell them. */
extern const char *const tap_filter_names[];
extern const unsigned tap_filter_nnames;

/* Sets the field called name to value (1 byte or more, no NUL): ERR_NOTFOUND for a name that
 * is no field, ERR_TOOBIG for a value that does not fit, ERR_INVAL for an empty one. */
err_t tap_filter_set(struct tap_filter *f, const char *name, const char *value);
/* The room for a field's value, terminating NUL excluded; 0 for a name that is no field. */
size_t tap_filter_room(const char *name);

/* True when the filter has no field set (it matches everything). */
bool tap_filter_empty(const struct tap_filter *f);

/* One tap record against f: proc is the mirroring process, peer its peer, topic an event's
 * topic or NULL; env the decoded envelope whose encoding is env_bytes[0..n). */
bool tap_filter_match(const struct tap_filter *f, const char *proc, const char *peer,
                      const char *topic, const struct envelope *env, const void *env_bytes,
                      size_t n);

/* As a msgpack map of the fields set (sv.tap_filter, bus.tap). */
void tap_filter_put(struct mp_writer *w, const struct tap_filter *f);
/* From such a map: the fields it names (others left empty). ERR_PROTO when it is not a map of
 * strings, ERR_TOOBIG when a value does not fit its field. */
err_t tap_filter_read(const void *map, size_t n, struct tap_filter *f);

/* Appends the sv.tap_filter body (msg_sv.h) of the listener id: its filter want, or with cancel
 * its end. Returns the writer's error (ERR_NOMEM), or OK. */
err_t tap_filter_request_put(struct mp_writer *w, const char *id, const struct tap_filter *want,
                             bool cancel);

#endif
