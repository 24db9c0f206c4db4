/*
 * fuzz_test.c - a seeded mutation fuzz test of env_decode, mp_skip,
 * mp_to_json(_masked) and mp_map_find, run under ASan/UBSan with the unit
 * tests. Inputs start from the golden envelopes and random valid envelopes.
 *
 *   TETHER_FUZZ_SEED=N   seed (default below; the seed used is printed)
 *   TETHER_FUZZ_ITERS=N  mutated inputs to try (default sized for ~2 s under ASan)
 *   TETHER_FUZZ_SECS=N   stop early after N seconds (default 8)
 */
#include <stdlib.h>
#include <time.h>

#include "envelope.h"
#include "mp.h"
#include "mpjson.h"
#include "msg.h"
#include "t.h"

#define DEFAULT_SEED UINT64_C(20261121)
#define DEFAULT_ITERS 100000UL
#define DEFAULT_SECS 8.0
#define WORK_MAX 8192      /* largest mutated input */
#define CORPUS_MAX 256
#define CORPUS_SEEDS 64    /* golden + generated at the start */
#define MAX_REPORTS 5      /* failing inputs printed in full */

/* ---- random numbers (splitmix64) ---- */

static uint64_t rng;

static uint64_t rnd(void)
{
    uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint32_t below(uint32_t n)
{
    return n ? (uint32_t)(rnd() % n) : 0;
}

static int chance(uint32_t one_in)
{
    return below(one_in) == 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    char *end;
    if (!s || !*s)
        return dflt;
    uint64_t v = strtoull(s, &end, 0);
    return *end ? dflt : v;
}

/* ---- corpus ---- */

struct input {
    uint8_t *p;
    size_t n;
};

static struct input corpus[CORPUS_MAX];
static size_t corpus_n, corpus_fixed; /* the first corpus_fixed entries are never replaced */

static void corpus_add(const void *p, size_t n)
{
    size_t i;
    if (n == 0 || n > WORK_MAX)
        return;
    if (corpus_n < CORPUS_MAX) {
        i = corpus_n++;
    } else {
        i = corpus_fixed + below((uint32_t)(CORPUS_MAX - corpus_fixed));
        free(corpus[i].p);
    }
    corpus[i].p = malloc(n);
    if (!corpus[i].p)
        abort();
    memcpy(corpus[i].p, p, n);
    corpus[i].n = n;
}

static void corpus_free(void)
{
    for (size_t i = 0; i < corpus_n; i++)
        free(corpus[i].p);
    corpus_n = 0;
}

static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

static int load_golden(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t buf[WORK_MAX];
    size_t n;
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    corpus_add(buf, n);
    return n > 0;
}

/* ---- random valid msgpack and envelopes ---- */

static const uint8_t interesting[] = {0x00, 0x7f, 0x80, 0xc1, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};

static void gen_str(struct mp_writer *w, size_t maxlen)
{
    static const char alpha[] = "abcxyz019 _.-\"\\/\n\t\x01\x1f\x7f\xc3\xa9\xe2\x82\xac\xff";
    char s[512];
    size_t n = below((uint32_t)maxlen + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = alpha[below(sizeof(alpha) - 1)];
    mp_put_strn(w, s, n);
}

static void gen_key(struct mp_writer *w)
{
    static const char *const keys[] = {"k", "name", "data", "token", "api_key", "Password",
                                       "items", "x", "", "authorization_header"};
    if (chance(8))
        gen_str(w, 12);
    else
        mp_put_str(w, keys[below(sizeof(keys) / sizeof(keys[0]))]);
}

static void gen_value(struct mp_writer *w, unsigned depth)
{
    uint8_t raw[16];
    uint32_t n;

    switch (below(depth < 5 ? 16 : 12)) {
    case 0:
        mp_put_nil(w);
        break;
    case 1:
        mp_put_bool(w, chance(2));
        break;
    case 2:
        mp_put_uint(w, rnd() >> below(64));
        break;
    case 3:
        mp_put_int(w, -(int64_t)(rnd() >> (1 + below(63))) - 1);
        break;
    case 4: {
        static const double special[] = {0.0, -0.0, 1.5, 1e300, -1e-300};
        double d;
        uint64_t bits = rnd();
        if (chance(3))
            d = special[below(5)];
        else
            memcpy(&d, &bits, sizeof(d)); /* any bit pattern, NaNs included */
        mp_put_double(w, d);
        break;
    }
    case 5: /* float32, any bits */
        raw[0] = 0xca;
        for (int i = 1; i < 5; i++)
            raw[i] = (uint8_t)rnd();
        mp_put_raw(w, raw, 5);
        break;
    case 6:
    case 7:
        gen_str(w, chance(10) ? 300 : 24);
        break;
    case 8:
        n = below(sizeof(raw) + 1);
        for (uint32_t i = 0; i < n; i++)
            raw[i] = (uint8_t)rnd();
        mp_put_bin(w, raw, n);
        break;
    case 9: /* fixext 1/2/4/8 */
        n = 1u << below(4);
        raw[0] = (uint8_t)(0xd4 + (n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : 3));
        for (uint32_t i = 1; i < n + 2; i++)
            raw[i] = (uint8_t)rnd();
        mp_put_raw(w, raw, n + 2);
        break;
    case 10: /* ext8 */
        n = below(8);
        raw[0] = 0xc7;
        raw[1] = (uint8_t)n;
        for (uint32_t i = 2; i < n + 3; i++)
            raw[i] = (uint8_t)rnd();
        mp_put_raw(w, raw, n + 3);
        break;
    case 11:
        mp_put_uint(w, below(200));
        break;
    case 12:
    case 13:
        n = below(6);
        mp_put_array(w, n);
        for (uint32_t i = 0; i < n; i++)
            gen_value(w, depth + 1);
        break;
    default:
        n = below(6);
        mp_put_map(w, n);
        for (uint32_t i = 0; i < n; i++) {
            if (chance(10))
                gen_value(w, depth + 1); /* a non-string key */
            else
                gen_key(w);
            gen_value(w, depth + 1);
        }
        break;
    }
}

/* A map body; now and then with a value nested close to MP_MAX_DEPTH. */
static void gen_body(struct mp_writer *w)
{
    uint32_t n = below(6);
    int deep = chance(20);

    mp_put_map(w, n + (deep ? 1 : 0));
    for (uint32_t i = 0; i < n; i++) {
        gen_key(w);
        gen_value(w, 1);
    }
    if (deep) {
        /* body map + k arrays: at most 31 levels, inside MP_MAX_DEPTH for skip and JSON */
        uint32_t k = 20 + below(11);
        mp_put_str(w, "deep");
        for (uint32_t i = 0; i < k; i++)
            mp_put_array(w, 1);
        mp_put_nil(w);
    }
}

/* Encodes a random valid envelope (sometimes with extra fields) into out. */
static void gen_envelope(struct mp_writer *out)
{
    struct envelope e;
    struct mp_writer body;
    char msg[1100];

    memset(&e, 0, sizeof(e));
    mp_writer_init(&body);
    e.version = ENV_VERSION;
    e.kind = (uint8_t)(ENV_REQUEST + below(4));
    e.type = chance(2) ? msg_catalogue[below((uint32_t)msg_catalogue_len)].type : (uint16_t)rnd();
    e.req_id = rnd() >> below(64);
    if (!chance(4)) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < ENV_TRACE_LEN; i++)
            e.trace_id[i] = hex[below(16)];
        e.trace_id[ENV_TRACE_LEN - 1] = '1'; /* never all zero */
    }
    size_t sl = below(ENV_SENDER_MAX + 1);
    for (size_t i = 0; i < sl; i++)
        e.sender[i] = "abcdefgh.-_0123456789"[below(21)];
    e.deadline_ms = chance(3) ? 0 : rnd() >> below(64);
    e.attempt = chance(2) ? 1 + below(5) : (uint32_t)rnd();
    if (e.kind == ENV_ERROR)
        e.err_code = (err_t)(chance(2) ? 1 + below(ERR_MAX_CODE) : 1 + below(UINT16_MAX));
    if (chance(2)) {
        size_t ml = chance(20) ? ENV_ERRMSG_MAX : below(60);
        for (size_t i = 0; i < ml; i++)
            msg[i] = "ab \"\\\n\x01\xc3\xa9z"[below(10)];
        e.err_msg = (struct slice){msg, ml};
    }
    if (!chance(4)) {
        gen_body(&body);
        e.body = (struct slice){mp_writer_data(&body), mp_writer_len(&body)};
    }

    struct mp_writer enc;
    mp_writer_init(&enc);
    if (env_encode(&enc, &e) != OK)
        abort();
    uint8_t *bytes = dup_exact(mp_writer_data(&enc), mp_writer_len(&enc));
    uint32_t extra = chance(6) ? 1 + below(3) : 0;
    /* forward compatibility: 1-3 extra fields after the 11 (fixarray 0x9b becomes 0x9c-0x9e) */
    bytes[0] = (uint8_t)(0x9b + extra);
    mp_put_raw(out, bytes, mp_writer_len(&enc));
    for (uint32_t i = 0; i < extra; i++)
        gen_value(out, 1);
    free(bytes);
    mp_writer_fini(&enc);
    mp_writer_fini(&body);
}

/* ---- mutation ---- */

static size_t mutate(uint8_t *b, size_t n)
{
    unsigned ops = 1 + below(4);
    for (unsigned k = 0; k < ops; k++) {
        size_t pos = n ? below((uint32_t)n) : 0;
        switch (below(11)) {
        case 0: /* bit flip */
            if (n)
                b[pos] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* interesting byte */
        case 2:
            if (n)
                b[pos] = interesting[below(sizeof(interesting))];
            break;
        case 3: /* random byte */
            if (n)
                b[pos] = (uint8_t)rnd();
            break;
        case 4: /* +-1 */
            if (n)
                b[pos] = (uint8_t)(b[pos] + (chance(2) ? 1 : 0xff));
            break;
        case 5: /* truncate */
            n = below((uint32_t)n + 1);
            break;
        case 6: { /* insert 1-4 bytes */
            size_t k2 = 1 + below(4);
            if (n + k2 > WORK_MAX)
                break;
            memmove(b + pos + k2, b + pos, n - pos);
            for (size_t i = 0; i < k2; i++)
                b[pos + i] = chance(2) ? interesting[below(sizeof(interesting))] : (uint8_t)rnd();
            n += k2;
            break;
        }
        case 7: { /* delete a range */
            size_t len = n - pos ? 1 + below((uint32_t)(n - pos < 16 ? n - pos : 16)) : 0;
            memmove(b + pos, b + pos + len, n - pos - len);
            n -= len;
            break;
        }
        case 8: { /* splice: our prefix, another input's suffix */
            const struct input *o = &corpus[below((uint32_t)corpus_n)];
            size_t from = below((uint32_t)o->n + 1);
            size_t take = o->n - from;
            if (pos + take > WORK_MAX)
                take = WORK_MAX - pos;
            memcpy(b + pos, o->p + from, take);
            n = pos + take;
            break;
        }
        case 9: { /* duplicate a chunk */
            size_t len = n - pos ? 1 + below((uint32_t)(n - pos < 32 ? n - pos : 32)) : 0;
            size_t at = below((uint32_t)n + 1);
            if (n + len > WORK_MAX)
                break;
            uint8_t tmp[32];
            memcpy(tmp, b + pos, len);
            memmove(b + at + len, b + at, n - at);
            memcpy(b + at, tmp, len);
            n += len;
            break;
        }
        default: /* a big length field */
            if (n >= 3) {
                pos = below((uint32_t)n - 2);
                b[pos + 1] = 0xff;
                b[pos + 2] = chance(2) ? 0xff : 0x7f;
            }
            break;
        }
    }
    return n;
}

/* ---- properties ---- */

static unsigned long iter;
static int reports;
static unsigned long fail_env, fail_skip, fail_json, fail_find;
static unsigned long n_env_ok, n_env_rej, n_json_ok, n_skip_ok, n_env_deep;

static void report(const char *what, const uint8_t *p, size_t n)
{
    if (reports++ >= MAX_REPORTS)
        return;
    printf("# FAIL iteration %lu: %s; input (%zu bytes):\n#  ", iter, what, n);
    for (size_t i = 0; i < n && i < 512; i++)
        printf("%02x%s", p[i], (i % 32 == 31) ? "\n#  " : "");
    printf("\n");
}

static int within(struct slice s, const uint8_t *buf, size_t n)
{
    const char *b = (const char *)buf;
    if (s.p == NULL)
        return s.n == 0;
    return s.p >= b && s.p <= b + n && s.n <= (size_t)(b + n - s.p);
}

static int slice_same(struct slice a, struct slice b)
{
    if ((a.p == NULL) != (b.p == NULL) || a.n != b.n)
        return 0;
    return a.n == 0 || memcmp(a.p, b.p, a.n) == 0;
}

static int env_same(const struct envelope *a, const struct envelope *b)
{
    return a->version == b->version && a->kind == b->kind && a->type == b->type &&
           a->req_id == b->req_id && strcmp(a->trace_id, b->trace_id) == 0 &&
           strcmp(a->sender, b->sender) == 0 && a->deadline_ms == b->deadline_ms &&
           a->attempt == b->attempt && a->err_code == b->err_code &&
           slice_same(a->err_msg, b->err_msg) && a->body.n == b->body.n &&
           (a->body.n == 0 || memcmp(a->body.p, b->body.p, a->body.n) == 0);
}

/* Invariants of a successfully decoded envelope e from buf[0..n). */
static const char *env_invariant(const struct envelope *e, const uint8_t *buf, size_t n)
{
    struct mp_reader r;
    struct slice raw;
    enum mp_type t;
    size_t tl = strnlen(e->trace_id, sizeof(e->trace_id));

    if (!within(e->body, buf, n) || !within(e->err_msg, buf, n))
        return "a slice points outside the input";
    if (e->version != ENV_VERSION || e->kind < ENV_REQUEST || e->kind > ENV_EVENT)
        return "version or kind out of range";
    if (tl == ENV_TRACE_LEN + 1 || (tl != 0 && !env_trace_valid(e->trace_id, tl)))
        return "invalid trace id accepted";
    if (strnlen(e->sender, sizeof(e->sender)) > ENV_SENDER_MAX)
        return "sender too long";
    if (e->err_msg.n > ENV_ERRMSG_MAX || (unsigned)e->err_code > UINT16_MAX)
        return "err_msg or err_code out of range";
    if ((e->kind == ENV_ERROR) != (e->err_code != OK))
        return "kind and err_code disagree";
    if (e->body.n > 0) {
        mp_reader_init(&r, e->body.p, e->body.n);
        if (mp_peek(&r, &t) != OK || t != MP_MAP || mp_skip(&r, &raw) != OK ||
            mp_reader_left(&r) != 0)
            return "body is not exactly one map";
    }
    /*
     * The depth cap is per call: a body may nest MP_MAX_DEPTH deep below the
     * envelope array, so mp_skip of the whole input can fail on depth alone.
     */
    mp_reader_init(&r, buf, n);
    if (mp_skip(&r, &raw) == OK && raw.n != n)
        return "input is more than one msgpack object";
    return NULL;
}

/* Writers reused across iterations (fewer allocations, so less ASan quarantine churn). */
static struct mp_writer w1, w2;

/* Re-encodes e, decodes that, re-encodes again: fields and bytes must be stable. */
static const char *env_reencode(const struct envelope *e)
{
    struct envelope e2;
    const char *why = NULL;

    mp_writer_reset(&w1);
    mp_writer_reset(&w2);
    if (env_encode(&w1, e) != OK)
        return "re-encoding a decoded envelope failed";
    uint8_t *b1 = dup_exact(mp_writer_data(&w1), mp_writer_len(&w1));
    if (env_decode(b1, mp_writer_len(&w1), &e2) != OK)
        why = "decoding the re-encoding failed";
    else if (!env_same(e, &e2))
        why = "the re-encoding decodes to different fields";
    else if (env_encode(&w2, &e2) != OK || mp_writer_len(&w2) != mp_writer_len(&w1) ||
             memcmp(mp_writer_data(&w2), b1, mp_writer_len(&w1)) != 0)
        why = "re-encoding is not stable";
    free(b1);
    return why;
}

/* Feeds one input (an exact-size heap copy) to every function under test. */
static void check_input(const uint8_t *in, size_t n, int add_to_corpus)
{
    uint8_t *buf = dup_exact(in, n);
    struct envelope e;
    struct mp_reader r, v;
    struct slice raw;
    const char *why;
    err_t rc;

    /* mp_skip */
    mp_reader_init(&r, buf, n);
    err_t skip_rc = mp_skip(&r, &raw);
    if (skip_rc == OK) {
        n_skip_ok++;
        if (raw.p != (const char *)buf || raw.n == 0 || raw.n > n ||
            mp_reader_left(&r) != n - raw.n)
            fail_skip++, report("mp_skip slice or position wrong", in, n);
    } else if (skip_rc != ERR_PROTO || mp_reader_left(&r) != n) {
        fail_skip++, report("mp_skip failed wrongly or moved the reader", in, n);
    }

    /* env_decode */
    rc = env_decode(buf, n, &e);
    if (rc == OK) {
        n_env_ok++;
        n_env_deep += skip_rc != OK;
        if ((why = env_invariant(&e, buf, n)) != NULL || (why = env_reencode(&e)) != NULL)
            fail_env++, report(why, in, n);
        else if (add_to_corpus && chance(4))
            corpus_add(in, n);
        if (e.body.n > 0) {
            char *out = NULL;
            size_t len;
            rc = mp_to_json(e.body.p, e.body.n, 0, &out, &len);
            if (rc != OK && rc != ERR_PROTO)
                fail_json++, report("mp_to_json(body) returned neither OK nor ERR_PROTO", in, n);
            free(out);
        }
    } else if (rc == ERR_PROTO) {
        n_env_rej++;
    } else {
        fail_env++, report("env_decode returned neither OK nor ERR_PROTO", in, n);
    }

    /* mp_to_json and mp_to_json_masked */
    static const size_t maxes[] = {0, 1, 5, 64};
    size_t max = maxes[below(4)];
    err_t jrc[2];
    for (int masked = 0; masked <= 1; masked++) {
        char *out = NULL;
        size_t len = 0;
        jrc[masked] = masked ? mp_to_json_masked(buf, n, max, &out, &len)
                             : mp_to_json(buf, n, max, &out, &len);
        if (jrc[masked] == OK) {
            n_json_ok += !masked;
            if (out == NULL || strlen(out) != len)
                fail_json++, report("JSON not NUL-terminated at len, or has a NUL", in, n);
            /* output stays proportional to the input (structured keys are placeholders) */
            if (len > 16 * n + 64)
                fail_json++, report("JSON output out of proportion to the input", in, n);
            /* plain rendering caps depth from the root, as mp_skip does (the masked
             * one skips secret values with mp_skip, whose cap restarts there) */
            if (!masked && skip_rc != OK)
                fail_json++, report("mp_to_json accepted what mp_skip rejects", in, n);
            free(out);
        } else if (jrc[masked] != ERR_PROTO) {
            fail_json++, report("mp_to_json returned neither OK nor ERR_PROTO", in, n);
        }
    }
    if (jrc[0] == OK && jrc[1] != OK)
        fail_json++, report("masked rendering failed where plain rendering worked", in, n);

    /* mp_map_find */
    rc = mp_map_find(buf, n, below(2) ? "k" : "token", &v);
    if (rc == OK) {
        if (v.p < buf || v.p > buf + n || v.end != buf + n)
            fail_find++, report("mp_map_find reader outside the input", in, n);
        (void)mp_skip(&v, NULL);
    } else if (rc != ERR_NOTFOUND && rc != ERR_PROTO) {
        fail_find++, report("mp_map_find returned an unexpected code", in, n);
    }
    free(buf);
}

/* ---- phases ---- */

T_TEST(seed_corpus)
{
    int golden = 0;
    golden += load_golden("tests/golden/env_request.v1.mp");
    golden += load_golden("tests/golden/env_reply.v1.mp");
    golden += load_golden("tests/golden/env_error.v1.mp");
    T_EQ(golden, 3);

    struct mp_writer w;
    unsigned long bad = 0;
    mp_writer_init(&w);
    while (corpus_n < CORPUS_SEEDS) {
        mp_writer_reset(&w);
        gen_envelope(&w);
        if (mp_writer_err(&w) != OK)
            bad++;
        corpus_add(mp_writer_data(&w), mp_writer_len(&w));
    }
    mp_writer_fini(&w);
    corpus_fixed = corpus_n;

    /* every seed is valid: it decodes, keeps its invariants, re-encodes, renders */
    for (size_t i = 0; i < corpus_n; i++) {
        struct envelope e;
        char *out = NULL;
        size_t len;
        const char *why = NULL;
        uint8_t *buf = dup_exact(corpus[i].p, corpus[i].n);
        if (env_decode(buf, corpus[i].n, &e) != OK)
            why = "a seed does not decode";
        else if ((why = env_invariant(&e, buf, corpus[i].n)) == NULL)
            why = env_reencode(&e);
        if (!why && mp_to_json(buf, corpus[i].n, 0, &out, &len) != OK)
            why = "a seed does not render as JSON";
        free(out);
        if (why)
            bad++, report(why, corpus[i].p, corpus[i].n);
        free(buf);
    }
    T_EQ(bad, 0UL);
}

T_TEST(mutations)
{
    static uint8_t work[WORK_MAX];
    unsigned long iters = (unsigned long)env_u64("TETHER_FUZZ_ITERS", DEFAULT_ITERS);
    double secs = (double)env_u64("TETHER_FUZZ_SECS", (uint64_t)DEFAULT_SECS);
    double t0 = now_s(), elapsed = 0;

    reports = 0;
    for (iter = 0; iter < iters; iter++) {
        size_t n;
        if ((iter & 255) == 0 && (elapsed = now_s() - t0) > secs) {
            printf("# time budget of %.0f s reached\n", secs);
            break;
        }
        if (chance(64)) {
            /* now and then, short random bytes from the interesting set */
            n = below(24);
            for (size_t i = 0; i < n; i++)
                work[i] = chance(2) ? interesting[below(sizeof(interesting))] : (uint8_t)rnd();
        } else {
            const struct input *src = &corpus[below((uint32_t)corpus_n)];
            memcpy(work, src->p, src->n);
            n = mutate(work, src->n);
        }
        check_input(work, n, 1);
    }
    elapsed = now_s() - t0;
    printf("# %lu iterations in %.2f s; env_decode ok %lu, rejected %lu; mp_skip ok %lu; "
           "mp_to_json ok %lu; corpus %zu\n",
           iter, elapsed, n_env_ok, n_env_rej, n_skip_ok, n_json_ok, corpus_n);
    /* an envelope env_decode accepts is also one mp_skip accepts whole: one nesting limit */
    T_EQ(n_env_deep, 0UL);

    T_EQ(fail_env, 0UL);
    T_EQ(fail_skip, 0UL);
    T_EQ(fail_json, 0UL);
    T_EQ(fail_find, 0UL);
    if (iter >= 1000) {
        /* the mutations reach both sides of the decoder */
        T_ASSERT(n_env_ok > 0);
        T_ASSERT(n_env_rej > 0);
    }
}

int main(void)
{
    uint64_t seed = env_u64("TETHER_FUZZ_SEED", DEFAULT_SEED);
    printf("# seed %" PRIu64 "\n", seed);
    rng = seed;
    mp_writer_init(&w1);
    mp_writer_init(&w2);
    T_RUN(seed_corpus);
    T_RUN(mutations);
    mp_writer_fini(&w1);
    mp_writer_fini(&w2);
    corpus_free();
    return T_DONE();
}
