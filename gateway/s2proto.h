/*
 * s2proto.h - the records of an S2 append, from either of the two bodies
 * S2's clients send, and S2's protobuf acknowledgement.
 *
 * S2 clients append JSON ({"records": [{"headers": [[n, v]], "body": "…"}]})
 * when every record is text, and protobuf (Content-Type: application/protobuf,
 * message AppendInput) as soon as one record is bytes, which is always the
 * case for a trim command (its body is an 8-byte big-endian seq). Both decode
 * into one struct s2_input, which the gateway turns into one stream.append.
 *
 *   AppendInput    { repeated AppendRecord records = 1; optional uint64 match_seq_num = 2;
 *                    optional string fencing_token = 3; }
 *   AppendRecord   { optional uint64 timestamp = 1; repeated Header headers = 2; bytes body = 3; }
 *   Header         { bytes name = 1; bytes value = 2; }
 *   AppendAck      { StreamPosition start = 1; StreamPosition end = 2; StreamPosition tail = 3; }
 *   StreamPosition { uint64 seq_num = 1; uint64 timestamp = 2; }
 *
 * Pure: no I/O. Slices borrow from the decoded buffer (or JSON strings),
 * which must outlive the s2_input, or from the s2_input itself (base64).
 */
#ifndef TETHER_GW_S2PROTO_H
#define TETHER_GW_S2PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mp.h"

struct s2_header {
    struct slice name, value;
};

struct s2_record {
    struct slice body;
    size_t first_header, nheaders; /* in s2_input.headers */
};

struct s2_input {
    struct s2_record *records; /* nrecords, 1..STREAM_BATCH_MAX */
    size_t nrecords;
    struct s2_header *headers; /* every record's, in order; each record ≤ STREAM_HEADERS_MAX */
    size_t nheaders;
    bool conditional; /* match_seq_num or fencing_token given: Tether does not support them */
    size_t metered;   /* the batch's metered size (proto/stream.h), summed over records */
    char *_bytes;     /* base64 JSON: the decoded names, values and bodies the slices point into */
};

/*
 * Decodes a protobuf AppendInput of n bytes. ERR_INVAL with a message in
 * why (cap bytes) when it is malformed, holds no record or too many, or a
 * record has too many headers. Unknown fields are skipped. On any result
 * the caller finishes in with s2_input_fini.
 */
err_t s2_input_from_proto(const uint8_t *p, size_t n, struct s2_input *in, char *why, size_t cap);

/*
 * The same from a parsed JSON body {"records": [...]} (strings only), with the same checks.
 * With base64 (S2-Format: base64) every header name, value and body is base64 and is
 * decoded (ERR_INVAL when one is not base64); otherwise they are the strings' UTF-8 bytes.
 */
err_t s2_input_from_json(const json_t *body, bool base64, struct s2_input *in, char *why,
                         size_t cap);

void s2_input_fini(struct s2_input *in);

/* Encodes an AppendAck into out (S2_ACK_MAX bytes); returns its length. */
#define S2_ACK_MAX 96
size_t s2_ack_encode(uint8_t *out, uint64_t start, uint64_t end, uint64_t tail, uint64_t ts);

/*
 * s2s framing (the streaming append session, s2s.h), both directions: a 3-byte big-endian
 * length of what follows, a flag byte [T][CC][reserved] (T: terminal, CC: compression, 00
 * none), then the message. A terminal frame carries a 2-byte big-endian HTTP status and a
 * JSON error: the session's last.
 */
#define S2S_FRAME_MAX (2u << 20) /* flag byte + message, as S2's client caps it */
#define S2S_FLAG_TERMINAL 0x80u
#define S2S_FLAG_COMPRESSION 0x60u

/*
 * The first frame of p[0..n): 1 with *flag, *msg, *msg_n and *used (its whole length) set;
 * 0 when more bytes are needed; -1 when the length is 0 or over S2S_FRAME_MAX.
 */
int s2s_frame_next(const uint8_t *p, size_t n, uint8_t *flag, const uint8_t **msg, size_t *msg_n,
                   size_t *used);

/* The 4 bytes that start a frame of msg_n message bytes (≤ S2S_FRAME_MAX - 1) with flag. */
void s2s_frame_head(uint8_t out[4], size_t msg_n, uint8_t flag);

#endif
