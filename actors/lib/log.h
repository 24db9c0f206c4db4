/*
 * log.h - one structured line per event on stderr.
 *
 *   LOG_WARN("db.query_failed", "could not insert run: %s", detail);
 * prints
 *   {"ts":"…Z","lvl":"warn","proc":"run-manager","pid":42,"event":"db.query_failed",
 *    "req":"…","trace":"…","msg":"could not insert run: …"}
 * Each line is written with one write(2) of at most LOG_LINE_MAX bytes, so
 * lines from different processes sharing a pipe never interleave. A level
 * below the threshold returns before formatting. TETHER_LOG_FORMAT=text
 * gives a human form. The request context (req, trace) is per thread: the
 * dispatcher sets it around each message. Never call from a signal handler.
 */
#ifndef TETHER_LIB_LOG_H
#define TETHER_LIB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_LINE_MAX 4096

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2,
    LOG_LVL_DEBUG = 3,
};

/* proc is copied. Safe to call again (tests, re-configuration). */
void log_init(const char *proc, enum log_level level, bool json);

/* Parses "error|warn|info|debug"; returns false on anything else. */
bool log_level_parse(const char *s, enum log_level *out);

bool log_enabled(enum log_level level);

/* Sets this thread's request context; NULL or "" clears a field. */
void log_context_set(uint64_t req_id, const char *trace_id);
void log_context_clear(void);

/*
 * Emits a line. fields, when not NULL, is a pre-rendered JSON fragment
 * ("\"status\":200,\"bytes\":12") placed before "msg"; it must be valid
 * JSON members, already escaped.
 */
void log_emit(enum log_level level, const char *event, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_AT(lvl, event, ...)                                                                    \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            log_emit(lvl, event, NULL, __VA_ARGS__);                                               \
    } while (0)

#define LOG_ERROR(event, ...) LOG_AT(LOG_LVL_ERROR, event, __VA_ARGS__)
#define LOG_WARN(event, ...) LOG_AT(LOG_LVL_WARN, event, __VA_ARGS__)
#define LOG_INFO(event, ...) LOG_AT(LOG_LVL_INFO, event, __VA_ARGS__)
#define LOG_DEBUG(event, ...) LOG_AT(LOG_LVL_DEBUG, event, __VA_ARGS__)

/*
 * JSON-escapes s (n bytes) into out (cap bytes, NUL-terminated), truncating
 * on a character boundary. Returns the length written. Used to build fields.
 */
size_t log_json_escape(const char *s, size_t n, char *out, size_t cap);

#endif
