/*
 * metrics.c - the gateway's figures in a file its processes share, and GET /metrics
 * (metrics.h has the contract; docs/gateway.md lists every metric).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "gw.h"
#include "http.h"
#include "jbuf.h"
#include "log.h"
#include "metrics.h"
#include "pmetrics.h"

#define GW_M_MAX_ROUTES 64 /* gw_routes holds fewer; gw_metrics_open checks */
#define GW_M_ROWS (GW_M_MAX_ROUTES + GW_M_NOTHER)
#define GW_M_SLOTS 64
#define GW_M_MAGIC UINT64_C(0x3174656d72687474) /* "tthrmet1" */

/* The statuses the gateway answers (http.c's gw_reason); anything else is "other". */
static const int gw_m_statuses[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 409,
                                    413, 414, 421, 422, 429, 431, 500, 503, 504, 507};
#define GW_M_NSTATUS (sizeof(gw_m_statuses) / sizeof(gw_m_statuses[0]) + 1)

/* Upper bounds in microseconds of the duration buckets (le, seconds: 0.001 ... 30). */
static const uint64_t gw_m_bounds_us[] = {1000,    2500,    5000,     10000,   25000,
                                          50000,   100000,  250000,   500000,  1000000,
                                          2500000, 5000000, 10000000, 30000000};
#define GW_M_NBOUNDS (sizeof(gw_m_bounds_us) / sizeof(gw_m_bounds_us[0]))

typedef _Atomic uint64_t gw_m_counter;
typedef _Atomic int64_t gw_m_gauge;

struct gw_m_hist {
    gw_m_counter bucket[GW_M_NBOUNDS + 1]; /* not cumulative here; the last is +Inf */
    gw_m_counter sum_us;
};

struct gw_m_slot {
    _Atomic int64_t pid; /* the process writing it now; 0: never used */
    gw_m_counter starts;
    gw_m_counter requests[GW_M_ROWS][GW_M_NSTATUS];
    struct gw_m_hist request_duration[GW_M_ROWS];
    gw_m_gauge sse_open;
    gw_m_counter sse_total, sse_records, sse_bytes, feed_reads;
    gw_m_gauge s2s_open;
    gw_m_counter s2s_total, s2s_batches, s2s_records;
    gw_m_counter bus[GW_NPEERS][GW_M_NBUS];
    struct gw_m_hist bus_duration[GW_NPEERS];
};

struct gw_m_file {
    uint64_t magic;
    uint64_t slot_size; /* a file of another layout (another build) is made anew */
    uint64_t nslots;
    uint64_t reserved[5];
    struct gw_m_slot slots[GW_M_SLOTS];
};

static struct gw_m_file *gw_m;      /* the shared file, or gw_m_own */
static struct gw_m_file *gw_m_own;  /* without the file: this process alone */
static struct gw_m_slot *gw_m_mine; /* where this process counts */

static void gw_m_add(gw_m_counter *c, uint64_t n)
{
    /* one writer per slot: a load and a store, no locked add */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t gw_m_get(gw_m_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void gw_m_observe(struct gw_m_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < GW_M_NBOUNDS && us > gw_m_bounds_us[i])
        i++;
    gw_m_add(&h->bucket[i], 1);
    gw_m_add(&h->sum_us, us);
}

/* ---- the file ---- */

static struct gw_m_file *gw_m_map(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        LOG_WARN("gw.metrics_unshared", "cannot open %s (%s): /metrics shows this process alone",
                 path, strerror(errno));
        return NULL;
    }
    struct gw_m_file *m = NULL;
    struct stat st;
    /* one process at a time checks the layout and sizes the file */
    if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0)
        goto out;
    if ((uint64_t)st.st_size != sizeof(*m) && ftruncate(fd, 0) != 0)
        goto out;
    if ((uint64_t)st.st_size != sizeof(*m) && ftruncate(fd, (off_t)sizeof(*m)) != 0)
        goto out;
    void *p = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        goto out;
    m = p;
    if (m->magic != GW_M_MAGIC || m->slot_size != sizeof(struct gw_m_slot) ||
        m->nslots != GW_M_SLOTS) {
        memset(m, 0, sizeof(*m)); /* new, or another layout: its counts mean nothing here */
        m->slot_size = sizeof(struct gw_m_slot);
        m->nslots = GW_M_SLOTS;
        m->magic = GW_M_MAGIC;
    }
out:
    if (!m)
        LOG_WARN("gw.metrics_unshared", "cannot map %s (%s): /metrics shows this process alone",
                 path, strerror(errno));
    (void)flock(fd, LOCK_UN);
    close(fd); /* the mapping stays */
    return m;
}

err_t gw_metrics_open(struct gw *gw, unsigned instance)
{
    char path[4096];
    if (gw_nroutes > GW_M_MAX_ROUTES || instance >= GW_M_SLOTS) {
        LOG_ERROR("gw.metrics", "%zu routes (at most %d), instance %u (at most %d)", gw_nroutes,
                  GW_M_MAX_ROUTES, instance, GW_M_SLOTS - 1);
        return ERR_INVAL;
    }
    int n = snprintf(path, sizeof(path), "%s/gateway.metrics", gw->cfg.run_dir);
    if (n > 0 && (size_t)n < sizeof(path))
        gw_m = gw_m_map(path);
    if (!gw_m) {
        gw_m_own = calloc(1, sizeof(*gw_m_own));
        if (!gw_m_own)
            return ERR_NOMEM;
        gw_m = gw_m_own;
    }
    gw_m_mine = &gw_m->slots[instance];
    atomic_store_explicit(&gw_m_mine->pid, (int64_t)getpid(), memory_order_relaxed);
    atomic_store_explicit(&gw_m_mine->sse_open, 0, memory_order_relaxed); /* the last one's died */
    atomic_store_explicit(&gw_m_mine->s2s_open, 0, memory_order_relaxed);
    gw_m_add(&gw_m_mine->starts, 1);
    return OK;
}

void gw_metrics_close(void)
{
    if (gw_m_mine) {
        atomic_store_explicit(&gw_m_mine->sse_open, 0, memory_order_relaxed);
        atomic_store_explicit(&gw_m_mine->s2s_open, 0, memory_order_relaxed);
        atomic_store_explicit(&gw_m_mine->pid, 0, memory_order_relaxed);
    }
    if (gw_m && gw_m != gw_m_own)
        (void)munmap(gw_m, sizeof(*gw_m));
    free(gw_m_own);
    gw_m = gw_m_own = NULL;
    gw_m_mine = NULL;
}

/* ---- counting ---- */

static size_t gw_m_status_index(int status)
{
    for (size_t i = 0; i < GW_M_NSTATUS - 1; i++)
        if (gw_m_statuses[i] == status)
            return i;
    return GW_M_NSTATUS - 1;
}

void gw_metrics_request(const struct gw_route *route, enum gw_m_other other, int status,
                        uint64_t started_us)
{
    if (!gw_m_mine)
        return;
    size_t row = route ? (size_t)(route - gw_routes) : GW_M_MAX_ROUTES + (size_t)other;
    if (row >= GW_M_ROWS)
        return;
    uint64_t now = clock_mono_us();
    gw_m_add(&gw_m_mine->requests[row][gw_m_status_index(status)], 1);
    gw_m_observe(&gw_m_mine->request_duration[row], now > started_us ? now - started_us : 0);
}

void gw_metrics_sse_open(void)
{
    if (!gw_m_mine)
        return;
    atomic_store_explicit(&gw_m_mine->sse_open,
                          atomic_load_explicit(&gw_m_mine->sse_open, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    gw_m_add(&gw_m_mine->sse_total, 1);
}

void gw_metrics_sse_close(uint64_t records, uint64_t bytes)
{
    if (!gw_m_mine)
        return;
    atomic_store_explicit(&gw_m_mine->sse_open,
                          atomic_load_explicit(&gw_m_mine->sse_open, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    gw_m_add(&gw_m_mine->sse_records, records);
    gw_m_add(&gw_m_mine->sse_bytes, bytes);
}

void gw_metrics_s2s_open(void)
{
    if (!gw_m_mine)
        return;
    atomic_store_explicit(&gw_m_mine->s2s_open,
                          atomic_load_explicit(&gw_m_mine->s2s_open, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    gw_m_add(&gw_m_mine->s2s_total, 1);
}

void gw_metrics_s2s_close(uint64_t batches, uint64_t records)
{
    if (!gw_m_mine)
        return;
    atomic_store_explicit(&gw_m_mine->s2s_open,
                          atomic_load_explicit(&gw_m_mine->s2s_open, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    gw_m_add(&gw_m_mine->s2s_batches, batches);
    gw_m_add(&gw_m_mine->s2s_records, records);
}

void gw_metrics_feed_read(void)
{
    if (gw_m_mine)
        gw_m_add(&gw_m_mine->feed_reads, 1);
}

void gw_metrics_bus(unsigned actor, enum gw_m_bus outcome, uint64_t started_us)
{
    if (!gw_m_mine || actor >= GW_NPEERS || outcome >= GW_M_NBUS)
        return;
    uint64_t now = clock_mono_us();
    gw_m_add(&gw_m_mine->bus[actor][outcome], 1);
    gw_m_observe(&gw_m_mine->bus_duration[actor], now > started_us ? now - started_us : 0);
}

/* ---- the exposition ---- */

static const char *const gw_m_other_names[GW_M_NOTHER] = {
    "/healthz",    "/livez",   "/metrics",   "(preflight)",
    "(unmatched)", "(method)", "(too long)", "(headers too large)",
    "(host)",      "/console",
};
static const char *const gw_m_bus_names[GW_M_NBUS] = {"ok", "timeout", "unavailable", "error"};

enum gw_m_other gw_metrics_other(const char *tmpl)
{
    for (unsigned i = 0; i < GW_M_NOTHER; i++)
        if (tmpl && strcmp(tmpl, gw_m_other_names[i]) == 0)
            return (enum gw_m_other)i;
    return GW_M_UNMATCHED;
}

/* The labels of a row: route="...",method="..." (patterns hold no quote or backslash). */
static void gw_m_row_labels(char *out, size_t cap, size_t row)
{
    if (row < gw_nroutes)
        snprintf(out, cap, "route=\"%s\",method=\"%s\"", gw_routes[row].pattern,
                 gw_method_name(gw_routes[row].method));
    else
        snprintf(out, cap, "route=\"%s\",method=\"\"", gw_m_other_names[row - GW_M_MAX_ROUTES]);
}

static bool gw_m_row_used(size_t row)
{
    return row < gw_nroutes || (row >= GW_M_MAX_ROUTES && row < GW_M_ROWS);
}

static uint64_t gw_m_sum(size_t off)
{
    uint64_t t = 0;
    for (size_t s = 0; s < GW_M_SLOTS; s++)
        t += gw_m_get((gw_m_counter *)((char *)&gw_m->slots[s] + off));
    return t;
}
#define GW_M_SUM(field) gw_m_sum(offsetof(struct gw_m_slot, field))

/* A histogram summed over the slots, as _bucket (cumulative), _sum and _count lines. */
static void gw_m_hist_lines(struct jbuf *b, const char *name, const char *labels, size_t off)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= GW_M_NBOUNDS; i++) {
        cum += gw_m_sum(off + offsetof(struct gw_m_hist, bucket) + i * sizeof(gw_m_counter));
        if (i < GW_M_NBOUNDS)
            jbuf_fmt(b, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels,
                     (double)gw_m_bounds_us[i] / 1e6, cum);
        else
            jbuf_fmt(b, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
    }
    uint64_t sum = gw_m_sum(off + offsetof(struct gw_m_hist, sum_us));
    jbuf_fmt(b, "%s_sum{%s} %.6f\n", name, labels, (double)sum / 1e6);
    jbuf_fmt(b, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
}

static void gw_m_scalar(struct jbuf *b, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    jbuf_fmt(b, "# HELP %s ", name);
    jbuf_puts(b, help);
    jbuf_fmt(b, "\n# TYPE %s %s\n%s %" PRIu64 "\n", name, type, name, v);
}

static void gw_m_render(struct jbuf *b)
{
    char labels[512];
    uint64_t row_total[GW_M_ROWS] = {0};

    jbuf_puts(b, "# HELP tether_http_requests_total HTTP requests answered, by route template, "
                 "method and status.\n# TYPE tether_http_requests_total counter\n");
    for (size_t row = 0; row < GW_M_ROWS; row++) {
        if (!gw_m_row_used(row))
            continue;
        gw_m_row_labels(labels, sizeof(labels), row);
        for (size_t s = 0; s < GW_M_NSTATUS; s++) {
            uint64_t v = gw_m_sum(offsetof(struct gw_m_slot, requests) +
                                  (row * GW_M_NSTATUS + s) * sizeof(gw_m_counter));
            if (v == 0)
                continue; /* a series appears with its first request */
            row_total[row] += v;
            if (s < GW_M_NSTATUS - 1)
                jbuf_fmt(b, "tether_http_requests_total{%s,status=\"%d\"} %" PRIu64 "\n", labels,
                         gw_m_statuses[s], v);
            else
                jbuf_fmt(b, "tether_http_requests_total{%s,status=\"other\"} %" PRIu64 "\n", labels,
                         v);
        }
    }
    jbuf_puts(b, "# HELP tether_http_request_duration_seconds Time from a request's arrival to "
                 "its answer (for SSE, to the response's start).\n"
                 "# TYPE tether_http_request_duration_seconds histogram\n");
    for (size_t row = 0; row < GW_M_ROWS; row++) {
        if (row_total[row] == 0) /* every answer is counted and timed together */
            continue;
        gw_m_row_labels(labels, sizeof(labels), row);
        gw_m_hist_lines(b, "tether_http_request_duration_seconds", labels,
                        offsetof(struct gw_m_slot, request_duration) +
                            row * sizeof(struct gw_m_hist));
    }

    int64_t open = 0, s2s_open = 0;
    unsigned live = 0;
    uint64_t starts = GW_M_SUM(starts);
    for (size_t s = 0; s < GW_M_SLOTS; s++) {
        int64_t pid = atomic_load_explicit(&gw_m->slots[s].pid, memory_order_relaxed);
        /* a slot whose process died without closing keeps its last gauge: not counted */
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
            live++;
            open += atomic_load_explicit(&gw_m->slots[s].sse_open, memory_order_relaxed);
            s2s_open += atomic_load_explicit(&gw_m->slots[s].s2s_open, memory_order_relaxed);
        }
    }
    gw_m_scalar(b, "tether_gateway_processes", "gauge",
                "Gateway processes of this node counting into the shared figures.", live);
    gw_m_scalar(b, "tether_gateway_starts_total", "counter",
                "Gateway process starts (restarts included).", starts);
    gw_m_scalar(b, "tether_sse_connections", "gauge", "Server-sent event streams open now.",
                open < 0 ? 0 : (uint64_t)open);
    gw_m_scalar(b, "tether_sse_connections_total", "counter", "Server-sent event streams started.",
                GW_M_SUM(sse_total));
    gw_m_scalar(b, "tether_sse_records_total", "counter",
                "Records sent on server-sent event streams that ended.", GW_M_SUM(sse_records));
    gw_m_scalar(b, "tether_sse_bytes_total", "counter",
                "Bytes sent on server-sent event streams that ended.", GW_M_SUM(sse_bytes));
    gw_m_scalar(b, "tether_feed_reads_total", "counter",
                "Record stream reads made for subscribers.", GW_M_SUM(feed_reads));
    gw_m_scalar(b, "tether_s2s_sessions", "gauge",
                "S2 append sessions (the SDK's streaming .out writer) open now.",
                s2s_open < 0 ? 0 : (uint64_t)s2s_open);
    gw_m_scalar(b, "tether_s2s_sessions_total", "counter", "S2 append sessions started.",
                GW_M_SUM(s2s_total));
    gw_m_scalar(b, "tether_s2s_batches_total", "counter",
                "Batches appended and acknowledged on S2 append sessions that ended.",
                GW_M_SUM(s2s_batches));
    gw_m_scalar(b, "tether_s2s_records_total", "counter",
                "Records appended on S2 append sessions that ended.", GW_M_SUM(s2s_records));

    jbuf_puts(b, "# HELP tether_gateway_bus_requests_total Bus requests made for HTTP calls, by "
                 "actor and outcome.\n# TYPE tether_gateway_bus_requests_total counter\n");
    for (unsigned a = 0; a < GW_NPEERS; a++)
        for (unsigned o = 0; o < GW_M_NBUS; o++)
            jbuf_fmt(b,
                     "tether_gateway_bus_requests_total{actor=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                     gw_actor_names[a], gw_m_bus_names[o],
                     gw_m_sum(offsetof(struct gw_m_slot, bus) +
                              (a * GW_M_NBUS + o) * sizeof(gw_m_counter)));
    jbuf_puts(b, "# HELP tether_gateway_bus_request_duration_seconds Time from a bus request to "
                 "its answer or failure.\n"
                 "# TYPE tether_gateway_bus_request_duration_seconds histogram\n");
    for (unsigned a = 0; a < GW_NPEERS; a++) {
        snprintf(labels, sizeof(labels), "actor=\"%s\"", gw_actor_names[a]);
        gw_m_hist_lines(b, "tether_gateway_bus_request_duration_seconds", labels,
                        offsetof(struct gw_m_slot, bus_duration) + a * sizeof(struct gw_m_hist));
    }
}

int gw_on_metrics(struct gw *gw, h2o_req_t *req)
{
    uint64_t started = clock_mono_ms();
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        static const char body[] = "{\"error\":\"Method not allowed\"}";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        gw_send_plain(req, 405, body, sizeof(body) - 1, "/metrics", started, 0);
        return 0;
    }
    struct jbuf b = {0};
    if (gw_m)
        gw_m_render(&b);
    pm_render_dir(gw->cfg.run_dir, &b); /* the actors' and the supervisor's (pmetrics.h) */
    if (b.err != OK) {
        static const char body[] = "{\"error\":\"Internal Server Error\"}";
        jbuf_free(&b);
        gw_send_plain(req, 500, body, sizeof(body) - 1, "/metrics", started, 0);
        return 0;
    }
    gw_send_typed(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "", b.n,
                  "/metrics", started, 0);
    jbuf_free(&b);
    return 0;
}
