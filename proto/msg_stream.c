/*
 * msg_stream.c - the field tables of the stream-broker's bodies (msg_stream.h).
 */
#include "msg_stream.h"

#include "msg_raw.h"

#define REQ MSGF_REQUIRED
#define NOG MSGF_NO_GIVEN

/* The rows of a struct msg_stream_name at offset AT of the struct a table describes. */
#define NAME_ROW(AT, M, FLAGS, MAX)                                                                \
    {                                                                                              \
#M, MSGF_STR, FLAGS, (AT) + offsetof(struct msg_stream_name, M), NOG, MAX                  \
    }
#define NAME_ROWS(AT)                                                                              \
    NAME_ROW(AT, env, REQ, STREAM_ENV_MAX), NAME_ROW(AT, key, REQ, STREAM_KEY_MAX),                \
        NAME_ROW(AT, io, REQ, MSG_STREAM_IO_MAX), NAME_ROW(AT, channel, 0, STREAM_CHANNEL_MAX)

/*
 * FN writes a body of struct S (form F) up to the value of its last field, LAST, which the caller
 * writes next (msg_stream.h): that raw field is written as an empty value, so only its key is.
 */
#define MSG_STREAM_OPEN(FN, S, F, LAST)                                                            \
    void FN(struct mp_writer *w, const S *m)                                                       \
    {                                                                                              \
        S head = *m;                                                                               \
        head.LAST = (struct slice){"", 0};                                                         \
        msg_encode(&F, w, &head);                                                                  \
    }

err_t msg_stream_items(struct slice raw, struct mp_reader *r, uint32_t *n)
{
    if (!raw.p) { /* absent: no items */
        *n = 0;
        mp_reader_init(r, "", 0);
        return OK;
    }
    return msg_raw_array(raw, r, n) == OK ? OK : ERR_PROTO;
}

struct msg_stream_name msg_stream_name_of(const char *env, const char *key, const char *channel,
                                          const char *io)
{
    return (struct msg_stream_name){msg_str(env), msg_str(key), msg_str(io),
                                    channel && channel[0] ? msg_str(channel) : SLICE_NULL};
}

static const struct msg_field name_fields[] = {NAME_ROWS(0)};
const struct msg_form msg_stream_name_form = MSG_FORM("stream name", name_fields);

#define S struct msg_stream_append
static const struct msg_field append_fields[] = {
    NAME_ROWS(offsetof(S, name)),
    MSGF(S, records, MSGF_RAW, REQ, 0),
};
#undef S
const struct msg_form msg_stream_append_form = MSG_FORM("stream.append request", append_fields);

MSG_STREAM_OPEN(msg_stream_append_open, struct msg_stream_append, msg_stream_append_form, records)

#define S struct msg_stream_record_in
static const struct msg_field record_in_fields[] = {
    MSGF(S, part_id, MSGF_STR, 0, STREAM_PART_ID_MAX),
    MSGF(S, headers, MSGF_RAW, 0, 0),
    MSGF(S, body, MSGF_BIN, REQ, 0),
};
#undef S
const struct msg_form msg_stream_record_in_form =
    MSG_FORM("stream.append record", record_in_fields);

#define S struct msg_stream_append_reply
static const struct msg_field append_reply_fields[] = {
    MSGF(S, seqs, MSGF_RAW, REQ, 0),
    MSGF(S, dups, MSGF_RAW, 0, 0),
    MSGF(S, tail, MSGF_U64, 0, 0),
    MSGF(S, ts, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_stream_append_reply_form =
    MSG_FORM("stream.append reply", append_reply_fields);

#define S struct msg_stream_read
static const struct msg_field read_fields[] = {
    NAME_ROWS(offsetof(S, name)),
    MSGF(S, from, MSGF_U64, REQ, 0),
    MSGF(S, count, MSGF_U64, REQ, 0),
};
#undef S
const struct msg_form msg_stream_read_form = MSG_FORM("stream.read request", read_fields);

#define S struct msg_stream_peek
static const struct msg_field peek_fields[] = {
    NAME_ROWS(offsetof(S, name)),
    MSGF(S, count, MSGF_U64, REQ, 0),
};
#undef S
const struct msg_form msg_stream_peek_form = MSG_FORM("stream.peek request", peek_fields);

/* the readers of a range take every field as optional (an empty answer is an empty stream) */
#define S struct msg_stream_range
static const struct msg_field range_fields[] = {
    MSGF(S, records, MSGF_RAW, 0, 0),
    MSGF(S, tail, MSGF_U64, 0, 0),
    MSGF(S, tail_ts, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_stream_range_form = MSG_FORM("stream.read reply", range_fields);

#define S struct msg_stream_trim
static const struct msg_field trim_fields[] = {
    NAME_ROWS(offsetof(S, name)),
    MSGF(S, before, MSGF_U64, REQ, 0),
};
#undef S
const struct msg_form msg_stream_trim_form = MSG_FORM("stream.trim request", trim_fields);

#define S struct msg_stream_trim_reply
static const struct msg_field trim_reply_fields[] = {MSGF(S, tail, MSGF_U64, 0, 0)};
#undef S
const struct msg_form msg_stream_trim_reply_form = MSG_FORM("stream.trim reply", trim_reply_fields);

#define S struct msg_stream_seal
static const struct msg_field seal_fields[] = {
    MSGF(S, env, MSGF_STR, REQ, STREAM_ENV_MAX),
    MSGF(S, key, MSGF_STR, REQ, STREAM_KEY_MAX),
    MSGF(S, reason, MSGF_STR, MSGF_NIL, STREAM_REASON_MAX),
};
#undef S
const struct msg_form msg_stream_seal_form = MSG_FORM("stream.seal request", seal_fields);

#define S struct msg_stream_seal_reply
static const struct msg_field seal_reply_fields[] = {MSGF(S, sealed, MSGF_BOOL, 0, 0)};
#undef S
const struct msg_form msg_stream_seal_reply_form = MSG_FORM("stream.seal reply", seal_reply_fields);

#define S struct msg_stream_follow
static const struct msg_field follow_fields[] = {
    MSGF(S, holder, MSGF_STR, REQ, STREAM_FOLLOW_HOLDER_MAX),
    MSGF(S, ttl_ms, MSGF_U64, REQ, 0),
    MSGF(S, streams, MSGF_RAW, REQ, 0),
};
#undef S
const struct msg_form msg_stream_follow_form = MSG_FORM("stream.follow request", follow_fields);

MSG_STREAM_OPEN(msg_stream_follow_open, struct msg_stream_follow, msg_stream_follow_form, streams)

#define S struct msg_stream_follow_reply
static const struct msg_field follow_reply_fields[] = {MSGF(S, added, MSGF_RAW, REQ, 0)};
#undef S
const struct msg_form msg_stream_follow_reply_form =
    MSG_FORM("stream.follow reply", follow_reply_fields);

#define S struct msg_rate_take
static const struct msg_field rate_take_fields[] = {
    MSGF(S, env, MSGF_STR, REQ, STREAM_ENV_MAX),
    MSGF(S, group, MSGF_STR, REQ, MSG_RATE_GROUP_MAX),
    MSGF(S, burst, MSGF_U64, REQ, 0),
    MSGF(S, per_s, MSGF_U64, REQ, 0),
    MSGF_G(S, cost, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_rate_take_form = MSG_FORM("rate.take request", rate_take_fields);

#define S struct msg_rate_take_reply
static const struct msg_field rate_take_reply_fields[] = {
    MSGF(S, allowed, MSGF_BOOL, REQ, 0),     MSGF(S, limit, MSGF_U64, 0, 0),
    MSGF(S, remaining, MSGF_U64, 0, 0),      MSGF(S, reset_ms, MSGF_U64, 0, 0),
    MSGF(S, retry_after_ms, MSGF_U64, 0, 0),
};
#undef S
const struct msg_form msg_rate_take_reply_form =
    MSG_FORM("rate.take reply", rate_take_reply_fields);

#define S struct msg_stream_record
static const struct msg_field record_fields[] = {
    MSGF(S, env, MSGF_STR, REQ, STREAM_ENV_MAX),
    MSGF(S, key, MSGF_STR, REQ, STREAM_KEY_MAX),
    MSGF(S, io, MSGF_STR, REQ, MSG_STREAM_IO_MAX),
    MSGF(S, record, MSGF_RAW, REQ, 0),
};
#undef S
const struct msg_form msg_stream_record_form = MSG_FORM("stream.record event", record_fields);

MSG_STREAM_OPEN(msg_stream_record_open, struct msg_stream_record, msg_stream_record_form, record)
