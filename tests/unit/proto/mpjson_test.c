/*
 * mpjson_test.c - tests msgpack to JSON rendering (proto/mpjson.h): scalars,
 * containers, string escaping, bin/ext, max_str truncation, non-string keys,
 * secret masking and rejection of malformed input.
 */
#include <math.h>
#include <stdlib.h>

#include "mp.h"
#include "mpjson.h"
#include "t.h"

static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

/* Renders p[0..n) (from an exact-size heap copy); the JSON is malloc'd, NULL on failure. */
static char *render(const void *p, size_t n, size_t max, int masked, err_t *rc)
{
    uint8_t *buf = dup_exact(p, n);
    char *out = NULL;
    size_t len = 0;

    *rc = masked ? mp_to_json_masked(buf, n, max, &out, &len)
                 : mp_to_json(buf, n, max, &out, &len);
    free(buf);
    if (*rc != OK)
        return NULL;
    if (out == NULL || strlen(out) != len) { /* NUL-terminated, no NUL inside */
        *rc = ERR_INTERNAL;
        free(out);
        return NULL;
    }
    return out;
}

/* p[0..n) renders as want (printing both on a mismatch). */
static int renders_opt(const void *p, size_t n, size_t max, int masked, const char *want)
{
    err_t rc;
    char *got = render(p, n, max, masked, &rc);
    int ok = got != NULL && strcmp(got, want) == 0;
    if (!ok)
        printf("# want %s\n# got  %s (rc %d)\n", want, got ? got : "(none)", rc);
    free(got);
    return ok;
}

static int renders(const void *p, size_t n, const char *want)
{
    return renders_opt(p, n, 0, 0, want);
}

/* Renders what a writer holds. */
static int w_renders(struct mp_writer *w, size_t max, int masked, const char *want)
{
    int ok = mp_writer_err(w) == OK &&
             renders_opt(mp_writer_data(w), mp_writer_len(w), max, masked, want);
    mp_writer_reset(w);
    return ok;
}

static err_t json_rc(const void *p, size_t n)
{
    err_t rc;
    free(render(p, n, 0, 0, &rc));
    return rc;
}

static err_t json_rc_masked(const void *p, size_t n)
{
    err_t rc;
    free(render(p, n, 0, 1, &rc));
    return rc;
}

T_TEST(scalars)
{
    struct mp_writer w;

    T_ASSERT(renders("\xc0", 1, "null"));
    T_ASSERT(renders("\xc3", 1, "true"));
    T_ASSERT(renders("\xc2", 1, "false"));
    T_ASSERT(renders("\x00", 1, "0"));
    T_ASSERT(renders("\x7f", 1, "127"));
    T_ASSERT(renders("\xff", 1, "-1"));
    T_ASSERT(renders("\xd0\x05", 2, "5"));
    T_ASSERT(renders("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, "18446744073709551615"));
    T_ASSERT(renders("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, "-9223372036854775808"));
    T_ASSERT(renders("\xca\x3f\xc0\x00\x00", 5, "1.5"));

    mp_writer_init(&w);
    mp_put_double(&w, -3.25);
    T_ASSERT(w_renders(&w, 0, 0, "-3.25"));
    mp_put_double(&w, 0.1);
    T_ASSERT(w_renders(&w, 0, 0, "0.10000000000000001")); /* %.17g: exact round trip */
    mp_put_double(&w, 1e300);
    T_ASSERT(w_renders(&w, 0, 0, "1.0000000000000001e+300"));
    mp_put_double(&w, NAN);
    T_ASSERT(w_renders(&w, 0, 0, "null"));
    mp_put_double(&w, -NAN);
    T_ASSERT(w_renders(&w, 0, 0, "null"));
    mp_put_double(&w, INFINITY);
    T_ASSERT(w_renders(&w, 0, 0, "null"));
    mp_put_double(&w, -INFINITY);
    T_ASSERT(w_renders(&w, 0, 0, "null"));
    /* float32 NaN and infinity */
    T_ASSERT(renders("\xca\x7f\xc0\x00\x00", 5, "null"));
    T_ASSERT(renders("\xca\x7f\x80\x00\x00", 5, "null"));
    mp_put_int(&w, INT64_MIN);
    T_ASSERT(w_renders(&w, 0, 0, "-9223372036854775808"));
    mp_put_uint(&w, UINT64_MAX);
    T_ASSERT(w_renders(&w, 0, 0, "18446744073709551615"));
    mp_writer_fini(&w);
}

T_TEST(strings)
{
    struct mp_writer w;

    T_ASSERT(renders("\xa0", 1, "\"\""));
    T_ASSERT(renders("\xa2hi", 3, "\"hi\""));
    T_ASSERT(renders("\xa4" "a\"b\\", 5, "\"a\\\"b\\\\\""));
    T_ASSERT(renders("\xa4\n\t\r\b", 5, "\"\\u000a\\u0009\\u000d\\u0008\""));
    T_ASSERT(renders("\xa3" "a\0b", 4, "\"a\\u0000b\""));
    T_ASSERT(renders("\xa2\x1f\x20", 3, "\"\\u001f \""));
    T_ASSERT(renders("\xa2\x7f/", 3, "\"\x7f/\""));            /* DEL and '/' need no escape */
    T_ASSERT(renders("\xa5\xc3\xa9\xe2\x82\xac", 6, "\"\xc3\xa9\xe2\x82\xac\"")); /* UTF-8 as is */

    mp_writer_init(&w);
    char all[32];
    for (int i = 0; i < 32; i++)
        all[i] = (char)i;
    mp_put_strn(&w, all, 32);
    char want[2 + 32 * 6 + 1], *q = want;
    *q++ = '"';
    for (int i = 0; i < 32; i++)
        q += sprintf(q, "\\u%04x", i);
    *q++ = '"';
    *q = '\0';
    T_ASSERT(w_renders(&w, 0, 0, want));
    mp_writer_fini(&w);
}

T_TEST(bin_and_ext)
{
    struct mp_writer w;

    T_ASSERT(renders("\xc4\x00", 2, "{\"$bin\":0}"));
    T_ASSERT(renders("\xc4\x03\x00\"\\", 5, "{\"$bin\":3}")); /* the bytes are never shown */
    mp_writer_init(&w);
    char *big = calloc(1, 70000);
    mp_put_bin(&w, big, 70000);
    T_ASSERT(w_renders(&w, 0, 0, "{\"$bin\":70000}"));
    free(big);
    mp_writer_fini(&w);
    T_ASSERT(renders("\xd4\x01\x00", 3, "{\"$ext\":true}"));
    T_ASSERT(renders("\xc7\x02\x01\xaa\xbb", 5, "{\"$ext\":true}"));
}

T_TEST(containers)
{
    struct mp_writer w;

    T_ASSERT(renders("\x90", 1, "[]"));
    T_ASSERT(renders("\x80", 1, "{}"));
    T_ASSERT(renders("\x93\x01\x92\x02\x90\x81\xa1" "a\xc0", 9, "[1,[2,[]],{\"a\":null}]"));
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_int(&w, "a", -7);
    mp_put_str(&w, "b");
    mp_put_array(&w, 2);
    mp_put_bool(&w, true);
    mp_put_bool(&w, false);
    mp_put_str(&w, "c");
    mp_put_map(&w, 1);
    mp_put_kv_str(&w, "d", "e");
    T_ASSERT(w_renders(&w, 0, 0, "{\"a\":-7,\"b\":[true,false],\"c\":{\"d\":\"e\"}}"));

    /* keys are escaped like values */
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "q\"\n", 1);
    T_ASSERT(w_renders(&w, 0, 0, "{\"q\\\"\\u000a\":1}"));

    /* a wide array */
    mp_put_array(&w, 1000);
    for (int i = 0; i < 1000; i++)
        mp_put_nil(&w);
    err_t rc;
    char *out = render(mp_writer_data(&w), mp_writer_len(&w), 0, 0, &rc);
    T_ASSERT(out != NULL && strlen(out) == 2 + 1000 * 4 + 999);
    free(out);
    mp_writer_fini(&w);
}

T_TEST(non_string_keys)
{
    T_ASSERT(renders("\x81\x01\xa1x", 4, "{\"1\":\"x\"}"));
    T_ASSERT(renders("\x81\xfe\x00", 3, "{\"-2\":0}"));
    T_ASSERT(renders("\x81\xc0\x01", 3, "{\"null\":1}"));
    T_ASSERT(renders("\x81\xc3\x01", 3, "{\"true\":1}"));
    T_ASSERT(renders("\x81\xca\x3f\xc0\x00\x00\x01", 7, "{\"1.5\":1}"));
    T_ASSERT(renders("\x81\x92\x01\xa1" "a\x02", 6, "{\"$key\":2}"));  /* structured keys: a placeholder */
    T_ASSERT(renders("\x81\x81\xa1k\xa1v\x03", 7, "{\"$key\":3}"));  /* structured keys: a placeholder */
    T_ASSERT(renders("\x81\xc4\x02xy\x01", 6, "{\"$key\":1}"));  /* structured keys: a placeholder */
    /* a malformed non-string key */
    T_ERR(json_rc("\x81\xc1\x01", 3), ERR_PROTO);
    T_ERR(json_rc("\x81\x92\x01\x01", 4), ERR_PROTO);

    /*
     * Known bug (reported, not asserted): a non-string key is rendered and
     * then escaped as a string, once per level, so k nested map keys double
     * the output k times: {{{"\"":nil}:nil}:nil}... 26 bytes in, 12 KiB out
     * at k = 12, gigabytes at k = 30 (max_str does not apply to keys).
     */
    uint8_t amp[64];
    size_t n = 0;
    for (int i = 0; i < 12; i++)
        amp[n++] = 0x81;
    amp[n++] = 0xa1;
    amp[n++] = '"';
    for (int i = 0; i < 12; i++)
        amp[n++] = 0xc0;
    err_t rc;
    char *out = render(amp, n, 8, 0, &rc);
    T_OK(rc);
    /* structured keys render as a placeholder: output stays proportional to input */
    T_ASSERT(out && strlen(out) <= 100 * n);
    free(out);
}

T_TEST(max_str)
{
    struct mp_writer w;

    T_ASSERT(renders_opt("\xa6" "abcdef", 7, 3, 0, "\"abc\xe2\x80\xa6\""));
    T_ASSERT(renders_opt("\xa6" "abcdef", 7, 6, 0, "\"abcdef\""));  /* exactly max: no cut */
    T_ASSERT(renders_opt("\xa6" "abcdef", 7, 7, 0, "\"abcdef\""));
    T_ASSERT(renders_opt("\xa6" "abcdef", 7, 0, 0, "\"abcdef\""));  /* 0: no limit */
    T_ASSERT(renders_opt("\xa6" "abcdef", 7, 1, 0, "\"a\xe2\x80\xa6\""));
    /* the limit counts source bytes; escapes are applied to what is kept */
    T_ASSERT(renders_opt("\xa4\"\"\"\"", 5, 2, 0, "\"\\\"\\\"\xe2\x80\xa6\""));
    T_ASSERT(renders_opt("\xa3\n\n\n", 4, 1, 0, "\"\\u000a\xe2\x80\xa6\""));
    /* inside containers too */
    T_ASSERT(renders_opt("\x92\xa3xyz\xa1z", 7, 2, 0, "[\"xy\xe2\x80\xa6\",\"z\"]"));

    /* a 1 MiB string becomes a short line */
    mp_writer_init(&w);
    char *big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    mp_put_map(&w, 1);
    mp_put_str(&w, "blob");
    mp_put_strn(&w, big, 1 << 20);
    err_t rc;
    char *out = render(mp_writer_data(&w), mp_writer_len(&w), 16, 0, &rc);
    T_ASSERT(out != NULL && strlen(out) == strlen("{\"blob\":\"\"}") + 16 + 3);
    T_ASSERT(out != NULL && strncmp(out, "{\"blob\":\"xxxxxxxxxxxxxxxx\xe2\x80\xa6\"}", 32) == 0);
    free(out);
    free(big);
    mp_writer_fini(&w);

    /* the cut never splits a UTF-8 sequence, and bytes that are not UTF-8 become U+FFFD */
    out = render("\xa3" "a\xc3\xa9", 4, 2, 0, &rc);
    T_ASSERT(out && strcmp(out, "\"a\xe2\x80\xa6\"") == 0);
    free(out);
    out = render("\xa2\xff\xfe", 3, 0, 0, &rc);
    T_ASSERT(out && strcmp(out, "\"\xef\xbf\xbd\xef\xbf\xbd\"") == 0);
    free(out);
}

static uint8_t *nested_arrays(unsigned k, size_t *n)
{
    uint8_t *p = malloc(k + 1);
    memset(p, 0x91, k);
    p[k] = 0xc0;
    *n = k + 1;
    return p;
}

T_TEST(depth)
{
    size_t n;
    uint8_t *p;
    err_t rc;

    p = nested_arrays(MP_MAX_DEPTH, &n);
    char *out = render(p, n, 0, 0, &rc);
    T_OK(rc);
    T_ASSERT(out != NULL && strlen(out) == 2 * MP_MAX_DEPTH + 4);
    free(out);
    free(p);

    p = nested_arrays(MP_MAX_DEPTH + 1, &n);
    T_ERR(json_rc(p, n), ERR_PROTO);
    free(p);
    p = nested_arrays(100, &n);
    T_ERR(json_rc(p, n), ERR_PROTO);
    free(p);

    /* nested maps, and nesting hidden in a non-string key */
    p = malloc(3 * 100 + 1);
    for (int i = 0; i < 100; i++)
        memcpy(p + 3 * i, "\x81\xa1k", 3);
    p[300] = 0xc0;
    T_ERR(json_rc(p, 301), ERR_PROTO);
    for (int i = 0; i < 100; i++)
        p[i] = i % 2 ? 0x91 : 0x81; /* {[{[... : */
    memset(p + 100, 0xc0, 201);
    T_ERR(json_rc(p, 301), ERR_PROTO);
    free(p);
}

T_TEST(malformed)
{
    T_ERR(json_rc("", 0), ERR_PROTO);
    T_ERR(json_rc("\xc1", 1), ERR_PROTO);
    T_ERR(json_rc("\xa5" "ab", 3), ERR_PROTO);
    T_ERR(json_rc("\x92\x01", 2), ERR_PROTO);
    T_ERR(json_rc("\x92\x01\xc1", 3), ERR_PROTO);
    T_ERR(json_rc("\x81\xa1k", 3), ERR_PROTO);     /* key without value */
    T_ERR(json_rc("\x82\xa1k\x01\xa1j", 5), ERR_PROTO);
    T_ERR(json_rc("\x81\xa1k\xc1", 4), ERR_PROTO);
    T_ERR(json_rc("\xdd\xff\xff\xff\xff\xc0\xc0", 7), ERR_PROTO);
    T_ERR(json_rc("\xdf\xff\xff\xff\xff\xc0\xc0", 7), ERR_PROTO);
    T_ERR(json_rc("\xdb\xff\xff\xff\xff" "abc", 8), ERR_PROTO);
    T_ERR(json_rc("\xc6\xff\xff\xff\xff" "abc", 8), ERR_PROTO);
    T_ERR(json_rc("\xc9\xff\xff\xff\xff\x01" "ab", 8), ERR_PROTO);
    T_ERR(json_rc("\xcb\x00\x00", 3), ERR_PROTO);
    T_ERR(json_rc("\xd4\x01", 2), ERR_PROTO);

    /* every strict prefix of a rich object is rejected, nothing leaks */
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 5);
    mp_put_kv_str(&w, "s", "a \"quoted\"\n string");
    mp_put_str(&w, "arr");
    mp_put_array(&w, 4);
    mp_put_int(&w, -300000);
    mp_put_double(&w, 2.5);
    mp_put_bin(&w, "xyz", 3);
    mp_put_raw(&w, "\xd5\x01\x00\x00", 4);
    mp_put_uint(&w, 7); /* a non-string key */
    mp_put_map(&w, 1);
    mp_put_kv_bool(&w, "t", true);
    mp_put_array(&w, 1); /* an array key */
    mp_put_str(&w, "k");
    mp_put_nil(&w);
    mp_put_kv_uint(&w, "big", UINT64_MAX);
    int bad = 0;
    for (size_t len = 0; len < mp_writer_len(&w); len++)
        if (json_rc(mp_writer_data(&w), len) != ERR_PROTO)
            bad++, printf("# prefix %zu accepted\n", len);
    T_EQ(bad, 0);
    T_OK(json_rc(mp_writer_data(&w), mp_writer_len(&w)));
    mp_writer_fini(&w);

    /* one object and nothing after it, as env_decode requires */
    T_ERR(json_rc("\x01\xc1\xff", 3), ERR_PROTO);
}

T_TEST(masked)
{
    struct mp_writer w;

    mp_writer_init(&w);
    mp_put_map(&w, 6);
    mp_put_kv_str(&w, "name", "alice");
    mp_put_kv_str(&w, "api_key", "tr_dev_123");
    mp_put_kv_str(&w, "Authorization", "Bearer abc");
    mp_put_kv_str(&w, "PASSWORD", "hunter2");
    mp_put_str(&w, "signing_tokens");
    mp_put_array(&w, 2);
    mp_put_str(&w, "t1");
    mp_put_str(&w, "t2");
    mp_put_kv_str(&w, "secretive", "s");
    const char *masked = "{\"name\":\"alice\",\"api_key\":\"****\",\"Authorization\":\"****\","
                         "\"PASSWORD\":\"****\",\"signing_tokens\":\"****\",\"secretive\":\"****\"}";
    const char *plain = "{\"name\":\"alice\",\"api_key\":\"tr_dev_123\","
                        "\"Authorization\":\"Bearer abc\",\"PASSWORD\":\"hunter2\","
                        "\"signing_tokens\":[\"t1\",\"t2\"],\"secretive\":\"s\"}";
    T_ASSERT(renders_opt(mp_writer_data(&w), mp_writer_len(&w), 0, 1, masked));
    T_ASSERT(renders_opt(mp_writer_data(&w), mp_writer_len(&w), 0, 0, plain));
    mp_writer_reset(&w);

    /* nested maps are masked too; non-string values are shown */
    mp_put_map(&w, 2);
    mp_put_str(&w, "env");
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "slug", "dev");
    mp_put_kv_str(&w, "token", "x");
    mp_put_kv_uint(&w, "key_count", 3);
    T_ASSERT(w_renders(&w, 0, 1, "{\"env\":{\"slug\":\"dev\",\"token\":\"****\"},\"key_count\":3}"));

    /* max_str does not matter to a masked value; nil is shown */
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "secret", "abcdefgh");
    mp_put_kv_str(&w, "other", NULL);
    T_ASSERT(w_renders(&w, 2, 1, "{\"secret\":\"****\",\"other\":null}"));
    mp_writer_fini(&w);

    /* a malformed masked value is still an error */
    T_ERR(json_rc_masked("\x81\xa5token\xa5" "ab", 10), ERR_PROTO);
    T_ERR(json_rc_masked("\x81\xa5token\x92\xa1x", 10), ERR_PROTO);
    T_ERR(json_rc_masked("\x81\xa5token\x91\xc1", 9), ERR_PROTO);
    T_ERR(json_rc_masked("", 0), ERR_PROTO);
    T_OK(json_rc_masked("\x81\xa5token\xa1x", 9));
}

int main(void)
{
    T_RUN(scalars);
    T_RUN(strings);
    T_RUN(bin_and_ext);
    T_RUN(containers);
    T_RUN(non_string_keys);
    T_RUN(max_str);
    T_RUN(depth);
    T_RUN(malformed);
    T_RUN(masked);
    return T_DONE();
}
