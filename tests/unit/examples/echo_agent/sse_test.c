/*
 * sse_test.c - the echo agent's SSE parser: every event of a stream comes out
 * the same however the stream is split (one chunk, byte by byte, every split
 * into two and three chunks), line endings, field syntax, limits, stopping.
 */
#include "../../../../examples/echo-agent/sse.c"

#include <stdlib.h>

#include "t.h"

#define REC_MAX 16

/* What the callback saw, flattened to one string per event: "type|data|id". */
struct rec {
    char ev[REC_MAX][512];
    int n;
    int stop_at; /* 1-based event number whose callback returns 7; 0: never */
};

static int rec_cb(void *arg, const struct sse_event *ev)
{
    struct rec *r = arg;
    if (r->n < REC_MAX) {
        /* data may hold NULs; show them as '0' so the string stays comparable */
        char d[256];
        size_t k = 0;
        for (size_t i = 0; i < ev->data_len && k + 1 < sizeof(d); i++)
            d[k++] = ev->data[i] ? ev->data[i] : '0';
        d[k] = '\0';
        snprintf(r->ev[r->n], sizeof(r->ev[r->n]), "%s|%s|%s", ev->type, d, ev->id);
    }
    r->n++;
    return r->stop_at && r->n == r->stop_at ? 7 : 0;
}

/* Feeds s in chunks ending at the given cut positions; returns the first non-zero feed result. */
static int feed_cuts(struct rec *r, size_t max, const char *s, size_t len, const size_t *cuts,
                     int ncuts)
{
    struct sse_parser p;
    size_t at = 0;
    int rc = 0;
    sse_init(&p, max, rec_cb, r);
    for (int i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        /* each chunk is copied to its own heap block so ASan sees any read past its end */
        char *chunk = malloc(end - at + 1);
        if (!chunk)
            abort();
        memcpy(chunk, s + at, end - at);
        rc = sse_feed(&p, chunk, end - at);
        free(chunk);
        at = end;
    }
    sse_fini(&p);
    return rc;
}

static bool rec_same(const struct rec *a, const struct rec *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n && i < REC_MAX; i++)
        if (strcmp(a->ev[i], b->ev[i]) != 0)
            return false;
    return true;
}

/* Parses s whole, then split every way into 1-byte, two and three chunks; all must agree. */
static bool same_every_split(const char *s, struct rec *whole)
{
    size_t len = strlen(s);
    struct rec r;
    bool ok = true;
    memset(whole, 0, sizeof(*whole));
    if (feed_cuts(whole, 1 << 20, s, len, NULL, 0) != 0)
        return false;

    size_t cuts[1024];
    int nc = 0;
    for (size_t i = 1; i < len && nc < 1024; i++)
        cuts[nc++] = i;
    memset(&r, 0, sizeof(r));
    ok = ok && feed_cuts(&r, 1 << 20, s, len, cuts, nc) == 0 && rec_same(&r, whole);

    for (size_t a = 0; a <= len && ok; a++) {
        memset(&r, 0, sizeof(r));
        ok = feed_cuts(&r, 1 << 20, s, len, &a, 1) == 0 && rec_same(&r, whole);
        for (size_t b = a; b <= len && ok; b++) {
            size_t two[2] = {a, b};
            memset(&r, 0, sizeof(r));
            ok = feed_cuts(&r, 1 << 20, s, len, two, 2) == 0 && rec_same(&r, whole);
        }
    }
    return ok;
}

/* The shapes the echo agent receives from Tether's .in subscription. */
T_TEST(tether_stream)
{
    const char *s = "event: batch\r\n"
                    "id: 3,4,120\r\n"
                    "data: {\"records\":[{\"seq_num\":3,\"body\":\"x\"}]}\r\n"
                    "\r\n"
                    "event: ping\n"
                    "data: {\"timestamp\":1}\n"
                    "\n"
                    "data: [DONE]\n"
                    "\n";
    struct rec r;
    T_ASSERT(same_every_split(s, &r));
    T_EQ(r.n, 3);
    T_STREQ(r.ev[0], "batch|{\"records\":[{\"seq_num\":3,\"body\":\"x\"}]}|3,4,120");
    T_STREQ(r.ev[1], "ping|{\"timestamp\":1}|3,4,120"); /* the last id persists */
    T_STREQ(r.ev[2], "message|[DONE]|3,4,120");         /* no event: field -> "message" */
}

T_TEST(line_endings)
{
    struct rec r;
    /* lone CRs, a CR right before a CRLF, LF then CRLF: every one ends exactly one line */
    T_ASSERT(same_every_split("data: a\rdata: b\r\rdata: c\r\r\ndata: d\n\r\n", &r));
    T_EQ(r.n, 3);
    T_STREQ(r.ev[0], "message|a\nb|");
    T_STREQ(r.ev[1],
            "message|c|"); /* "\r\r\n": the CR ends "data: c", the CRLF is the blank line */
    T_STREQ(r.ev[2], "message|d|");
}

T_TEST(field_syntax)
{
    struct rec r;
    T_ASSERT(same_every_split(": comment\n"
                              "data:nospace\n"
                              "data:  two spaces\n"
                              "data\n" /* no colon: a field with an empty value */
                              "data:\n"
                              "unknown: x\n"
                              "retry: 10\n"
                              "event:e1\n"
                              "\n"
                              "data: after\n" /* the event type does not carry over */
                              "\n",
                              &r));
    T_EQ(r.n, 2);
    T_STREQ(r.ev[0], "e1|nospace\n two spaces\n\n|");
    T_STREQ(r.ev[1], "message|after|");
}

T_TEST(no_data_no_event)
{
    struct rec r;
    /* events without data: lines dispatch nothing and forget their type; a trailing event
     * without its blank line is never dispatched */
    T_ASSERT(same_every_split("event: ping\n\nid: 9\n\n\n\ndata: x\n\ndata: tail", &r));
    T_EQ(r.n, 1);
    T_STREQ(r.ev[0], "message|x|9");
}

T_TEST(ids)
{
    struct rec r;
    char big[SSE_ID_MAX + 32];
    T_ASSERT(same_every_split("id: 1\ndata: a\n\nid\ndata: b\n\n", &r));
    T_EQ(r.n, 2);
    T_STREQ(r.ev[0], "message|a|1");
    T_STREQ(r.ev[1], "message|b|"); /* "id" with no value resets it */

    /* an over-long id is ignored: the previous one stays */
    memset(&r, 0, sizeof(r));
    snprintf(big, sizeof(big), "id: 5\nid: %0*d\ndata: c\n\n", SSE_ID_MAX, 0);
    T_OK(feed_cuts(&r, 1 << 20, big, strlen(big), NULL, 0));
    T_EQ(r.n, 1);
    T_STREQ(r.ev[0], "message|c|5");
}

T_TEST(type_too_long)
{
    struct rec r;
    char s[SSE_TYPE_MAX + 64];
    memset(&r, 0, sizeof(r));
    snprintf(s, sizeof(s), "event: %0*d\ndata: x\n\ndata: y\n\n", SSE_TYPE_MAX, 0);
    T_OK(feed_cuts(&r, 1 << 20, s, strlen(s), NULL, 0));
    T_EQ(r.n, 1);
    T_STREQ(r.ev[0], "message|y|");
}

T_TEST(nul_in_data)
{
    struct rec r;
    static const char s[] = "data: a\0b\n\n";
    memset(&r, 0, sizeof(r));
    T_OK(feed_cuts(&r, 1 << 20, s, sizeof(s) - 1, NULL, 0));
    T_EQ(r.n, 1);
    T_STREQ(r.ev[0], "message|a0b|");
}

T_TEST(limits)
{
    struct rec r;
    const char *s = "data: 0123456789\ndata: 0123456789\n\n";
    size_t len = strlen(s);
    size_t cuts[64];
    int nc = 0;
    for (size_t i = 1; i < len; i++)
        cuts[nc++] = i;

    /* the cap covers the pending data (11 bytes) plus the line being read (16): 27 fits, 26 is
     * an error, whole or byte by byte */
    memset(&r, 0, sizeof(r));
    T_OK(feed_cuts(&r, 27, s, len, NULL, 0));
    T_EQ(r.n, 1);
    memset(&r, 0, sizeof(r));
    T_OK(feed_cuts(&r, 27, s, len, cuts, nc));
    T_EQ(r.n, 1);
    memset(&r, 0, sizeof(r));
    T_ERR(feed_cuts(&r, 26, s, len, NULL, 0), SSE_ERR_TOOBIG);
    T_EQ(r.n, 0);
    memset(&r, 0, sizeof(r));
    T_ERR(feed_cuts(&r, 26, s, len, cuts, nc), SSE_ERR_TOOBIG);

    /* a single endless line is caught while it is still arriving */
    struct sse_parser p;
    char chunk[1000];
    int rc = 0, fed = 0;
    memset(chunk, 'x', sizeof(chunk));
    memset(&r, 0, sizeof(r));
    sse_init(&p, 4096, rec_cb, &r);
    while (rc == 0 && fed < 100) {
        rc = sse_feed(&p, chunk, sizeof(chunk));
        fed++;
    }
    T_ERR(rc, SSE_ERR_TOOBIG);
    T_EQ(fed, 5);
    T_ASSERT(p._line.cap <= 8192); /* the buffer never grew past the cap's power of two */
    sse_fini(&p);
}

T_TEST(stop_and_reset)
{
    struct rec r;
    struct sse_parser p;
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    memset(&r, 0, sizeof(r));
    r.stop_at = 2;
    sse_init(&p, 1 << 20, rec_cb, &r);
    T_EQ(sse_feed(&p, s, strlen(s)),
         7); /* the callback's value comes back; event 3 is not parsed */
    T_EQ(r.n, 2);

    /* a new connection: the half line and the id of the old one are forgotten */
    r.stop_at = 0;
    sse_reset(&p);
    T_OK(sse_feed(&p, "id: 4\ndata: par", 15));
    sse_reset(&p);
    T_OK(sse_feed(&p, "data: fresh\n\n", 13));
    T_EQ(r.n, 3);
    T_STREQ(r.ev[2], "message|fresh|");
    sse_fini(&p);
    sse_fini(&p); /* fini twice is harmless */
}

int main(void)
{
    T_RUN(tether_stream);
    T_RUN(line_endings);
    T_RUN(field_syntax);
    T_RUN(no_data_no_event);
    T_RUN(ids);
    T_RUN(type_too_long);
    T_RUN(nul_in_data);
    T_RUN(limits);
    T_RUN(stop_and_reset);
    return T_DONE();
}
