/*
 * jlog.h - one line per event on stderr, JSON by default:
 *   {"ts":"2026-01-02T03:04:05.678Z","lvl":"info","proc":"echo-agent","pid":42,
 *    "event":"run.started","run":"run_…","msg":"…"}
 * or, for people at a terminal, the tree's text form:
 *   2026-01-02T03:04:05.678Z info  echo-agent[42] run.started: … run=run_…
 * Each line is a single write(2) of at most JLOG_LINE_MAX bytes (PIPE_BUF), so
 * lines of concurrent threads never interleave. Safe from any thread; not
 * from a signal handler.
 */
#ifndef ECHO_AGENT_JLOG_H
#define ECHO_AGENT_JLOG_H

#include <stdbool.h>

#define JLOG_LINE_MAX 4096

enum jlog_level { JLOG_ERROR, JLOG_WARN, JLOG_INFO };

/* Sets the "proc" field (a static string) and the format; call before any thread logs. */
void jlog_init(const char *proc, bool json);

/*
 * Logs one event: `event` is a short stable id ("run.started"), `run` the run
 * id or NULL; the message is printf-formatted and cut to fit the line.
 */
void jlog(enum jlog_level lvl, const char *event, const char *run, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_ERROR(ev, run, ...) jlog(JLOG_ERROR, ev, run, __VA_ARGS__)
#define LOG_WARN(ev, run, ...) jlog(JLOG_WARN, ev, run, __VA_ARGS__)
#define LOG_INFO(ev, run, ...) jlog(JLOG_INFO, ev, run, __VA_ARGS__)

#endif
