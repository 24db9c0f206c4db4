/*
 * pmetrics.h - the figures of one actor or supervisor process, in a file of its own that the
 * gateway's GET /metrics reads (docs/gateway.md#metrics lists every figure).
 *
 * Each process that calls pm_open counts into <TETHER_RUN_DIR>/metrics/<name>.metrics (mmap,
 * MAP_SHARED), where name is its child name (session-manager, stream-broker.1, supervisor).
 * The file is self-describing: a header, then slots that each hold one series (its family, its
 * labels and its values). Whichever gateway answers a scrape reads every such file of the node,
 * so a scrape sees every process without a port per process or a bus round trip
 * (docs/rationale.md). A file outlives its process: a process restarted under the same name
 * takes its file back and counts on (gauges start again at 0).
 *
 * Writers: any thread of the owning process (counters and histograms are atomic adds; series
 * are made under a mutex). Readers: any process, under a shared flock that keeps the owner from
 * re-making the file under them. A figure may be a few increments behind another, never torn.
 *
 * Without pm_open, or when the file cannot be made, every call below is a no-op (NULL series):
 * counting never fails a request.
 */
#ifndef TETHER_LIB_PMETRICS_H
#define TETHER_LIB_PMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct jbuf;

enum pm_kind {
    PM_COUNTER = 1,
    PM_GAUGE,
    PM_HISTOGRAM, /* of durations, observed in microseconds, shown in seconds */
};

/* Every family any process may publish; the order is the file format's (pm_open hashes it). */
enum pm_family_id {
    PM_BUS_REQUESTS,        /* type, outcome: requests this process answered */
    PM_BUS_DURATION,        /* type: from receipt to the reply sent */
    PM_BUS_DEADLINE_MISSED, /* type: dropped unanswered, their caller's deadline passed */
    PM_BUS_RESENDS,         /* type: requests received again (attempt > 1) */
    PM_STORE_DURATION,      /* store: from a call's start to its result */
    PM_STORE_ERRORS,        /* store, error */
    PM_SV_RESTARTS,         /* child: deaths followed by a restart */
    PM_SV_CHILD_UP,         /* child: 1 while up */
    PM_SV_LEADER,           /* 1 while this node holds the leader lock */
    PM_SV_FENCING_TOKEN,    /* the token of the lock held, 0 without */
    PM_CLUSTER_NODES,       /* nodes in the cluster registry, as last read */
    PM_REPL_LAG,            /* set in milliseconds, shown in seconds (scale 1000) */
    PM_REPL_LAG_BYTES,      /* WAL the replication slot has not had acknowledged */
    PM_WAITPOINTS_PENDING,  /* waitpoints waiting for completion */
    PM_TAP_RECORDS,         /* messages mirrored on the tap */
    PM_TAP_FILTERED,        /* messages a listener's filter kept off the tap */
    PM_TAP_DROPPED,         /* messages the tap's flusher was too far behind to take */
    PM_BUS_REDIALS,         /* dials replaced after a while without a connection */
    PM_NFAMILIES,
};

struct pm_family {
    const char *name;
    enum pm_kind kind;
    const char *help;
    unsigned scale; /* a gauge is set in 1/scale of its unit (1: in its unit) */
};
extern const struct pm_family pm_families[PM_NFAMILIES];

struct pm_series;

/* Opens (or takes back) this process's file. ERR_INVAL for a name that is not [A-Za-z0-9._-]. */
err_t pm_open(const char *run_dir, const char *name);
void pm_close(void);

/*
 * The series of family f with labels (`key="value",...`, without braces; at most 119 bytes,
 * values without quotes, backslashes or newlines: anything else is replaced by '_'): found, or
 * made on first use. NULL when pm_open was not called or the file is full (1024 series).
 * The pointer stays valid until pm_close; callers on a hot path keep it.
 */
struct pm_series *pm_series(enum pm_family_id f, const char *labels);
/* The same with the labels formatted (printf). */
struct pm_series *pm_seriesf(enum pm_family_id f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void pm_add(struct pm_series *s, uint64_t n);         /* counters */
void pm_set(struct pm_series *s, int64_t v);          /* gauges */
void pm_observe_us(struct pm_series *s, uint64_t us); /* histograms */

/* One store call that started at started_us (clock_mono_us) ended with rc: its duration, and
 * an error counted by name when rc is not OK. store: "postgres", "redis" or "clickhouse". */
void pm_store_call(const char *store, uint64_t started_us, err_t rc);

/*
 * Appends, in Prometheus text format 0.0.4, every family of every metrics file in <run_dir>/metrics
 * file written by this build, each series labelled process="<name>" first. A file of another
 * build, one being made or one that is not a metrics file is skipped.
 */
void pm_render_dir(const char *run_dir, struct jbuf *out);

#endif
