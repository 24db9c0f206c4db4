/*
 * cfg_test.c - configuration tables: defaults, environment overrides, bounds,
 * every bad value reported together, durations, booleans, secret masking.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cfg.h"
#include "t.h"

struct conf {
    long long n, ms;
    bool b;
    char *s, *secret;
};

static const struct cfg_def defs[] = {
    {"TT_N", CFG_INT, "5", 1, 10, offsetof(struct conf, n), "n"},
    {"TT_MS", CFG_MS, "2s", 0, 60000, offsetof(struct conf, ms), "ms"},
    {"TT_B", CFG_BOOL, "no", 0, 0, offsetof(struct conf, b), "b"},
    {"TT_S", CFG_STR, "x", 0, 0, offsetof(struct conf, s), "s"},
    {"TT_SECRET", CFG_SECRET, "redis://:pw@h:1", 0, 0, offsetof(struct conf, secret), "secret"},
};

static err_t load(struct conf *c)
{
    struct cfg_table t[] = {CFG_TABLE(defs, c)};
    enum cfg_action a;
    char *argv[] = {"prog", NULL};
    return cfg_load(t, 1, 1, argv, "test", &a);
}

static void unload(struct conf *c)
{
    struct cfg_table t[] = {CFG_TABLE(defs, c)};
    cfg_free(t, 1);
}

T_TEST(defaults)
{
    struct conf c = {0};
    T_OK(load(&c));
    T_EQ(c.n, 5);
    T_EQ(c.ms, 2000);
    T_EQ(c.b, false);
    T_STREQ(c.s, "x");
    unload(&c);
}

T_TEST(overrides)
{
    struct conf c = {0};
    setenv("TT_N", "10", 1);
    setenv("TT_MS", "250ms", 1);
    setenv("TT_B", "on", 1);
    setenv("TT_S", "hello", 1);
    T_OK(load(&c));
    T_EQ(c.n, 10);
    T_EQ(c.ms, 250);
    T_EQ(c.b, true);
    T_STREQ(c.s, "hello");
    unload(&c);
    unsetenv("TT_N");
    unsetenv("TT_MS");
    unsetenv("TT_B");
    unsetenv("TT_S");
}

T_TEST(bad_values)
{
    struct conf c = {0};
    setenv("TT_N", "11", 1);
    T_ERR(load(&c), ERR_INVAL);
    unload(&c);
    setenv("TT_N", "3x", 1);
    T_ERR(load(&c), ERR_INVAL);
    unload(&c);
    unsetenv("TT_N");
    setenv("TT_MS", "2 hours", 1);
    T_ERR(load(&c), ERR_INVAL);
    unload(&c);
    setenv("TT_MS", "-5", 1);
    T_ERR(load(&c), ERR_INVAL);
    unload(&c);
    unsetenv("TT_MS");
    setenv("TT_B", "maybe", 1);
    T_ERR(load(&c), ERR_INVAL);
    unload(&c);
    unsetenv("TT_B");
}

T_TEST(unknown_argument)
{
    struct conf c = {0};
    struct cfg_table t[] = {CFG_TABLE(defs, &c)};
    enum cfg_action a;
    char *argv[] = {"prog", "--verbose", NULL};
    T_ERR(cfg_load(t, 1, 2, argv, "test", &a), ERR_INVAL);
    unload(&c);
}

T_TEST(durations)
{
    long long v;
    T_ASSERT(cfg_parse_ms("1500", &v) && v == 1500);
    T_ASSERT(cfg_parse_ms("3s", &v) && v == 3000);
    T_ASSERT(cfg_parse_ms("2m", &v) && v == 120000);
    T_ASSERT(cfg_parse_ms("1h", &v) && v == 3600000);
    T_ASSERT(!cfg_parse_ms("", &v));
    T_ASSERT(!cfg_parse_ms("5d", &v));
    T_ASSERT(!cfg_parse_ms("99999999999999999999s", &v));
}

T_TEST(print_config_masks_secrets)
{
    struct conf c = {0};
    struct cfg_table t[] = {CFG_TABLE(defs, &c)};
    enum cfg_action a;
    char *argv[] = {"prog", "--print-config", NULL};
    char buf[4096] = "";
    FILE *saved = stdout;
    FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
    stdout = f;
    err_t rc = cfg_load(t, 1, 2, argv, "test", &a);
    fclose(f);
    stdout = saved;
    T_OK(rc);
    T_EQ(a, CFG_PRINTED);
    T_ASSERT(strstr(buf, "TT_SECRET=redis://:****@h:1") != NULL);
    T_ASSERT(strstr(buf, "pw") == NULL);
    unload(&c);
}

int main(void)
{
    T_RUN(defaults);
    T_RUN(overrides);
    T_RUN(bad_values);
    T_RUN(unknown_argument);
    T_RUN(durations);
    T_RUN(print_config_masks_secrets);
    return T_DONE();
}
