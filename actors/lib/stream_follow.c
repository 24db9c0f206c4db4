/*
 * stream_follow.c - building and reading stream.follow requests (see stream_follow.h).
 */
#include "stream_follow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "mem.h"
#include "msg.h"
#include "msg_stream.h"

err_t stream_follow_holder(char *out, size_t cap, const char *self)
{
    unsigned char r[8];
    if (random_bytes(r, sizeof(r)) != OK)
        return ERR_UNAVAIL;
    int w = snprintf(out, cap, "%.64s.%02x%02x%02x%02x%02x%02x%02x%02x", self, r[0], r[1], r[2],
                     r[3], r[4], r[5], r[6], r[7]);
    return w > 0 && (size_t)w < cap && (size_t)w <= STREAM_FOLLOW_HOLDER_MAX ? OK : ERR_INVAL;
}

struct stream_follow *stream_follow_new(void *owner)
{
    struct stream_follow *f = xcalloc(1, sizeof(*f));
    mp_writer_init(&f->items);
    f->owner = owner;
    return f;
}

void stream_follow_free(struct stream_follow *f)
{
    if (!f)
        return;
    for (uint32_t i = 0; i < f->n; i++)
        free(f->topics[i]);
    free(f->topics);
    mp_writer_fini(&f->items);
    free(f);
}

bool stream_follow_add(struct stream_follow *f, const char *topic, const char *env, const char *key,
                       const char *channel, const char *io)
{
    if (f->n >= STREAM_FOLLOW_BATCH_MAX)
        return false;
    if (f->n == f->cap) { /* most requests name one stream: start small */
        f->cap = f->cap ? 2 * f->cap : 1;
        f->topics = xrealloc(f->topics, f->cap * sizeof(*f->topics));
    }
    struct msg_stream_name name = msg_stream_name_of(env, key, channel, io);
    msg_encode(&msg_stream_name_form, &f->items, &name);
    f->topics[f->n++] = xstrdup(topic);
    return true;
}

err_t stream_follow_send(struct stream_follow *f, struct bus_peer *broker, const char *holder,
                         uint32_t ttl_ms, bus_reply_fn cb)
{
    struct mp_writer w;
    struct bus_trace trace;
    if (f->n == 0 || mp_writer_err(&f->items) != OK)
        return ERR_INVAL;
    struct msg_stream_follow m = {.holder = msg_str(holder), .ttl_ms = ttl_ms};
    bus_trace_new(&trace);
    mp_writer_init(&w);
    msg_stream_follow_open(&w, &m);
    mp_put_array(&w, f->n);
    mp_put_raw(&w, mp_writer_data(&f->items), mp_writer_len(&f->items));
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = bus_call(broker, MSG_STREAM_FOLLOW, mp_writer_data(&w), mp_writer_len(&w), &trace, cb,
                      f);
    mp_writer_fini(&w);
    return rc;
}

err_t stream_follow_added(const struct envelope *env, uint32_t i, bool *added)
{
    struct msg_stream_follow_reply m;
    struct mp_reader v;
    uint32_t n;
    if (!env || msg_decode(&msg_stream_follow_reply_form, env->body.p, env->body.n, &m) != OK)
        return ERR_PROTO;
    if (msg_stream_items(m.added, &v, &n) != OK || i >= n)
        return ERR_PROTO;
    for (uint32_t k = 0; k < i; k++)
        if (mp_skip(&v, NULL) != OK)
            return ERR_PROTO;
    return mp_read_bool(&v, added);
}
