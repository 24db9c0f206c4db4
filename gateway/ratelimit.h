/*
 * ratelimit.h - per-environment rate limits on the API (the contract's §1.4): before a route's
 * handler runs, the call takes one token from its environment's bucket for the route's group,
 * kept in Redis by the stream-broker (rate.take), so every gateway process of every node draws on
 * the same bucket. Groups: "api" (routes under /api/, TETHER_GW_RATE_API) and "realtime"
 * (/realtime/ and /s2/, TETHER_GW_RATE_REALTIME), each "BURST/PER_S" or empty for no limit.
 *
 * Taken: the answer carries x-ratelimit-limit, -remaining and -reset (unix ms, when the bucket
 * is full again). Refused: 429 {"error": "Rate limit exceeded"} with the same headers, reset
 * being when a token is there, and retry-after (seconds); no x-should-retry, so the SDK waits
 * until x-ratelimit-reset and retries (up to 3 attempts). Routes without a credential (capability
 * URLs) and the HTTP/2 append sessions take no token. The limiter fails open: a stream-broker
 * that does not answer lets the call through (logged at most every 10 s).
 *
 * Loop thread only.
 */
#ifndef TETHER_GW_RATELIMIT_H
#define TETHER_GW_RATELIMIT_H

#include "err.h"
#include "http.h"

struct gw;

/* Reads TETHER_GW_RATE_*; ERR_INVAL (logged) when one is not "BURST/PER_S" or empty. */
err_t gw_rate_open(struct gw *gw);

/* Takes c's token, then continues the pipeline (gw_after_limits) or answers 429. */
void gw_rate_check(struct gw_call *c);

/* http.c: the pipeline after the limits (body cap, params, body, handler). */
void gw_after_limits(struct gw_call *c);

#endif
