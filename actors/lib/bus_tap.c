/*
 * bus_tap.c - mirrors every envelope this process sends or receives onto a
 * PUB socket for `tetherctl tap`.
 *
 * The cost while nobody listens is one atomic load per message: a pipe
 * notification keeps a count of connected listeners, and nothing is copied
 * or encoded while it is zero.
 */
#include "bus_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <nng/protocol/pubsub0/pub.h>

#include "clock.h"
#include "log.h"

void bus_tap_dir(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/tap", dir);
}

static void bus_tap_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct bus *b = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&b->tap_pipes, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(&b->tap_pipes, 1);
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
    return OK;
}

void bus_tap_close(struct bus *b)
{
    if (b->tap_open)
        nng_close(b->tap);
    b->tap_open = false;
}

unsigned bus_tap_listeners(const struct bus *b)
{
    return atomic_load(&((struct bus *)b)->tap_pipes);
}

void bus_tap_emit(struct bus *b, const char *dir, const char *peer, const char *topic,
                  const void *env_bytes, size_t n)
{
    struct mp_writer w;
    nng_msg *m;

    if (!b->tap_open || atomic_load_explicit(&b->tap_pipes, memory_order_relaxed) == 0)
        return;
    /* the header is packed apart and the envelope appended once: one copy, one allocation */
    mp_writer_init(&w);
    mp_put_array(&w, 7);
    mp_put_uint(&w, clock_wall_ms());
    mp_put_str(&w, b->self);
    mp_put_uint(&w, b->instance);
    mp_put_str(&w, dir);
    mp_put_str(&w, peer);
    mp_put_str(&w, topic);
    msgpack_pack_bin(&w.pk, n);
    if (mp_writer_err(&w) == OK && nng_msg_alloc(&m, 0) == 0) {
        if (nng_msg_reserve(m, mp_writer_len(&w) + n) != 0 ||
            nng_msg_append(m, mp_writer_data(&w), mp_writer_len(&w)) != 0 ||
            nng_msg_append(m, env_bytes, n) != 0 ||
            nng_sendmsg(b->tap, m, NNG_FLAG_NONBLOCK) != 0)
            nng_msg_free(m);
    }
    mp_writer_fini(&w);
}
