/*
 * sse_bench.c - a load generator for the gateway's SSE feeds: fan-out latency, many idle
 * subscriptions, connect/disconnect churn. Talks plain HTTP/1.1 over non-blocking sockets
 * and one epoll loop, so that the tool costs little next to the server it measures.
 *
 *   sse_bench latency --url U --key K --prefix P [--streams S] [--subs N] --rate R --seconds T
 *   sse_bench hold    --url U --key K --prefix P [--streams S] [--subs N]
 *   sse_bench churn   --url U --key K --prefix P --cycles C [--parallel P] [--abort-every A]
 *
 * Stream i is a channel (--io, default out) of the session whose externalId is P-<i>;
 * --create creates those sessions first (an existing one is fine). Each stream has N
 * subscribers (Timeout-Seconds: 600), which start at seq 0: records whose send time is older
 * than this run are history, skipped and counted apart.
 *
 * --server nchan measures nchan (tests/bench/lib.sh starts it) the same way: stream i is the
 * channel P-<i>, appended to with POST /pub/P-<i> and subscribed to with GET /sub/P-<i>
 * (EventSource, "event: ping" every second); no key, no --create (a channel is made by its
 * first publish or subscriber).
 *
 * latency: opens every subscriber, waits until each has its headers and its first ping (the
 *   feed is at the tail), then appends R records a second for T seconds, round-robin over
 *   the streams, each carrying its send time (CLOCK_REALTIME ns). Every subscriber notes
 *   receive time minus send time per record. One JSON line: percentiles over all deliveries,
 *   deliveries expected (acknowledged appends x subscribers of their stream) and received.
 * hold: opens every subscriber, prints {"phase":"connected",...}, then obeys lines on stdin:
 *   "append" (one record to every stream; prints {"phase":"delivered",...} once every open
 *   subscriber has it, or at --timeout), "close" (closes everything, prints
 *   {"phase":"closed"} and exits). EOF on stdin is "close".
 * churn: C cycles, P at a time, on stream 0: connect, GET, read the response head, close
 *   (every other cycle with a reset instead of a FIN). --abort-every A: every A-th cycle
 *   closes as soon as its request is written, without waiting for the answer.
 *
 * Exit: 0 the run completed (the figures say how well), 100 usage, 111 setup failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define SB_EXIT_USAGE 100
#define SB_EXIT_SETUP 111
#define SB_HEAD_MAX 8192          /* response head; the gateway's are under 1 KiB */
#define SB_LINE_PREFIX 16         /* enough of an SSE line to tell its kind */
#define SB_SAMPLES_MAX (1u << 25) /* latency samples kept (256 MiB); more are counted only */
#define SB_READ_BUF 65536
#define SB_EVENTS 512
#define SB_SIZE_MAX (1u << 20)

enum sb_kind { SB_SUB, SB_REQ, SB_CHURN };
enum sb_state { SB_IDLE, SB_CONNECTING, SB_WRITING, SB_HEAD, SB_BODY };
/* chunked transfer decoding */
enum sb_chunk { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END, CH_TRAILER, CH_TRAILER_LINE, CH_END };
enum sb_req_kind { SB_R_NONE, SB_R_CREATE, SB_R_APPEND };

struct sb_conn {
    int fd;
    enum sb_kind kind;
    enum sb_state st;
    unsigned stream;
    char *out; /* the request being written; owned */
    size_t out_n, out_off;
    char *head; /* the response head being read; owned until it is parsed */
    size_t head_n;
    int status;
    bool chunked, has_length, close_after, abort_early, rst;
    uint64_t body_left;
    enum sb_chunk cst;
    uint64_t csize;
    /* the SSE scanner: "tsn:<digits>" anywhere, line kinds from their first bytes */
    uint8_t tsm, tsdigits;
    uint64_t tsv;
    char line[SB_LINE_PREFIX];
    uint8_t line_n;
    bool live, ended;
    uint64_t records;
    enum sb_req_kind rk; /* SB_REQ: what the request in flight is */
};

struct sb {
    /* options */
    const char *mode, *name, *key, *prefix, *io;
    bool nchan; /* --server nchan: nchan's publisher and EventSource subscriber paths */
    char host[64]; /* host:port, for the Host header */
    struct sockaddr_in addr;
    unsigned streams, subs, appenders, connecting_max, parallel, abort_every, size;
    double rate, seconds, timeout_s;
    uint64_t cycles;
    bool create;
    int ep;
    /* subscribers (latency, hold) or churn slots */
    struct sb_conn *subv;
    unsigned nsub, sub_next, connecting, headed, live, ended, ended_early, failed;
    /* keep-alive request connections: session creates and appends */
    struct sb_conn *reqv;
    unsigned nreq;
    unsigned create_next, create_done, create_failed;
    uint64_t append_pending, append_next, appends_sent, appends_ok, appends_failed;
    uint64_t *acked; /* per stream */
    /* deliveries */
    int64_t *samples;
    size_t nsamples, capsamples;
    uint64_t received, stale;
    int64_t started_real;
    /* churn */
    uint64_t churn_started, churn_done, churn_ok, churn_non200, churn_err, churn_aborted;
    /* hold: commands on stdin, read ahead into `in` and taken a line at a time */
    char in[1024], cmd[64];
    size_t in_n;
    bool stdin_eof;
};

static struct sb_conn sb_stdin_tag; /* epoll data of stdin */

static void sb_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sse_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void *sb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        sb_die(SB_EXIT_SETUP, "out of memory");
    return p;
}

static void *sb_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        sb_die(SB_EXIT_SETUP, "out of memory");
    return p;
}

static int64_t sb_clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        sb_die(SB_EXIT_SETUP, "clock_gettime: %s", strerror(errno));
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t sb_mono_ns(void)
{
    return sb_clock_ns(CLOCK_MONOTONIC);
}

static int64_t sb_real_ns(void)
{
    return sb_clock_ns(CLOCK_REALTIME);
}

/* ---- requests ---- */

/* Formats a whole HTTP/1.1 request into a fresh buffer; the caller owns it. */
static char *sb_request(const struct sb *b, const char *method, const char *path, const char *extra,
                        const char *body, size_t body_n, size_t *n_out)
{
    size_t cap = 512 + strlen(path) + strlen(b->key) + strlen(extra) + body_n;
    char *p = sb_xmalloc(cap);
    int w = snprintf(p, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, b->host, *b->key ? "Authorization: Bearer " : "", b->key,
                     *b->key ? "\r\n" : "", extra, body_n);
    if (w < 0 || (size_t)w + body_n > cap)
        sb_die(SB_EXIT_SETUP, "a request does not fit its buffer");
    if (body_n)
        memcpy(p + w, body, body_n);
    *n_out = (size_t)w + body_n;
    return p;
}

static char *sb_subscribe_request(const struct sb *b, unsigned stream, size_t *n)
{
    char path[256];
    if (b->nchan)
        snprintf(path, sizeof(path), "/sub/%s-%u", b->prefix, stream);
    else
        snprintf(path, sizeof(path), "/realtime/v1/sessions/%s-%u/%s", b->prefix, stream, b->io);
    return sb_request(b, "GET", path, "Accept: text/event-stream\r\nTimeout-Seconds: 600\r\n", "",
                      0, n);
}

/* ---- connections ---- */

static void sb_conn_reset(struct sb_conn *c)
{
    free(c->out);
    free(c->head);
    /* what outlives the socket: who the connection is, what it delivered, what is in flight */
    struct sb_conn keep = {.fd = -1,
                           .kind = c->kind,
                           .stream = c->stream,
                           .records = c->records,
                           .live = c->live,
                           .ended = c->ended,
                           .rk = c->rk,
                           .status = c->status};
    *c = keep;
}

/* Closes the socket (with a reset when c->rst) and frees the buffers; counters stay. */
static void sb_conn_close(struct sb_conn *c)
{
    if (c->fd >= 0) {
        if (c->rst) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0)
                fprintf(stderr, "sse_bench: SO_LINGER: %s\n", strerror(errno));
        }
        if (close(c->fd) != 0)
            fprintf(stderr, "sse_bench: close: %s\n", strerror(errno));
    }
    sb_conn_reset(c);
}

static int sb_epoll(struct sb *b, int op, struct sb_conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(b->ep, op, c->fd, &ev);
}

/* Starts connecting c and makes `req` (taken over) its request. -1 with errno on failure; the
 * request is freed either way. */
static int sb_conn_open(struct sb *b, struct sb_conn *c, char *req, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        free(req);
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        (connect(fd, (const struct sockaddr *)&b->addr, sizeof(b->addr)) != 0 &&
         errno != EINPROGRESS)) {
        int e = errno;
        (void)close(fd);
        free(req);
        errno = e;
        return -1;
    }
    c->fd = fd;
    c->st = SB_CONNECTING;
    c->out = req;
    c->out_n = n;
    c->out_off = 0;
    if (sb_epoll(b, EPOLL_CTL_ADD, c, EPOLLOUT) != 0) {
        int e = errno;
        sb_conn_close(c);
        errno = e;
        return -1;
    }
    return 0;
}

/* Sends `req` (taken over) on an idle keep-alive connection, reconnecting when the server
 * closed it meanwhile. */
static int sb_conn_send(struct sb *b, struct sb_conn *c, char *req, size_t n)
{
    if (c->fd < 0)
        return sb_conn_open(b, c, req, n);
    c->out = req;
    c->out_n = n;
    c->out_off = 0;
    c->st = SB_WRITING;
    c->status = 0;
    c->chunked = c->has_length = c->close_after = false;
    c->cst = CH_SIZE;
    c->csize = 0;
    return sb_epoll(b, EPOLL_CTL_MOD, c, EPOLLOUT);
}

/* ---- subscribers ---- */

static void sb_sub_start(struct sb *b, struct sb_conn *c)
{
    size_t n;
    char *req = sb_subscribe_request(b, c->stream, &n);
    if (sb_conn_open(b, c, req, n) != 0) {
        fprintf(stderr, "sse_bench: connect: %s\n", strerror(errno));
        if (c->kind == SB_CHURN) {
            b->churn_err++;
            b->churn_done++;
        } else {
            b->failed++;
        }
        return;
    }
    b->connecting++;
}

/* Keeps up to --connecting subscribers between connect() and their response head, so the
 * gateway's accept backlog is never what is measured. */
static void sb_subs_fill(struct sb *b)
{
    while (b->sub_next < b->nsub && b->connecting < b->connecting_max)
        sb_sub_start(b, &b->subv[b->sub_next++]);
}

/* Churn: a finished slot starts the next cycle until C have started. */
static void sb_churn_next(struct sb *b, struct sb_conn *c)
{
    if (b->churn_started >= b->cycles)
        return;
    b->churn_started++;
    c->rst = false;
    c->abort_early = b->abort_every && b->churn_started % b->abort_every == 0;
    sb_sub_start(b, c);
    if (c->fd >= 0)
        c->rst = b->churn_started % 2 == 0;
}

static void sb_sample(struct sb *b, int64_t d)
{
    b->received++;
    if (b->nsamples == b->capsamples) {
        if (b->capsamples >= SB_SAMPLES_MAX)
            return;
        size_t cap = b->capsamples ? b->capsamples * 2 : 65536;
        int64_t *p = realloc(b->samples, cap * sizeof(*p));
        if (!p)
            return;
        b->samples = p;
        b->capsamples = cap;
    }
    b->samples[b->nsamples++] = d;
}

static void sb_sse_line(struct sb *b, struct sb_conn *c)
{
    static const char ping[] = "event: ping";
    if (!c->live && c->line_n >= sizeof(ping) - 1 && memcmp(c->line, ping, sizeof(ping) - 1) == 0) {
        c->live = true;
        b->live++;
    }
}

/* Scans decoded SSE text: every "tsn:<ns>" is one delivered record; "event: ping" lines say
 * the feed reached the tail. Byte at a time, so a marker split across reads still counts. */
static void sb_sse_scan(struct sb *b, struct sb_conn *c, const char *p, size_t n, int64_t now)
{
    static const char tsn[] = "tsn:";
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            sb_sse_line(b, c);
            c->line_n = 0;
        } else if (c->line_n < sizeof(c->line)) {
            c->line[c->line_n++] = ch;
        }
        if (c->tsm == sizeof(tsn) - 1) {
            if (ch >= '0' && ch <= '9' && c->tsdigits < 19) {
                c->tsv = c->tsv * 10 + (uint64_t)(ch - '0');
                c->tsdigits++;
                continue;
            }
            /* records of an earlier run on the same stream (history) are not this run's */
            if (c->tsdigits > 0 && (int64_t)c->tsv >= b->started_real) {
                c->records++;
                sb_sample(b, now - (int64_t)c->tsv);
            } else if (c->tsdigits > 0) {
                b->stale++;
            }
            c->tsm = 0;
            c->tsv = 0;
            c->tsdigits = 0;
        }
        /* the marker's characters are all distinct, so a mismatch restarts at its first */
        if (ch == tsn[c->tsm])
            c->tsm++;
        else
            c->tsm = ch == tsn[0];
    }
}

/* ---- responses ---- */

static void sb_req_done(struct sb *b, struct sb_conn *c, bool ok);

/* Body bytes after transfer decoding. */
static void sb_payload(struct sb *b, struct sb_conn *c, const char *p, size_t n, int64_t now)
{
    if (c->kind == SB_SUB)
        sb_sse_scan(b, c, p, n, now);
}

static int sb_hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Feeds body bytes through the transfer coding. Returns -1 on a malformed body, 1 when the
 * body is complete, 0 when more is to come. */
static int sb_body(struct sb *b, struct sb_conn *c, const char *p, size_t n, int64_t now)
{
    if (!c->chunked) {
        if (!c->has_length) {
            sb_payload(b, c, p, n, now); /* delimited by the end of the connection */
            return 0;
        }
        if (n > c->body_left)
            return -1;
        sb_payload(b, c, p, n, now);
        c->body_left -= n;
        return c->body_left == 0;
    }
    size_t i = 0;
    while (i < n) {
        char ch = p[i];
        switch (c->cst) {
        case CH_SIZE: {
            int v = sb_hexval(ch);
            if (v < 0) {
                c->cst = CH_EXT;
                continue;
            }
            if (c->csize > (UINT64_MAX >> 4))
                return -1;
            c->csize = c->csize * 16 + (uint64_t)v;
            i++;
            break;
        }
        case CH_EXT:
            i++;
            if (ch == '\n')
                c->cst = c->csize ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t m = n - i < c->csize ? n - i : (size_t)c->csize;
            sb_payload(b, c, p + i, m, now);
            i += m;
            c->csize -= m;
            if (c->csize == 0)
                c->cst = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            i++;
            if (ch == '\n')
                c->cst = CH_SIZE;
            else if (ch != '\r')
                return -1;
            break;
        case CH_TRAILER:
            i++;
            if (ch == '\n') {
                c->cst = CH_END;
                return i == n ? 1 : -1;
            }
            if (ch != '\r')
                c->cst = CH_TRAILER_LINE;
            break;
        case CH_TRAILER_LINE:
            i++;
            if (ch == '\n')
                c->cst = CH_TRAILER;
            break;
        case CH_END:
            return -1;
        }
    }
    return 0;
}

/* Parses the head in c->head[0..len): status, framing. -1 when it is not HTTP/1.x. */
static int sb_head_parse(struct sb_conn *c, size_t len)
{
    char *h = c->head;
    h[len] = '\0';
    if (len < 12 || strncmp(h, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(h + 9);
    for (char *line = strstr(h, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "content-length:", 15) == 0) {
            c->has_length = true;
            c->body_left = strtoull(l + 15, NULL, 10);
        } else if (strncasecmp(l, "transfer-encoding:", 18) == 0) {
            c->chunked = strstr(l, "chunked") != NULL && strstr(l, "chunked") < strstr(l, "\r\n");
        } else if (strncasecmp(l, "connection:", 11) == 0) {
            char *e = strstr(l, "\r\n");
            char *cl = strcasestr(l, "close");
            c->close_after = cl && cl < e;
        }
    }
    return 0;
}

/* The connection ended or failed (err 0: the server closed it). */
static void sb_conn_lost(struct sb *b, struct sb_conn *c, int err)
{
    bool before_head = c->st == SB_CONNECTING || c->st == SB_WRITING || c->st == SB_HEAD;
    switch (c->kind) {
    case SB_SUB:
        if (before_head) {
            b->connecting--;
            b->failed++;
            if (err)
                fprintf(stderr, "sse_bench: subscriber: %s\n", strerror(err));
        } else if (!c->ended) {
            c->ended = true;
            b->ended++;
            if (!c->live)
                b->ended_early++;
        }
        sb_conn_close(c);
        break;
    case SB_CHURN:
        if (before_head) {
            b->connecting--;
            b->churn_err++;
            if (err)
                fprintf(stderr, "sse_bench: churn: %s\n", strerror(err));
        }
        b->churn_done++;
        sb_conn_close(c);
        sb_churn_next(b, c);
        break;
    case SB_REQ:
        if (c->st == SB_IDLE) { /* the server closed a keep-alive connection between requests */
            sb_conn_close(c);
            break;
        }
        if (err)
            fprintf(stderr, "sse_bench: request: %s\n", strerror(err));
        /* a response with neither length nor chunks ends with the connection (h2o answers a
         * 201 that way) */
        bool complete = !err && c->st == SB_BODY && !c->chunked && !c->has_length;
        sb_conn_close(c);
        sb_req_done(b, c, complete);
        break;
    }
}

/* A whole response head arrived; `rest` is what followed it in the same read. */
static void sb_on_head(struct sb *b, struct sb_conn *c, const char *rest, size_t n, int64_t now)
{
    free(c->head);
    c->head = NULL;
    c->head_n = 0;
    if (c->kind == SB_CHURN) {
        b->connecting--;
        if (c->status == 200)
            b->churn_ok++;
        else
            b->churn_non200++;
        b->churn_done++;
        sb_conn_close(c);
        sb_churn_next(b, c);
        return;
    }
    c->st = SB_BODY;
    if (c->kind == SB_SUB) {
        b->connecting--;
        if (c->status != 200) {
            fprintf(stderr, "sse_bench: a subscription answered %d\n", c->status);
            b->failed++;
            sb_conn_close(c);
            return;
        }
        b->headed++;
    }
    if (c->kind == SB_REQ && !c->chunked && c->has_length && c->body_left == 0) {
        if (n > 0) {
            fprintf(stderr, "sse_bench: unexpected bytes after a response\n");
            sb_conn_lost(b, c, 0);
            return;
        }
        sb_req_done(b, c, true);
        return;
    }
    if (n == 0)
        return;
    int r = sb_body(b, c, rest, n, now);
    if (r < 0) {
        fprintf(stderr, "sse_bench: a malformed response body\n");
        sb_conn_lost(b, c, 0);
    } else if (r > 0) {
        if (c->kind == SB_REQ)
            sb_req_done(b, c, true);
        else
            sb_conn_lost(b, c, 0); /* a subscription's response ended */
    }
}

static void sb_on_writable(struct sb *b, struct sb_conn *c)
{
    if (c->st == SB_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            sb_conn_lost(b, c, err);
            return;
        }
        c->st = SB_WRITING;
    }
    while (c->out_off < c->out_n) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_n - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            sb_conn_lost(b, c, errno);
            return;
        }
        c->out_off += (size_t)w;
    }
    if (c->kind != SB_REQ) { /* a subscription's request is never needed again */
        free(c->out);
        c->out = NULL;
    }
    if (c->abort_early) {
        b->connecting--;
        b->churn_aborted++;
        b->churn_done++;
        sb_conn_close(c);
        sb_churn_next(b, c);
        return;
    }
    c->st = SB_HEAD;
    if (sb_epoll(b, EPOLL_CTL_MOD, c, EPOLLIN) != 0)
        sb_conn_lost(b, c, errno);
}

static void sb_on_readable(struct sb *b, struct sb_conn *c)
{
    static char buf[SB_READ_BUF];
    ssize_t r = read(c->fd, buf, sizeof(buf));
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            sb_conn_lost(b, c, errno);
        return;
    }
    if (r == 0) {
        sb_conn_lost(b, c, 0);
        return;
    }
    int64_t now = sb_real_ns();
    size_t n = (size_t)r;
    if (c->st == SB_HEAD) {
        if (!c->head)
            c->head = sb_xmalloc(SB_HEAD_MAX + 1);
        size_t old = c->head_n, take = n < SB_HEAD_MAX - old ? n : SB_HEAD_MAX - old;
        memcpy(c->head + old, buf, take);
        c->head_n += take;
        size_t from = old >= 3 ? old - 3 : 0;
        char *end = memmem(c->head + from, c->head_n - from, "\r\n\r\n", 4);
        if (!end) {
            if (c->head_n == SB_HEAD_MAX) {
                fprintf(stderr, "sse_bench: a response head over %d bytes\n", SB_HEAD_MAX);
                sb_conn_lost(b, c, 0);
            }
            return;
        }
        size_t hl = (size_t)(end - c->head) + 4; /* head length, terminator included */
        if (sb_head_parse(c, hl) != 0) {
            fprintf(stderr, "sse_bench: not an HTTP/1.x response\n");
            sb_conn_lost(b, c, 0);
            return;
        }
        size_t used = hl - old; /* bytes of buf that were head */
        sb_on_head(b, c, buf + used, n - used, now);
        return;
    }
    if (c->st != SB_BODY) { /* data on an idle keep-alive connection */
        fprintf(stderr, "sse_bench: unexpected bytes between responses\n");
        sb_conn_lost(b, c, 0);
        return;
    }
    int rc = sb_body(b, c, buf, n, now);
    if (rc < 0) {
        fprintf(stderr, "sse_bench: a malformed response body\n");
        sb_conn_lost(b, c, 0);
    } else if (rc > 0) {
        if (c->kind == SB_REQ)
            sb_req_done(b, c, true);
        else
            sb_conn_lost(b, c, 0); /* a subscription's response ended */
    }
}

static void sb_on_stdin(struct sb *b)
{
    if (b->in_n == sizeof(b->in)) { /* a line longer than any command: drop it */
        fprintf(stderr, "sse_bench: a command line over %zu bytes\n", sizeof(b->in));
        b->in_n = 0;
    }
    ssize_t r = read(STDIN_FILENO, b->in + b->in_n, sizeof(b->in) - b->in_n);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        b->stdin_eof = true;
        if (epoll_ctl(b->ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL) != 0)
            fprintf(stderr, "sse_bench: epoll_ctl: %s\n", strerror(errno));
        return;
    }
    b->in_n += (size_t)r;
}

/* Takes the next whole command line into b->cmd; false when there is none yet. */
static bool sb_next_cmd(struct sb *b)
{
    char *nl = memchr(b->in, '\n', b->in_n);
    if (!nl)
        return false;
    size_t n = (size_t)(nl - b->in), k = n < sizeof(b->cmd) - 1 ? n : sizeof(b->cmd) - 1;
    memcpy(b->cmd, b->in, k);
    b->cmd[k] = '\0';
    memmove(b->in, nl + 1, b->in_n - n - 1);
    b->in_n -= n + 1;
    return true;
}

/* ---- creates and appends on the keep-alive connections ---- */

static bool sb_req_idle(const struct sb_conn *c)
{
    return c->st == SB_IDLE;
}

static void sb_req_issue(struct sb *b, struct sb_conn *c, enum sb_req_kind rk, char *req, size_t n)
{
    c->rk = rk;
    if (sb_conn_send(b, c, req, n) != 0) {
        fprintf(stderr, "sse_bench: request: %s\n", strerror(errno));
        sb_conn_close(c);
        sb_req_done(b, c, false);
    }
}

static void sb_create_next(struct sb *b, struct sb_conn *c)
{
    char body[512];
    if (b->create_next >= b->streams)
        return;
    unsigned i = b->create_next++;
    int w = snprintf(body, sizeof(body),
                     "{\"type\":\"chat\",\"externalId\":\"%s-%u\",\"taskIdentifier\":\"echo\","
                     "\"triggerConfig\":{\"basePayload\":{}}}",
                     b->prefix, i);
    size_t n;
    char *req = sb_request(b, "POST", "/api/v1/sessions", "Content-Type: application/json\r\n",
                           body, (size_t)w, &n);
    sb_req_issue(b, c, SB_R_CREATE, req, n);
}

/* Sends pending appends on idle connections; each carries its send time, taken last. */
static void sb_appends_pump(struct sb *b)
{
    static char body[SB_SIZE_MAX + 64];
    for (unsigned k = 0; k < b->nreq && b->append_pending > 0; k++) {
        struct sb_conn *c = &b->reqv[k];
        if (!sb_req_idle(c))
            continue;
        char path[256];
        unsigned s = (unsigned)(b->append_next++ % b->streams);
        if (b->nchan)
            snprintf(path, sizeof(path), "/pub/%s-%u", b->prefix, s);
        else
            snprintf(path, sizeof(path), "/realtime/v1/sessions/%s-%u/%s/append", b->prefix, s,
                     b->io);
        int w = snprintf(body, sizeof(body), "tsn:%" PRId64 " ", sb_real_ns());
        size_t n = (size_t)w;
        if (b->size > n) {
            memset(body + n, 'x', b->size - n);
            n = b->size;
        }
        size_t rn;
        char *req = sb_request(b, "POST", path, "Content-Type: text/plain\r\n", body, n, &rn);
        c->stream = s;
        b->append_pending--;
        b->appends_sent++;
        sb_req_issue(b, c, SB_R_APPEND, req, rn);
    }
}

static void sb_req_done(struct sb *b, struct sb_conn *c, bool ok)
{
    bool good = ok && c->status >= 200 && c->status < 300;
    if (ok && !good)
        fprintf(stderr, "sse_bench: a request answered %d\n", c->status);
    switch (c->rk) {
    case SB_R_CREATE:
        if (good)
            b->create_done++;
        else
            b->create_failed++;
        break;
    case SB_R_APPEND:
        if (good) {
            b->appends_ok++;
            b->acked[c->stream]++;
        } else {
            b->appends_failed++;
        }
        break;
    case SB_R_NONE:
        break;
    }
    c->rk = SB_R_NONE;
    free(c->out);
    c->out = NULL;
    c->st = SB_IDLE;
    if (c->fd >= 0 && c->close_after)
        sb_conn_close(c);
}

/* ---- the loop ---- */

static void sb_poll(struct sb *b, int timeout_ms)
{
    struct epoll_event evs[SB_EVENTS];
    int n = epoll_wait(b->ep, evs, SB_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return;
        sb_die(SB_EXIT_SETUP, "epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        struct sb_conn *c = evs[i].data.ptr;
        if (c == &sb_stdin_tag) {
            sb_on_stdin(b);
            continue;
        }
        /* closed by an earlier event of this batch; a slot reopened meanwhile may see its old
         * socket's event, which costs one EAGAIN at most */
        if (c->fd < 0)
            continue;
        if (c->st == SB_CONNECTING || c->st == SB_WRITING)
            sb_on_writable(b, c);
        else
            sb_on_readable(b, c);
    }
}

static double sb_since_s(int64_t t0)
{
    return (double)(sb_mono_ns() - t0) / 1e9;
}

static int sb_cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, c = *(const int64_t *)y;
    return (a > c) - (a < c);
}

/* Nearest-rank percentiles of samples[from..], in ms, as JSON fields. */
static void sb_print_percentiles(struct sb *b, size_t from)
{
    size_t n = b->nsamples - from;
    int64_t *v = b->samples + from;
    if (n == 0) {
        printf("\"p50_ms\":null,\"p99_ms\":null,\"p999_ms\":null,\"max_ms\":null");
        return;
    }
    qsort(v, n, sizeof(*v), sb_cmp_i64);
    static const double q[] = {0.50, 0.99, 0.999};
    static const char *const qn[] = {"p50_ms", "p99_ms", "p999_ms"};
    for (int i = 0; i < 3; i++) {
        size_t k = (size_t)(q[i] * (double)n + 0.999999);
        k = k == 0 ? 0 : k - 1;
        printf("\"%s\":%.3f,", qn[i], (double)v[k] / 1e6);
    }
    printf("\"max_ms\":%.3f", (double)v[n - 1] / 1e6);
}

static void sb_create_sessions(struct sb *b)
{
    int64_t t0 = sb_mono_ns();
    while (b->create_done + b->create_failed < b->streams) {
        for (unsigned k = 0; k < b->nreq; k++)
            if (sb_req_idle(&b->reqv[k]))
                sb_create_next(b, &b->reqv[k]);
        if (sb_since_s(t0) > b->timeout_s)
            sb_die(SB_EXIT_SETUP, "creating the sessions took over %.0f s (%u of %u done)",
                   b->timeout_s, b->create_done, b->streams);
        sb_poll(b, 100);
    }
    if (b->create_failed)
        sb_die(SB_EXIT_SETUP, "%u of %u session creates failed", b->create_failed, b->streams);
}

/* Opens every subscriber and waits until each has its head and its first ping, or failed. */
static double sb_subs_open(struct sb *b)
{
    int64_t t0 = sb_mono_ns();
    sb_subs_fill(b);
    while (b->live + b->failed + b->ended_early < b->nsub && sb_since_s(t0) < b->timeout_s) {
        sb_poll(b, 100);
        sb_subs_fill(b);
    }
    return sb_since_s(t0);
}

static unsigned sb_subs_open_count(const struct sb *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < b->nsub; i++)
        n += b->subv[i].fd >= 0 && b->subv[i].st == SB_BODY;
    return n;
}

static void sb_subs_close(struct sb *b)
{
    for (unsigned i = 0; i < b->nsub; i++)
        sb_conn_close(&b->subv[i]);
}

static void sb_latency(struct sb *b)
{
    double connect_s = sb_subs_open(b);
    uint64_t total = (uint64_t)(b->rate * b->seconds + 0.5), scheduled = 0;
    int64_t t0 = sb_mono_ns();
    double limit = b->seconds + b->timeout_s;
    while ((scheduled < total || b->append_pending > 0 ||
            b->appends_ok + b->appends_failed < b->appends_sent) &&
           sb_since_s(t0) < limit) {
        int64_t now = sb_mono_ns();
        /* a fixed schedule: append k is due at t0 + k/rate; a late one goes when a
         * connection frees */
        uint64_t due = (uint64_t)((double)(now - t0) / 1e9 * b->rate) + 1;
        if (due > total)
            due = total;
        if (due > scheduled) {
            b->append_pending += due - scheduled;
            scheduled = due;
        }
        sb_appends_pump(b);
        int wait_ms = 100;
        if (scheduled < total) {
            int64_t next = t0 + (int64_t)((double)scheduled / b->rate * 1e9);
            int64_t d = next - sb_mono_ns();
            wait_ms = d <= 0 ? 0 : (int)((d + 999999) / 1000000);
        }
        sb_poll(b, wait_ms);
    }
    double append_s = sb_since_s(t0);
    uint64_t expected = 0;
    for (unsigned s = 0; s < b->streams; s++)
        expected += b->acked[s] * b->subs;
    /* what is still on its way, for at most 5 s */
    int64_t t1 = sb_mono_ns();
    while (b->received < expected && sb_since_s(t1) < 5)
        sb_poll(b, 50);
    printf("{\"case\":\"%s\",\"streams\":%u,\"subscribers\":%u,\"rate\":%.0f,\"seconds\":%.2f,"
           "\"size\":%u,\"connect_s\":%.2f,\"subscribers_failed\":%u,\"subscribers_ended\":%u,"
           "\"appends\":%" PRIu64 ",\"append_errors\":%" PRIu64 ",\"deliveries_expected\":%" PRIu64
           ",\"deliveries_received\":%" PRIu64 ",\"earlier_records_skipped\":%" PRIu64 ",",
           b->name, b->streams, b->nsub, b->rate, append_s, b->size, connect_s, b->failed, b->ended,
           b->appends_ok, b->appends_failed, expected, b->received, b->stale);
    sb_print_percentiles(b, 0);
    printf("}\n");
    sb_subs_close(b);
}

static void sb_hold(struct sb *b)
{
    int fl = fcntl(STDIN_FILENO, F_GETFL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sb_stdin_tag};
    if (fl < 0 || fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK) != 0 ||
        epoll_ctl(b->ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) != 0)
        sb_die(SB_EXIT_SETUP, "cannot watch stdin: %s", strerror(errno));
    double connect_s = sb_subs_open(b);
    printf("{\"phase\":\"connected\",\"subscribers\":%u,\"headers\":%u,\"live\":%u,\"failed\":%u,"
           "\"ended\":%u,\"seconds\":%.2f}\n",
           b->nsub, b->headed, b->live, b->failed, b->ended, connect_s);
    if (fflush(stdout) != 0)
        sb_die(SB_EXIT_SETUP, "stdout: %s", strerror(errno));
    uint64_t round = 0;
    for (;;) {
        bool have = false;
        while (!(have = sb_next_cmd(b)) && !b->stdin_eof)
            sb_poll(b, 1000);
        if (!have || strcmp(b->cmd, "close") == 0)
            break;
        if (strcmp(b->cmd, "append") != 0) {
            fprintf(stderr, "sse_bench: unknown command '%s' (append, close)\n", b->cmd);
            continue;
        }
        /* one record to every stream; done when every open subscriber has had it */
        round++;
        size_t from = b->nsamples;
        uint64_t ok0 = b->appends_ok, failed0 = b->appends_failed;
        unsigned reached = 0, open = 0;
        int64_t t0 = sb_mono_ns();
        b->append_pending += b->streams;
        for (;;) {
            sb_appends_pump(b);
            open = reached = 0;
            for (unsigned i = 0; i < b->nsub; i++) {
                const struct sb_conn *c = &b->subv[i];
                if (c->fd >= 0 && c->st == SB_BODY) {
                    open++;
                    reached += c->records >= round;
                }
            }
            if ((reached == open && b->append_pending == 0 &&
                 b->appends_ok + b->appends_failed == b->appends_sent) ||
                sb_since_s(t0) > b->timeout_s)
                break;
            sb_poll(b, 20);
        }
        printf("{\"phase\":\"delivered\",\"round\":%" PRIu64 ",\"open\":%u,\"reached\":%u,"
               "\"appends\":%" PRIu64 ",\"append_errors\":%" PRIu64 ",\"seconds\":%.2f,",
               round, open, reached, b->appends_ok - ok0, b->appends_failed - failed0,
               sb_since_s(t0));
        sb_print_percentiles(b, from);
        printf("}\n");
        if (fflush(stdout) != 0)
            sb_die(SB_EXIT_SETUP, "stdout: %s", strerror(errno));
    }
    unsigned open = sb_subs_open_count(b);
    sb_subs_close(b);
    printf("{\"phase\":\"closed\",\"open_until_close\":%u,\"ended\":%u,\"failed\":%u}\n", open,
           b->ended, b->failed);
}

static void sb_churn(struct sb *b)
{
    int64_t t0 = sb_mono_ns(), progress = t0;
    uint64_t seen = 0;
    while (b->churn_done < b->cycles) {
        for (unsigned i = 0; i < b->nsub; i++)
            if (b->subv[i].fd < 0)
                sb_churn_next(b, &b->subv[i]);
        sb_poll(b, 100);
        if (b->churn_done != seen) {
            seen = b->churn_done;
            progress = sb_mono_ns();
        } else if (sb_since_s(progress) > b->timeout_s) {
            fprintf(stderr, "sse_bench: no cycle finished for %.0f s; giving up\n", b->timeout_s);
            break;
        }
    }
    double secs = sb_since_s(t0);
    sb_subs_close(b);
    printf("{\"case\":\"%s\",\"cycles\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"non_200\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"aborted_early\":%" PRIu64
           ",\"parallel\":%u,\"seconds\":%.2f,\"cycles_per_s\":%.0f}\n",
           b->name, b->churn_done, b->churn_ok, b->churn_non200, b->churn_err, b->churn_aborted,
           b->nsub, secs, secs > 0 ? (double)b->churn_done / secs : 0.0);
}

/* ---- setup ---- */

static void sb_usage(void)
{
    fputs("usage: sse_bench latency|hold|churn --url http://IP:PORT --key KEY --prefix P\n"
          "         [--server tether|nchan]  (nchan: no --key, no --create)\n"
          "         [--create] [--streams S] [--subs N] [--io in|out] [--connecting N]\n"
          "         [--rate R] [--seconds T] [--size B] [--appenders K]     (latency)\n"
          "         [--cycles C] [--parallel P] [--abort-every A]           (churn)\n"
          "         [--timeout S] [--name CASE]\n",
          stderr);
    exit(SB_EXIT_USAGE);
}

static double sb_num(const char *opt, const char *v, double min, double max)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < min || d > max) {
        fprintf(stderr, "sse_bench: %s wants a number in [%g, %g], not '%s'\n", opt, min, max, v);
        sb_usage();
    }
    return d;
}

static void sb_parse_url(struct sb *b, const char *url)
{
    const char *p = url, *colon;
    char ip[32], *end;
    if (strncmp(p, "http://", 7) != 0 || !(colon = strchr(p + 7, ':')) ||
        (size_t)(colon - p - 7) >= sizeof(ip))
        sb_die(SB_EXIT_USAGE, "--url wants http://IPv4:PORT, not '%s'", url);
    memcpy(ip, p + 7, (size_t)(colon - p - 7));
    ip[colon - p - 7] = '\0';
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || port == 0 || port > 65535 || (*end && strcmp(end, "/") != 0))
        sb_die(SB_EXIT_USAGE, "--url wants http://IPv4:PORT, not '%s'", url);
    b->addr.sin_family = AF_INET;
    b->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &b->addr.sin_addr) != 1)
        sb_die(SB_EXIT_USAGE, "--url wants an IPv4 address, not '%s'", ip);
    snprintf(b->host, sizeof(b->host), "%s:%lu", ip, port);
}

/* Each subscriber holds a socket: the soft limit goes up to the hard one, as the gateway's. */
static void sb_raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        sb_die(SB_EXIT_SETUP, "getrlimit: %s", strerror(errno));
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            sb_die(SB_EXIT_SETUP, "setrlimit: %s", strerror(errno));
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need)
        sb_die(SB_EXIT_SETUP, "needs %u descriptors; the hard limit is %llu", need,
               (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    struct sb b = {.io = "out",
                   .streams = 1,
                   .subs = 1,
                   .appenders = 4,
                   .connecting_max = 200,
                   .parallel = 64,
                   .rate = 100,
                   .seconds = 5,
                   .timeout_s = 60,
                   .cycles = 1000};
    const char *url = NULL;
    if (argc < 2)
        sb_usage();
    b.mode = argv[1];
    b.started_real = sb_real_ns();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--create") == 0) {
            b.create = true;
            continue;
        }
        if (i + 1 >= argc)
            sb_usage();
        const char *v = argv[++i];
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--key") == 0)
            b.key = v;
        else if (strcmp(a, "--prefix") == 0)
            b.prefix = v;
        else if (strcmp(a, "--name") == 0)
            b.name = v;
        else if (strcmp(a, "--io") == 0)
            b.io = v;
        else if (strcmp(a, "--server") == 0 && strcmp(v, "tether") == 0)
            b.nchan = false;
        else if (strcmp(a, "--server") == 0 && strcmp(v, "nchan") == 0)
            b.nchan = true;
        else if (strcmp(a, "--streams") == 0)
            b.streams = (unsigned)sb_num(a, v, 1, 100000);
        else if (strcmp(a, "--subs") == 0)
            b.subs = (unsigned)sb_num(a, v, 0, 100000);
        else if (strcmp(a, "--connecting") == 0)
            b.connecting_max = (unsigned)sb_num(a, v, 1, 100000);
        else if (strcmp(a, "--rate") == 0)
            b.rate = sb_num(a, v, 0.1, 1e6);
        else if (strcmp(a, "--seconds") == 0)
            b.seconds = sb_num(a, v, 0.1, 86400);
        else if (strcmp(a, "--size") == 0)
            b.size = (unsigned)sb_num(a, v, 0, SB_SIZE_MAX);
        else if (strcmp(a, "--appenders") == 0)
            b.appenders = (unsigned)sb_num(a, v, 1, 1024);
        else if (strcmp(a, "--cycles") == 0)
            b.cycles = (uint64_t)sb_num(a, v, 1, 1e12);
        else if (strcmp(a, "--parallel") == 0)
            b.parallel = (unsigned)sb_num(a, v, 1, 100000);
        else if (strcmp(a, "--abort-every") == 0)
            b.abort_every = (unsigned)sb_num(a, v, 0, 1e9);
        else if (strcmp(a, "--timeout") == 0)
            b.timeout_s = sb_num(a, v, 1, 86400);
        else
            sb_usage();
    }
    bool latency = strcmp(b.mode, "latency") == 0, hold = strcmp(b.mode, "hold") == 0,
         churn = strcmp(b.mode, "churn") == 0;
    if (b.nchan && !b.key)
        b.key = ""; /* nchan's locations here take no credentials: no Authorization header */
    if (!(latency || hold || churn) || !url || !b.key || !b.prefix ||
        (strcmp(b.io, "in") != 0 && strcmp(b.io, "out") != 0) || (b.nchan && b.create))
        sb_usage();
    if (!b.name)
        b.name = b.mode;
    sb_parse_url(&b, url);
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        sb_die(SB_EXIT_SETUP, "cannot ignore SIGPIPE");

    if ((uint64_t)b.streams * b.subs > 1000000)
        sb_die(SB_EXIT_USAGE, "--streams x --subs is over 1,000,000 subscribers");
    b.nsub = churn ? b.parallel : b.streams * b.subs;
    sb_raise_nofile(b.nsub + b.appenders + 32);
    if ((b.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        sb_die(SB_EXIT_SETUP, "epoll_create1: %s", strerror(errno));
    b.subv = sb_xcalloc(b.nsub, sizeof(*b.subv));
    for (unsigned i = 0; i < b.nsub; i++) {
        b.subv[i].fd = -1;
        b.subv[i].kind = churn ? SB_CHURN : SB_SUB;
        b.subv[i].stream = churn ? 0 : i % b.streams; /* interleaved: streams fill together */
    }
    b.nreq = b.appenders;
    b.reqv = sb_xcalloc(b.nreq, sizeof(*b.reqv));
    for (unsigned i = 0; i < b.nreq; i++) {
        b.reqv[i].fd = -1;
        b.reqv[i].kind = SB_REQ;
    }
    b.acked = sb_xcalloc(b.streams, sizeof(*b.acked));

    if (b.create)
        sb_create_sessions(&b);
    if (latency)
        sb_latency(&b);
    else if (hold)
        sb_hold(&b);
    else
        sb_churn(&b);

    for (unsigned i = 0; i < b.nreq; i++)
        sb_conn_close(&b.reqv[i]);
    sb_subs_close(&b);
    free(b.subv);
    free(b.reqv);
    free(b.acked);
    free(b.samples);
    if (close(b.ep) != 0)
        sb_die(SB_EXIT_SETUP, "close: %s", strerror(errno));
    if (fflush(stdout) != 0)
        return SB_EXIT_SETUP;
    return 0;
}
