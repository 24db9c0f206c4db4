/*
 * runs_int.h - what the runs API (h_runs.c) shares with the worker's dequeue
 * (h_dequeue.c), internal to the gateway: the readers of run-manager replies
 * (run objects, proto/msg.c) and the request fields both take.
 *
 * h_runs.c owns all of it. The readers borrow nothing past the call: strings
 * are copied out, JSON comes back as a new reference the caller releases.
 */
#ifndef TETHER_GW_RUNS_INT_H
#define TETHER_GW_RUNS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "mp.h"

#define GW_LEASE_DEFAULT_S 30
#define GW_LEASE_MAX_S 3600
#define GW_WORKER_ID_MAX 128

/* A string field into out; false when absent or too long (out is then ""). */
bool gw_mp_str(struct slice m, const char *k, char *out, size_t cap);
/* An unsigned field, 0 when absent; *present (may be NULL) says whether it was there. */
uint64_t gw_mp_u64(struct slice m, const char *k, bool *present);
/* A JSON text field parsed (a new reference); NULL when absent, nil or malformed. */
json_t *gw_mp_json(struct slice m, const char *k);
/* A time in ms since the epoch as an ISO 8601 string; 0 is JSON null. */
json_t *gw_iso_or_null(uint64_t ms);

/* An optional integer field within [min, max] (def when absent); false (400 sent) otherwise. */
bool gw_runs_int(struct gw_call *c, json_t *o, const char *k, long long min, long long max,
                 long long def, long long *out);
/* An optional workerId: NULL when absent, else borrowed from o; false (400 sent) when not a
 * string of 1-GW_WORKER_ID_MAX bytes. */
bool gw_runs_worker(struct gw_call *c, json_t *o, const char **out);

#endif
