/*
 * jlog.c - the line logger of jlog.h. A line is built in a stack buffer by
 * appenders that stop at its end, then written whole; a message too long for
 * the line is cut (on a character boundary), never split over two lines.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jlog.h"

static const char *jlog_proc = "echo-agent";
static bool jlog_json = true;

void jlog_init(const char *proc, bool json)
{
    jlog_proc = proc;
    jlog_json = json;
}

/* A line under construction; `cap` leaves room for the closing "\"}\n". */
struct jlog_line {
    char p[JLOG_LINE_MAX];
    size_t n, cap;
};

static void jlog_put(struct jlog_line *l, const char *s, size_t k)
{
    if (k > l->cap - l->n)
        k = l->cap - l->n;
    memcpy(l->p + l->n, s, k);
    l->n += k;
}

static void jlog_puts(struct jlog_line *l, const char *s)
{
    jlog_put(l, s, strlen(s));
}

/* s as JSON string content (or as is, in text form); an escape that does not fit whole is
 * dropped with the rest, and so is a UTF-8 sequence cut by the end of the line. */
static void jlog_esc(struct jlog_line *l, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        size_t k = 1;
        tmp[0] = (char)c;
        if (jlog_json && (c == '"' || c == '\\')) {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            k = 2;
        } else if (jlog_json && c == '\n') {
            memcpy(tmp, "\\n", 2);
            k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            k = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c);
        }
        if (k > l->cap - l->n) {
            while (l->n > 0 && ((unsigned char)l->p[l->n - 1] & 0xc0) == 0x80)
                l->n--;
            if (l->n > 0 && ((unsigned char)l->p[l->n - 1] & 0xc0) == 0xc0)
                l->n--;
            return;
        }
        jlog_put(l, tmp, k);
    }
}

void jlog(enum jlog_level lvl, const char *event, const char *run, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info"};
    char msg[JLOG_LINE_MAX], ts[40], num[64];
    struct jlog_line l = {.n = 0, .cap = JLOG_LINE_MAX - 3};
    struct timespec now = {0, 0};
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) /* a cut message is fine: the line cuts too */
        msg[0] = '\0';
    va_end(ap);

    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || !gmtime_r(&now.tv_sec, &tm) ||
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(ts, sizeof(ts), "1970-01-01T00:00:00");
    if (jlog_json) {
        snprintf(num, sizeof(num), "%s.%03ldZ", ts, (long)(now.tv_nsec / 1000000));
        jlog_puts(&l, "{\"ts\":\"");
        jlog_puts(&l, num);
        jlog_puts(&l, "\",\"lvl\":\"");
        jlog_puts(&l, names[lvl]);
        jlog_puts(&l, "\",\"proc\":\"");
        jlog_esc(&l, jlog_proc);
        snprintf(num, sizeof(num), "\",\"pid\":%ld,\"event\":\"", (long)getpid());
        jlog_puts(&l, num);
        jlog_esc(&l, event);
        if (run) {
            jlog_puts(&l, "\",\"run\":\"");
            jlog_esc(&l, run);
        }
        jlog_puts(&l, "\",\"msg\":\"");
        jlog_esc(&l, msg);
        memcpy(l.p + l.n, "\"}\n", 3);
        l.n += 3;
    } else {
        snprintf(num, sizeof(num), "%s.%03ldZ %-5s ", ts, (long)(now.tv_nsec / 1000000),
                 names[lvl]);
        jlog_puts(&l, num);
        jlog_esc(&l, jlog_proc);
        snprintf(num, sizeof(num), "[%ld] ", (long)getpid());
        jlog_puts(&l, num);
        jlog_esc(&l, event);
        jlog_puts(&l, ": ");
        jlog_esc(&l, msg);
        if (run) {
            jlog_puts(&l, " run=");
            jlog_esc(&l, run);
        }
        l.p[l.n++] = '\n';
    }
    /* A failed log write has nowhere to be reported: it is dropped. */
    (void)!write(STDERR_FILENO, l.p, l.n);
}
