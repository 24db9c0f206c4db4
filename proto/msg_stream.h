/*
 * msg_stream.h - the stream-broker's bodies, typed (msgcodec.h; the catalogue entries of msg.c
 * say what each field means): the stream.* and rate.take requests, the replies their senders
 * read field by field, and the stream.record event.
 *
 * Strings are borrowed slices; SLICE_NULL is absent or nil. A record object (seq, ts, headers,
 * body) and an array of them stay msgpack as they stand (raw fields): the broker writes them
 * (actors/stream_broker/wire.c) and the readers of records parse them (gateway/feed_record.c,
 * gateway/h_records.c, the waitpoint registry's drain).
 *
 * A body whose last field is a batch (stream.append's records, stream.follow's streams,
 * stream.record's record) is written in place by its _open function: it writes the body up to
 * that field's key, and the caller writes the value next, so a batch of a megabyte is not
 * built apart and copied.
 */
#ifndef TETHER_PROTO_MSG_STREAM_H
#define TETHER_PROTO_MSG_STREAM_H

#include "msgcodec.h"
#include "stream.h"

#define MSG_STREAM_IO_MAX 3        /* "in" | "out" */
#define MSG_RATE_GROUP_MAX 32      /* a rate-limit route group: 1-32 of [a-z] */
#define MSG_RATE_MAX 1000000000ull /* the largest burst and per_s */

/*
 * A stream's name, the first fields of every stream.* request but stream.seal and
 * stream.follow, and one item of stream.follow's streams. channel: absent or nil for the
 * session's own pair.
 */
struct msg_stream_name {
    struct slice env, key, io, channel;
};
extern const struct msg_form msg_stream_name_form;

/*
 * The items of a raw array field (records, seqs, streams...): *n of them, r at the first.
 * Absent (SLICE_NULL) is no items; ERR_PROTO when the field is not an array.
 */
err_t msg_stream_items(struct slice raw, struct mp_reader *r, uint32_t *n);

/* The name of (env, key, channel, io), borrowing the strings; channel NULL or "": the pair's. */
struct msg_stream_name msg_stream_name_of(const char *env, const char *key, const char *channel,
                                          const char *io);

/* stream.append: records is an array of 1-1000 record maps (msg_stream_record_in) */
struct msg_stream_append {
    struct msg_stream_name name;
    struct slice records; /* raw */
};
extern const struct msg_form msg_stream_append_form;
/* The body up to records' value: the caller writes mp_put_array(w, n) and n records. */
void msg_stream_append_open(struct mp_writer *w, const struct msg_stream_append *m);

/* One record of stream.append (the broker reads them itself: actors/stream_broker/wire.c). */
struct msg_stream_record_in {
    struct slice part_id; /* SLICE_NULL: none (no de-duplication) */
    struct slice headers; /* raw: an array of [name: str, value: str] */
    struct slice body;    /* bin */
};
extern const struct msg_form msg_stream_record_in_form;
/* The headers of a record that has none (an empty array). */
#define MSG_STREAM_NO_HEADERS ((struct slice){"\x90", 1})

/* stream.append's reply */
struct msg_stream_append_reply {
    struct slice seqs; /* raw: [uint], one per record */
    struct slice dups; /* raw: [bool], one per record */
    uint64_t tail, ts;
};
extern const struct msg_form msg_stream_append_reply_form;

/* stream.read */
struct msg_stream_read {
    struct msg_stream_name name;
    uint64_t from, count;
};
extern const struct msg_form msg_stream_read_form;

/* stream.peek */
struct msg_stream_peek {
    struct msg_stream_name name;
    uint64_t count;
};
extern const struct msg_form msg_stream_peek_form;

/* stream.read's and stream.peek's reply */
struct msg_stream_range {
    struct slice records; /* raw: [record object] */
    uint64_t tail, tail_ts;
};
extern const struct msg_form msg_stream_range_form;

/* stream.trim */
struct msg_stream_trim {
    struct msg_stream_name name;
    uint64_t before;
};
extern const struct msg_form msg_stream_trim_form;

/* stream.trim's reply */
struct msg_stream_trim_reply {
    uint64_t tail;
};
extern const struct msg_form msg_stream_trim_reply_form;

/* stream.seal: key is the session's addressing key; reason nil (written so) for none */
struct msg_stream_seal {
    struct slice env, key, reason;
};
extern const struct msg_form msg_stream_seal_form;

/* stream.seal's reply */
struct msg_stream_seal_reply {
    bool sealed;
};
extern const struct msg_form msg_stream_seal_reply_form;

/* stream.follow: streams is an array of 1-256 names (msg_stream_name_form) */
struct msg_stream_follow {
    struct slice holder;
    uint64_t ttl_ms;
    struct slice streams; /* raw */
};
extern const struct msg_form msg_stream_follow_form;
/* The body up to streams' value: the caller writes mp_put_array(w, n) and n names. */
void msg_stream_follow_open(struct mp_writer *w, const struct msg_stream_follow *m);

/* stream.follow's reply */
struct msg_stream_follow_reply {
    struct slice added; /* raw: [bool], one per stream */
};
extern const struct msg_form msg_stream_follow_reply_form;

/* rate.take: cost absent is 1 */
struct msg_rate_take {
    struct slice env, group;
    uint64_t burst, per_s, cost;
    bool cost_given;
};
extern const struct msg_form msg_rate_take_form;

/* rate.take's reply */
struct msg_rate_take_reply {
    bool allowed;
    uint64_t limit, remaining, reset_ms, retry_after_ms;
};
extern const struct msg_form msg_rate_take_reply_form;

/* stream.record (an event; no channel: the topic names a side channel's stream) */
struct msg_stream_record {
    struct slice env, key, io;
    struct slice record; /* raw: one record object */
};
extern const struct msg_form msg_stream_record_form;
/* The body up to record's value: the caller writes the record object. */
void msg_stream_record_open(struct mp_writer *w, const struct msg_stream_record *m);

#endif
