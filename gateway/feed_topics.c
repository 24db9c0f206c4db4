/*
 * feed_topics.c - the table of the topics feeds follow, and the fan-out of
 * the stream-broker's events to them (see feed.h).
 *
 * Each topic is subscribed to while a feed of this process follows it, and
 * dropped with its last feed. The broker publishes a stream's records only
 * while someone holds a follow lease on it (stream_follow.h): a new topic
 * takes one at once, every lease is renewed on a timer, and one is never
 * ended early (it expires), so a topic that comes back soon finds it held:
 * a topic whose last feed left lingers GW_FEED_LINGER_MS, unsubscribed, and
 * a feed that joins it meanwhile takes no new lease.
 * Until the broker confirms a lease its feeds re-read on every ping; a lease
 * answered "added" makes them read once more (records appended before it
 * were not published). An event's record is rendered once per format
 * and handed to every live feed of its topic in sequence; a feed it does not
 * fit (a gap, or a read in flight) reads from the broker instead. Feeds
 * themselves (their output and reads) live in feed.c.
 */
#include "feed_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "msg_stream.h"

static void gw_feeds_on_event(void *arg, const char *topic, const struct envelope *env);
static struct gw_feed_topic *gw_topic_find(struct gw_feeds *fs, const char *name);

/* ---- follow leases ---- */

static void gw_follow_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct stream_follow *sf = arg;
    struct gw *gw = sf->owner;
    struct gw_feeds *fs = gw->feeds;
    if (rc != OK && rc != ERR_PROTO)
        LOG_WARN("gw.follow_failed",
                 "could not take follow leases on %u streams (%s); their feeds re-read on every "
                 "ping until the next renewal",
                 sf->n, err_str(rc));
    for (uint32_t i = 0; fs && i < sf->n; i++) {
        struct gw_feed_topic *t = gw_topic_find(fs, sf->topics[i]);
        bool added = false;
        if (!t)
            continue;
        /* ERR_PROTO: a broker older than follow leases, which publishes every record */
        t->followed = rc == OK || rc == ERR_PROTO;
        if (rc != OK || stream_follow_added(env, i, &added) != OK || !added)
            continue;
        for (struct gw_feed *f = t->feeds; f; f = f->tnext)
            if (!f->ending)
                gw_feed_read(f); /* what was appended before the lease was not published */
    }
    stream_follow_free(sf);
}

static void gw_follow_send(struct gw *gw, struct stream_follow *sf)
{
    if (stream_follow_send(sf, gw->actors[GW_ACTOR_STREAM_BROKER], gw->feeds->holder,
                           STREAM_FOLLOW_TTL_MS, gw_follow_on_reply) != OK) {
        LOG_WARN("gw.follow_failed", "could not send a follow request for %u streams", sf->n);
        stream_follow_free(sf);
    }
}

static bool gw_follow_add(struct stream_follow *sf, const struct gw_feed_topic *t)
{
    const struct gw_feed *f = t->feeds; /* never for a lingering topic: it has none */
    return stream_follow_add(sf, t->name, f->o.env, f->o.key, f->o.channel, f->o.io);
}

static void gw_feeds_on_renew(h2o_timeout_entry_t *entry)
{
    struct gw_feeds *fs = (struct gw_feeds *)((char *)entry - offsetof(struct gw_feeds, renew));
    struct gw *gw = fs->gw;
    struct stream_follow *sf = NULL;
    unsigned from = fs->renew_slice * (GW_FEED_BUCKETS / GW_FEED_RENEW_SLICES),
             to = fs->renew_slice + 1 == GW_FEED_RENEW_SLICES
                      ? GW_FEED_BUCKETS
                      : from + GW_FEED_BUCKETS / GW_FEED_RENEW_SLICES;
    fs->renew_slice = (fs->renew_slice + 1) % GW_FEED_RENEW_SLICES;
    uint64_t now = clock_mono_ms();
    for (unsigned b = from; fs->sub && b < to; b++)
        for (struct gw_feed_topic **pp = &fs->buckets[b], *t; (t = *pp);) {
            if (!t->feeds) { /* lingering: its lease runs out unrenewed */
                if (now - t->idle_mono >= GW_FEED_LINGER_MS) {
                    *pp = t->next;
                    fs->ntopics--;
                    free(t);
                } else {
                    pp = &t->next;
                }
                continue;
            }
            pp = &t->next;
            if (!sf)
                sf = stream_follow_new(gw);
            if (!gw_follow_add(sf, t)) {
                gw_follow_send(gw, sf);
                sf = stream_follow_new(gw);
                (void)gw_follow_add(sf, t);
            }
            t->lease_mono = now;
        }
    if (sf)
        gw_follow_send(gw, sf);
    if (fs->ntopics > 0) /* with no topic left the timer stops; the next topic starts it */
        h2o_timeout_link(gw->ctx.loop, &fs->renew_to, &fs->renew);
}

/* ---- the registry of topics ---- */

static unsigned gw_topic_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % GW_FEED_BUCKETS;
}

struct gw_feeds *gw_feeds_get(struct gw *gw)
{
    if (gw->feeds)
        return gw->feeds;
    struct gw_feeds *fs = xcalloc(1, sizeof(*fs));
    fs->buffer_max = (size_t)gw->gw.sse_buffer;
    fs->gw = gw;
    h2o_timeout_init(gw->ctx.loop, &fs->tick, GW_FEED_TICK_MS);
    if (stream_follow_holder(fs->holder, sizeof(fs->holder), "gateway") != OK)
        snprintf(fs->holder, sizeof(fs->holder), "gateway.%ld", (long)getpid());
    h2o_timeout_init(gw->ctx.loop, &fs->renew_to, STREAM_FOLLOW_RENEW_MS / GW_FEED_RENEW_SLICES);
    fs->renew.cb = gw_feeds_on_renew;
    if (bus_sub_open_actor(gw->bus, "stream-broker", gw_feeds_on_event, gw, &fs->sub) != OK) {
        LOG_WARN("gw.feed_events", "cannot follow the stream-broker's events; feeds poll");
        fs->sub = NULL;
    }
    gw->feeds = fs;
    return fs;
}

static struct gw_feed_topic *gw_topic_find(struct gw_feeds *fs, const char *name)
{
    for (struct gw_feed_topic *t = fs->buckets[gw_topic_hash(name)]; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

void gw_topic_join(struct gw_feeds *fs, struct gw_feed *f, const char *name)
{
    struct gw_feed_topic *t = gw_topic_find(fs, name);
    if (!t) {
        size_t n = strlen(name);
        t = xcalloc(1, sizeof(*t) + n + 1);
        memcpy(t->name, name, n + 1);
        unsigned b = gw_topic_hash(name);
        t->next = fs->buckets[b];
        fs->buckets[b] = t;
        fs->ntopics++;
    }
    if (!t->feeds) { /* new, or lingering: listen again */
        t->polled = !fs->sub;
        if (fs->sub && bus_sub_add(fs->sub, name) != OK) {
            LOG_WARN("gw.feed_events", "cannot subscribe to a stream's events; it is polled");
            t->polled = true;
        }
    }
    f->topic = t;
    f->tprev = NULL;
    f->tnext = t->feeds;
    if (t->feeds)
        t->feeds->tprev = f;
    t->feeds = f;
    t->nfeeds++;
    fs->nfeeds++;
    uint64_t now = clock_mono_ms();
    /* a new topic takes its lease now, not at the next renewal; a lingering one whose lease is
     * young (it runs at least STREAM_FOLLOW_TTL_MS from when it was sent) keeps it */
    if (t->nfeeds == 1 && fs->sub &&
        (!t->followed || !t->lease_mono || now - t->lease_mono >= STREAM_FOLLOW_TTL_MS / 2)) {
        struct stream_follow *sf = stream_follow_new(f->gw);
        (void)gw_follow_add(sf, t);
        gw_follow_send(f->gw, sf);
        t->lease_mono = now;
    }
    if (fs->sub && !h2o_timeout_is_linked(&fs->renew))
        h2o_timeout_link(f->gw->ctx.loop, &fs->renew_to, &fs->renew);
}

void gw_topic_leave(struct gw_feeds *fs, struct gw_feed *f)
{
    struct gw_feed_topic *t = f->topic;
    if (!t)
        return;
    if (f->tprev)
        f->tprev->tnext = f->tnext;
    else
        t->feeds = f->tnext;
    if (f->tnext)
        f->tnext->tprev = f->tprev;
    f->topic = NULL;
    fs->nfeeds--;
    if (--t->nfeeds > 0)
        return;
    if (fs->sub)
        (void)bus_sub_remove(fs->sub, t->name);
    if (fs->sub && t->followed) { /* lingers for a rejoin; the renewal frees it */
        t->idle_mono = clock_mono_ms();
        return;
    }
    for (struct gw_feed_topic **pp = &fs->buckets[gw_topic_hash(t->name)]; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    fs->ntopics--;
    free(t);
}

/* ---- the stream-broker's events ---- */

static void gw_feeds_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw *gw = arg;
    struct gw_feeds *fs = gw->feeds;
    struct msg_stream_record ev;
    struct mp_reader v;
    struct gw_feed_topic *t;
    if (!fs || !(t = gw_topic_find(fs, topic)))
        return;
    if (msg_decode(&msg_stream_record_form, env->body.p, env->body.n, &ev) != OK)
        return;
    mp_reader_init(&v, ev.record.p, ev.record.n);
    /* render once for every feed of the topic that wants that format */
    struct jbuf recs[GW_REC_BASE64 + 1] = {{0}}, *rec;
    bool rendered[GW_REC_BASE64 + 1] = {false};
    uint64_t seq, ts;
    struct mp_reader start = v;
    if (gw_record_json(&v, &recs[GW_REC_RAW], GW_REC_RAW, &seq, &ts) != OK) {
        jbuf_free(&recs[GW_REC_RAW]);
        return;
    }
    rendered[GW_REC_RAW] = true;
    for (struct gw_feed *f = t->feeds, *next; f; f = next) {
        next = f->tnext; /* delivering may end (and unlink) f */
        if (f->ending)
            continue;
        rec = &recs[f->o.format];
        if (!rendered[f->o.format]) {
            struct mp_reader again = start;
            rendered[f->o.format] = true;
            (void)gw_record_json(&again, rec, f->o.format, &seq, &ts); /* parsed once already */
        }
        if (f->reading) {
            f->read_again = true; /* its read may have run before this record: read once more */
        } else if (!f->live) {
            continue;
        } else if (seq == f->next_seq) {
            f->next_seq = seq + 1;
            gw_feed_batch(f, rec->p, rec->n, 1, seq, seq + 1, ts);
        } else if (seq > f->next_seq) {
            if (f->sending) { /* the read waits for the client: count what it will owe */
                f->owed += rec->n;
                if (f->pend.n + f->owed > fs->buffer_max) {
                    gw_feed_cut(f);
                    continue;
                }
            }
            gw_feed_read(f); /* a gap: read it from the store, in order */
        }
    }
    for (unsigned i = 0; i <= GW_REC_BASE64; i++)
        jbuf_free(&recs[i]);
}

/* ---- stop ---- */

void gw_feeds_stop(struct gw *gw)
{
    struct gw_feeds *fs = gw->feeds;
    if (!fs)
        return;
    for (unsigned b = 0; b < GW_FEED_BUCKETS; b++)
        for (struct gw_feed_topic *t = fs->buckets[b]; t; t = t->next)
            for (struct gw_feed *f = t->feeds; f; f = f->tnext)
                gw_feed_end(f, "the server is restarting; reconnect with Last-Event-ID");
}

unsigned gw_feeds_count(const struct gw *gw)
{
    return gw->feeds ? gw->feeds->nfeeds : 0;
}
