/*
 * t.h - TAP output and NUTS-like assertions for unit tests.
 *
 * Each test file is its own binary (run under `timeout` by tests/run.sh, so
 * a crash cannot hide other results). Use:
 *
 *   T_TEST(name) { T_OK(f()); T_ERR(g(), ERR_PROTO); T_EQ(a, b); T_STREQ(s, "x"); }
 *   int main(void) { T_RUN(name); ...; return T_DONE(); }
 *
 * Every assertion prints one TAP line ("ok N - ..." / "not ok N - ...");
 * T_DONE() prints the plan and returns the process exit code (failures > 0).
 */
#ifndef TETHER_TESTS_T_H
#define TETHER_TESTS_T_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int t_n, t_failed;
static const char *t_current = "";

static inline int t_check(int cond, const char *file, int line, const char *what)
{
    t_n++;
    if (cond) {
        printf("ok %d - %s: %s\n", t_n, t_current, what);
    } else {
        t_failed++;
        printf("not ok %d - %s: %s (%s:%d)\n", t_n, t_current, what, file, line);
    }
    fflush(stdout);
    return cond;
}

#define T_TEST(name) static void t_##name(void)
#define T_RUN(name)                                                                                \
    do {                                                                                           \
        t_current = #name;                                                                         \
        t_##name();                                                                                \
    } while (0)
#define T_DONE() (printf("1..%d\n", t_n), t_failed > 0 ? 1 : 0)

#define T_ASSERT(cond) t_check(!!(cond), __FILE__, __LINE__, #cond)
#define T_OK(expr) t_check((expr) == 0, __FILE__, __LINE__, #expr " == OK")
#define T_ERR(expr, code) t_check((expr) == (code), __FILE__, __LINE__, #expr " == " #code)
#define T_EQ(a, b) t_check((a) == (b), __FILE__, __LINE__, #a " == " #b)
#define T_NE(a, b) t_check((a) != (b), __FILE__, __LINE__, #a " != " #b)
#define T_STREQ(a, b) t_check(strcmp((a), (b)) == 0, __FILE__, __LINE__, #a " equals " #b)
#define T_MEMEQ(a, b, n) t_check(memcmp((a), (b), (n)) == 0, __FILE__, __LINE__, #a " bytes equal " #b)

#endif
