/*
 * bus_tap.c - mirrors every envelope this process sends or receives onto a
 * PUB socket for `tetherctl tap`.
 *
 * The cost while nobody listens is one atomic load per message: a pipe
 * notification keeps a count of connected listeners, and nothing is copied
 * or encoded while it is zero. While someone listens, records are packed
 * into one batch that a thread of its own sends every BUS_TAP_FLUSH_MS (or sooner,
 * once it holds BUS_TAP_BATCH_BYTES): a send per message woke nng's threads
 * and the kernel for each, and cost half the bus's throughput.
 */
#include "bus_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <nng/protocol/pubsub0/pub.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "mpcut.h"
#include "msg.h"

void bus_tap_dir(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/tap", dir);
}

/* Takes the batch for sending (tap_mtx held); NULL when there is none to send. */
static nng_msg *bus_tap_take_locked(struct bus *b)
{
    nng_msg *m = b->tap_batch;
    b->tap_batch = NULL;
    if (m && b->tap_batch_bad) {
        nng_msg_free(m);
        m = NULL;
    }
    b->tap_batch_bad = false;
    return m;
}

/* Sends a batch taken, outside the lock. A listener too slow to take it loses it: the tap
 * never holds the bus back. */
static void bus_tap_send(struct bus *b, nng_msg *m)
{
    if (m && nng_sendmsg(b->tap, m, NNG_FLAG_NONBLOCK) != 0)
        nng_msg_free(m);
}

/* The packer's sink: appends to the batch (capacity was reserved, so mostly a memcpy). */
static int bus_tap_sink(void *data, const char *buf, size_t len)
{
    return nng_msg_append(data, buf, len) == 0 ? 0 : -1;
}

/*
 * The flusher sends the batch every BUS_TAP_FLUSH_MS while anyone listens and sleeps on its
 * condition while nobody does. A thread of its own, not an nng sleep aio: nng 1.5's expiry
 * thread spends about a millisecond of CPU on every timer it fires (docs/rationale.md).
 */
static void bus_tap_flusher(void *arg)
{
    struct bus *b = arg;
    nng_mtx_lock(b->tap_mtx);
    while (!b->tap_closing) {
        if (atomic_load(&b->tap_pipes) == 0) {
            /* records packed for a listener that has gone are nobody's: a new one starts fresh */
            nng_msg *stale = bus_tap_take_locked(b);
            if (stale)
                nng_msg_free(stale);
            nng_cv_wait(b->tap_cv);
        } else
            (void)nng_cv_until(b->tap_cv, nng_clock() + BUS_TAP_FLUSH_MS);
        nng_msg *m = bus_tap_take_locked(b);
        nng_mtx_unlock(b->tap_mtx);
        bus_tap_send(b, m);
        nng_mtx_lock(b->tap_mtx);
    }
    nng_mtx_unlock(b->tap_mtx);
}

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
    if (b->tap_batch)
        nng_msg_free(b->tap_batch);
    b->tap_batch = NULL;
    if (b->tap_mtx)
        nng_mtx_free(b->tap_mtx);
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
 * The envelope as a listener sees it: a large one with its body cut for display (mpcut.h:
 * strings past BUS_TAP_STR_MAX bytes, bins as their length) into *cut, which the caller frees.
 * The bytes a listener takes were what a listener cost; it renders the same text either way.
 */
static bool bus_tap_cut(const struct envelope *decoded, struct mp_writer *cut)
{
    struct envelope env = *decoded;
    struct mp_writer body;
    if (env.body.n == 0)
        return false;
    mp_writer_init(&body);
    bool ok = mp_cut(env.body.p, env.body.n, BUS_TAP_STR_MAX, &body) == OK;
    if (ok) {
        env.body = (struct slice){mp_writer_data(&body), mp_writer_len(&body)};
        mp_writer_init(cut);
        ok = env_encode(cut, &env) == OK;
        if (!ok)
            mp_writer_fini(cut);
    }
    mp_writer_fini(&body);
    return ok;
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
    struct mp_reader v;
    uint32_t count;
    unsigned n = 0;
    if (env->type != MSG_BUS_TAP || env->body.n == 0 ||
        mp_map_find(env->body.p, env->body.n, "filters", &v) != OK ||
        mp_read_array(&v, &count) != OK)
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

void bus_tap_emit(struct bus *b, const char *dir, const char *peer, const char *topic,
                  const void *env_bytes, size_t n)
{
    msgpack_packer pk;
    nng_msg *full = NULL;
    struct mp_writer cut;
    size_t whole = n;

    unsigned pipes;
    if (!b->tap_open || (pipes = atomic_load_explicit(&b->tap_pipes, memory_order_relaxed)) == 0)
        return;
    /* decoded once, and only when a filter or the cut needs it */
    bool filtering = atomic_load_explicit(&b->tap_filtering, memory_order_relaxed);
    struct envelope env;
    bool decoded = (filtering || n > BUS_TAP_CUT_AT) && env_decode(env_bytes, n, &env) == OK;
    if (filtering && !bus_tap_wanted(b, peer, topic, decoded ? &env : NULL, env_bytes, n, pipes)) {
        pm_add(b->tap_filtered, 1);
        return;
    }
    pm_add(b->tap_records, 1);
    bool was_cut = decoded && n > BUS_TAP_CUT_AT && bus_tap_cut(&env, &cut);
    if (was_cut) {
        env_bytes = mp_writer_data(&cut);
        n = mp_writer_len(&cut);
    }
    uint64_t ts = clock_wall_ms();
    nng_mtx_lock(b->tap_mtx);
    if (!b->tap_batch && nng_msg_alloc(&b->tap_batch, 0) == 0 &&
        nng_msg_reserve(b->tap_batch, BUS_TAP_BATCH_BYTES + n + 4096) != 0) {
        nng_msg_free(b->tap_batch);
        b->tap_batch = NULL;
    }
    if (b->tap_batch) {
        msgpack_packer_init(&pk, b->tap_batch, bus_tap_sink);
        bool ok = msgpack_pack_array(&pk, 8) == 0 && msgpack_pack_uint64(&pk, ts) == 0 &&
                  bus_tap_pack_str(&pk, b->self) == 0 &&
                  msgpack_pack_uint64(&pk, b->instance) == 0 && bus_tap_pack_str(&pk, dir) == 0 &&
                  bus_tap_pack_str(&pk, peer) == 0 && bus_tap_pack_str(&pk, topic) == 0 &&
                  msgpack_pack_bin(&pk, n) == 0 && msgpack_pack_bin_body(&pk, env_bytes, n) == 0 &&
                  msgpack_pack_uint64(&pk, whole) == 0;
        if (!ok) /* out of memory midway: the batch holds half a record */
            b->tap_batch_bad = true;
        if (!ok || nng_msg_len(b->tap_batch) >= BUS_TAP_BATCH_BYTES)
            full = bus_tap_take_locked(b);
    }
    nng_mtx_unlock(b->tap_mtx);
    if (was_cut)
        mp_writer_fini(&cut);
    bus_tap_send(b, full);
}
