/*
 * wire.c - what every handler shares of request fields and replies.
 *
 * Bodies are typed (proto/msg_run.h): a handler decodes its request in one
 * call and works on borrowed slices, copied here into bounded C strings
 * where SQL needs them; replies are encoded from their structs.
 */
#include <string.h>

#include "log.h"
#include "rm.h"

struct rm *rm_of(struct actor *a)
{
    return a->state;
}

bool rm_cstr(struct slice s, char *buf, size_t cap)
{
    /* a NUL inside would silently shorten what reaches SQL */
    if (!s.p || memchr(s.p, '\0', s.n) || slice_copy(s, buf, cap) != OK) {
        buf[0] = '\0';
        return false;
    }
    return true;
}

void rm_reply_msg(struct bus_req *req, const struct msg_form *f, const void *m,
                  const struct mp_writer *raw)
{
    struct mp_writer w;
    bool ok = !raw || mp_writer_err(raw) == OK;
    mp_writer_init(&w);
    if (ok)
        msg_encode(f, &w, m);
    if (ok && mp_writer_err(&w) == OK)
        (void)bus_reply(req, mp_writer_data(&w), mp_writer_len(&w));
    else
        (void)bus_reply_err(req, ERR_NOMEM, "could not encode the reply");
    mp_writer_fini(&w);
}

void rm_reply_store_err(struct bus_req *req, const char *op, err_t rc)
{
    if (rc == ERR_UNAVAIL) {
        (void)bus_reply_err(req, ERR_UNAVAIL,
                            "the run store (PostgreSQL) is unavailable; retry later");
        return;
    }
    /* db_pg logged the statement's failure; this line says which operation it broke */
    LOG_ERROR("run.store_failed", "%s: unexpected store result: %s", op, err_name(rc));
    (void)bus_reply_err(req, ERR_INTERNAL, "unexpected result from the run store");
}
