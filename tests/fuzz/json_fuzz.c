/*
 * json_fuzz.c - libFuzzer target for the JSON pieces every route's body and every record
 * passes through (proto/jscan.c, proto/jbuf.c): jscan_members (the validating scanner /records
 * reads record bodies with), jbuf_bytes, jbuf_str, jbuf_base64, jbuf_base64_decode and
 * jbuf_utf8_len. The bodies themselves are parsed by jansson (fed by request_fuzz).
 *
 * Feeds: the whole input to each of them (jscan: as a JSON text; the others: as bytes).
 * Checks: jscan and jansson agree on what is a JSON object (jansson may refuse only for what
 * it cannot represent: a lone surrogate, a number out of range) and a member's span is that
 * member's value; jbuf_utf8_len agrees with a reference UTF-8 decoder (Unicode table 3-7);
 * jbuf_bytes writes valid JSON that decodes back to exactly the input bytes (\udcXX for a byte
 * that is not UTF-8); jbuf_str writes valid UTF-8 JSON, the input itself when it was valid
 * UTF-8, cut on the last character boundary within max with an ellipsis; base64 encoded then
 * decoded is the input, and whatever decodes re-encodes to text decoding the same.
 */
#include <jansson.h>

#include "fuzz.h"
#include "jbuf.h"
#include "jscan.h"

/* Length of the well-formed UTF-8 sequence at s, or 0 (Unicode 15, table 3-7). */
static size_t ref_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;
    if (c <= 0x7f)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = ref_utf8_len(s + i, n - i)))
            return false;
    return true;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Decodes the JSON string jbuf_bytes writes, strictly: its escapes only (\" \\ \u00XX below
 * 0x20, \udcXX for a byte); false on anything else.
 */
static bool decode_bytes(const char *s, size_t n, unsigned char *out, size_t *len)
{
    size_t o = 0;
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return false;
    for (size_t i = 1; i + 1 < n; i++) {
        if (s[i] != '\\') {
            out[o++] = (unsigned char)s[i];
            continue;
        }
        if (i + 2 >= n)
            return false;
        if (s[i + 1] == '"' || s[i + 1] == '\\') {
            out[o++] = (unsigned char)s[i + 1];
            i++;
            continue;
        }
        if (s[i + 1] != 'u' || i + 6 >= n)
            return false;
        int a = hexval(s[i + 2]), b = hexval(s[i + 3]), c = hexval(s[i + 4]), d = hexval(s[i + 5]);
        if (a < 0 || b < 0 || c < 0 || d < 0)
            return false;
        unsigned v = (unsigned)(a << 12 | b << 8 | c << 4 | d);
        if (v < 0x20)
            out[o++] = (unsigned char)v;
        else if (v >= 0xdc80 && v <= 0xdcff)
            out[o++] = (unsigned char)(v & 0xff);
        else
            return false;
        i += 5;
    }
    *len = o;
    return true;
}

static void check_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(jbuf_utf8_len(s + i, n - i) == ref_utf8_len(s + i, n - i));
}

static void check_bytes(const char *s, size_t n)
{
    struct jbuf b = {0};
    size_t len;
    jbuf_bytes(&b, s, n);
    FUZZ_CHECK(b.err == OK && b.p);
    FUZZ_CHECK(utf8_valid((const unsigned char *)b.p, b.n)); /* JSON text is UTF-8 */
    FUZZ_CHECK(fuzz_json_valid(b.p, b.n));
    unsigned char *back = malloc(b.n + 1);
    if (!back)
        abort();
    FUZZ_CHECK(decode_bytes(b.p, b.n, back, &len));
    FUZZ_CHECK(len == n && (n == 0 || memcmp(back, s, n) == 0));
    free(back);
    jbuf_free(&b);
}

static void check_str(const char *s, size_t n, size_t max)
{
    struct jbuf b = {0};
    jbuf_str(&b, s, n, max);
    FUZZ_CHECK(b.err == OK && b.p);
    FUZZ_CHECK(utf8_valid((const unsigned char *)b.p, b.n));
    json_error_t e;
    json_t *j = json_loadb(b.p, b.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    FUZZ_CHECK(json_is_string(j));
    if (utf8_valid((const unsigned char *)s, n)) {
        /* the longest prefix of whole characters within max, and the ellipsis when cut */
        size_t keep = n;
        if (max && n > max) {
            keep = 0;
            for (size_t i = 0, len; i < n; i += len) {
                len = ref_utf8_len((const unsigned char *)s + i, n - i);
                if (i + len > max)
                    break;
                keep = i + len;
            }
        }
        size_t jn = json_string_length(j);
        const char *js = json_string_value(j);
        bool cut = keep < n;
        FUZZ_CHECK(jn == keep + (cut ? 3 : 0));
        FUZZ_CHECK(memcmp(js, s, keep) == 0);
        FUZZ_CHECK(!cut || memcmp(js + keep, "\xe2\x80\xa6", 3) == 0);
    }
    json_decref(j);
    jbuf_free(&b);
}

static void check_base64(const char *s, size_t n)
{
    struct jbuf b = {0};
    size_t len, len2;
    jbuf_base64(&b, s, n);
    FUZZ_CHECK(b.err == OK && b.n >= 2 && b.p[0] == '"' && b.p[b.n - 1] == '"');
    FUZZ_CHECK((b.n - 2) % 4 == 0 && (b.n - 2) / 4 == (n + 2) / 3);
    char *out = malloc(JBUF_BASE64_DECODED_MAX(b.n) + 1);
    if (!out)
        abort();
    FUZZ_CHECK(jbuf_base64_decode(b.p + 1, b.n - 2, out, &len) == OK);
    FUZZ_CHECK(len == n && (n == 0 || memcmp(out, s, n) == 0));
    free(out);
    jbuf_free(&b);

    /* the input as base64 text: what decodes has its length, and decodes the same again */
    out = malloc(JBUF_BASE64_DECODED_MAX(n) + 1);
    if (!out)
        abort();
    if (jbuf_base64_decode(s, n, out, &len) == OK) {
        size_t pad = n ? (s[n - 1] == '=') + (n > 1 && s[n - 1] == '=' && s[n - 2] == '=') : 0;
        FUZZ_CHECK(n % 4 == 0 && len == n / 4 * 3 - pad);
        jbuf_base64(&b, out, len);
        char *again = malloc(JBUF_BASE64_DECODED_MAX(b.n) + 1);
        if (!again)
            abort();
        FUZZ_CHECK(jbuf_base64_decode(b.p + 1, b.n - 2, again, &len2) == OK);
        FUZZ_CHECK(len2 == len && (len == 0 || memcmp(again, out, len) == 0));
        free(again);
        jbuf_free(&b);
    }
    free(out);
}

/* Nesting of a jansson value, counting containers as jscan does. */
static unsigned depth_of(json_t *v)
{
    unsigned d = 0, m;
    size_t i;
    const char *k;
    json_t *e;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e) if ((m = depth_of(e)) > d) d = m;
        return d + 1;
    }
    if (json_is_object(v)) {
        json_object_foreach(v, k, e) if ((m = depth_of(e)) > d) d = m;
        return d + 1;
    }
    return 0;
}

static void check_scan(const char *s, size_t n)
{
    static const char *const fixed[] = {"data", "id", "a", ""};
    const char *names[5];
    struct slice vals[5];
    size_t nn = 0;
    json_error_t e;
    json_t *j = json_loadb(s, n, JSON_ALLOW_NUL, &e);
    for (size_t i = 0; i < 4; i++)
        names[nn++] = fixed[i];
    void *it = json_is_object(j) ? json_object_iter(j) : NULL;
    if (it && strlen(json_object_iter_key(it)) == json_object_iter_key_len(it))
        names[nn++] = json_object_iter_key(it); /* a name the text holds */
    err_t rc = jscan_members(s, n, names, vals, nn);
    bool nul = n && memchr(s, '\0', n); /* jansson takes `{"a":1<NUL>}` */

    if (json_is_object(j) && depth_of(j) <= JSCAN_DEPTH_MAX && !nul)
        FUZZ_CHECK(rc == OK);
    if (rc == OK && !json_is_object(j))
        /* what JSON allows but jansson cannot hold (a \u0000 in a name among them) */
        FUZZ_CHECK(j == NULL && (strstr(e.text, "Unicode") || strstr(e.text, "too big") ||
                                 strstr(e.text, "overflow") || strstr(e.text, "NUL byte")));
    if (rc != OK) {
        for (size_t i = 0; i < nn; i++)
            FUZZ_CHECK(vals[i].p == NULL && vals[i].n == 0);
        json_decref(j);
        return;
    }
    bool escapes = memchr(s, '\\', n) != NULL; /* names are compared as written */
    for (size_t i = 0; i < nn; i++) {
        if (!vals[i].p)
            continue;
        FUZZ_CHECK(vals[i].p >= s && vals[i].p + vals[i].n <= s + n);
        FUZZ_CHECK(fuzz_json_valid(vals[i].p, vals[i].n));
        if (j && !escapes) {
            json_t *mine = json_loadb(vals[i].p, vals[i].n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            FUZZ_CHECK(json_equal(mine, json_object_get(j, names[i])));
            json_decref(mine);
        }
    }
    if (j && !escapes)
        for (size_t i = 0; i < nn; i++)
            FUZZ_CHECK((vals[i].p != NULL) == (json_object_get(j, names[i]) != NULL));
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_utf8(data, size);
    check_scan(s, size);
    check_bytes(s, size);
    check_str(s, size, 0);
    check_str(s, size, size ? data[0] % 32 + 1 : 1);
    check_base64(s, size);
    return 0;
}
