/*
 * tap_filter_test.c - a tap listener's filter: each field's test, the wire map both ways, and
 * what a reader refuses.
 */
#include <string.h>

#include "envelope.h"
#include "msg.h"
#include "tap_filter.h"
#include "t.h"

static struct envelope env;
static struct mp_writer enc;

static void make_env(uint8_t kind, uint16_t type, err_t code, const char *body_key)
{
    struct mp_writer body;
    memset(&env, 0, sizeof(env));
    env.kind = kind;
    env.type = type;
    env.err_code = code;
    env.req_id = 7;
    snprintf(env.trace_id, sizeof(env.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    snprintf(env.sender, sizeof(env.sender), "gateway.0");
    mp_writer_init(&body);
    mp_put_map(&body, 2);
    mp_put_kv_str(&body, "env", "cmenv000001");
    mp_put_kv_str(&body, "key", body_key);
    env.body = (struct slice){mp_writer_data(&body), mp_writer_len(&body)};
    mp_writer_fini(&enc);
    mp_writer_init(&enc);
    (void)env_encode(&enc, &env);
    mp_writer_fini(&body);
    (void)env_decode(mp_writer_data(&enc), mp_writer_len(&enc), &env);
}

static bool match(const struct tap_filter *f, const char *proc, const char *peer)
{
    return tap_filter_match(f, proc, peer, NULL, &env, mp_writer_data(&enc), mp_writer_len(&enc));
}

T_TEST(fields)
{
    struct tap_filter f = {0};
    make_env(ENV_REQUEST, MSG_SESSION_GET, OK, "chat-42");
    T_ASSERT(tap_filter_empty(&f));
    T_ASSERT(match(&f, "session-manager", "gateway.0"));
    snprintf(f.actor, sizeof(f.actor), "gateway");
    T_ASSERT(match(&f, "gateway.1", "session-manager")); /* a prefix of the process */
    T_ASSERT(!match(&f, "session-manager", "run-manager"));
    snprintf(f.actor, sizeof(f.actor), "session-manager");
    T_ASSERT(match(&f, "gateway.0", "session-manager")); /* the peer */
    memset(&f, 0, sizeof(f));
    snprintf(f.type, sizeof(f.type), "session.get");
    T_ASSERT(match(&f, "x", "y"));
    snprintf(f.type, sizeof(f.type), "session.create");
    T_ASSERT(!match(&f, "x", "y"));
    memset(&f, 0, sizeof(f));
    snprintf(f.trace, sizeof(f.trace), "4bf92f3577b34da6a3ce929d0e0e4736");
    T_ASSERT(match(&f, "x", "y"));
    snprintf(f.trace, sizeof(f.trace), "00000000000000000000000000000000");
    T_ASSERT(!match(&f, "x", "y"));
    memset(&f, 0, sizeof(f));
    snprintf(f.session, sizeof(f.session), "chat-42");
    snprintf(f.env, sizeof(f.env), "cmenv000001");
    T_ASSERT(match(&f, "x", "y"));
    snprintf(f.session, sizeof(f.session), "chat-43");
    T_ASSERT(!match(&f, "x", "y"));
    T_ASSERT(!tap_filter_empty(&f));
}

T_TEST(status)
{
    struct tap_filter f = {0};
    snprintf(f.status, sizeof(f.status), "ok");
    make_env(ENV_REPLY, MSG_SESSION_GET, OK, "k");
    T_ASSERT(match(&f, "x", "y"));
    make_env(ENV_ERROR, MSG_SESSION_GET, ERR_NOTFOUND, "k");
    T_ASSERT(!match(&f, "x", "y"));
    snprintf(f.status, sizeof(f.status), "error");
    T_ASSERT(match(&f, "x", "y"));
    snprintf(f.status, sizeof(f.status), "ERR_NOTFOUND");
    T_ASSERT(match(&f, "x", "y"));
    snprintf(f.status, sizeof(f.status), "ERR_CONFLICT");
    T_ASSERT(!match(&f, "x", "y"));
    make_env(ENV_REQUEST, MSG_SESSION_GET, OK, "k");
    T_ASSERT(!match(&f, "x", "y")); /* a request has no status but "any" */
}

T_TEST(wire)
{
    struct tap_filter f = {0}, g;
    struct mp_writer w;
    snprintf(f.actor, sizeof(f.actor), "stream-broker");
    snprintf(f.session, sizeof(f.session), "chat-42");
    mp_writer_init(&w);
    tap_filter_put(&w, &f);
    T_OK(tap_filter_read(mp_writer_data(&w), mp_writer_len(&w), &g));
    T_ASSERT(memcmp(&f, &g, sizeof(f)) == 0);
    /* an unknown field is skipped; a value too long, a non-string, a NUL, a non-map refused */
    mp_writer_reset(&w);
    mp_put_map(&w, 2);
    mp_put_kv_str(&w, "later", "x");
    mp_put_kv_str(&w, "type", "bus.echo");
    T_OK(tap_filter_read(mp_writer_data(&w), mp_writer_len(&w), &g));
    T_STREQ(g.type, "bus.echo");
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    mp_writer_reset(&w);
    mp_put_map(&w, 1);
    mp_put_kv_str(&w, "session", big);
    T_ERR(tap_filter_read(mp_writer_data(&w), mp_writer_len(&w), &g), ERR_TOOBIG);
    mp_writer_reset(&w);
    mp_put_map(&w, 1);
    mp_put_kv_uint(&w, "actor", 1);
    T_ERR(tap_filter_read(mp_writer_data(&w), mp_writer_len(&w), &g), ERR_PROTO);
    mp_writer_reset(&w);
    mp_put_map(&w, 1);
    mp_put_str(&w, "env");
    mp_put_strn(&w, "a\0b", 3);
    T_ERR(tap_filter_read(mp_writer_data(&w), mp_writer_len(&w), &g), ERR_PROTO);
    mp_writer_reset(&w);
    mp_put_array(&w, 0);
    T_ERR(tap_filter_read(mp_writer_data(&w), mp_writer_len(&w), &g), ERR_PROTO);
    mp_writer_fini(&w);
}

T_TEST(names)
{
    struct tap_filter f = {0};
    for (unsigned i = 0; i < tap_filter_nnames; i++) {
        T_ASSERT(tap_filter_room(tap_filter_names[i]) > 0);
        T_OK(tap_filter_set(&f, tap_filter_names[i], "x"));
    }
    T_EQ(tap_filter_room("nope"), (size_t)0);
    T_ERR(tap_filter_set(&f, "nope", "x"), ERR_NOTFOUND);
    T_ERR(tap_filter_set(&f, "actor", ""), ERR_INVAL);
    char big[100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    T_ERR(tap_filter_set(&f, "actor", big), ERR_TOOBIG);
    T_OK(tap_filter_set(&f, "session", big));
}

int main(void)
{
    mp_writer_init(&enc);
    T_RUN(fields);
    T_RUN(status);
    T_RUN(wire);
    T_RUN(names);
    mp_writer_fini(&enc);
    return T_DONE();
}
