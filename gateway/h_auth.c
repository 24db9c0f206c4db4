/*
 * h_auth.c - authentication endpoints.
 *
 * POST /api/v1/auth/jwt/claims (secret key): the claims an SDK client signs
 * into its own public tokens, {"sub": <environment id>, "pub": true}.
 * GET /api/v1/auth/whoami (secret key or token): Tether's own; says which
 * environment and scopes a credential carries, without any key, so a
 * developer can see why a token is refused.
 */
#include "auth.h"
#include "handlers.h"
#include "http.h"

void gw_on_jwt_claims(struct gw_call *c)
{
    gw_respond_json(c, 200, json_pack("{s:s,s:b}", "sub", c->auth.env.id, "pub", 1), 0);
}

void gw_on_whoami(struct gw_call *c)
{
    json_t *scopes = json_array();
    for (unsigned i = 0; i < c->auth.nscopes; i++)
        json_array_append_new(scopes, json_string(c->auth.scopes[i]));
    gw_respond_json(c, 200,
                    json_pack("{s:s,s:{s:s,s:s,s:s,s:s},s:o}", "credential",
                              c->auth.kind == GW_AUTH_JWT ? "public_token" : "secret_key",
                              "environment", "id", c->auth.env.id, "type", c->auth.env.type,
                              "organization_id", c->auth.env.org_id, "project_id",
                              c->auth.env.project_id, "scopes", scopes),
                    0);
}
