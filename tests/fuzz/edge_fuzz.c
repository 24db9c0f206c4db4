/*
 * edge_fuzz.c - libFuzzer target for the HTTP edge (gateway/edge.c): the framing guard
 * (gw_frame_feed, the request framing on a connection's raw bytes) and the allowed hosts
 * (gw_hosts_parse, gw_hosts_match on the Host header).
 *
 * Feeds: byte 0 picks the mode and TETHER_GW_MAX_BODY (64 bytes or 1 MiB); framing mode: byte
 * 1 seeds how the rest, the connection's bytes, is cut into reads; hosts mode: the rest is
 * "list\nauthority".
 * Checks, framing: the verdict is one of the three, with a reason, and it does not depend on
 * how the bytes are cut into reads (same verdict, reason and refused offset); and against
 * picohttpparser - the parser inside h2o 2.2.5, linked from libh2o with h2o's own choice of
 * Content-Length / Transfer-Encoding - every request boundary h2o would see before the
 * refused request is one where the guard stands between requests too, and the refused
 * request starts on such a boundary: the two never disagree on where a request ends (what
 * edge.h promises; request smuggling otherwise). Hosts: a parsed list holds only lower-case
 * names of allowed characters; every entry, written as an authority, matches; a match has an
 * entry with that host (ignoring case) and port.
 */
#include "../../gateway/edge.c"

#include <strings.h>

#include "fuzz.h"

/* ---- picohttpparser, as libh2o-evloop exports it (h2o 2.2.5 has no header for it) ---- */

struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct phr_chunked_decoder { /* the 2.2.5-era layout: checked against its code (_state at 10) */
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

#define EDGE_H2O_MAX_HEADERS 100 /* H2O_MAX_HEADERS */
#define EDGE_H2O_MAX_REQLEN 8192 /* H2O_MAX_REQLEN: a longer head is refused by h2o itself */
#define EDGE_MAX_REQS 64

/*
 * Where the requests h2o would read from s end, in order, as long as it would keep reading:
 * picohttpparser's head, then the body framed as h2o's http1.c frames it (the first
 * Content-Length unless a Transfer-Encoding comes, which must be chunked). Returns how many.
 */
static size_t h2o_boundaries(const char *s, size_t n, size_t max_body, size_t *ends)
{
    size_t pos = 0, k = 0;
    struct phr_header h[EDGE_H2O_MAX_HEADERS];
    while (pos < n && k < EDGE_MAX_REQS) {
        const char *method, *path;
        size_t mlen, plen, nh = EDGE_H2O_MAX_HEADERS;
        int minor;
        int r =
            phr_parse_request(s + pos, n - pos, &method, &mlen, &path, &plen, &minor, h, &nh, 0);
        if (r <= 0 || r > EDGE_H2O_MAX_REQLEN)
            break; /* incomplete, or h2o answers 400/413 and closes */
        ssize_t entity = -1;
        for (size_t i = 0; i < nh; i++) {
            if (!h[i].name)
                continue; /* a folded line: h2o keeps it apart */
            if (h[i].name_len == 14 && strncasecmp(h[i].name, "content-length", 14) == 0) {
                if (entity == -1)
                    entity = (ssize_t)i;
            } else if (h[i].name_len == 17 &&
                       strncasecmp(h[i].name, "transfer-encoding", 17) == 0) {
                entity = (ssize_t)i;
            }
        }
        size_t end = pos + (size_t)r;
        if (entity >= 0 && h[entity].name_len == 17) {
            if (h[entity].value_len != 7 || strncasecmp(h[entity].value, "chunked", 7) != 0)
                break; /* h2o: 400 unknown transfer-encoding */
            struct phr_chunked_decoder d = {0};
            d.consume_trailer = 1; /* as h2o's chunked reader */
            size_t left = n - end;
            char *copy = malloc(left ? left : 1);
            if (!copy)
                abort();
            memcpy(copy, s + end, left);
            size_t sz = left;
            ssize_t rest = phr_decode_chunked(&d, copy, &sz);
            free(copy);
            if (rest < 0)
                break; /* broken, or not all there */
            end = n - (size_t)rest;
        } else if (entity >= 0) {
            size_t cl = 0;
            if (h[entity].value_len == 0 || h[entity].value_len > 20)
                break; /* h2o_strtosize refuses: 400 */
            bool digits = true;
            for (size_t i = 0; i < h[entity].value_len; i++) {
                char c = h[entity].value[i];
                digits = digits && c >= '0' && c <= '9';
                cl = cl * 10 + (size_t)(c - '0');
            }
            if (!digits || cl > max_body || cl > n - end)
                break; /* 400, 413, or the body is not all there */
            end += cl;
        }
        ends[k++] = end;
        pos = end;
    }
    return k;
}

/* The guard fed s[0..n) in one read: its verdict, and where the refused request began. */
static int feed_whole(const char *s, size_t n, size_t max_body, size_t *refused_at,
                      const char **why, struct gw_frame *f)
{
    size_t start = 0;
    gw_frame_init(f, max_body);
    *why = NULL;
    int v = gw_frame_feed(f, s, n, &start, why);
    *refused_at = start;
    return v;
}

static void check_framing(const char *s, size_t n, size_t max_body, uint8_t seed)
{
    struct gw_frame f;
    size_t at;
    const char *why;
    int v = feed_whole(s, n, max_body, &at, &why, &f);
    FUZZ_CHECK(v == GW_FRAME_OK || v == GW_FRAME_BAD || v == GW_FRAME_TOOBIG);
    FUZZ_CHECK((v == GW_FRAME_OK) == (why == NULL));
    FUZZ_CHECK(at <= n);

    /* the same bytes in reads of 1-8 bytes (a small LCG picks them) */
    struct gw_frame g;
    gw_frame_init(&g, max_body);
    uint32_t x = seed * 2654435761u + 1;
    int cv = GW_FRAME_OK;
    const char *cwhy = NULL;
    size_t off = 0, cstart = 0;
    while (off < n && cv == GW_FRAME_OK) {
        x = x * 1103515245u + 12345u;
        size_t len = 1 + (x >> 16) % 8;
        if (len > n - off)
            len = n - off;
        cv = gw_frame_feed(&g, s + off, len, &cstart, &cwhy);
        if (cv != GW_FRAME_OK)
            break;
        off += len;
    }
    FUZZ_CHECK(cv == v);
    if (v != GW_FRAME_OK) {
        FUZZ_CHECK(strcmp(cwhy, why) == 0);
        /* start is relative to the read that refused, 0 when the request began before it */
        FUZZ_CHECK(cstart > 0 ? off + cstart == at : at <= off);
    }

    /* picohttpparser and h2o's framing: the same boundaries. One guard is fed from boundary
     * to boundary (reads of any size give the same result: checked above), so this stays
     * linear in the input */
    size_t ends[EDGE_MAX_REQS];
    size_t k = h2o_boundaries(s, n, max_body, ends);
    size_t limit = v == GW_FRAME_OK ? n : at, fed = 0;
    bool refused_on_boundary = at == 0;
    struct gw_frame p;
    gw_frame_init(&p, max_body);
    for (size_t i = 0; i < k; i++) {
        if (ends[i] == at)
            refused_on_boundary = true;
        if (ends[i] > limit)
            break;
        size_t pat;
        const char *pwhy;
        FUZZ_CHECK(gw_frame_feed(&p, s + fed, ends[i] - fed, &pat, &pwhy) == GW_FRAME_OK);
        fed = ends[i];
        FUZZ_CHECK(p._state == GW_F_START); /* between requests, where h2o is */
    }
    /* h2o read past where the guard refused: the refused request starts where h2o's does */
    if (v != GW_FRAME_OK && k > 0 && ends[k - 1] >= at)
        FUZZ_CHECK(refused_on_boundary);
}

static void check_hosts(const char *s, size_t n)
{
    struct fuzz_in in = {(const uint8_t *)s, n};
    char *list = fuzz_strdup(fuzz_until(&in, '\n'));
    struct fuzz_in auth = in;
    struct gw_hosts hosts;
    char why[128] = "";
    char a[GW_HOST_NAME_MAX + 16];

    err_t rc = gw_hosts_parse(list, &hosts, why, sizeof(why));
    free(list);
    if (rc != OK) {
        FUZZ_CHECK(rc == ERR_INVAL && why[0] != '\0');
        return;
    }
    FUZZ_CHECK(hosts.n <= GW_HOSTS_MAX);
    for (unsigned i = 0; i < hosts.n; i++) {
        const char *name = hosts.h[i].name;
        size_t len = strlen(name);
        FUZZ_CHECK(len > 0 && len <= GW_HOST_NAME_MAX);
        for (size_t j = 0; j < len; j++)
            FUZZ_CHECK(!(name[j] >= 'A' && name[j] <= 'Z') &&
                       gw_host_char(name[j], name[0] == '['));
        FUZZ_CHECK(hosts.h[i].port <= 65535);
        int w = hosts.h[i].port ? snprintf(a, sizeof(a), "%s:%u", name, hosts.h[i].port)
                                : snprintf(a, sizeof(a), "%s", name);
        FUZZ_CHECK(w > 0 && (size_t)w < sizeof(a));
        FUZZ_CHECK(gw_hosts_match(&hosts, a, (size_t)w));
    }
    const char *as = (const char *)auth.p;
    if (!gw_hosts_match(&hosts, as, auth.n))
        return;
    size_t hl;
    unsigned port;
    FUZZ_CHECK(gw_authority_split(as, auth.n, &hl, &port));
    bool found = false;
    for (unsigned i = 0; i < hosts.n && !found; i++)
        found = strlen(hosts.h[i].name) == hl && strncasecmp(hosts.h[i].name, as, hl) == 0 &&
                (hosts.h[i].port == 0 || hosts.h[i].port == port);
    FUZZ_CHECK(found);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    size_t max_body = mode & 1 ? 64 : 1u << 20;
    if (mode & 2) {
        check_hosts((const char *)in.p, in.n);
        return 0;
    }
    uint8_t seed = fuzz_u8(&in);
    check_framing((const char *)in.p, in.n, max_body, seed);
    return 0;
}
