/*
 * ea.c - texts of the shared error codes (ea.h).
 */
#include "ea.h"

const char *ea_err_str(ea_err_t rc)
{
    switch (rc) {
    case EA_OK:
        return "ok";
    case EA_ERR_NOMEM:
        return "out of memory";
    case EA_ERR_NET:
        return "no usable answer from the server";
    case EA_ERR_HTTP:
        return "refused by the server";
    case EA_ERR_PROTO:
        return "answer does not follow the contract";
    case EA_ERR_TOOBIG:
        return "answer too big";
    case EA_ERR_ABORTED:
        return "aborted";
    case EA_ERR_STOPPED:
        return "stopped by the consumer";
    case EA_ERR_INVAL:
        return "invalid argument";
    }
    return "unknown error";
}
