/*
 * jbuf_test.c - the JSON string encoders of proto/jbuf.h: jbuf_str (lossy,
 * for display), jbuf_bytes (lossless: \u0000, \udcXX for bytes that are not
 * UTF-8) and base64 both ways, checked against what a reader decodes.
 */
#include <stdlib.h>

#include "jbuf.h"
#include "t.h"

/* s[0..n) through f, as a NUL-terminated string the caller frees */
static char *enc(void (*f)(struct jbuf *, const char *, size_t), const char *s, size_t n)
{
    struct jbuf b = {0};
    f(&b, s, n);
    if (b.err != OK)
        abort();
    return b.p;
}

static void str0(struct jbuf *b, const char *s, size_t n)
{
    jbuf_str(b, s, n, 0);
}

#define ENC_IS(f, lit, want)                                                                       \
    do {                                                                                           \
        char *got_ = enc(f, lit, sizeof(lit) - 1);                                                 \
        T_STREQ(got_, want);                                                                       \
        free(got_);                                                                                \
    } while (0)

T_TEST(bytes_text)
{
    ENC_IS(jbuf_bytes, "", "\"\"");
    ENC_IS(jbuf_bytes, "hello", "\"hello\"");
    ENC_IS(jbuf_bytes, "a\"b\\c\n\x1f", "\"a\\\"b\\\\c\\u000a\\u001f\"");
    /* valid UTF-8 goes as it is */
    ENC_IS(jbuf_bytes, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
           "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
}

T_TEST(bytes_nul)
{
    ENC_IS(jbuf_bytes, "a\0b", "\"a\\u0000b\"");
    ENC_IS(jbuf_bytes, "\0", "\"\\u0000\"");
}

T_TEST(bytes_invalid)
{
    /* each byte not part of valid UTF-8 is \udcXX, as Python's surrogateescape decodes it */
    ENC_IS(jbuf_bytes, "\xff\xfe", "\"\\udcff\\udcfe\"");
    ENC_IS(jbuf_bytes, "x\x80y", "\"x\\udc80y\"");
    /* a cut sequence: both bytes; an overlong form; a surrogate; beyond U+10FFFF */
    ENC_IS(jbuf_bytes, "\xe2\x82", "\"\\udce2\\udc82\"");
    ENC_IS(jbuf_bytes, "\xc0\x80", "\"\\udcc0\\udc80\"");
    ENC_IS(jbuf_bytes, "\xed\xa0\x80", "\"\\udced\\udca0\\udc80\"");
    ENC_IS(jbuf_bytes, "\xf4\x90\x80\x80", "\"\\udcf4\\udc90\\udc80\\udc80\"");
    /* valid text around it is untouched */
    ENC_IS(jbuf_bytes, "\xc3\xa9\xc3", "\"\xc3\xa9\\udcc3\"");
}

T_TEST(str_lossy)
{
    /* jbuf_str (display) keeps its U+FFFD replacement and its cut */
    ENC_IS(str0, "\xff" "a\0", "\"\xef\xbf\xbd" "a\\u0000\"");
    struct jbuf b = {0};
    jbuf_str(&b, "abcdef", 6, 3);
    T_STREQ(b.p, "\"abc\xe2\x80\xa6\"");
    jbuf_free(&b);
}

T_TEST(base64_encode)
{
    ENC_IS(jbuf_base64, "", "\"\"");
    ENC_IS(jbuf_base64, "f", "\"Zg==\"");
    ENC_IS(jbuf_base64, "fo", "\"Zm8=\"");
    ENC_IS(jbuf_base64, "foo", "\"Zm9v\"");
    ENC_IS(jbuf_base64, "foobar", "\"Zm9vYmFy\"");
    ENC_IS(jbuf_base64, "\xff\xfe\0", "\"//4A\"");
}

T_TEST(base64_roundtrip)
{
    /* every byte value, and lengths across the encoder's internal flush */
    char in[1000], out[1000];
    size_t len;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)(i * 7);
    for (size_t n = 0; n <= sizeof(in); n += (n < 10 ? 1 : 97)) {
        struct jbuf b = {0};
        jbuf_base64(&b, in, n);
        T_EQ(b.n, 2 + (n + 2) / 3 * 4);
        T_OK(jbuf_base64_decode(b.p + 1, b.n - 2, out, &len));
        T_EQ(len, n);
        T_ASSERT(memcmp(in, out, n) == 0);
        T_ASSERT(len <= JBUF_BASE64_DECODED_MAX(b.n - 2));
        jbuf_free(&b);
    }
}

T_TEST(base64_decode_bad)
{
    char out[16];
    size_t len;
    const char *bad[] = {"a", "abc", "ab=c", "a===", "====", "Zg==Zg==", "Z*==", "Zm9v\n", "Zg= "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        T_ERR(jbuf_base64_decode(bad[i], strlen(bad[i]), out, &len), ERR_INVAL);
    T_OK(jbuf_base64_decode("", 0, out, &len));
    T_EQ(len, 0u);
}

int main(void)
{
    T_RUN(bytes_text);
    T_RUN(bytes_nul);
    T_RUN(bytes_invalid);
    T_RUN(str_lossy);
    T_RUN(base64_encode);
    T_RUN(base64_roundtrip);
    T_RUN(base64_decode_bad);
    return T_DONE();
}
