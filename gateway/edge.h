/*
 * edge.h - the HTTP edge before any route runs: request framing on the raw
 * bytes of each connection, the Host values the gateway answers for, and
 * the base URL it hands out.
 *
 * Framing. h2o 2.2.5 takes the first of two Content-Length headers, lets
 * Transfer-Encoding win over Content-Length silently, and waits for all of
 * a chunk whose size line says ffffffffffffffff; it hands the gateway a
 * request only once its whole body is in, with both headers already
 * dropped. So a proxy in front could frame a request differently from
 * h2o (request smuggling), and an absurd chunk size holds a connection
 * until TETHER_GW_REQ_TIMEOUT. The framing guard reads every byte of a
 * connection before h2o does, with its own small HTTP/1 framing parser
 * (struct gw_frame, about 64 bytes per connection), and refuses, before
 * h2o parses it: a repeated Content-Length (even with equal values), a
 * repeated Transfer-Encoding, both together (RFC 9112 allows a server to
 * refuse that; we do), a Transfer-Encoding other than "chunked", a header
 * line folded onto the previous one or with white space before its colon,
 * and a chunk whose size alone exceeds TETHER_GW_MAX_BODY: 400; chunks
 * adding up to more than TETHER_GW_MAX_BODY: 413 as soon as the size line
 * that crosses it arrives. The answer is written on the socket and the
 * connection closed; requests pipelined before the refused one are
 * answered first.
 *
 * h2o 2.2.5 has no hook before its parser: the guard wraps the socket's
 * read callback, and because h2o installs its callback again with
 * h2o_socket_read_start() after every response, edge.c defines that
 * function (the executable's definition wins over the library's, whose
 * own calls go through the PLT) and calls h2o's through dlsym(RTLD_NEXT).
 * h2o's own HTTP/2 (h2c upgrade, prior knowledge) is switched off in main.c:
 * a connection that opens with HTTP/2's preface is served by s2s.h and never
 * reaches h2o or the guard, and every other one stays HTTP/1, so the guard's
 * view holds. The bytes read while telling the two apart are fed to the
 * guard first (gw_edge_guard).
 *
 * Everything here runs on the gateway's loop thread.
 */
#ifndef TETHER_GW_EDGE_H
#define TETHER_GW_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "err.h"

/* ---- framing ---- */

/* One connection's framing state; fields are private to edge.c. */
struct gw_frame {
    uint8_t _state;
    uint8_t _hdr;       /* the header line being read: none, Content-Length, Transfer-Encoding */
    uint8_t _match;     /* which names the header name may still be (bits) */
    uint8_t _nlen;      /* characters of the name so far */
    uint8_t _ncl, _nte; /* Content-Length and Transfer-Encoding lines in this head */
    uint8_t _vlen;      /* characters of the value so far (Content-Length digits, TE "chunked") */
    uint8_t _vstate;    /* value: before, in, after the token */
    bool _te_bad;       /* the Transfer-Encoding value is not exactly "chunked" */
    uint8_t _hex;       /* hex digits of the chunk size so far */
    uint64_t _cl;       /* the Content-Length value */
    uint64_t _left;     /* bytes left in the Content-Length body or the current chunk */
    uint64_t _total;    /* chunk bytes declared so far in this body */
    uint64_t _max;      /* TETHER_GW_MAX_BODY */
};

/* Verdicts of gw_frame_feed: the HTTP status a refused request gets. */
enum {
    GW_FRAME_OK = 0,
    GW_FRAME_BAD = 400,    /* framing a proxy could read otherwise, or absurd */
    GW_FRAME_TOOBIG = 413, /* the body declares more than max_body */
};

/* Starts a connection: nothing read yet. */
void gw_frame_init(struct gw_frame *f, size_t max_body);

/*
 * Feeds the next n bytes of the connection. Returns GW_FRAME_OK, or the
 * status to refuse with; then *why says why (static text) and *start is
 * the offset in p where the refused request began (0 when it began in an
 * earlier call), and f must not be fed again.
 */
int gw_frame_feed(struct gw_frame *f, const char *p, size_t n, size_t *start, const char **why);

/*
 * Guards an accepted socket before h2o_accept(): from then on the guard
 * sees each read before h2o. Freed with the socket (it uses the socket's
 * on_close hook, which h2o's server side leaves alone).
 */
void gw_edge_guard(h2o_socket_t *sock, size_t max_body);

/* ---- hosts and the public base URL ---- */

#define GW_HOSTS_MAX 32
#define GW_HOST_NAME_MAX 255

struct gw_hosts {
    unsigned n;
    struct {
        char name[GW_HOST_NAME_MAX + 1]; /* lower case; "[::1]" for IPv6 */
        unsigned port;                   /* 0: any port */
    } h[GW_HOSTS_MAX];
};

/*
 * Parses TETHER_GW_ALLOWED_HOSTS: a comma list of host or host:port
 * (spaces around entries ignored; empty list: n = 0). ERR_INVAL with why
 * (cap bytes) for an empty entry, a bad character, a bad port or too many.
 */
err_t gw_hosts_parse(const char *list, struct gw_hosts *out, char *why, size_t cap);

/*
 * True when the Host value (authority) is in hosts: its host part equal
 * ignoring case, and its port equal when the entry names one (an entry
 * without a port takes any, or none).
 */
bool gw_hosts_match(const struct gw_hosts *hosts, const char *authority, size_t len);

/* "http://<host>:<port>" (https with tls) for the listen address, 0.0.0.0 read as 127.0.0.1. */
void gw_listen_base(const char *host, long long port, bool tls, char *out, size_t cap);

#endif
