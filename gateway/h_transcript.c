/*
 * h_transcript.c - GET /api/v1/sessions/:session/transcript?limit=&before=:
 * one page of a chat.agent session's persisted transcript (the contract's
 * §15, the SDK's getSessionTranscript), read from the chat snapshot the agent
 * stored through its presigned URL (h_snapshot.c). Secret key only, as the
 * SDK documents: the snapshot's header holds the agent's private runtime
 * state, which this route never returns.
 *
 * The snapshot is the SDK's version 2 blob (a header line with the cursors
 * and the state, one JSON entry {id, final, message} per line, an index
 * footer, a fixed trailer "#tt2:...") or a version 1 JSON document
 * {version: 1, messages: [...]}. A page is the SDK's pageTranscriptEntries:
 * the entries before `before` (none when the transcript no longer holds that
 * id), the last `limit` of them (no limit when absent or not positive), oldest
 * first, and nextCursor, the id to pass as `before` for the page before, when
 * there is one. Malformed entry lines are skipped, as the SDK skips them.
 */
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "handlers.h"
#include "mem.h"
#include "msg.h"
#include "msg_session.h"
#include "sessref.h"

/* What the call carries between its steps (c->state). */
struct gw_transcript {
    long long limit; /* <= 0: none */
    char before[GW_PARAM_MAX];
    bool has_before;
    char friendly[128];
};

/* The cursors a snapshot's header (or version 1 document) names: {lastOutEventId?, lastInEventId?}.
 */
static json_t *gw_transcript_cursors(const json_t *from)
{
    static const char *const keys[] = {"lastOutEventId", "lastInEventId"};
    json_t *cursors = json_object();
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(from, keys[i]);
        if (json_is_string(v))
            json_object_set(cursors, keys[i], v);
    }
    return cursors;
}

/* An entry of the SDK's version 2 blob: {id, final, message} with message.id == id. */
static json_t *gw_transcript_entry(const char *line, size_t n)
{
    json_t *e = json_loadb(line, n, JSON_DECODE_ANY, NULL);
    json_t *id = json_object_get(e, "id"), *m = json_object_get(e, "message");
    if (!json_is_string(id) || json_string_length(id) == 0 || !json_is_object(m) ||
        !json_equal(json_object_get(m, "id"), id)) {
        json_decref(e);
        return NULL;
    }
    return e;
}

/*
 * The entries of a snapshot, oldest first ({id, message}), and its cursors; NULL when it is no
 * snapshot the SDK could read.
 */
static json_t *gw_transcript_parse(const char *p, size_t n, json_t **cursors)
{
    json_t *entries = json_array();
    *cursors = NULL;
    if (n >= 6 && memcmp(p, "{\"v\":2", 6) == 0) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) {
            json_decref(entries);
            return NULL;
        }
        json_t *header = json_loadb(p, (size_t)(nl - p), 0, NULL);
        *cursors = gw_transcript_cursors(header);
        json_decref(header);
        for (const char *line = nl + 1; line < p + n;) {
            const char *end = memchr(line, '\n', (size_t)(p + n - line));
            size_t len = end ? (size_t)(end - line) : (size_t)(p + n - line);
            json_t *e;
            /* the footer and the trailer are no entries: neither passes the entry check */
            if (len > 0 && line[0] == '{' && (e = gw_transcript_entry(line, len)))
                json_array_append_new(entries, e);
            line += len + 1;
        }
        return entries;
    }
    /* version 1: one JSON document; every message is a final entry */
    json_t *doc = json_loadb(p, n, 0, NULL), *msgs = json_object_get(doc, "messages");
    if (!json_is_object(doc) || !json_is_array(msgs)) {
        json_decref(doc);
        json_decref(entries);
        return NULL;
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *id = json_object_get(m, "id");
        if (json_is_object(m) && json_is_string(id) && json_string_length(id) > 0)
            json_array_append_new(entries, json_pack("{s:O,s:O}", "id", id, "message", m));
    }
    *cursors = gw_transcript_cursors(doc);
    json_decref(doc);
    return entries;
}

static void gw_transcript_on_blob(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_transcript *t = c->state;
    struct mp_reader v;
    struct slice body;
    json_t *cursors = NULL, *entries = NULL;
    if (rc == ERR_NOTFOUND) { /* never persisted: an empty transcript */
        gw_respond_json(c, 200, json_pack("{s:[]}", "messages"), 0);
        return;
    }
    if (rc != OK) {
        gw_respond_err(c, rc, "session.blob_get");
        return;
    }
    if (mp_map_find(env->body.p, env->body.n, "body", &v) == OK && mp_read_bin(&v, &body) == OK)
        entries = gw_transcript_parse(body.p, body.n, &cursors);
    if (!entries) { /* a snapshot the SDK would ignore too */
        gw_respond_json(c, 200, json_pack("{s:[]}", "messages"), 0);
        return;
    }
    size_t end = json_array_size(entries), start = 0;
    if (t->has_before) {
        size_t i;
        json_t *e;
        end = SIZE_MAX;
        json_array_foreach(entries, i, e)
        {
            if (end == SIZE_MAX &&
                strcmp(json_string_value(json_object_get(e, "id")), t->before) == 0)
                end = i;
        }
        if (end == SIZE_MAX)
            end = start = 0; /* the transcript no longer holds that id: an empty page */
    }
    json_t *out = json_object(), *msgs = json_array();
    if (t->limit > 0 && end > (size_t)t->limit) {
        start = end - (size_t)t->limit;
        json_object_set(out, "nextCursor", json_object_get(json_array_get(entries, start), "id"));
    }
    for (size_t i = start; i < end; i++)
        json_array_append(msgs, json_object_get(json_array_get(entries, i), "message"));
    json_object_set_new(out, "messages", msgs);
    if (cursors && json_object_size(cursors) > 0)
        json_object_set(out, "cursors", cursors);
    json_decref(cursors);
    json_decref(entries);
    gw_respond_json(c, 200, out, 0);
}

static void gw_transcript_on_session(void *arg, err_t rc, const struct envelope *env)
{
    struct gw_call *c = arg;
    struct gw_transcript *t = c->state;
    struct slice s;
    struct mp_writer w;
    if (!gw_session_reply(c, rc, env, &s, "Session not found", GW_NO_RETRY, "session.get"))
        return;
    if (!gw_sess_str(s, "friendly_id", t->friendly, sizeof(t->friendly))) {
        gw_respond_err(c, ERR_PROTO, "session.get");
        return;
    }
    struct msg_session_blob_get m = {msg_str(c->auth.env.id), msg_str(t->friendly),
                                     msg_str(GW_SNAPSHOT_NAME)};
    mp_writer_init(&w);
    msg_encode(&msg_session_blob_get_form, &w, &m);
    rc = mp_writer_err(&w);
    if (rc == OK)
        rc = gw_call_bus(c, GW_ACTOR_SESSION_MANAGER, MSG_SESSION_BLOB_GET, mp_writer_data(&w),
                         mp_writer_len(&w), gw_transcript_on_blob);
    mp_writer_fini(&w);
    if (rc != OK)
        gw_respond_err(c, rc, "session.blob_get");
}

void gw_on_session_transcript(struct gw_call *c)
{
    struct gw_transcript *t = xcalloc(1, sizeof(*t));
    char limit[24];
    c->state = t;
    if (gw_query(c->req, "limit", limit, sizeof(limit))) {
        char *end = NULL;
        t->limit = strtoll(limit, &end, 10);
        if (!limit[0] || !end || *end) {
            gw_respond_error(c, 400, "limit must be an integer", GW_NO_RETRY);
            return;
        }
    }
    t->has_before = gw_query(c->req, "before", t->before, sizeof(t->before));
    err_t rc = gw_session_lookup_cached(c, gw_transcript_on_session);
    if (rc != OK)
        gw_respond_err(c, rc, "session.get");
}
