/*
 * s2proto_fuzz.c - libFuzzer target for the S2 append bodies (gateway/s2proto.c): the
 * protobuf AppendInput decoder s2_input_from_proto, the JSON one s2_input_from_json (raw and
 * base64), and the AppendAck encoder s2_ack_encode.
 *
 * Feeds, by byte 0: with bit 2 set, the rest as the s2s frames of an append session (s2s.h),
 * each frame's message as a protobuf body; else by its low bits: (0) the rest as a protobuf
 * body; (1, 2) the rest as a JSON body, raw or S2-Format: base64; (3) 32 bytes as the four
 * positions of an ack.
 * Checks: a decoded batch holds 1-STREAM_BATCH_MAX records of at most STREAM_HEADERS_MAX
 * headers each, its header ranges tile the header array, its slices lie in the body (or the
 * decoder's own bytes) and its metered size is the sum of stream_metered_size; the batch
 * encoded again as protobuf (an encoder written here) decodes to the same batch, and the
 * same batch as base64 JSON decodes to the same batch too, so the two decoders agree; an ack
 * decodes back to the positions it was given.
 */
#include <jansson.h>

#include "fuzz.h"
#include "jbuf.h"
#include "s2proto.h"
#include "stream.h"

/* ---- a protobuf writer, the smallest that writes AppendInput ---- */

struct pbw {
    uint8_t *p;
    size_t n, cap;
};

static void pbw_bytes(struct pbw *w, const void *s, size_t n)
{
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->n + n)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p)
            abort();
        w->p = p;
        w->cap = cap;
    }
    if (n)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}

static void pbw_varint(struct pbw *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        b[n++] |= v ? 0x80 : 0;
    } while (v);
    pbw_bytes(w, b, n);
}

static void pbw_field(struct pbw *w, uint32_t num, const void *s, size_t n)
{
    pbw_varint(w, (uint64_t)num << 3 | 2);
    pbw_varint(w, n);
    pbw_bytes(w, s, n);
}

/* in as an AppendInput; match_seq_num 0 when it was conditional (the decoder only notes it) */
static struct pbw encode_proto(const struct s2_input *in, bool conditional)
{
    struct pbw out = {0};
    for (size_t r = 0; r < in->nrecords; r++) {
        const struct s2_record *rec = &in->records[r];
        struct pbw rw = {0};
        for (size_t h = rec->first_header; h < rec->first_header + rec->nheaders; h++) {
            struct pbw hw = {0};
            pbw_field(&hw, 1, in->headers[h].name.p, in->headers[h].name.n);
            pbw_field(&hw, 2, in->headers[h].value.p, in->headers[h].value.n);
            pbw_field(&rw, 2, hw.p, hw.n);
            free(hw.p);
        }
        pbw_field(&rw, 3, rec->body.p, rec->body.n);
        pbw_field(&out, 1, rw.p, rw.n);
        free(rw.p);
    }
    if (conditional) {
        pbw_varint(&out, 2 << 3 | 0);
        pbw_varint(&out, 0);
    }
    return out;
}

/* in as S2's JSON with S2-Format: base64 */
static json_t *encode_json(const struct s2_input *in, bool conditional)
{
    struct jbuf b = {0};
    jbuf_puts(&b, "{\"records\":[");
    for (size_t r = 0; r < in->nrecords; r++) {
        const struct s2_record *rec = &in->records[r];
        jbuf_puts(&b, r ? ",{\"headers\":[" : "{\"headers\":[");
        for (size_t h = rec->first_header; h < rec->first_header + rec->nheaders; h++) {
            jbuf_puts(&b, h > rec->first_header ? ",[" : "[");
            jbuf_base64(&b, in->headers[h].name.p, in->headers[h].name.n);
            jbuf_put(&b, ",", 1);
            jbuf_base64(&b, in->headers[h].value.p, in->headers[h].value.n);
            jbuf_put(&b, "]", 1);
        }
        jbuf_puts(&b, "],\"body\":");
        jbuf_base64(&b, rec->body.p, rec->body.n);
        jbuf_put(&b, "}", 1);
    }
    jbuf_puts(&b, conditional ? "],\"match_seq_num\":0}" : "]}");
    FUZZ_CHECK(b.err == OK);
    json_t *j = json_loadb(b.p, b.n, 0, NULL);
    FUZZ_CHECK(j != NULL);
    jbuf_free(&b);
    return j;
}

static bool slice_same(struct slice a, struct slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static bool same_batch(const struct s2_input *a, const struct s2_input *b)
{
    if (a->nrecords != b->nrecords || a->nheaders != b->nheaders || a->metered != b->metered ||
        a->conditional != b->conditional)
        return false;
    for (size_t r = 0; r < a->nrecords; r++)
        if (!slice_same(a->records[r].body, b->records[r].body) ||
            a->records[r].first_header != b->records[r].first_header ||
            a->records[r].nheaders != b->records[r].nheaders)
            return false;
    for (size_t h = 0; h < a->nheaders; h++)
        if (!slice_same(a->headers[h].name, b->headers[h].name) ||
            !slice_same(a->headers[h].value, b->headers[h].value))
            return false;
    return true;
}

static bool inside(struct slice s, const void *lo, size_t n)
{
    const char *l = lo;
    return s.n == 0 || (s.p >= l && s.p + s.n <= l + n);
}

/* What every decoded batch must be, whichever decoder made it. */
static void check_batch(const struct s2_input *in, const void *body, size_t body_n, size_t bytes_n)
{
    size_t next = 0, metered = 0;
    FUZZ_CHECK(in->nrecords >= 1 && in->nrecords <= STREAM_BATCH_MAX);
    for (size_t r = 0; r < in->nrecords; r++) {
        const struct s2_record *rec = &in->records[r];
        size_t hbytes = 0;
        FUZZ_CHECK(rec->first_header == next && rec->nheaders <= STREAM_HEADERS_MAX);
        next += rec->nheaders;
        FUZZ_CHECK(next <= in->nheaders);
        for (size_t h = rec->first_header; h < next; h++)
            hbytes += in->headers[h].name.n + in->headers[h].value.n;
        metered += stream_metered_size(rec->nheaders, hbytes, rec->body.n);
        FUZZ_CHECK(body == NULL || inside(rec->body, body, body_n) ||
                   inside(rec->body, in->_bytes, bytes_n));
    }
    FUZZ_CHECK(next == in->nheaders);
    FUZZ_CHECK(metered == in->metered);
    for (size_t h = 0; h < in->nheaders && body; h++)
        FUZZ_CHECK((inside(in->headers[h].name, body, body_n) ||
                    inside(in->headers[h].name, in->_bytes, bytes_n)) &&
                   (inside(in->headers[h].value, body, body_n) ||
                    inside(in->headers[h].value, in->_bytes, bytes_n)));
}

/* The batch through the other encodings: protobuf and base64 JSON give it back unchanged. */
static void check_round_trips(const struct s2_input *in)
{
    struct s2_input a, b;
    char why[160];
    struct pbw pb = encode_proto(in, in->conditional);
    FUZZ_CHECK(s2_input_from_proto(pb.p, pb.n, &a, why, sizeof(why)) == OK);
    FUZZ_CHECK(same_batch(in, &a));
    json_t *j = encode_json(in, in->conditional);
    FUZZ_CHECK(s2_input_from_json(j, true, &b, why, sizeof(why)) == OK);
    FUZZ_CHECK(same_batch(in, &b));
    s2_input_fini(&b);
    json_decref(j);
    s2_input_fini(&a);
    free(pb.p);
}

static void check_proto(const uint8_t *p, size_t n)
{
    struct s2_input in;
    char why[160] = "";
    err_t rc = s2_input_from_proto(p, n, &in, why, sizeof(why));
    FUZZ_CHECK(rc == OK || (rc == ERR_INVAL && why[0]));
    if (rc == OK) {
        check_batch(&in, p, n, 0);
        check_round_trips(&in);
    }
    s2_input_fini(&in);
}

static void check_json(const uint8_t *p, size_t n, bool base64)
{
    struct s2_input in;
    char why[160] = "";
    json_t *body = json_loadb((const char *)p, n, JSON_DECODE_ANY, NULL);
    if (!json_is_object(body)) { /* the pipeline answers 400 before the handler */
        json_decref(body);
        return;
    }
    err_t rc = s2_input_from_json(body, base64, &in, why, sizeof(why));
    FUZZ_CHECK(rc == OK || (rc == ERR_INVAL && why[0]));
    if (rc == OK) {
        check_batch(&in, NULL, 0, 0);
        check_round_trips(&in);
    }
    s2_input_fini(&in);
    json_decref(body);
}

/* ---- the ack ---- */

static bool pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static void check_ack(struct fuzz_in in)
{
    uint64_t v[4] = {0, 0, 0, 0}, got[3][2];
    uint8_t out[S2_ACK_MAX + 16];
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            v[i] = v[i] << 8 | fuzz_u8(&in);
    size_t n = s2_ack_encode(out, v[0], v[1], v[2], v[3]);
    FUZZ_CHECK(n <= S2_ACK_MAX);
    const uint8_t *p = out, *end = out + n;
    for (int f = 0; f < 3; f++) {
        uint64_t key, len;
        FUZZ_CHECK(pb_read_varint(&p, end, &key) && key == ((uint64_t)(f + 1) << 3 | 2));
        FUZZ_CHECK(pb_read_varint(&p, end, &len) && len <= (uint64_t)(end - p));
        const uint8_t *q = p, *qe = p + len;
        for (int g = 0; g < 2; g++) {
            uint64_t k2;
            FUZZ_CHECK(pb_read_varint(&q, qe, &k2) && k2 == (uint64_t)(g + 1) << 3);
            FUZZ_CHECK(pb_read_varint(&q, qe, &got[f][g]));
        }
        FUZZ_CHECK(q == qe);
        p = qe;
    }
    FUZZ_CHECK(p == end);
    for (int f = 0; f < 3; f++)
        FUZZ_CHECK(got[f][0] == v[f] && got[f][1] == v[3]);
}

/*
 * The s2s framing (an append session's body, as it arrives): every frame found lies in the
 * input, is as long as its head says, and its head encodes back to the same bytes; the walk
 * ends at a frame cut short (0) or a malformed length (-1); each whole frame's message is also
 * decoded as an AppendInput, as the gateway does.
 */
static void check_frames(const uint8_t *p, size_t n)
{
    uint8_t flag, head[4];
    const uint8_t *msg;
    size_t msg_n, used, off = 0;
    int r;
    while ((r = s2s_frame_next(p + off, n - off, &flag, &msg, &msg_n, &used)) == 1) {
        FUZZ_CHECK(used >= 4 && used <= n - off && used == msg_n + 4);
        FUZZ_CHECK(msg == p + off + 4 && msg_n + 1 <= S2S_FRAME_MAX);
        s2s_frame_head(head, msg_n, flag);
        FUZZ_CHECK(memcmp(head, p + off, 4) == 0);
        check_proto(msg, msg_n);
        off += used;
    }
    FUZZ_CHECK(r == 0 || r == -1);
    FUZZ_CHECK(off <= n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    if (mode & 4) { /* the same bytes as the body of an append session */
        check_frames(in.p, in.n);
        return 0;
    }
    switch (mode & 3) {
    case 0:
        check_proto(in.p, in.n);
        break;
    case 1:
        check_json(in.p, in.n, false);
        break;
    case 2:
        check_json(in.p, in.n, true);
        break;
    default:
        check_ack(in);
        break;
    }
    return 0;
}
