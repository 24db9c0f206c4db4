/*
 * query.c - the request's query string, read one name at a time (http.h).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/*
 * The value of ?name= in the request's query, '+' and %XX decoded: the last one when the name
 * repeats (the contract's §1.1 reads a query as a flat map, the last value winning), false when
 * it is absent. A value that does not fit in out, or holds %00, comes back as "" (which no
 * caller accepts) rather than cut short.
 */
bool gw_query(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    bool found = false;
    if (req->query_at == SIZE_MAX || cap == 0)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) >= nl && memcmp(q, name, nl) == 0 && (q + nl == e || q[nl] == '=')) {
            const char *v = q + nl + (q + nl < e ? 1 : 0);
            size_t o = 0;
            bool bad = false;
            for (; v < e && !bad; v++) {
                char ch = *v == '+' ? ' ' : *v;
                if (*v == '%' && e - v >= 3 && isxdigit((unsigned char)v[1]) &&
                    isxdigit((unsigned char)v[2])) {
                    char hex[3] = {v[1], v[2], 0};
                    ch = (char)strtol(hex, NULL, 16);
                    v += 2;
                }
                if (ch == '\0' || o + 1 >= cap)
                    bad = true;
                else
                    out[o++] = ch;
            }
            out[bad ? 0 : o] = '\0';
            found = true;
        }
        q = e + 1;
    }
    return found;
}
