/*
 * request_fuzz.c - libFuzzer target for the whole request pipeline of the gateway
 * (gw_http_on_req, gateway/http.c): route matching, 404/405/414/421/431, authentication
 * (secret keys and JWTs, auth.c), body caps, path parameters, JSON bodies, and every route's
 * handler with the bodies, headers and query strings it reads, down to the bus requests it
 * sends and the answer it writes. Everything of the gateway is the product's own code; what
 * is around it is the harness's:
 *  - h2o's parser is replaced by picohttpparser (libh2o's own) on a head built from the input,
 *    turned into an h2o_req_t as h2o's http1.c does (names lower-cased, tokens looked up, Host
 *    as the authority); its output side by definitions of h2o_send_inline, h2o_start_response
 *    and h2o_send here (the executable's win over libh2o's, as edge.c's do);
 *  - the bus by bus_call, wrapped at link time (-Wl,--wrap=bus_call): each request is checked
 *    and queued, and answered later from the loop below with an actor's canned reply, or the
 *    error the input asks for; event subscriptions are off (bus_sub_open_actor wrapped:
 * unavailable), and the cluster view is that of a node alone (bus_cluster_view wrapped).
 *
 * Feeds: a request written as text -
 *     METHOD TARGET\n  (name: value\n)*  \n  body
 * (no blank line: no body). Two harness headers are taken out before h2o sees the head:
 * "x-fuzz-bus: <letters>", one per bus call in order (o ok, z ok with empty lists and a
 * pending hold, c ok with a closed and expired session, e ok with an empty body, n not found,
 * i invalid, k conflict, x closed, b too big, a unauthorized, u unavailable, t timeout, p
 * malformed reply, f the send itself fails; default o), and "x-fuzz-sign: 1", which re-signs
 * the Authorization JWT with the environment's key so what follows the signature is reached,
 * and "x-fuzz-hosts: 1", which turns TETHER_GW_ALLOWED_HOSTS on (api.example.com,
 * localhost:8787) for this request.
 * Checks: every request gets at most one answer, and exactly one unless it is a long-poll
 * (dequeue, suspend) whose client left; an answer has a known status, an x-request-id, no CR,
 * LF or NUL in any header value (no response splitting from a URL or a header), a 405 an
 * Allow; JSON answers and every SSE frame's data are valid JSON; every bus request is a
 * catalogued type with one well-formed msgpack map as its body; when everything is answered
 * and the client gone, no call, feed, waiter or timer is left (gw->inflight 0). ASan sees the
 * request freed the moment h2o would free it, so a handler touching it afterwards is caught.
 *
 * Not reached: what the actors do with the requests (their decoders are not fuzzed here); the
 * stream-broker's and the registry's events (no subscription); /healthz and /livez (main.c).
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>

#include "auth.h"
#include "feed.h"
#include "fuzz.h"
#include "gw.h"
#include "handlers.h"
#include "http.h"
#include "jbuf.h"
#include "log.h"
#include "mp.h"
#include "mpjson.h"
#include "msg.h"
#include "msg_stream.h"
#include "sesscache.h"

#define KEY "tr_dev_signing_key_for_fuzzing"
#define QMAX 64         /* bus calls waiting for their reply */
#define STEPS_MAX 10000 /* loop iterations per input: a livelock is a failure */
#define STREAM_LEN 5    /* records in the canned stream */

/* ---- picohttpparser (libh2o-evloop exports it; h2o 2.2.5 has no header for it) ---- */

struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);

/* ---- the world around the gateway: one request at a time, so plain statics ---- */

struct queued {
    uint16_t type;
    bus_reply_fn cb;
    void *arg;
    uint8_t *body;
    size_t n;
    char letter;
};

static struct {
    h2o_req_t *req; /* NULL once h2o would have freed it */
    int answers;    /* h2o_send_inline or h2o_start_response calls */
    bool streaming, stream_done, send_pending, dispose_now;
    h2o_generator_t *gen;
    struct jbuf sse;
    const char *script; /* x-fuzz-bus */
    size_t script_n, calls;
    struct queued q[QMAX];
    size_t qhead, qtail;
} W;

static struct gw gw;
static struct gw_hosts allowed; /* x-fuzz-hosts: 1 */

err_t __wrap_bus_call(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                      const struct bus_trace *trace, bus_reply_fn cb, void *arg);
err_t __wrap_bus_sub_open_actor(struct bus *b, const char *actor, bus_event_fn fn, void *arg,
                                struct bus_sub **out);

err_t __wrap_bus_sub_open_actor(struct bus *b, const char *actor, bus_event_fn fn, void *arg,
                                struct bus_sub **out)
{
    (void)b, (void)actor, (void)fn, (void)arg;
    *out = NULL;
    return ERR_UNAVAIL; /* no events: feeds, dequeues and holds poll */
}

const struct bus_cluster *__wrap_bus_cluster_view(const struct bus *b);

const struct bus_cluster *__wrap_bus_cluster_view(const struct bus *b)
{
    static const struct bus_cluster alone; /* no view yet: a node alone (/healthz) */
    (void)b;
    return &alone;
}

err_t __wrap_bus_call(struct bus_peer *p, uint16_t type, const void *body, size_t n,
                      const struct bus_trace *trace, bus_reply_fn cb, void *arg)
{
    struct mp_reader r;
    struct slice raw;
    enum mp_type t;
    char *json = NULL;
    size_t jn;
    (void)p;
    FUZZ_CHECK(trace != NULL && cb != NULL);
    FUZZ_CHECK(msg_def_find(type) != NULL);
    /* one msgpack map, nothing after it, that renders (mp_to_json walks all of it) */
    mp_reader_init(&r, body, n);
    FUZZ_CHECK(mp_peek(&r, &t) == OK && t == MP_MAP);
    FUZZ_CHECK(mp_skip(&r, &raw) == OK && raw.n == n);
    FUZZ_CHECK(mp_to_json(body, n, 0, &json, &jn) == OK);
    free(json);
    char letter = W.calls < W.script_n ? W.script[W.calls] : 'o';
    W.calls++;
    if (letter == 'f')
        return ERR_UNAVAIL; /* the send failed: the caller answers, cb never runs */
    FUZZ_CHECK(W.qtail - W.qhead < QMAX);
    struct queued *e = &W.q[W.qtail++ % QMAX];
    e->type = type;
    e->cb = cb;
    e->arg = arg;
    e->n = n;
    e->body = malloc(n ? n : 1);
    if (!e->body)
        abort();
    memcpy(e->body, body, n);
    e->letter = letter;
    return OK;
}

/* ---- h2o's output side ---- */

static bool header_value_clean(h2o_iovec_t v)
{
    for (size_t i = 0; i < v.len; i++)
        if (v.base[i] == '\r' || v.base[i] == '\n' || v.base[i] == '\0')
            return false;
    return true;
}

/* What every answer, inline or streamed, must be. */
static void check_answer(h2o_req_t *req)
{
    static const int known[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 409,
                                413, 414, 421, 422, 431, 500, 503, 504, 507};
    bool ok = false, rid = false, allow = false;
    FUZZ_CHECK(req != NULL && req == W.req);
    FUZZ_CHECK(++W.answers == 1);
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok = ok || req->res.status == known[i];
    FUZZ_CHECK(ok && req->res.reason != NULL);
    for (size_t i = 0; i < req->res.headers.size; i++) {
        const h2o_header_t *h = &req->res.headers.entries[i];
        FUZZ_CHECK(header_value_clean(*h->name) && h->name->len > 0);
        FUZZ_CHECK(header_value_clean(h->value));
        rid = rid || h2o_memis(h->name->base, h->name->len, H2O_STRLIT("x-request-id"));
        allow = allow || h2o_memis(h->name->base, h->name->len, H2O_STRLIT("allow"));
    }
    FUZZ_CHECK(rid);
    FUZZ_CHECK(req->res.status != 405 || allow);
}

static bool is_json_answer(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    return i >= 0 && req->res.headers.entries[i].value.len >= 16 &&
           memcmp(req->res.headers.entries[i].value.base, "application/json", 16) == 0;
}

void h2o_send_inline(h2o_req_t *req, const char *body, size_t len)
{
    check_answer(req);
    FUZZ_CHECK(req->res.content_length == len ||
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")));
    if (is_json_answer(req) && len > 0)
        FUZZ_CHECK(fuzz_json_valid(body, len));
    W.dispose_now = true; /* h2o frees the request once the answer is written */
}

void h2o_start_response(h2o_req_t *req, h2o_generator_t *generator)
{
    check_answer(req);
    FUZZ_CHECK(generator != NULL);
    W.streaming = true;
    W.gen = generator;
}

void h2o_send(h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    FUZZ_CHECK(req == W.req && W.streaming && !W.stream_done);
    FUZZ_CHECK(!W.send_pending); /* one h2o_send at a time, as h2o requires */
    for (size_t i = 0; i < bufcnt; i++)
        jbuf_put(&W.sse, bufs[i].base, bufs[i].len);
    if (state == H2O_SEND_STATE_IN_PROGRESS) {
        W.send_pending = true; /* written: proceed is called from the loop */
    } else {
        W.stream_done = true;
        W.dispose_now = true;
    }
}

/* Every SSE frame: "field: value" lines, a blank line after each frame, JSON data. */
static void check_sse(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *e = memchr(s + i, '\n', n - i);
        FUZZ_CHECK(e != NULL); /* frames end with a line feed */
        size_t len = (size_t)(e - (s + i));
        if (len > 6 && memcmp(s + i, "data: ", 6) == 0 &&
            !(len == 12 && memcmp(s + i + 6, "[DONE]", 6) == 0) &&
            memcmp(s + i + 6, "stream read failed", 18) != 0 &&
            memcmp(s + i + 6, "malformed record", 16) != 0 &&
            memcmp(s + i + 6, "the server is", 13) != 0)
            FUZZ_CHECK(fuzz_json_valid(s + i + 6, len - 6));
        else
            FUZZ_CHECK(len == 0 || memchr(s + i, ':', len) != NULL);
        i += len + 1;
    }
}

/* ---- the actors' canned replies ---- */

static void put_row(struct mp_writer *w, bool closed)
{
    mp_put_map(w, 15);
    mp_put_kv_str(w, "id", "sess_1");
    mp_put_kv_str(w, "friendly_id", "session_abc");
    mp_put_kv_str(w, "external_id", "ext-1");
    mp_put_kv_str(w, "env_id", "env_1");
    mp_put_kv_str(w, "type", "chat.agent");
    mp_put_kv_str(w, "task_identifier", "my-task");
    mp_put_kv_str(w, "trigger_config", "{\"basePayload\":{\"a\":1},\"machine\":\"micro\"}");
    mp_put_kv_str(w, "current_run_id", "run_1");
    mp_put_kv_str(w, "tags", "[\"t1\",\"t2\"]");
    mp_put_kv_str(w, "metadata", "{\"k\":\"v\"}");
    mp_put_kv_uint(w, "closed_at_ms", closed ? 1700000000000 : 0);
    mp_put_kv_str(w, "closed_reason", closed ? "done" : NULL);
    mp_put_kv_uint(w, "expires_at_ms", closed ? 1 : 0);
    mp_put_kv_uint(w, "created_at_ms", 1700000000000);
    mp_put_kv_uint(w, "updated_at_ms", 1700000000001);
}

static void put_wp(struct mp_writer *w, bool completed)
{
    mp_put_map(w, 12);
    mp_put_kv_str(w, "id", "waitpoint_1");
    mp_put_kv_str(w, "env_id", "env_1");
    mp_put_kv_str(w, "kind", completed ? "DURATION" : "MANUAL");
    mp_put_kv_str(w, "status", completed ? "COMPLETED" : "PENDING");
    mp_put_kv_str(w, "output", "{\"ok\":true}");
    mp_put_kv_str(w, "output_type", "application/json");
    mp_put_kv_bool(w, "output_is_error", false);
    mp_put_kv_uint(w, "completed_at_ms", completed ? 1700000000000 : 0);
    mp_put_kv_uint(w, "timeout_at_ms", 1800000000000);
    mp_put_kv_str(w, "idempotency_key", "idem");
    mp_put_kv_uint(w, "idempotency_key_expires_at_ms", 1800000000000);
    mp_put_kv_str(w, "tags", "[\"x\"]");
}

static void put_run(struct mp_writer *w)
{
    mp_put_map(w, 20);
    mp_put_kv_str(w, "id", "run_1");
    mp_put_kv_str(w, "status", "EXECUTING");
    mp_put_kv_str(w, "task_identifier", "my-task");
    mp_put_kv_uint(w, "created_at_ms", 1700000000000);
    mp_put_kv_uint(w, "updated_at_ms", 1700000000001);
    mp_put_kv_uint(w, "started_at_ms", 1700000000002);
    mp_put_kv_uint(w, "completed_at_ms", 1700000000500);
    mp_put_kv_uint(w, "ttl_s", 600);
    mp_put_kv_str(w, "tags", "[\"t\"]");
    mp_put_kv_uint(w, "attempt", 1);
    mp_put_kv_uint(w, "max_attempts", 3);
    mp_put_kv_str(w, "payload", "{\"message\":\"hi\"}");
    mp_put_kv_str(w, "output", "{\"done\":true}");
    mp_put_kv_str(w, "error", "{\"message\":\"boom\",\"name\":\"Error\",\"stack\":\"at x\"}");
    mp_put_kv_str(w, "session_id", "sess_1");
    mp_put_kv_str(w, "session_key", "ext-1");
    mp_put_kv_uint(w, "idle_timeout_s", 30);
    mp_put_kv_uint(w, "lease_expires_at_ms", 1800000000000);
    mp_put_str(w, "waitpoints");
    mp_put_array(w, 1);
    put_wp(w, true);
    mp_put_kv_str(w, "env_id", "env_1");
}

/* Record seq of the canned stream: plain text, a command, a control record, bytes that are
 * not UTF-8, a legacy turn-complete. */
static void put_record(struct mp_writer *w, uint64_t seq)
{
    static const char *const bodies[STREAM_LEN] = {
        "{\"data\":\"hi\",\"id\":\"p1\"}", "\0\0\0\0\0\0\0\3", "", "\xff\xfe\0raw\\\"",
        "{\"data\":{\"type\":\"trigger:turn-complete\"},\"id\":\"p2\"}"};
    static const size_t lens[STREAM_LEN] = {23, 8, 0, 9, 51};
    mp_put_map(w, 4);
    mp_put_kv_uint(w, "seq", seq);
    mp_put_kv_uint(w, "ts", 1700000000000 + seq);
    mp_put_str(w, "headers");
    switch (seq) {
    case 1:
        mp_put_array(w, 1);
        mp_put_array(w, 2);
        mp_put_str(w, "");
        mp_put_str(w, "trim");
        break;
    case 2:
        mp_put_array(w, 1);
        mp_put_array(w, 2);
        mp_put_str(w, "trigger-control");
        mp_put_str(w, "turn-complete");
        break;
    default:
        mp_put_array(w, 1);
        mp_put_array(w, 2);
        mp_put_str(w, "content-type");
        mp_put_strn(w, "text/\xc3\xa9\"", 8);
        break;
    }
    mp_put_str(w, "body");
    mp_put_bin(w, bodies[seq], lens[seq]);
}

/* stream.read / stream.peek: the records the request asks for, of STREAM_LEN. */
static void put_stream_reply(struct mp_writer *w, uint16_t type, struct slice req, bool empty)
{
    struct msg_stream_read read;
    struct msg_stream_peek peek;
    uint64_t from = 0, count = 1000, tail = empty ? 0 : STREAM_LEN;
    if (type == MSG_STREAM_PEEK) { /* the last count records */
        if (msg_decode(&msg_stream_peek_form, req.p, req.n, &peek) == OK)
            count = peek.count;
        from = count >= tail ? 0 : tail - count;
    } else if (msg_decode(&msg_stream_read_form, req.p, req.n, &read) == OK) {
        from = read.from;
        count = read.count;
    }
    uint64_t end = from + count < tail ? from + count : tail;
    struct mp_writer recs;
    mp_writer_init(&recs);
    mp_put_array(&recs, from < end ? (uint32_t)(end - from) : 0);
    for (uint64_t s = from; s < end; s++)
        put_record(&recs, s);
    FUZZ_CHECK(mp_writer_err(&recs) == OK);
    struct msg_stream_range m = {
        {mp_writer_data(&recs), mp_writer_len(&recs)}, tail, 1700000000009};
    msg_encode(&msg_stream_range_form, w, &m);
    mp_writer_fini(&recs);
}

/* stream.append: one seq per record appended. */
static void put_append_reply(struct mp_writer *w, struct slice req)
{
    struct msg_stream_append a;
    struct mp_reader v;
    uint32_t n = 0;
    if (msg_decode(&msg_stream_append_form, req.p, req.n, &a) == OK)
        (void)msg_stream_items(a.records, &v, &n);
    struct mp_writer seqs;
    mp_writer_init(&seqs);
    mp_put_array(&seqs, n);
    for (uint32_t i = 0; i < n; i++)
        mp_put_uint(&seqs, 7 + i);
    FUZZ_CHECK(mp_writer_err(&seqs) == OK);
    struct msg_stream_append_reply m = {
        .seqs = {mp_writer_data(&seqs), mp_writer_len(&seqs)}, .tail = 7 + n, .ts = 1700000000000};
    msg_encode(&msg_stream_append_reply_form, w, &m);
    mp_writer_fini(&seqs);
}

/* One body holding every field any gateway reply reader looks for. */
static void put_reply(struct mp_writer *w, uint16_t type, char letter, struct slice req)
{
    bool empty = letter == 'z', closed = letter == 'c';
    if (letter == 'e') {
        mp_put_map(w, 0);
        return;
    }
    if (type == MSG_STREAM_READ || type == MSG_STREAM_PEEK) {
        put_stream_reply(w, type, req, empty);
        return;
    }
    if (type == MSG_STREAM_APPEND) {
        put_append_reply(w, req);
        return;
    }
    mp_put_map(w, 21);
    mp_put_str(w, "env");
    mp_put_map(w, 5);
    mp_put_kv_str(w, "id", "env_1");
    mp_put_kv_str(w, "type", "DEVELOPMENT");
    mp_put_kv_str(w, "organization_id", "org_1");
    mp_put_kv_str(w, "project_id", "proj_1");
    mp_put_str(w, "signing_keys");
    mp_put_array(w, 1);
    mp_put_str(w, KEY);
    mp_put_str(w, "session");
    put_row(w, closed);
    mp_put_kv_bool(w, "is_cached", closed);
    mp_put_kv_str(w, "run_id", "run_1");
    mp_put_kv_bool(w, "swapped", true);
    mp_put_str(w, "run");
    put_run(w);
    mp_put_str(w, "runs");
    mp_put_array(w, empty ? 0 : 1);
    if (!empty)
        put_run(w);
    mp_put_kv_bool(w, "retrying", true);
    mp_put_str(w, "seqs");
    mp_put_array(w, 2);
    mp_put_uint(w, 7);
    mp_put_uint(w, 8);
    mp_put_kv_uint(w, "tail", 9);
    mp_put_kv_uint(w, "ts", 1700000000000);
    mp_put_str(w, "waitpoint");
    put_wp(w, closed);
    mp_put_str(w, "waitpoints");
    mp_put_array(w, empty ? 0 : 2);
    if (!empty) {
        put_wp(w, false);
        put_wp(w, true);
    }
    mp_put_kv_bool(w, "more", !empty);
    mp_put_str(w, "sessions");
    mp_put_array(w, empty ? 0 : 1);
    if (!empty)
        put_row(w, closed);
    mp_put_kv_str(w, "next", "cursor2");
    mp_put_kv_str(w, "previous", empty ? NULL : "cursor0");
    mp_put_kv_bool(w, "suspended", !empty);
    mp_put_kv_uint(w, "pending", empty ? 1 : 0);
    mp_put_kv_str(w, "env_id", "env_1");
}

static void deliver(struct queued *e)
{
    struct envelope env = {.version = ENV_VERSION, .type = e->type, .attempt = 1};
    struct mp_writer w;
    err_t rc = OK;
    bool with_env = true;
    switch (e->letter) {
    case 'n':
        rc = ERR_NOTFOUND;
        break;
    case 'i':
        rc = ERR_INVAL;
        break;
    case 'k':
        rc = ERR_CONFLICT;
        break;
    case 'x':
        rc = ERR_CLOSED;
        break;
    case 'b':
        rc = ERR_TOOBIG;
        break;
    case 'a':
        rc = ERR_UNAUTH;
        break;
    case 'u':
        rc = ERR_UNAVAIL, with_env = false;
        break;
    case 't':
        rc = ERR_TIMEOUT, with_env = false;
        break;
    case 'p':
        rc = ERR_PROTO, with_env = false;
        break;
    default:
        break;
    }
    mp_writer_init(&w);
    if (rc == OK) {
        env.kind = ENV_REPLY;
        put_reply(&w, e->type, e->letter, (struct slice){(const char *)e->body, e->n});
        FUZZ_CHECK(mp_writer_err(&w) == OK);
        env.body = (struct slice){mp_writer_data(&w), mp_writer_len(&w)};
    } else {
        env.kind = ENV_ERROR;
        env.err_code = rc;
        env.err_msg = SLICE_LIT("refused by the fuzzer");
    }
    free(e->body);
    e->cb(e->arg, rc, with_env ? &env : NULL);
    mp_writer_fini(&w);
}

/* ---- the request ---- */

/* value (an Authorization value) with its JWT signature made with KEY, into jbuf b */
static void resign(struct jbuf *b, const char *v, size_t n)
{
    size_t pre = n >= 7 && memcmp(v, "Bearer ", 7) == 0 ? 7 : 0, dots = 0, second = 0;
    for (size_t i = pre; i < n; i++)
        if (v[i] == '.' && ++dots == 2)
            second = i;
    if (dots < 2) {
        jbuf_put(b, v, n);
        return;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char sig[64];
    FUZZ_CHECK(HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)v + pre,
                    second - pre, mac, &maclen) != NULL);
    jbuf_put(b, v, second + 1);
    jbuf_put(b, sig, fuzz_b64url_encode(mac, maclen, sig));
}

static bool h2o_special(const char *name, size_t n)
{
    /* what h2o 2.2.5's http1.c takes out of the header list (init_headers) */
    static const char *const special[] = {"host",          "content-length", "transfer-encoding",
                                          "connection",    "expect",         "upgrade",
                                          "http2-settings"};
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        if (strlen(special[i]) == n && strncasecmp(special[i], name, n) == 0)
            return true;
    return false;
}

/* The input's request as h2o would hand it over; false when h2o would refuse its head. */
static bool build_request(struct fuzz_in in, h2o_req_t *req)
{
    struct jbuf head = {0};
    struct fuzz_in line = fuzz_until(&in, '\n');
    bool sign = false, body = false, hosts = false;
    const char *script = NULL;
    size_t script_n = 0;

    jbuf_put(&head, (const char *)line.p,
             line.n && line.p[line.n - 1] == '\r' ? line.n - 1 : line.n);
    jbuf_puts(&head, " HTTP/1.1\r\n");
    /* the harness's own headers first: they apply to the whole head, wherever they stand */
    for (struct fuzz_in rest = in; rest.n;) {
        struct fuzz_in l = fuzz_until(&rest, '\n');
        if (l.n == 0 || (l.n == 1 && l.p[0] == '\r'))
            break;
        sign = sign || (l.n > 12 && strncasecmp((const char *)l.p, "x-fuzz-sign:", 12) == 0);
        hosts = hosts || (l.n > 13 && strncasecmp((const char *)l.p, "x-fuzz-hosts:", 13) == 0);
    }
    while (in.n) {
        line = fuzz_until(&in, '\n');
        size_t n = line.n && line.p[line.n - 1] == '\r' ? line.n - 1 : line.n;
        const char *s = (const char *)line.p;
        if (n == 0) {
            body = true;
            break;
        }
        if (n > 11 && strncasecmp(s, "x-fuzz-bus:", 11) == 0) {
            script = s + 11;
            script_n = n - 11;
            while (script_n && *script == ' ')
                script++, script_n--;
            continue;
        }
        if ((n > 12 && strncasecmp(s, "x-fuzz-sign:", 12) == 0) ||
            (n > 13 && strncasecmp(s, "x-fuzz-hosts:", 13) == 0))
            continue;
        const char *colon = memchr(s, ':', n);
        if (sign && colon && colon - s == 13 && strncasecmp(s, "authorization", 13) == 0) {
            size_t off = (size_t)(colon - s) + 1;
            while (off < n && s[off] == ' ')
                off++;
            jbuf_put(&head, s, off);
            resign(&head, s + off, n - off);
        } else {
            jbuf_put(&head, s, n);
        }
        jbuf_puts(&head, "\r\n");
    }
    jbuf_puts(&head, "\r\n");
    FUZZ_CHECK(head.err == OK);

    /* everything the request points into lives in its pool, as with h2o */
    size_t hn = head.n;
    memset(req, 0, sizeof(*req));
    h2o_mem_init_pool(&req->pool);
    char *buf = h2o_mem_alloc_pool(&req->pool, hn + in.n + 1);
    memcpy(buf, head.p, hn);
    if (in.n)
        memcpy(buf + hn, in.p, in.n);
    jbuf_free(&head);
    const char *method, *path;
    size_t mlen, plen, nh = 100;
    int minor;
    struct phr_header h[100];
    int r = phr_parse_request(buf, hn, &method, &mlen, &path, &plen, &minor, h, &nh, 0);
    if (r <= 0 || (size_t)r != hn) { /* h2o answers a head it cannot parse itself */
        h2o_mem_clear_pool(&req->pool);
        return false;
    }
    req->method = h2o_iovec_init(method, mlen);
    req->path = h2o_iovec_init(path, plen);
    const char *q = memchr(path, '?', plen);
    req->query_at = q ? (size_t)(q - path) : SIZE_MAX;
    req->version = 0x101;
    req->authority = h2o_iovec_init(H2O_STRLIT("default"));
    for (size_t i = 0; i < nh; i++) {
        if (!h[i].name)
            continue; /* a folded line: h2o 2.2.5 drops it */
        h2o_strtolower((char *)h[i].name, h[i].name_len);
        if (h[i].name_len == 4 && memcmp(h[i].name, "host", 4) == 0)
            req->authority = h2o_iovec_init(h[i].value, h[i].value_len);
        if (h2o_special(h[i].name, h[i].name_len))
            continue;
        h2o_add_header_by_str(&req->pool, &req->headers, h[i].name, h[i].name_len, 1, NULL,
                              h[i].value, h[i].value_len);
    }
    if (body) /* the body follows the head in the same buffer */
        req->entity = h2o_iovec_init(buf + hn, in.n);
    W.script = script;
    W.script_n = script_n;
    if (hosts)
        gw.allowed = allowed;
    else
        gw.allowed.n = 0;
    return true;
}

/* The route the pipeline picks, to know which may wait without answering. */
static const struct gw_route *route_of(const h2o_req_t *req)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    for (size_t i = 0; i < gw_nroutes; i++) {
        struct gw_params p;
        const char *m = "";
        for (unsigned b = 0; b < 6; b++)
            if (gw_routes[i].method == 1u << b)
                m = names[b];
        if (h2o_memis(req->method.base, req->method.len, m, strlen(m)) &&
            gw_route_match(gw_routes[i].pattern, req->path.base, plen, &p))
            return &gw_routes[i];
    }
    return NULL;
}

/* The client leaves (or its answer is written): h2o disposes of the request and frees it. */
static void dispose(void)
{
    h2o_req_t *req = W.req;
    W.req = NULL;
    h2o_mem_clear_pool(&req->pool);
    free(req);
}

/* Runs every timer that is due once the client is gone; true when one ran. */
static bool run_timers(void)
{
    h2o_evloop_t *loop = gw.ctx.loop;
    bool ran = false;
    for (h2o_linklist_t *l = loop->_timeouts.next; l != &loop->_timeouts; l = l->next) {
        h2o_timeout_t *t = H2O_STRUCT_FROM_MEMBER(h2o_timeout_t, _link, l);
        if (!h2o_linklist_is_empty(&t->_entries)) {
            ran = true;
            h2o_timeout_run(loop, t, UINT64_MAX);
        }
    }
    return ran;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char why[128];
    (void)argc, (void)argv;
    log_init("gateway", LOG_LVL_ERROR, true);
    gw.ctx.loop = h2o_evloop_create();
    gw.gw.auth_cache_ttl_ms = 0; /* no cache: every input asks the bus, deterministically */
    gw.gw.sse_buffer = 65536;
    gw.gw.max_body = 2097152;
    gw.gw.public_url = NULL;
    gw.sessions = gw_sesscache_new(0, 0);
    snprintf(gw.listen_base, sizeof(gw.listen_base), "http://127.0.0.1:8787");
    if (gw_hosts_parse("api.example.com, localhost:8787", &allowed, why, sizeof(why)) != OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    h2o_req_t *req = calloc(1, sizeof(*req));
    if (!req)
        abort();
    memset(&W, 0, sizeof(W));
    if (!build_request(in, req)) {
        free(req);
        return 0;
    }
    W.req = req;
    const struct gw_route *route = route_of(req);
    bool may_wait =
        route && (route->handler == gw_on_worker_dequeue || route->handler == gw_on_run_suspend);
    bool left_unanswered = false;

    FUZZ_CHECK(gw_http_on_req(&gw, req) == 0);
    size_t steps = 0;
    for (;; steps++) {
        FUZZ_CHECK(steps < STEPS_MAX);
        if (W.req && W.dispose_now) {
            dispose();
        } else if (W.req && W.send_pending) {
            W.send_pending = false;
            W.gen->proceed(W.gen, W.req);
        } else if (W.qhead != W.qtail) {
            struct queued e = W.q[W.qhead++ % QMAX];
            deliver(&e);
        } else if (W.req) {
            /* nothing more will come while it waits: the client gives up */
            left_unanswered = W.answers == 0;
            dispose();
        } else if (!run_timers()) {
            break;
        }
    }
    FUZZ_CHECK(W.answers <= 1);
    FUZZ_CHECK(!left_unanswered || may_wait);
    if (W.streaming)
        check_sse(W.sse.p ? W.sse.p : "", W.sse.n);
    /* everything ended: no call, feed or timer outlives its request */
    FUZZ_CHECK(gw.inflight == 0);
    FUZZ_CHECK(gw_feeds_count(&gw) == 0);
    h2o_evloop_t *loop = gw.ctx.loop;
    for (h2o_linklist_t *l = loop->_timeouts.next; l != &loop->_timeouts; l = l->next)
        FUZZ_CHECK(
            h2o_linklist_is_empty(&H2O_STRUCT_FROM_MEMBER(h2o_timeout_t, _link, l)->_entries));
    jbuf_free(&W.sse);
    return 0;
}
