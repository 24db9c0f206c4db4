/*
 * feed_record_test.c - what feeds, /records and the S2 routes send for a record
 * (gateway/feed_record.c): the S2 JSON record in raw and base64 formats (bytes that are not
 * UTF-8 as U+FFFD, NUL as \u0000, exact in base64), headers and body only when present,
 * unknown keys skipped, malformed record objects refused; and a stream's name in a stream.*
 * request (gw_feed_stream_name), with and without a side channel.
 */
#include "../../../gateway/feed_record.c"

#include <stdlib.h>
#include <string.h>

#include "t.h"

/* Renders one record object (as the broker sends it) in format f into out (caller frees). */
static err_t render(const struct mp_writer *w, enum gw_rec_format f, char **out, uint64_t *seq,
                    uint64_t *ts)
{
    struct mp_reader r;
    struct jbuf b = {0};
    mp_reader_init(&r, mp_writer_data(w), mp_writer_len(w));
    err_t rc = gw_record_json(&r, &b, f, seq, ts);
    jbuf_put(&b, "", 1); /* NUL-terminated */
    *out = b.p;
    return rc;
}

/* {seq, ts, headers: [[name, value]...], body} with n headers and body (NULL: none). */
static void record(struct mp_writer *w, uint64_t seq, const char *const (*headers)[2], unsigned n,
                   const char *body, size_t body_n)
{
    mp_writer_init(w);
    mp_put_map(w, body ? 4 : 3);
    mp_put_kv_uint(w, "seq", seq);
    mp_put_kv_uint(w, "ts", 1700000000123);
    mp_put_str(w, "headers");
    mp_put_array(w, n);
    for (unsigned i = 0; i < n; i++) {
        mp_put_array(w, 2);
        mp_put_str(w, headers[i][0]);
        mp_put_str(w, headers[i][1]);
    }
    if (body) {
        mp_put_str(w, "body");
        mp_put_bin(w, body, body_n);
    }
}

T_TEST(raw_format)
{
    static const char *const h[][2] = {{"content-type", "text/plain"}};
    struct mp_writer w;
    char *out;
    uint64_t seq, ts;
    record(&w, 7, h, 1, "hi \"there\"\n", 11);
    T_OK(render(&w, GW_REC_RAW, &out, &seq, &ts));
    T_STREQ(
        out,
        "{\"seq_num\":7,\"timestamp\":1700000000123,"
        "\"headers\":[[\"content-type\",\"text/plain\"]],\"body\":\"hi \\\"there\\\"\\u000a\"}");
    T_EQ(seq, 7u);
    T_EQ(ts, 1700000000123u);
    free(out);
    mp_writer_fini(&w);
}

T_TEST(bytes_that_are_not_text)
{
    struct mp_writer w;
    char *out;
    uint64_t seq;
    const char body[] = {'a', '\0', 'b', (char)0xff, 'c'};
    record(&w, 0, NULL, 0, body, sizeof(body));
    T_OK(render(&w, GW_REC_RAW, &out, &seq, NULL));
    /* no headers key for none; NUL escaped, the stray byte as U+FFFD */
    T_STREQ(out, "{\"seq_num\":0,\"timestamp\":1700000000123,\"body\":\"a\\u0000b\xef\xbf\xbd"
                 "c\"}");
    free(out);
    T_OK(render(&w, GW_REC_BASE64, &out, &seq, NULL));
    T_STREQ(out, "{\"seq_num\":0,\"timestamp\":1700000000123,\"body\":\"YQBi/2M=\"}");
    free(out);
    mp_writer_fini(&w);
}

T_TEST(base64_headers)
{
    static const char *const h[][2] = {{"a", "b"}, {"", "xyz"}};
    struct mp_writer w;
    char *out;
    uint64_t seq;
    record(&w, 3, h, 2, NULL, 0);
    T_OK(render(&w, GW_REC_BASE64, &out, &seq, NULL));
    T_STREQ(out, "{\"seq_num\":3,\"timestamp\":1700000000123,"
                 "\"headers\":[[\"YQ==\",\"Yg==\"],[\"\",\"eHl6\"]]}");
    free(out);
    mp_writer_fini(&w);
}

T_TEST(unknown_keys_are_skipped)
{
    struct mp_writer w;
    char *out;
    uint64_t seq;
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_str(&w, "later");
    mp_put_map(&w, 1);
    mp_put_kv_str(&w, "x", "y");
    mp_put_kv_uint(&w, "seq", 12);
    mp_put_str(&w, "body");
    mp_put_bin(&w, "", 0); /* an empty body is no body */
    T_OK(render(&w, GW_REC_RAW, &out, &seq, NULL));
    T_STREQ(out, "{\"seq_num\":12,\"timestamp\":0}");
    free(out);
    mp_writer_fini(&w);
}

T_TEST(malformed_records)
{
    struct mp_writer w;
    char *out;
    uint64_t seq;

    mp_writer_init(&w); /* no seq */
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "ts", 1);
    T_ERR(render(&w, GW_REC_RAW, &out, &seq, NULL), ERR_PROTO);
    free(out);
    mp_writer_fini(&w);

    mp_writer_init(&w); /* a body that is a string, not bytes */
    mp_put_map(&w, 2);
    mp_put_kv_uint(&w, "seq", 1);
    mp_put_kv_str(&w, "body", "text");
    T_ERR(render(&w, GW_REC_RAW, &out, &seq, NULL), ERR_PROTO);
    free(out);
    mp_writer_fini(&w);

    mp_writer_init(&w); /* a header that is not a pair */
    mp_put_map(&w, 2);
    mp_put_kv_uint(&w, "seq", 1);
    mp_put_str(&w, "headers");
    mp_put_array(&w, 1);
    mp_put_array(&w, 3);
    mp_put_str(&w, "a");
    mp_put_str(&w, "b");
    mp_put_str(&w, "c");
    T_ERR(render(&w, GW_REC_RAW, &out, &seq, NULL), ERR_PROTO);
    free(out);
    mp_writer_fini(&w);

    mp_writer_init(&w); /* not a map */
    mp_put_array(&w, 0);
    T_ERR(render(&w, GW_REC_RAW, &out, &seq, NULL), ERR_PROTO);
    free(out);
    mp_writer_fini(&w);

    mp_writer_init(&w); /* a negative seq */
    mp_put_map(&w, 1);
    mp_put_str(&w, "seq");
    mp_put_int(&w, -1);
    T_ERR(render(&w, GW_REC_RAW, &out, &seq, NULL), ERR_PROTO);
    free(out);
    mp_writer_fini(&w);
}

T_TEST(stream_names)
{
    struct gw_feed_opts o = {.env = "env_1", .key = "sess_1", .io = "out"};
    struct msg_stream_name n = gw_feed_stream_name(&o);
    T_ASSERT(slice_eq(n.env, "env_1") && slice_eq(n.key, "sess_1") && slice_eq(n.io, "out"));
    T_ASSERT(n.channel.p == NULL); /* the session's own pair names no channel */

    /* a stream.read of it: the name's three fields, then from and count */
    struct msg_stream_read m = {n, 5, 1000};
    struct mp_writer w;
    struct mp_reader r;
    uint32_t pairs;
    mp_writer_init(&w);
    msg_encode(&msg_stream_read_form, &w, &m);
    mp_reader_init(&r, mp_writer_data(&w), mp_writer_len(&w));
    T_OK(mp_read_map(&r, &pairs));
    T_EQ(pairs, 5u);
    mp_writer_fini(&w);

    snprintf(o.channel, sizeof(o.channel), "tools");
    n = gw_feed_stream_name(&o);
    T_ASSERT(slice_eq(n.channel, "tools"));
}

int main(void)
{
    T_RUN(raw_format);
    T_RUN(bytes_that_are_not_text);
    T_RUN(base64_headers);
    T_RUN(unknown_keys_are_skipped);
    T_RUN(malformed_records);
    T_RUN(stream_names);
    return T_DONE();
}
