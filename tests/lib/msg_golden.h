/*
 * msg_golden.h - golden files of typed message bodies (proto/msgcodec.h), for unit tests.
 *
 * MSG_GOLDEN(form, name, sample) checks that encoding the struct sample gives exactly the
 * bytes of tests/golden/msg/<name>.mp, and that decoding the file and encoding again gives
 * the same bytes (a field the table lost, or one read into the wrong member, shows). Run
 * from the repository root. With TETHER_GOLDEN_WRITE=1 the file is written first: for a new
 * message, or a change of a body that is meant (then the diff of the file is reviewed).
 * msg_golden_again checks a round trip without a file.
 */
#ifndef TETHER_TESTS_MSG_GOLDEN_H
#define TETHER_TESTS_MSG_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msgcodec.h"
#include "t.h"

static inline unsigned char *msg_golden_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long len;
    *n = 0;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len)
        *n = (size_t)len;
    else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static inline void msg_golden_check(const struct msg_form *f, const char *name, const void *sample,
                                    size_t size)
{
    char path[256], what[320];
    struct mp_writer w, again;
    size_t n = 0;

    snprintf(path, sizeof(path), "tests/golden/msg/%s.mp", name);
    mp_writer_init(&w);
    msg_encode(f, &w, sample);
    T_OK(mp_writer_err(&w));
    const char *gw = getenv("TETHER_GOLDEN_WRITE");
    if (gw && strcmp(gw, "1") == 0) {
        FILE *out = fopen(path, "wb");
        T_ASSERT(out && fwrite(mp_writer_data(&w), 1, mp_writer_len(&w), out) == mp_writer_len(&w));
        if (out)
            fclose(out);
    }
    unsigned char *file = msg_golden_read(path, &n);
    snprintf(what, sizeof(what), "%s: the encoding is %s byte for byte", f->name, path);
    t_check(file && n == mp_writer_len(&w) && memcmp(file, mp_writer_data(&w), n) == 0, __FILE__,
            __LINE__, what);

    void *back = calloc(1, size);
    snprintf(what, sizeof(what), "%s: %s decodes", f->name, path);
    t_check(file && back && msg_decode(f, file, n, back) == OK, __FILE__, __LINE__, what);
    mp_writer_init(&again);
    if (file && back)
        msg_encode(f, &again, back);
    snprintf(what, sizeof(what), "%s: decoded and encoded again, the same bytes", f->name);
    t_check(file && mp_writer_len(&again) == n && memcmp(mp_writer_data(&again), file, n) == 0,
            __FILE__, __LINE__, what);
    mp_writer_fini(&again);
    mp_writer_fini(&w);
    free(back);
    free(file);
}

#define MSG_GOLDEN(form, name, sample) msg_golden_check(&(form), (name), &(sample), sizeof(sample))

/*
 * Encodes in with f and decodes the bytes into out (the decoder's code): what a receiver reads
 * of what a sender wrote. out borrows the bytes until the next call.
 */
static inline err_t msg_golden_again(const struct msg_form *f, const void *in, void *out)
{
    static struct mp_writer w;
    static bool open;
    if (!open)
        mp_writer_init(&w);
    open = true;
    mp_writer_reset(&w);
    msg_encode(f, &w, in);
    return msg_decode(f, mp_writer_data(&w), mp_writer_len(&w), out);
}

#endif
