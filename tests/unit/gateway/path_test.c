/*
 * path_test.c - route matching on the raw path: each :param decoded exactly
 * once (never twice: "y%2531" is "y%31", not "y1"), fixed segments never
 * decoded, the S2 :stream with slashes encoded or not, unusable values
 * named; the id rule; and the generic parameter checks built on both.
 */
#include "../../../gateway/path.c"

#include "t.h"

static const char SESSION[] = "/api/v1/sessions/:session";
static const char APPEND[] = "/realtime/v1/sessions/:session/:io/append";
static const char RUN[] = "/api/v3/runs/:run";
static const char S2[] = "/s2/v1/streams/:stream/records";

static bool match(const char *pattern, const char *path, struct gw_params *p)
{
    return gw_route_match(pattern, path, strlen(path), p);
}

T_TEST(decode_once)
{
    char out[32];
    T_OK(gw_pct_decode("y%2531", 6, out, sizeof(out)));
    T_STREQ(out, "y%31");
    T_OK(gw_pct_decode("a%2Fb%2fc", 9, out, sizeof(out)));
    T_STREQ(out, "a/b/c");
    T_OK(gw_pct_decode("a+b%20c", 7, out, sizeof(out)));
    T_STREQ(out, "a+b c");
    T_OK(gw_pct_decode("%C3%BC%ff", 9, out, sizeof(out)));
    T_STREQ(out, "\xc3\xbc\xff");
    T_ERR(gw_pct_decode("a%00b", 5, out, sizeof(out)), ERR_INVAL);
    T_STREQ(out, "");
    T_ERR(gw_pct_decode("a%zz", 4, out, sizeof(out)), ERR_INVAL);
    T_ERR(gw_pct_decode("a%f", 3, out, sizeof(out)), ERR_INVAL);
    T_ERR(gw_pct_decode("%", 1, out, sizeof(out)), ERR_INVAL);
    T_ERR(gw_pct_decode("abcd", 4, out, 4), ERR_TOOBIG);
    T_STREQ(out, "");
    T_OK(gw_pct_decode("%41%42%43", 9, out, 4)); /* the decoded length is what must fit */
    T_STREQ(out, "ABC");
}

T_TEST(match_params)
{
    struct gw_params p;
    T_ASSERT(match(SESSION, "/api/v1/sessions/y%2531", &p));
    T_STREQ(p.session, "y%31");
    T_ASSERT(p.bad == NULL);
    T_ASSERT(match(SESSION, "/api/v1/sessions/a%2Fb", &p));
    T_STREQ(p.session, "a/b");
    T_ASSERT(!match(SESSION, "/api/v1/sessions/a/b", &p));
    T_ASSERT(match(SESSION, "/api/v1/sessions/..", &p)); /* the raw path: nothing resolves it */
    T_STREQ(p.session, "..");
    T_ASSERT(match(SESSION, "/api/v1/sessions/%2e%2E", &p));
    T_STREQ(p.session, "..");
    T_ASSERT(!match(SESSION, "/api/v1/sessions/", &p));
    T_ASSERT(!match(SESSION, "/api/v1/sessions", &p));
    T_ASSERT(!match(SESSION, "/api/v1/%73essions/x", &p)); /* fixed segments are not decoded */
    T_ASSERT(!match(SESSION, "/api/v1//sessions/x", &p));
    T_ASSERT(match(SESSION, "/api/v1/sessions/%00", &p));
    T_ASSERT(p.bad && strcmp(p.bad, "session") == 0 && p.bad_rc == ERR_INVAL);
    T_STREQ(p.session, "");
    T_ASSERT(match(SESSION, "/api/v1/sessions/%ff", &p));
    T_STREQ(p.session, "\xff");
    T_ASSERT(match(APPEND, "/realtime/v1/sessions/a%20b%2Bc%3Ad/%69n/append", &p));
    T_STREQ(p.session, "a b+c:d");
    T_STREQ(p.io, "in");
    T_ASSERT(match(APPEND, "/realtime/v1/sessions/x/ooooooooooooooooooooo/append", &p));
    T_ASSERT(p.bad && strcmp(p.bad, "io") == 0 && p.bad_rc == ERR_TOOBIG);
    T_ASSERT(!match(APPEND, "/realtime/v1/sessions/x/in/append/more", &p));
    T_ASSERT(match(RUN, "/api/v3/runs/run_%252F", &p));
    T_STREQ(p.run, "run_%2F");
}

T_TEST(match_stream)
{
    struct gw_params p;
    T_ASSERT(match(S2, "/s2/v1/streams/sessions%2Fk%20x%2Fout/records", &p));
    T_STREQ(p.session, "sessions/k x/out");
    T_ASSERT(match(S2, "/s2/v1/streams/sessions/k/out/records", &p));
    T_STREQ(p.session, "sessions/k/out");
    T_ASSERT(match(S2, "/s2/v1/streams/sessions%2Fy%2531%2Fin/records", &p));
    T_STREQ(p.session, "sessions/y%31/in");
    T_ASSERT(!match(S2, "/s2/v1/streams/records", &p));
    T_ASSERT(!match(S2, "/s2/v1/streams//records", &p));
    T_ASSERT(match(S2, "/s2/v1/streams/sessions%2F%00%2Fin/records", &p));
    T_ASSERT(p.bad && strcmp(p.bad, "stream") == 0);
}

T_TEST(id_rule)
{
    static const char *const good[] = {"chat one", "\xc3\xbcn\xc3\xaf\xc2\xa9 \xe6\x97\xa5", "a+b",
                                       "k:v:w", "q?x=1&y#z", "...", ".a", "a.", "(x)!*~'",
                                       "a\\b", "\xf0\x9f\x98\x80"};
    static const char *const bad[] = {"", ".", "..", "a/b", "/", "50%", "%2F", "a\x01" "b",
                                      "a\x7f", "a\xc2\x85", "\xff", "\xc0\xaf", "\xed\xa0\x80",
                                      "a\tb"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        T_ASSERT(gw_id_problem(good[i], strlen(good[i])) == NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        T_ASSERT(gw_id_problem(bad[i], strlen(bad[i])) != NULL);
    T_STREQ(gw_id_problem("a/b", 3), "must not contain \"/\"");
    T_STREQ(gw_id_problem("..", 2), "must not be \".\" or \"..\"");
    T_STREQ(gw_id_problem("\xff", 1), "must be UTF-8");
}

/* The generic checks answer each unusable value with a named issue; none is ever lost. */
static json_t *issues_of(const char *pattern, const char *path)
{
    struct gw_route r = {GW_GET, pattern, 0, GW_BODY_RAW, GW_AUTH_SECRET, NULL};
    struct gw_params p;
    json_t *d = NULL;
    if (!match(pattern, path, &p) || gw_params_valid(&r, &p, &d))
        return NULL;
    return d;
}

static const char *issue_msg(json_t *d, size_t i)
{
    return json_string_value(json_object_get(json_array_get(d, i), "message"));
}

T_TEST(params_valid)
{
    static const char *const bad[] = {"%25", "%2F", "%00", "..", "%ff", "%2e", "a%2Fb", "%C2%85"};
    char path[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/realtime/v1/sessions/%s/%s/append", bad[i], bad[i]);
        json_t *d = issues_of(APPEND, path);
        T_ASSERT(d && json_array_size(d) == 2);
        T_ASSERT(issue_msg(d, 0) && strncmp(issue_msg(d, 0), "Invalid session id: ", 20) == 0);
        T_ASSERT(issue_msg(d, 1) && strncmp(issue_msg(d, 1), "Invalid enum value", 18) == 0);
        json_decref(d);
        snprintf(path, sizeof(path), "/api/v3/runs/%s", bad[i]);
        d = issues_of(RUN, path);
        T_ASSERT(d && json_array_size(d) == 1 && issue_msg(d, 0) &&
                 strncmp(issue_msg(d, 0), "Invalid run id: ", 16) == 0);
        json_decref(d);
    }
    json_t *d = issues_of(SESSION, "/api/v1/sessions/%ff");
    T_STREQ(issue_msg(d, 0), "Invalid session id: must be UTF-8");
    json_decref(d);
    d = issues_of(SESSION, "/api/v1/sessions/%zz");
    T_STREQ(issue_msg(d, 0), "Invalid session id: bad percent-encoding");
    json_decref(d);
    T_ASSERT(issues_of(SESSION, "/api/v1/sessions/chat%20one%2B%3A%C3%BC") == NULL);
    T_ASSERT(issues_of(APPEND, "/realtime/v1/sessions/session_c1/out/append") == NULL);
    T_ASSERT(issues_of(RUN, "/api/v3/runs/run_cabc") == NULL);
}

int main(void)
{
    T_RUN(decode_once);
    T_RUN(match_params);
    T_RUN(match_stream);
    T_RUN(id_rule);
    T_RUN(params_valid);
    return T_DONE();
}
