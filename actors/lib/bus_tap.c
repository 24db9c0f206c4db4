/*
 * bus_tap.c - mirrors every envelope this process sends or receives onto a
 * PUB socket for `tetherctl tap`.
 *
 * The cost while nobody listens is one atomic load per message: a pipe
 * notification keeps a count of connected listeners, and nothing is copied
 * or encoded while it is zero. While someone listens, the thread that sends or
 * receives a message only copies it, as it is, into a buffer of its own slot,
 * taken and put back with an atomic exchange. A thread of its own, the flusher,
 * takes the buffers every BUS_TAP_FLUSH_MS, cuts each large envelope for display
 * and packs the records into batches of BUS_TAP_BATCH_BYTES for the socket.
 * Each of those choices was measured (docs/rationale.md): a send per message
 * woke nng's threads and the kernel for each; cutting on the sending thread put
 * a decode and two encodes on every bus hop's path; one batch under a mutex made
 * nng's callback threads wait on each other. So a listener gets a process's
 * records in order per thread, and across threads within a flush interval.
 */
#include "bus_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nng/protocol/pubsub0/pub.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "mpcut.h"
#include "msg.h"
#include "msg_sv.h"

/* A buffer of records copied as they came, for the flusher. */
struct bus_tap_raw {
    struct bus_tap_raw *next; /* on the ready list */
    size_t len;
    unsigned char data[BUS_TAP_RAW_BYTES];
};

/* One record in a raw buffer: this head, then dir, peer and topic, then the envelope. */
struct bus_tap_head {
    uint64_t ts;
    uint32_t n;     /* envelope bytes that follow */
    uint32_t whole; /* the envelope's size on the bus */
    uint16_t dir_n, peer_n, topic_n;
    uint8_t flags;
};
#define BUS_TAP_PEER_NIL 1u
#define BUS_TAP_TOPIC_NIL 2u
#define BUS_TAP_CUT_DONE 4u /* the envelope was cut already (it was over BUS_TAP_RAW_REC_MAX) */

void bus_tap_dir(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/tap", dir);
}

static void bus_tap_flusher(void *arg);
static void bus_tap_drain(struct bus *b, nng_msg **batch);
static void bus_tap_pool_free(struct bus *b);

static void bus_tap_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct bus *b = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        nng_mtx_lock(b->tap_mtx);
        atomic_fetch_add(&b->tap_pipes, 1);
        nng_cv_wake(b->tap_cv);
        nng_mtx_unlock(b->tap_mtx);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&b->tap_pipes, 1);
    }
}

err_t bus_tap_open(struct bus *b)
{
    char dir[BUS_URL_MAX], url[BUS_URL_MAX + 64];
    int rv;

    bus_tap_dir(b->dir, dir, sizeof(dir));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        LOG_ERROR("bus.tap_failed", "could not create the tap directory %s: %s", dir,
                  strerror(errno));
        return ERR_UNAVAIL;
    }
    snprintf(url, sizeof(url), "ipc://%s/%s.ipc", dir, b->self);
    if ((rv = nng_mtx_alloc(&b->tap_mtx)) != 0 ||
        (rv = nng_cv_alloc(&b->tap_cv, b->tap_mtx)) != 0 ||
        (rv = nng_thread_create(&b->tap_flusher, bus_tap_flusher, b)) != 0) {
        LOG_ERROR("bus.tap_failed", "could not start the tap's flusher: %s", nng_strerror(rv));
        return bus_nng_err(rv);
    }
    if ((rv = nng_pub0_open(&b->tap)) != 0) {
        LOG_ERROR("bus.tap_failed", "could not open the tap socket: %s", nng_strerror(rv));
        return bus_nng_err(rv);
    }
    (void)nng_pipe_notify(b->tap, NNG_PIPE_EV_ADD_POST, bus_tap_pipe_cb, b);
    (void)nng_pipe_notify(b->tap, NNG_PIPE_EV_REM_POST, bus_tap_pipe_cb, b);
    if ((rv = nng_listen(b->tap, url, NULL, 0)) != 0) {
        LOG_ERROR("bus.tap_failed", "could not listen on %s: %s", url, nng_strerror(rv));
        nng_close(b->tap);
        return bus_nng_err(rv);
    }
    b->tap_open = true;
    b->tap_records = pm_series(PM_TAP_RECORDS, "");
    b->tap_filtered = pm_series(PM_TAP_FILTERED, "");
    b->tap_dropped = pm_series(PM_TAP_DROPPED, "");
    return OK;
}

void bus_tap_close(struct bus *b)
{
    if (b->tap_flusher) {
        nng_mtx_lock(b->tap_mtx);
        b->tap_closing = true;
        nng_cv_wake(b->tap_cv);
        nng_mtx_unlock(b->tap_mtx);
        nng_thread_destroy(b->tap_flusher); /* joins it: it sent what listeners were owed */
        b->tap_flusher = NULL;
    }
    if (b->tap_open)
        nng_close(b->tap);
    b->tap_open = false;
    if (b->tap_cv)
        nng_cv_free(b->tap_cv);
    b->tap_cv = NULL;
    if (b->tap_mtx) {
        bus_tap_drain(b, NULL);
        bus_tap_pool_free(b);
        nng_mtx_free(b->tap_mtx);
    }
    b->tap_mtx = NULL;
}

unsigned bus_tap_listeners(const struct bus *b)
{
    return atomic_load(&((struct bus *)b)->tap_pipes);
}

/* A string, or nil for NULL; 0 on success, as msgpack's own. */
static int bus_tap_pack_str(msgpack_packer *pk, const char *s)
{
    if (!s)
        return msgpack_pack_nil(pk);
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) == 0 && msgpack_pack_str_body(pk, s, n) == 0 ? 0 : -1;
}

/*
 * Into cut (empty), the envelope as a listener sees it: its body cut for display (mpcut.h:
 * strings past BUS_TAP_STR_MAX bytes, bins as their length). The bytes a listener takes were
 * what a listener cost; it renders the same text either way. False: it does not parse, and
 * goes as it is.
 */
static bool bus_tap_cut(const void *env_bytes, size_t n, struct mp_writer *cut)
{
    return mp_cut_element(env_bytes, n, ENV_BODY_INDEX, BUS_TAP_STR_MAX, cut) == OK;
}

void bus_tap_filters_set(struct bus *b, const struct tap_filter *f, unsigned n)
{
    bool narrowing = n > 0;
    if (!b->tap_open)
        return;
    if (n > TAP_FILTERS_MAX)
        n = TAP_FILTERS_MAX;
    for (unsigned i = 0; i < n; i++)
        if (tap_filter_empty(&f[i]))
            narrowing = false; /* one listener wants everything: everything is sent */
    nng_mtx_lock(b->tap_mtx);
    if (n)
        memcpy(b->tap_filters, f, n * sizeof(*f));
    b->tap_nfilters = n;
    b->tap_filters_until = clock_mono_ms() + TAP_FILTER_LEASE_MS;
    atomic_store(&b->tap_filtering, narrowing);
    nng_mtx_unlock(b->tap_mtx);
}

void bus_tap_filters_event(struct bus *b, const struct envelope *env)
{
    struct tap_filter f[TAP_FILTERS_MAX];
    struct msg_bus_tap m;
    struct mp_reader v;
    uint32_t count;
    unsigned n = 0;
    if (env->type != MSG_BUS_TAP || env->body.n == 0 ||
        msg_decode(&msg_bus_tap_form, env->body.p, env->body.n, &m) != OK || !m.filters.p)
        return;
    mp_reader_init(&v, m.filters.p, m.filters.n);
    if (mp_read_array(&v, &count) != OK)
        return;
    for (uint32_t i = 0; i < count && n < TAP_FILTERS_MAX; i++) {
        struct slice raw;
        if (mp_skip(&v, &raw) != OK)
            return;
        if (tap_filter_read(raw.p, raw.n, &f[n]) == OK)
            n++;
        else
            return; /* a filter this process cannot read: it narrows nothing */
    }
    bus_tap_filters_set(b, f, count > TAP_FILTERS_MAX ? 0 : n);
}

/* Whether one message is for some listener (tap_filter.h): only while every listener connected
 * registered a filter that is still fresh. env is the decoded envelope, NULL when it does not
 * decode (then the listener decides what to make of it). */
static bool bus_tap_wanted(struct bus *b, const char *peer, const char *topic,
                           const struct envelope *env, const void *env_bytes, size_t n,
                           unsigned pipes)
{
    bool wanted = true;
    if (!env)
        return true;
    nng_mtx_lock(b->tap_mtx);
    if (b->tap_nfilters >= pipes && clock_mono_ms() < b->tap_filters_until) {
        wanted = false;
        for (unsigned i = 0; i < b->tap_nfilters && !wanted; i++)
            wanted = tap_filter_match(&b->tap_filters[i], b->self, peer, topic, env, env_bytes, n);
    }
    nng_mtx_unlock(b->tap_mtx);
    return wanted;
}

/* A raw buffer from the pool, or a new one; NULL past BUS_TAP_RAW_MAX of them (the flusher is
 * behind) or out of memory. Not zeroed: only what is written is read. */
static struct bus_tap_raw *bus_tap_raw_get(struct bus *b)
{
    nng_mtx_lock(b->tap_mtx);
    struct bus_tap_raw *r = b->tap_pool;
    if (r)
        b->tap_pool = r->next;
    nng_mtx_unlock(b->tap_mtx);
    if (!r) {
        if (atomic_fetch_add(&b->tap_raws, 1) >= BUS_TAP_RAW_MAX) {
            atomic_fetch_sub(&b->tap_raws, 1);
            return NULL;
        }
        if (!(r = malloc(sizeof(*r)))) {
            atomic_fetch_sub(&b->tap_raws, 1);
            return NULL;
        }
    }
    r->next = NULL;
    r->len = 0;
    return r;
}

/* Back to the pool: a buffer freed and allocated again for each fill made the allocator give
 * pages back and fault them in again, and its unmapping interrupts every other core. */
static void bus_tap_raw_put(struct bus *b, struct bus_tap_raw *r)
{
    nng_mtx_lock(b->tap_mtx);
    r->next = b->tap_pool;
    b->tap_pool = r;
    nng_mtx_unlock(b->tap_mtx);
}

/* Frees the pool: nobody listens. A buffer a thread was filling as the last listener left goes
 * back to its slot, and stays there (one per slot at most) until the flusher next runs. */
static void bus_tap_pool_free(struct bus *b)
{
    nng_mtx_lock(b->tap_mtx);
    struct bus_tap_raw *r = b->tap_pool;
    b->tap_pool = NULL;
    nng_mtx_unlock(b->tap_mtx);
    while (r) {
        struct bus_tap_raw *next = r->next;
        free(r);
        atomic_fetch_sub(&b->tap_raws, 1);
        r = next;
    }
}

/* Puts a full buffer on the ready list; any thread. The BUS_TAP_WAKE_AT-th since the flusher
 * last took the list wakes it, so that a busy process does not run out of buffers. */
static void bus_tap_ready(struct bus *b, struct bus_tap_raw *r)
{
    r->next = atomic_load(&b->tap_ready);
    while (!atomic_compare_exchange_weak(&b->tap_ready, &r->next, r))
        ;
    if (atomic_fetch_add(&b->tap_nready, 1) + 1 == BUS_TAP_WAKE_AT) {
        nng_mtx_lock(b->tap_mtx);
        nng_cv_wake(b->tap_cv);
        nng_mtx_unlock(b->tap_mtx);
    }
}

/* This thread's slot: threads are numbered as they first mirror, and share slots past
 * BUS_TAP_SLOTS. */
static unsigned bus_tap_slot_index(void)
{
    static atomic_uint threads;
    static _Thread_local unsigned slot = UINT_MAX;
    if (slot == UINT_MAX)
        slot = atomic_fetch_add(&threads, 1) % BUS_TAP_SLOTS;
    return slot;
}

/* Takes every buffer waiting (ready ones first, in the order they filled, then each slot's)
 * as one list; NULL when there is none. A buffer a thread holds while copying is not in its
 * slot: it goes with the next round. */
static struct bus_tap_raw *bus_tap_take_all(struct bus *b)
{
    atomic_store(&b->tap_nready, 0);
    struct bus_tap_raw *ready = atomic_exchange(&b->tap_ready, NULL), *list = NULL, **tail;
    while (ready) { /* the list was pushed newest first */
        struct bus_tap_raw *next = ready->next;
        ready->next = list;
        list = ready;
        ready = next;
    }
    tail = &list;
    while (*tail)
        tail = &(*tail)->next;
    for (unsigned i = 0; i < BUS_TAP_SLOTS; i++) {
        struct bus_tap_raw *r = atomic_exchange(&b->tap_slot[i].raw, NULL);
        if (r) {
            r->next = NULL;
            *tail = r;
            tail = &r->next;
        }
    }
    return list;
}

/* Sends a batch (NULL: nothing). A listener too slow to take it loses it: the tap never
 * holds the bus back. */
static void bus_tap_send(struct bus *b, nng_msg *m)
{
    if (m && nng_sendmsg(b->tap, m, NNG_FLAG_NONBLOCK) != 0)
        nng_msg_free(m);
}

/* The batch being filled for the socket; a new one when there is none. NULL: out of memory. */
static nng_msg *bus_tap_batch(nng_msg **batch)
{
    if (!*batch && nng_msg_alloc(batch, 0) == 0 &&
        nng_msg_reserve(*batch, BUS_TAP_BATCH_BYTES + BUS_TAP_RAW_REC_MAX + 4096) != 0) {
        nng_msg_free(*batch);
        *batch = NULL;
    }
    return *batch;
}

/* The packer's sink: appends to the batch (capacity was reserved, so mostly a memcpy). */
static int bus_tap_sink(void *data, const char *buf, size_t len)
{
    return nng_msg_append(data, buf, len) == 0 ? 0 : -1;
}

/* A string of n bytes, or nil; 0 on success, as msgpack's own. */
static int bus_tap_pack_strn(msgpack_packer *pk, const unsigned char *s, size_t n, bool nil)
{
    if (nil)
        return msgpack_pack_nil(pk);
    return msgpack_pack_str(pk, n) == 0 && msgpack_pack_str_body(pk, s, n) == 0 ? 0 : -1;
}

/*
 * Packs one record of a raw buffer into *batch (docs/bus.md "The tap": an array of eight) with
 * its envelope cut for display when it is large, and sends the batch once it holds
 * BUS_TAP_BATCH_BYTES. Returns the size of the record in the raw buffer.
 */
static size_t bus_tap_pack_raw(struct bus *b, const unsigned char *p, nng_msg **batch,
                               struct mp_writer *cut)
{
    struct bus_tap_head h;
    memcpy(&h, p, sizeof(h));
    const unsigned char *dir = p + sizeof(h), *peer = dir + h.dir_n, *topic = peer + h.peer_n;
    const unsigned char *env_bytes = topic + h.topic_n;
    size_t n = h.n, size = sizeof(h) + h.dir_n + h.peer_n + h.topic_n + h.n;
    mp_writer_reset(cut);
    if (!(h.flags & BUS_TAP_CUT_DONE) && n > BUS_TAP_CUT_AT && bus_tap_cut(env_bytes, n, cut)) {
        env_bytes = mp_writer_data(cut);
        n = mp_writer_len(cut);
    }
    nng_msg *m = bus_tap_batch(batch);
    if (m) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, m, bus_tap_sink);
        size_t before = nng_msg_len(m);
        bool ok = msgpack_pack_array(&pk, 8) == 0 && msgpack_pack_uint64(&pk, h.ts) == 0 &&
                  bus_tap_pack_str(&pk, b->self) == 0 &&
                  msgpack_pack_uint64(&pk, b->instance) == 0 &&
                  bus_tap_pack_strn(&pk, dir, h.dir_n, false) == 0 &&
                  bus_tap_pack_strn(&pk, peer, h.peer_n, h.flags & BUS_TAP_PEER_NIL) == 0 &&
                  bus_tap_pack_strn(&pk, topic, h.topic_n, h.flags & BUS_TAP_TOPIC_NIL) == 0 &&
                  msgpack_pack_bin(&pk, n) == 0 && msgpack_pack_bin_body(&pk, env_bytes, n) == 0 &&
                  msgpack_pack_uint64(&pk, h.whole) == 0;
        if (!ok) /* out of memory midway: the batch would end with half a record */
            (void)nng_msg_chop(m, nng_msg_len(m) - before);
        if (nng_msg_len(m) >= BUS_TAP_BATCH_BYTES) {
            bus_tap_send(b, m);
            *batch = NULL;
        }
    } else
        pm_add(b->tap_dropped, 1);
    return size;
}

/* Takes every buffer waiting and packs its records into *batch, sending each batch that fills;
 * batch NULL: drops them. */
static void bus_tap_drain(struct bus *b, nng_msg **batch)
{
    struct bus_tap_raw *r = bus_tap_take_all(b);
    struct mp_writer cut; /* one for all records: reset, not freed, between them */
    mp_writer_init(&cut);
    while (r) {
        struct bus_tap_raw *next = r->next;
        for (size_t off = 0; batch && off < r->len;)
            off += bus_tap_pack_raw(b, r->data + off, batch, &cut);
        bus_tap_raw_put(b, r);
        r = next;
    }
    mp_writer_fini(&cut);
}

/*
 * The flusher sends what was copied every BUS_TAP_FLUSH_MS while anyone listens and sleeps on
 * its condition while nobody does. Woken early (buffers are running out), it packs and sends
 * only full batches: the partial one waits for the tick. A thread of its own, not an nng
 * sleep aio: nng 1.5's expiry thread spends about a millisecond of CPU on every timer it
 * fires (docs/rationale.md).
 */
static void bus_tap_flusher(void *arg)
{
    struct bus *b = arg;
    nng_msg *batch = NULL; /* packed and not sent yet: the flusher's own */
    nng_time tick = 0;
    nng_mtx_lock(b->tap_mtx);
    while (!b->tap_closing) {
        bool listening = atomic_load(&b->tap_pipes) > 0;
        if (!listening)
            nng_cv_wait(b->tap_cv);
        else {
            if (tick == 0)
                tick = nng_clock() + BUS_TAP_FLUSH_MS;
            (void)nng_cv_until(b->tap_cv, tick);
        }
        bool closing = b->tap_closing;
        nng_mtx_unlock(b->tap_mtx);
        if (listening && atomic_load(&b->tap_pipes) > 0) {
            bus_tap_drain(b, &batch);
            if (closing || nng_clock() >= tick) {
                bus_tap_send(b, batch);
                batch = NULL;
                tick = 0;
            }
        } else {
            /* records copied for a listener that has gone are nobody's: a new one starts fresh */
            bus_tap_drain(b, NULL);
            bus_tap_pool_free(b);
            if (batch)
                nng_msg_free(batch);
            batch = NULL;
            tick = 0;
        }
        nng_mtx_lock(b->tap_mtx);
    }
    nng_mtx_unlock(b->tap_mtx);
    if (batch)
        nng_msg_free(batch);
}

void bus_tap_emit(struct bus *b, const char *dir, const char *peer, const char *topic,
                  const void *env_bytes, size_t n)
{
    struct mp_writer cut;
    size_t whole = n;

    unsigned pipes;
    if (!b->tap_open || (pipes = atomic_load_explicit(&b->tap_pipes, memory_order_relaxed)) == 0)
        return;
    /* decoded only when a filter needs it */
    bool filtering = atomic_load_explicit(&b->tap_filtering, memory_order_relaxed);
    struct envelope env;
    if (filtering &&
        !bus_tap_wanted(b, peer, topic, env_decode(env_bytes, n, &env) == OK ? &env : NULL,
                        env_bytes, n, pipes)) {
        pm_add(b->tap_filtered, 1);
        return;
    }
    pm_add(b->tap_records, 1);
    /* too large to copy whole: cut here (rare, and the copy would cost more) */
    bool was_cut = false;
    if (n > BUS_TAP_RAW_REC_MAX) {
        mp_writer_init(&cut);
        was_cut = bus_tap_cut(env_bytes, n, &cut);
        if (was_cut) {
            env_bytes = mp_writer_data(&cut);
            n = mp_writer_len(&cut);
        } else
            mp_writer_fini(&cut);
    }
    struct bus_tap_head h = {
        .ts = clock_wall_ms(),
        .n = (uint32_t)n,
        .whole = whole > UINT32_MAX ? UINT32_MAX : (uint32_t)whole,
        .dir_n = (uint16_t)strlen(dir),
        .peer_n = peer ? (uint16_t)strnlen(peer, UINT16_MAX) : 0,
        .topic_n = topic ? (uint16_t)strnlen(topic, UINT16_MAX) : 0,
        .flags = (uint8_t)((peer ? 0 : BUS_TAP_PEER_NIL) | (topic ? 0 : BUS_TAP_TOPIC_NIL) |
                           (was_cut ? BUS_TAP_CUT_DONE : 0)),
    };
    size_t need = sizeof(h) + h.dir_n + h.peer_n + h.topic_n + n;
    _Atomic(struct bus_tap_raw *) *slot = &b->tap_slot[bus_tap_slot_index()].raw;
    struct bus_tap_raw *r = need <= BUS_TAP_RAW_BYTES ? atomic_exchange(slot, NULL) : NULL;
    if (r && r->len + need > BUS_TAP_RAW_BYTES) {
        bus_tap_ready(b, r);
        r = NULL;
    }
    if (!r && (need > BUS_TAP_RAW_BYTES || !(r = bus_tap_raw_get(b)))) {
        pm_add(b->tap_dropped, 1);
    } else {
        unsigned char *p = r->data + r->len;
        memcpy(p, &h, sizeof(h));
        p += sizeof(h);
        memcpy(p, dir, h.dir_n);
        p += h.dir_n;
        if (h.peer_n)
            memcpy(p, peer, h.peer_n);
        p += h.peer_n;
        if (h.topic_n)
            memcpy(p, topic, h.topic_n);
        p += h.topic_n;
        memcpy(p, env_bytes, n);
        r->len += need;
        /* a thread sharing the slot may have put a buffer of its own there meanwhile */
        struct bus_tap_raw *other = atomic_exchange(slot, r);
        if (other)
            bus_tap_ready(b, other);
    }
    if (was_cut)
        mp_writer_fini(&cut);
}
