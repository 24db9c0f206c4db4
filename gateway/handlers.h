/*
 * handlers.h - every route handler, one h_<area>.c file per area. Each takes
 * a call that passed authentication and the generic checks (http.h) and
 * must finish it with one gw_respond* call.
 */
#ifndef TETHER_GW_HANDLERS_H
#define TETHER_GW_HANDLERS_H

#include "http.h"

/* h_auth.c */
void gw_on_jwt_claims(struct gw_call *c);
void gw_on_whoami(struct gw_call *c);

/* h_sessions.c */
void gw_on_session_create(struct gw_call *c);
void gw_on_session_get(struct gw_call *c);
void gw_on_session_update(struct gw_call *c);
void gw_on_session_close(struct gw_call *c);
void gw_on_session_end_and_continue(struct gw_call *c);
/* h_snapshot.c: the chat snapshot's presigned URLs, and the URL itself; h_transcript.c: the
 * transcript read from it. The snapshot is the session's document of this name (session.blob_*) */
#define GW_SNAPSHOT_NAME "snapshot.json"
void gw_on_snapshot_url(struct gw_call *c);
void gw_on_snapshot(struct gw_call *c);
void gw_on_session_transcript(struct gw_call *c);

/* console.c: GET /api/v1/console/processes, the supervisor's sv.status for the console */
void gw_on_console_processes(struct gw_call *c);
/* console_tap.c: GET /api/v1/console/tap, the bus tap as SSE for the console */
void gw_on_console_tap(struct gw_call *c);

/* h_sessions_list.c: GET /api/v1/sessions, served by the clickhouse-replicator */
void gw_on_session_list(struct gw_call *c);

/* h_dequeue.c: the worker API's dequeue, which long-polls (docs/workers.md) */
void gw_on_worker_dequeue(struct gw_call *c);
/* h_runs.c: the runs API and the rest of the worker API */
void gw_on_run_heartbeat(struct gw_call *c);
void gw_on_run_complete(struct gw_call *c);
void gw_on_run_fail(struct gw_call *c);
void gw_on_run_cancel(struct gw_call *c);
void gw_on_run_get(struct gw_call *c);

/* a session's channels (the contract's §5.7-§5.9, §6) and the S2 endpoint; the steps they
 * share are h_streams.c's (streams_int.h) */
/* h_realtime.c: append and the SSE subscription */
void gw_on_stream_subscribe(struct gw_call *c);
void gw_on_stream_append(struct gw_call *c);
/* h_records.c */
void gw_on_stream_records(struct gw_call *c);
/* h_s2.c: the S2 credentials (PUT) and the S2-compatible endpoint */
void gw_on_stream_init(struct gw_call *c);
void gw_on_s2_append(struct gw_call *c);
void gw_on_s2_read(struct gw_call *c);

/* waitpoints and runs that wait (docs/waitpoint-registry.md, docs/workers.md); what they share
 * is h_waitpoints.c's (waitpoints_int.h) */
/* h_waitpoints.c: a run waits on a session channel, a token or a duration */
void gw_on_session_stream_wait(struct gw_call *c);
void gw_on_run_wait_waitpoint(struct gw_call *c);
void gw_on_run_wait_duration(struct gw_call *c);
/* h_waitpoint_tokens.c */
void gw_on_token_create(struct gw_call *c);
void gw_on_token_list(struct gw_call *c);
void gw_on_token_get(struct gw_call *c);
void gw_on_token_complete(struct gw_call *c);
void gw_on_token_callback(struct gw_call *c);
/* h_run_suspend.c: a worker gives a blocked run back, or holds it */
void gw_on_run_suspend(struct gw_call *c);
/* A completed waitpoint of a msgpack waitpoint object, as a resumed run carries it. */
json_t *gw_wp_completed_json(struct slice m);

#endif
