/*
 * jscan_test.c - proto/jscan.h: members of a JSON object found as spans of
 * its text (the /records envelope unwrap), validation of everything around
 * them, and text that is not one object.
 */
#include "jscan.h"
#include "t.h"

static const char *const names[] = {"data", "id"};

static int span_is(struct slice s, const char *want)
{
    return s.p && s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

T_TEST(envelope)
{
    struct slice v[2];
    const char *e = "{\"data\":\"a\\u0000b\",\"id\":\"p1\"}";
    T_OK(jscan_members(e, strlen(e), names, v, 2));
    T_ASSERT(span_is(v[0], "\"a\\u0000b\""));
    T_ASSERT(span_is(v[1], "\"p1\""));
    /* the lossless escapes of jbuf_bytes are accepted as written */
    e = "{\"data\":\"\\udcff\\udcfe\",\"id\":\"x\"}";
    T_OK(jscan_members(e, strlen(e), names, v, 2));
    T_ASSERT(span_is(v[0], "\"\\udcff\\udcfe\""));
    /* an object value, whitespace, other members, a repeated name (the last wins) */
    e = " {\"x\":[1,-2.5e+3,true,false,null,{}],\"data\" : {\"t\":[\"\xc3\xa9\",{\"a\":[]}]},"
        "\"id\":1,\"id\":\"last\"}\n";
    T_OK(jscan_members(e, strlen(e), names, v, 2));
    T_ASSERT(span_is(v[0], "{\"t\":[\"\xc3\xa9\",{\"a\":[]}]}"));
    T_ASSERT(span_is(v[1], "\"last\""));
    /* absent members */
    e = "{\"id\":7}";
    T_OK(jscan_members(e, strlen(e), names, v, 2));
    T_ASSERT(v[0].p == NULL);
    T_ASSERT(span_is(v[1], "7"));
    T_OK(jscan_members("{}", 2, names, v, 2));
    T_ASSERT(v[0].p == NULL && v[1].p == NULL);
}

T_TEST(not_one_object)
{
    struct slice v[2];
    const char *bad[] = {
        "", "a\0b", "\xff\xfe", "[]", "\"s\"", "1", "{", "{\"data\":1", "{\"data\":1,}",
        "{\"data\" 1}", "{data:1}", "{\"data\":1} x", "{\"data\":1}{}", "{\"data\":01}",
        "{\"data\":1.}", "{\"data\":-}", "{\"data\":1e}", "{\"data\":tru}", "{\"data\":[1,]}",
        "{\"data\":\"\\x\"}", "{\"data\":\"\\u12g4\"}", "{\"data\":\"a\nb\"}",
        "{\"data\":\"\xff\"}",       /* raw invalid UTF-8 inside a string */
        "{\"data\":\"\xe2\x82\"}",   /* a cut sequence */
        "{\"data\":\"abc}",          /* unterminated */
        "{\"data\":\"abc\\",         /* a backslash at the end */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = i == 1 ? 3 : strlen(bad[i]);
        T_ERR(jscan_members(bad[i], n, names, v, 2), ERR_INVAL);
        T_ASSERT(v[0].p == NULL && v[1].p == NULL);
    }
    /* a NUL byte inside the text is not JSON either */
    T_ERR(jscan_members("{\"data\":\"a\0\"}", 13, names, v, 2), ERR_INVAL);
}

T_TEST(depth)
{
    /* JSCAN_DEPTH_MAX containers in all (the object itself counts) pass, one more does not */
    char buf[2 * JSCAN_DEPTH_MAX + 64];
    for (unsigned extra = 0; extra <= 1; extra++) {
        size_t n = 0, arrays = JSCAN_DEPTH_MAX - 1 + extra;
        struct slice v[2];
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"data\":");
        for (size_t i = 0; i < arrays; i++)
            buf[n++] = '[';
        for (size_t i = 0; i < arrays; i++)
            buf[n++] = ']';
        buf[n++] = '}';
        if (extra)
            T_ERR(jscan_members(buf, n, names, v, 2), ERR_INVAL);
        else
            T_OK(jscan_members(buf, n, names, v, 2));
    }
}

int main(void)
{
    T_RUN(envelope);
    T_RUN(not_one_object);
    T_RUN(depth);
    return T_DONE();
}
