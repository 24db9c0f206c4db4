/*
 * feed_int.h - what the feed modules share (internal to the gateway): a feed
 * (feed.c: its output, reads, pings and end) and the table of the topics
 * feeds follow (feed_topics.c: the subscriptions and the fan-out of the
 * stream-broker's events). Everything runs on the gateway's loop.
 *
 * feed.c owns struct gw_feed; feed_topics.c owns the topics and struct
 * gw_feeds (gw->feeds, made by gw_feeds_get on first use), and reaches into
 * a feed only to hand it an event's record, or to read or end it, through
 * the functions below.
 */
#ifndef TETHER_GW_FEED_INT_H
#define TETHER_GW_FEED_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "feed.h"
#include "gw.h"
#include "jbuf.h"
#include "stream_follow.h"

#define GW_FEED_TICK_MS 1000
#define GW_FEED_BUCKETS 4096
/* Leases are renewed a slice of the buckets at a time, so that thousands of streams make no
 * burst of Redis scripts every STREAM_FOLLOW_RENEW_MS (each is still renewed that often). */
#define GW_FEED_RENEW_SLICES 10
/* A topic whose last feed left is kept this long (freed by the renewal after it), so that a
 * client that reconnects at once finds its lease and takes no new one. */
#define GW_FEED_LINGER_MS 5000

struct gw_feed_topic;

struct gw_feed {
    h2o_generator_t gen; /* first: h2o hands it back */
    struct gw *gw;
    h2o_req_t *req; /* NULL once the client is gone */
    struct gw_feed_ref *ref;
    /* what the feed keeps of its gw_feed_opts: the stream's names point into name[], sized to
     * fit (the opts' fixed buffers took 1.2 KiB of every idle subscriber) */
    struct {
        const char *env, *key, *channel, *io;
        uint64_t wait_ms;
        bool drain;
        enum gw_rec_format format;
    } o;
    struct gw_feed_topic *topic;
    struct gw_feed *tprev, *tnext; /* in topic->feeds */
    h2o_timeout_entry_t tick;
    uint64_t next_seq;
    uint64_t deadline_mono, next_ping_mono, started_mono;
    uint64_t read_mono; /* when the last read was sent */
    uint64_t delivered, bytes;
    unsigned calls; /* bus calls in flight: the feed outlives its client until they end */
    bool reading, read_again, live, sending, final_sent, ending, cut;
    bool read_later; /* a read waits until the client has taken what is in flight */
    size_t owed;     /* bytes of live records waiting in the broker for a read_later */
    uint64_t send_started_mono;
    struct jbuf out, pend;
    struct gw_stream_log log; /* written when the stream ends */
    char name[];              /* env, key, channel and io, each NUL-terminated */
};

struct gw_feed_topic {
    struct gw_feed_topic *next; /* in the bucket */
    struct gw_feed *feeds;
    unsigned nfeeds;
    bool polled;         /* no events for it (no subscription): its feeds re-read on every ping */
    bool followed;       /* the broker confirmed a follow lease (stream.follow): events come */
    uint64_t lease_mono; /* when a follow for it was last sent (its lease runs at least TTL) */
    uint64_t idle_mono;  /* when its last feed left: it lingers, unsubscribed, for a rejoin */
    char name[];
};

struct gw_feeds {
    h2o_timeout_t tick;
    struct bus_sub *sub; /* the stream-broker's events; NULL: feeds poll on every ping */
    struct gw *gw;
    struct gw_feed_topic *buckets[GW_FEED_BUCKETS];
    unsigned nfeeds;
    unsigned ntopics; /* lingering ones too */
    size_t buffer_max;
    /* the follow leases of every topic (stream_follow.h), renewed on this timer */
    char holder[STREAM_FOLLOW_HOLDER_MAX + 1];
    h2o_timeout_t renew_to;
    h2o_timeout_entry_t renew;
    unsigned renew_slice; /* the next of GW_FEED_RENEW_SLICES slices of the buckets */
};

/* ---- feed.c ---- */

/* Reads the stream from f->next_seq (or marks a read to follow the one in flight, or one
 * to wait until the client has taken what is being sent). */
void gw_feed_read(struct gw_feed *f);
/* Appends an `event: batch` frame of records already rendered as a JSON array body. */
void gw_feed_batch(struct gw_feed *f, const char *records, size_t n, unsigned count,
                   uint64_t last_seq, uint64_t tail, uint64_t tail_ts);
/* Ends a client that does not read (its socket is shut down). */
void gw_feed_cut(struct gw_feed *f);
/* Ends the response: `event: error` with error, or `data: [DONE]` when error is NULL. */
void gw_feed_end(struct gw_feed *f, const char *error);

/* ---- feed_topics.c ---- */

/* The process's table of topics, made (with its event subscription) on first use. */
struct gw_feeds *gw_feeds_get(struct gw *gw);
/* Adds f to the feeds of topic name, subscribing to the topic for its first feed. */
void gw_topic_join(struct gw_feeds *fs, struct gw_feed *f, const char *name);
/* Takes f out of its topic (if any), dropping the topic with its last feed. */
void gw_topic_leave(struct gw_feeds *fs, struct gw_feed *f);

#endif
