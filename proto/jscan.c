/*
 * jscan.c - a validating scanner of JSON text (see jscan.h). Recursive
 * descent over the grammar of RFC 8259; each function advances *i past one
 * token or value and answers false when the text does not match.
 */
#include "jscan.h"

#include <stdbool.h>
#include <string.h>

#include "jbuf.h"

struct jscan {
    const unsigned char *s;
    size_t n, i;
};

static bool jscan_value(struct jscan *j, unsigned depth);

static void jscan_ws(struct jscan *j)
{
    while (j->i < j->n &&
           (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static bool jscan_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool jscan_string(struct jscan *j)
{
    if (j->i >= j->n || j->s[j->i] != '"')
        return false;
    j->i++;
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c == '"') {
            j->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (j->i + 1 >= j->n)
                return false;
            c = j->s[j->i + 1];
            if (c == 'u') {
                if (j->n - j->i < 6)
                    return false;
                for (size_t k = 2; k < 6; k++)
                    if (!jscan_hex(j->s[j->i + k]))
                        return false;
                j->i += 6;
            } else if (c != '\0' && strchr("\"\\/bfnrt", c)) {
                j->i += 2;
            } else {
                return false;
            }
            continue;
        }
        size_t len = jbuf_utf8_len(j->s + j->i, j->n - j->i);
        if (len == 0)
            return false;
        j->i += len;
    }
    return false;
}

static bool jscan_digits(struct jscan *j)
{
    size_t start = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
        j->i++;
    return j->i > start;
}

static bool jscan_number(struct jscan *j)
{
    if (j->i < j->n && j->s[j->i] == '-')
        j->i++;
    if (j->i < j->n && j->s[j->i] == '0')
        j->i++;
    else if (!jscan_digits(j))
        return false;
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (!jscan_digits(j))
            return false;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        if (!jscan_digits(j))
            return false;
    }
    return true;
}

static bool jscan_word(struct jscan *j, const char *w)
{
    size_t k = strlen(w);
    if (j->n - j->i < k || memcmp(j->s + j->i, w, k) != 0)
        return false;
    j->i += k;
    return true;
}

/*
 * An object from its '{'. With names (top level only), records each member
 * value's span under its name.
 */
static bool jscan_object(struct jscan *j, unsigned depth, const char *const *names,
                         struct slice *vals, size_t nnames)
{
    j->i++; /* '{' */
    jscan_ws(j);
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
        return true;
    }
    for (;;) {
        size_t k0 = j->i;
        if (!jscan_string(j))
            return false;
        size_t k1 = j->i;
        jscan_ws(j);
        if (j->i >= j->n || j->s[j->i] != ':')
            return false;
        j->i++;
        jscan_ws(j);
        size_t v0 = j->i;
        if (!jscan_value(j, depth))
            return false;
        for (size_t m = 0; m < nnames; m++) {
            size_t len = strlen(names[m]);
            if (k1 - k0 == len + 2 && memcmp(j->s + k0 + 1, names[m], len) == 0)
                vals[m] = (struct slice){(const char *)j->s + v0, j->i - v0};
        }
        jscan_ws(j);
        if (j->i >= j->n)
            return false;
        if (j->s[j->i] == '}') {
            j->i++;
            return true;
        }
        if (j->s[j->i] != ',')
            return false;
        j->i++;
        jscan_ws(j);
    }
}

static bool jscan_array(struct jscan *j, unsigned depth)
{
    j->i++; /* '[' */
    jscan_ws(j);
    if (j->i < j->n && j->s[j->i] == ']') {
        j->i++;
        return true;
    }
    for (;;) {
        if (!jscan_value(j, depth))
            return false;
        jscan_ws(j);
        if (j->i >= j->n)
            return false;
        if (j->s[j->i] == ']') {
            j->i++;
            return true;
        }
        if (j->s[j->i] != ',')
            return false;
        j->i++;
        jscan_ws(j);
    }
}

/* One value at j->i (no leading whitespace); depth counts the containers around it. */
static bool jscan_value(struct jscan *j, unsigned depth)
{
    if (j->i >= j->n)
        return false;
    switch (j->s[j->i]) {
    case '{':
        return depth < JSCAN_DEPTH_MAX && jscan_object(j, depth + 1, NULL, NULL, 0);
    case '[':
        return depth < JSCAN_DEPTH_MAX && jscan_array(j, depth + 1);
    case '"':
        return jscan_string(j);
    case 't':
        return jscan_word(j, "true");
    case 'f':
        return jscan_word(j, "false");
    case 'n':
        return jscan_word(j, "null");
    default:
        return jscan_number(j);
    }
}

err_t jscan_members(const char *s, size_t n, const char *const *names, struct slice *vals,
                    size_t nnames)
{
    struct jscan j = {(const unsigned char *)s, n, 0};
    for (size_t m = 0; m < nnames; m++)
        vals[m] = SLICE_NULL;
    jscan_ws(&j);
    bool ok = j.i < j.n && j.s[j.i] == '{' && jscan_object(&j, 1, names, vals, nnames);
    if (ok)
        jscan_ws(&j);
    if (ok && j.i == j.n)
        return OK;
    for (size_t m = 0; m < nnames; m++)
        vals[m] = SLICE_NULL;
    return ERR_INVAL;
}
