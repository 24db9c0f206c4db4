/*
 * run_test.c - the echo agent's pure pieces of a run: what counts as a
 * turn-complete and its cursor, what is not a message, the reply and
 * turn-complete it appends (one request, the id derived from the .in seq),
 * and the cut of an over-long text on a character boundary. The run itself
 * (HTTP, threads) is tested against a real tree by echo_agent_test.sh.
 */
#include "../../../../examples/echo-agent/ea.c"
#include "../../../../examples/echo-agent/end.c"
#include "../../../../examples/echo-agent/follow.c"
#include "../../../../examples/echo-agent/heartbeat.c"
#include "../../../../examples/echo-agent/http.c"
#include "../../../../examples/echo-agent/jlog.c"
#include "../../../../examples/echo-agent/out.c"
#include "../../../../examples/echo-agent/request.c"
#include "../../../../examples/echo-agent/run.c"
#include "../../../../examples/echo-agent/sse.c"

#include "t.h"

static json_t *headers(const char *text)
{
    json_t *h = json_loads(text, 0, NULL);
    if (!h)
        abort();
    return h;
}

/* data.text of a reply's envelope */
static json_t *env_text(json_t *env)
{
    return json_object_get(json_object_get(env, "data"), "text");
}

T_TEST(turn_cursor)
{
    json_t *h =
        headers("[[\"trigger-control\",\"turn-complete\"],[\"session-in-event-id\",\"7\"]]");
    const char *c = run_turn_cursor(h);
    T_ASSERT(c && strcmp(c, "7") == 0);
    json_decref(h);
    /* the header order does not matter; another subtype or no subtype is no cursor */
    h = headers("[[\"session-in-event-id\",\"3\"],[\"trigger-control\",\"turn-complete\"]]");
    c = run_turn_cursor(h);
    T_ASSERT(c && strcmp(c, "3") == 0);
    json_decref(h);
    h = headers("[[\"trigger-control\",\"upgrade-required\"],[\"session-in-event-id\",\"3\"]]");
    T_ASSERT(run_turn_cursor(h) == NULL);
    json_decref(h);
    h = headers("[[\"session-in-event-id\",\"3\"]]");
    T_ASSERT(run_turn_cursor(h) == NULL);
    json_decref(h);
    T_ASSERT(run_turn_cursor(NULL) == NULL);
}

T_TEST(parse_seq)
{
    uint64_t v = 1;
    T_ASSERT(run_parse_seq("0", &v) && v == 0);
    T_ASSERT(run_parse_seq("9223372036854775807", &v) && v == 9223372036854775807u);
    T_ASSERT(!run_parse_seq("", &v));
    T_ASSERT(!run_parse_seq("12a", &v));
    T_ASSERT(!run_parse_seq("-1", &v));
    T_ASSERT(!run_parse_seq("12,3,456", &v)); /* an S2-style event id is no cursor */
    T_ASSERT(!run_parse_seq("18446744073709551616", &v));
}

T_TEST(what_is_not_a_message)
{
    json_t *h = headers("[[\"\",\"trim\"]]");
    T_ASSERT(run_is_control(h)); /* an S2 command record */
    json_decref(h);
    h = headers("[[\"x-other\",\"1\"],[\"trigger-control\",\"turn-complete\"]]");
    T_ASSERT(run_is_control(h));
    json_decref(h);
    h = headers("[[\"x-other\",\"1\"]]");
    T_ASSERT(!run_is_control(h));
    json_decref(h);
    T_ASSERT(!run_is_control(NULL));
}

T_TEST(turn_body)
{
    bool cut = true;
    char *req = run_turn_body(5, "hi \"you\"", 8, &cut);
    json_t *j = req ? json_loads(req, 0, NULL) : NULL, *recs = json_object_get(j, "records");
    T_ASSERT(j != NULL);
    T_ASSERT(!cut);
    T_EQ(json_array_size(recs), 2u);
    json_t *env =
        json_loads(json_string_value(json_object_get(json_array_get(recs, 0), "body")), 0, NULL);
    T_STREQ(json_string_value(json_object_get(env, "id")), "echo-5");
    T_STREQ(json_string_value(env_text(env)), "hi \"you\"");
    T_STREQ(json_string_value(json_object_get(json_object_get(env, "data"), "type")), "echo");
    char *hdrs = json_dumps(json_object_get(json_array_get(recs, 1), "headers"), JSON_COMPACT);
    T_STREQ(hdrs, "[[\"trigger-control\",\"turn-complete\"],[\"session-in-event-id\",\"5\"]]");
    T_STREQ(json_string_value(json_object_get(json_array_get(recs, 1), "body")), "");
    free(hdrs);
    json_decref(env);
    json_decref(j);
    free(req);
}

T_TEST(long_text_is_cut_on_a_character)
{
    size_t n = EA_ECHO_TEXT_MAX + 16;
    char *text = malloc(n + 1);
    bool cut = false;
    if (!text)
        abort();
    memset(text, 'a', n);
    memcpy(text + EA_ECHO_TEXT_MAX - 1, "\xc3\xa9", 2); /* "é" across the limit */
    text[n] = '\0';
    T_EQ(run_utf8_cut(text, n, EA_ECHO_TEXT_MAX), (size_t)EA_ECHO_TEXT_MAX - 1);
    T_EQ(run_utf8_cut("ab", 2, 5), 2u);
    char *req = run_turn_body(0, text, n, &cut);
    json_t *j = req ? json_loads(req, 0, NULL) : NULL;
    json_t *env = json_loads(json_string_value(json_object_get(
                                 json_array_get(json_object_get(j, "records"), 0), "body")),
                             0, NULL);
    T_ASSERT(cut);
    T_EQ(json_string_length(env_text(env)), (size_t)EA_ECHO_TEXT_MAX - 1);
    T_ASSERT(json_is_true(json_object_get(json_object_get(env, "data"), "truncated")));
    json_decref(env);
    json_decref(j);
    free(req);
    free(text);
}

int main(void)
{
    T_RUN(turn_cursor);
    T_RUN(parse_seq);
    T_RUN(what_is_not_a_message);
    T_RUN(turn_body);
    T_RUN(long_text_is_cut_on_a_character);
    return T_DONE();
}
