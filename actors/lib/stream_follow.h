/*
 * stream_follow.h - follow leases on streams, the client side of stream.follow.
 *
 * The stream-broker publishes a stream's records (stream.record events) only while some
 * process holds an unexpired lease on it (docs/stream-broker.md, "Follow leases"), so every
 * process that subscribes to a stream's topic also holds a lease on it: it takes one when it
 * starts following, renews each of its leases every STREAM_FOLLOW_RENEW_MS for
 * STREAM_FOLLOW_TTL_MS, and lets one expire when it stops following (a ttl of 0 would end it
 * at once, but an unfollow could then race a new follow of the same stream). A lease answered
 * "added" is new: records appended before it were not published, so the follower reads them.
 *
 * This module builds one request (up to STREAM_FOLLOW_BATCH_MAX streams), sends it and reads
 * the answer; the caller keeps its own table of what it follows. Owner's thread only.
 */
#ifndef TETHER_LIB_STREAM_FOLLOW_H
#define TETHER_LIB_STREAM_FOLLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "err.h"
#include "mp.h"
#include "stream.h"

/* One stream.follow request being built and, once sent, awaiting its answer. */
struct stream_follow {
    struct mp_writer items; /* the streams array's items */
    uint32_t n;
    uint32_t cap;
    char **topics; /* n of the caller's names of the streams (copies); grows up to the batch */
    void *owner;   /* the caller's */
};

/* "<self>.<16 hex>": a holder name of this process's boot, unique in the cluster. */
err_t stream_follow_holder(char *out, size_t cap, const char *self);

/* A new, empty request (heap: it lives until the answer). */
struct stream_follow *stream_follow_new(void *owner);
void stream_follow_free(struct stream_follow *f);

/* Adds a stream (channel NULL or "": the session's own); false when the request is full. */
bool stream_follow_add(struct stream_follow *f, const char *topic, const char *env, const char *key,
                       const char *channel, const char *io);

/*
 * Sends the request for ttl_ms (0: ends holder's leases on them). cb gets f as its arg and
 * owns it from then on (stream_follow_free it there). On an error return cb never runs and
 * the caller still owns f.
 */
err_t stream_follow_send(struct stream_follow *f, struct bus_peer *broker, const char *holder,
                         uint32_t ttl_ms, bus_reply_fn cb);

/*
 * Reads the answer's added flag of stream i into *added; ERR_PROTO when the answer does not
 * have it.
 */
err_t stream_follow_added(const struct envelope *env, uint32_t i, bool *added);

#endif
