/*
 * feed.h - an SSE response that follows one record stream (the contract's §6).
 *
 * A feed reads the stream from a sequence number (stream.read), sends what
 * it finds as S2-shaped `event: batch` frames, then follows live records
 * from the stream-broker's events. Events only make delivery fast: a feed
 * delivers records strictly in sequence order, and a record that arrives
 * out of order (an event lost, or two brokers racing) makes it read the gap
 * from the broker first, so a lost event delays a record, never drops it.
 * Only a lost last event shows nothing: an idle feed re-reads the stream at
 * its first ping 60 s after its last read (so such a record waits at most
 * about 75 s), and at every ping when its stream has no event subscription.
 *
 * While idle at the tail it sends `event: ping` every 5-15 s; after `wait_ms`
 * without a new record (or at once when `drain`) it sends `data: [DONE]`
 * and ends the response. A client that does not read is cut off when what
 * waits for it passes TETHER_GW_SSE_BUFFER; a client that leaves frees
 * everything at once (bus calls in flight finish into nothing).
 *
 * Every gateway process subscribes to the topics (proto/stream.h) of the
 * streams its feeds follow, and to no others. Runs on the gateway's loop.
 */
#ifndef TETHER_GW_FEED_H
#define TETHER_GW_FEED_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "jbuf.h"
#include "mp.h"
#include "msg_stream.h"
#include "stream.h"

/*
 * How a record's bytes (header names and values, body) appear in its S2 JSON: S2's
 * S2-Format. Records are bytes; JSON strings are text.
 */
enum gw_rec_format {
    GW_REC_RAW,    /* absent or "raw": as text, a byte that is not UTF-8 as U+FFFD (lossy, as
                    * S2's raw format; every JSON parser takes it), NUL as \u0000 */
    GW_REC_BASE64, /* "base64": every name, value and body in base64, exact */
};

struct gw_feed_opts {
    char env[STREAM_ENV_MAX + 1];
    char key[STREAM_KEY_MAX + 1];
    char channel[STREAM_CHANNEL_MAX + 1]; /* "": the session's own pair; else a side channel */
    char io[4];
    uint64_t start;   /* first sequence number wanted (clamped to the tail) */
    uint64_t wait_ms; /* idle time at the tail before [DONE] */
    bool drain;       /* send what exists, then [DONE] (wait=0, settled peek) */
    enum gw_rec_format format;
};

/*
 * Takes c over (it is finished here) and starts the SSE response with the
 * headers already added to it. Never fails visibly: a client gone before
 * the start is simply released.
 */
void gw_feed_start(struct gw_call *c, const struct gw_feed_opts *o);

/* Ends every feed of the process (the gateway stops): each gets `event: error` and its end. */
void gw_feeds_stop(struct gw *gw);

/* Feeds open in this process (metrics, tests). */
unsigned gw_feeds_count(const struct gw *gw);

/* The name of o's stream as a stream.* request carries it (borrows o's strings; no channel for
 * the session's own pair). */
struct msg_stream_name gw_feed_stream_name(const struct gw_feed_opts *o);

/*
 * Renders one record object (proto/msg.c) as the S2 JSON record
 * {"seq_num", "timestamp", "headers"?, "body"?} into b, its bytes in format f; *seq and *ts
 * (may be NULL) are its sequence number and timestamp. ERR_PROTO when the object is
 * malformed; never an error for what the record holds.
 */
err_t gw_record_json(struct mp_reader *r, struct jbuf *b, enum gw_rec_format f, uint64_t *seq,
                     uint64_t *ts);

#endif
