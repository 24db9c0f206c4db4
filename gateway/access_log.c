/*
 * access_log.c - the gateway's access log: one line per answer (the route's
 * template as its path, never the URL's ids and tokens), and the request's
 * figures (metrics.h). http.c logs every answer it sends through
 * gw_access_log; a streamed response logs when it ends (gw_stream_log_end).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

/* The access log line and the request's figures (metrics.h): route is the call's, or NULL for
 * an answer outside a call, which tmpl then names; extra, when not empty, is more fields. */
static void gw_access_line(const char *method_s, size_t method_n, const char *tmpl,
                           const struct gw_route *route, int status, uint64_t bytes,
                           uint64_t started, uint64_t started_us, const char *env_id,
                           const char *request_id, const char *extra)
{
    char fields[1024], method[16], path[256];
    if (route)
        gw_metrics_request(route, 0, status, started_us);
    else
        gw_metrics_request(NULL, gw_metrics_other(tmpl), status, started_us);
    if (!log_enabled(LOG_LVL_INFO))
        return;
    log_json_escape(method_s, method_n, method, sizeof(method));
    log_json_escape(tmpl, strlen(tmpl), path, sizeof(path));
    snprintf(fields, sizeof(fields),
             "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"bytes\":%" PRIu64
             ",\"duration_ms\":%" PRIu64 ",\"env\":\"%s\",\"request_id\":\"%s\"%s",
             method, path, status, bytes, clock_mono_ms() - started, env_id ? env_id : "",
             request_id, extra);
    /* the path is the route's template: ids and tokens in URLs never reach the log */
    log_emit(LOG_LVL_INFO, "http.access", fields, "%.*s %s %d", (int)method_n, method_s, tmpl,
             status);
}

void gw_access_log(h2o_req_t *req, const char *tmpl, const struct gw_route *route, int status,
                   size_t bytes, uint64_t started, uint64_t started_us, const char *env_id,
                   const char *request_id)
{
    gw_access_line(req->method.base, req->method.len, tmpl, route, status, bytes, started,
                   started_us, env_id, request_id, "");
}

void gw_stream_log_end(const struct gw_stream_log *log, uint64_t bytes, uint64_t records, bool cut)
{
    char extra[96];
    snprintf(extra, sizeof(extra), ",\"stream\":true,\"records\":%" PRIu64 "%s", records,
             cut ? ",\"cut\":true" : "");
    gw_access_line(log->method, strlen(log->method), log->route->pattern, log->route, log->status,
                   bytes, log->started_mono, log->started_us, log->env_id, log->request_id, extra);
}
