/*
 * errmap.c - the one place an err_t becomes an HTTP status.
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
    default:
        return 500;
    }
}
