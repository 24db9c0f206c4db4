/*
 * sse.c - the text/event-stream parser of sse.h.
 *
 * It follows the spec's algorithm line by line: a line ends at CRLF, LF or a
 * lone CR; a blank line dispatches the pending event; "field: value" lines
 * fill it. The only state carried between feeds is the partial line, the
 * pending event and whether the last byte was a CR.
 */
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* Makes room for `more` bytes plus a NUL; the caller has already checked the event cap. */
static int sse_buf_reserve(struct sse_buf *b, size_t more)
{
    size_t need = b->n + more + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np)
        return SSE_ERR_NOMEM;
    b->p = np;
    b->cap = cap;
    return 0;
}

static int sse_buf_append(struct sse_buf *b, const char *s, size_t n)
{
    int rc = sse_buf_reserve(b, n);
    if (rc != 0)
        return rc;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

void sse_init(struct sse_parser *p, size_t max_event, sse_event_cb cb, void *arg)
{
    memset(p, 0, sizeof(*p));
    p->_cb = cb;
    p->_arg = arg;
    p->_max = max_event;
}

void sse_reset(struct sse_parser *p)
{
    p->_line.n = 0;
    p->_data.n = 0;
    p->_type[0] = '\0';
    p->_type_too_long = false;
    p->_id[0] = '\0';
    p->_cr = false;
}

void sse_fini(struct sse_parser *p)
{
    free(p->_line.p);
    free(p->_data.p);
    memset(p, 0, sizeof(*p));
}

/* A blank line: hand over the pending event (if it has data) and start the next one. */
static int sse_dispatch(struct sse_parser *p)
{
    int rc = 0;
    /* The spec dispatches nothing for an event without a data: line, and drops its type too. */
    if (p->_data.n > 0 && !p->_type_too_long) {
        struct sse_event ev;
        p->_data.n--; /* every data: line appended a "\n"; the last one is not part of the data */
        p->_data.p[p->_data.n] = '\0';
        ev.type = p->_type[0] ? p->_type : "message";
        ev.data = p->_data.p;
        ev.data_len = p->_data.n;
        ev.id = p->_id;
        rc = p->_cb(p->_arg, &ev);
    }
    p->_data.n = 0;
    p->_type[0] = '\0';
    p->_type_too_long = false;
    return rc;
}

static int sse_field(struct sse_parser *p, const char *name, size_t name_len, const char *val,
                     size_t val_len)
{
    if (name_len == 4 && memcmp(name, "data", 4) == 0) {
        if (p->_line.n + p->_data.n + val_len + 1 > p->_max)
            return SSE_ERR_TOOBIG;
        int rc = sse_buf_append(&p->_data, val, val_len);
        return rc != 0 ? rc : sse_buf_append(&p->_data, "\n", 1);
    }
    if (name_len == 5 && memcmp(name, "event", 5) == 0) {
        /* An over-long name can match no listener: remember that, rather than cut it into one */
        p->_type_too_long = val_len >= sizeof(p->_type);
        if (!p->_type_too_long) {
            memcpy(p->_type, val, val_len);
            p->_type[val_len] = '\0';
        }
        return 0;
    }
    if (name_len == 2 && memcmp(name, "id", 2) == 0) {
        /* The spec ignores an id containing NUL; an over-long one is ignored the same way. */
        if (val_len < sizeof(p->_id) && !memchr(val, '\0', val_len)) {
            memcpy(p->_id, val, val_len);
            p->_id[val_len] = '\0';
        }
        return 0;
    }
    return 0; /* retry: and unknown fields are ignored */
}

/* One complete line (without its terminator). */
static int sse_line(struct sse_parser *p, const char *s, size_t n)
{
    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        return 0; /* comment (servers use them as keep-alives) */
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return sse_field(p, s, n, "", 0);
    size_t name_len = (size_t)(colon - s);
    const char *val = colon + 1;
    size_t val_len = n - name_len - 1;
    if (val_len > 0 && val[0] == ' ') { /* exactly one space after the colon is syntax */
        val++;
        val_len--;
    }
    return sse_field(p, s, name_len, val, val_len);
}

int sse_feed(struct sse_parser *p, const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p->_cr && buf[i] == '\n') {
            /* the LF of a CRLF whose CR ended the previous feed (or the previous line) */
            p->_cr = false;
            i++;
            continue;
        }
        p->_cr = false;
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r')
            j++;
        if (j > i) {
            /* The line and the pending data together are what one event costs in memory. */
            if (p->_line.n + (j - i) + p->_data.n > p->_max)
                return SSE_ERR_TOOBIG;
            int rc = sse_buf_append(&p->_line, buf + i, j - i);
            if (rc != 0)
                return rc;
        }
        if (j == n)
            break; /* the line goes on in the next feed */
        p->_cr = buf[j] == '\r';
        /* Take the line out of the buffer before handling it: a dispatch may not see it. */
        size_t len = p->_line.n;
        p->_line.n = 0;
        int rc = sse_line(p, len ? p->_line.p : "", len);
        if (rc != 0)
            return rc;
        i = j + 1;
    }
    return 0;
}
