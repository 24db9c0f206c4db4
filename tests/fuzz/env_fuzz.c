/*
 * env_fuzz.c - libFuzzer target for the wire decoders: env_decode (with a
 * re-encode round trip), mp_skip, mp_to_json and mp_to_json_masked, and mp_cut (the tap's
 * copy).
 *
 * Feeds: the whole input as one bus message (an envelope, or any msgpack).
 * Checks: a decoded envelope's slices lie in the input, its kind agrees with its
 * error code, and it encodes and decodes back to itself; what mp_skip skips is the
 * whole envelope; mp_to_json renders only what mp_skip accepts, and what it renders
 * is valid JSON of the length it reports; mp_cut accepts exactly what mp_to_json accepts, and
 * its copy renders (masked or not) as the input does; an envelope with its body cut in place
 * (mp_cut_element, what the tap sends) decodes to the same fields and a body that renders alike.
 * Built and run by make fuzz (tests/fuzz/README.md); tests/golden/ holds valid
 * envelopes it starts from.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "mp.h"
#include "mpcut.h"
#include "mpjson.h"

#define check(cond) FUZZ_CHECK(cond) /* libFuzzer saves the input as a crash */

static int env_same(const struct envelope *a, const struct envelope *b)
{
    return a->version == b->version && a->kind == b->kind && a->type == b->type &&
           a->req_id == b->req_id && strcmp(a->trace_id, b->trace_id) == 0 &&
           strcmp(a->sender, b->sender) == 0 && a->deadline_ms == b->deadline_ms &&
           a->attempt == b->attempt && a->err_code == b->err_code &&
           (a->err_msg.p == NULL) == (b->err_msg.p == NULL) && a->err_msg.n == b->err_msg.n &&
           (a->err_msg.n == 0 || memcmp(a->err_msg.p, b->err_msg.p, a->err_msg.n) == 0) &&
           a->body.n == b->body.n &&
           (a->body.n == 0 || memcmp(a->body.p, b->body.p, a->body.n) == 0);
}

/* Whether two bodies render alike at the tap's limit (both nil, or both render and match). */
static int render_same(struct slice a, struct slice b)
{
    char *ja = NULL, *jb = NULL;
    size_t na = 0, nb = 0;
    if (a.n == 0 || b.n == 0)
        return a.n == b.n;
    int same = mp_to_json(a.p, a.n, 64, &ja, &na) == OK && mp_to_json(b.p, b.n, 64, &jb, &nb) == OK &&
               na == nb && memcmp(ja, jb, na) == 0;
    free(ja);
    free(jb);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope e, e2;
    struct mp_reader r;
    struct slice raw;
    char *out;
    size_t len;
    const char *lo = (const char *)data, *hi = lo + size;

    mp_reader_init(&r, data, size);
    err_t skip_rc = mp_skip(&r, &raw);
    check(skip_rc == OK || skip_rc == ERR_PROTO);

    err_t rc = env_decode(data, size, &e);
    check(rc == OK || rc == ERR_PROTO);
    if (rc == OK) {
        /* the depth cap restarts at the body, so only a successful skip is checked */
        check(skip_rc != OK || raw.n == size);
        check(e.body.n == 0 || (e.body.p >= lo && e.body.p + e.body.n <= hi));
        check(e.err_msg.p == NULL || (e.err_msg.p >= lo && e.err_msg.p + e.err_msg.n <= hi));
        check((e.kind == ENV_ERROR) == (e.err_code != OK));

        struct mp_writer w;
        mp_writer_init(&w);
        check(env_encode(&w, &e) == OK);
        check(env_decode(mp_writer_data(&w), mp_writer_len(&w), &e2) == OK);
        check(env_same(&e, &e2));
        mp_writer_fini(&w);

        /* the tap's copy, its body cut in place: an envelope with the same fields whose body
         * renders as the original's (when the cut takes the input at all, as the tap needs) */
        mp_writer_init(&w);
        if (mp_cut_element(data, size, ENV_BODY_INDEX, 64, &w) == OK) {
            check(env_decode(mp_writer_data(&w), mp_writer_len(&w), &e2) == OK);
            struct slice cut_body = e2.body;
            e2.body = e.body;
            check(env_same(&e, &e2));
            check(render_same(e.body, cut_body));
        }
        mp_writer_fini(&w);
    }

    for (int masked = 0; masked <= 1; masked++) {
        out = NULL;
        rc = masked ? mp_to_json_masked(data, size, 64, &out, &len)
                    : mp_to_json(data, size, 64, &out, &len);
        check(rc == OK || rc == ERR_PROTO);
        if (rc == OK) {
            /* both count nesting as mp_skip does (keys and masked values included) */
            check(skip_rc == OK);
            check(out != NULL && strlen(out) == len);
            check(fuzz_json_valid(out, len)); /* NaN, keys, cut strings: still JSON */
        }
        if (rc == OK) {
            /* the tap's cut copy shows a listener what the whole message would */
            struct mp_writer c;
            char *cut_out = NULL;
            size_t cut_len;
            mp_writer_init(&c);
            check(mp_cut(data, size, 64, &c) == OK);
            check((masked ? mp_to_json_masked : mp_to_json)(mp_writer_data(&c), mp_writer_len(&c),
                                                            64, &cut_out, &cut_len) == OK);
            check(cut_len == len && memcmp(cut_out, out, len) == 0);
            free(cut_out);
            mp_writer_fini(&c);
        } else {
            struct mp_writer c;
            mp_writer_init(&c);
            check(mp_cut(data, size, 64, &c) == ERR_PROTO);
            mp_writer_fini(&c);
        }
        free(out);
    }
    return 0;
}
