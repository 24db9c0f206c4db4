/*
 * s2proto.c - S2 append bodies (protobuf and JSON) into one struct
 * s2_input, and the protobuf AppendAck (see s2proto.h).
 *
 * The protobuf side is a minimal reader of the wire format: a field is a
 * varint key (number << 3 | wire type) followed by a varint (type 0), 8
 * bytes (1), a varint length and that many bytes (2), or 4 bytes (5). Every
 * length is checked against what is left before it is used, and counts
 * are bounded before anything is allocated.
 */
#include "s2proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jbuf.h"
#include "mem.h"
#include "stream.h"

struct pb {
    const uint8_t *p, *end;
};

static bool pb_varint(struct pb *b, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && b->p < b->end; shift += 7) {
        uint8_t c = *b->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Reads one field: its number, wire type, and for type 2 its bytes; false when malformed. */
static bool pb_field(struct pb *b, uint32_t *num, unsigned *type, struct slice *bytes,
                     uint64_t *value)
{
    uint64_t key, len;
    if (!pb_varint(b, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return false;
    *num = (uint32_t)(key >> 3);
    *type = (unsigned)(key & 7);
    switch (*type) {
    case 0:
        return pb_varint(b, value);
    case 1:
    case 5: {
        size_t w = *type == 1 ? 8 : 4;
        if ((size_t)(b->end - b->p) < w)
            return false;
        b->p += w;
        return true;
    }
    case 2:
        if (!pb_varint(b, &len) || len > (uint64_t)(b->end - b->p))
            return false;
        *bytes = (struct slice){(const char *)b->p, (size_t)len};
        b->p += len;
        return true;
    default: /* groups (3, 4) are not in S2's messages */
        return false;
    }
}

#define WHY(...) (snprintf(why, cap, __VA_ARGS__), ERR_INVAL)

/* Walks one AppendRecord; counts its headers, and when in->records is set, fills record r. */
static err_t pb_record(struct slice rec, struct s2_input *in, size_t r, size_t *nh, char *why,
                       size_t cap)
{
    struct pb b = {(const uint8_t *)rec.p, (const uint8_t *)rec.p + rec.n};
    struct slice bytes, body = SLICE_LIT("");
    uint32_t num;
    unsigned type;
    uint64_t v;
    size_t hbytes = 0;
    *nh = 0;
    while (b.p < b.end) {
        bytes = SLICE_NULL;
        if (!pb_field(&b, &num, &type, &bytes, &v))
            return WHY("records[%zu] is not a valid AppendRecord", r);
        if (num == 3 && type == 2) {
            body = bytes;
        } else if (num == 2 && type == 2) {
            struct pb h = {(const uint8_t *)bytes.p, (const uint8_t *)bytes.p + bytes.n};
            struct slice name = SLICE_LIT(""), value = SLICE_LIT(""), hb;
            uint32_t hn;
            unsigned ht;
            if (++*nh > STREAM_HEADERS_MAX)
                return WHY("records[%zu] has more than %u headers", r, STREAM_HEADERS_MAX);
            while (h.p < h.end) {
                hb = SLICE_NULL;
                if (!pb_field(&h, &hn, &ht, &hb, &v))
                    return WHY("records[%zu].headers is not a valid Header", r);
                if (hn == 1 && ht == 2)
                    name = hb;
                else if (hn == 2 && ht == 2)
                    value = hb;
            }
            hbytes += name.n + value.n;
            if (in->records)
                in->headers[in->nheaders++] = (struct s2_header){name, value};
        }
    }
    if (in->records) {
        in->records[r].body = body;
        in->metered += stream_metered_size(*nh, hbytes, body.n);
    }
    return OK;
}

/* One pass over the AppendInput: counts (fill false) or fills (fill true). */
static err_t pb_input(struct pb b, struct s2_input *in, bool fill, size_t *nrec, size_t *nhdr,
                      char *why, size_t cap)
{
    struct slice bytes;
    uint32_t num;
    unsigned type;
    uint64_t v;
    size_t nh;
    *nrec = *nhdr = 0;
    while (b.p < b.end) {
        bytes = SLICE_NULL;
        if (!pb_field(&b, &num, &type, &bytes, &v))
            return WHY("the body is not a valid AppendInput");
        if (num == 1 && type == 2) {
            if (*nrec >= STREAM_BATCH_MAX)
                return WHY("records must be an array of 1-%u records", STREAM_BATCH_MAX);
            if (fill)
                in->records[*nrec].first_header = in->nheaders;
            err_t rc = pb_record(bytes, in, *nrec, &nh, why, cap);
            if (rc != OK)
                return rc;
            if (fill)
                in->records[*nrec].nheaders = nh;
            (*nrec)++;
            *nhdr += nh;
        } else if (num == 2 || num == 3) {
            in->conditional = true;
        }
    }
    if (*nrec == 0)
        return WHY("records must be an array of 1-%u records", STREAM_BATCH_MAX);
    return OK;
}

err_t s2_input_from_proto(const uint8_t *p, size_t n, struct s2_input *in, char *why, size_t cap)
{
    struct pb b = {p, n ? p + n : p}; /* no body: p may be NULL, and NULL + 0 is undefined */
    size_t nrec, nhdr;
    memset(in, 0, sizeof(*in));
    err_t rc = pb_input(b, in, false, &nrec, &nhdr, why, cap);
    if (rc != OK)
        return rc;
    in->records = xcalloc(nrec, sizeof(*in->records));
    in->headers = nhdr ? xcalloc(nhdr, sizeof(*in->headers)) : NULL;
    in->conditional = false;
    rc = pb_input(b, in, true, &nrec, &nhdr, why, cap);
    in->nrecords = nrec;
    return rc;
}

/* A JSON string's bytes: as they are, or base64-decoded into in->_bytes at *used. */
static bool s2_json_bytes(const json_t *str, bool base64, struct s2_input *in, size_t *used,
                          struct slice *out)
{
    const char *p = json_string_value(str);
    size_t n = json_string_length(str), len;
    if (!base64) {
        *out = (struct slice){p, n};
        return true;
    }
    if (jbuf_base64_decode(p, n, in->_bytes + *used, &len) != OK)
        return false;
    *out = (struct slice){in->_bytes + *used, len};
    *used += len;
    return true;
}

err_t s2_input_from_json(const json_t *body, bool base64, struct s2_input *in, char *why,
                         size_t cap)
{
    const json_t *recs = json_object_get(body, "records"), *r, *x;
    size_t i, j, nhdr = 0, nbytes = 0, used = 0;
    memset(in, 0, sizeof(*in));
    if (!json_is_array(recs) || json_array_size(recs) == 0 ||
        json_array_size(recs) > STREAM_BATCH_MAX)
        return WHY("records must be an array of 1-%u records", STREAM_BATCH_MAX);
    if (json_object_get(body, "match_seq_num") || json_object_get(body, "fencing_token"))
        in->conditional = true;
    json_array_foreach(recs, i, r)
    {
        const json_t *h = json_object_get(r, "headers"), *b = json_object_get(r, "body");
        bool ok = json_is_object(r) && (!h || json_is_array(h)) && (!b || json_is_string(b));
        if (ok && json_array_size(h) > STREAM_HEADERS_MAX)
            return WHY("records[%zu] has more than %u headers", i, STREAM_HEADERS_MAX);
        json_array_foreach(h, j, x)
        {
            ok = ok && json_is_array(x) && json_array_size(x) == 2 &&
                 json_is_string(json_array_get(x, 0)) && json_is_string(json_array_get(x, 1));
            if (ok)
                nbytes += JBUF_BASE64_DECODED_MAX(json_string_length(json_array_get(x, 0))) +
                          JBUF_BASE64_DECODED_MAX(json_string_length(json_array_get(x, 1)));
        }
        if (!ok)
            return WHY("a record is {headers?: [[name, value]], body?: string}");
        nhdr += json_array_size(h);
        nbytes += b ? JBUF_BASE64_DECODED_MAX(json_string_length(b)) : 0;
    }
    in->records = xcalloc(json_array_size(recs), sizeof(*in->records));
    in->headers = nhdr ? xcalloc(nhdr, sizeof(*in->headers)) : NULL;
    /* bounded by the request body, which the route caps */
    in->_bytes = base64 ? xmalloc(nbytes ? nbytes : 1) : NULL;
    json_array_foreach(recs, i, r)
    {
        const json_t *h = json_object_get(r, "headers"), *b = json_object_get(r, "body");
        struct s2_record *rec = &in->records[in->nrecords++];
        size_t hbytes = 0;
        rec->body = SLICE_LIT("");
        if (b && !s2_json_bytes(b, base64, in, &used, &rec->body))
            return WHY("records[%zu].body is not base64", i);
        rec->first_header = in->nheaders;
        rec->nheaders = json_array_size(h);
        json_array_foreach(h, j, x)
        {
            struct s2_header *hd = &in->headers[in->nheaders++];
            if (!s2_json_bytes(json_array_get(x, 0), base64, in, &used, &hd->name) ||
                !s2_json_bytes(json_array_get(x, 1), base64, in, &used, &hd->value))
                return WHY("records[%zu].headers[%zu] is not base64", i, j);
            hbytes += hd->name.n + hd->value.n;
        }
        in->metered += stream_metered_size(rec->nheaders, hbytes, rec->body.n);
    }
    return OK;
}

void s2_input_fini(struct s2_input *in)
{
    free(in->_bytes);
    free(in->records);
    free(in->headers);
    memset(in, 0, sizeof(*in));
}

static size_t pb_put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        out[n++] = c | (v ? 0x80 : 0);
    } while (v);
    return n;
}

/* A StreamPosition as field num of the enclosing message: at most 2 + 22 bytes. */
static size_t pb_put_position(uint8_t *out, uint32_t num, uint64_t seq, uint64_t ts)
{
    uint8_t inner[24];
    size_t n = 0, o = 0;
    inner[n++] = 1 << 3;
    n += pb_put_varint(inner + n, seq);
    inner[n++] = 2 << 3;
    n += pb_put_varint(inner + n, ts);
    out[o++] = (uint8_t)(num << 3 | 2);
    out[o++] = (uint8_t)n; /* < 128 */
    memcpy(out + o, inner, n);
    return o + n;
}

size_t s2_ack_encode(uint8_t *out, uint64_t start, uint64_t end, uint64_t tail, uint64_t ts)
{
    size_t o = pb_put_position(out, 1, start, ts);
    o += pb_put_position(out + o, 2, end, ts);
    return o + pb_put_position(out + o, 3, tail, ts);
}

int s2s_frame_next(const uint8_t *p, size_t n, uint8_t *flag, const uint8_t **msg, size_t *msg_n,
                   size_t *used)
{
    if (n < 3)
        return 0;
    size_t len = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
    if (len == 0 || len > S2S_FRAME_MAX)
        return -1;
    if (n - 3 < len)
        return 0;
    *flag = p[3];
    *msg = p + 4;
    *msg_n = len - 1;
    *used = 3 + len;
    return 1;
}

void s2s_frame_head(uint8_t out[4], size_t msg_n, uint8_t flag)
{
    size_t len = msg_n + 1;
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = flag;
}
