/*
 * metrics.h - the gateway's figures and GET /metrics (Prometheus text format 0.0.4).
 *
 * Several gateway processes share one port (SO_REUSEPORT), so a scrape reaches any one of
 * them. Each process therefore counts into its own slot of one file shared by all of them,
 * <TETHER_RUN_DIR>/gateway.metrics (mmap, MAP_SHARED; slot = TETHER_INSTANCE), and /metrics
 * sums every slot: whichever process answers, the scrape sees the whole node. A slot outlives
 * its process, so a gateway killed and restarted keeps counting up from where it was; only its
 * gauges (SSE connections open) start again at 0. docs/rationale.md says why this over a
 * metrics port per process.
 *
 * One thread writes a slot (its process's h2o loop); others only read it. Each figure is a
 * relaxed atomic: a scrape may see one request's count without its duration yet, never a
 * torn value.
 *
 * Without the file (no run dir, a full disk) the gateway runs on and counts into memory of its
 * own: /metrics then shows this process alone, and a warning says so once.
 */
#ifndef TETHER_GW_METRICS_H
#define TETHER_GW_METRICS_H

#include <stdint.h>

#include <h2o.h>

#include "err.h"

struct gw;
struct gw_route;

/* What a request is counted as when no route took it (http.c's answers outside a call). */
enum gw_m_other {
    GW_M_HEALTHZ,
    GW_M_LIVEZ,
    GW_M_METRICS,
    GW_M_PREFLIGHT,
    GW_M_UNMATCHED, /* 404: no route */
    GW_M_METHOD,    /* 405: a route, not this method */
    GW_M_TOO_LONG,  /* 414 */
    GW_M_HEADERS,   /* 431 */
    GW_M_HOST,      /* 421 */
    GW_M_CONSOLE,   /* the console page */
    GW_M_NOTHER,
};

/* Outcomes of a bus call made for an HTTP call. */
enum gw_m_bus {
    GW_M_BUS_OK,          /* answered, whatever the answer said */
    GW_M_BUS_TIMEOUT,     /* no answer within the deadline */
    GW_M_BUS_UNAVAILABLE, /* no actor to take it, or it went away */
    GW_M_BUS_ERROR,       /* the call could not be made, or another failure */
    GW_M_NBUS,
};

/* Maps the shared file (TETHER_RUN_DIR) and takes slot `instance`; at most 64 instances. */
err_t gw_metrics_open(struct gw *gw, unsigned instance);
void gw_metrics_close(void);

/* One answer: route is a route of gw_routes, or NULL with other set; started_us is the
 * request's start on clock_mono_us. */
void gw_metrics_request(const struct gw_route *route, enum gw_m_other other, int status,
                        uint64_t started_us);

/* The row of an answer outside a call, by the name http.c gives it ("/healthz", "(host)" ...);
 * an unknown name counts as (unmatched). */
enum gw_m_other gw_metrics_other(const char *tmpl);

void gw_metrics_sse_open(void);
void gw_metrics_sse_close(uint64_t records, uint64_t bytes);
/* An S2 append session (s2s.h) begins; one ends with the batches and records it acknowledged. */
void gw_metrics_s2s_open(void);
void gw_metrics_s2s_close(uint64_t batches, uint64_t records);
void gw_metrics_bus(unsigned actor, enum gw_m_bus outcome, uint64_t started_mono_us);
/* A record stream read that a feed made (gw_feed_read), records fanned out by the ones it gave. */
void gw_metrics_feed_read(void);

/* GET /metrics (no credential, like /healthz). */
int gw_on_metrics(struct gw *gw, h2o_req_t *req);

#endif
