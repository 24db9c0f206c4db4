/*
 * pmetrics.c - a process's figures in a file of its own, and their rendering for /metrics
 * (pmetrics.h has the contract).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fnv.h"
#include "jbuf.h"
#include "log.h"
#include "pmetrics.h"

#define PM_MAGIC UINT64_C(0x31307274656d7074) /* "tpmetr01" */
#define PM_SLOTS 1024
#define PM_LABELS_MAX 120
#define PM_NAME_MAX 64
#define PM_FILES_MAX 128 /* files one scrape reads; a node runs a few dozen processes */

const struct pm_family pm_families[PM_NFAMILIES] = {
    [PM_BUS_REQUESTS] = {"tether_actor_bus_requests_total", PM_COUNTER,
                         "Bus requests this process answered, by message type and outcome.", 1},
    [PM_BUS_DURATION] = {"tether_actor_bus_request_duration_seconds", PM_HISTOGRAM,
                         "Time from a bus request's receipt to its reply, by message type.", 1},
    [PM_BUS_DEADLINE_MISSED] = {"tether_actor_bus_deadline_missed_total", PM_COUNTER,
                                "Bus requests dropped unanswered because their caller's deadline "
                                "had passed, by message type.",
                                1},
    [PM_BUS_RESENDS] = {"tether_actor_bus_resends_total", PM_COUNTER,
                        "Bus requests received again after a re-send (attempt > 1), by type.", 1},
    [PM_STORE_DURATION] = {"tether_store_call_duration_seconds", PM_HISTOGRAM,
                           "Time from a store call's start to its result, by store.", 1},
    [PM_STORE_ERRORS] = {"tether_store_errors_total", PM_COUNTER,
                         "Store calls that failed, by store and error.", 1},
    [PM_SV_RESTARTS] = {"tether_supervisor_restarts_total", PM_COUNTER,
                        "Deaths of a child followed by its restart.", 1},
    [PM_SV_CHILD_UP] = {"tether_supervisor_child_up", PM_GAUGE, "1 while the child is up.", 1},
    [PM_SV_LEADER] = {"tether_supervisor_leader", PM_GAUGE,
                      "1 while this node's supervisor holds the leader lock.", 1},
    [PM_SV_FENCING_TOKEN] = {"tether_supervisor_fencing_token", PM_GAUGE,
                             "The fencing token of the leader lock held, 0 without it.", 1},
    [PM_CLUSTER_NODES] = {"tether_cluster_nodes", PM_GAUGE,
                           "Nodes alive in the cluster registry, as this node last read it.", 1},
    [PM_REPL_LAG] = {"tether_replicator_lag_seconds", PM_GAUGE,
                     "Age of the oldest change not yet in ClickHouse (0 when caught up).", 1000},
    [PM_REPL_LAG_BYTES] = {"tether_replicator_lag_bytes", PM_GAUGE,
                           "WAL bytes between the server's end and what ClickHouse has.", 1},
    [PM_WAITPOINTS_PENDING] = {"tether_waitpoints_pending", PM_GAUGE,
                               "Waitpoints waiting for their completion, as last counted.", 1},
    [PM_TAP_RECORDS] = {"tether_bus_tap_records_total", PM_COUNTER,
                        "Messages this process mirrored on its tap for a listener.", 1},
    [PM_TAP_FILTERED] = {"tether_bus_tap_filtered_total", PM_COUNTER,
                         "Messages kept off the tap before any copy: no listener's filter wanted "
                         "them.",
                         1},
    [PM_TAP_DROPPED] = {"tether_bus_tap_dropped_total", PM_COUNTER,
                        "Messages not mirrored: the tap's flusher was too far behind.", 1},
    [PM_BUS_REDIALS] = {"tether_bus_redials_total", PM_COUNTER,
                        "Bus dials closed and dialed anew after a while without a connection.", 1},
};

/* Upper bounds in microseconds of the duration buckets (le, seconds: 0.0001 ... 30). */
static const uint64_t pm_bounds_us[] = {100,     250,     500,     1000,     2500,    5000,
                                        10000,   25000,   50000,   100000,   250000,  500000,
                                        1000000, 2500000, 5000000, 10000000, 30000000};
#define PM_NBOUNDS (sizeof(pm_bounds_us) / sizeof(pm_bounds_us[0]))

struct pm_series {
    _Atomic uint32_t family; /* family id + 1 once the slot is whole (release); 0: free */
    uint32_t reserved;
    char labels[PM_LABELS_MAX];
    /* counter and gauge: v[0]; histogram: v[0..PM_NBOUNDS] buckets (not cumulative, the last
     * is +Inf), v[PM_NBOUNDS + 1] the sum in microseconds */
    _Atomic uint64_t v[PM_NBOUNDS + 2];
};

struct pm_file {
    uint64_t magic;
    uint64_t layout; /* pm_layout(): a file of another build is made anew, or skipped */
    _Atomic int64_t pid;
    _Atomic uint32_t used; /* slots handed out, in order */
    uint32_t nslots;
    char name[PM_NAME_MAX];
    uint64_t reserved[4];
    struct pm_series slots[PM_SLOTS];
};

#define PM_INDEX (PM_SLOTS * 2)
static struct {
    pthread_mutex_t mu;
    struct pm_file *f;
    uint16_t index[PM_INDEX]; /* open addressing over (family, labels): slot + 1, 0 empty */
} pm = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t pm_layout(void)
{
    uint64_t h = FNV1A_SEED;
    for (unsigned i = 0; i < PM_NFAMILIES; i++) {
        h = fnv1a_add(h, pm_families[i].name, strlen(pm_families[i].name) + 1);
        h = fnv1a_add(h, &pm_families[i].kind, sizeof(pm_families[i].kind));
        h = fnv1a_add(h, &pm_families[i].scale, sizeof(pm_families[i].scale));
    }
    h = fnv1a_add(h, pm_bounds_us, sizeof(pm_bounds_us));
    size_t sizes[] = {sizeof(struct pm_series), sizeof(struct pm_file), PM_SLOTS};
    return fnv1a_add(h, sizes, sizeof(sizes));
}

static bool pm_name_ok(const char *s)
{
    size_t n = strnlen(s, PM_NAME_MAX);
    if (n == 0 || n >= PM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static unsigned pm_hash(enum pm_family_id f, const char *labels)
{
    uint64_t h = fnv1a_add(UINT64_C(0xcbf29ce484222325), &f, sizeof(f));
    return (unsigned)(fnv1a_add(h, labels, strlen(labels)) % PM_INDEX);
}

/* Enters slot i into the index (pm.mu held). */
static void pm_index_put(unsigned i)
{
    struct pm_series *s = &pm.f->slots[i];
    unsigned h = pm_hash((enum pm_family_id)(atomic_load(&s->family) - 1), s->labels);
    while (pm.index[h])
        h = (h + 1) % PM_INDEX;
    pm.index[h] = (uint16_t)(i + 1);
}

err_t pm_open(const char *run_dir, const char *name)
{
    char path[4096];
    if (!pm_name_ok(name) || !run_dir || !run_dir[0])
        return ERR_INVAL;
    snprintf(path, sizeof(path), "%s/metrics", run_dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        LOG_WARN("metrics.unavailable", "cannot make %s (%s): figures are not kept", path,
                 strerror(errno));
        return ERR_UNAVAIL;
    }
    snprintf(path, sizeof(path), "%s/metrics/%s.metrics", run_dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        LOG_WARN("metrics.unavailable", "cannot open %s (%s): figures are not kept", path,
                 strerror(errno));
        return ERR_UNAVAIL;
    }
    /* readers hold a shared lock while mapped: the file is never re-made under them */
    while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
        ;
    struct stat st;
    uint64_t layout = pm_layout();
    bool fresh = fstat(fd, &st) != 0 || (size_t)st.st_size != sizeof(struct pm_file);
    if (fresh && (ftruncate(fd, 0) != 0 || ftruncate(fd, sizeof(struct pm_file)) != 0)) {
        LOG_WARN("metrics.unavailable", "cannot size %s (%s): figures are not kept", path,
                 strerror(errno));
        close(fd);
        return ERR_UNAVAIL;
    }
    struct pm_file *f = mmap(NULL, sizeof(*f), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (f == MAP_FAILED) {
        LOG_WARN("metrics.unavailable", "cannot map %s (%s): figures are not kept", path,
                 strerror(errno));
        close(fd);
        return ERR_UNAVAIL;
    }
    if (!fresh && (f->magic != PM_MAGIC || f->layout != layout || f->nslots != PM_SLOTS ||
                   atomic_load(&f->used) > PM_SLOTS))
        fresh = true;
    pthread_mutex_lock(&pm.mu);
    memset(pm.index, 0, sizeof(pm.index));
    if (fresh) {
        memset(f, 0, sizeof(*f));
        f->layout = layout;
        f->nslots = PM_SLOTS;
        snprintf(f->name, sizeof(f->name), "%s", name);
        f->magic = PM_MAGIC;
    }
    pm.f = f;
    uint32_t used = atomic_load(&f->used);
    for (uint32_t i = 0; i < used; i++) {
        struct pm_series *s = &f->slots[i];
        uint32_t fam = atomic_load(&s->family);
        if (fam == 0 || fam > PM_NFAMILIES)
            continue; /* a slot its maker died filling: left unused */
        s->labels[PM_LABELS_MAX - 1] = '\0';
        if (pm_families[fam - 1].kind == PM_GAUGE)
            atomic_store(&s->v[0], 0);
        pm_index_put(i);
    }
    atomic_store(&f->pid, (int64_t)getpid());
    pthread_mutex_unlock(&pm.mu);
    (void)flock(fd, LOCK_UN);
    close(fd); /* the mapping stays */
    return OK;
}

void pm_close(void)
{
    pthread_mutex_lock(&pm.mu);
    if (pm.f)
        munmap(pm.f, sizeof(*pm.f));
    pm.f = NULL;
    pthread_mutex_unlock(&pm.mu);
}

/*
 * The length of the longest prefix of s made of whole labels, key="value" separated by
 * commas (keys [A-Za-z_][A-Za-z0-9_]*, values without a quote): what is kept of a label list
 * that was cut or malformed.
 */
static size_t pm_labels_whole(const char *s)
{
    size_t i = 0, whole = 0;
    for (;;) {
        size_t k = i;
        while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' ||
               (i > k && s[i] >= '0' && s[i] <= '9'))
            i++;
        if (i == k || s[i] != '=' || s[i + 1] != '"')
            return whole;
        i += 2;
        while (s[i] && s[i] != '"')
            i++;
        if (s[i] != '"')
            return whole;
        whole = ++i;
        if (s[i] != ',')
            return whole;
        i++;
    }
}

struct pm_series *pm_series(enum pm_family_id f, const char *labels)
{
    char clean[PM_LABELS_MAX];
    struct pm_series *found = NULL;
    if ((unsigned)f >= PM_NFAMILIES || !labels)
        return NULL;
    /* a label value never breaks out of its quotes or its line */
    size_t n = 0;
    for (; labels[n] && n < PM_LABELS_MAX - 1; n++) {
        char ch = labels[n];
        clean[n] = ch == '\\' || ch == '\n' || ch == '\r' ? '_' : ch;
    }
    clean[n] = '\0';
    clean[pm_labels_whole(clean)] =
        '\0'; /* a label cut or malformed is dropped, and all after it */

    pthread_mutex_lock(&pm.mu);
    if (!pm.f)
        goto out;
    unsigned h = pm_hash(f, clean);
    for (unsigned probes = 0; pm.index[h] && probes < PM_INDEX; probes++) {
        struct pm_series *s = &pm.f->slots[pm.index[h] - 1];
        if (atomic_load(&s->family) == (uint32_t)f + 1 && strcmp(s->labels, clean) == 0) {
            found = s;
            goto out;
        }
        h = (h + 1) % PM_INDEX;
    }
    uint32_t i = atomic_load(&pm.f->used);
    if (i >= PM_SLOTS)
        goto out; /* full: this series is not counted */
    found = &pm.f->slots[i];
    memset(found->v, 0, sizeof(found->v));
    memcpy(found->labels, clean, strlen(clean) + 1);
    atomic_store_explicit(&found->family, (uint32_t)f + 1, memory_order_release);
    atomic_store_explicit(&pm.f->used, i + 1, memory_order_release);
    pm_index_put(i);
out:
    pthread_mutex_unlock(&pm.mu);
    return found;
}

struct pm_series *pm_seriesf(enum pm_family_id f, const char *fmt, ...)
{
    char labels[PM_LABELS_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(labels, sizeof(labels), fmt, ap);
    va_end(ap);
    return pm_series(f, labels);
}

void pm_add(struct pm_series *s, uint64_t n)
{
    if (s)
        atomic_fetch_add_explicit(&s->v[0], n, memory_order_relaxed);
}

void pm_set(struct pm_series *s, int64_t v)
{
    if (s)
        atomic_store_explicit(&s->v[0], (uint64_t)v, memory_order_relaxed);
}

void pm_observe_us(struct pm_series *s, uint64_t us)
{
    if (!s)
        return;
    size_t b = 0;
    while (b < PM_NBOUNDS && us > pm_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&s->v[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->v[PM_NBOUNDS + 1], us, memory_order_relaxed);
}

void pm_store_call(const char *store, uint64_t started_us, err_t rc)
{
    uint64_t now = clock_mono_us();
    if (!pm.f) /* unlocked peek: a process without figures formats nothing */
        return;
    pm_observe_us(pm_seriesf(PM_STORE_DURATION, "store=\"%s\"", store),
                  now > started_us ? now - started_us : 0);
    if (rc != OK)
        pm_add(pm_seriesf(PM_STORE_ERRORS, "store=\"%s\",error=\"%s\"", store, err_name(rc)), 1);
}

/* ---- the reading side ---- */

struct pm_view {
    int fd;
    const struct pm_file *f;
    char name[PM_NAME_MAX];
};

static bool pm_view_open(const char *path, uint64_t layout, struct pm_view *v)
{
    struct stat st;
    v->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (v->fd < 0)
        return false;
    /* shared: an owner re-making its file waits for the scrape; one being made is skipped */
    if (flock(v->fd, LOCK_SH | LOCK_NB) != 0 || fstat(v->fd, &st) != 0 ||
        (size_t)st.st_size != sizeof(struct pm_file)) {
        close(v->fd);
        return false;
    }
    void *p = mmap(NULL, sizeof(struct pm_file), PROT_READ, MAP_SHARED, v->fd, 0);
    if (p == MAP_FAILED) {
        close(v->fd);
        return false;
    }
    v->f = p;
    memcpy(v->name, v->f->name, sizeof(v->name));
    v->name[PM_NAME_MAX - 1] = '\0';
    if (v->f->magic != PM_MAGIC || v->f->layout != layout || v->f->nslots != PM_SLOTS ||
        !pm_name_ok(v->name)) {
        munmap(p, sizeof(struct pm_file));
        close(v->fd);
        return false;
    }
    return true;
}

static void pm_view_close(struct pm_view *v)
{
    munmap((void *)v->f, sizeof(struct pm_file));
    close(v->fd); /* releases the lock */
}

/* The labels of one sample: process="name"[,labels][,extra]. */
static void pm_labels(char *out, size_t cap, const char *name, const char *labels,
                      const char *extra)
{
    snprintf(out, cap, "process=\"%s\"%s%s%s%s", name, labels[0] ? "," : "", labels,
             extra ? "," : "", extra ? extra : "");
}

static void pm_render_series(struct jbuf *out, const struct pm_family *fam, const char *name,
                             const struct pm_series *s, const char *labels)
{
    char l[PM_LABELS_MAX + PM_NAME_MAX + 64];
    if (fam->kind != PM_HISTOGRAM) {
        uint64_t v = atomic_load_explicit(&s->v[0], memory_order_relaxed);
        pm_labels(l, sizeof(l), name, labels, NULL);
        if (fam->kind == PM_GAUGE && fam->scale > 1)
            jbuf_fmt(out, "%s{%s} %.3f\n", fam->name, l, (double)(int64_t)v / fam->scale);
        else if (fam->kind == PM_GAUGE)
            jbuf_fmt(out, "%s{%s} %" PRId64 "\n", fam->name, l, (int64_t)v);
        else
            jbuf_fmt(out, "%s{%s} %" PRIu64 "\n", fam->name, l, v);
        return;
    }
    uint64_t cum = 0;
    for (size_t b = 0; b <= PM_NBOUNDS; b++) {
        char le[32];
        cum += atomic_load_explicit(&s->v[b], memory_order_relaxed);
        if (b < PM_NBOUNDS)
            snprintf(le, sizeof(le), "le=\"%g\"", (double)pm_bounds_us[b] / 1e6);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        pm_labels(l, sizeof(l), name, labels, le);
        jbuf_fmt(out, "%s_bucket{%s} %" PRIu64 "\n", fam->name, l, cum);
    }
    pm_labels(l, sizeof(l), name, labels, NULL);
    jbuf_fmt(out, "%s_sum{%s} %.6f\n", fam->name, l,
             (double)atomic_load_explicit(&s->v[PM_NBOUNDS + 1], memory_order_relaxed) / 1e6);
    jbuf_fmt(out, "%s_count{%s} %" PRIu64 "\n", fam->name, l, cum);
}

void pm_render_dir(const char *run_dir, struct jbuf *out)
{
    char pattern[4096];
    glob_t g;
    struct pm_view views[PM_FILES_MAX];
    size_t nviews = 0;
    uint64_t layout = pm_layout();

    if (!run_dir || !run_dir[0])
        return;
    snprintf(pattern, sizeof(pattern), "%s/metrics/*.metrics", run_dir);
    if (glob(pattern, 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc && nviews < PM_FILES_MAX; i++)
        if (pm_view_open(g.gl_pathv[i], layout, &views[nviews]))
            nviews++;
    globfree(&g);

    for (unsigned f = 0; f < PM_NFAMILIES; f++) {
        const struct pm_family *fam = &pm_families[f];
        bool head = false;
        for (size_t k = 0; k < nviews; k++) {
            const struct pm_file *pf = views[k].f;
            uint32_t used =
                atomic_load_explicit(&((struct pm_file *)pf)->used, memory_order_acquire);
            for (uint32_t i = 0; i < used && i < PM_SLOTS; i++) {
                const struct pm_series *s = &pf->slots[i];
                if (atomic_load_explicit(&((struct pm_series *)s)->family, memory_order_acquire) !=
                    f + 1)
                    continue;
                char labels[PM_LABELS_MAX];
                memcpy(labels, s->labels, sizeof(labels));
                labels[PM_LABELS_MAX - 1] = '\0';
                if (!head) {
                    jbuf_fmt(out, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name,
                             fam->kind == PM_COUNTER ? "counter"
                             : fam->kind == PM_GAUGE ? "gauge"
                                                     : "histogram");
                    head = true;
                }
                pm_render_series(out, fam, views[k].name, s, labels);
            }
        }
    }
    for (size_t k = 0; k < nviews; k++)
        pm_view_close(&views[k]);
}
