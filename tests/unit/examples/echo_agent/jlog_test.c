/*
 * jlog_test.c - the echo agent's log lines: one JSON object per line, cut to
 * JLOG_LINE_MAX without breaking the JSON or a UTF-8 character, escapes in
 * both forms, and the text form the tree's log checker recognises.
 */
#include "../../../../examples/echo-agent/jlog.c"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "t.h"

/* Runs one jlog call with stderr redirected to a pipe; returns what it wrote (static). */
static const char *capture(bool json, const char *event, const char *run, const char *msg)
{
    static char out[2 * JLOG_LINE_MAX];
    int p[2], saved = dup(STDERR_FILENO);
    ssize_t n;
    if (saved < 0 || pipe(p) != 0 || dup2(p[1], STDERR_FILENO) < 0)
        abort();
    jlog_init("echo-agent", json);
    jlog(JLOG_WARN, event, run, "%s", msg);
    (void)dup2(saved, STDERR_FILENO);
    (void)close(saved);
    (void)close(p[1]);
    n = read(p[0], out, sizeof(out) - 1); /* one write(2) of at most PIPE_BUF: one read */
    (void)close(p[0]);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

/* The line parsed as JSON (its final newline checked and dropped); NULL when it is not. */
static json_t *parse(const char *line)
{
    size_t n = strlen(line);
    if (n == 0 || line[n - 1] != '\n' || memchr(line, '\n', n - 1))
        return NULL;
    return json_loadb(line, n - 1, 0, NULL);
}

T_TEST(json_fields)
{
    json_t *j = parse(capture(true, "run.lost", "run_1", "said \"no\"\\ then\nleft\x01"));
    T_ASSERT(j != NULL);
    T_STREQ(json_string_value(json_object_get(j, "lvl")), "warn");
    T_STREQ(json_string_value(json_object_get(j, "proc")), "echo-agent");
    T_STREQ(json_string_value(json_object_get(j, "event")), "run.lost");
    T_STREQ(json_string_value(json_object_get(j, "run")), "run_1");
    T_STREQ(json_string_value(json_object_get(j, "msg")), "said \"no\"\\ then\nleft\x01");
    T_EQ(json_integer_value(json_object_get(j, "pid")), (json_int_t)getpid());
    T_EQ(strlen(json_string_value(json_object_get(j, "ts"))), 24u); /* 2026-01-02T03:04:05.678Z */
    json_decref(j);

    j = parse(capture(true, "agent.started", NULL, "x"));
    T_ASSERT(j != NULL && json_object_get(j, "run") == NULL);
    json_decref(j);
}

T_TEST(long_lines_are_cut_whole)
{
    static char msg[3 * JLOG_LINE_MAX];
    const char *line;
    json_t *j;
    /* quotes escape to two bytes, control bytes to six, "é" is two bytes of UTF-8: a cut may
     * fall inside any of them */
    for (size_t shift = 0; shift < 8; shift++) {
        size_t n = 0;
        for (; n < shift; n++)
            msg[n] = 'a';
        while (n + 8 < sizeof(msg)) {
            memcpy(msg + n, "\"\x02\xc3\xa9z", 5);
            n += 5;
        }
        msg[n] = '\0';
        line = capture(true, "e", "run_1", msg);
        T_ASSERT(strlen(line) <= JLOG_LINE_MAX);
        T_ASSERT((j = parse(line)) != NULL);
        T_ASSERT(json_string_length(json_object_get(j, "msg")) > JLOG_LINE_MAX / 4);
        json_decref(j);
    }
}

T_TEST(text_form)
{
    const char *line = capture(false, "run.started", "run_9", "two\nlines");
    char want[128];
    snprintf(want, sizeof(want), " warn  echo-agent[%ld] run.started: two\\u000alines run=run_9\n",
             (long)getpid());
    /* the timestamp starts the line, as the tree's other processes write it */
    T_ASSERT(strlen(line) > 24 && line[4] == '-' && line[10] == 'T' && line[23] == 'Z');
    T_STREQ(line + 24, want);
}

int main(void)
{
    T_RUN(json_fields);
    T_RUN(long_lines_are_cut_whole);
    T_RUN(text_form);
    return T_DONE();
}
