/*
 * feed_topics.c - the table of the topics feeds follow, and the fan-out of
 * the stream-broker's events to them (see feed.h).
 *
 * Each topic is subscribed to while a feed of this process follows it, and
 * dropped with its last feed. An event's record is rendered once per format
 * and handed to every live feed of its topic in sequence; a feed it does not
 * fit (a gap, or a read in flight) reads from the broker instead. Feeds
 * themselves (their output and reads) live in feed.c.
 */
#include "feed_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

static void gw_feeds_on_event(void *arg, const char *topic, const struct envelope *env);

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
    h2o_timeout_init(gw->ctx.loop, &fs->tick, GW_FEED_TICK_MS);
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
    for (struct gw_feed_topic **pp = &fs->buckets[gw_topic_hash(t->name)]; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (fs->sub)
        (void)bus_sub_remove(fs->sub, t->name);
    free(t);
}

/* ---- the stream-broker's events ---- */

static void gw_feeds_on_event(void *arg, const char *topic, const struct envelope *env)
{
    struct gw *gw = arg;
    struct gw_feeds *fs = gw->feeds;
    struct mp_reader v;
    struct gw_feed_topic *t;
    if (!fs || !(t = gw_topic_find(fs, topic)))
        return;
    if (mp_map_find(env->body.p, env->body.n, "record", &v) != OK)
        return;
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
