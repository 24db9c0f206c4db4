/*
 * msg_stream_test.c - the stream-broker's bodies (proto/msg_stream.h): their golden files, the
 * bodies written in place (the _open functions), and what the broker and the readers of its
 * replies rely on of each: required fields, the limits of the names, presence flags.
 */
#include <string.h>

#include "msg_golden.h"
#include "msg_stream.h"

static struct slice data_of(const struct mp_writer *w)
{
    return (struct slice){mp_writer_data(w), mp_writer_len(w)};
}

/* A record object as the broker writes one (seq, ts, headers, body), into w. */
static void put_record(struct mp_writer *w, uint64_t seq, const char *body)
{
    mp_put_map(w, 4);
    mp_put_kv_uint(w, "seq", seq);
    mp_put_kv_uint(w, "ts", 1700000000000ull + seq);
    mp_put_str(w, "headers");
    mp_put_array(w, 1);
    mp_put_array(w, 2);
    mp_put_str(w, "content-type");
    mp_put_str(w, "text/plain");
    mp_put_str(w, "body");
    mp_put_bin(w, body, strlen(body));
}

/* The records of an append from the realtime route (part id, no headers) and from S2 (a
 * header, no part id), into w. */
static void put_records_in(struct mp_writer *w)
{
    struct mp_writer hw;
    mp_writer_init(&hw);
    mp_put_array(&hw, 1);
    mp_put_array(&hw, 2);
    mp_put_str(&hw, "");
    mp_put_str(&hw, "fence");
    struct msg_stream_record_in a = {SLICE_LIT("p1"), MSG_STREAM_NO_HEADERS,
                                     SLICE_LIT("{\"data\":\"hi\",\"id\":\"p1\"}")},
                                b = {SLICE_NULL, data_of(&hw), SLICE_LIT("")};
    mp_put_array(w, 2);
    msg_encode(&msg_stream_record_in_form, w, &a);
    msg_encode(&msg_stream_record_in_form, w, &b);
    mp_writer_fini(&hw);
}

T_TEST(golden_requests)
{
    struct mp_writer w;
    mp_writer_init(&w);
    put_records_in(&w);
    struct msg_stream_append append = {
        .name = msg_stream_name_of("env_1", "session_abc", NULL, "in"),
        .records = data_of(&w),
    };
    MSG_GOLDEN(msg_stream_append_form, "stream.append", append);
    struct msg_stream_record_in rec = {SLICE_LIT("s2s:00ff:0"), MSG_STREAM_NO_HEADERS,
                                       SLICE_LIT("b")};
    MSG_GOLDEN(msg_stream_record_in_form, "stream.append.record", rec);

    struct msg_stream_read read = {msg_stream_name_of("env_1", "session_abc", "", "out"), 5, 1000};
    MSG_GOLDEN(msg_stream_read_form, "stream.read", read);
    struct msg_stream_peek peek = {msg_stream_name_of("env_1", "chat-42", "tools.v1", "out"), 2};
    MSG_GOLDEN(msg_stream_peek_form, "stream.peek", peek);
    struct msg_stream_trim trim = {msg_stream_name_of("env_1", "session_abc", NULL, "in"), 3};
    MSG_GOLDEN(msg_stream_trim_form, "stream.trim", trim);
    struct msg_stream_seal seal = {SLICE_LIT("env_1"), SLICE_LIT("chat-42"), SLICE_NULL};
    MSG_GOLDEN(msg_stream_seal_form, "stream.seal", seal);

    mp_writer_reset(&w);
    mp_put_array(&w, 2);
    struct msg_stream_name a = msg_stream_name_of("env_1", "session_abc", NULL, "out"),
                           b = msg_stream_name_of("env_1", "session_abc", "tools", "in");
    msg_encode(&msg_stream_name_form, &w, &a);
    msg_encode(&msg_stream_name_form, &w, &b);
    struct msg_stream_follow follow = {SLICE_LIT("gateway.0123456789abcdef"), 30000, data_of(&w)};
    MSG_GOLDEN(msg_stream_follow_form, "stream.follow", follow);

    struct msg_rate_take take = {
        .env = SLICE_LIT("env_1"), .group = SLICE_LIT("api"), .burst = 100, .per_s = 10};
    MSG_GOLDEN(msg_rate_take_form, "rate.take", take);
    mp_writer_fini(&w);
}

T_TEST(golden_replies_and_event)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_array(&w, 2);
    mp_put_uint(&w, 7);
    mp_put_uint(&w, 8);
    size_t seqs_n = mp_writer_len(&w);
    mp_put_array(&w, 2);
    mp_put_bool(&w, false);
    mp_put_bool(&w, true);
    struct slice both = data_of(&w);
    struct msg_stream_append_reply appended = {
        {both.p, seqs_n}, {both.p + seqs_n, both.n - seqs_n}, 9, 1700000000000ull};
    MSG_GOLDEN(msg_stream_append_reply_form, "stream.append.reply", appended);

    mp_writer_reset(&w);
    mp_put_array(&w, 2);
    put_record(&w, 5, "{\"data\":\"hi\",\"id\":\"p1\"}");
    put_record(&w, 6, "");
    struct msg_stream_range read = {data_of(&w), 7, 1700000000006ull};
    MSG_GOLDEN(msg_stream_range_form, "stream.read.reply", read);
    mp_writer_reset(&w);
    mp_put_array(&w, 0);
    struct msg_stream_range peek = {data_of(&w), 0, 0}; /* an empty stream */
    MSG_GOLDEN(msg_stream_range_form, "stream.peek.reply", peek);

    struct msg_stream_trim_reply trimmed = {7};
    MSG_GOLDEN(msg_stream_trim_reply_form, "stream.trim.reply", trimmed);
    struct msg_stream_seal_reply sealed = {true};
    MSG_GOLDEN(msg_stream_seal_reply_form, "stream.seal.reply", sealed);

    mp_writer_reset(&w);
    mp_put_array(&w, 2);
    mp_put_bool(&w, true);
    mp_put_bool(&w, false);
    struct msg_stream_follow_reply added = {data_of(&w)};
    MSG_GOLDEN(msg_stream_follow_reply_form, "stream.follow.reply", added);

    struct msg_rate_take_reply taken = {false, 100, 0, 1700000000100ull, 100};
    MSG_GOLDEN(msg_rate_take_reply_form, "rate.take.reply", taken);

    mp_writer_reset(&w);
    put_record(&w, 41, "x");
    struct msg_stream_record ev = {SLICE_LIT("env_1"), SLICE_LIT("session_abc"), SLICE_LIT("out"),
                                   data_of(&w)};
    MSG_GOLDEN(msg_stream_record_form, "stream.record", ev);
    mp_writer_fini(&w);
}

/* Each _open writes the body up to its batch, which then follows: the same bytes as encoding the
 * whole struct. */
T_TEST(written_in_place)
{
    struct mp_writer whole, batch, w;
    mp_writer_init(&whole);
    mp_writer_init(&batch);
    mp_writer_init(&w);

    put_records_in(&batch);
    struct msg_stream_append append = {msg_stream_name_of("e", "k", "ch", "out"), data_of(&batch)};
    msg_encode(&msg_stream_append_form, &whole, &append);
    msg_stream_append_open(&w, &append); /* whatever records holds: the caller writes it */
    put_records_in(&w);
    T_EQ(mp_writer_len(&w), mp_writer_len(&whole));
    T_MEMEQ(mp_writer_data(&w), mp_writer_data(&whole), mp_writer_len(&whole));

    mp_writer_reset(&batch);
    mp_writer_reset(&whole);
    mp_writer_reset(&w);
    struct msg_stream_name name = msg_stream_name_of("e", "k", NULL, "in");
    mp_put_array(&batch, 1);
    msg_encode(&msg_stream_name_form, &batch, &name);
    struct msg_stream_follow follow = {SLICE_LIT("h"), 0, data_of(&batch)};
    msg_encode(&msg_stream_follow_form, &whole, &follow);
    msg_stream_follow_open(&w, &(struct msg_stream_follow){SLICE_LIT("h"), 0, SLICE_NULL});
    mp_put_array(&w, 1);
    msg_encode(&msg_stream_name_form, &w, &name);
    T_EQ(mp_writer_len(&w), mp_writer_len(&whole));
    T_MEMEQ(mp_writer_data(&w), mp_writer_data(&whole), mp_writer_len(&whole));

    mp_writer_reset(&batch);
    mp_writer_reset(&whole);
    mp_writer_reset(&w);
    put_record(&batch, 3, "b");
    struct msg_stream_record ev = {SLICE_LIT("e"), SLICE_LIT("k"), SLICE_LIT("in"),
                                   data_of(&batch)};
    msg_encode(&msg_stream_record_form, &whole, &ev);
    msg_stream_record_open(&w, &ev);
    put_record(&w, 3, "b");
    T_EQ(mp_writer_len(&w), mp_writer_len(&whole));
    T_MEMEQ(mp_writer_data(&w), mp_writer_data(&whole), mp_writer_len(&whole));

    mp_writer_fini(&whole);
    mp_writer_fini(&batch);
    mp_writer_fini(&w);
}

/* A stream.read body of name and a count, decoded (out borrows from the body, kept until the
 * next call). */
static err_t read_of(struct msg_stream_name name, struct msg_stream_read *out)
{
    static struct mp_writer w;
    static bool ready;
    struct msg_stream_read in = {name, 0, 1};
    if (!ready)
        mp_writer_init(&w);
    ready = true;
    mp_writer_reset(&w);
    msg_encode(&msg_stream_read_form, &w, &in);
    return msg_decode(&msg_stream_read_form, mp_writer_data(&w), mp_writer_len(&w), out);
}

/* The names' limits are the broker's buffers (actors/stream_broker/sb.h): one byte more is
 * refused by the decoder, so no handler copies a name that does not fit. */
T_TEST(name_limits)
{
    char env[STREAM_ENV_MAX + 2], key[STREAM_KEY_MAX + 2], ch[STREAM_CHANNEL_MAX + 2];
    struct msg_stream_read m;
    memset(env, 'e', sizeof(env));
    memset(key, 'k', sizeof(key));
    memset(ch, 'c', sizeof(ch));
    struct slice e = {env, STREAM_ENV_MAX}, k = {key, STREAM_KEY_MAX}, c = {ch, STREAM_CHANNEL_MAX};
    T_OK(read_of((struct msg_stream_name){e, k, SLICE_LIT("out"), c}, &m));
    T_ASSERT(m.name.env.n == STREAM_ENV_MAX && m.name.key.n == STREAM_KEY_MAX &&
             m.name.channel.n == STREAM_CHANNEL_MAX && slice_eq(m.name.io, "out"));
    e.n++;
    T_ERR(read_of((struct msg_stream_name){e, k, SLICE_LIT("out"), c}, &m), ERR_INVAL);
    e.n--;
    k.n++;
    T_ERR(read_of((struct msg_stream_name){e, k, SLICE_LIT("out"), c}, &m), ERR_INVAL);
    k.n--;
    c.n++;
    T_ERR(read_of((struct msg_stream_name){e, k, SLICE_LIT("out"), c}, &m), ERR_INVAL);
    T_ERR(read_of((struct msg_stream_name){e, k, SLICE_LIT("outs"), SLICE_NULL}, &m), ERR_INVAL);
    /* env, key and io are required and not empty; channel is optional, and "" is present */
    T_ERR(read_of((struct msg_stream_name){SLICE_LIT(""), k, SLICE_LIT("in"), SLICE_NULL}, &m),
          ERR_INVAL);
    T_ERR(read_of((struct msg_stream_name){e, SLICE_NULL, SLICE_LIT("in"), SLICE_NULL}, &m),
          ERR_INVAL);
    T_ERR(read_of((struct msg_stream_name){e, k, SLICE_NULL, SLICE_NULL}, &m), ERR_INVAL);
    T_OK(read_of((struct msg_stream_name){e, k, SLICE_LIT("in"), SLICE_NULL}, &m));
    T_ASSERT(m.name.channel.p == NULL);
    T_OK(read_of((struct msg_stream_name){e, k, SLICE_LIT("in"), SLICE_LIT("")}, &m));
    T_ASSERT(m.name.channel.p != NULL && m.name.channel.n == 0); /* the broker refuses it */

    /* the session's own pair names no channel; nil reads as none */
    struct msg_stream_name own = msg_stream_name_of("e", "k", "", "in");
    T_ASSERT(own.channel.p == NULL);
    own = msg_stream_name_of("e", "k", NULL, "in");
    T_ASSERT(own.channel.p == NULL && slice_eq(own.env, "e") && slice_eq(own.io, "in"));
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 4);
    mp_put_kv_str(&w, "env", "e");
    mp_put_kv_str(&w, "key", "k");
    mp_put_kv_str(&w, "io", "in");
    mp_put_str(&w, "channel");
    mp_put_nil(&w);
    struct msg_stream_name n;
    T_OK(msg_decode(&msg_stream_name_form, mp_writer_data(&w), mp_writer_len(&w), &n));
    T_ASSERT(n.channel.p == NULL);
    /* a body that is not a map */
    mp_writer_reset(&w);
    mp_put_array(&w, 0);
    T_ERR(msg_decode(&msg_stream_name_form, mp_writer_data(&w), mp_writer_len(&w), &n), ERR_PROTO);
    mp_writer_fini(&w);
}

/* What each request requires besides its name. */
T_TEST(requests_require)
{
    struct mp_writer w;
    struct msg_stream_name name = msg_stream_name_of("e", "k", NULL, "in");
    mp_writer_init(&w);

    /* stream.read without from (the name and count alone: a peek's body) */
    struct msg_stream_peek peek = {name, 3};
    struct msg_stream_read read;
    msg_encode(&msg_stream_peek_form, &w, &peek);
    T_ERR(msg_decode(&msg_stream_read_form, mp_writer_data(&w), mp_writer_len(&w), &read),
          ERR_INVAL);
    T_OK(msg_decode(&msg_stream_peek_form, mp_writer_data(&w), mp_writer_len(&w), &peek));
    T_EQ(peek.count, 3u);
    /* a count of 0 decodes: the range (1-1000, 1-16) is the broker's, with its message */
    mp_writer_reset(&w);
    peek.count = 0;
    msg_encode(&msg_stream_peek_form, &w, &peek);
    T_OK(msg_decode(&msg_stream_peek_form, mp_writer_data(&w), mp_writer_len(&w), &peek));
    /* a negative count is no uint */
    mp_writer_reset(&w);
    mp_put_map(&w, 4);
    mp_put_kv_str(&w, "env", "e");
    mp_put_kv_str(&w, "key", "k");
    mp_put_kv_str(&w, "io", "in");
    mp_put_kv_int(&w, "count", -1);
    T_ERR(msg_decode(&msg_stream_peek_form, mp_writer_data(&w), mp_writer_len(&w), &peek),
          ERR_INVAL);

    /* stream.append and stream.follow need their batch; stream.trim its point */
    struct msg_stream_append append = {name, SLICE_NULL};
    mp_writer_reset(&w);
    msg_encode(&msg_stream_append_form, &w, &append);
    T_ERR(msg_decode(&msg_stream_append_form, mp_writer_data(&w), mp_writer_len(&w), &append),
          ERR_INVAL);
    struct msg_stream_follow follow = {SLICE_LIT("h"), 0, SLICE_NULL};
    mp_writer_reset(&w);
    msg_encode(&msg_stream_follow_form, &w, &follow);
    T_ERR(msg_decode(&msg_stream_follow_form, mp_writer_data(&w), mp_writer_len(&w), &follow),
          ERR_INVAL);
    struct msg_stream_trim trim;
    mp_writer_reset(&w);
    msg_encode(&msg_stream_name_form, &w, &name);
    T_ERR(msg_decode(&msg_stream_trim_form, mp_writer_data(&w), mp_writer_len(&w), &trim),
          ERR_INVAL);

    /* stream.follow's holder: 1-96 bytes */
    char holder[STREAM_FOLLOW_HOLDER_MAX + 1];
    memset(holder, 'h', sizeof(holder));
    struct msg_stream_follow got;
    follow = (struct msg_stream_follow){{holder, sizeof(holder)}, 0, SLICE_LIT("\x90")};
    mp_writer_reset(&w);
    msg_encode(&msg_stream_follow_form, &w, &follow);
    T_ERR(msg_decode(&msg_stream_follow_form, mp_writer_data(&w), mp_writer_len(&w), &got),
          ERR_INVAL);
    follow.holder.n--;
    mp_writer_reset(&w);
    msg_encode(&msg_stream_follow_form, &w, &follow);
    T_OK(msg_decode(&msg_stream_follow_form, mp_writer_data(&w), mp_writer_len(&w), &got));
    T_EQ(got.holder.n, STREAM_FOLLOW_HOLDER_MAX);
    mp_writer_fini(&w);
}

/* stream.seal's reason: nil is written (none), and kept to STREAM_REASON_MAX bytes. */
T_TEST(seal_reason)
{
    char reason[STREAM_REASON_MAX + 1];
    struct msg_stream_seal in = {SLICE_LIT("e"), SLICE_LIT("k"), SLICE_NULL}, out;
    struct mp_writer w;
    struct mp_reader v;
    mp_writer_init(&w);
    msg_encode(&msg_stream_seal_form, &w, &in);
    T_OK(mp_map_find(mp_writer_data(&w), mp_writer_len(&w), "reason", &v));
    T_OK(mp_read_nil(&v));
    T_OK(msg_decode(&msg_stream_seal_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(out.reason.p == NULL);
    memset(reason, 'r', sizeof(reason));
    in.reason = (struct slice){reason, STREAM_REASON_MAX};
    mp_writer_reset(&w);
    msg_encode(&msg_stream_seal_form, &w, &in);
    T_OK(msg_decode(&msg_stream_seal_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_EQ(out.reason.n, STREAM_REASON_MAX);
    in.reason.n++;
    mp_writer_reset(&w);
    msg_encode(&msg_stream_seal_form, &w, &in);
    T_ERR(msg_decode(&msg_stream_seal_form, mp_writer_data(&w), mp_writer_len(&w), &out),
          ERR_INVAL);
    mp_writer_fini(&w);
}

/* rate.take's cost: absent is not given (1), nil is given (and refused by the broker as 0). */
T_TEST(rate_take_cost)
{
    struct msg_rate_take in = {.env = SLICE_LIT("e"),
                               .group = SLICE_LIT("api"),
                               .burst = 5,
                               .per_s = 1},
                         out;
    struct mp_writer w;
    mp_writer_init(&w);
    msg_encode(&msg_rate_take_form, &w, &in);
    T_OK(msg_decode(&msg_rate_take_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(!out.cost_given && out.burst == 5 && out.per_s == 1);
    mp_writer_reset(&w);
    mp_put_map(&w, 5);
    mp_put_kv_str(&w, "env", "e");
    mp_put_kv_str(&w, "group", "api");
    mp_put_kv_uint(&w, "burst", 5);
    mp_put_kv_uint(&w, "per_s", 1);
    mp_put_str(&w, "cost");
    mp_put_nil(&w);
    T_OK(msg_decode(&msg_rate_take_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(out.cost_given && out.cost == 0);
    in.cost = 3;
    in.cost_given = true;
    mp_writer_reset(&w);
    msg_encode(&msg_rate_take_form, &w, &in);
    T_OK(msg_decode(&msg_rate_take_form, mp_writer_data(&w), mp_writer_len(&w), &out));
    T_ASSERT(out.cost_given && out.cost == 3);
    /* a group over 32 bytes */
    in.group = SLICE_LIT("abcdefghijklmnopqrstuvwxyzabcdefg");
    mp_writer_reset(&w);
    msg_encode(&msg_rate_take_form, &w, &in);
    T_ERR(msg_decode(&msg_rate_take_form, mp_writer_data(&w), mp_writer_len(&w), &out), ERR_INVAL);
    mp_writer_fini(&w);
}

/* What the readers of the replies and of the event rely on. */
T_TEST(replies_and_event)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_map(&w, 0);
    /* an empty range is an empty stream; an append's reply names its seqs; a rate reply says
     * whether the take was allowed; a follow reply has its flags; an event all its fields */
    struct msg_stream_range range;
    T_OK(msg_decode(&msg_stream_range_form, mp_writer_data(&w), mp_writer_len(&w), &range));
    T_ASSERT(range.records.p == NULL && range.tail == 0 && range.tail_ts == 0);
    struct msg_stream_append_reply appended;
    T_ERR(
        msg_decode(&msg_stream_append_reply_form, mp_writer_data(&w), mp_writer_len(&w), &appended),
        ERR_INVAL);
    struct msg_rate_take_reply taken;
    T_ERR(msg_decode(&msg_rate_take_reply_form, mp_writer_data(&w), mp_writer_len(&w), &taken),
          ERR_INVAL);
    struct msg_stream_follow_reply added;
    T_ERR(msg_decode(&msg_stream_follow_reply_form, mp_writer_data(&w), mp_writer_len(&w), &added),
          ERR_INVAL);
    struct msg_stream_record ev = {SLICE_LIT("e"), SLICE_LIT("k"), SLICE_LIT("in"), SLICE_NULL};
    mp_writer_reset(&w);
    msg_encode(&msg_stream_record_form, &w, &ev);
    T_ERR(msg_decode(&msg_stream_record_form, mp_writer_data(&w), mp_writer_len(&w), &ev),
          ERR_INVAL);

    /* an append's reply without dups (they are for logs) */
    mp_writer_reset(&w);
    mp_put_map(&w, 2);
    mp_put_str(&w, "seqs");
    mp_put_array(&w, 1);
    mp_put_uint(&w, 4);
    mp_put_kv_uint(&w, "tail", 5);
    T_OK(msg_decode(&msg_stream_append_reply_form, mp_writer_data(&w), mp_writer_len(&w),
                    &appended));
    T_ASSERT(appended.dups.p == NULL && appended.tail == 5 && appended.seqs.n == 2);
    mp_writer_fini(&w);
}

int main(void)
{
    T_RUN(golden_requests);
    T_RUN(golden_replies_and_event);
    T_RUN(written_in_place);
    T_RUN(name_limits);
    T_RUN(requests_require);
    T_RUN(seal_reason);
    T_RUN(rate_take_cost);
    T_RUN(replies_and_event);
    return T_DONE();
}
