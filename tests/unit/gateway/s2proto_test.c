/*
 * s2proto_test.c - S2 append bodies into struct s2_input and the protobuf
 * AppendAck. The protobuf vectors were produced by the S2 client's own
 * encoder (@s2-dev/streamstore, as the SDK calls it); the hostile ones are
 * cut or bent by hand.
 */
#include "../../../gateway/s2proto.c"

#include "t.h"

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static bool slice_is(struct slice s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

/* AppendRecord.trim(300) */
static const char TRIM300[] = "0a12120612047472696d1a08000000000000012c";
/* [string {headers: [[trigger-control, turn-complete], [a, ""]], body: "hi"}, trim(2)] */
static const char MIXED[] = "0a2b12200a0f747269676765722d636f6e74726f6c120d7475726e2d636f6d706c6574"
                            "6512030a01611a0268690a12120612047472696d1a080000000000000002";

T_TEST(proto_trim)
{
    uint8_t b[256];
    struct s2_input in;
    char why[160];
    size_t n = unhex(TRIM300, b);
    T_OK(s2_input_from_proto(b, n, &in, why, sizeof(why)));
    T_EQ(in.nrecords, 1u);
    T_EQ(in.nheaders, 1u);
    T_ASSERT(in.headers[0].name.n == 0 && slice_is(in.headers[0].value, "trim"));
    T_EQ(in.records[0].body.n, 8u);
    T_EQ((unsigned char)in.records[0].body.p[7], 0x2cu);
    T_EQ(in.metered, 8u + 2 + 4 + 8);
    T_ASSERT(!in.conditional);
    s2_input_fini(&in);
}

T_TEST(proto_mixed)
{
    uint8_t b[256];
    struct s2_input in;
    char why[160];
    size_t n = unhex(MIXED, b);
    T_OK(s2_input_from_proto(b, n, &in, why, sizeof(why)));
    T_EQ(in.nrecords, 2u);
    T_EQ(in.nheaders, 3u);
    T_EQ(in.records[0].first_header, 0u);
    T_EQ(in.records[0].nheaders, 2u);
    T_ASSERT(slice_is(in.headers[0].name, "trigger-control"));
    T_ASSERT(slice_is(in.headers[0].value, "turn-complete"));
    T_ASSERT(slice_is(in.headers[1].name, "a") && in.headers[1].value.n == 0);
    T_ASSERT(slice_is(in.records[0].body, "hi"));
    T_EQ(in.records[1].first_header, 2u);
    T_EQ(in.records[1].nheaders, 1u);
    T_ASSERT(slice_is(in.headers[2].value, "trim"));
    s2_input_fini(&in);
}

T_TEST(proto_hostile)
{
    uint8_t b[256], big[16];
    struct s2_input in;
    char why[160];
    size_t n = unhex(MIXED, b);
    /* every truncation is refused or parses to fewer records, never read past the end */
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b, cut);
        err_t rc = s2_input_from_proto(copy, cut, &in, why, sizeof(why));
        T_ASSERT(rc == ERR_INVAL || (rc == OK && in.nrecords < 2));
        s2_input_fini(&in);
        free(copy);
    }
    /* a length running past the end */
    n = unhex("0a7f12", big);
    T_ERR(s2_input_from_proto(big, n, &in, why, sizeof(why)), ERR_INVAL);
    s2_input_fini(&in);
    /* a varint that never ends */
    n = unhex("0affffffffffffffffffff", big);
    T_ERR(s2_input_from_proto(big, n, &in, why, sizeof(why)), ERR_INVAL);
    s2_input_fini(&in);
    /* a group wire type */
    n = unhex("0b", big);
    T_ERR(s2_input_from_proto(big, n, &in, why, sizeof(why)), ERR_INVAL);
    s2_input_fini(&in);
    /* no records at all */
    T_ERR(s2_input_from_proto(big, 0, &in, why, sizeof(why)), ERR_INVAL);
    s2_input_fini(&in);
    /* match_seq_num (field 2) is noticed */
    n = unhex(TRIM300, b);
    b[n++] = 0x10;
    b[n++] = 0x05;
    T_OK(s2_input_from_proto(b, n, &in, why, sizeof(why)));
    T_ASSERT(in.conditional);
    s2_input_fini(&in);
}

T_TEST(proto_limits)
{
    /* 1001 empty records; then one record with 65 empty headers */
    uint8_t *b = malloc(4096);
    struct s2_input in;
    char why[160];
    size_t n = 0;
    for (int i = 0; i < 1001; i++) {
        b[n++] = 0x0a;
        b[n++] = 0x00;
    }
    T_ERR(s2_input_from_proto(b, n, &in, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strstr(why, "1-1000") != NULL);
    s2_input_fini(&in);
    T_OK(s2_input_from_proto(b, 2000, &in, why, sizeof(why)));
    T_EQ(in.nrecords, 1000u);
    s2_input_fini(&in);
    n = 0;
    b[n++] = 0x0a;
    b[n++] = 0x82; /* 130 as a varint */
    b[n++] = 0x01;
    for (int i = 0; i < 65; i++) {
        b[n++] = 0x12;
        b[n++] = 0x00;
    }
    T_ERR(s2_input_from_proto(b, n, &in, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strstr(why, "headers") != NULL);
    s2_input_fini(&in);
    free(b);
}

T_TEST(json)
{
    json_error_t e;
    struct s2_input in;
    char why[160];
    json_t *j = json_loads(
        "{\"records\":[{\"headers\":[[\"trigger-control\",\"turn-complete\"]]},{\"body\":\"x\"}]}",
        0, &e);
    T_OK(s2_input_from_json(j, false, &in, why, sizeof(why)));
    T_EQ(in.nrecords, 2u);
    T_EQ(in.records[0].nheaders, 1u);
    T_EQ(in.records[0].body.n, 0u);
    T_ASSERT(slice_is(in.records[1].body, "x"));
    T_EQ(in.metered, (8u + 2 + 15 + 13) + (8u + 1));
    s2_input_fini(&in);
    json_decref(j);
    const char *bad[] = {"{}",
                         "{\"records\":[]}",
                         "{\"records\":[1]}",
                         "{\"records\":[{\"body\":1}]}",
                         "{\"records\":[{\"headers\":[[\"a\"]]}]}",
                         "{\"records\":[{\"headers\":[[\"a\",2]]}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_loads(bad[i], 0, &e);
        T_ERR(s2_input_from_json(j, false, &in, why, sizeof(why)), ERR_INVAL);
        s2_input_fini(&in);
        json_decref(j);
    }
    j = json_loads("{\"records\":[{}],\"fencing_token\":\"f\"}", 0, &e);
    T_OK(s2_input_from_json(j, false, &in, why, sizeof(why)));
    T_ASSERT(in.conditional);
    s2_input_fini(&in);
    json_decref(j);
}

/* S2-Format: base64: names, values and bodies are decoded, bytes S2's raw JSON cannot carry */
T_TEST(json_base64)
{
    json_error_t e;
    struct s2_input in;
    char why[160];
    json_t *j = json_loads("{\"records\":[{\"headers\":[[\"aA==\",\"YQBi\"],[\"Zw==\",\"//4=\"]],"
                           "\"body\":\"eAB5/w==\"},{}]}",
                           0, &e);
    T_OK(s2_input_from_json(j, true, &in, why, sizeof(why)));
    T_EQ(in.nrecords, 2u);
    T_EQ(in.records[0].nheaders, 2u);
    T_EQ(in.headers[0].name.n, 1u);
    T_EQ(in.headers[0].value.n, 3u);
    T_MEMEQ(in.headers[0].value.p, "a\0b", 3);
    T_EQ(in.headers[1].value.n, 2u);
    T_MEMEQ(in.headers[1].value.p, "\xff\xfe", 2);
    T_EQ(in.records[0].body.n, 4u);
    T_MEMEQ(in.records[0].body.p, "x\0y\xff", 4);
    T_EQ(in.records[1].body.n, 0u);
    /* metered on the decoded bytes */
    T_EQ(in.metered, (8u + 2 * 2 + 1 + 3 + 1 + 2 + 4) + 8u);
    s2_input_fini(&in);
    json_decref(j);
    const char *bad[] = {"{\"records\":[{\"body\":\"a*b=\"}]}",
                         "{\"records\":[{\"body\":\"abc\"}]}",
                         "{\"records\":[{\"headers\":[[\"aA==\",\"a=bc\"]]}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_loads(bad[i], 0, &e);
        T_ERR(s2_input_from_json(j, true, &in, why, sizeof(why)), ERR_INVAL);
        T_ASSERT(strstr(why, "base64") != NULL);
        s2_input_fini(&in);
        json_decref(j);
    }
}

T_TEST(ack)
{
    uint8_t out[S2_ACK_MAX], want[64];
    size_t n = s2_ack_encode(out, 1, 3, 300, 1700000000000ull);
    size_t w = unhex("0a0908011080d095ffbc31120908031080d095ffbc311a0a08ac021080d095ffbc31", want);
    T_EQ(n, w);
    T_MEMEQ(out, want, w);
    /* the largest values still fit */
    n = s2_ack_encode(out, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX);
    T_ASSERT(n <= S2_ACK_MAX);
}

T_TEST(frames)
{
    uint8_t buf[16], head[4], flag = 0xff;
    const uint8_t *msg = NULL;
    size_t msg_n = 0, used = 0;
    /* a frame of 3 message bytes, then the start of the next */
    s2s_frame_head(head, 3, S2S_FLAG_TERMINAL);
    T_MEMEQ(head, "\x00\x00\x04\x80", 4);
    memcpy(buf, head, 4);
    memcpy(buf + 4, "abc\x00\x00", 5);
    for (size_t n = 0; n < 7; n++) /* every cut short of its end: more is needed */
        T_EQ(s2s_frame_next(buf, n, &flag, &msg, &msg_n, &used), 0);
    T_EQ(s2s_frame_next(buf, 9, &flag, &msg, &msg_n, &used), 1);
    T_EQ(flag, S2S_FLAG_TERMINAL);
    T_EQ(msg_n, 3);
    T_EQ(used, 7);
    T_MEMEQ(msg, "abc", 3);
    /* a flag byte alone is a frame with an empty message */
    T_EQ(s2s_frame_next((const uint8_t *)"\x00\x00\x01\x00", 4, &flag, &msg, &msg_n, &used), 1);
    T_EQ(msg_n, 0);
    T_EQ(used, 4);
    /* a length of 0, or over the 2 MiB S2's client allows: malformed at once */
    T_EQ(s2s_frame_next((const uint8_t *)"\x00\x00\x00", 3, &flag, &msg, &msg_n, &used), -1);
    T_EQ(s2s_frame_next((const uint8_t *)"\x20\x00\x01", 3, &flag, &msg, &msg_n, &used), -1);
    T_EQ(s2s_frame_next((const uint8_t *)"\x20\x00\x00", 3, &flag, &msg, &msg_n, &used), 0);
    /* the largest head */
    s2s_frame_head(head, S2S_FRAME_MAX - 1, 0);
    T_MEMEQ(head, "\x20\x00\x00\x00", 4);
}

int main(void)
{
    T_RUN(proto_trim);
    T_RUN(proto_mixed);
    T_RUN(proto_hostile);
    T_RUN(proto_limits);
    T_RUN(json);
    T_RUN(json_base64);
    T_RUN(ack);
    T_RUN(frames);
    return T_DONE();
}
