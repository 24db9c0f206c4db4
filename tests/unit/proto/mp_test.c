/*
 * mp_test.c - tests the bounded msgpack reader and the writer (proto/mp.h):
 * round trips of every type and encoding width, mp_peek/mp_skip, hostile and
 * truncated input, the depth cap, mp_map_find and the slice helpers.
 */
#include <math.h>
#include <stdlib.h>

#include "mp.h"
#include "t.h"

/* A heap copy of exactly n bytes, so ASan catches any read past the end. */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

/* Reader over a writer's bytes. */
static void reader_of(struct mp_reader *r, const struct mp_writer *w)
{
    mp_reader_init(r, mp_writer_data(w), mp_writer_len(w));
}

T_TEST(nil_bool)
{
    struct mp_writer w;
    struct mp_reader r;
    enum mp_type t;
    bool b = false;

    mp_writer_init(&w);
    mp_put_nil(&w);
    mp_put_bool(&w, true);
    mp_put_bool(&w, false);
    mp_put_str(&w, NULL); /* NULL writes nil */
    T_OK(mp_writer_err(&w));
    T_EQ(mp_writer_len(&w), 4u);
    T_MEMEQ(mp_writer_data(&w), "\xc0\xc3\xc2\xc0", 4);

    reader_of(&r, &w);
    T_OK(mp_peek(&r, &t));
    T_EQ(t, MP_NIL);
    T_OK(mp_read_nil(&r));
    T_OK(mp_peek(&r, &t));
    T_EQ(t, MP_BOOL);
    T_OK(mp_read_bool(&r, &b));
    T_EQ(b, true);
    T_OK(mp_read_bool(&r, &b));
    T_EQ(b, false);
    T_OK(mp_read_nil(&r));
    T_EQ(mp_reader_left(&r), 0u);
    T_ERR(mp_read_nil(&r), ERR_PROTO);
    T_ERR(mp_peek(&r, &t), ERR_PROTO);
    mp_writer_fini(&w);
}

T_TEST(uint_roundtrip)
{
    static const struct {
        uint64_t v;
        size_t len;
        uint8_t head;
    } cases[] = {
        {0, 1, 0x00},
        {1, 1, 0x01},
        {127, 1, 0x7f},
        {128, 2, 0xcc},
        {255, 2, 0xcc},
        {256, 3, 0xcd},
        {65535, 3, 0xcd},
        {65536, 5, 0xce},
        {UINT32_MAX, 5, 0xce},
        {UINT64_C(1) << 32, 9, 0xcf},
        {(uint64_t)INT64_MAX, 9, 0xcf},
        {UINT64_C(1) << 63, 9, 0xcf},
        {UINT64_MAX, 9, 0xcf},
    };
    int bad = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mp_writer w;
        struct mp_reader r;
        enum mp_type t = MP_EXT;
        uint64_t u = 0;
        int64_t s = 0;
        double d = 0;

        mp_writer_init(&w);
        mp_put_uint(&w, cases[i].v);
        const uint8_t *p = mp_writer_data(&w);
        if (mp_writer_err(&w) != OK || mp_writer_len(&w) != cases[i].len || p[0] != cases[i].head)
            bad++, printf("# uint %" PRIu64 ": bad encoding\n", cases[i].v);

        reader_of(&r, &w);
        if (mp_peek(&r, &t) != OK || t != MP_UINT)
            bad++, printf("# uint %" PRIu64 ": peek\n", cases[i].v);
        if (mp_read_uint(&r, &u) != OK || u != cases[i].v || mp_reader_left(&r) != 0)
            bad++, printf("# uint %" PRIu64 ": read_uint\n", cases[i].v);

        reader_of(&r, &w);
        err_t rc = mp_read_int(&r, &s);
        if (cases[i].v <= INT64_MAX) {
            if (rc != OK || (uint64_t)s != cases[i].v)
                bad++, printf("# uint %" PRIu64 ": read_int\n", cases[i].v);
        } else if (rc != ERR_PROTO || mp_reader_left(&r) != cases[i].len) {
            bad++, printf("# uint %" PRIu64 ": read_int must fail in place\n", cases[i].v);
        }

        reader_of(&r, &w);
        if (mp_read_float(&r, &d) != OK || d != (double)cases[i].v)
            bad++, printf("# uint %" PRIu64 ": read_float\n", cases[i].v);
        mp_writer_fini(&w);
    }
    T_EQ(bad, 0);
}

T_TEST(int_roundtrip)
{
    static const struct {
        int64_t v;
        size_t len;
        uint8_t head;
    } cases[] = {
        {-1, 1, 0xff},
        {-32, 1, 0xe0},
        {-33, 2, 0xd0},
        {-128, 2, 0xd0},
        {-129, 3, 0xd1},
        {-32768, 3, 0xd1},
        {-32769, 5, 0xd2},
        {INT32_MIN, 5, 0xd2},
        {(int64_t)INT32_MIN - 1, 9, 0xd3},
        {INT64_MIN + 1, 9, 0xd3},
        {INT64_MIN, 9, 0xd3},
    };
    int bad = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mp_writer w;
        struct mp_reader r;
        enum mp_type t = MP_EXT;
        uint64_t u = 0;
        int64_t s = 0;
        double d = 0;

        mp_writer_init(&w);
        mp_put_int(&w, cases[i].v);
        const uint8_t *p = mp_writer_data(&w);
        if (mp_writer_err(&w) != OK || mp_writer_len(&w) != cases[i].len || p[0] != cases[i].head)
            bad++, printf("# int %" PRId64 ": bad encoding\n", cases[i].v);

        reader_of(&r, &w);
        if (mp_peek(&r, &t) != OK || t != MP_INT)
            bad++, printf("# int %" PRId64 ": peek\n", cases[i].v);
        if (mp_read_uint(&r, &u) != ERR_PROTO || mp_reader_left(&r) != cases[i].len)
            bad++, printf("# int %" PRId64 ": read_uint must fail in place\n", cases[i].v);
        if (mp_read_int(&r, &s) != OK || s != cases[i].v || mp_reader_left(&r) != 0)
            bad++, printf("# int %" PRId64 ": read_int\n", cases[i].v);

        reader_of(&r, &w);
        if (mp_read_float(&r, &d) != OK || d != (double)cases[i].v)
            bad++, printf("# int %" PRId64 ": read_float\n", cases[i].v);
        mp_writer_fini(&w);
    }
    T_EQ(bad, 0);

    /* mp_put_int of a non-negative value uses the unsigned encodings. */
    struct mp_writer w;
    struct mp_reader r;
    uint64_t u = 0;
    mp_writer_init(&w);
    mp_put_int(&w, 200);
    mp_put_int(&w, INT64_MAX);
    reader_of(&r, &w);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, 200u);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, (uint64_t)INT64_MAX);
    mp_writer_fini(&w);
}

/* Signed encodings of any value and unsigned encodings beyond INT64_MAX, written by hand. */
T_TEST(int_encodings_by_hand)
{
    struct mp_reader r;
    enum mp_type t;
    uint64_t u = 0;
    int64_t s = 0;

    /* int8 holding a non-negative value is an MP_UINT */
    mp_reader_init(&r, "\xd0\x05", 2);
    T_OK(mp_peek(&r, &t));
    T_EQ(t, MP_UINT);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, 5u);

    mp_reader_init(&r, "\xd0\xff", 2);
    T_OK(mp_read_int(&r, &s));
    T_EQ(s, -1);

    mp_reader_init(&r, "\xd1\xff\x7f", 3);
    T_OK(mp_read_int(&r, &s));
    T_EQ(s, -129);

    mp_reader_init(&r, "\xd2\x80\x00\x00\x00", 5);
    T_OK(mp_read_int(&r, &s));
    T_EQ(s, INT32_MIN);

    mp_reader_init(&r, "\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", 9);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, (uint64_t)INT64_MAX);

    mp_reader_init(&r, "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    T_OK(mp_read_int(&r, &s));
    T_EQ(s, INT64_MIN);

    /* uint64 2^63 and UINT64_MAX do not fit int64: read_int fails and leaves the reader */
    mp_reader_init(&r, "\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    T_ERR(mp_read_int(&r, &s), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 9u);
    mp_reader_init(&r, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    T_ERR(mp_read_int(&r, &s), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 9u);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, UINT64_MAX);

    /* a non-canonical uint64 holding a small value is fine */
    mp_reader_init(&r, "\xcf\x00\x00\x00\x00\x00\x00\x00\x07", 9);
    T_OK(mp_read_int(&r, &s));
    T_EQ(s, 7);
}

T_TEST(float_roundtrip)
{
    static const double vals[] = {0.0, -0.0, 1.5, -3.25, 1e300, -1e-300, 3.141592653589793};
    struct mp_writer w;
    struct mp_reader r;
    enum mp_type t;
    double d = 0;
    int64_t s;
    int bad = 0;

    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        mp_writer_init(&w);
        mp_put_double(&w, vals[i]);
        reader_of(&r, &w);
        if (mp_writer_len(&w) != 9 || ((const uint8_t *)mp_writer_data(&w))[0] != 0xcb)
            bad++, printf("# double %g: encoding\n", vals[i]);
        if (mp_peek(&r, &t) != OK || t != MP_FLOAT)
            bad++, printf("# double %g: peek\n", vals[i]);
        if (mp_read_float(&r, &d) != OK || memcmp(&d, &vals[i], sizeof(d)) != 0)
            bad++, printf("# double %g: read_float\n", vals[i]);
        mp_writer_fini(&w);
    }
    T_EQ(bad, 0);

    mp_writer_init(&w);
    mp_put_double(&w, NAN);
    mp_put_double(&w, INFINITY);
    mp_put_double(&w, -INFINITY);
    reader_of(&r, &w);
    T_OK(mp_read_float(&r, &d));
    T_ASSERT(isnan(d));
    T_OK(mp_read_float(&r, &d));
    T_ASSERT(isinf(d) && d > 0);
    T_OK(mp_read_float(&r, &d));
    T_ASSERT(isinf(d) && d < 0);
    mp_writer_fini(&w);

    /* float32, by hand: 1.5f and 3.14159265f */
    mp_reader_init(&r, "\xca\x3f\xc0\x00\x00", 5);
    T_OK(mp_peek(&r, &t));
    T_EQ(t, MP_FLOAT);
    T_OK(mp_read_float(&r, &d));
    T_ASSERT(d == 1.5);
    mp_reader_init(&r, "\xca\x40\x49\x0f\xdb", 5);
    T_OK(mp_read_float(&r, &d));
    T_ASSERT(d == (double)3.14159265f);
    T_EQ(mp_reader_left(&r), 0u);

    /* a float is not an integer */
    mp_reader_init(&r, "\xca\x3f\xc0\x00\x00", 5);
    T_ERR(mp_read_int(&r, &s), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 5u);

    /* truncated floats */
    mp_reader_init(&r, "\xca\x3f\xc0\x00", 4);
    T_ERR(mp_read_float(&r, &d), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 4u);
    mp_reader_init(&r, "\xcb\x3f\xf8\x00\x00\x00\x00\x00", 8);
    T_ERR(mp_read_float(&r, &d), ERR_PROTO);
}

static void fill_pattern(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7) % 26);
}

T_TEST(str_roundtrip)
{
    static const struct {
        size_t n, head_len;
        uint8_t head;
    } cases[] = {
        {0, 1, 0xa0},      {1, 1, 0xa1},     {31, 1, 0xbf},     {32, 2, 0xd9},
        {255, 2, 0xd9},    {256, 3, 0xda},   {65535, 3, 0xda},  {65536, 5, 0xdb},
        {100000, 5, 0xdb},
    };
    char *src = malloc(100000);
    int bad = 0;

    fill_pattern(src, 100000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mp_writer w;
        struct mp_reader r;
        struct slice s = SLICE_NULL;
        enum mp_type t;
        size_t n = cases[i].n;

        mp_writer_init(&w);
        mp_put_strn(&w, src, n);
        const uint8_t *p = mp_writer_data(&w);
        if (mp_writer_err(&w) != OK || mp_writer_len(&w) != cases[i].head_len + n ||
            p[0] != cases[i].head)
            bad++, printf("# str %zu: encoding\n", n);

        reader_of(&r, &w);
        if (mp_peek(&r, &t) != OK || t != MP_STR)
            bad++, printf("# str %zu: peek\n", n);
        if (mp_read_str(&r, &s) != OK || s.n != n || s.p != (const char *)p + cases[i].head_len ||
            (n && memcmp(s.p, src, n) != 0) || mp_reader_left(&r) != 0)
            bad++, printf("# str %zu: read_str\n", n);

        /* a strict prefix of the encoding fails without moving the reader */
        uint8_t *cut = dup_exact(p, mp_writer_len(&w) - 1);
        mp_reader_init(&r, cut, mp_writer_len(&w) - 1);
        if (mp_read_str(&r, &s) != ERR_PROTO || mp_reader_left(&r) != mp_writer_len(&w) - 1)
            bad++, printf("# str %zu: truncated\n", n);
        free(cut);
        mp_writer_fini(&w);
    }
    T_EQ(bad, 0);

    /* mp_put_str uses strlen */
    struct mp_writer w;
    struct mp_reader r;
    struct slice s;
    mp_writer_init(&w);
    mp_put_str(&w, "hello");
    reader_of(&r, &w);
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "hello"));
    mp_writer_fini(&w);
    free(src);
}

T_TEST(bin_roundtrip)
{
    static const struct {
        size_t n, head_len;
        uint8_t head;
    } cases[] = {
        {0, 2, 0xc4},   {1, 2, 0xc4},     {255, 2, 0xc4},   {256, 3, 0xc5},
        {65535, 3, 0xc5}, {65536, 5, 0xc6},
    };
    char *src = malloc(65536);
    int bad = 0;

    for (size_t i = 0; i < 65536; i++)
        src[i] = (char)(i * 31 + 7); /* every byte value, including 0x00 and 0xc1 */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mp_writer w;
        struct mp_reader r;
        struct slice s;
        enum mp_type t;
        size_t n = cases[i].n;

        mp_writer_init(&w);
        mp_put_bin(&w, src, n);
        const uint8_t *p = mp_writer_data(&w);
        if (mp_writer_err(&w) != OK || mp_writer_len(&w) != cases[i].head_len + n ||
            p[0] != cases[i].head)
            bad++, printf("# bin %zu: encoding\n", n);
        reader_of(&r, &w);
        if (mp_peek(&r, &t) != OK || t != MP_BIN)
            bad++, printf("# bin %zu: peek\n", n);
        if (mp_read_str(&r, &s) != ERR_PROTO || mp_reader_left(&r) != mp_writer_len(&w))
            bad++, printf("# bin %zu: read_str must fail in place\n", n);
        if (mp_read_bin(&r, &s) != OK || s.n != n || (n && memcmp(s.p, src, n) != 0) ||
            mp_reader_left(&r) != 0)
            bad++, printf("# bin %zu: read_bin\n", n);
        mp_writer_fini(&w);
    }
    T_EQ(bad, 0);

    /* a str is not a bin */
    struct mp_reader r;
    struct slice s;
    mp_reader_init(&r, "\xa1x", 2);
    T_ERR(mp_read_bin(&r, &s), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 2u);
    free(src);
}

T_TEST(str_or_nil)
{
    struct mp_reader r;
    struct slice s = SLICE_LIT("junk");

    mp_reader_init(&r, "\xc0\xa2hi\x07", 5);
    T_OK(mp_read_str_or_nil(&r, &s));
    T_ASSERT(s.p == NULL && s.n == 0);
    T_OK(mp_read_str_or_nil(&r, &s));
    T_ASSERT(slice_eq(s, "hi"));
    T_ERR(mp_read_str_or_nil(&r, &s), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 1u);
}

T_TEST(containers)
{
    static const struct {
        uint32_t n;
        size_t head_len;
        uint8_t array_head, map_head;
    } cases[] = {
        {0, 1, 0x90, 0x80},     {1, 1, 0x91, 0x81},     {15, 1, 0x9f, 0x8f},
        {16, 3, 0xdc, 0xde},    {65535, 3, 0xdc, 0xde}, {65536, 5, 0xdd, 0xdf},
    };
    int bad = 0;

    for (int map = 0; map <= 1; map++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct mp_writer w;
            struct mp_reader r;
            struct slice raw;
            enum mp_type t;
            uint32_t n = 0, els = cases[i].n * (map ? 2u : 1u);
            uint8_t head = map ? cases[i].map_head : cases[i].array_head;

            mp_writer_init(&w);
            if (map)
                mp_put_map(&w, cases[i].n);
            else
                mp_put_array(&w, cases[i].n);
            for (uint32_t k = 0; k < els; k++)
                mp_put_nil(&w);
            const uint8_t *p = mp_writer_data(&w);
            if (mp_writer_err(&w) != OK || mp_writer_len(&w) != cases[i].head_len + els ||
                p[0] != head)
                bad++, printf("# %s %u: encoding %02x\n", map ? "map" : "array", cases[i].n, p[0]);

            reader_of(&r, &w);
            if (mp_peek(&r, &t) != OK || t != (map ? MP_MAP : MP_ARRAY))
                bad++, printf("# %s %u: peek\n", map ? "map" : "array", cases[i].n);
            err_t rc = map ? mp_read_array(&r, &n) : mp_read_map(&r, &n);
            if (rc != ERR_PROTO || mp_reader_left(&r) != mp_writer_len(&w))
                bad++, printf("# %s %u: wrong container must fail\n", map ? "map" : "array", cases[i].n);
            rc = map ? mp_read_map(&r, &n) : mp_read_array(&r, &n);
            if (rc != OK || n != cases[i].n || mp_reader_left(&r) != els)
                bad++, printf("# %s %u: read\n", map ? "map" : "array", cases[i].n);

            reader_of(&r, &w);
            if (mp_skip(&r, &raw) != OK || raw.p != (const char *)p || raw.n != mp_writer_len(&w))
                bad++, printf("# %s %u: skip\n", map ? "map" : "array", cases[i].n);
            mp_writer_fini(&w);
        }
    }
    T_EQ(bad, 0);
}

/* {"a":[1,{"b":nil}],"c":{"d":[true,-1.5,"x"]},"e":bin(2)} */
static void put_nested(struct mp_writer *w)
{
    mp_put_map(w, 3);
    mp_put_str(w, "a");
    mp_put_array(w, 2);
    mp_put_uint(w, 1);
    mp_put_map(w, 1);
    mp_put_str(w, "b");
    mp_put_nil(w);
    mp_put_str(w, "c");
    mp_put_map(w, 1);
    mp_put_str(w, "d");
    mp_put_array(w, 3);
    mp_put_bool(w, true);
    mp_put_double(w, -1.5);
    mp_put_str(w, "x");
    mp_put_str(w, "e");
    mp_put_bin(w, "\x00\xc1", 2);
}

T_TEST(nested_roundtrip)
{
    struct mp_writer w;
    struct mp_reader r;
    struct slice s;
    uint32_t n;
    uint64_t u;
    bool b;
    double d;

    mp_writer_init(&w);
    put_nested(&w);
    T_OK(mp_writer_err(&w));
    reader_of(&r, &w);
    T_OK(mp_read_map(&r, &n));
    T_EQ(n, 3u);
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "a"));
    T_OK(mp_read_array(&r, &n));
    T_EQ(n, 2u);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, 1u);
    T_OK(mp_read_map(&r, &n));
    T_EQ(n, 1u);
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "b"));
    T_OK(mp_read_nil(&r));
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "c"));
    T_OK(mp_read_map(&r, &n));
    T_EQ(n, 1u);
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "d"));
    T_OK(mp_read_array(&r, &n));
    T_EQ(n, 3u);
    T_OK(mp_read_bool(&r, &b));
    T_EQ(b, true);
    T_OK(mp_read_float(&r, &d));
    T_ASSERT(d == -1.5);
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "x"));
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "e"));
    T_OK(mp_read_bin(&r, &s));
    T_ASSERT(s.n == 2 && memcmp(s.p, "\x00\xc1", 2) == 0);
    T_EQ(mp_reader_left(&r), 0u);
    mp_writer_fini(&w);
}

T_TEST(ext)
{
    static const struct {
        const char *p;
        size_t n;
    } cases[] = {
        {"\xd4\x01\xaa", 3},
        {"\xd5\x01\xaa\xbb", 4},
        {"\xd6\x01\x01\x02\x03\x04", 6},
        {"\xd7\x01\x01\x02\x03\x04\x05\x06\x07\x08", 10},
        {"\xd8\x01" "0123456789abcdef", 18},
        {"\xc7\x00\x05", 3},
        {"\xc7\x03\x05" "abc", 6},
        {"\xc8\x00\x02\x07xy", 6},
        {"\xc9\x00\x00\x00\x01\x07x", 7},
    };
    int bad = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mp_reader r;
        struct slice raw;
        enum mp_type t;
        uint8_t *buf = dup_exact(cases[i].p, cases[i].n);

        mp_reader_init(&r, buf, cases[i].n);
        if (mp_peek(&r, &t) != OK || t != MP_EXT)
            bad++, printf("# ext %zu: peek\n", i);
        if (mp_skip(&r, &raw) != OK || raw.n != cases[i].n || mp_reader_left(&r) != 0)
            bad++, printf("# ext %zu: skip\n", i);
        /* one byte short */
        mp_reader_init(&r, buf, cases[i].n - 1);
        if (mp_skip(&r, &raw) != ERR_PROTO || mp_reader_left(&r) != cases[i].n - 1)
            bad++, printf("# ext %zu: truncated skip\n", i);
        free(buf);
    }
    T_EQ(bad, 0);
}

T_TEST(peek_does_not_consume)
{
    struct mp_reader r;
    enum mp_type t;
    static const struct {
        const char *p;
        size_t n;
        enum mp_type t;
    } cases[] = {
        {"\xc0", 1, MP_NIL},    {"\xc2", 1, MP_BOOL},         {"\x05", 1, MP_UINT},
        {"\xe5", 1, MP_INT},    {"\xca\0\0\0\0", 5, MP_FLOAT}, {"\xa1z", 2, MP_STR},
        {"\xc4\x00", 2, MP_BIN}, {"\x91\xc0", 2, MP_ARRAY},     {"\x81\xc0\xc0", 3, MP_MAP},
        {"\xd4\x00\x00", 3, MP_EXT},
    };
    int bad = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mp_reader_init(&r, cases[i].p, cases[i].n);
        if (mp_peek(&r, &t) != OK || t != cases[i].t || mp_reader_left(&r) != cases[i].n)
            bad++, printf("# peek case %zu\n", i);
    }
    T_EQ(bad, 0);

    mp_reader_init(&r, "", 0);
    T_ERR(mp_peek(&r, &t), ERR_PROTO);
    mp_reader_init(&r, "\xc1", 1);
    T_ERR(mp_peek(&r, &t), ERR_PROTO);
    /* peek validates the head: a str whose payload is missing is not peekable */
    mp_reader_init(&r, "\xa5" "ab", 3);
    T_ERR(mp_peek(&r, &t), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 3u);
}

T_TEST(skip_raw_slice)
{
    struct mp_writer w, inner;
    struct mp_reader r;
    struct slice raw;
    uint64_t u;
    uint32_t n;

    mp_writer_init(&inner);
    put_nested(&inner);
    mp_writer_init(&w);
    mp_put_array(&w, 3);
    mp_put_uint(&w, 300);
    mp_put_raw(&w, mp_writer_data(&inner), mp_writer_len(&inner));
    mp_put_str(&w, "tail");
    T_OK(mp_writer_err(&w));

    reader_of(&r, &w);
    T_OK(mp_read_array(&r, &n));
    T_OK(mp_read_uint(&r, &u));
    const char *at = (const char *)r.p;
    T_OK(mp_skip(&r, &raw));
    T_ASSERT(raw.p == at);
    T_EQ(raw.n, mp_writer_len(&inner));
    T_MEMEQ(raw.p, mp_writer_data(&inner), raw.n);
    T_EQ(mp_reader_left(&r), 5u); /* "\xa4tail" */
    T_OK(mp_skip(&r, NULL));       /* raw may be NULL */
    T_EQ(mp_reader_left(&r), 0u);

    /* the whole thing in one go */
    reader_of(&r, &w);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, mp_writer_len(&w));
    T_ASSERT(raw.p == mp_writer_data(&w));

    /* scalars, empty containers and a map with container keys */
    mp_reader_init(&r, "\x07\x90\x80\x81\x92\x01\x02\x81\xa1k\x90", 11);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, 1u);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, 1u);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, 1u);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, 8u);
    T_EQ(mp_reader_left(&r), 0u);
    mp_writer_fini(&w);
    mp_writer_fini(&inner);
}

/* mp_skip over a copy of p[0..n) fails and leaves the reader where it was. */
static int skip_fails(const char *p, size_t n)
{
    uint8_t *buf = dup_exact(p, n);
    struct mp_reader r;
    struct slice raw;
    int ok;

    mp_reader_init(&r, buf, n);
    ok = mp_skip(&r, &raw) == ERR_PROTO && mp_reader_left(&r) == n;
    free(buf);
    return ok;
}

/* The first head in p[0..n) is bad: peek, skip and every reader fail in place. */
static int hostile_fails(const char *p, size_t n)
{
    uint8_t *buf = dup_exact(p, n);
    struct mp_reader r;
    struct slice raw;
    enum mp_type t;
    uint32_t cnt;
    struct slice s;
    int ok = 1;

    mp_reader_init(&r, buf, n);
    ok &= mp_peek(&r, &t) == ERR_PROTO;
    ok &= mp_skip(&r, &raw) == ERR_PROTO && mp_reader_left(&r) == n;
    ok &= mp_read_array(&r, &cnt) == ERR_PROTO && mp_reader_left(&r) == n;
    ok &= mp_read_map(&r, &cnt) == ERR_PROTO && mp_reader_left(&r) == n;
    ok &= mp_read_str(&r, &s) == ERR_PROTO && mp_reader_left(&r) == n;
    ok &= mp_read_bin(&r, &s) == ERR_PROTO && mp_reader_left(&r) == n;
    free(buf);
    return ok;
}

T_TEST(hostile_lengths)
{
    /* headers claiming 2^32-1 (or 2^16-1, 255) elements or bytes, with a few bytes behind them */
    T_ASSERT(hostile_fails("\xdd\xff\xff\xff\xff\xc0\xc0\xc0", 8));
    T_ASSERT(hostile_fails("\xdf\xff\xff\xff\xff\xc0\xc0\xc0", 8));
    T_ASSERT(hostile_fails("\xdb\xff\xff\xff\xff" "abc", 8));
    T_ASSERT(hostile_fails("\xc6\xff\xff\xff\xff" "abc", 8));
    T_ASSERT(hostile_fails("\xc9\xff\xff\xff\xff\x01" "abc", 9));
    T_ASSERT(hostile_fails("\xc9\xff\xff\xff\xfe\x01" "abc", 9)); /* n + 1 = 2^32-1 */
    T_ASSERT(hostile_fails("\xdc\xff\xff\xc0", 4));
    T_ASSERT(hostile_fails("\xde\xff\xff\xc0", 4));
    T_ASSERT(hostile_fails("\xda\xff\xff" "ab", 5));
    T_ASSERT(hostile_fails("\xc5\xff\xff" "ab", 5));
    T_ASSERT(hostile_fails("\xd9\xff" "ab", 4));
    T_ASSERT(hostile_fails("\xc4\xff" "ab", 4));
    T_ASSERT(hostile_fails("\xc7\xff\x01" "ab", 5));
    /* counts that need more bytes than are left: a map entry needs two */
    T_ASSERT(hostile_fails("\x81\xc0", 2));
    T_ASSERT(hostile_fails("\x82\xc0\xc0\xc0", 4));
    T_ASSERT(hostile_fails("\x9f\xc0\xc0", 3));
    /* truncated length fields */
    T_ASSERT(hostile_fails("\xdd\xff\xff", 3));
    T_ASSERT(hostile_fails("\xdb", 1));
    T_ASSERT(hostile_fails("\xcf\x01\x02", 3));

    /* the same headers deep inside a container */
    T_ASSERT(skip_fails("\x92\x01\xdd\xff\xff\xff\xff\xc0", 8));
    T_ASSERT(skip_fails("\x81\xa1k\xdb\xff\xff\xff\xff", 8));

    /* a count that exactly matches the remaining bytes is accepted by the header check */
    struct mp_reader r;
    uint32_t n;
    mp_reader_init(&r, "\xdc\x00\x03\xc0\xc0\xc0", 6);
    T_OK(mp_read_array(&r, &n));
    T_EQ(n, 3u);
    mp_reader_init(&r, "\xdc\x00\x04\xc0\xc0\xc0", 6);
    T_ERR(mp_read_array(&r, &n), ERR_PROTO);
    mp_reader_init(&r, "\xde\x00\x02\xc0\xc0\xc0\xc0", 7);
    T_OK(mp_read_map(&r, &n));
    T_EQ(n, 2u);
}

T_TEST(reserved_byte)
{
    struct mp_reader r;
    struct slice s;
    bool b;
    uint64_t u;
    int64_t i;
    double d;
    uint32_t n;

    T_ASSERT(hostile_fails("\xc1", 1));
    mp_reader_init(&r, "\xc1", 1);
    T_ERR(mp_read_nil(&r), ERR_PROTO);
    T_ERR(mp_read_bool(&r, &b), ERR_PROTO);
    T_ERR(mp_read_uint(&r, &u), ERR_PROTO);
    T_ERR(mp_read_int(&r, &i), ERR_PROTO);
    T_ERR(mp_read_float(&r, &d), ERR_PROTO);
    T_ERR(mp_read_str_or_nil(&r, &s), ERR_PROTO);
    T_ERR(mp_read_array(&r, &n), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 1u);
    /* inside containers */
    T_ASSERT(skip_fails("\x92\x01\xc1", 3));
    T_ASSERT(skip_fails("\x81\xc1\x01", 3));
    T_ASSERT(skip_fails("\x81\xa1k\xc1", 4));
}

/* k nested fixarrays of one element around a nil */
static uint8_t *nested_arrays(unsigned k, size_t *n)
{
    uint8_t *p = malloc(k + 1);
    memset(p, 0x91, k);
    p[k] = 0xc0;
    *n = k + 1;
    return p;
}

T_TEST(depth_cap)
{
    struct mp_reader r;
    struct slice raw;
    size_t n;
    uint8_t *p;

    p = nested_arrays(MP_MAX_DEPTH, &n);
    mp_reader_init(&r, p, n);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, n);
    free(p);

    p = nested_arrays(MP_MAX_DEPTH + 1, &n);
    mp_reader_init(&r, p, n);
    T_ERR(mp_skip(&r, &raw), ERR_PROTO);
    T_EQ(mp_reader_left(&r), n);
    free(p);

    p = nested_arrays(100, &n);
    mp_reader_init(&r, p, n);
    T_ERR(mp_skip(&r, &raw), ERR_PROTO);
    T_EQ(mp_reader_left(&r), n);
    free(p);

    /* 100 nested maps {"k": {"k": ...}} */
    p = malloc(300 + 1);
    for (int i = 0; i < 100; i++)
        memcpy(p + 3 * i, "\x81\xa1k", 3);
    p[300] = 0xc0;
    mp_reader_init(&r, p, 301);
    T_ERR(mp_skip(&r, &raw), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 301u);
    free(p);

    /* wide is fine: 10000 siblings at depth 1 */
    p = malloc(3 + 10000);
    memcpy(p, "\xdc\x27\x10", 3);
    memset(p + 3, 0x90, 10000);
    mp_reader_init(&r, p, 10003);
    T_OK(mp_skip(&r, &raw));
    T_EQ(raw.n, 10003u);
    free(p);
}

T_TEST(truncation_every_prefix)
{
    struct mp_writer w;
    int walked = 0, bad = 0;

    mp_writer_init(&w);
    mp_put_array(&w, 9);
    put_nested(&w);
    mp_put_uint(&w, UINT64_MAX);
    mp_put_int(&w, INT64_MIN);
    mp_put_double(&w, 2.5);
    mp_put_raw(&w, "\xca\x3f\xc0\x00\x00", 5);
    mp_put_raw(&w, "\xd6\x01\x01\x02\x03\x04", 6);
    char big[300];
    fill_pattern(big, sizeof(big));
    mp_put_strn(&w, big, sizeof(big));
    mp_put_bin(&w, big, 40);
    mp_put_map(&w, 0);
    T_OK(mp_writer_err(&w));

    size_t total = mp_writer_len(&w);
    for (size_t len = 0; len < total; len++) {
        uint8_t *buf = dup_exact(mp_writer_data(&w), len);
        struct mp_reader r;
        struct slice raw;
        enum mp_type t;
        uint32_t n;

        mp_reader_init(&r, buf, len);
        (void)mp_peek(&r, &t);
        if (mp_skip(&r, &raw) != ERR_PROTO || mp_reader_left(&r) != len)
            bad++, printf("# prefix %zu of %zu: skip did not fail in place\n", len, total);
        /* walk as far as the reader functions go; none may crash */
        if (mp_read_array(&r, &n) == OK)
            while (mp_skip(&r, NULL) == OK)
                walked++;
        free(buf);
    }
    T_EQ(bad, 0);
    T_ASSERT(walked > 0);

    struct mp_reader r;
    reader_of(&r, &w);
    T_OK(mp_skip(&r, NULL));
    T_EQ(mp_reader_left(&r), 0u);
    mp_writer_fini(&w);
}

T_TEST(failed_read_restores_position)
{
    struct mp_reader r;
    struct slice s = SLICE_NULL;
    uint64_t u = 0;
    bool b;
    int64_t i;
    double d;
    uint32_t n;

    mp_reader_init(&r, "\xcd\x12\x34", 3);
    const uint8_t *before = r.p;
    T_ERR(mp_read_str(&r, &s), ERR_PROTO);
    T_ASSERT(r.p == before);
    T_EQ(mp_reader_left(&r), 3u);
    T_OK(mp_read_uint(&r, &u));
    T_EQ(u, 0x1234u);

    mp_reader_init(&r, "\xa3" "abc", 4);
    T_ERR(mp_read_nil(&r), ERR_PROTO);
    T_ERR(mp_read_bool(&r, &b), ERR_PROTO);
    T_ERR(mp_read_uint(&r, &u), ERR_PROTO);
    T_ERR(mp_read_int(&r, &i), ERR_PROTO);
    T_ERR(mp_read_float(&r, &d), ERR_PROTO);
    T_ERR(mp_read_bin(&r, &s), ERR_PROTO);
    T_ERR(mp_read_array(&r, &n), ERR_PROTO);
    T_ERR(mp_read_map(&r, &n), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 4u);
    T_OK(mp_read_str(&r, &s));
    T_ASSERT(slice_eq(s, "abc"));

    mp_reader_init(&r, "\xc3", 1);
    T_ERR(mp_read_nil(&r), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 1u);
    mp_reader_init(&r, "\xc0", 1);
    T_ERR(mp_read_bool(&r, &b), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 1u);

    /* a failing mp_skip inside a container rewinds to where it started */
    mp_reader_init(&r, "\x93\x01\x02", 3);
    T_ERR(mp_skip(&r, NULL), ERR_PROTO);
    T_EQ(mp_reader_left(&r), 3u);
}

T_TEST(map_find)
{
    struct mp_writer w;
    struct mp_reader v;
    uint32_t n;
    uint64_t u;

    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_kv_uint(&w, "a", 1);
    mp_put_str(&w, "bb");
    mp_put_array(&w, 2);
    mp_put_uint(&w, 1);
    mp_put_uint(&w, 2);
    mp_put_kv_str(&w, "c", NULL); /* nil value */
    mp_put_kv_int(&w, "neg", -5);
    T_OK(mp_writer_err(&w));
    const void *p = mp_writer_data(&w);
    size_t len = mp_writer_len(&w);

    T_OK(mp_map_find(p, len, "a", &v));
    T_OK(mp_read_uint(&v, &u));
    T_EQ(u, 1u);
    T_OK(mp_map_find(p, len, "bb", &v));
    T_OK(mp_read_array(&v, &n));
    T_EQ(n, 2u);
    T_OK(mp_map_find(p, len, "c", &v));
    T_OK(mp_read_nil(&v));
    T_OK(mp_map_find(p, len, "neg", &v));
    int64_t i;
    T_OK(mp_read_int(&v, &i));
    T_EQ(i, -5);
    T_ERR(mp_map_find(p, len, "b", &v), ERR_NOTFOUND);   /* a prefix of a key */
    T_ERR(mp_map_find(p, len, "bbb", &v), ERR_NOTFOUND); /* a key is a prefix */
    T_ERR(mp_map_find(p, len, "", &v), ERR_NOTFOUND);
    T_ERR(mp_map_find(p, len, "zz", &v), ERR_NOTFOUND);

    /* truncated before the key is reached */
    T_ERR(mp_map_find(p, len - 1, "zz", &v), ERR_PROTO);
    T_ERR(mp_map_find(p, 0, "a", &v), ERR_PROTO);

    /* not a map */
    T_ERR(mp_map_find("\x91\xa1" "a", 3, "a", &v), ERR_PROTO);
    T_ERR(mp_map_find("\xa1" "a", 2, "a", &v), ERR_PROTO);
    T_ERR(mp_map_find("\xc0", 1, "a", &v), ERR_PROTO);
    T_ERR(mp_map_find("\xc1", 1, "a", &v), ERR_PROTO);
    /* empty map */
    T_ERR(mp_map_find("\x80", 1, "a", &v), ERR_NOTFOUND);
    /* a value that is malformed on the way to the key */
    T_ERR(mp_map_find("\x82\xa1x\xc1\xa1y\x01", 6, "y", &v), ERR_PROTO);
    /* an empty key can be found */
    T_OK(mp_map_find("\x81\xa0\x07", 3, "", &v));
    T_OK(mp_read_uint(&v, &u));
    T_EQ(u, 7u);
    mp_writer_fini(&w);
}

T_TEST(slices)
{
    char buf[8];
    struct slice abc = SLICE_LIT("abc");

    T_ASSERT(slice_eq(SLICE_NULL, ""));
    T_ASSERT(!slice_eq(SLICE_NULL, "a"));
    T_ASSERT(slice_eq(abc, "abc"));
    T_ASSERT(!slice_eq(abc, "ab"));
    T_ASSERT(!slice_eq(abc, "abcd"));
    T_ASSERT(!slice_eq(abc, "abd"));
    T_ASSERT(slice_eq((struct slice){"abcdef", 2}, "ab")); /* reads only n bytes */
    T_ASSERT(!slice_eq((struct slice){"a\0b", 3}, "a"));

    memset(buf, 'X', sizeof(buf));
    T_ERR(slice_copy(abc, buf, 0), ERR_TOOBIG);
    T_ERR(slice_copy(abc, buf, 3), ERR_TOOBIG); /* no room for the NUL */
    T_EQ(buf[0], 'X');                           /* nothing written on failure */
    T_OK(slice_copy(abc, buf, 4));
    T_STREQ(buf, "abc");
    T_EQ(buf[4], 'X'); /* nothing past cap */
    T_OK(slice_copy(SLICE_NULL, buf, 1));
    T_STREQ(buf, "");
    T_ERR(slice_copy(SLICE_NULL, buf, 0), ERR_TOOBIG);
    T_EQ(buf[1], 'b');
}

T_TEST(writer_errors_and_reset)
{
    struct mp_writer w;
    static const char small[1] = {0};

    mp_writer_init(&w);
    T_EQ(mp_writer_len(&w), 0u);
    mp_put_uint(&w, 1);
    T_EQ(mp_writer_len(&w), 1u);
#if SIZE_MAX > UINT32_MAX
    /* lengths over 2^32-1 fail without reading the (absent) bytes */
    mp_put_strn(&w, small, (size_t)UINT32_MAX + 1);
    T_ERR(mp_writer_err(&w), ERR_TOOBIG);
    mp_put_uint(&w, 2); /* a no-op once failed */
    mp_put_str(&w, "more");
    mp_put_raw(&w, "\xc0", 1);
    T_EQ(mp_writer_len(&w), 1u);
    T_ERR(mp_writer_err(&w), ERR_TOOBIG);
    mp_writer_reset(&w);
    T_OK(mp_writer_err(&w));
    T_EQ(mp_writer_len(&w), 0u);
    mp_put_bin(&w, small, (size_t)UINT32_MAX + 1);
    T_ERR(mp_writer_err(&w), ERR_TOOBIG);
#else
    (void)small;
#endif
    mp_writer_reset(&w);
    mp_put_kv_bool(&w, "t", true);
    mp_put_raw(&w, "", 0);
    T_OK(mp_writer_err(&w));
    T_EQ(mp_writer_len(&w), 3u);
    T_MEMEQ(mp_writer_data(&w), "\xa1t\xc3", 3);
    mp_writer_fini(&w);
    T_EQ(mp_writer_len(&w), 0u);
    mp_writer_fini(&w); /* safe twice */
}

int main(void)
{
    T_RUN(nil_bool);
    T_RUN(uint_roundtrip);
    T_RUN(int_roundtrip);
    T_RUN(int_encodings_by_hand);
    T_RUN(float_roundtrip);
    T_RUN(str_roundtrip);
    T_RUN(bin_roundtrip);
    T_RUN(str_or_nil);
    T_RUN(containers);
    T_RUN(nested_roundtrip);
    T_RUN(ext);
    T_RUN(peek_does_not_consume);
    T_RUN(skip_raw_slice);
    T_RUN(hostile_lengths);
    T_RUN(reserved_byte);
    T_RUN(depth_cap);
    T_RUN(truncation_every_prefix);
    T_RUN(failed_read_restores_position);
    T_RUN(map_find);
    T_RUN(slices);
    T_RUN(writer_errors_and_reset);
    return T_DONE();
}
