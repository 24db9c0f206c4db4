/*
 * routes.c - the route table.
 *
 * One row per (method, path): the pipeline answers 405 with Allow when the
 * path matches rows of other methods only. Later issues add their rows
 * here; handlers live in h_<area>.c, matching and path parameters in path.c.
 */
#include "gw.h"
#include "handlers.h"
#include "http.h"

#define KIB 1024
#define ANY (GW_AUTH_SECRET | GW_AUTH_JWT)

const struct gw_route gw_routes[] = {
    {GW_POST, "/api/v1/auth/jwt/claims", 0, GW_BODY_RAW, GW_AUTH_SECRET, gw_on_jwt_claims},
    {GW_GET, "/api/v1/auth/whoami", 0, GW_BODY_RAW, ANY, gw_on_whoami},
    {GW_GET, "/api/v1/console/processes", 0, GW_BODY_RAW, GW_AUTH_SECRET, gw_on_console_processes},
    {GW_GET, "/api/v1/console/tap", 0, GW_BODY_RAW, GW_AUTH_SECRET, gw_on_console_tap},

    {GW_POST, "/api/v1/sessions", 32 * KIB, GW_BODY_JSON, ANY, gw_on_session_create},
    {GW_GET, "/api/v1/sessions", 0, GW_BODY_RAW, ANY, gw_on_session_list},
    {GW_GET, "/api/v1/sessions/:session", 0, GW_BODY_RAW, ANY, gw_on_session_get},
    {GW_PATCH, "/api/v1/sessions/:session", 32 * KIB, GW_BODY_JSON, ANY, gw_on_session_update},
    {GW_POST, "/api/v1/sessions/:session/close", 1 * KIB, GW_BODY_JSON, ANY, gw_on_session_close},
    {GW_POST, "/api/v1/sessions/:session/end-and-continue", 1 * KIB, GW_BODY_JSON, ANY,
     gw_on_session_end_and_continue},
    /* the chat snapshot (h_snapshot.c): presigned URLs, and the URL itself, whose signature is
     * the capability (no credential); a snapshot is at most 2 MiB */
    {GW_PUT, "/api/v1/sessions/:session/snapshot-url", 0, GW_BODY_RAW, ANY, gw_on_snapshot_url},
    {GW_GET, "/api/v1/sessions/:session/snapshot-url", 0, GW_BODY_RAW, ANY, gw_on_snapshot_url},
    {GW_PUT, "/api/v1/sessions/:session/snapshot", 2048 * KIB, GW_BODY_RAW, 0, gw_on_snapshot},
    {GW_GET, "/api/v1/sessions/:session/snapshot", 0, GW_BODY_RAW, 0, gw_on_snapshot},
    {GW_GET, "/api/v1/sessions/:session/transcript", 0, GW_BODY_RAW, GW_AUTH_SECRET,
     gw_on_session_transcript},

    {GW_POST, "/api/v1/workers/dequeue", 16 * KIB, GW_BODY_JSON, GW_AUTH_SECRET,
     gw_on_worker_dequeue},
    {GW_POST, "/api/v1/runs/:run/heartbeat", 4 * KIB, GW_BODY_RAW, ANY, gw_on_run_heartbeat},
    {GW_POST, "/api/v1/runs/:run/complete", 1024 * KIB, GW_BODY_RAW, ANY, gw_on_run_complete},
    {GW_POST, "/api/v1/runs/:run/fail", 64 * KIB, GW_BODY_RAW, ANY, gw_on_run_fail},
    {GW_POST, "/api/v2/runs/:run/cancel", 1 * KIB, GW_BODY_RAW, ANY, gw_on_run_cancel},
    {GW_GET, "/api/v3/runs/:run", 0, GW_BODY_RAW, ANY, gw_on_run_get},

    /* realtime: a session's channels (feed.c streams the SSE answers) */
    {GW_PUT, "/realtime/v1/sessions/:session/:io", 0, GW_BODY_RAW, ANY, gw_on_stream_init},
    {GW_GET, "/realtime/v1/sessions/:session/:io", 0, GW_BODY_RAW, ANY, gw_on_stream_subscribe},
    {GW_HEAD, "/realtime/v1/sessions/:session/:io", 0, GW_BODY_RAW, ANY, gw_on_stream_subscribe},
    /* append and the S2 append check their one limit, the metered size, themselves */
    {GW_POST, "/realtime/v1/sessions/:session/:io/append", 0, GW_BODY_RAW, ANY,
     gw_on_stream_append},
    {GW_GET, "/realtime/v1/sessions/:session/:io/records", 0, GW_BODY_RAW, ANY,
     gw_on_stream_records},
    /* a session's named side channels: the same routes on their own .in/.out pairs */
    {GW_PUT, "/realtime/v1/sessions/:session/channels/:channel/:io", 0, GW_BODY_RAW, ANY,
     gw_on_stream_init},
    {GW_GET, "/realtime/v1/sessions/:session/channels/:channel/:io", 0, GW_BODY_RAW, ANY,
     gw_on_stream_subscribe},
    {GW_HEAD, "/realtime/v1/sessions/:session/channels/:channel/:io", 0, GW_BODY_RAW, ANY,
     gw_on_stream_subscribe},
    {GW_POST, "/realtime/v1/sessions/:session/channels/:channel/:io/append", 0, GW_BODY_RAW, ANY,
     gw_on_stream_append},
    {GW_GET, "/realtime/v1/sessions/:session/channels/:channel/:io/records", 0, GW_BODY_RAW, ANY,
     gw_on_stream_records},
    /* the S2-compatible records endpoint that PUT above points agents at */
    {GW_POST, "/s2/v1/streams/:stream/records", 0, GW_BODY_JSON_PROTO, ANY, gw_on_s2_append},
    {GW_GET, "/s2/v1/streams/:stream/records", 0, GW_BODY_RAW, ANY, gw_on_s2_read},

    /* waitpoints (docs/waitpoint-registry.md): h_waitpoints.c, h_waitpoint_tokens.c and
     * h_run_suspend.c */
    {GW_POST, "/api/v1/runs/:run/session-streams/wait", 10 * KIB, GW_BODY_JSON, GW_AUTH_SECRET,
     gw_on_session_stream_wait},
    {GW_POST, "/api/v1/waitpoints/tokens", 10 * KIB, GW_BODY_JSON, ANY, gw_on_token_create},
    {GW_GET, "/api/v1/waitpoints/tokens", 0, GW_BODY_RAW, ANY, gw_on_token_list},
    {GW_GET, "/api/v1/waitpoints/tokens/:waitpoint", 0, GW_BODY_RAW, ANY, gw_on_token_get},
    {GW_POST, "/api/v1/waitpoints/tokens/:waitpoint/complete", 1024 * KIB, GW_BODY_RAW, ANY,
     gw_on_token_complete},
    /* a token's url: no credential, the hash is the capability */
    {GW_POST, "/api/v1/waitpoints/tokens/:waitpoint/callback/:hash", 1024 * KIB, GW_BODY_RAW, 0,
     gw_on_token_callback},
    {GW_POST, "/engine/v1/runs/:run/waitpoints/tokens/:waitpoint/wait", 1 * KIB, GW_BODY_RAW, ANY,
     gw_on_run_wait_waitpoint},
    {GW_POST, "/engine/v1/runs/:run/wait/duration", 4 * KIB, GW_BODY_JSON, ANY,
     gw_on_run_wait_duration},
    {GW_POST, "/api/v1/runs/:run/suspend", 4 * KIB, GW_BODY_RAW, ANY, gw_on_run_suspend},
};

const size_t gw_nroutes = sizeof(gw_routes) / sizeof(gw_routes[0]);
