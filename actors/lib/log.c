/*
 * log.c - JSON-line logger (see log.h).
 */
#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static char log_proc[48] = "tether";
static enum log_level log_threshold = LOG_LVL_INFO;
static bool log_json = true;

static _Thread_local uint64_t log_req_id;
static _Thread_local char log_trace[33];

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *proc, enum log_level level, bool json)
{
    snprintf(log_proc, sizeof(log_proc), "%s", proc);
    log_threshold = level;
    log_json = json;
}

bool log_level_parse(const char *s, enum log_level *out)
{
    for (unsigned i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

bool log_enabled(enum log_level level)
{
    return level <= log_threshold;
}

void log_context_set(uint64_t req_id, const char *trace_id)
{
    log_req_id = req_id;
    snprintf(log_trace, sizeof(log_trace), "%s", trace_id ? trace_id : "");
}

void log_context_clear(void)
{
    log_req_id = 0;
    log_trace[0] = '\0';
}

size_t log_json_escape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        size_t tl;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tl = 2;
        } else if (c == '\n') {
            memcpy(tmp, "\\n", 2);
            tl = 2;
        } else if (c < 0x20 || c == 0x7f) {
            tl = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c);
        } else {
            tmp[0] = (char)c;
            tl = 1;
        }
        if (o + tl >= cap)
            break;
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    /* never leave half a UTF-8 sequence at the cut */
    if (o + 1 >= cap) {
        while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
            o--;
        if (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
            o--;
    }
    out[o] = '\0';
    return o;
}

void log_emit(enum log_level level, const char *event, const char *fields, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX / 2];
    char esc[LOG_LINE_MAX / 2];
    char line[LOG_LINE_MAX];
    char ts[32];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';

    clock_iso8601(clock_wall_ms(), ts, sizeof(ts));
    if (log_json) {
        char ctx[96] = "";
        log_json_escape(msg, strlen(msg), esc, sizeof(esc));
        if (log_req_id || log_trace[0])
            snprintf(ctx, sizeof(ctx), ",\"req\":\"%" PRIx64 "\",\"trace\":\"%s\"", log_req_id,
                     log_trace);
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"lvl\":\"%s\",\"proc\":\"%s\",\"pid\":%ld,\"event\":\"%s\"%s%s%s,"
                     "\"msg\":\"%s\"}\n",
                     ts, log_level_names[level], log_proc, (long)getpid(), event, ctx,
                     fields ? "," : "", fields ? fields : "", esc);
    } else {
        n = snprintf(line, sizeof(line), "%s %-5s %s[%ld] %s: %s%s%s\n", ts,
                     log_level_names[level], log_proc, (long)getpid(), event, msg,
                     fields ? " " : "", fields ? fields : "");
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        /* Truncated: keep the line a line (and valid JSON as far as possible). */
        n = sizeof(line) - 1;
        if (log_json) {
            memcpy(line + n - 4, "\"}\n", 3);
            n -= 1;
        } else {
            line[n - 1] = '\n';
        }
    }
    (void)!write(2, line, (size_t)n);
}
