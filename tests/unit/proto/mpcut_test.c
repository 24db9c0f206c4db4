/*
 * mpcut_test.c - the tap's cut copy: long strings keep the prefix the rendering shows, bins
 * and exts become their placeholders, keys stay whole, and mp_to_json renders the copy as it
 * renders the original; one element of an array cut alone (the tap's envelope body); bad
 * input and limits are refused.
 */
#include <stdlib.h>
#include <string.h>

#include "mp.h"
#include "mpcut.h"
#include "mpjson.h"
#include "t.h"

/* The rendering of buf at max, or NULL. */
static char *render(const void *buf, size_t n, size_t max)
{
    char *out = NULL;
    size_t len;
    return mp_to_json(buf, n, max, &out, &len) == OK ? out : NULL;
}

/* Cuts w's object at max and checks both render alike at max; returns the copy's size. */
static size_t cut_same(const struct mp_writer *w, size_t max, int *same)
{
    struct mp_writer c;
    mp_writer_init(&c);
    *same = 0;
    if (mp_cut(mp_writer_data(w), mp_writer_len(w), max, &c) == OK) {
        char *a = render(mp_writer_data(w), mp_writer_len(w), max);
        char *b = render(mp_writer_data(&c), mp_writer_len(&c), max);
        *same = a && b && strcmp(a, b) == 0;
        free(a);
        free(b);
    }
    size_t n = mp_writer_len(&c);
    mp_writer_fini(&c);
    return n;
}

T_TEST(long_strings_and_bins)
{
    char big[3000], key[400];
    memset(big, 'x', sizeof(big));
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 5);
    mp_put_kv_str(&w, "short", "kept as it is");
    mp_put_str(&w, "long");
    mp_put_strn(&w, big, sizeof(big));
    mp_put_str(&w, "record");
    mp_put_bin(&w, big, sizeof(big));
    mp_put_str(&w, key); /* a key past the limit stays whole */
    mp_put_array(&w, 2);
    mp_put_uint(&w, 7);
    mp_put_double(&w, 1.5);
    mp_put_str(&w, "apiKey"); /* masked by name when shown: the name must survive */
    mp_put_str(&w, "tr_dev_0123456789abcdefghij");
    int same;
    size_t n = cut_same(&w, 256, &same);
    T_ASSERT(same);
    T_ASSERT(n < 1200);
    mp_writer_fini(&w);
}

T_TEST(utf8_prefix_is_whole_sequences)
{
    /* 'é' is 2 bytes: 5 of them are 10; at a limit of 7 the cut keeps 3 (6 bytes) */
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 1);
    mp_put_kv_str(&w, "s", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    int same;
    (void)cut_same(&w, 7, &same);
    T_ASSERT(same);
    struct mp_writer c;
    mp_writer_init(&c);
    T_OK(mp_cut(mp_writer_data(&w), mp_writer_len(&w), 7, &c));
    char *j = render(mp_writer_data(&c), mp_writer_len(&c), 0);
    T_STREQ(j, "{\"s\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xe2\x80\xa6\"}");
    free(j);
    mp_writer_fini(&c);
    mp_writer_fini(&w);
}

/* A bin where no container may open any more: kept whole, so the copy renders (fuzz find). */
T_TEST(bin_at_the_depth_limit)
{
    struct mp_writer w;
    mp_writer_init(&w);
    for (int i = 0; i < MP_MAX_DEPTH; i++)
        mp_put_array(&w, 1);
    mp_put_bin(&w, "abc", 3);
    int same;
    (void)cut_same(&w, 256, &same);
    T_ASSERT(same);
    mp_writer_fini(&w);
}

T_TEST(refused)
{
    struct mp_writer c;
    const unsigned char trailing[] = {0x80, 0xc0}; /* {} then nil */
    const unsigned char truncated[] = {0x81, 0xa1};
    unsigned char deep[40];
    memset(deep, 0x91, sizeof(deep)); /* 40 nested arrays of one */
    mp_writer_init(&c);
    T_ERR(mp_cut(trailing, sizeof(trailing), 256, &c), ERR_PROTO);
    mp_writer_reset(&c);
    T_ERR(mp_cut(truncated, sizeof(truncated), 256, &c), ERR_PROTO);
    mp_writer_reset(&c);
    T_ERR(mp_cut(deep, sizeof(deep), 256, &c), ERR_PROTO);
    mp_writer_reset(&c);
    T_ERR(mp_cut(trailing, 1, 0, &c), ERR_INVAL);
    T_ERR(mp_cut(trailing, 1, MP_CUT_STR_MAX + 1, &c), ERR_INVAL);
    mp_writer_fini(&c);
}

T_TEST(one_element_of_an_array)
{
    char big[600];
    memset(big, 'y', sizeof(big));
    struct mp_writer w, c;
    mp_writer_init(&w);
    mp_put_array(&w, 3);
    mp_put_strn(&w, big, sizeof(big)); /* not the element cut: kept whole */
    mp_put_map(&w, 1);
    mp_put_str(&w, "data");
    mp_put_bin(&w, big, sizeof(big));
    mp_put_uint(&w, 42);
    mp_writer_init(&c);
    T_OK(mp_cut_element(mp_writer_data(&w), mp_writer_len(&w), 1, 256, &c));
    char *a = render(mp_writer_data(&w), mp_writer_len(&w), 1024);
    char *b = render(mp_writer_data(&c), mp_writer_len(&c), 1024);
    T_ASSERT(a && b && strcmp(a, b) == 0); /* the whole string, {"$bin":600}, 42 */
    T_ASSERT(strstr(b, "\"$bin\":600") != NULL);
    T_ASSERT(mp_writer_len(&c) < 700);
    free(a);
    free(b);

    mp_writer_reset(&c); /* past the end: a copy */
    T_OK(mp_cut_element(mp_writer_data(&w), mp_writer_len(&w), 7, 256, &c));
    T_ASSERT(mp_writer_len(&c) == mp_writer_len(&w) &&
             memcmp(mp_writer_data(&c), mp_writer_data(&w), mp_writer_len(&w)) == 0);

    const unsigned char map[] = {0x80}, trailing[] = {0x90, 0xc0}, truncated[] = {0x92, 0x01};
    mp_writer_reset(&c);
    T_ERR(mp_cut_element(map, sizeof(map), 0, 256, &c), ERR_PROTO);
    mp_writer_reset(&c);
    T_ERR(mp_cut_element(trailing, sizeof(trailing), 0, 256, &c), ERR_PROTO);
    mp_writer_reset(&c);
    T_ERR(mp_cut_element(truncated, sizeof(truncated), 1, 256, &c), ERR_PROTO);
    T_ERR(mp_cut_element(trailing, 1, 0, 0, &c), ERR_INVAL);
    mp_writer_fini(&c);
    mp_writer_fini(&w);
}

int main(void)
{
    T_RUN(long_strings_and_bins);
    T_RUN(utf8_prefix_is_whole_sequences);
    T_RUN(bin_at_the_depth_limit);
    T_RUN(refused);
    T_RUN(one_element_of_an_array);
    return T_DONE();
}
