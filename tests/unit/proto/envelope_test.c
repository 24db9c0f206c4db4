/*
 * envelope_test.c - tests the bus envelope (proto/envelope.h): round trips of
 * every kind, the v1 golden encodings in tests/golden/, every decoder
 * rejection, forward-compatible extra fields and env_trace_valid.
 */
#include <stdlib.h>

#include "envelope.h"
#include "msg.h"
#include "t.h"

#define TRACE "0af7651916cd43dd8448eb211c80319c"
#define DEADLINE UINT64_C(1795279734615)
#define BODY_KV "\x81\xa1k\xa1v" /* {"k":"v"} */

static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

/* The fixed envelope of the golden files, with the given kind. */
static void golden_env(struct envelope *e, uint8_t kind)
{
    memset(e, 0, sizeof(*e));
    e->version = ENV_VERSION;
    e->kind = kind;
    e->type = MSG_BUS_ECHO;
    e->req_id = 4660;
    strcpy(e->trace_id, TRACE);
    strcpy(e->sender, "gateway.0");
    e->deadline_ms = DEADLINE;
    e->attempt = 1;
    if (kind == ENV_ERROR) {
        e->err_code = ERR_TIMEOUT;
        e->err_msg = SLICE_LIT("deadline passed");
    } else {
        e->body = SLICE_LIT(BODY_KV);
    }
}

static int slice_same(struct slice a, struct slice b)
{
    if ((a.p == NULL) != (b.p == NULL) || a.n != b.n)
        return 0;
    return a.n == 0 || memcmp(a.p, b.p, a.n) == 0;
}

/* Every field of a and b is the same (slices by content; NULL vs "" differ). */
static int env_same(const struct envelope *a, const struct envelope *b)
{
    return a->version == b->version && a->kind == b->kind && a->type == b->type &&
           a->req_id == b->req_id && strcmp(a->trace_id, b->trace_id) == 0 &&
           strcmp(a->sender, b->sender) == 0 && a->deadline_ms == b->deadline_ms &&
           a->attempt == b->attempt && a->err_code == b->err_code &&
           slice_same(a->err_msg, b->err_msg) && a->body.n == b->body.n &&
           (a->body.n == 0 || memcmp(a->body.p, b->body.p, a->body.n) == 0);
}

static int within(struct slice s, const void *buf, size_t n)
{
    const char *b = buf;
    if (s.p == NULL)
        return s.n == 0;
    return s.p >= b && s.p <= b + n && s.n <= (size_t)(b + n - s.p);
}

/* Encodes e, decodes the bytes from an exact-size heap copy, compares. */
static int roundtrip(const struct envelope *e)
{
    struct mp_writer w;
    struct envelope d;
    int ok = 1;

    mp_writer_init(&w);
    if (env_encode(&w, e) != OK) {
        mp_writer_fini(&w);
        return 0;
    }
    size_t n = mp_writer_len(&w);
    uint8_t *buf = dup_exact(mp_writer_data(&w), n);
    ok &= env_decode(buf, n, &d) == OK;
    ok &= env_same(e, &d);
    ok &= within(d.body, buf, n) && within(d.err_msg, buf, n);
    free(buf);
    mp_writer_fini(&w);
    return ok;
}

T_TEST(roundtrip_each_kind)
{
    struct envelope e;
    struct mp_writer body;

    mp_writer_init(&body);
    mp_put_map(&body, 3);
    mp_put_str(&body, "data");
    mp_put_bin(&body, "\x00\x01\x02", 3);
    mp_put_kv_uint(&body, "n", 7);
    mp_put_str(&body, "list");
    mp_put_array(&body, 2);
    mp_put_int(&body, -1);
    mp_put_map(&body, 0);

    golden_env(&e, ENV_REQUEST);
    e.body = (struct slice){mp_writer_data(&body), mp_writer_len(&body)};
    T_ASSERT(roundtrip(&e));

    golden_env(&e, ENV_REPLY);
    e.body = (struct slice){mp_writer_data(&body), mp_writer_len(&body)};
    e.attempt = 3;
    T_ASSERT(roundtrip(&e));

    golden_env(&e, ENV_ERROR);
    e.err_code = ERR_NOTFOUND;
    e.err_msg = SLICE_LIT("no such run");
    T_ASSERT(roundtrip(&e));

    golden_env(&e, ENV_EVENT);
    e.type = MSG_BUS_FAULT;
    e.req_id = 0;
    e.trace_id[0] = '\0'; /* no trace */
    e.deadline_ms = 0;
    T_ASSERT(roundtrip(&e));

    /* a reply with a nil body, a request with an empty map body */
    golden_env(&e, ENV_REPLY);
    e.body = SLICE_NULL;
    T_ASSERT(roundtrip(&e));
    golden_env(&e, ENV_REQUEST);
    e.body = SLICE_LIT("\x80");
    T_ASSERT(roundtrip(&e));

    /* err_msg "" stays distinct from nil */
    golden_env(&e, ENV_ERROR);
    e.err_msg = SLICE_LIT("");
    T_ASSERT(roundtrip(&e));
    golden_env(&e, ENV_ERROR);
    e.err_msg = SLICE_NULL;
    T_ASSERT(roundtrip(&e));
    /* an err_msg on a non-error kind is carried */
    golden_env(&e, ENV_REPLY);
    e.err_msg = SLICE_LIT("note");
    T_ASSERT(roundtrip(&e));
    mp_writer_fini(&body);
}

T_TEST(roundtrip_limits)
{
    struct envelope e;
    char *msg = malloc(ENV_ERRMSG_MAX + 1);
    memset(msg, 'm', ENV_ERRMSG_MAX + 1);

    golden_env(&e, ENV_ERROR);
    e.type = UINT16_MAX;
    e.req_id = UINT64_MAX;
    e.deadline_ms = UINT64_MAX;
    e.attempt = UINT32_MAX;
    e.err_code = (err_t)UINT16_MAX; /* codes beyond ERR_MAX_CODE travel (newer peers) */
    memset(e.sender, 's', ENV_SENDER_MAX);
    e.sender[ENV_SENDER_MAX] = '\0';
    e.err_msg = (struct slice){msg, ENV_ERRMSG_MAX};
    T_ASSERT(roundtrip(&e));

    golden_env(&e, ENV_REQUEST);
    e.sender[0] = '\0';
    strcpy(e.trace_id, "00000000000000000000000000000001");
    T_ASSERT(roundtrip(&e));
    free(msg);
}

T_TEST(encode_rejects)
{
    struct mp_writer w;
    struct envelope e;
    char *msg = malloc(ENV_ERRMSG_MAX + 1);
    memset(msg, 'm', ENV_ERRMSG_MAX + 1);

    mp_writer_init(&w);
    golden_env(&e, 0);
    T_ERR(env_encode(&w, &e), ERR_INVAL);
    golden_env(&e, 5);
    T_ERR(env_encode(&w, &e), ERR_INVAL);
    golden_env(&e, ENV_REQUEST);
    memset(e.trace_id, 'a', sizeof(e.trace_id)); /* 33 bytes, no NUL */
    T_ERR(env_encode(&w, &e), ERR_INVAL);
    golden_env(&e, ENV_REQUEST);
    memset(e.sender, 's', sizeof(e.sender)); /* 49 bytes, no NUL */
    T_ERR(env_encode(&w, &e), ERR_INVAL);
    golden_env(&e, ENV_ERROR);
    e.err_msg = (struct slice){msg, ENV_ERRMSG_MAX + 1};
    T_ERR(env_encode(&w, &e), ERR_INVAL);
    golden_env(&e, ENV_ERROR);
    e.err_code = (err_t)(UINT16_MAX + 1);
    T_ERR(env_encode(&w, &e), ERR_INVAL);
    /* nothing was written by a rejected envelope */
    T_EQ(mp_writer_len(&w), 0u);

    /* env_encode appends: two envelopes back to back */
    struct envelope a, b, d;
    struct mp_reader r;
    struct slice raw;
    golden_env(&a, ENV_REQUEST);
    golden_env(&b, ENV_ERROR);
    T_OK(env_encode(&w, &a));
    T_OK(env_encode(&w, &b));
    mp_reader_init(&r, mp_writer_data(&w), mp_writer_len(&w));
    T_OK(mp_skip(&r, &raw));
    T_OK(env_decode(raw.p, raw.n, &d));
    T_ASSERT(env_same(&a, &d));
    T_OK(mp_skip(&r, &raw));
    T_OK(env_decode(raw.p, raw.n, &d));
    T_ASSERT(env_same(&b, &d));
    T_EQ(mp_reader_left(&r), 0u);
    mp_writer_fini(&w);
    free(msg);
}

/* Reads a whole file; NULL if it cannot. */
static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0;

    *n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            uint8_t *p = realloc(buf, cap);
            if (!p)
                abort();
            buf = p;
        }
        size_t got = fread(buf + *n, 1, cap - *n, f);
        *n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    return buf;
}

/* Checks golden file tests/golden/<name>.v1.mp against env_encode of e, and decodes it. */
static void check_golden(const char *name, const struct envelope *e, const uint8_t *layout,
                         size_t layout_n)
{
    char path[256];
    size_t n;
    struct mp_writer w;
    struct envelope d;

    snprintf(path, sizeof(path), "tests/golden/%s.v1.mp", name);
    uint8_t *file = read_file(path, &n);
    if (!T_ASSERT(file != NULL)) {
        printf("# cannot read %s (tests run from the repository root)\n", path);
        return;
    }
    uint8_t *buf = dup_exact(file, n);
    free(file);

    /* the file is the documented layout, byte for byte */
    T_EQ(n, layout_n);
    T_ASSERT(n == layout_n && memcmp(buf, layout, n) == 0);

    /* env_encode produces exactly the file */
    mp_writer_init(&w);
    T_OK(env_encode(&w, e));
    T_EQ(mp_writer_len(&w), n);
    T_ASSERT(mp_writer_len(&w) == n && memcmp(mp_writer_data(&w), buf, n) == 0);
    mp_writer_fini(&w);

    /* and decoding the file gives every field back */
    T_OK(env_decode(buf, n, &d));
    T_EQ(d.version, 1);
    T_EQ(d.kind, e->kind);
    T_EQ(d.type, MSG_BUS_ECHO);
    T_EQ(d.req_id, 4660u);
    T_STREQ(d.trace_id, TRACE);
    T_STREQ(d.sender, "gateway.0");
    T_EQ(d.deadline_ms, DEADLINE);
    T_EQ(d.attempt, 1u);
    T_EQ(d.err_code, e->err_code);
    T_ASSERT(slice_same(d.err_msg, e->err_msg));
    T_ASSERT(within(d.err_msg, buf, n));
    T_EQ(d.body.n, e->body.n);
    T_ASSERT(d.body.n == 0 || memcmp(d.body.p, e->body.p, d.body.n) == 0);
    T_ASSERT(within(d.body, buf, n));
    if (d.body.n)
        T_ASSERT(d.body.p + d.body.n == (const char *)buf + n); /* body is the last field */

    /* every strict prefix is rejected, and so is trailing garbage */
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = dup_exact(buf, len);
        if (env_decode(cut, len, &d) != ERR_PROTO)
            bad++, printf("# %s: prefix %zu accepted\n", name, len);
        free(cut);
    }
    T_EQ(bad, 0);
    uint8_t *more = malloc(n + 1);
    memcpy(more, buf, n);
    more[n] = 0xc0;
    T_ERR(env_decode(more, n + 1, &d), ERR_PROTO);
    more[n] = 0x00;
    T_ERR(env_decode(more, n + 1, &d), ERR_PROTO);
    free(more);
    free(buf);
}

/* The v1 layout written out by hand from envelope.h. */
#define L_HEAD(kind) 0x9b, 0x01, (kind), 0x02, 0xcd, 0x12, 0x34
#define L_TRACE                                                                                    \
    0xd9, 0x20, '0', 'a', 'f', '7', '6', '5', '1', '9', '1', '6', 'c', 'd', '4', '3', 'd', 'd',    \
        '8', '4', '4', '8', 'e', 'b', '2', '1', '1', 'c', '8', '0', '3', '1', '9', 'c'
#define L_SENDER 0xa9, 'g', 'a', 't', 'e', 'w', 'a', 'y', '.', '0'
#define L_DEADLINE 0xcf, 0x00, 0x00, 0x01, 0xa1, 0xff, 0x02, 0xc7, 0x57
#define L_BODY_KV 0x81, 0xa1, 'k', 0xa1, 'v'

T_TEST(golden)
{
    /* array(11) version kind type=2 req_id=uint16 4660, str8(32) trace, fixstr(9) sender,
     * uint64 deadline, attempt 1, err_code, err_msg, body */
    static const uint8_t request[] = {L_HEAD(0x01), L_TRACE,  L_SENDER, L_DEADLINE,
                                      0x01,         0x00,     0xc0,     L_BODY_KV};
    static const uint8_t reply[] = {L_HEAD(0x02), L_TRACE, L_SENDER, L_DEADLINE,
                                    0x01,         0x00,    0xc0,     L_BODY_KV};
    static const uint8_t error[] = {L_HEAD(0x03), L_TRACE, L_SENDER, L_DEADLINE, 0x01, 0x03,
                                    0xaf, 'd', 'e', 'a', 'd', 'l', 'i', 'n', 'e', ' ', 'p', 'a',
                                    's', 's', 'e', 'd', 0xc0};
    struct envelope e;

    T_EQ(sizeof(request), 68u);
    T_EQ(DEADLINE, UINT64_C(0x1a1ff02c757));

    t_current = "golden_request";
    golden_env(&e, ENV_REQUEST);
    check_golden("env_request", &e, request, sizeof(request));
    t_current = "golden_reply";
    golden_env(&e, ENV_REPLY);
    check_golden("env_reply", &e, reply, sizeof(reply));
    t_current = "golden_error";
    golden_env(&e, ENV_ERROR);
    check_golden("env_error", &e, error, sizeof(error));
}

/*
 * Hand-built envelopes: field i's raw encoding can be replaced, and the
 * array header can claim any count, to reach each decoder rejection.
 */
#define RAW_MAX 16
#define RAW_FIELD 1100

struct rawenv {
    uint8_t f[RAW_MAX][RAW_FIELD];
    size_t n[RAW_MAX];
    unsigned count; /* fields present */
};

static void raw_set(struct rawenv *e, unsigned i, const void *p, size_t n)
{
    if (i >= RAW_MAX || n > RAW_FIELD)
        abort();
    memcpy(e->f[i], p, n);
    e->n[i] = n;
    if (i >= e->count)
        e->count = i + 1;
}

/* The golden request, field by field. */
static void raw_default(struct rawenv *e)
{
    memset(e, 0, sizeof(*e));
    raw_set(e, 0, "\x01", 1);
    raw_set(e, 1, "\x01", 1);
    raw_set(e, 2, "\x02", 1);
    raw_set(e, 3, "\xcd\x12\x34", 3);
    raw_set(e, 4, "\xd9\x20" TRACE, 34);
    raw_set(e, 5, "\xa9gateway.0", 10);
    raw_set(e, 6, "\xcf\x00\x00\x01\xa1\xff\x02\xc7\x57", 9);
    raw_set(e, 7, "\x01", 1);
    raw_set(e, 8, "\x00", 1);
    raw_set(e, 9, "\xc0", 1);
    raw_set(e, 10, BODY_KV, 5);
}

/*
 * Decodes e with its array header claiming `claim` elements, from an
 * exact-size heap copy; *keep (if given) receives that copy, which out
 * borrows from, for the caller to free.
 */
static err_t raw_decode_keep(const struct rawenv *e, uint32_t claim, struct envelope *out,
                             uint8_t **keep)
{
    struct mp_writer w;
    mp_writer_init(&w);
    mp_put_array(&w, claim);
    for (unsigned i = 0; i < e->count; i++)
        mp_put_raw(&w, e->f[i], e->n[i]);
    size_t n = mp_writer_len(&w);
    uint8_t *buf = dup_exact(mp_writer_data(&w), n);
    mp_writer_fini(&w);
    err_t rc = env_decode(buf, n, out);
    if (rc == OK && (!within(out->body, buf, n) || !within(out->err_msg, buf, n)))
        rc = ERR_INTERNAL;
    if (keep)
        *keep = buf;
    else
        free(buf);
    return rc;
}

static err_t raw_decode_claim(const struct rawenv *e, uint32_t claim, struct envelope *out)
{
    return raw_decode_keep(e, claim, out, NULL);
}

static err_t raw_decode(const struct rawenv *e)
{
    struct envelope d;
    return raw_decode_claim(e, e->count, &d);
}

/* Decodes the default envelope with field i replaced by p[0..n). */
static err_t with_field(unsigned i, const void *p, size_t n)
{
    static struct rawenv e;
    raw_default(&e);
    raw_set(&e, i, p, n);
    return raw_decode(&e);
}

/* The default envelope with kind, err_code and err_msg replaced. */
static err_t with_error(const char *kind, const char *code, size_t code_n, const char *msg,
                        size_t msg_n)
{
    static struct rawenv e;
    raw_default(&e);
    raw_set(&e, 1, kind, 1);
    raw_set(&e, 8, code, code_n);
    raw_set(&e, 9, msg, msg_n);
    return raw_decode(&e);
}

T_TEST(decode_raw_baseline)
{
    static struct rawenv e;
    struct envelope d;

    uint8_t *buf;
    raw_default(&e);
    T_OK(raw_decode_keep(&e, 11, &d, &buf));
    T_EQ(d.kind, ENV_REQUEST);
    T_ASSERT(slice_eq(d.body, BODY_KV));
    T_ASSERT(d.err_msg.p == NULL && d.err_msg.n == 0);
    free(buf);
    /* non-canonical but valid encodings are accepted */
    T_OK(with_field(0, "\xcc\x01", 2));
    T_OK(with_field(1, "\xcf\x00\x00\x00\x00\x00\x00\x00\x01", 9));
    T_OK(with_field(2, "\xd0\x02", 2));
    T_OK(with_field(4, "\xdb\x00\x00\x00\x20" TRACE, 37));
    T_OK(with_field(5, "\xda\x00\x01x", 4));
    T_OK(with_field(10, "\xde\x00\x01\xa1k\xa1v", 7));
    /* an array16 header holding 11 */
    {
        struct mp_writer w;
        mp_writer_init(&w);
        mp_put_raw(&w, "\xdc\x00\x0b", 3);
        for (unsigned i = 0; i < e.count; i++)
            mp_put_raw(&w, e.f[i], e.n[i]);
        T_OK(env_decode(mp_writer_data(&w), mp_writer_len(&w), &d));
        mp_writer_fini(&w);
    }
}

T_TEST(decode_rejects_header)
{
    static struct rawenv e;
    struct envelope d;

    T_ERR(env_decode("", 0, &d), ERR_PROTO);
    T_ERR(env_decode("\xc0", 1, &d), ERR_PROTO);
    T_ERR(env_decode("\x80", 1, &d), ERR_PROTO);
    T_ERR(env_decode("\x90", 1, &d), ERR_PROTO);
    T_ERR(env_decode("\xc1", 1, &d), ERR_PROTO);

    /* fewer than 11 fields */
    raw_default(&e);
    e.count = 10;
    T_ERR(raw_decode(&e), ERR_PROTO);
    e.count = 1;
    T_ERR(raw_decode(&e), ERR_PROTO);
    /* 11 fields present, header claims 10 (the last one is trailing garbage) */
    raw_default(&e);
    T_ERR(raw_decode_claim(&e, 10, &d), ERR_PROTO);

    /* a map instead of the array */
    raw_default(&e);
    {
        struct mp_writer w;
        mp_writer_init(&w);
        mp_put_raw(&w, "\x8b", 1); /* map of 11 pairs = 22 objects: we give 22 */
        for (int k = 0; k < 2; k++)
            for (unsigned i = 0; i < e.count; i++)
                mp_put_raw(&w, e.f[i], e.n[i]);
        T_ERR(env_decode(mp_writer_data(&w), mp_writer_len(&w), &d), ERR_PROTO);
        mp_writer_fini(&w);
    }
}

T_TEST(decode_rejects_fields)
{
    char name[ENV_SENDER_MAX + 3];

    /* version */
    T_ERR(with_field(0, "\x02", 1), ERR_PROTO);
    T_ERR(with_field(0, "\x00", 1), ERR_PROTO);
    T_ERR(with_field(0, "\xcd\x01\x01", 3), ERR_PROTO); /* 257 */
    T_ERR(with_field(0, "\xff", 1), ERR_PROTO);         /* -1 */
    T_ERR(with_field(0, "\xa1" "1", 2), ERR_PROTO);
    T_ERR(with_field(0, "\xc0", 1), ERR_PROTO);
    /* kind */
    T_ERR(with_field(1, "\x00", 1), ERR_PROTO);
    T_ERR(with_field(1, "\x05", 1), ERR_PROTO);
    T_ERR(with_field(1, "\xcc\xff", 2), ERR_PROTO);
    T_ERR(with_field(1, "\xcd\x01\x01", 3), ERR_PROTO); /* 257: not truncated to 1 */
    T_OK(with_field(1, "\x04", 1));
    /* type */
    T_ERR(with_field(2, "\xce\x00\x01\x00\x00", 5), ERR_PROTO); /* 65536 */
    T_ERR(with_field(2, "\xff", 1), ERR_PROTO);
    T_OK(with_field(2, "\xcd\xff\xff", 3));
    /* req_id */
    T_ERR(with_field(3, "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9), ERR_PROTO);
    T_ERR(with_field(3, "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9), ERR_PROTO); /* 1.0 */
    T_OK(with_field(3, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9));
    /* trace id */
    T_ERR(with_field(4, "\xbf" "0af7651916cd43dd8448eb211c80319", 32), ERR_PROTO); /* 31 */
    T_ERR(with_field(4, "\xd9\x21" TRACE "0", 35), ERR_PROTO);                     /* 33 */
    T_ERR(with_field(4, "\xd9\x20" "0AF7651916CD43DD8448EB211C80319C", 34), ERR_PROTO);
    T_ERR(with_field(4, "\xd9\x20" "0af7651916cd43dd8448eb211c80319C", 34), ERR_PROTO);
    T_ERR(with_field(4, "\xd9\x20" "00000000000000000000000000000000", 34), ERR_PROTO);
    T_ERR(with_field(4, "\xd9\x20" "0af7651916cd43dd8448eb211c80319g", 34), ERR_PROTO);
    T_ERR(with_field(4, "\xd9\x20" "0af7651916cd43dd-448eb211c80319c", 34), ERR_PROTO);
    T_ERR(with_field(4, "\xd9\x20" "0af7651916cd43dd\0" "448eb211c80319c", 34), ERR_PROTO);
    T_ERR(with_field(4, "\xc0", 1), ERR_PROTO);
    T_ERR(with_field(4, "\xc4\x20" TRACE, 34), ERR_PROTO); /* bin, not str */
    T_OK(with_field(4, "\xa0", 1));                          /* "" = no trace */
    /* sender */
    memset(name, 'x', sizeof(name));
    name[0] = (char)0xd9;
    name[1] = ENV_SENDER_MAX;
    T_OK(with_field(5, name, 2 + ENV_SENDER_MAX));
    name[1] = ENV_SENDER_MAX + 1;
    T_ERR(with_field(5, name, 2 + ENV_SENDER_MAX + 1), ERR_PROTO);
    T_ERR(with_field(5, "\xc0", 1), ERR_PROTO);
    T_ERR(with_field(5, "\x05", 1), ERR_PROTO);
    T_OK(with_field(5, "\xa0", 1));
    /* deadline */
    T_ERR(with_field(6, "\xff", 1), ERR_PROTO);
    T_ERR(with_field(6, "\xc0", 1), ERR_PROTO);
    /* attempt */
    T_ERR(with_field(7, "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9), ERR_PROTO); /* 2^32 */
    T_OK(with_field(7, "\xce\xff\xff\xff\xff", 5));
    T_ERR(with_field(7, "\xe0", 1), ERR_PROTO);
    /* err_code range and type */
    T_ERR(with_error("\x03", "\xce\x00\x01\x00\x00", 5, "\xc0", 1), ERR_PROTO); /* 65536 */
    T_ERR(with_error("\x03", "\xff", 1, "\xc0", 1), ERR_PROTO);
    T_OK(with_error("\x03", "\xcd\xff\xff", 3, "\xc0", 1));
    /* err_msg */
    T_ERR(with_field(9, "\x01", 1), ERR_PROTO);
    T_ERR(with_field(9, "\xc4\x01x", 3), ERR_PROTO);
    {
        static char msg[3 + ENV_ERRMSG_MAX + 1];
        memset(msg, 'm', sizeof(msg));
        msg[0] = (char)0xda;
        msg[1] = (char)(ENV_ERRMSG_MAX >> 8);
        msg[2] = (char)(ENV_ERRMSG_MAX & 0xff);
        T_OK(with_field(9, msg, 3 + ENV_ERRMSG_MAX));
        msg[1] = (char)((ENV_ERRMSG_MAX + 1) >> 8);
        msg[2] = (char)((ENV_ERRMSG_MAX + 1) & 0xff);
        T_ERR(with_field(9, msg, 3 + ENV_ERRMSG_MAX + 1), ERR_PROTO);
    }
}

T_TEST(decode_rejects_kind_vs_err_code)
{
    /* err_code != 0 outside ENV_ERROR */
    T_ERR(with_error("\x02", "\x05", 1, "\xc0", 1), ERR_PROTO);
    T_ERR(with_error("\x01", "\x05", 1, "\xc0", 1), ERR_PROTO);
    T_ERR(with_error("\x04", "\x01", 1, "\xa1x", 2), ERR_PROTO);
    /* ENV_ERROR with err_code 0 */
    T_ERR(with_error("\x03", "\x00", 1, "\xa4oops", 5), ERR_PROTO);
    T_ERR(with_error("\x03", "\x00", 1, "\xc0", 1), ERR_PROTO);
    /* the consistent combinations */
    T_OK(with_error("\x03", "\x05", 1, "\xc0", 1));
    T_OK(with_error("\x03", "\x0d", 1, "\xa4oops", 5));
    T_OK(with_error("\x02", "\x00", 1, "\xa4note", 5));
}

T_TEST(decode_rejects_body)
{
    T_ERR(with_field(10, "\xa1v", 2), ERR_PROTO);        /* str */
    T_ERR(with_field(10, "\x91\x01", 2), ERR_PROTO);     /* array */
    T_ERR(with_field(10, "\x07", 1), ERR_PROTO);         /* uint */
    T_ERR(with_field(10, "\xc4\x01x", 3), ERR_PROTO);    /* bin */
    T_ERR(with_field(10, "\xc3", 1), ERR_PROTO);         /* bool */
    T_ERR(with_field(10, "\xd4\x01\x00", 3), ERR_PROTO); /* ext */
    T_ERR(with_field(10, "\x82\xa1k\xa1v", 5), ERR_PROTO); /* truncated map */
    T_ERR(with_field(10, "\x81\xa1k\xc1", 4), ERR_PROTO);  /* malformed value */
    T_ERR(with_field(10, "\xc1", 1), ERR_PROTO);
    T_OK(with_field(10, "\x80", 1));
    T_OK(with_field(10, "\xc0", 1));
    T_OK(with_field(10, "\x81\x01\x02", 3)); /* integer keys: still a map */

    /* nil body decodes as an empty slice */
    static struct rawenv e;
    struct envelope d;
    raw_default(&e);
    raw_set(&e, 10, "\xc0", 1);
    T_OK(raw_decode_claim(&e, 11, &d));
    T_ASSERT(d.body.p == NULL && d.body.n == 0);
    /* a body nested past MP_MAX_DEPTH */
    uint8_t deep[3 * 40 + 1];
    for (int i = 0; i < 40; i++)
        memcpy(deep + 3 * i, "\x81\xa1k", 3);
    deep[120] = 0xc0;
    T_ERR(with_field(10, deep, sizeof(deep)), ERR_PROTO);
}

T_TEST(extra_fields)
{
    static struct rawenv e;
    struct envelope d, ref;

    golden_env(&ref, ENV_REQUEST);
    raw_default(&e);
    uint8_t *buf = NULL;
    raw_set(&e, 11, "\xa5hello", 6);
    T_OK(raw_decode_keep(&e, 12, &d, &buf));
    T_ASSERT(env_same(&d, &ref));
    free(buf);
    raw_set(&e, 12, "\x82\xa1" "a\x92\x01\x02\xa1" "b\xc0", 9);
    T_OK(raw_decode_keep(&e, 13, &d, &buf));
    T_ASSERT(env_same(&d, &ref));
    free(buf);

    /* malformed or missing extras are rejected */
    raw_default(&e);
    raw_set(&e, 11, "\xc1", 1);
    T_ERR(raw_decode(&e), ERR_PROTO);
    raw_set(&e, 11, "\xa5" "ab", 3);
    T_ERR(raw_decode(&e), ERR_PROTO);
    raw_set(&e, 11, "\x92\x01", 2);
    T_ERR(raw_decode(&e), ERR_PROTO);
    raw_default(&e);
    T_ERR(raw_decode_claim(&e, 12, &d), ERR_PROTO); /* claims 12, has 11 */
    raw_set(&e, 11, "\x01", 1);
    T_ERR(raw_decode_claim(&e, 13, &d), ERR_PROTO);
    /* an extra field with trailing garbage after the array */
    raw_set(&e, 12, "\x01", 1);
    T_ERR(raw_decode_claim(&e, 12, &d), ERR_PROTO);
}

T_TEST(origin)
{
    static struct rawenv e;
    struct envelope d, ref;
    struct mp_writer w;
    uint8_t *buf = NULL;

    /* encoded only when set, as a twelfth field, and read back */
    golden_env(&ref, ENV_REQUEST);
    ref.origin = UINT64_C(0x8a3f00c1d2e3f405);
    mp_writer_init(&w);
    T_OK(env_encode(&w, &ref));
    T_EQ(((const uint8_t *)mp_writer_data(&w))[0], 0x9c); /* array of 12 */
    T_OK(env_decode(mp_writer_data(&w), mp_writer_len(&w), &d));
    T_EQ(d.origin, ref.origin);
    T_EQ(d.req_id, ref.req_id);
    mp_writer_fini(&w);
    ref.origin = 0;
    mp_writer_init(&w);
    T_OK(env_encode(&w, &ref));
    T_EQ(((const uint8_t *)mp_writer_data(&w))[0], 0x9b); /* 11: the v1 bytes of before */
    mp_writer_fini(&w);

    /* a twelfth unsigned integer is the origin, followed by extras still ignored */
    raw_default(&e);
    raw_set(&e, 11, "\xcf\x01\x02\x03\x04\x05\x06\x07\x08", 9);
    T_OK(raw_decode_keep(&e, 12, &d, &buf));
    T_EQ(d.origin, UINT64_C(0x0102030405060708));
    free(buf);
    raw_set(&e, 12, "\xa2hi", 3);
    T_OK(raw_decode_keep(&e, 13, &d, &buf));
    T_EQ(d.origin, UINT64_C(0x0102030405060708));
    free(buf);
    /* anything else there is an extra field: no origin */
    raw_default(&e);
    raw_set(&e, 11, "\xd0\xff", 2); /* a negative integer */
    T_OK(raw_decode_keep(&e, 12, &d, &buf));
    T_EQ(d.origin, 0u);
    free(buf);
    raw_set(&e, 11, "\xcf\x01", 2); /* truncated */
    T_ERR(raw_decode_claim(&e, 12, &d), ERR_PROTO);
}

T_TEST(trace_valid)
{
    char buf[64];

    T_EQ(env_trace_valid(TRACE, 32), 1);
    T_EQ(env_trace_valid("00000000000000000000000000000001", 32), 1);
    T_EQ(env_trace_valid("ffffffffffffffffffffffffffffffff", 32), 1);
    T_EQ(env_trace_valid("0123456789abcdef0123456789abcdef", 32), 1);
    T_EQ(env_trace_valid("00000000000000000000000000000000", 32), 0);
    T_EQ(env_trace_valid("", 0), 0);
    T_EQ(env_trace_valid(TRACE, 31), 0);
    T_EQ(env_trace_valid(TRACE "0", 33), 0);
    T_EQ(env_trace_valid("0AF7651916CD43DD8448EB211C80319C", 32), 0);
    T_EQ(env_trace_valid("0af7651916cd43dd8448eb211c80319C", 32), 0);
    /* the characters just outside the accepted ranges */
    static const char edges[] = "/:`g@GA ";
    int bad = 0;
    for (size_t i = 0; i < sizeof(edges) - 1; i++) {
        memcpy(buf, TRACE, 32);
        buf[7] = edges[i];
        if (env_trace_valid(buf, 32) != 0)
            bad++, printf("# trace with '%c' accepted\n", edges[i]);
    }
    T_EQ(bad, 0);
    memcpy(buf, TRACE, 32);
    buf[31] = '\0';
    T_EQ(env_trace_valid(buf, 32), 0);
    /* only n bytes are looked at */
    memcpy(buf, TRACE "ZZZZ", 36);
    T_EQ(env_trace_valid(buf, 32), 1);
}

int main(void)
{
    T_RUN(roundtrip_each_kind);
    T_RUN(roundtrip_limits);
    T_RUN(encode_rejects);
    T_RUN(golden);
    T_RUN(decode_raw_baseline);
    T_RUN(decode_rejects_header);
    T_RUN(decode_rejects_fields);
    T_RUN(decode_rejects_kind_vs_err_code);
    T_RUN(decode_rejects_body);
    T_RUN(extra_fields);
    T_RUN(origin);
    T_RUN(trace_valid);
    return T_DONE();
}
