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
#include "msg_raw.h"
#include "msg_sv.h"
#include "sv.h"

void sv_taps_publish(struct sv *sv)
{
    struct tap_filter f[TAP_FILTERS_MAX];
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
    struct mp_writer fw, w; /* the filters, the body */
    mp_writer_init(&fw);
    mp_writer_init(&w);
    mp_put_array(&fw, n);
    for (unsigned i = 0; i < n; i++)
        tap_filter_put(&fw, &f[i]);
    struct msg_bus_tap m = {msg_raw_of(&fw)};
    msg_encode(&msg_bus_tap_form, &w, &m);
    if (mp_writer_err(&fw) == OK && mp_writer_err(&w) == OK)
        (void)bus_publish(sv->events, "bus.tap", MSG_BUS_TAP, mp_writer_data(&w),
                          mp_writer_len(&w));
    mp_writer_fini(&w);
    mp_writer_fini(&fw);
}

err_t sv_taps_on_filter(struct sv *sv, struct bus_req *req)
{
    const struct envelope *env = bus_req_env(req);
    struct msg_sv_tap_filter m;
    struct tap_filter f = {0};
    char idbuf[MSG_SV_TAP_ID_MAX + 1];

    if (msg_decode(&msg_sv_tap_filter_form, env->body.p, env->body.n, &m) != OK ||
        memchr(m.id.p, '\0', m.id.n)) {
        bus_reply_err(req, ERR_INVAL, "id: a string of 1 to 63 bytes, and cancel: a boolean");
        return OK;
    }
    (void)slice_copy(m.id, idbuf, sizeof(idbuf)); /* it fits: the form's limit */
    if (m.filter.p && tap_filter_read(m.filter.p, m.filter.n, &f) != OK) {
        bus_reply_err(req, ERR_INVAL, "filter: a map of strings that fit their fields");
        return OK;
    }

    unsigned i = 0;
    while (i < sv->ntaps && strcmp(sv->taps[i].id, idbuf) != 0)
        i++;
    bool known = i < sv->ntaps, changed = true;
    if (m.cancel) {
        changed = known;
        if (known)
            sv->taps[i] = sv->taps[--sv->ntaps];
    } else {
        if (!known && sv->ntaps == TAP_FILTERS_MAX) {
            bus_reply_err(req, ERR_QUOTA, "too many tap listeners with a filter");
            return OK;
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
    struct msg_sv_tap_filter_reply r = {sv->ntaps};
    (void)bus_reply_msg(req, &msg_sv_tap_filter_reply_form, &r, NULL);
    return OK;
}
