/*
 * err.c - names and descriptions of the error codes in err.h.
 */
#include "err.h"

#include <stddef.h>

static const struct {
    const char *name;
    const char *text;
} err_table[] = {
    [OK] = {"OK", "success"},
    [ERR_NOMEM] = {"ERR_NOMEM", "out of memory"},
    [ERR_INVAL] = {"ERR_INVAL", "invalid argument"},
    [ERR_TIMEOUT] = {"ERR_TIMEOUT", "timed out"},
    [ERR_CLOSED] = {"ERR_CLOSED", "closed"},
    [ERR_PROTO] = {"ERR_PROTO", "protocol error"},
    [ERR_NOTFOUND] = {"ERR_NOTFOUND", "not found"},
    [ERR_CONFLICT] = {"ERR_CONFLICT", "conflict"},
    [ERR_UNAVAIL] = {"ERR_UNAVAIL", "unavailable"},
    [ERR_INTERNAL] = {"ERR_INTERNAL", "internal error"},
    [ERR_TOOBIG] = {"ERR_TOOBIG", "too large"},
    [ERR_DENIED] = {"ERR_DENIED", "permission denied"},
    [ERR_UNAUTH] = {"ERR_UNAUTH", "not authenticated"},
    [ERR_EXISTS] = {"ERR_EXISTS", "already exists"},
    [ERR_QUOTA] = {"ERR_QUOTA", "quota exceeded"},
};

const char *err_str(err_t code)
{
    if ((unsigned)code > ERR_MAX_CODE || err_table[code].text == NULL)
        return "unknown error";
    return err_table[code].text;
}

const char *err_name(err_t code)
{
    if ((unsigned)code > ERR_MAX_CODE || err_table[code].name == NULL)
        return "ERR_UNKNOWN";
    return err_table[code].name;
}
