/*
 * edge.c - the framing guard, allowed hosts and the listen base URL (see
 * edge.h). The framing parser follows what picohttpparser (inside h2o
 * 2.2.5) accepts closely enough that the two agree on where every request
 * and body ends; where they would not, the guard refuses first.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "edge.h"
#include "hex.h"
#include "log.h"
#include "mem.h"

/* ---- the framing parser ---- */

enum {
    GW_F_START,        /* between requests (blank lines before a request are skipped) */
    GW_F_REQLINE,      /* the request line */
    GW_F_LINE,         /* the start of a header line, or the blank line ending the head */
    GW_F_NAME,         /* a header name */
    GW_F_VALUE,        /* a Content-Length or Transfer-Encoding value */
    GW_F_SKIPLINE,     /* any other header's value */
    GW_F_CL_BODY,      /* a Content-Length body */
    GW_F_SIZE,         /* a chunk size */
    GW_F_EXT,          /* the rest of a chunk size line (extensions) */
    GW_F_DATA,         /* chunk data */
    GW_F_DATA_CRLF,    /* the CRLF after chunk data */
    GW_F_TRAILER,      /* the start of a trailer line, or the blank line ending the body */
    GW_F_TRAILER_LINE, /* a trailer line */
};

enum { GW_H_OTHER, GW_H_CL, GW_H_TE };

#define GW_M_CL 1u
#define GW_M_TE 2u

static const char gw_cl_name[] = "content-length";
static const char gw_te_name[] = "transfer-encoding";

void gw_frame_init(struct gw_frame *f, size_t max_body)
{
    memset(f, 0, sizeof(*f));
    f->_state = GW_F_START;
    f->_max = max_body;
}

static bool gw_ows(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The blank line ending a head: decides how the body is framed. */
static int gw_frame_head_end(struct gw_frame *f, const char **why)
{
    if (f->_ncl > 1) {
        *why = "Content-Length given more than once";
        return GW_FRAME_BAD;
    }
    if (f->_nte > 1) {
        *why = "Transfer-Encoding given more than once";
        return GW_FRAME_BAD;
    }
    if (f->_ncl && f->_nte) {
        *why = "Content-Length given with Transfer-Encoding";
        return GW_FRAME_BAD;
    }
    if (f->_nte) {
        if (f->_te_bad) {
            *why = "Transfer-Encoding other than chunked";
            return GW_FRAME_BAD;
        }
        f->_state = GW_F_SIZE;
        f->_left = f->_total = 0;
        f->_hex = 0;
        return GW_FRAME_OK;
    }
    if (f->_ncl && f->_cl > f->_max) {
        *why = "Request body too large";
        return GW_FRAME_TOOBIG;
    }
    f->_left = f->_ncl ? f->_cl : 0;
    f->_state = f->_left ? GW_F_CL_BODY : GW_F_START;
    return GW_FRAME_OK;
}

/* A Content-Length or Transfer-Encoding value, one character at a time; '\n' ends it. */
static int gw_frame_value(struct gw_frame *f, char c, const char **why)
{
    if (c == '\n') {
        if (f->_hdr == GW_H_CL && f->_vlen == 0) {
            *why = "Content-Length is empty";
            return GW_FRAME_BAD;
        }
        if (f->_hdr == GW_H_TE && f->_vlen != sizeof("chunked") - 1)
            f->_te_bad = true;
        f->_state = GW_F_LINE;
        return GW_FRAME_OK;
    }
    if (gw_ows(c)) {
        if (f->_vstate == 1)
            f->_vstate = 2; /* the token ended: only white space may follow */
        return GW_FRAME_OK;
    }
    if (f->_vstate == 2) {
        /* "5, 5", "5 6", "chunked, gzip": a list is not one value */
        if (f->_hdr == GW_H_TE) {
            f->_te_bad = true;
            return GW_FRAME_OK;
        }
        *why = "Content-Length is not one number";
        return GW_FRAME_BAD;
    }
    f->_vstate = 1;
    if (f->_hdr == GW_H_CL) {
        if (c < '0' || c > '9') {
            *why = "Content-Length is not a number";
            return GW_FRAME_BAD;
        }
        if (f->_vlen >= 18) { /* 10^18 bytes: nobody sends that; and no overflow below */
            *why = "Content-Length is too long";
            return GW_FRAME_BAD;
        }
        f->_cl = f->_cl * 10 + (uint64_t)(c - '0');
        f->_vlen++;
        return GW_FRAME_OK;
    }
    if (f->_vlen >= sizeof("chunked") - 1 || tolower((unsigned char)c) != "chunked"[f->_vlen])
        f->_te_bad = true;
    if (f->_vlen < UINT8_MAX)
        f->_vlen++;
    return GW_FRAME_OK;
}

int gw_frame_feed(struct gw_frame *f, const char *p, size_t n, size_t *start, const char **why)
{
    size_t req_start = 0; /* where the request being read began (0: before this call) */
    int v = GW_FRAME_OK;

    for (size_t i = 0; i < n && v == GW_FRAME_OK; i++) {
        char c = p[i];
        switch (f->_state) {
        case GW_F_START:
            if (c == '\r' || c == '\n')
                break;
            f->_ncl = f->_nte = 0;
            f->_cl = 0;
            f->_te_bad = false;
            f->_state = GW_F_REQLINE;
            break;
        case GW_F_REQLINE:
            if (c == '\n')
                f->_state = GW_F_LINE;
            break;
        case GW_F_LINE:
            if (c == '\r')
                break;
            if (c == '\n') {
                v = gw_frame_head_end(f, why);
                if (v == GW_FRAME_OK && f->_state == GW_F_START)
                    req_start = i + 1;
                break;
            }
            if (c == ' ' || c == '\t') {
                /* obs-fold: h2o would keep it as a header of its own, a proxy might append it */
                *why = "Folded header line";
                v = GW_FRAME_BAD;
                break;
            }
            f->_match = GW_M_CL | GW_M_TE;
            f->_nlen = 0;
            f->_state = GW_F_NAME;
            /* c is the name's first character */
            /* fall through */
        case GW_F_NAME:
            if (c == ':') {
                if ((f->_match & GW_M_CL) && f->_nlen == sizeof(gw_cl_name) - 1) {
                    f->_hdr = GW_H_CL;
                    if (f->_ncl < UINT8_MAX)
                        f->_ncl++;
                    f->_cl = 0;
                } else if ((f->_match & GW_M_TE) && f->_nlen == sizeof(gw_te_name) - 1) {
                    f->_hdr = GW_H_TE;
                    if (f->_nte < UINT8_MAX)
                        f->_nte++;
                } else {
                    f->_hdr = GW_H_OTHER;
                }
                f->_vlen = f->_vstate = 0;
                f->_state = f->_hdr == GW_H_OTHER ? GW_F_SKIPLINE : GW_F_VALUE;
                break;
            }
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                *why = c == '\n' || c == '\r' ? "Header line without a colon"
                                              : "White space before a header's colon";
                v = GW_FRAME_BAD;
                break;
            }
            {
                char lc = (char)tolower((unsigned char)c);
                if (f->_nlen >= sizeof(gw_cl_name) - 1 || gw_cl_name[f->_nlen] != lc)
                    f->_match &= ~GW_M_CL;
                if (f->_nlen >= sizeof(gw_te_name) - 1 || gw_te_name[f->_nlen] != lc)
                    f->_match &= ~GW_M_TE;
                if (f->_nlen < UINT8_MAX)
                    f->_nlen++;
            }
            break;
        case GW_F_VALUE:
            v = gw_frame_value(f, c, why);
            break;
        case GW_F_SKIPLINE:
            if (c == '\n')
                f->_state = GW_F_LINE;
            break;
        case GW_F_CL_BODY: {
            size_t take = n - i < f->_left ? n - i : (size_t)f->_left;
            f->_left -= take;
            i += take - 1;
            if (f->_left == 0) {
                f->_state = GW_F_START;
                req_start = i + 1;
            }
            break;
        }
        case GW_F_SIZE: {
            int h = hex_value(c);
            if (h >= 0) {
                /* picohttpparser takes 16 digits and then waits for that many bytes */
                if (f->_hex == 16) {
                    *why = "Chunk size is too long";
                    v = GW_FRAME_BAD;
                    break;
                }
                f->_left = f->_left * 16 + (uint64_t)h; /* <= 16 * max: no overflow */
                f->_hex++;
                if (f->_left > f->_max) {
                    *why = "Chunk size exceeds the largest body accepted";
                    v = GW_FRAME_BAD;
                }
                break;
            }
            if (f->_hex == 0) {
                *why = "Chunk size is missing";
                v = GW_FRAME_BAD;
                break;
            }
            f->_total += f->_left;
            if (f->_total > f->_max) {
                *why = "Request body too large";
                v = GW_FRAME_TOOBIG;
                break;
            }
            f->_state = GW_F_EXT;
        }
            /* c is the first character after the digits */
            /* fall through */
        case GW_F_EXT:
            if (c == '\n') {
                f->_hex = 0;
                f->_state = f->_left ? GW_F_DATA : GW_F_TRAILER;
            }
            break;
        case GW_F_DATA: {
            size_t take = n - i < f->_left ? n - i : (size_t)f->_left;
            f->_left -= take;
            i += take - 1;
            if (f->_left == 0)
                f->_state = GW_F_DATA_CRLF;
            break;
        }
        case GW_F_DATA_CRLF:
            if (c == '\r')
                break;
            if (c != '\n') {
                *why = "Chunk data not followed by CRLF";
                v = GW_FRAME_BAD;
                break;
            }
            f->_state = GW_F_SIZE;
            f->_left = 0;
            f->_hex = 0;
            break;
        case GW_F_TRAILER:
            if (c == '\r')
                break;
            if (c == '\n') {
                f->_state = GW_F_START;
                req_start = i + 1;
                break;
            }
            f->_state = GW_F_TRAILER_LINE;
            break;
        case GW_F_TRAILER_LINE:
            if (c == '\n')
                f->_state = GW_F_TRAILER;
            break;
        }
    }
    *start = req_start;
    return v;
}

/* ---- the socket guard ---- */

struct gw_guard {
    struct gw_frame frame;
    h2o_socket_cb inner; /* h2o's read callback */
    int status;          /* 0, or the status the connection is refused with */
    const char *why;
    bool answered; /* the refusal is written; the connection only waits to close */
};

static void (*gw_real_read_start)(h2o_socket_t *, h2o_socket_cb);

static void gw_guard_free(void *p)
{
    free(p);
}

static void gw_real_resolve(void)
{
    if (gw_real_read_start)
        return;
    /* POSIX's way to get a function from dlsym (its void * does not convert in C) */
    *(void **)&gw_real_read_start = dlsym(RTLD_NEXT, "h2o_socket_read_start");
    if (!gw_real_read_start) {
        LOG_ERROR("gw.edge_unavailable", "cannot find h2o's h2o_socket_read_start: %s", dlerror());
        abort(); /* cannot happen while the gateway links libh2o */
    }
}

/*
 * Writes the refusal straight to the socket and shuts it down both ways: h2o
 * reads end-of-file next and closes the connection. h2o has nothing being
 * written here: it only reads a connection between responses.
 */
static void gw_guard_answer(h2o_socket_t *sock, struct gw_guard *g)
{
    char buf[512];
    int fd = h2o_socket_get_fd(sock);
    const char *reason = g->status == GW_FRAME_TOOBIG ? "Payload Too Large" : "Bad Request";
    char body[160];
    int bn = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", g->why);
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                     g->status, reason, bn, body);
    ssize_t w;
    LOG_INFO("gw.framing_refused", "refused a request with %d: %s", g->status, g->why);
    g->answered = true;
    if (n > 0 && (size_t)n < sizeof(buf))
        while ((w = write(fd, buf, (size_t)n)) < 0 && errno == EINTR)
            ; /* a short answer on an idle socket: written whole, or the client is gone */
    (void)shutdown(fd, SHUT_RDWR);
}

static void gw_guard_on_read(h2o_socket_t *sock, const char *err)
{
    struct gw_guard *g = sock->on_close.data;
    h2o_socket_cb inner = g->inner;
    /* the evloop sets bytes_read to what this read appended to input (not a running total):
     * the new bytes are the last ones, untouched by h2o, whatever it did to those before */
    size_t fresh = sock->bytes_read <= sock->input->size ? sock->bytes_read : sock->input->size;

    if (err != NULL) {
        inner(sock, err);
        return;
    }
    if (g->status) { /* refused already: nothing more reaches h2o */
        sock->input->size -= fresh;
        if (!g->answered)
            gw_guard_answer(sock, g);
        inner(sock, h2o_socket_error_closed);
        return;
    }
    if (fresh > 0) {
        size_t start = 0;
        const char *why = NULL;
        int v = gw_frame_feed(&g->frame, sock->input->bytes + sock->input->size - fresh, fresh,
                              &start, &why);
        if (v != GW_FRAME_OK) {
            g->status = v;
            g->why = why;
            sock->input->size -= fresh - start; /* h2o never sees the refused request */
            if (start > 0) {
                /* requests before it came in this read: h2o answers them, and the refusal
                 * goes out when it next reads with nothing left (h2o_socket_read_start) */
                inner(sock, NULL);
                return;
            }
            gw_guard_answer(sock, g);
            inner(sock, h2o_socket_error_closed);
            return;
        }
    }
    inner(sock, NULL);
}

/*
 * h2o's own h2o_socket_read_start, called also by libh2o itself (through its
 * PLT), which installs h2o's read callback after every response: on a guarded
 * socket the guard's callback goes in front of it again.
 */
void h2o_socket_read_start(h2o_socket_t *sock, h2o_socket_cb cb)
{
    gw_real_resolve();
    gw_real_read_start(sock, cb);
    if (sock->on_close.cb != gw_guard_free || cb == gw_guard_on_read)
        return;
    struct gw_guard *g = sock->on_close.data;
    g->inner = cb;
    sock->_cb.read = gw_guard_on_read;
    /* h2o has answered everything before the refused request: now refuse it */
    if (g->status && !g->answered && sock->input->size == 0)
        gw_guard_answer(sock, g);
}

void gw_edge_guard(h2o_socket_t *sock, size_t max_body)
{
    struct gw_guard *g = xcalloc(1, sizeof(*g));
    gw_real_resolve();
    gw_frame_init(&g->frame, max_body);
    sock->on_close.cb = gw_guard_free;
    sock->on_close.data = g;
    if (sock->input->size > 0) {
        /* bytes read before the guard (s2s.h looked for HTTP/2's preface) are the first it sees */
        size_t start = 0;
        const char *why = NULL;
        int v = gw_frame_feed(&g->frame, sock->input->bytes, sock->input->size, &start, &why);
        if (v != GW_FRAME_OK) {
            g->status = v;
            g->why = why;
            sock->input->size = start; /* h2o answers what came before; the refusal follows */
            if (start == 0)
                gw_guard_answer(sock, g);
        }
    }
}

/* ---- hosts ---- */

/* Splits an authority into host and port (0 when none); false when malformed. */
static bool gw_authority_split(const char *a, size_t len, size_t *hlen, unsigned *port)
{
    size_t h;
    if (len > 0 && a[0] == '[') {
        const char *e = memchr(a, ']', len);
        if (!e)
            return false;
        h = (size_t)(e - a) + 1;
    } else {
        const char *e = memchr(a, ':', len);
        h = e ? (size_t)(e - a) : len;
    }
    *hlen = h;
    *port = 0;
    if (h == len)
        return h > 0;
    if (a[h] != ':' || h + 1 == len || len - h - 1 > 5)
        return false;
    unsigned long v = 0;
    for (size_t i = h + 1; i < len; i++) {
        if (a[i] < '0' || a[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(a[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (unsigned)v;
    return h > 0;
}

static bool gw_host_char(char c, bool bracketed)
{
    if (isalnum((unsigned char)c) || c == '-' || c == '.')
        return true;
    return bracketed && (c == ':' || c == '[' || c == ']');
}

err_t gw_hosts_parse(const char *list, struct gw_hosts *out, char *why, size_t cap)
{
    memset(out, 0, sizeof(*out));
    if (!list)
        return OK;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *s = p;
        while (len && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        size_t hl;
        unsigned port;
        if (len == 0) {
            if (!e && p == list && out->n == 0 && *s == '\0')
                return OK; /* only white space: no list */
            snprintf(why, cap, "an entry is empty");
            return ERR_INVAL;
        }
        if (!gw_authority_split(s, len, &hl, &port) || hl > GW_HOST_NAME_MAX) {
            snprintf(why, cap, "\"%.*s\" is not host or host:port", (int)len, s);
            return ERR_INVAL;
        }
        for (size_t i = 0; i < hl; i++)
            if (!gw_host_char(s[i], s[0] == '[')) {
                snprintf(why, cap, "\"%.*s\" is not host or host:port", (int)len, s);
                return ERR_INVAL;
            }
        if (out->n == GW_HOSTS_MAX) {
            snprintf(why, cap, "more than %d entries", GW_HOSTS_MAX);
            return ERR_INVAL;
        }
        for (size_t i = 0; i < hl; i++)
            out->h[out->n].name[i] = (char)tolower((unsigned char)s[i]);
        out->h[out->n].name[hl] = '\0';
        out->h[out->n].port = port;
        out->n++;
        if (!e)
            break;
        p = e + 1;
    }
    return OK;
}

bool gw_hosts_match(const struct gw_hosts *hosts, const char *authority, size_t len)
{
    size_t hl;
    unsigned port;
    if (!authority || !gw_authority_split(authority, len, &hl, &port))
        return false;
    for (unsigned i = 0; i < hosts->n; i++) {
        if (strlen(hosts->h[i].name) != hl || strncasecmp(hosts->h[i].name, authority, hl) != 0)
            continue;
        if (hosts->h[i].port == 0 || hosts->h[i].port == port)
            return true;
    }
    return false;
}

void gw_listen_base(const char *host, long long port, bool tls, char *out, size_t cap)
{
    /* 0.0.0.0 is where the gateway listens, not an address anyone can reach it at */
    if (!host || !*host || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    snprintf(out, cap, "%s://%s:%lld", tls ? "https" : "http", host, port);
}
