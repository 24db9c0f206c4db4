/*
 * ratelimit.c - the API's rate limits (ratelimit.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "gw.h"
#include "log.h"
#include "msg.h"
#include "msg_stream.h"
#include "ratelimit.h"

enum { GW_RATE_API, GW_RATE_REALTIME, GW_RATE_NGROUPS };

static const char *const gw_rate_names[GW_RATE_NGROUPS] = {"api", "realtime"};
static const char *const gw_rate_vars[GW_RATE_NGROUPS] = {"TETHER_GW_RATE_API",
                                                          "TETHER_GW_RATE_REALTIME"};

/* burst 0: no limit */
static struct {
    uint64_t burst, per_s;
} gw_rates[GW_RATE_NGROUPS];

static uint64_t gw_rate_last_warn_mono;

/* "BURST/PER_S", both 1..10^9; "" is no limit. */
static bool gw_rate_parse(const char *s, uint64_t *burst, uint64_t *per_s)
{
    char *end;
    *burst = *per_s = 0;
    if (!s || !*s)
        return true;
    unsigned long long b = strtoull(s, &end, 10);
    if (end == s || *end != '/' || b == 0 || b > 1000000000ull)
        return false;
    const char *p = end + 1;
    unsigned long long r = strtoull(p, &end, 10);
    if (end == p || *end || r == 0 || r > 1000000000ull)
        return false;
    *burst = b;
    *per_s = r;
    return true;
}

err_t gw_rate_open(struct gw *gw)
{
    const char *vals[GW_RATE_NGROUPS] = {gw->gw.rate_api, gw->gw.rate_realtime};
    for (int g = 0; g < GW_RATE_NGROUPS; g++) {
        if (!gw_rate_parse(vals[g], &gw_rates[g].burst, &gw_rates[g].per_s)) {
            LOG_ERROR("gw.rate_config", "%s must be BURST/PER_S (e.g. 750/25) or empty, not \"%s\"",
                      gw_rate_vars[g], vals[g]);
            return ERR_INVAL;
        }
        if (gw_rates[g].burst)
            LOG_INFO("gw.rate",
                     "rate limit %s: %" PRIu64 " burst, %" PRIu64 " a second per "
                     "environment",
                     gw_rate_names[g], gw_rates[g].burst, gw_rates[g].per_s);
    }
    return OK;
}

static int gw_rate_group(const struct gw_route *r)
{
    if (r->auth == 0) /* a capability URL: no environment to count against yet */
        return -1;
    if (strncmp(r->pattern, "/api/", 5) == 0)
        return GW_RATE_API;
    if (strncmp(r->pattern, "/realtime/", 10) == 0 || strncmp(r->pattern, "/s2/", 4) == 0)
        return GW_RATE_REALTIME;
    return -1;
}

static void gw_rate_header_u64(struct gw_call *c, const char *name, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    gw_add_header(c, name, buf);
}

static void gw_rate_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct msg_rate_take_reply m;
    if (rc == OK && msg_decode(&msg_rate_take_reply_form, env->body.p, env->body.n, &m) != OK)
        rc = ERR_PROTO;
    if (rc != OK) { /* fail open: a limiter must not take the API down with it */
        uint64_t now = clock_mono_ms();
        if (now - gw_rate_last_warn_mono > 10000 || !gw_rate_last_warn_mono) {
            gw_rate_last_warn_mono = now;
            LOG_WARN("gw.rate_unavailable", "rate.take failed (%s): calls go through unlimited",
                     err_str(rc));
        }
        gw_after_limits(c);
        return;
    }
    gw_rate_header_u64(c, "x-ratelimit-limit", m.limit);
    gw_rate_header_u64(c, "x-ratelimit-remaining", m.remaining);
    gw_rate_header_u64(c, "x-ratelimit-reset", m.reset_ms);
    if (m.allowed) {
        gw_after_limits(c);
        return;
    }
    gw_rate_header_u64(c, "retry-after", (m.retry_after_ms + 999) / 1000);
    gw_respond_error(c, 429, "Rate limit exceeded", 0);
}

void gw_rate_check(struct gw_call *c)
{
    int g = gw_rate_group(c->route);
    struct mp_writer w;
    if (g < 0 || gw_rates[g].burst == 0) {
        gw_after_limits(c);
        return;
    }
    struct msg_rate_take m = {
        .env = msg_str(c->auth.env.id),
        .group = msg_str(gw_rate_names[g]),
        .burst = gw_rates[g].burst,
        .per_s = gw_rates[g].per_s,
    };
    mp_writer_init(&w);
    msg_encode(&msg_rate_take_form, &w, &m);
    err_t rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_STREAM_BROKER, MSG_RATE_TAKE, mp_writer_data(&w),
                         mp_writer_len(&w), gw_rate_on_reply);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_rate_on_reply(c, rc, NULL);
}
