/*
 * http.h - the request pipeline every API route goes through.
 *
 * Order (the contract's §1.2): OPTIONS preflight (no auth) → 404 for an
 * unknown path → 405 with Allow → authentication (401) → body cap (413,
 * measured on the body actually received) → path params (400 "Params
 * Error") → body present and valid JSON (400) → the route's handler, which
 * resolves its resource and authorizes in the order its kind requires
 * (action: 403 before 404; loader: 404 before 403).
 *
 * A struct gw_call lives from the moment a route matched until its response
 * is sent. It is owned by the pipeline; handlers finish it by calling one of
 * the gw_respond* functions exactly once, after which it is gone. If h2o
 * disposes the request first (the client is gone), call->req becomes NULL.
 * A handler never checks that itself: every bus call a call makes goes
 * through gw_call_bus, which resumes the handler only while the request is
 * there and otherwise finishes the call, answering nothing (the actor still
 * does what it was asked). With HTTP/1 (all the gateway serves), h2o 2.2.5
 * stops reading a connection while a request is being handled, so it
 * notices a closed connection only when the answer is written; HTTP/2
 * would dispose a request mid-call.
 * Everything here runs on the gateway's loop thread.
 */
#ifndef TETHER_GW_HTTP_H
#define TETHER_GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "bus.h"
#include "err.h"

struct gw;
struct gw_call;

enum gw_method {
    GW_GET = 1,
    GW_HEAD = 2,
    GW_POST = 4,
    GW_PUT = 8,
    GW_PATCH = 16,
    GW_DELETE = 32,
};

/* Credential kinds a route accepts (a secret key is accepted everywhere). */
enum gw_authkind {
    GW_AUTH_SECRET = 1,
    GW_AUTH_JWT = 2,
};

typedef void (*gw_handler_fn)(struct gw_call *c);

struct gw_route {
    unsigned method;     /* one enum gw_method */
    const char *pattern; /* "/api/v1/sessions/:session/close" */
    size_t body_cap;     /* bytes; 0 = no cap here: the route reads no body, or its handler
                            checks its own limit (append, S2 append: the metered size) */
    unsigned body;       /* enum gw_body */
    unsigned auth;       /* enum gw_authkind bits; 0: no credential is read (a capability
                            URL, which its handler checks: gw_auth_env) */
    gw_handler_fn handler;
};

enum gw_body {
    GW_BODY_RAW = 0,   /* the handler reads req->entity, if anything */
    GW_BODY_JSON,      /* a JSON object is required: c->body */
    GW_BODY_JSON_PROTO /* the same, unless it is application/protobuf: then c->body is NULL */
};

/* The request's Content-Type is application/protobuf. */
bool gw_is_protobuf(h2o_req_t *req);

#define GW_PARAM_MAX 1024

/* Path parameters, each percent-decoded once from the raw path (path.c); empty when the pattern
 * has none, or when the value did not decode. */
struct gw_params {
    char session[GW_PARAM_MAX]; /* :session, or the S2 endpoint's :stream */
    char io[16];
    char channel[160]; /* :channel, a named side channel (checked: stream_channel_valid) */
    char run[GW_PARAM_MAX];
    const char *bad; /* the first parameter ("session", "io", "run", "stream", ...) that did not
                        decode, or NULL */
    err_t bad_rc;    /* why: ERR_INVAL (a bad escape or %00) or ERR_TOOBIG */
    char waitpoint[128]; /* :waitpoint (h_waitpoint_tokens.c, h_waitpoints.c) */
    char hash[80];       /* :hash, a token callback's HMAC (h_waitpoint_tokens.c) */
};

/* The environment a request acts in (from env.resolve_key / env.get). */
struct gw_env {
    char id[64];
    char type[16]; /* DEVELOPMENT, STAGING, PRODUCTION, PREVIEW */
    char org_id[64];
    char project_id[64];
    char signing_key[128]; /* what tokens for this environment are signed with */
};

#define GW_MAX_SCOPES 64

struct gw_auth {
    enum gw_authkind kind; /* GW_AUTH_SECRET or GW_AUTH_JWT */
    struct gw_env env;
    char *scopes[GW_MAX_SCOPES]; /* JWT only; owned by the call */
    unsigned nscopes;
};

struct gw_call {
    struct gw *gw;
    h2o_req_t *req; /* NULL once the client is gone */
    void *_ref;     /* the pool-side half of the disconnect link */
    const struct gw_route *route;
    struct gw_params params;
    struct gw_auth auth;
    struct bus_trace trace;
    char request_id[24];
    uint64_t started_mono;
    uint64_t started_us; /* the same instant in microseconds, for the figures (metrics.h) */
    json_t *body; /* the parsed body (route->body GW_BODY_JSON*) */
    void *state;  /* the handler's own, freed at the end: by state_free, else free() */
    void (*state_free)(void *state);
};

/*
 * bus_call on behalf of c, to one of the gateway's actors (enum gw_actor, gw.h). cb(c, rc, env)
 * runs with the outcome while the request is still there; when h2o disposed it meanwhile, cb
 * never runs and the call is finished instead (c->state freed, nothing sent). Returns as
 * bus_call: on an error cb is never called and the caller still owns c.
 */
err_t gw_call_bus(struct gw_call *c, unsigned actor, uint16_t type, const void *body, size_t n,
                  bus_reply_fn cb);
/*
 * The resume step of gw_call_bus for a caller that took the reply itself (sessref.c's cached
 * lookup): cb(c, rc, env), or the end of c when its request is gone.
 */
void gw_call_resume(struct gw_call *c, bus_reply_fn cb, err_t rc, const struct envelope *env);

/* Response flags. */
#define GW_NO_RETRY 1u /* x-should-retry: false: a terminal error the SDK must not retry */

#define GW_CT_JSON "application/json; charset=utf-8"

/* Sends a JSON value (stolen: the call frees it) with status, then ends the call. */
void gw_respond_json(struct gw_call *c, int status, json_t *body, unsigned flags);
/* Sends n bytes (copied) of content_type with status, then ends the call. */
void gw_respond_bytes(struct gw_call *c, int status, const char *content_type, const void *body,
                      size_t n);
/* Sends {"error": msg} with status, then ends the call. */
void gw_respond_error(struct gw_call *c, int status, const char *msg, unsigned flags);
/*
 * Maps an err_t to a status (errmap.c) and sends {"error": <the documented text for that
 * status>}. what names the failed step for the log line only; it never reaches the client.
 */
void gw_respond_err(struct gw_call *c, err_t rc, const char *what);
/*
 * The 413 of every /api and /realtime route, whichever check refused: the contract's
 * {"error":"Request body too large"} (§1.2), CORS and x-should-retry: false included. The S2
 * endpoint has its own
 * (h_s2.c, in S2's error shape).
 */
void gw_respond_too_large(struct gw_call *c);
/* The 403 body of the contract. reason is the text after "Unauthorized: ". */
void gw_respond_forbidden(struct gw_call *c, const char *reason);
/* What a streamed response's access log line needs once its call is gone (gw_call_stream). */
struct gw_stream_log {
    const struct gw_route *route;
    char method[16];
    char env_id[64];
    char request_id[24];
    int status;
    uint64_t started_mono, started_us;
};

/*
 * Ends the call for a streamed response: sets status, CORS (every header
 * exposed), the request id and content type, fills *log for the stream's
 * owner, and returns the request for the caller to h2o_start_response on;
 * NULL when the client has gone (*log untouched).
 */
h2o_req_t *gw_call_stream(struct gw_call *c, int status, const char *content_type,
                          struct gw_stream_log *log);
/*
 * The access log line and the request's figures of a stream that ended: after the last byte
 * was handed to h2o, or when the client left. cut says the client was cut off for not reading.
 */
void gw_stream_log_end(const struct gw_stream_log *log, uint64_t bytes, uint64_t records,
                       bool cut);
/*
 * access_log.c: the access log line and the figures of an answer sent in one piece (http.c's
 * answers): route is the call's, or NULL for an answer outside a call, which tmpl then names.
 */
void gw_access_log(h2o_req_t *req, const char *tmpl, const struct gw_route *route, int status,
                   size_t bytes, uint64_t started, uint64_t started_us, const char *env_id,
                   const char *request_id);
/*
 * Where clients reach this gateway (no trailing slash): TETHER_GW_PUBLIC_URL; else the
 * request's Host when TETHER_GW_ALLOWED_HOSTS admitted it; else the listen address. Every
 * URL the gateway hands out (X-S2-Endpoint, token callback URLs) starts with it.
 */
void gw_public_base(struct gw_call *c, char *out, size_t cap);
/*
 * query.c: the value of ?name= in the request's query, '+' and %XX decoded: the last one when
 * the name repeats (the contract's §1.1 reads a query as a flat map), false when it is absent.
 * A value that does not fit in out, or holds %00, comes back as "" rather than cut short.
 */
bool gw_query(h2o_req_t *req, const char *name, char *out, size_t cap);
/*
 * True when the client of req has closed its side. h2o does not read an HTTP/1 connection while
 * a request waits for its answer or its response streams, so this peeks: 0 bytes is the peer's
 * FIN. A pipelined request or HTTP/2 frames are data, not an end. False without a socket to ask.
 */
bool gw_req_client_gone(h2o_req_t *req);
/* Adds a response header before one of the gw_respond* calls. */
void gw_add_header(struct gw_call *c, const char *name, const char *value);

/*
 * Sends a JSON body outside a call (no route matched, preflight, /healthz,
 * /livez) with what every response carries: CORS, a request id, the access
 * log line (tmpl names the path in it). started is the request's start
 * (clock_mono_ms) for the logged duration.
 */
void gw_send_plain(h2o_req_t *req, int status, const char *body, size_t n, const char *tmpl,
                   uint64_t started, unsigned flags);
/* The same with another content type (/metrics' text format). */
void gw_send_typed(h2o_req_t *req, int status, const char *content_type, const char *body,
                   size_t n, const char *tmpl, uint64_t started, unsigned flags);

/* HTTP status for an err_t, and the client-facing error text of a status (errmap.c). */
int gw_errmap_status(err_t rc);
const char *gw_errmap_text(int status);

/* The name of one enum gw_method bit ("GET" ...). */
const char *gw_method_name(unsigned bit);

/* Entry point from h2o for every request (http.c). */
int gw_http_on_req(struct gw *gw, h2o_req_t *req);

/* The route table (routes.c). */
extern const struct gw_route gw_routes[];
extern const size_t gw_nroutes;

/*
 * Matches path[0..n) - the raw path as the client sent it, without the query - against pattern
 * (path.c), filling params. Fixed segments compare byte for byte (nothing is decoded or
 * normalized); each :param is decoded once. Returns false when the shapes differ; when the
 * shape matched but a value is unusable, params->bad names it.
 */
bool gw_route_match(const char *pattern, const char *path, size_t n, struct gw_params *params);

/*
 * Validates path parameters (path.c): :session and :run by the id rule (path.h), :io in|out.
 * On failure sets *details (a JSON array, caller owns).
 */
bool gw_params_valid(const struct gw_route *r, const struct gw_params *p, json_t **details);

#endif
