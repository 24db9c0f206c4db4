/*
 * msgcodec_test.c - the table-driven codec of typed bodies (proto/msgcodec.h), on a
 * test form with one field of each kind.
 */
#include <stdlib.h>
#include <string.h>

#include "msgcodec.h"
#include "t.h"

struct probe {
    struct slice name, blob, raw, note;
    uint64_t count;
    int64_t delta;
    double ratio;
    bool flag;
    struct slice opt;
    bool opt_given;
};

#define S struct probe
static const struct msg_field probe_fields[] = {
    MSGF(S, name, MSGF_STR, MSGF_REQUIRED, 8),
    MSGF(S, blob, MSGF_BIN, 0, 0),
    MSGF(S, raw, MSGF_RAW, 0, 0),
    MSGF(S, note, MSGF_STR, MSGF_NIL, 0),
    MSGF(S, count, MSGF_U64, 0, 0),
    MSGF(S, delta, MSGF_I64, MSGF_OMIT0, 0),
    MSGF(S, ratio, MSGF_F64, MSGF_OMIT0, 0),
    MSGF(S, flag, MSGF_BOOL, 0, 0),
    MSGF_G(S, opt, MSGF_STR, 0, 0),
};
#undef S
static const struct msg_form probe_form = MSG_FORM("probe", probe_fields);

/* A body written by hand: the map header, then pairs. */
struct body {
    struct mp_writer w;
};

static void body_start(struct body *b, uint32_t pairs)
{
    mp_writer_init(&b->w);
    mp_put_map(&b->w, pairs);
}

static err_t body_decode(struct body *b, struct probe *p)
{
    /* from an exact-size copy, so a read past the end is ASan's to see */
    size_t n = mp_writer_len(&b->w);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, mp_writer_data(&b->w), n);
    err_t rc = msg_decode(&probe_form, copy, n, p);
    /* keep the copy alive for the caller's reads: freed at the next decode */
    static char *last;
    free(last);
    last = copy;
    mp_writer_fini(&b->w);
    return rc;
}

T_TEST(round_trip)
{
    struct probe in = {
        .name = SLICE_LIT("abc"),
        .blob = {"\0\1\2", 3},
        .raw = {"\x92\x01\x02", 3}, /* [1, 2] */
        .count = 1ull << 40,
        .delta = -5,
        .ratio = 0.25,
        .flag = true,
        .opt_given = true, /* given as nil */
    };
    struct probe out;
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&probe_form, &w, &in);
    T_OK(mp_writer_err(&w));
    T_OK(msg_decode(&probe_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(slice_eq(out.name, "abc"));
    T_ASSERT(out.blob.n == 3 && memcmp(out.blob.p, "\0\1\2", 3) == 0);
    T_ASSERT(out.raw.n == 3 && memcmp(out.raw.p, "\x92\x01\x02", 3) == 0);
    T_ASSERT(out.note.p == NULL); /* written as nil (MSGF_NIL), read as absent */
    T_EQ(out.count, 1ull << 40);
    T_EQ(out.delta, -5);
    T_ASSERT(out.ratio == 0.25);
    T_ASSERT(out.flag);
    T_ASSERT(out.opt_given && out.opt.p == NULL);
    mp_writer_fini(&w);
}

T_TEST(omitted_fields)
{
    struct probe in = {.name = SLICE_LIT("x")};
    struct probe out;
    struct mp_writer w;
    uint32_t pairs = 0;
    mp_writer_init(&w);
    msg_encode(&probe_form, &w, &in);
    struct mp_reader r;
    mp_reader_init(&r, mp_writer_data(&w), mp_writer_len(&w));
    T_OK(mp_read_map(&r, &pairs));
    T_EQ(pairs, 4u); /* name, note (nil), count, flag: the rest left out */
    T_OK(msg_decode(&probe_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(!out.opt_given && out.blob.p == NULL && out.delta == 0);
    mp_writer_fini(&w);
}

T_TEST(unknown_and_repeated_keys)
{
    struct body b;
    struct probe p;
    body_start(&b, 4);
    mp_put_kv_str(&b.w, "name", "first");
    mp_put_kv_str(&b.w, "newer", "skipped");
    mp_put_str(&b.w, "nested");
    mp_put_map(&b.w, 1);
    mp_put_kv_uint(&b.w, "deep", 1);
    mp_put_kv_str(&b.w, "name", "second");
    T_OK(body_decode(&b, &p));
    T_ASSERT(slice_eq(p.name, "first"));
}

T_TEST(refusals)
{
    struct body b;
    struct probe p;

    body_start(&b, 0); /* the required name missing */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 1);
    mp_put_kv_str(&b.w, "name", ""); /* required and empty */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 1);
    mp_put_str(&b.w, "name");
    mp_put_nil(&b.w); /* required and nil */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 1);
    mp_put_kv_str(&b.w, "name", "123456789"); /* over its 8 bytes */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_kv_str(&b.w, "count", "7"); /* a string for a number */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_kv_int(&b.w, "count", -1); /* a negative for an unsigned */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_kv_uint(&b.w, "delta", UINT64_MAX); /* past int64 */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_kv_uint(&b.w, "flag", 1); /* a number for a bool */
    T_ERR(body_decode(&b, &p), ERR_INVAL);

    mp_writer_init(&b.w);
    mp_put_array(&b.w, 1); /* not a map */
    mp_put_uint(&b.w, 1);
    T_ERR(body_decode(&b, &p), ERR_PROTO);

    /* truncated: a map of two pairs with one */
    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    T_ERR(body_decode(&b, &p), ERR_PROTO);

    /* trailing bytes after the map */
    body_start(&b, 1);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_uint(&b.w, 9);
    T_ERR(body_decode(&b, &p), ERR_PROTO);
}

T_TEST(nil_reads_as_absent)
{
    struct body b;
    struct probe p;
    body_start(&b, 4);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_str(&b.w, "count");
    mp_put_nil(&b.w);
    mp_put_str(&b.w, "note");
    mp_put_nil(&b.w);
    mp_put_str(&b.w, "raw");
    mp_put_nil(&b.w); /* raw keeps its nil */
    T_OK(body_decode(&b, &p));
    T_EQ(p.count, 0u);
    T_ASSERT(p.note.p == NULL);
    T_ASSERT(p.raw.n == 1 && (unsigned char)p.raw.p[0] == 0xc0);
}

T_TEST(empty_body_and_empty_string)
{
    static const struct msg_field none_fields[] = {
        MSGF(struct probe, note, MSGF_STR, 0, 0),
    };
    static const struct msg_form none = MSG_FORM("none", none_fields);
    struct probe p;
    T_OK(msg_decode(&none, NULL, 0, &p)); /* no body reads as an empty map */
    T_ASSERT(p.note.p == NULL);

    struct body b;
    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_kv_str(&b.w, "note", ""); /* present and empty: not NULL */
    T_OK(body_decode(&b, &p));
    T_ASSERT(p.note.p != NULL && p.note.n == 0);
    T_ASSERT(msg_str(NULL).p == NULL && msg_str("ab").n == 2);
}

T_TEST(bin_takes_str)
{
    struct body b;
    struct probe p;
    body_start(&b, 2);
    mp_put_kv_str(&b.w, "name", "n");
    mp_put_kv_str(&b.w, "blob", "text"); /* older senders wrote bytes as str */
    T_OK(body_decode(&b, &p));
    T_ASSERT(slice_eq(p.blob, "text"));
}

T_TEST(cstr)
{
    char buf[4];
    T_ASSERT(msg_cstr(SLICE_LIT("abc"), buf, sizeof(buf)) && strcmp(buf, "abc") == 0);
    T_ASSERT(!msg_cstr(SLICE_LIT("abcd"), buf, sizeof(buf)) && buf[0] == '\0'); /* no room */
    T_ASSERT(!msg_cstr((struct slice){"a\0b", 3}, buf, sizeof(buf)) && buf[0] == '\0');
    T_ASSERT(!msg_cstr(SLICE_NULL, buf, sizeof(buf)) && buf[0] == '\0'); /* absent */
    T_ASSERT(msg_cstr((struct slice){"", 0}, buf, sizeof(buf)) && buf[0] == '\0');
}

int main(void)
{
    T_RUN(round_trip);
    T_RUN(omitted_fields);
    T_RUN(unknown_and_repeated_keys);
    T_RUN(refusals);
    T_RUN(nil_reads_as_absent);
    T_RUN(empty_body_and_empty_string);
    T_RUN(bin_takes_str);
    T_RUN(cstr);
    return T_DONE();
}
