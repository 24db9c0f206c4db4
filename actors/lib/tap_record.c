/*
 * tap_record.c - a tap record read and shown as a JSON line (tap_record.h).
 */
#include "tap_record.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mpjson.h"
#include "msg.h"

#define TAP_BODY_STR_MAX 256

static const char *tap_kind(uint8_t k)
{
    switch (k) {
    case ENV_REQUEST:
        return "request";
    case ENV_REPLY:
        return "reply";
    case ENV_ERROR:
        return "error";
    case ENV_EVENT:
        return "event";
    }
    return "?";
}

/* A name into a fixed buffer; one that does not fit is cut (names are ours, and short). */
static void tap_name(struct slice s, char *out, size_t cap)
{
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    if (n)
        memcpy(out, s.p, n);
    out[n] = '\0';
}

err_t tap_record_next(struct mp_reader *r, struct tap_record *rec)
{
    uint32_t fields;
    struct slice proc, peer, topic, extra;

    rec->bytes = 0;
    if (mp_read_array(r, &fields) != OK || fields < 7 || mp_read_uint(r, &rec->ts_ms) != OK ||
        mp_read_str(r, &proc) != OK || mp_read_uint(r, &rec->instance) != OK ||
        mp_read_str(r, &rec->dir) != OK || mp_read_str_or_nil(r, &peer) != OK ||
        mp_read_str_or_nil(r, &topic) != OK || mp_read_bin(r, &rec->envb) != OK)
        return ERR_PROTO;
    if (fields >= 8 && mp_read_uint(r, &rec->bytes) != OK)
        return ERR_PROTO;
    for (uint32_t i = 8; i < fields; i++) /* fields a later tap may add */
        if (mp_skip(r, &extra) != OK)
            return ERR_PROTO;
    if (!rec->bytes)
        rec->bytes = rec->envb.n;
    tap_name(proc, rec->proc, sizeof(rec->proc));
    rec->has_peer = peer.p != NULL;
    tap_name(peer, rec->peer, sizeof(rec->peer));
    rec->has_topic = topic.p != NULL;
    tap_name(topic, rec->topic, sizeof(rec->topic));
    return env_decode(rec->envb.p, rec->envb.n, &rec->env) == OK ? OK : ERR_INVAL;
}

bool tap_record_match(const struct tap_filter *f, const struct tap_record *rec)
{
    return tap_filter_match(f, rec->proc, rec->has_peer ? rec->peer : NULL,
                            rec->has_topic ? rec->topic : NULL, &rec->env, rec->envb.p,
                            rec->envb.n);
}

static void tap_json_kv(struct jbuf *out, const char *key, const char *v, size_t n)
{
    jbuf_fmt(out, ",\"%s\":", key);
    jbuf_str(out, v, n, 0);
}

void tap_record_json(const struct tap_record *rec, struct jbuf *out)
{
    const struct envelope *env = &rec->env;
    char ts[32], req[24];
    char *body = NULL;
    size_t bl;

    clock_iso8601(rec->ts_ms, ts, sizeof(ts));
    snprintf(req, sizeof(req), "%" PRIx64, env->req_id);
    jbuf_fmt(out, "{\"ts\":\"%s\"", ts);
    tap_json_kv(out, "proc", rec->proc, strlen(rec->proc));
    tap_json_kv(out, "dir", rec->dir.p, rec->dir.n);
    tap_json_kv(out, "peer", rec->peer, strlen(rec->peer));
    jbuf_fmt(out, ",\"type\":\"%s\",\"kind\":\"%s\",\"req\":\"%s\"", msg_name(env->type),
             tap_kind(env->kind), req);
    tap_json_kv(out, "trace", env->trace_id, strnlen(env->trace_id, sizeof(env->trace_id)));
    tap_json_kv(out, "sender", env->sender, strnlen(env->sender, sizeof(env->sender)));
    jbuf_fmt(out, ",\"attempt\":%u,\"deadline_ms\":%" PRIu64 ",\"bytes\":%" PRIu64,
             (unsigned)env->attempt, env->deadline_ms, rec->bytes);
    if (rec->has_topic)
        tap_json_kv(out, "topic", rec->topic, strlen(rec->topic));
    if (env->kind == ENV_ERROR) {
        jbuf_fmt(out, ",\"error\":\"%s\"", err_name(env->err_code));
        tap_json_kv(out, "message", env->err_msg.p ? env->err_msg.p : "", env->err_msg.n);
    }
    if (env->body.n == 0 ||
        mp_to_json_masked(env->body.p, env->body.n, TAP_BODY_STR_MAX, &body, &bl) != OK)
        jbuf_puts(out, ",\"body\":null}");
    else {
        jbuf_puts(out, ",\"body\":");
        jbuf_put(out, body, bl);
        jbuf_puts(out, "}");
    }
    free(body);
}
