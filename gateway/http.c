/*
 * http.c - the request pipeline (see http.h), CORS, request ids and limits;
 * the access log lines it writes are in access_log.c.
 *
 * CORS follows the contract's §1.3 on every response this file sends,
 * errors and 413 included: the Origin is reflected (with Vary: Origin) and
 * x-trigger-jwt headers are exposed; OPTIONS is answered without auth.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "auth.h"
#include "clock.h"
#include "gw.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "ratelimit.h"

#define GW_URL_MAX 8192
#define GW_HEADERS_MAX 16384

static const char *gw_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Entity";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 507:
        return "Insufficient Storage";
    default:
        return status >= 500 ? "Internal Server Error" : "Error";
    }
}

static void gw_hdr(h2o_req_t *req, const char *name, const char *value, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value, vlen);
}

/* CORS for a normal (non-preflight) response. */
static void gw_cors(h2o_req_t *req)
{
    ssize_t o = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (o >= 0) {
        h2o_iovec_t v = req->headers.entries[o].value;
        gw_hdr(req, "access-control-allow-origin", v.base, v.len);
        gw_hdr(req, "vary", H2O_STRLIT("Origin"));
    }
    gw_hdr(req, "access-control-expose-headers", H2O_STRLIT("x-trigger-jwt,x-trigger-jwt-claims"));
}

static void gw_request_id(char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    uint32_t a = nng_random(), b = nng_random();
    if (cap < 20)
        return;
    memcpy(out, "req_", 4);
    for (int i = 0; i < 8; i++) {
        out[4 + i] = hex[(a >> (i * 4)) & 15];
        out[12 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[20] = '\0';
}

/* ---- answers outside a call ---- */

void gw_send_plain(h2o_req_t *req, int status, const char *body, size_t n, const char *tmpl,
                   uint64_t started, unsigned flags)
{
    gw_send_typed(req, status, "application/json; charset=utf-8", body, n, tmpl, started, flags);
}

void gw_send_typed(h2o_req_t *req, int status, const char *content_type, const char *body, size_t n,
                   const char *tmpl, uint64_t started, unsigned flags)
{
    char request_id[24];
    gw_request_id(request_id, sizeof(request_id));
    char *copy = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
    memcpy(copy, body, n);
    req->res.status = status;
    req->res.reason = gw_reason(status);
    gw_cors(req);
    gw_hdr(req, "x-request-id", request_id, strlen(request_id));
    if (flags & GW_NO_RETRY)
        gw_hdr(req, "x-should-retry", H2O_STRLIT("false"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    gw_access_log(req, tmpl, NULL, status, n, started, started * 1000, NULL, request_id);
    req->res.content_length = n; /* h2o_send_inline leaves it unset, and h2o then closes */
    h2o_send_inline(req, copy, n);
}

/* ---- calls ---- */

struct gw_call_ref {
    struct gw_call *call;
};

static void gw_call_ref_dispose(void *p)
{
    struct gw_call_ref *ref = p;
    if (ref->call)
        ref->call->req = NULL; /* the client is gone; the call finishes on its own */
}

static void gw_call_free(struct gw_call *c)
{
    c->gw->inflight--;
    gw_auth_clear(&c->auth);
    json_decref(c->body);
    if (c->state_free && c->state)
        c->state_free(c->state);
    else
        free(c->state);
    free(c);
}

/* A bus call under way for a call (gw_call_bus). */
struct gw_resume {
    struct gw_call *call;
    bus_reply_fn cb;
    unsigned actor;
    uint64_t started_us; /* for the bus figures (metrics.h) */
};

void gw_call_resume(struct gw_call *c, bus_reply_fn cb, err_t rc, const struct envelope *env)
{
    if (!c->req) {
        /* the request was disposed while the actor worked: nobody to answer */
        LOG_INFO("gw.client_gone", "%s: the client left before the answer (%s)", c->route->pattern,
                 err_str(rc));
        gw_call_free(c);
        return;
    }
    cb(c, rc, env);
}

static void gw_resume_on_reply(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_resume r = *(struct gw_resume *)arg;
    free(arg);
    gw_metrics_bus(r.actor,
                   rc == OK            ? GW_M_BUS_OK
                   : rc == ERR_TIMEOUT ? GW_M_BUS_TIMEOUT
                   : rc == ERR_UNAVAIL ? GW_M_BUS_UNAVAILABLE
                                       : GW_M_BUS_ERROR,
                   r.started_us);
    gw_call_resume(r.call, r.cb, rc, env);
}

err_t gw_call_bus(struct gw_call *c, unsigned actor, uint16_t type, const void *body, size_t n,
                  bus_reply_fn cb)
{
    if (actor >= GW_NPEERS)
        return ERR_INVAL;
    struct gw_resume *r = xmalloc(sizeof(*r));
    r->call = c;
    r->cb = cb;
    r->actor = actor;
    r->started_us = clock_mono_us();
    err_t rc = bus_call(c->gw->actors[actor], type, body, n, &c->trace, gw_resume_on_reply, r);
    if (rc != OK) {
        gw_metrics_bus(actor, rc == ERR_UNAVAIL ? GW_M_BUS_UNAVAILABLE : GW_M_BUS_ERROR,
                       r->started_us);
        free(r);
    }
    return rc;
}

void gw_add_header(struct gw_call *c, const char *name, const char *value)
{
    if (c->req)
        gw_hdr(c->req, name, h2o_strdup(&c->req->pool, value, SIZE_MAX).base, strlen(value));
}

static void gw_call_send(struct gw_call *c, int status, const char *content_type, const char *body,
                         size_t n, unsigned flags)
{
    h2o_req_t *req = c->req;
    if (req) {
        ((struct gw_call_ref *)c->_ref)->call = NULL;
        char *copy = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
        memcpy(copy, body, n);
        req->res.status = status;
        req->res.reason = gw_reason(status);
        gw_cors(req);
        gw_hdr(req, "x-request-id", c->request_id, strlen(c->request_id));
        if (flags & GW_NO_RETRY)
            gw_hdr(req, "x-should-retry", H2O_STRLIT("false"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
        gw_access_log(req, c->route->pattern, c->route, status, n, c->started_mono, c->started_us,
                      c->auth.env.id, c->request_id);
        /* h2o_send_inline leaves the length unset, and an HTTP/1 response without one ends
         * its connection: every answer would cost the client a new one */
        req->res.content_length = n;
        if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
            n = 0;
        h2o_send_inline(req, copy, n);
    }
    gw_call_free(c);
}

void gw_respond_json(struct gw_call *c, int status, json_t *body, unsigned flags)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(body);
    if (!text) {
        static const char err[] = "{\"error\":\"Internal Server Error\"}";
        gw_call_send(c, 500, GW_CT_JSON, err, sizeof(err) - 1, 0);
        return;
    }
    gw_call_send(c, status, GW_CT_JSON, text, strlen(text), flags);
    free(text);
}

void gw_respond_bytes(struct gw_call *c, int status, const char *content_type, const void *body,
                      size_t n)
{
    gw_call_send(c, status, content_type, body, n, 0);
}

h2o_req_t *gw_call_stream(struct gw_call *c, int status, const char *content_type,
                          struct gw_stream_log *log)
{
    h2o_req_t *req = c->req;
    if (req) {
        ((struct gw_call_ref *)c->_ref)->call = NULL;
        req->res.status = status;
        req->res.reason = gw_reason(status);
        ssize_t o = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
        if (o >= 0) {
            h2o_iovec_t v = req->headers.entries[o].value;
            gw_hdr(req, "access-control-allow-origin", v.base, v.len);
            gw_hdr(req, "vary", H2O_STRLIT("Origin"));
        }
        /* a stream's own headers (X-Stream-Version, X-Session-Settled) must reach a browser */
        gw_hdr(req, "access-control-expose-headers", H2O_STRLIT("*"));
        /* h2o keeps header values by reference and sends them after the call is freed */
        gw_hdr(req, "x-request-id", h2o_strdup(&req->pool, c->request_id, SIZE_MAX).base,
               strlen(c->request_id));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
        log->route = c->route;
        log->status = status;
        log->started_mono = c->started_mono;
        log->started_us = c->started_us;
        snprintf(log->method, sizeof(log->method), "%.*s", (int)req->method.len, req->method.base);
        snprintf(log->env_id, sizeof(log->env_id), "%s", c->auth.env.id);
        snprintf(log->request_id, sizeof(log->request_id), "%s", c->request_id);
    }
    gw_call_free(c);
    return req;
}

void gw_respond_error(struct gw_call *c, int status, const char *msg, unsigned flags)
{
    gw_respond_json(c, status, json_pack("{s:s}", "error", msg), flags);
}

void gw_respond_err(struct gw_call *c, err_t rc, const char *what)
{
    /* ERR_PROTO here is a malformed answer from an actor: the client did nothing wrong */
    int status = rc == ERR_PROTO ? 500 : gw_errmap_status(rc);
    if (status >= 500 && status != 507) /* 507: the environment's quota, not a failure */
        LOG_WARN("gw.request_failed", "%s failed in %s: %s", c->route->pattern, what ? what : "?",
                 err_str(rc));
    else
        LOG_INFO("gw.request_refused", "%s refused in %s: %s", c->route->pattern, what ? what : "?",
                 err_str(rc));
    if (status == 503 || status == 504)
        gw_add_header(c, "x-should-retry", "true");
    /* the client gets the documented text for the status, never an internal label; a full
     * quota stays full until the environment makes room, so the SDK must not retry it */
    gw_respond_error(c, status == 504 ? 503 : status, gw_errmap_text(status),
                     status == 507 ? GW_NO_RETRY : 0);
}

void gw_respond_too_large(struct gw_call *c)
{
    /* the same body never fits on a retry */
    gw_respond_error(c, 413, gw_errmap_text(413), GW_NO_RETRY);
}

void gw_respond_forbidden(struct gw_call *c, const char *reason)
{
    char msg[4096];
    snprintf(msg, sizeof(msg), "Unauthorized: %s", reason);
    gw_respond_json(c, 403,
                    json_pack("{s:s,s:s,s:s,s:s}", "error", msg, "code", "unauthorized", "param",
                              "access_token", "type", "authorization"),
                    0);
}

/* ---- pipeline steps after authentication ---- */

static void gw_after_auth(struct gw_call *c, int status, const char *error)
{
    if (status == 503)
        gw_add_header(c, "x-should-retry", "true");
    if (status) {
        gw_respond_error(c, status, error, 0);
        return;
    }
    if (!c->req) { /* the client left while we authenticated */
        gw_call_free(c);
        return;
    }
    gw_rate_check(c); /* continues in gw_after_limits, or answers 429 */
}

void gw_after_limits(struct gw_call *c)
{
    h2o_req_t *req = c->req;
    size_t body_n = req->entity.base ? req->entity.len : 0;

    /* the cap is measured on the body itself, so chunked uploads are held to it too */
    if (c->route->body_cap && body_n > c->route->body_cap) {
        gw_respond_too_large(c);
        return;
    }
    json_t *details = NULL;
    if (!gw_params_valid(c->route, &c->params, &details)) {
        gw_respond_json(c, 400, json_pack("{s:s,s:o}", "error", "Params Error", "details", details),
                        0);
        return;
    }
    if (c->route->body == GW_BODY_JSON ||
        (c->route->body == GW_BODY_JSON_PROTO && !gw_is_protobuf(req))) {
        json_error_t jerr;
        if (body_n == 0) {
            gw_respond_error(c, 400, "Request body is empty", 0);
            return;
        }
        c->body = json_loadb(req->entity.base, body_n, JSON_DECODE_ANY, &jerr);
        if (!c->body) {
            gw_respond_error(c, 400, "Invalid JSON", 0);
            return;
        }
        if (!json_is_object(c->body)) {
            gw_respond_error(c, 400,
                             "Expected object, received " /* zod's wording */
                             "something else",
                             0);
            return;
        }
    }
    c->route->handler(c);
}

bool gw_is_protobuf(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    return v.len >= 20 && h2o_lcstris(v.base, 20, H2O_STRLIT("application/protobuf"));
}

/* ---- entry ---- */

static unsigned gw_method_bit(const h2o_iovec_t m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } t[] = {{"GET", GW_GET}, {"HEAD", GW_HEAD},   {"POST", GW_POST},
             {"PUT", GW_PUT}, {"PATCH", GW_PATCH}, {"DELETE", GW_DELETE}};
    for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (h2o_memis(m.base, m.len, t[i].name, strlen(t[i].name)))
            return t[i].bit;
    return 0;
}

const char *gw_method_name(unsigned bit)
{
    switch (bit) {
    case GW_GET:
        return "GET";
    case GW_HEAD:
        return "HEAD";
    case GW_POST:
        return "POST";
    case GW_PUT:
        return "PUT";
    case GW_PATCH:
        return "PATCH";
    default:
        return "DELETE";
    }
}

static void gw_preflight(h2o_req_t *req, const char *tmpl, const char *rid, uint64_t started)
{
    ssize_t o = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    ssize_t ah =
        h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-headers"), -1);
    req->res.status = 200;
    req->res.reason = "OK";
    if (o >= 0) {
        h2o_iovec_t v = req->headers.entries[o].value;
        gw_hdr(req, "access-control-allow-origin", v.base, v.len);
        gw_hdr(req, "vary", H2O_STRLIT("Origin"));
    }
    gw_hdr(req, "access-control-allow-methods", H2O_STRLIT("GET,HEAD,PUT,PATCH,POST,DELETE"));
    if (ah >= 0) {
        h2o_iovec_t v = req->headers.entries[ah].value;
        gw_hdr(req, "access-control-allow-headers", v.base, v.len);
        gw_hdr(req, "vary", H2O_STRLIT("Access-Control-Request-Headers"));
    }
    gw_hdr(req, "access-control-max-age", H2O_STRLIT("300"));
    gw_hdr(req, "x-request-id", rid, strlen(rid));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json; charset=utf-8"));
    gw_access_log(req, tmpl, NULL, 200, 2, started, started * 1000, NULL, rid);
    req->res.content_length = 2;
    h2o_send_inline(req, H2O_STRLIT("{}"));
}

int gw_http_on_req(struct gw *gw, h2o_req_t *req)
{
    uint64_t started_us = clock_mono_us(), started = started_us / 1000;
    char rid[24];
    struct gw_params params;
    const struct gw_route *match = NULL;
    unsigned allowed = 0, m = gw_method_bit(req->method);
    /* the raw path without its query: path_normalized is already percent-decoded, and the
     * parameters must be decoded once only (path.c) */
    size_t plen =
        req->query_at != SIZE_MAX && req->query_at < req->path.len ? req->query_at : req->path.len;
    size_t hdr_bytes = 0;
    bool shape = false;

    gw_request_id(rid, sizeof(rid));
    for (size_t i = 0; i < req->headers.size; i++)
        hdr_bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    if (req->path.len > GW_URL_MAX) {
        static const char b[] = "{\"error\":\"URI too long\"}";
        gw_send_plain(req, 414, b, sizeof(b) - 1, "(too long)", started, GW_NO_RETRY);
        return 0;
    }
    if (hdr_bytes > GW_HEADERS_MAX) {
        static const char b[] = "{\"error\":\"Request header fields too large\"}";
        gw_send_plain(req, 431, b, sizeof(b) - 1, "(headers too large)", started, GW_NO_RETRY);
        return 0;
    }

    /* with TETHER_GW_ALLOWED_HOSTS, a Host outside it is not ours to answer (h2o puts the
     * Host header, or its own "default" when there is none, in authority) */
    if (gw->allowed.n && !gw_hosts_match(&gw->allowed, req->authority.base, req->authority.len)) {
        static const char b[] = "{\"error\":\"Misdirected Request\"}";
        gw_send_plain(req, 421, b, sizeof(b) - 1, "(host)", started, GW_NO_RETRY);
        return 0;
    }

    for (size_t i = 0; i < gw_nroutes; i++) {
        struct gw_params p;
        if (!gw_route_match(gw_routes[i].pattern, req->path.base, plen, &p))
            continue;
        shape = true;
        allowed |= gw_routes[i].method;
        if (gw_routes[i].method == m && !match) {
            match = &gw_routes[i];
            params = p;
        }
    }
    if (!shape) {
        static const char b[] = "{\"error\":\"Not found\"}";
        gw_send_plain(req, 404, b, sizeof(b) - 1, "(unmatched)", started, GW_NO_RETRY);
        return 0;
    }
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"))) {
        gw_preflight(req, "(preflight)", rid, started);
        return 0;
    }
    if (!match) {
        char allow[64] = "";
        for (unsigned bit = GW_GET; bit <= GW_DELETE; bit <<= 1)
            if (allowed & bit)
                snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                         allow[0] ? ", " : "", gw_method_name(bit));
        gw_hdr(req, "allow", allow, strlen(allow));
        static const char b[] = "{\"error\":\"Method not allowed\"}";
        gw_send_plain(req, 405, b, sizeof(b) - 1, "(method)", started, 0);
        return 0;
    }

    struct gw_call *c = xcalloc(1, sizeof(*c));
    struct gw_call_ref *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), gw_call_ref_dispose);
    ref->call = c;
    c->_ref = ref;
    c->gw = gw;
    c->req = req;
    c->route = match;
    c->params = params;
    c->started_mono = started;
    c->started_us = started_us;
    memcpy(c->request_id, rid, sizeof(c->request_id));
    ssize_t tp = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);
    if (tp < 0 || !bus_trace_from_traceparent(&c->trace, req->headers.entries[tp].value.base,
                                              req->headers.entries[tp].value.len))
        bus_trace_new(&c->trace);
    gw->inflight++;
    gw_auth_begin(c, gw_after_auth);
    return 0;
}

/*
 * Where clients reach this gateway: TETHER_GW_PUBLIC_URL; else the request's Host when
 * TETHER_GW_ALLOWED_HOSTS admitted it; else the listen address. An unchecked Host is never
 * echoed: a forged one would send the writer, and the token it is handed, elsewhere.
 */
void gw_public_base(struct gw_call *c, char *out, size_t cap)
{
    const char *pub = c->gw->gw.public_url;
    if (pub && *pub) {
        size_t l = strlen(pub);
        snprintf(out, cap, "%.*s", (int)(l && pub[l - 1] == '/' ? l - 1 : l), pub);
        return;
    }
    if (c->req && c->gw->allowed.n &&
        gw_hosts_match(&c->gw->allowed, c->req->authority.base, c->req->authority.len)) {
        h2o_iovec_t host = c->req->authority;
        snprintf(out, cap, "%s://%.*s", c->req->scheme == &H2O_URL_SCHEME_HTTPS ? "https" : "http",
                 (int)host.len, host.base);
        return;
    }
    snprintf(out, cap, "%s", c->gw->listen_base);
}

bool gw_req_client_gone(h2o_req_t *req)
{
    char b;
    h2o_conn_t *conn = req ? req->conn : NULL;
    h2o_socket_t *sock =
        conn && conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
    if (!sock)
        return false;
    ssize_t n = recv(h2o_socket_get_fd(sock), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
