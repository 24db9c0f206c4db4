/*
 * taps.c - the tap listeners' filters: who asked to see what (tap_filter.h).
 *
 * A listener registers under an id of its own and renews every second; one not renewed for
 * TAP_FILTER_LEASE_MS is dropped, so a listener killed without a word stops narrowing nothing
 * within seconds. The list goes out as one bus.tap event after each change and every second
 * (a restarted process catches up), and the supervisor applies it to its own tap directly.
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mp.h"
#include "msg.h"
#include "sv.h"

void sv_taps_publish(struct sv *sv)
{
    struct tap_filter f[TAP_FILTERS_MAX];
    struct mp_writer w;
    uint64_t now = clock_mono_ms();
    unsigned n = 0;

    for (unsigned i = 0; i < sv->ntaps;) {
        if (sv->taps[i].until_mono <= now) {
            LOG_INFO("sv.tap_gone", "tap listener %s stopped renewing its filter", sv->taps[i].id);
            sv->taps[i] = sv->taps[--sv->ntaps];
            continue;
        }
        f[n++] = sv->taps[i++].f;
    }
    bus_tap_filters_set(sv->bus, f, n);
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "filters");
    mp_put_array(&w, n);
    for (unsigned i = 0; i < n; i++)
        tap_filter_put(&w, &f[i]);
    if (mp_writer_err(&w) == OK)
        (void)bus_publish(sv->events, "bus.tap", MSG_BUS_TAP, mp_writer_data(&w),
                          mp_writer_len(&w));
    mp_writer_fini(&w);
}

void sv_taps_on_filter(struct sv *sv, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    struct mp_reader v;
    struct slice id, raw;
    struct tap_filter f = {0};
    bool cancel = false;
    char idbuf[64];

    if (env->body.n == 0 || mp_map_find(env->body.p, env->body.n, "id", &v) != OK ||
        mp_read_str(&v, &id) != OK || id.n == 0 || slice_copy(id, idbuf, sizeof(idbuf)) != OK ||
        memchr(id.p, '\0', id.n)) {
        bus_reply_err(req, ERR_INVAL, "id: a string of 1 to 63 bytes");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "cancel", &v) == OK &&
        mp_read_bool(&v, &cancel) != OK) {
        bus_reply_err(req, ERR_INVAL, "cancel: a boolean");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "filter", &v) == OK &&
        (mp_skip(&v, &raw) != OK || tap_filter_read(raw.p, raw.n, &f) != OK)) {
        bus_reply_err(req, ERR_INVAL, "filter: a map of strings that fit their fields");
        return;
    }

    unsigned i = 0;
    while (i < sv->ntaps && strcmp(sv->taps[i].id, idbuf) != 0)
        i++;
    bool known = i < sv->ntaps, changed = true;
    if (cancel) {
        changed = known;
        if (known)
            sv->taps[i] = sv->taps[--sv->ntaps];
    } else {
        if (!known && sv->ntaps == TAP_FILTERS_MAX) {
            bus_reply_err(req, ERR_QUOTA, "too many tap listeners with a filter");
            return;
        }
        if (!known) {
            i = sv->ntaps++;
            snprintf(sv->taps[i].id, sizeof(sv->taps[i].id), "%s", idbuf);
            LOG_INFO("sv.tap_filter", "tap listener %s registered its filter", idbuf);
        }
        changed = !known || memcmp(&sv->taps[i].f, &f, sizeof(f)) != 0;
        sv->taps[i].f = f;
        sv->taps[i].until_mono = clock_mono_ms() + TAP_FILTER_LEASE_MS;
    }
    if (changed) /* a plain renewal waits for the next second's publish */
        sv_taps_publish(sv);
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "listeners", sv->ntaps);
    bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    mp_writer_fini(&w);
}
