/*
 * session-manager - session rows, environments and API keys (PostgreSQL).
 *
 * It owns runtime environments and their secret keys (env.* messages,
 * env.c), session rows (session.* messages, session.c) and the documents a session
 * keeps (session.blob_*, blob.c).
 * The skeleton (actors/lib/actor.c) joins the bus, connects the store,
 * reports ready and answers health.ping; this file only names the routes.
 * One thread: every handler runs on the actor's loop. Routes marked once
 * are the non-idempotent writes (docs/session-manager.md): a re-sent
 * request gets its first answer back (actors/lib/actor.c).
 */
#include "actor.h"
#include "msg.h"
#include "sm.h"

static const struct actor_route sm_routes[] = {
    {.type = MSG_ENV_RESOLVE_KEY, .handle = sm_on_env_resolve_key},
    {.type = MSG_ENV_GET, .handle = sm_on_env_get},
    {.type = MSG_ENV_CREATE, .handle = sm_on_env_create, .once = true},
    {.type = MSG_ENV_ROTATE_KEY, .handle = sm_on_env_rotate_key, .once = true},
    {.type = MSG_ENV_BOOTSTRAP, .handle = sm_on_env_bootstrap},
    {.type = MSG_ENV_LIST, .handle = sm_on_env_list},
    {.type = MSG_SESSION_CREATE, .handle = sm_on_session_create, .once = true},
    {.type = MSG_SESSION_GET, .handle = sm_on_session_get},
    {.type = MSG_SESSION_UPDATE, .handle = sm_on_session_update, .once = true},
    {.type = MSG_SESSION_CLOSE, .handle = sm_on_session_close},
    {.type = MSG_SESSION_BLOB_PUT, .handle = sm_on_blob_put},
    {.type = MSG_SESSION_BLOB_GET, .handle = sm_on_blob_get},
};

static const struct actor_spec sm_spec = {
    .name = "session-manager",
    .stores = ACTOR_STORE_PG,
    .routes = sm_routes,
    .nroutes = sizeof(sm_routes) / sizeof(sm_routes[0]),
    .init = sm_session_init,
};

int main(int argc, char **argv)
{
    return actor_main(&sm_spec, argc, argv);
}
