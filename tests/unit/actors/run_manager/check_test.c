/*
 * check_test.c - the run-manager's pure parts (check.c): liveness and the
 * public status names, triggerConfig.ttl, friendly run ids, session-run
 * reasons and PostgreSQL array literals. The SQL, the claim and the sweeps
 * are covered by tests/integration/runs_test.sh (with claim_test.c).
 */
#include "../../../../actors/run_manager/check.c"

#include "t.h"

#define S(lit) ((struct slice){(lit), sizeof(lit) - 1})

T_TEST(liveness)
{
    static const char *const final[] = {"CANCELED",
                                        "INTERRUPTED",
                                        "COMPLETED_SUCCESSFULLY",
                                        "COMPLETED_WITH_ERRORS",
                                        "SYSTEM_FAILURE",
                                        "CRASHED",
                                        "EXPIRED",
                                        "TIMED_OUT"};
    static const char *const alive[] = {
        "DELAYED",  "PENDING",   "PENDING_VERSION",   "WAITING_FOR_DEPLOY",
        "DEQUEUED", "EXECUTING", "WAITING_TO_RESUME", "RETRYING_AFTER_FAILURE",
        "PAUSED"};
    int bad = 0;
    for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++)
        bad += !rm_status_is_final(final[i]);
    for (size_t i = 0; i < sizeof(alive) / sizeof(alive[0]); i++)
        bad += rm_status_is_final(alive[i]);
    T_EQ(bad, 0);
    T_ASSERT(!rm_status_is_final("canceled")); /* exact names only */
}

T_TEST(public_status)
{
    T_STREQ(rm_status_public("PENDING"), "QUEUED");
    T_STREQ(rm_status_public("DEQUEUED"), "EXECUTING");
    T_STREQ(rm_status_public("EXECUTING"), "EXECUTING");
    T_STREQ(rm_status_public("RETRYING_AFTER_FAILURE"), "REATTEMPTING");
    T_STREQ(rm_status_public("COMPLETED_SUCCESSFULLY"), "COMPLETED");
    T_STREQ(rm_status_public("COMPLETED_WITH_ERRORS"), "FAILED");
    T_STREQ(rm_status_public("CANCELED"), "CANCELED");
    T_STREQ(rm_status_public("CRASHED"), "CRASHED");
    T_STREQ(rm_status_public("SYSTEM_FAILURE"), "SYSTEM_FAILURE");
    T_STREQ(rm_status_public("EXPIRED"), "EXPIRED");
    T_STREQ(rm_status_public("TIMED_OUT"), "TIMED_OUT");
    T_STREQ(rm_status_public("SOMETHING_NEW"), "SOMETHING_NEW");
}

static long long ttl(const char *json)
{
    long long s = -1;
    return rm_ttl_parse(json, &s) ? s : -1;
}

T_TEST(ttl_forms)
{
    T_EQ(ttl("600"), 600);
    T_EQ(ttl("\"600\""), 600);
    T_EQ(ttl("\"45s\""), 45);
    T_EQ(ttl("\"10m\""), 600);
    T_EQ(ttl("\"2h\""), 7200);
    T_EQ(ttl("\"1d\""), 86400);
    T_EQ(ttl("\"366d\""), 366 * 86400);
}

T_TEST(ttl_refused)
{
    static const char *const bad[] = {
        "",         "null",     "0",        "\"0s\"",   "-5",
        "1.5",      "\"1.5h\"", "\"10 m\"", "\"m\"",    "\"\"",
        "\"10x\"",  "\"1w\"",   "10m",      "\"367d\"", "true",
        "{}",       "\"10M\"",  "\"abc\"",  "\"",       "99999999999999999999",
        "\"10mm\"",
    };
    int accepted = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ttl(bad[i]) >= 0) {
            accepted++;
            printf("# accepted %s\n", bad[i]);
        }
    }
    T_EQ(accepted, 0);
    long long s = 7;
    T_ASSERT(!rm_ttl_parse(NULL, &s));
    T_EQ(s, 7); /* untouched on refusal */
}

T_TEST(run_refs)
{
    char id[RM_ID_MAX];
    T_ASSERT(rm_run_ref_parse(S("run_cl2v8x0ab0000abcdefgh1234"), id));
    T_STREQ(id, "cl2v8x0ab0000abcdefgh1234");
    T_ASSERT(!rm_run_ref_parse(S("cl2v8x0ab0000abcdefgh1234"), id)); /* internal form */
    T_ASSERT(!rm_run_ref_parse(S("run_"), id));
    T_ASSERT(!rm_run_ref_parse(S("run_cl2v8x0ab0000abcdefgh123"), id));   /* short */
    T_ASSERT(!rm_run_ref_parse(S("run_cl2v8x0ab0000abcdefgh12345"), id)); /* long */
    T_ASSERT(!rm_run_ref_parse(S("run_Cl2v8x0ab0000abcdefgh1234"), id));  /* upper case */
    T_ASSERT(!rm_run_ref_parse(S("session_cl2v8x0ab0000abcdefg"), id));
    T_ASSERT(!rm_run_ref_parse(SLICE_NULL, id));
}

T_TEST(reasons)
{
    T_ASSERT(rm_reason_valid("initial"));
    T_ASSERT(rm_reason_valid("continuation"));
    T_ASSERT(rm_reason_valid("upgrade"));
    T_ASSERT(rm_reason_valid("manual"));
    T_ASSERT(!rm_reason_valid(""));
    T_ASSERT(!rm_reason_valid("Initial"));
    T_ASSERT(!rm_reason_valid("swap"));
}

T_TEST(pg_arrays)
{
    char out[64];
    struct slice items[] = {S("chat"), S("a\"b"), S("c\\d"), S("x,y{}")};
    T_ASSERT(rm_pg_array(items, 1, out, sizeof(out)));
    T_STREQ(out, "{\"chat\"}");
    T_ASSERT(rm_pg_array(items, 4, out, sizeof(out)));
    T_STREQ(out, "{\"chat\",\"a\\\"b\",\"c\\\\d\",\"x,y{}\"}");
    T_ASSERT(rm_pg_array(items, 0, out, sizeof(out)));
    T_STREQ(out, "{}");
    T_ASSERT(!rm_pg_array(items, 4, out, 10)); /* does not fit */
    struct slice nul = {"a\0b", 3};
    T_ASSERT(!rm_pg_array(&nul, 1, out, sizeof(out)));
}

int main(void)
{
    T_RUN(liveness);
    T_RUN(public_status);
    T_RUN(ttl_forms);
    T_RUN(ttl_refused);
    T_RUN(run_refs);
    T_RUN(reasons);
    T_RUN(pg_arrays);
    return T_DONE();
}
