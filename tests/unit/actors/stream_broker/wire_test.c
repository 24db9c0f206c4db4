/*
 * wire_test.c - the stream-broker's pure parts (wire.c): request
 * validation (stream.append, read, peek, trim and follow), Redis key names, entries read back from
 * Redis and record objects. The scripts and Redis itself are exercised against a real server, not
 * here.
 */
#include "../../../../actors/stream_broker/wire.c"

#include "t.h"

/* A request body built with the writer; the caller frees it with mp_writer_fini. */
static struct slice body_of(struct mp_writer *w)
{
    return (struct slice){mp_writer_data(w), mp_writer_len(w)};
}

static void put_name(struct mp_writer *w, const char *env, const char *key, const char *io)
{
    mp_put_kv_str(w, "env", env);
    mp_put_kv_str(w, "key", key);
    mp_put_kv_str(w, "io", io);
}

/* A stream.peek body of the name and count 1, parsed. */
static err_t parse_stream(const char *env, const char *key, const char *io)
{
    struct mp_writer w;
    struct sb_stream s;
    uint64_t from, count;
    char why[SB_WHY_MAX];
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    put_name(&w, env, key, io);
    mp_put_kv_uint(&w, "count", 1);
    err_t rc = sb_parse_range(body_of(&w), true, &s, &from, &count, why, sizeof(why));
    mp_writer_fini(&w);
    return rc;
}

/* A stream name map of w, decoded and checked. */
static err_t parse_name(struct mp_writer *w, struct sb_stream *s, char *why)
{
    struct msg_stream_name n;
    err_t rc = msg_decode(&msg_stream_name_form, mp_writer_data(w), mp_writer_len(w), &n);
    if (rc != OK) {
        snprintf(why, SB_WHY_MAX, "does not decode");
        return rc;
    }
    return sb_stream_of(&n, s, why, SB_WHY_MAX);
}

T_TEST(stream_names)
{
    char big_key[STREAM_KEY_MAX + 2], big_env[STREAM_ENV_MAX + 2];
    memset(big_key, 'k', sizeof(big_key) - 1);
    big_key[sizeof(big_key) - 1] = '\0';
    memset(big_env, 'e', sizeof(big_env) - 1);
    big_env[sizeof(big_env) - 1] = '\0';
    T_OK(parse_stream("env_1", "session_abc", "in"));
    T_OK(parse_stream("env_1", "a.b:c}{d", "out"));
    T_ERR(parse_stream("", "k", "in"), ERR_INVAL);
    T_ERR(parse_stream("e", "", "in"), ERR_INVAL);
    T_ERR(parse_stream("e", "k", "inout"), ERR_INVAL);
    T_ERR(parse_stream("e", "k", "IN"), ERR_INVAL);
    T_ERR(parse_stream("e", "k", ""), ERR_INVAL);
    T_ERR(parse_stream(big_env, "k", "in"), ERR_INVAL);
    T_ERR(parse_stream("e", big_key, "in"), ERR_INVAL);
    big_key[STREAM_KEY_MAX] = '\0';
    big_env[STREAM_ENV_MAX] = '\0';
    T_OK(parse_stream(big_env, big_key, "out"));

    /* a NUL inside a name, a missing field, a field of another type, a body that is no map */
    struct mp_writer w;
    struct sb_stream s;
    uint64_t from, count;
    char why[SB_WHY_MAX] = "";
    mp_writer_init(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env", "e");
    mp_put_str(&w, "key");
    mp_put_strn(&w, "a\0b", 3);
    mp_put_kv_str(&w, "io", "in");
    T_ERR(parse_name(&w, &s, why), ERR_INVAL);
    T_ASSERT(strstr(why, "key") != NULL);
    mp_writer_reset(&w);
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "env", "e");
    mp_put_kv_str(&w, "io", "in");
    mp_put_kv_uint(&w, "count", 1);
    T_ERR(sb_parse_range(body_of(&w), true, &s, &from, &count, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strncmp(why, "stream.peek needs", 17) == 0);
    mp_writer_reset(&w);
    mp_put_map(&w, 4);
    mp_put_kv_uint(&w, "env", 7);
    mp_put_kv_str(&w, "key", "k");
    mp_put_kv_str(&w, "io", "in");
    mp_put_kv_uint(&w, "count", 1);
    T_ERR(sb_parse_range(body_of(&w), true, &s, &from, &count, why, sizeof(why)), ERR_INVAL);
    mp_writer_reset(&w);
    mp_put_array(&w, 0);
    T_ERR(sb_parse_range(body_of(&w), true, &s, &from, &count, why, sizeof(why)), ERR_INVAL);
    T_STREQ(why, "the request body must be a map");
    T_ERR(sb_parse_range(SLICE_NULL, false, &s, &from, &count, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strncmp(why, "stream.read needs", 17) == 0);
    mp_writer_fini(&w);
}

/* A stream.read (from given) or stream.peek body of stream (e, k, in) with count, parsed. */
static err_t parse_count(bool peek, uint64_t count, uint64_t *from_out, char *why)
{
    struct mp_writer w;
    struct sb_stream s;
    uint64_t c;
    mp_writer_init(&w);
    mp_put_map(&w, peek ? 4 : 5);
    put_name(&w, "e", "k", "in");
    if (!peek)
        mp_put_kv_uint(&w, "from", UINT64_MAX);
    mp_put_kv_uint(&w, "count", count);
    err_t rc = sb_parse_range(body_of(&w), peek, &s, from_out, &c, why, SB_WHY_MAX);
    mp_writer_fini(&w);
    return rc;
}

T_TEST(uints)
{
    uint64_t v = 0;
    char why[SB_WHY_MAX];
    T_OK(sb_check_uint("count", 16, 1, 16, why, sizeof(why)));
    T_ERR(sb_check_uint("count", 16, 1, 15, why, sizeof(why)), ERR_INVAL);
    T_STREQ(why, "count must be an integer from 1 to 15");
    T_ERR(sb_check_uint("count", 0, 1, 15, why, sizeof(why)), ERR_INVAL);
    /* the counts of a read and a peek */
    T_OK(parse_count(false, STREAM_BATCH_MAX, &v, why));
    T_EQ(v, UINT64_MAX);
    T_ERR(parse_count(false, STREAM_BATCH_MAX + 1, &v, why), ERR_INVAL);
    T_ERR(parse_count(false, 0, &v, why), ERR_INVAL);
    T_OK(parse_count(true, SB_PEEK_MAX, &v, why));
    T_EQ(v, 0);
    T_ERR(parse_count(true, SB_PEEK_MAX + 1, &v, why), ERR_INVAL);
    T_STREQ(why, "count must be an integer from 1 to 16");

    /* a negative or text count, or none */
    struct mp_writer w;
    struct sb_stream s;
    uint64_t c;
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    put_name(&w, "e", "k", "in");
    mp_put_kv_int(&w, "count", -1);
    T_ERR(sb_parse_range(body_of(&w), true, &s, &v, &c, why, sizeof(why)), ERR_INVAL);
    mp_writer_reset(&w);
    mp_put_map(&w, 4);
    put_name(&w, "e", "k", "in");
    mp_put_kv_str(&w, "count", "1");
    T_ERR(sb_parse_range(body_of(&w), true, &s, &v, &c, why, sizeof(why)), ERR_INVAL);
    mp_writer_reset(&w);
    mp_put_map(&w, 3);
    put_name(&w, "e", "k", "in");
    T_ERR(sb_parse_trim(body_of(&w), &s, &v, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strstr(why, "before") != NULL);
    mp_writer_reset(&w);
    mp_put_map(&w, 4);
    put_name(&w, "e", "k", "in");
    mp_put_kv_uint(&w, "before", 3);
    T_OK(sb_parse_trim(body_of(&w), &s, &v, why, sizeof(why)));
    T_EQ(v, 3);
    mp_writer_fini(&w);

    T_ASSERT(sb_parse_u64("0", 1, &v) && v == 0);
    T_ASSERT(sb_parse_u64("18446744073709551615", 20, &v) && v == UINT64_MAX);
    T_ASSERT(!sb_parse_u64("18446744073709551616", 20, &v));
    T_ASSERT(!sb_parse_u64("", 0, &v));
    T_ASSERT(!sb_parse_u64("-1", 2, &v));
    T_ASSERT(!sb_parse_u64("1 ", 2, &v));
}

/* Starts an append body for stream (e, k, in) with n records; the caller writes the records. */
static void append_head(struct mp_writer *w, uint32_t n)
{
    mp_writer_reset(w);
    mp_put_map(w, 4);
    put_name(w, "e", "k", "in");
    mp_put_str(w, "records");
    mp_put_array(w, n);
}

static err_t parse_append(struct mp_writer *w, struct sb_append *ap, char *why)
{
    err_t rc = sb_parse_append(body_of(w), ap, why, SB_WHY_MAX);
    return rc;
}

T_TEST(append_valid)
{
    struct mp_writer w;
    struct sb_append ap;
    char why[SB_WHY_MAX];
    mp_writer_init(&w);
    append_head(&w, 3);
    /* full record */
    mp_put_map(&w, 3);
    mp_put_kv_str(&w, "part_id", "p1");
    mp_put_str(&w, "headers");
    mp_put_array(&w, 2);
    mp_put_array(&w, 2);
    mp_put_str(&w, "");
    mp_put_str(&w, "fence");
    mp_put_array(&w, 2);
    mp_put_str(&w, "t"); /* header names may be "t" or "b": entries are read positionally */
    mp_put_str(&w, "vv");
    mp_put_str(&w, "body");
    mp_put_bin(&w, "hello", 5);
    /* no part id, no headers, str body */
    mp_put_map(&w, 1);
    mp_put_kv_str(&w, "body", "text");
    /* nil part id, nil headers, empty body, an unknown field */
    mp_put_map(&w, 4);
    mp_put_str(&w, "part_id");
    mp_put_nil(&w);
    mp_put_str(&w, "headers");
    mp_put_nil(&w);
    mp_put_str(&w, "body");
    mp_put_bin(&w, "", 0);
    mp_put_kv_uint(&w, "future", 1);
    T_OK(parse_append(&w, &ap, why));
    T_EQ(ap.n, 3);
    T_STREQ(ap.s.key, "k");
    T_ASSERT(ap.recs[0].part_id.n == 2 && memcmp(ap.recs[0].part_id.p, "p1", 2) == 0);
    T_EQ(ap.recs[0].nheaders, 2);
    T_ASSERT(ap.recs[0].body.n == 5 && memcmp(ap.recs[0].body.p, "hello", 5) == 0);
    T_ASSERT(ap.recs[1].part_id.p == NULL && ap.recs[1].nheaders == 0);
    T_ASSERT(ap.recs[1].body.n == 4 && memcmp(ap.recs[1].body.p, "text", 4) == 0);
    T_ASSERT(ap.recs[2].part_id.p == NULL && ap.recs[2].nheaders == 0 && ap.recs[2].body.n == 0);
    /* the metered sizes the quota counts (the append script counts the same from the entry) */
    T_EQ(ap.recs[0].metered, 8 + 2 * 2 + (0 + 5) + (1 + 2) + 5);
    T_EQ(ap.recs[1].metered, 8 + 4);
    T_EQ(ap.recs[2].metered, 8);

    /* the event's record object copies the headers as they came */
    struct mp_writer o;
    struct mp_reader r, h;
    struct slice s;
    uint32_t n;
    uint64_t u;
    mp_writer_init(&o);
    sb_record_put(&o, &ap.recs[0], 41, 1700000000000ull);
    T_OK(mp_writer_err(&o));
    T_OK(mp_map_find(mp_writer_data(&o), mp_writer_len(&o), "seq", &r));
    T_ASSERT(mp_read_uint(&r, &u) == OK && u == 41);
    T_OK(mp_map_find(mp_writer_data(&o), mp_writer_len(&o), "ts", &r));
    T_ASSERT(mp_read_uint(&r, &u) == OK && u == 1700000000000ull);
    T_OK(mp_map_find(mp_writer_data(&o), mp_writer_len(&o), "headers", &h));
    T_ASSERT(mp_read_array(&h, &n) == OK && n == 2);
    T_ASSERT(mp_read_array(&h, &n) == OK && n == 2);
    T_ASSERT(mp_read_str(&h, &s) == OK && s.n == 0);
    T_ASSERT(mp_read_str(&h, &s) == OK && slice_eq(s, "fence"));
    T_OK(mp_map_find(mp_writer_data(&o), mp_writer_len(&o), "body", &r));
    T_ASSERT(mp_read_bin(&r, &s) == OK && slice_eq(s, "hello"));
    /* a str body goes out as bin, no headers as an empty array */
    mp_writer_reset(&o);
    sb_record_put(&o, &ap.recs[1], 0, 1);
    T_OK(mp_map_find(mp_writer_data(&o), mp_writer_len(&o), "body", &r));
    T_ASSERT(mp_read_bin(&r, &s) == OK && slice_eq(s, "text"));
    T_OK(mp_map_find(mp_writer_data(&o), mp_writer_len(&o), "headers", &r));
    T_ASSERT(mp_read_array(&r, &n) == OK && n == 0);
    mp_writer_fini(&o);
    sb_append_fini(&ap);
    mp_writer_fini(&w);
}

/* One record {<field>: <value written by put>} plus a body, appended alone. */
static err_t append_one(void (*put)(struct mp_writer *), char *why)
{
    struct mp_writer w;
    struct sb_append ap;
    mp_writer_init(&w);
    append_head(&w, 1);
    put(&w);
    err_t rc = parse_append(&w, &ap, why);
    sb_append_fini(&ap);
    mp_writer_fini(&w);
    return rc;
}

static void rec_not_map(struct mp_writer *w)
{
    mp_put_array(w, 0);
}

static void rec_no_body(struct mp_writer *w)
{
    mp_put_map(w, 1);
    mp_put_kv_str(w, "part_id", "p");
}

static void rec_body_int(struct mp_writer *w)
{
    mp_put_map(w, 1);
    mp_put_kv_uint(w, "body", 1);
}

static void rec_part_empty(struct mp_writer *w)
{
    mp_put_map(w, 2);
    mp_put_kv_str(w, "part_id", "");
    mp_put_kv_str(w, "body", "b");
}

static void rec_part_long(struct mp_writer *w)
{
    char p[STREAM_PART_ID_MAX + 1];
    memset(p, 'p', sizeof(p));
    mp_put_map(w, 2);
    mp_put_str(w, "part_id");
    mp_put_strn(w, p, sizeof(p));
    mp_put_kv_str(w, "body", "b");
}

static void rec_part_max(struct mp_writer *w)
{
    char p[STREAM_PART_ID_MAX];
    memset(p, 'p', sizeof(p));
    mp_put_map(w, 2);
    mp_put_str(w, "part_id");
    mp_put_strn(w, p, sizeof(p));
    mp_put_kv_str(w, "body", "b");
}

static void rec_part_nul(struct mp_writer *w)
{
    mp_put_map(w, 2);
    mp_put_str(w, "part_id");
    mp_put_strn(w, "a\0", 2);
    mp_put_kv_str(w, "body", "b");
}

static void rec_part_bin(struct mp_writer *w)
{
    mp_put_map(w, 2);
    mp_put_str(w, "part_id");
    mp_put_bin(w, "a", 1);
    mp_put_kv_str(w, "body", "b");
}

static void put_headers(struct mp_writer *w, unsigned n)
{
    mp_put_map(w, 2);
    mp_put_str(w, "headers");
    mp_put_array(w, n);
    for (unsigned i = 0; i < n; i++) {
        mp_put_array(w, 2);
        mp_put_str(w, "n");
        mp_put_str(w, "v");
    }
    mp_put_kv_str(w, "body", "b");
}

static void rec_headers_max(struct mp_writer *w)
{
    put_headers(w, STREAM_HEADERS_MAX);
}

static void rec_headers_many(struct mp_writer *w)
{
    put_headers(w, STREAM_HEADERS_MAX + 1);
}

static void rec_header_triple(struct mp_writer *w)
{
    mp_put_map(w, 2);
    mp_put_str(w, "headers");
    mp_put_array(w, 1);
    mp_put_array(w, 3);
    mp_put_str(w, "n");
    mp_put_str(w, "v");
    mp_put_str(w, "x");
    mp_put_kv_str(w, "body", "b");
}

static void rec_header_bin(struct mp_writer *w)
{
    mp_put_map(w, 2);
    mp_put_str(w, "headers");
    mp_put_array(w, 1);
    mp_put_array(w, 2);
    mp_put_str(w, "n");
    mp_put_bin(w, "v", 1);
    mp_put_kv_str(w, "body", "b");
}

static void rec_headers_map(struct mp_writer *w)
{
    mp_put_map(w, 2);
    mp_put_str(w, "headers");
    mp_put_map(w, 0);
    mp_put_kv_str(w, "body", "b");
}

/* A body of `body` bytes and one header of `hb` bytes: metered 8 + 2 + hb + body. */
static size_t g_body, g_hb;
static void rec_sized(struct mp_writer *w)
{
    static char buf[STREAM_RECORD_MAX + 16];
    mp_put_map(w, 2);
    mp_put_str(w, "headers");
    mp_put_array(w, 1);
    mp_put_array(w, 2);
    mp_put_strn(w, buf, g_hb);
    mp_put_str(w, "");
    mp_put_str(w, "body");
    mp_put_bin(w, buf, g_body);
}

T_TEST(append_invalid)
{
    char why[SB_WHY_MAX];
    T_ERR(append_one(rec_not_map, why), ERR_INVAL);
    T_ERR(append_one(rec_no_body, why), ERR_INVAL);
    T_ASSERT(strstr(why, "records[0].body") != NULL);
    T_ERR(append_one(rec_body_int, why), ERR_INVAL);
    T_ERR(append_one(rec_part_empty, why), ERR_INVAL);
    T_ERR(append_one(rec_part_long, why), ERR_INVAL);
    T_OK(append_one(rec_part_max, why));
    T_ERR(append_one(rec_part_nul, why), ERR_INVAL);
    T_ERR(append_one(rec_part_bin, why), ERR_INVAL);
    T_OK(append_one(rec_headers_max, why));
    T_ERR(append_one(rec_headers_many, why), ERR_INVAL);
    T_ERR(append_one(rec_header_triple, why), ERR_INVAL);
    T_ERR(append_one(rec_header_bin, why), ERR_INVAL);
    T_ERR(append_one(rec_headers_map, why), ERR_INVAL);

    /* the metered size: 8 + 2 per header + header bytes + body */
    g_hb = 6;
    g_body = STREAM_RECORD_MAX - 8 - 2 - 6;
    T_OK(append_one(rec_sized, why));
    g_body++;
    T_ERR(append_one(rec_sized, why), ERR_TOOBIG);
    T_ASSERT(strstr(why, "records[0]") != NULL);

    /* the record count */
    struct mp_writer w;
    struct sb_append ap;
    mp_writer_init(&w);
    append_head(&w, 0);
    T_ERR(parse_append(&w, &ap, why), ERR_INVAL);
    sb_append_fini(&ap);
    append_head(&w, STREAM_BATCH_MAX + 1);
    for (unsigned i = 0; i < STREAM_BATCH_MAX + 1; i++) {
        mp_put_map(&w, 1);
        mp_put_kv_str(&w, "body", "");
    }
    T_ERR(parse_append(&w, &ap, why), ERR_INVAL);
    sb_append_fini(&ap);
    append_head(&w, STREAM_BATCH_MAX);
    for (unsigned i = 0; i < STREAM_BATCH_MAX; i++) {
        mp_put_map(&w, 1);
        mp_put_kv_str(&w, "body", "");
    }
    T_OK(parse_append(&w, &ap, why));
    T_EQ(ap.n, STREAM_BATCH_MAX);
    sb_append_fini(&ap);
    /* an array that claims more records than it holds */
    append_head(&w, 3);
    mp_put_map(&w, 1);
    mp_put_kv_str(&w, "body", "");
    T_ERR(parse_append(&w, &ap, why), ERR_INVAL);
    sb_append_fini(&ap);
    /* records missing, or not an array */
    mp_writer_reset(&w);
    mp_put_map(&w, 3);
    put_name(&w, "e", "k", "in");
    T_ERR(parse_append(&w, &ap, why), ERR_INVAL);
    sb_append_fini(&ap);
    mp_writer_fini(&w);
}

T_TEST(keys)
{
    struct sb_stream s = {.env = "env_1", .key = "sess:a}b", .io = "out"};
    char k[SB_KEY_MAX];
    T_EQ(sb_key_stream(&s, k), strlen("tether:stream:{env_1:sess:a}b}:out"));
    T_STREQ(k, "tether:stream:{env_1:sess:a}b}:out");
    sb_key_next(&s, k);
    T_STREQ(k, "tether:stream:{env_1:sess:a}b}:out:next");
    sb_key_bytes(&s, k);
    T_STREQ(k, "tether:stream:{env_1:sess:a}b}:out:bytes");
    sb_key_part_prefix(&s, k);
    T_STREQ(k, "tether:part:8:{env_1:sess:a}b}:out:");
    /* the quota counter is the environment's: its hash tag is the environment id alone */
    T_EQ(sb_key_quota("env_1", k), strlen("tether:quota:{env_1}:bytes"));
    T_STREQ(k, "tether:quota:{env_1}:bytes");
    /* the longest names fit with a longest part id */
    memset(s.env, 'e', STREAM_ENV_MAX);
    s.env[STREAM_ENV_MAX] = '\0';
    memset(s.key, 'k', STREAM_KEY_MAX);
    s.key[STREAM_KEY_MAX] = '\0';
    T_ASSERT(sb_key_part_prefix(&s, k) + STREAM_PART_ID_MAX < SB_KEY_MAX);
    T_ASSERT(sb_key_next(&s, k) < SB_KEY_MAX - 1);
    T_ASSERT(sb_key_bytes(&s, k) < SB_KEY_MAX - 1);
    T_ASSERT(sb_key_quota(s.env, k) < SB_KEY_MAX - 1);
    /* a side channel's keys: in the session's slot, apart from its own pair's and each other's */
    memset(s.channel, 'c', STREAM_CHANNEL_MAX);
    s.channel[STREAM_CHANNEL_MAX] = '\0';
    T_ASSERT(sb_key_part_prefix(&s, k) + STREAM_PART_ID_MAX < SB_KEY_MAX);
    T_ASSERT(sb_key_next(&s, k) < SB_KEY_MAX - 1);
    struct sb_stream c = {.env = "env_1", .key = "k", .channel = "tools.v1", .io = "in"};
    sb_key_stream(&c, k);
    T_STREQ(k, "tether:stream:{env_1:k}:ch/tools.v1/in");
    sb_key_part_prefix(&c, k);
    T_STREQ(k, "tether:part:1:{env_1:k}:ch/tools.v1/in:");
}

T_TEST(channels)
{
    struct mp_writer w;
    struct sb_stream s;
    char why[SB_WHY_MAX] = "", topic[STREAM_NAME_MAX];
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    put_name(&w, "e", "k", "out");
    mp_put_kv_str(&w, "channel", "a-b_c.9");
    T_OK(parse_name(&w, &s, why));
    T_STREQ(s.channel, "a-b_c.9");
    /* nil is the session's own pair */
    mp_writer_reset(&w);
    mp_put_map(&w, 4);
    put_name(&w, "e", "k", "out");
    mp_put_str(&w, "channel");
    mp_put_nil(&w);
    T_OK(parse_name(&w, &s, why));
    T_STREQ(s.channel, "");
    static const char *const bad[] = {"", "a b", "a/b", "\xc3\xa9", NULL};
    for (int i = 0; bad[i]; i++) {
        mp_writer_reset(&w);
        mp_put_map(&w, 4);
        put_name(&w, "e", "k", "out");
        mp_put_kv_str(&w, "channel", bad[i]);
        T_ERR(parse_name(&w, &s, why), ERR_INVAL);
        T_ASSERT(strstr(why, "channel") != NULL);
    }
    mp_writer_fini(&w);
    /* topics: a channel's is never a prefix of the pair's, nor the pair's of a channel's */
    T_OK(stream_topic(topic, sizeof(topic), "e", "k", NULL, "in"));
    T_STREQ(topic, "stream.e.in.k");
    T_OK(stream_topic(topic, sizeof(topic), "e", "k", "", "in"));
    T_STREQ(topic, "stream.e.in.k");
    T_OK(stream_topic(topic, sizeof(topic), "e", "k", "in.x", "in"));
    T_STREQ(topic, "stream.e.ch/in.x/in.k");
    T_ERR(stream_topic(topic, sizeof(topic), "e", "k", "a/b", "in"), ERR_INVAL);
    char longest[STREAM_CHANNEL_MAX + 2];
    memset(longest, 'x', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    T_ASSERT(!stream_channel_valid(longest));
    longest[STREAM_CHANNEL_MAX] = '\0';
    T_ASSERT(stream_channel_valid(longest));
}

/* ---- entries: redisReply trees built by hand ---- */

static redisReply *rstr(const char *s)
{
    redisReply *r = xcalloc(1, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->len = strlen(s);
    r->str = xstrdup(s);
    return r;
}

static redisReply *rarr(size_t n, redisReply **items)
{
    redisReply *r = xcalloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = xcalloc(n ? n : 1, sizeof(*r->element));
    for (size_t i = 0; i < n; i++)
        r->element[i] = items[i];
    return r;
}

/* An entry [id, [fields...]] from strings. */
static redisReply *rentry(const char *id, size_t n, const char *const *fields)
{
    redisReply *f[16];
    for (size_t i = 0; i < n; i++)
        f[i] = rstr(fields[i]);
    redisReply *pair[2] = {rstr(id), rarr(n, f)};
    return rarr(2, pair);
}

T_TEST(entries)
{
    static const char *const ok[] = {"t", "1700000000123", "b", "body!", "", "cmd", "t", "x"};
    static const char *const short_[] = {"t", "1"};
    static const char *const odd[] = {"t", "1", "b", "x", "h"};
    static const char *const swapped[] = {"b", "x", "t", "1"};
    static const char *const bad_ts[] = {"t", "1.5", "b", "x"};
    struct sb_entry e;
    redisReply *r = rentry("41-1", 8, ok);
    T_OK(sb_entry_parse(r, &e));
    T_EQ(e.seq, 41);
    T_EQ(e.ts, 1700000000123ull);
    T_ASSERT(slice_eq(e.body, "body!"));
    T_EQ(e.nheaders, 2);

    /* what sb_entry_size promises: an upper bound of the encoding */
    struct mp_writer w;
    struct mp_reader m;
    struct slice s;
    uint32_t n;
    mp_writer_init(&w);
    sb_entry_put(&w, &e);
    T_OK(mp_writer_err(&w));
    T_ASSERT(mp_writer_len(&w) <= sb_entry_size(&e));
    T_OK(mp_map_find(mp_writer_data(&w), mp_writer_len(&w), "headers", &m));
    T_ASSERT(mp_read_array(&m, &n) == OK && n == 2);
    T_ASSERT(mp_read_array(&m, &n) == OK && n == 2);
    T_ASSERT(mp_read_str(&m, &s) == OK && s.n == 0);
    T_ASSERT(mp_read_str(&m, &s) == OK && slice_eq(s, "cmd"));
    T_ASSERT(mp_read_array(&m, &n) == OK && n == 2);
    T_ASSERT(mp_read_str(&m, &s) == OK && slice_eq(s, "t"));
    T_ASSERT(mp_read_str(&m, &s) == OK && slice_eq(s, "x"));
    T_OK(mp_map_find(mp_writer_data(&w), mp_writer_len(&w), "body", &m));
    T_ASSERT(mp_read_bin(&m, &s) == OK && slice_eq(s, "body!"));
    mp_writer_fini(&w);
    freeReplyObject(r);

    r = rentry("0-1", 4, ok);
    T_OK(sb_entry_parse(r, &e));
    T_EQ(e.seq, 0);
    T_EQ(e.nheaders, 0);
    freeReplyObject(r);

    static const char *const bad_ids[] = {"0-0", "5-2", "5", "-1", "x-1", "5-10", "5-"};
    int bad = 0;
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        r = rentry(bad_ids[i], 4, ok);
        bad += sb_entry_parse(r, &e) == ERR_PROTO;
        freeReplyObject(r);
    }
    T_EQ(bad, (int)(sizeof(bad_ids) / sizeof(bad_ids[0])));
    r = rentry("1-1", 2, short_);
    T_ERR(sb_entry_parse(r, &e), ERR_PROTO);
    freeReplyObject(r);
    r = rentry("1-1", 5, odd);
    T_ERR(sb_entry_parse(r, &e), ERR_PROTO);
    freeReplyObject(r);
    r = rentry("1-1", 4, swapped);
    T_ERR(sb_entry_parse(r, &e), ERR_PROTO);
    freeReplyObject(r);
    r = rentry("1-1", 4, bad_ts);
    T_ERR(sb_entry_parse(r, &e), ERR_PROTO);
    freeReplyObject(r);
    r = rstr("1-1");
    T_ERR(sb_entry_parse(r, &e), ERR_PROTO);
    freeReplyObject(r);
    T_ERR(sb_entry_parse(NULL, &e), ERR_PROTO);
}

/* A record with the given single header and body, headers encoded into w. */
static struct sb_record_in trim_rec(struct mp_writer *w, const char *name, const char *value,
                                    const char *body, size_t body_n)
{
    mp_writer_reset(w);
    mp_put_array(w, 1);
    mp_put_array(w, 2);
    mp_put_str(w, name);
    mp_put_str(w, value);
    return (struct sb_record_in){.part_id = SLICE_NULL,
                                 .body = {body, body_n},
                                 .headers = {(const char *)mp_writer_data(w), mp_writer_len(w)},
                                 .nheaders = 1};
}

T_TEST(trim_commands)
{
    struct mp_writer w;
    uint64_t p = 0;
    static const char be300[8] = {0, 0, 0, 0, 0, 0, 1, 0x2c};
    mp_writer_init(&w);
    struct sb_record_in r = trim_rec(&w, "", "trim", be300, 8);
    T_ASSERT(sb_record_trim_point(&r, &p));
    T_EQ(p, 300u);
    r = trim_rec(&w, "", "fence", be300, 8);
    T_ASSERT(!sb_record_trim_point(&r, &p));
    r = trim_rec(&w, "x", "trim", be300, 8);
    T_ASSERT(!sb_record_trim_point(&r, &p));
    r = trim_rec(&w, "", "trim", be300, 7);
    T_ASSERT(!sb_record_trim_point(&r, &p));
    r.nheaders = 0;
    T_ASSERT(!sb_record_trim_point(&r, &p));
    mp_writer_fini(&w);
}

/* A stream.follow body up to its streams array of n, which the caller writes. */
static void follow_head(struct mp_writer *w, uint32_t n)
{
    mp_writer_reset(w);
    mp_put_map(w, 3);
    mp_put_kv_str(w, "holder", "h");
    mp_put_kv_uint(w, "ttl_ms", 1000);
    mp_put_str(w, "streams");
    mp_put_array(w, n);
}

/* A stream.follow body: holder, ttl_ms and n streams (stream i named k<i>, io "out"). */
static void follow_body(struct mp_writer *w, const char *holder, int64_t ttl, uint32_t n)
{
    mp_writer_reset(w);
    mp_put_map(w, 3);
    mp_put_kv_str(w, "holder", holder);
    mp_put_kv_int(w, "ttl_ms", ttl);
    mp_put_str(w, "streams");
    mp_put_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%u", i);
        mp_put_map(w, i == 1 ? 4 : 3);
        put_name(w, "e", k, "out");
        if (i == 1)
            mp_put_kv_str(w, "channel", "tools");
    }
}

T_TEST(follow_requests)
{
    struct mp_writer w;
    struct sb_follow_req f;
    char why[SB_WHY_MAX], holder[STREAM_FOLLOW_HOLDER_MAX + 2];
    mp_writer_init(&w);

    follow_body(&w, "gateway.0123456789abcdef", 30000, 3);
    T_OK(sb_parse_follow(body_of(&w), &f, why, sizeof(why)));
    T_EQ(f.n, 3);
    T_EQ(f.ttl_ms, 30000);
    T_ASSERT(f.holder.n == 24 && memcmp(f.holder.p, "gateway.0123456789abcdef", 24) == 0);
    T_ASSERT(strcmp(f.names[2].key, "k2") == 0 && strcmp(f.names[2].io, "out") == 0);
    T_ASSERT(strcmp(f.names[1].channel, "tools") == 0 && f.names[0].channel[0] == '\0');
    sb_follow_req_fini(&f);

    follow_body(&w, "h", 0, STREAM_FOLLOW_BATCH_MAX); /* ttl 0 ends the leases; a full batch */
    T_OK(sb_parse_follow(body_of(&w), &f, why, sizeof(why)));
    T_EQ(f.n, STREAM_FOLLOW_BATCH_MAX);
    sb_follow_req_fini(&f);

    memset(holder, 'h', sizeof(holder) - 1);
    holder[sizeof(holder) - 1] = '\0';
    follow_body(&w, holder, 30000, 1); /* one byte too long */
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strstr(why, "holder") != NULL);
    sb_follow_req_fini(&f);
    follow_body(&w, "", 30000, 1);
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    sb_follow_req_fini(&f);
    follow_body(&w, "h", 10 * STREAM_FOLLOW_TTL_MS + 1, 1);
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    sb_follow_req_fini(&f);
    follow_body(&w, "h", -1, 1);
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    sb_follow_req_fini(&f);
    follow_body(&w, "h", 30000, 0);
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strstr(why, "streams") != NULL);
    sb_follow_req_fini(&f);
    follow_body(&w, "h", 30000, STREAM_FOLLOW_BATCH_MAX + 1);
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    sb_follow_req_fini(&f);

    /* a bad name anywhere refuses the whole request, naming it */
    follow_head(&w, 2);
    mp_put_map(&w, 3);
    put_name(&w, "e", "k", "out");
    mp_put_map(&w, 3);
    put_name(&w, "e", "k", "sideways");
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    T_ASSERT(strncmp(why, "streams[1]: ", 12) == 0);
    sb_follow_req_fini(&f);

    /* not a map; a stream that is not a map */
    mp_writer_reset(&w);
    mp_put_array(&w, 0);
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    sb_follow_req_fini(&f);
    follow_head(&w, 1);
    mp_put_str(&w, "stream.e.out.k");
    T_ERR(sb_parse_follow(body_of(&w), &f, why, sizeof(why)), ERR_INVAL);
    sb_follow_req_fini(&f);
    mp_writer_fini(&w);
}

int main(void)
{
    T_RUN(stream_names);
    T_RUN(uints);
    T_RUN(append_valid);
    T_RUN(append_invalid);
    T_RUN(keys);
    T_RUN(channels);
    T_RUN(entries);
    T_RUN(trim_commands);
    T_RUN(follow_requests);
    return T_DONE();
}
