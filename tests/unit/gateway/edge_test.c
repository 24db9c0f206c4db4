/*
 * edge_test.c - the framing parser that reads a connection before h2o does
 * (every input whole and one byte at a time, which must agree), allowed
 * hosts and the listen base URL. The socket guard itself is exercised end to
 * end by tests/integration/http_edge_test.sh.
 */
#include "../../../gateway/edge.c"

#include "t.h"

#define MAX 2097152

/* Feeds s whole; returns the verdict and sets *start. */
static int feed_whole(const char *s, size_t *start)
{
    struct gw_frame f;
    const char *why = NULL;
    gw_frame_init(&f, MAX);
    int v = gw_frame_feed(&f, s, strlen(s), start, &why);
    if (v != GW_FRAME_OK && (!why || !*why))
        return -1; /* a refusal always says why */
    return v;
}

/* Feeds s one byte at a time; returns the verdict and the absolute offset of the request. */
static int feed_bytes(const char *s, size_t *start)
{
    struct gw_frame f;
    const char *why = NULL;
    size_t begun = 0, st;
    gw_frame_init(&f, MAX);
    for (size_t i = 0; s[i]; i++) {
        int v = gw_frame_feed(&f, s + i, 1, &st, &why);
        if (v != GW_FRAME_OK) {
            *start = st ? i + st : begun;
            return v;
        }
        if (st)
            begun = i + st;
    }
    *start = 0;
    return GW_FRAME_OK;
}

/* The verdict for s, checked equal whole and bytewise (and the refused request's offset too). */
static int verdict(const char *s)
{
    size_t a = 0, b = 0;
    int v = feed_whole(s, &a), w = feed_bytes(s, &b);
    if (v != w || (v != GW_FRAME_OK && a != b))
        return -2;
    return v;
}

static size_t start_of(const char *s)
{
    size_t a = 0;
    (void)feed_whole(s, &a);
    return a;
}

#define GET "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
#define POST "POST /x HTTP/1.1\r\nHost: h\r\n"

T_TEST(good_framing)
{
    T_EQ(verdict(GET), GW_FRAME_OK);
    T_EQ(verdict("\r\n" GET GET), GW_FRAME_OK);
    T_EQ(verdict("GET /x HTTP/1.0\n\n"), GW_FRAME_OK); /* bare LF, as picohttpparser takes */
    T_EQ(verdict(POST "Content-Length: 5\r\n\r\nhello" GET), GW_FRAME_OK);
    T_EQ(verdict(POST "content-length:  0 \r\n\r\n" GET), GW_FRAME_OK);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" GET),
         GW_FRAME_OK);
    T_EQ(verdict(POST "TRANSFER-ENCODING: Chunked\r\n\r\n5;ext=1\r\nhe\r\nl\r\n"
                      "0\r\nX-Trailer: 1\r\n\r\n" GET),
         GW_FRAME_OK);
    /* names that only look like the two */
    T_EQ(verdict(POST
                 "X-Content-Length: 5\r\nContent-Lengths: 1\r\nContent-Length: 2\r\n\r\nab" GET),
         GW_FRAME_OK);
    T_EQ(verdict(POST "Transfer-Encodin: x\r\nContent-Type: a:b\r\n\r\n" GET), GW_FRAME_OK);
    /* the largest body accepted: exactly max, in one chunk or two */
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n200000\r\n"), GW_FRAME_OK);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n100000\r\n"), GW_FRAME_OK);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n0000000000000001\r\nx\r\n0\r\n\r\n"),
         GW_FRAME_OK); /* 16 digits, as picohttpparser allows */
    T_EQ(verdict(POST "Content-Length: 2097152\r\n\r\n"), GW_FRAME_OK);
}

T_TEST(refused_framing)
{
    T_EQ(verdict(POST "Content-Length: 15\r\nContent-Length: 3\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: 3\r\ncontent-length: 3\r\n\r\nabc"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
         GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: gzip, chunked\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked, gzip\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunkedx\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding:\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: 5, 5\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: 5 5\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: -1\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: 0x10\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length:\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length: 1234567890123456789\r\n\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Content-Length : 5\r\n\r\nhello"), GW_FRAME_BAD); /* space before colon */
    T_EQ(verdict(POST "Content-Length: 5\r\n 6\r\n\r\nhello"), GW_FRAME_BAD); /* folded */
    T_EQ(verdict(POST "Content-Length\r\n\r\n"), GW_FRAME_BAD);
    /* chunk sizes */
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\nfff"), GW_FRAME_OK); /* so far so good */
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\nfffff"), GW_FRAME_OK);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\nffffff"), GW_FRAME_BAD); /* > max */
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n200001\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n00000000000000001\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n;x\r\n"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n1\r\naX"), GW_FRAME_BAD);
    T_EQ(verdict(POST "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n200000\r\n"), GW_FRAME_TOOBIG);
    T_EQ(verdict(POST "Content-Length: 2097153\r\n\r\n"), GW_FRAME_TOOBIG);
}

T_TEST(where_the_refused_request_began)
{
    static const char bad[] = POST "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    char buf[512];
    T_EQ(start_of(bad), 0u);
    snprintf(buf, sizeof(buf), "%s%s", GET, bad);
    T_EQ(verdict(buf), GW_FRAME_BAD);
    T_EQ(start_of(buf), strlen(GET));
    snprintf(buf, sizeof(buf), "%s%s", POST "Content-Length: 3\r\n\r\nabc", bad);
    T_EQ(verdict(buf), GW_FRAME_BAD);
    T_EQ(start_of(buf), strlen(POST "Content-Length: 3\r\n\r\nabc"));
    snprintf(buf, sizeof(buf), "%s%s", POST "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad);
    T_EQ(verdict(buf), GW_FRAME_BAD);
    T_EQ(start_of(buf), strlen(POST "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));

    /* a refusal in a later read of the same request: it began before that read */
    struct gw_frame f;
    size_t st = 99;
    const char *why;
    gw_frame_init(&f, MAX);
    T_EQ(gw_frame_feed(&f, POST, strlen(POST), &st, &why), GW_FRAME_OK);
    T_EQ(gw_frame_feed(&f, "Content-Length: 1\r\nContent-Length: 1\r\n\r\n", 40, &st, &why),
         GW_FRAME_BAD);
    T_EQ(st, 0u);
    T_STREQ(why, "Content-Length given more than once");
}

T_TEST(hosts)
{
    struct gw_hosts h;
    char why[320];
    T_OK(gw_hosts_parse("", &h, why, sizeof(why)));
    T_EQ(h.n, 0u);
    T_OK(gw_hosts_parse("  ", &h, why, sizeof(why)));
    T_EQ(h.n, 0u);
    T_OK(
        gw_hosts_parse("API.example, gw.example:8443 ,[::1]:8787,127.0.0.1", &h, why, sizeof(why)));
    T_EQ(h.n, 4u);
    T_STREQ(h.h[0].name, "api.example");
    T_EQ(h.h[1].port, 8443u);
    T_STREQ(h.h[2].name, "[::1]");
    T_ERR(gw_hosts_parse("a,,b", &h, why, sizeof(why)), ERR_INVAL);
    T_ERR(gw_hosts_parse("a:0", &h, why, sizeof(why)), ERR_INVAL);
    T_ERR(gw_hosts_parse("a:65536", &h, why, sizeof(why)), ERR_INVAL);
    T_ERR(gw_hosts_parse("a:b", &h, why, sizeof(why)), ERR_INVAL);
    T_ERR(gw_hosts_parse("http://a", &h, why, sizeof(why)), ERR_INVAL);
    T_ERR(gw_hosts_parse("a b", &h, why, sizeof(why)), ERR_INVAL);
    T_ERR(gw_hosts_parse("a/b", &h, why, sizeof(why)), ERR_INVAL);

    T_OK(gw_hosts_parse("api.example,gw.example:8443,[::1]:8787", &h, why, sizeof(why)));
#define M(s) gw_hosts_match(&h, s, strlen(s))
    T_ASSERT(M("api.example"));
    T_ASSERT(M("API.Example:8787")); /* no port in the entry: any port */
    T_ASSERT(M("gw.example:8443"));
    T_ASSERT(!M("gw.example"));
    T_ASSERT(!M("gw.example:80"));
    T_ASSERT(M("[::1]:8787"));
    T_ASSERT(!M("[::1]"));
    T_ASSERT(!M("evil.example"));
    T_ASSERT(!M("api.example.evil"));
    T_ASSERT(!M("api.exampl"));
    T_ASSERT(!M("api.example:"));
    T_ASSERT(!M("api.example:x"));
    T_ASSERT(!M(""));
    T_ASSERT(!gw_hosts_match(&h, NULL, 0));
#undef M
}

T_TEST(listen_base)
{
    char b[64];
    gw_listen_base("127.0.0.1", 8787, false, b, sizeof(b));
    T_STREQ(b, "http://127.0.0.1:8787");
    gw_listen_base("0.0.0.0", 80, false, b, sizeof(b));
    T_STREQ(b, "http://127.0.0.1:80");
    gw_listen_base("10.1.2.3", 9000, true, b, sizeof(b));
    T_STREQ(b, "https://10.1.2.3:9000");
}

int main(void)
{
    T_RUN(good_framing);
    T_RUN(refused_framing);
    T_RUN(where_the_refused_request_began);
    T_RUN(hosts);
    T_RUN(listen_base);
    return T_DONE();
}
