/*
 * pmetrics_test.c - a process's figures file: series made once and found again, counters,
 * gauges and histograms rendered as Prometheus text, labels that cannot break the format, a
 * full file, a restart that keeps counters and zeroes gauges, and files the reader skips.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jbuf.h"
#include "pmetrics.h"
#include "t.h"

static char dir[128];

static char *render(void)
{
    struct jbuf b = {0};
    pm_render_dir(dir, &b);
    jbuf_put(&b, "", 1);
    return b.p;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

T_TEST(closed_is_a_no_op)
{
    T_ASSERT(pm_series(PM_BUS_REQUESTS, "type=\"x\"") == NULL);
    pm_add(NULL, 1);
    pm_set(NULL, 1);
    pm_observe_us(NULL, 1);
    T_ERR(pm_open(dir, "bad/name"), ERR_INVAL);
    T_ERR(pm_open(dir, ""), ERR_INVAL);
}

T_TEST(counters_gauges_histograms)
{
    T_OK(pm_open(dir, "unit-a"));
    struct pm_series *c = pm_series(PM_BUS_REQUESTS, "type=\"session.get\",outcome=\"ok\"");
    T_ASSERT(c != NULL);
    T_ASSERT(pm_seriesf(PM_BUS_REQUESTS, "type=\"%s\",outcome=\"ok\"", "session.get") == c);
    pm_add(c, 2);
    pm_add(c, 3);
    pm_set(pm_series(PM_SV_LEADER, ""), 1);
    pm_set(pm_series(PM_REPL_LAG, ""), 1500); /* ms, shown in seconds */
    struct pm_series *h = pm_series(PM_STORE_DURATION, "store=\"redis\"");
    pm_observe_us(h, 80);       /* le 0.0001 */
    pm_observe_us(h, 3000);     /* le 0.005 */
    pm_observe_us(h, 60000000); /* +Inf only */
    char *t = render();
    T_ASSERT(has_line(t, "# TYPE tether_actor_bus_requests_total counter"));
    T_ASSERT(has_line(t, "tether_actor_bus_requests_total{process=\"unit-a\",type=\"session.get\","
                         "outcome=\"ok\"} 5"));
    T_ASSERT(has_line(t, "tether_supervisor_leader{process=\"unit-a\"} 1"));
    T_ASSERT(has_line(t, "tether_replicator_lag_seconds{process=\"unit-a\"} 1.500"));
    T_ASSERT(has_line(t, "# TYPE tether_store_call_duration_seconds histogram"));
    T_ASSERT(
        has_line(t, "tether_store_call_duration_seconds_bucket{process=\"unit-a\",store=\"redis\","
                    "le=\"0.0001\"} 1"));
    T_ASSERT(
        has_line(t, "tether_store_call_duration_seconds_bucket{process=\"unit-a\",store=\"redis\","
                    "le=\"0.005\"} 2"));
    T_ASSERT(
        has_line(t, "tether_store_call_duration_seconds_bucket{process=\"unit-a\",store=\"redis\","
                    "le=\"30\"} 2"));
    T_ASSERT(
        has_line(t, "tether_store_call_duration_seconds_bucket{process=\"unit-a\",store=\"redis\","
                    "le=\"+Inf\"} 3"));
    T_ASSERT(has_line(
        t, "tether_store_call_duration_seconds_count{process=\"unit-a\",store=\"redis\"} 3"));
    T_ASSERT(has_line(
        t, "tether_store_call_duration_seconds_sum{process=\"unit-a\",store=\"redis\"} 60.003080"));
    /* a family without a series is not shown */
    T_ASSERT(strstr(t, "tether_waitpoints_pending") == NULL);
    free(t);
}

T_TEST(labels_cannot_break_out)
{
    pm_add(pm_series(PM_STORE_ERRORS, "store=\"a\\b\nc\""), 1);     /* a backslash, a newline */
    pm_add(pm_series(PM_STORE_ERRORS, "store=\"odd,error=\"x"), 1); /* text after a label */
    pm_add(pm_series(PM_STORE_ERRORS, "store=unquoted"), 1);        /* no label at all */
    char long_labels[300] = "store=\"ok\",error=\"";
    memset(long_labels + strlen(long_labels), 'x', 200); /* cut inside its value */
    pm_add(pm_series(PM_STORE_ERRORS, long_labels), 1);
    char *t = render();
    T_ASSERT(has_line(t, "tether_store_errors_total{process=\"unit-a\",store=\"a_b_c\"} 1"));
    T_ASSERT(has_line(t, "tether_store_errors_total{process=\"unit-a\",store=\"odd,error=\"} 1"));
    T_ASSERT(has_line(t, "tether_store_errors_total{process=\"unit-a\"} 1"));
    T_ASSERT(has_line(t, "tether_store_errors_total{process=\"unit-a\",store=\"ok\"} 1"));
    free(t);
}

T_TEST(full_file_counts_what_fits)
{
    unsigned made = 0;
    for (unsigned i = 0; i < 1100; i++)
        if (pm_seriesf(PM_BUS_RESENDS, "type=\"t%u\"", i))
            made++;
    T_ASSERT(made < 1100 && made > 1000);
    T_ASSERT(pm_seriesf(PM_BUS_RESENDS, "type=\"t%u\"", 1099) == NULL);
    /* one made before is still found */
    T_ASSERT(pm_series(PM_SV_LEADER, "") != NULL);
}

T_TEST(restart_keeps_counters_zeroes_gauges)
{
    pm_close();
    T_OK(pm_open(dir, "unit-a"));
    char *t = render();
    T_ASSERT(has_line(t, "tether_actor_bus_requests_total{process=\"unit-a\",type=\"session.get\","
                         "outcome=\"ok\"} 5"));
    T_ASSERT(has_line(t, "tether_supervisor_leader{process=\"unit-a\"} 0"));
    free(t);
    pm_add(pm_series(PM_BUS_REQUESTS, "type=\"session.get\",outcome=\"ok\""), 1);
    t = render();
    T_ASSERT(has_line(t, "tether_actor_bus_requests_total{process=\"unit-a\",type=\"session.get\","
                         "outcome=\"ok\"} 6"));
    free(t);
    pm_close();
}

T_TEST(reader_skips_what_is_not_ours)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/metrics/junk.metrics", dir);
    FILE *f = fopen(path, "w");
    T_ASSERT(f != NULL);
    fputs("not a metrics file", f);
    fclose(f);
    T_OK(pm_open(dir, "unit-b"));
    pm_add(pm_series(PM_BUS_DEADLINE_MISSED, "type=\"x\""), 7);
    char *t = render();
    T_ASSERT(
        has_line(t, "tether_actor_bus_deadline_missed_total{process=\"unit-b\",type=\"x\"} 7"));
    T_ASSERT(strstr(t, "junk") == NULL);
    /* one family's samples stay together across processes (the text format requires it) */
    const char *a = strstr(t, "tether_actor_bus_requests_total{process=\"unit-a\"");
    const char *b = strstr(t, "# TYPE tether_actor_bus_deadline_missed_total");
    T_ASSERT(a && b && a < b);
    free(t);
    pm_close();
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/tether-pmetrics-test.%d", (int)getpid());
    if (mkdir(dir, 0755) != 0)
        return 1;
    T_RUN(closed_is_a_no_op);
    T_RUN(counters_gauges_histograms);
    T_RUN(labels_cannot_break_out);
    T_RUN(full_file_counts_what_fits);
    T_RUN(restart_keeps_counters_zeroes_gauges);
    T_RUN(reader_skips_what_is_not_ours);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return T_DONE();
}
