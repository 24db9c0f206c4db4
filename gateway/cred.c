/*
 * cred.c - classifying the Authorization header (the contract's §3.1).
 * Pure: no I/O, no h2o, so the unit tests use it as it is.
 */
#include <string.h>

#include "auth.h"

enum gw_cred gw_auth_classify(const char *h, size_t len, const char **token, size_t *n)
{
    if (len >= 7 && memcmp(h, "Bearer ", 7) == 0) {
        h += 7;
        len -= 7;
    }
    *token = h;
    *n = len;
    if (len == 0)
        return GW_CRED_NONE;
    if (len >= 3 && memcmp(h, "pk_", 3) == 0)
        return GW_CRED_PUBLIC_KEY;
    if (len >= 3 && memcmp(h, "tr_", 3) == 0)
        return GW_CRED_SECRET;
    /* a public JWT: three parts and a payload that says pub: true (not yet verified) */
    struct gw_jwt_claims c;
    enum gw_cred kind = GW_CRED_SECRET;
    err_t rc = gw_jwt_parse(h, len, &c);
    if ((rc == OK && c.pub) || rc == ERR_DENIED) {
        /* a wrong algorithm is still a JWT: it must fail as one, not as an unknown key */
        kind = GW_CRED_JWT;
    }
    if (rc == OK)
        gw_jwt_claims_clear(&c);
    return kind;
}
