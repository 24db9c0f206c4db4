/*
 * errmap.c - the one place an err_t becomes an HTTP status, and a status
 * the error text a client sees when no handler has a more precise one.
 */
#include "http.h"

int gw_errmap_status(err_t rc)
{
    switch (rc) {
    case OK:
        return 200;
    case ERR_INVAL:
    case ERR_PROTO:
        return 400;
    case ERR_UNAUTH:
        return 401;
    case ERR_DENIED:
        return 403;
    case ERR_NOTFOUND:
        return 404;
    case ERR_CONFLICT:
    case ERR_EXISTS:
        return 409;
    case ERR_TOOBIG:
        return 413;
    case ERR_UNAVAIL:
    case ERR_CLOSED:
        return 503;
    case ERR_TIMEOUT:
        return 504;
    case ERR_QUOTA:
        return 507;
    default:
        return 500;
    }
}

const char *gw_errmap_text(int status)
{
    switch (status) {
    case 400:
        return "Bad request";
    case 401:
        return "Invalid API Key";
    case 403:
        return "Unauthorized";
    case 404:
        return "Resource not found";
    case 409:
        return "Conflict";
    case 413:
        return "Request body too large";
    case 503:
    case 504:
        return "Service temporarily unavailable; retry";
    case 507:
        return "Stream storage quota of this environment is used up";
    default:
        return "Internal Server Error";
    }
}
