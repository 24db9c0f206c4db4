/*
 * msg.c - the message catalogue. The single source of truth for what each
 * message carries; `tetherctl proto-doc` renders it as docs/protocol.md.
 */
#include "msg.h"

#include <string.h>

const struct msg_def msg_catalogue[] = {
    {MSG_HEALTH_PING, "health.ping", MSG_K_REQUEST, "every actor", "{} (empty)",
     "{name: str, instance: uint, pid: uint, state: \"up\"|\"degraded\", store: "
     "\"ok\"|\"unreachable\", "
     "uptime_ms: uint}"},
    {MSG_BUS_ECHO, "bus.echo", MSG_K_REQUEST, "every actor", "{data: bin}",
     "{data: bin} (the request's data, unchanged)"},
    {MSG_BUS_FAULT, "bus.fault", MSG_K_EVENT, "supervisor (published)",
     "{target: str, drop: float 0-1, dup: float 0-1, delay_ms: uint, delay_rate: float 0-1}", ""},
    {MSG_BUS_TAP, "bus.tap", MSG_K_EVENT, "supervisor (published)",
     "{filters: [{actor?, type?, trace?, status?, session?, env?: str}]} (one per registered "
     "listener; tap_filter.h)",
     ""},
    {MSG_CLUSTER_MEMBERS, "cluster.members", MSG_K_EVENT, "supervisor (published)",
     "{self: str, leader: str, nodes: [{node: str, addr: str, leader: bool, fencing_token: uint, "
     "age_ms: uint, events: {<actor>: [tcp:// url]}}]} (every second; bus_cluster.c)",
     ""},
    {MSG_SV_STATUS, "sv.status", MSG_K_REQUEST, "supervisor", "{}",
     "{node: str, leader: bool, fencing_token: uint, cluster: cluster.members body | nil, "
     "children: [{name, state, pid, uptime_ms, restarts, leader_only, ready, last_exit, "
     "fault}]}"},
    {MSG_SV_START, "sv.start", MSG_K_REQUEST, "supervisor", "{name: str}", "{name, state}"},
    {MSG_SV_STOP, "sv.stop", MSG_K_REQUEST, "supervisor", "{name: str}", "{name, state}"},
    {MSG_SV_RESTART, "sv.restart", MSG_K_REQUEST, "supervisor", "{name: str}", "{name, state}"},
    {MSG_SV_KILL, "sv.kill", MSG_K_REQUEST, "supervisor", "{name: str, signal: uint}",
     "{name, state}"},
    {MSG_SV_FAULT_SET, "sv.fault_set", MSG_K_REQUEST, "supervisor",
     "{name: str, drop: float, dup: float, delay_ms: uint, delay_rate: float} (all zero clears)",
     "{fault: {target, drop, dup, delay_ms, delay_rate}}"},
    {MSG_SV_FAULT_LIST, "sv.fault_list", MSG_K_REQUEST, "supervisor", "{}",
     "{faults: [{target, drop, dup, delay_ms, delay_rate}]}"},
    {MSG_SV_TAP_FILTER, "sv.tap_filter", MSG_K_REQUEST, "supervisor",
     "{id: str (the listener's, 1-63 bytes), cancel?: bool, filter?: {actor?, type?, trace?, "
     "status?, session?, env?: str}} (renewed every second; gone 3 s after the last)",
     "{listeners: uint}"},

    /* An env object: {id, type: "DEVELOPMENT"|"STAGING"|"PRODUCTION"|"PREVIEW", slug,
     * organization_id, organization_slug, project_id, project_slug, parent_id: str|nil,
     * branch_name: str|nil, api_key, signing_keys: [str] (keys a JWT of this environment may be
     * signed with: its own current and grace-window keys, or its parent's for a branch),
     * created_at_ms} */
    {MSG_ENV_RESOLVE_KEY, "env.resolve_key", MSG_K_REQUEST, "session-manager",
     "{key: str, branch: str|nil (x-trigger-branch, for preview environments)}",
     "{env} | ERR_UNAUTH (no such key, or revoked past its grace window)"},
    {MSG_ENV_GET, "env.get", MSG_K_REQUEST, "session-manager", "{id: str}", "{env} | ERR_NOTFOUND"},
    {MSG_ENV_CREATE, "env.create", MSG_K_REQUEST, "session-manager",
     "{org: str, project: str, type: \"dev\"|\"stg\"|\"prod\"|\"preview\", parent_id: str|nil, "
     "branch: str|nil}",
     "{env} | ERR_EXISTS | ERR_INVAL"},
    {MSG_ENV_ROTATE_KEY, "env.rotate_key", MSG_K_REQUEST, "session-manager",
     "{id: str, grace_ms: uint|nil (default 24 h)}", "{env} (with the new key) | ERR_NOTFOUND"},
    {MSG_ENV_BOOTSTRAP, "env.bootstrap", MSG_K_REQUEST, "session-manager", "{}",
     "{env, created: bool} (the development environment of org/project \"default\")"},
    /* A session object: {id (cuid), friendly_id, external_id: str|nil, type, task_identifier,
     * trigger_config: JSON text, tags: JSON text (array), metadata: JSON text|nil,
     * current_run_id: str|nil (internal), current_run_version: uint, closed_at_ms: uint (0 =
     * open), closed_reason: str|nil, expires_at_ms: uint (0 = never), created_at_ms,
     * updated_at_ms}. JSON travels as text: the gateway validated it, the store keeps it. */
    {MSG_SESSION_CREATE, "session.create", MSG_K_REQUEST, "session-manager",
     "{env_id, org_id, project_id, env_type, type, external_id: str|nil, task_identifier, "
     "trigger_config: JSON text, tags: JSON text, metadata: JSON text|nil, expires_at_ms: uint}",
     "{session, is_cached: bool} (one atomic upsert on (environment, external_id); the cached "
     "path refreshes trigger_config only)"},
    {MSG_SESSION_GET, "session.get", MSG_K_REQUEST, "session-manager",
     "{env_id, ref: friendly id (session_...) or external id}", "{session} | ERR_NOTFOUND"},
    {MSG_SESSION_UPDATE, "session.update", MSG_K_REQUEST, "session-manager",
     "{env_id, ref, tags: JSON text|absent, metadata: JSON text|nil|absent}",
     "{session} | ERR_NOTFOUND"},
    {MSG_SESSION_CLOSE, "session.close", MSG_K_REQUEST, "session-manager",
     "{env_id, ref, reason: str|nil}",
     "{session} (the first close wins: closed_at and closed_reason are write-once; the reply "
     "comes once the stream-broker has sealed the session's streams, so no append is taken "
     "after it) | ERR_NOTFOUND | ERR_UNAVAIL (the seal failed: closed, retry the close)"},
    {MSG_SESSION_BLOB_PUT, "session.blob_put", MSG_K_REQUEST, "session-manager",
     "{env_id, ref: friendly id, name: 1-64 of [a-z0-9._-], content_type: str (1-255), body: bin "
     "(at most 2 MiB)}",
     "{size: uint} (replaces the session's document of that name) | ERR_NOTFOUND (no such "
     "session) | ERR_TOOBIG"},
    {MSG_SESSION_BLOB_GET, "session.blob_get", MSG_K_REQUEST, "session-manager",
     "{env_id, ref: friendly id, name}",
     "{content_type, body: bin, updated_at_ms: uint} | ERR_NOTFOUND (no session, or none stored)"},
    {MSG_SESSION_CHANGED, "session.changed", MSG_K_EVENT,
     "session-manager (close, update), run-manager (run.swap); on their events sockets",
     "{env_id, friendly_id, external_id: str|nil} on topic \"session.changed\": gateways drop "
     "their cached copy of the row (a latency path; the cache's TTL bounds a lost one)",
     ""},
    {MSG_ENV_LIST, "env.list", MSG_K_REQUEST, "session-manager", "{}",
     "{envs: [env without api_key and signing_keys]}"},

    /* Runs are named on the wire by their friendly id ("run_" + cuid) and scoped by env_id: a
     * run or session of another environment is ERR_NOTFOUND. Statuses in replies are the public
     * names (QUEUED, EXECUTING, REATTEMPTING, COMPLETED, FAILED, CANCELED, CRASHED,
     * SYSTEM_FAILURE, EXPIRED, TIMED_OUT...). A run object: {id, status, internal_status (the
     * stored PENDING, DEQUEUED...), task_identifier, payload: JSON text, output: JSON text|nil,
     * error: JSON text|nil, attempt: uint, max_attempts: uint, session_id: friendly id|nil,
     * session_key: external id or friendly id|nil, tags: JSON text (array), machine: str|nil,
     * queue: str|nil, idle_timeout_s: uint|nil, max_duration_s: uint|nil, ttl_s: uint|nil,
     * created_at_ms, updated_at_ms, started_at_ms (0 = never dequeued), completed_at_ms (0 =
     * not finished)}. Only a worker holding the lease (worker_id; nil skips the owner check)
     * may heartbeat, complete or fail a run: anything else is ERR_CONFLICT. */
    {MSG_RUN_ENSURE, "run.ensure", MSG_K_REQUEST, "run-manager",
     "{env_id, session_id: internal session id, reason: \"initial\"|\"continuation\"|"
     "\"upgrade\"|\"manual\"}",
     "{run_id: friendly id, triggered: bool} (the session's live run, or a new one triggered "
     "and claimed optimistically: api contract §11.2) | ERR_NOTFOUND (no such session) | "
     "ERR_INVAL (triggerConfig.basePayload is not an object) | ERR_CONFLICT (claim lost 3 "
     "times)"},
    {MSG_RUN_SWAP, "run.swap", MSG_K_REQUEST, "run-manager",
     "{env_id, session_id: internal session id, calling_run_id: friendly id, reason}",
     "{run_id: friendly id, swapped: bool} (a new continuation run replaces calling_run_id if "
     "that is still the session's run: §11.3; else the current run and swapped false) | "
     "ERR_NOTFOUND \"callingRunId not found in this environment\" (or no such session)"},
    {MSG_RUN_GET, "run.get", MSG_K_REQUEST, "run-manager", "{env_id, run: friendly id}",
     "{run} | ERR_NOTFOUND"},
    {MSG_RUN_CANCEL, "run.cancel", MSG_K_REQUEST, "run-manager", "{env_id, run: friendly id}",
     "{id: friendly id, status, canceled: bool (false: it had already finished)} | "
     "ERR_NOTFOUND"},
    {MSG_RUN_DEQUEUE, "run.dequeue", MSG_K_REQUEST, "run-manager",
     "{env_id, task_identifiers: [str] (1-100), max_runs: uint 1-50, worker_id: str (1-128), "
     "lease_ms: uint (0 = TETHER_RM_LEASE_DEFAULT)}",
     "{runs: [{id: friendly id, task_identifier, payload: JSON text, attempt, max_attempts, "
     "session_id: friendly id|nil, session_key: str|nil, idle_timeout_s: uint|nil, "
     "max_duration_s: uint|nil, machine: str|nil, queue: str|nil, tags: JSON text, "
     "lease_expires_at_ms}]} (oldest first; each now DEQUEUED and leased to worker_id; empty "
     "when nothing is queued)"},
    {MSG_RUN_HEARTBEAT, "run.heartbeat", MSG_K_REQUEST, "run-manager",
     "{env_id, run, worker_id: str|nil, lease_ms: uint (0 = default)}",
     "{lease_expires_at_ms} (DEQUEUED becomes EXECUTING) | ERR_CONFLICT (cancelled, finished, "
     "or the lease expired or belongs to another worker) | ERR_NOTFOUND"},
    {MSG_RUN_COMPLETE, "run.complete", MSG_K_REQUEST, "run-manager",
     "{env_id, run, worker_id: str|nil, output: JSON text|nil}",
     "{} (COMPLETED_SUCCESSFULLY) | ERR_CONFLICT | ERR_NOTFOUND | ERR_TOOBIG (over 4 MiB) | "
     "ERR_INVAL (output is not JSON: the store refuses it)"},
    {MSG_RUN_FAIL, "run.fail", MSG_K_REQUEST, "run-manager",
     "{env_id, run, worker_id: str|nil, error: JSON text|nil}",
     "{retrying: bool, attempt: uint} (queued again as attempt + 1 while attempt < "
     "max_attempts, else COMPLETED_WITH_ERRORS; nil error stores {message}) | ERR_CONFLICT | "
     "ERR_NOTFOUND | ERR_TOOBIG | ERR_INVAL (error is not JSON)"},
    {MSG_RUN_RELEASE, "run.release", MSG_K_REQUEST, "run-manager",
     "{env_id, worker_id: str, runs: [friendly id] (1-50)}",
     "{released: uint} (runs still leased to worker_id are queued again, same attempt: a "
     "long-poll whose client left before the runs reached it)"},
    {MSG_RUN_QUEUED, "run.queued", MSG_K_EVENT,
     "run-manager (published on run-manager.events.<instance>.ipc)",
     "{task_identifier: str} on topic \"run.queued.<env_id>\" (a run became dequeueable: "
     "claimed, retried or released)",
     ""},

    /* A stream is named by {env: environment id, key: the session's addressing key, io: "in" |
     * "out"}. A record object: {seq: uint (dense from 0 per stream), ts: uint (ms since the
     * epoch), headers: [[name: str, value: str]], body: bin}. Sizes: a record's metered size
     * (8 + 2 x headers + their bytes + body) is at most 1 MiB (proto/stream.h). */
    {MSG_STREAM_APPEND, "stream.append", MSG_K_REQUEST, "stream-broker",
     "{env, key, io, channel?: str|nil (a named side channel's pair), records: [{part_id: str|nil, "
     "headers: [[name, value]], body: bin}] (1-1000, "
     "appended atomically in order)}",
     "{seqs: [uint], dups: [bool] (true: part_id was seen within 5 min; seq is the original "
     "record's and nothing was appended), tail: uint (the next seq), ts: uint} | ERR_TOOBIG | "
     "ERR_INVAL | ERR_QUOTA (the environment's streams hold TETHER_SB_ENV_MAX_BYTES; nothing "
     "appended) | ERR_CLOSED (the session is sealed, nothing appended; message: the seal, "
     "stream.seal) | ERR_UNAVAIL (Redis, also when full)"},
    {MSG_STREAM_READ, "stream.read", MSG_K_REQUEST, "stream-broker",
     "{env, key, io, channel?, from: uint (first seq wanted), count: uint 1-1000}",
     "{records: [record] (seq >= from, oldest first; trimmed records are skipped; cut short to "
     "fit TETHER_BUS_RECV_MAX, at least one: continue from the last seq + 1 while below tail), "
     "tail: uint (the next seq), tail_ts: uint (ms of the last record, 0 when none)}"},
    {MSG_STREAM_PEEK, "stream.peek", MSG_K_REQUEST, "stream-broker",
     "{env, key, io, channel?, count: uint 1-16}",
     "{records: [record] (the last count, oldest first), tail: uint, tail_ts: uint}"},
    {MSG_STREAM_TRIM, "stream.trim", MSG_K_REQUEST, "stream-broker",
     "{env, key, io, channel?, before: uint}",
     "{tail: uint} (records with seq < before are deleted; seqs are never reused)"},
    {MSG_STREAM_SEAL, "stream.seal", MSG_K_REQUEST, "stream-broker",
     "{env, key: the session's addressing key, reason: str|nil}",
     "{sealed: true} (every stream of the session, its channels' too, refuses every later append "
     "with ERR_CLOSED, "
     "message \"0\" or \"1<reason>\"; idempotent, never lifted)"},
    {MSG_STREAM_FOLLOW, "stream.follow", MSG_K_REQUEST, "stream-broker",
     "{holder: str 1-96 (the process and its boot: one lease each), ttl_ms: uint 0-300000 (0 "
     "ends holder's lease), streams: [{env, key, io, channel?}] 1-256}",
     "{added: [bool] (per stream: the lease is new, so records appended before it were not "
     "published to holder: read them)} (stream.record events of a stream are published only "
     "while some lease on it is unexpired)"},
    {MSG_RATE_TAKE, "rate.take", MSG_K_REQUEST, "stream-broker",
     "{env, group: 1-32 of [a-z], burst: uint, per_s: uint (tokens a second), cost: uint|absent "
     "(1)}",
     "{allowed: bool, limit: uint (burst), remaining: uint, reset_ms: uint (unix ms: when a take "
     "can succeed if refused, when the bucket is full if taken), retry_after_ms: uint} "
     "(one Redis bucket per environment and group, tether:rate:{env}:<group>)"},
    {MSG_STREAM_RECORD, "stream.record", MSG_K_EVENT,
     "stream-broker (published on stream-broker.events.<instance>.ipc)",
     "{env, key, io, record} on the stream's topic (proto/stream.h), only while the stream has a "
     "follow lease (stream.follow); a latency path only: subscribers back-fill gaps with "
     "stream.read",
     ""},
    /* A waitpoint object: {id: friendly id (waitpoint_...), kind: "MANUAL"|"SESSION_STREAM"|
     * "DURATION", status: "PENDING"|"COMPLETED"|"TIMED_OUT", output: str|nil, output_type: str,
     * output_is_error: bool, idempotency_key: str|nil, idempotency_key_expires_at_ms: uint (0 =
     * none), tags: JSON text (array), timeout_at_ms: uint (0 = none), created_at_ms,
     * completed_at_ms (0 = pending), run: friendly run id|nil, key: str|nil, io: str|nil,
     * from_seq: uint|nil, env_id}.
     * Scoped by env_id: a waitpoint of another environment is ERR_NOTFOUND. */
    {MSG_WP_CREATE, "wp.create", MSG_K_REQUEST, "waitpoint-registry",
     "{env_id, kind: \"MANUAL\"|\"SESSION_STREAM\"|\"DURATION\", run: friendly id|nil, key: "
     "addressing key (SESSION_STREAM), io: \"in\"|\"out\" (SESSION_STREAM), from_seq: uint "
     "(SESSION_STREAM: the first seq that wakes it, lastSeqNum + 1 or 0), timeout_at_ms: uint (0 = "
     "none; DURATION: when it completes), idempotency_key: str|nil (1-2048), idempotency_ttl_ms: "
     "uint (0 = never expires), tags: [str] (0-10, each 1-128)}",
     "{waitpoint, is_cached: bool} (SESSION_STREAM, not cached: registered in Redis and "
     "race-checked from from_seq before the reply, so it may already be COMPLETED) | ERR_INVAL"},
    {MSG_WP_COMPLETE, "wp.complete", MSG_K_REQUEST, "waitpoint-registry",
     "{env_id, id: friendly id, output: str|nil (JSON text), output_type: str|nil}",
     "{waitpoint, completed: bool (false: it had completed or timed out already; write-once)} | "
     "ERR_NOTFOUND (no such MANUAL waitpoint)"},
    {MSG_WP_GET, "wp.get", MSG_K_REQUEST, "waitpoint-registry",
     "{env_id, id: friendly id, kind: str|nil (only that kind), any_env: bool (true: env_id may "
     "be nil: any environment's; the gateway's token callback)}",
     "{waitpoint} | ERR_NOTFOUND"},
    {MSG_WP_LIST, "wp.list", MSG_K_REQUEST, "waitpoint-registry",
     "{env_id, kind: str, statuses: [str] (empty = all), idempotency_key: str|nil, tags: [str] "
     "(any of), after: friendly id|nil, limit: uint 1-100}",
     "{waitpoints: [waitpoint] (newest first, ids below after), more: bool}"},
    {MSG_WP_BLOCK, "wp.block", MSG_K_REQUEST, "waitpoint-registry",
     "{env_id, run: friendly id, id: waitpoint friendly id}",
     "{waitpoint} (run now waits on it; idempotent) | ERR_NOTFOUND (no such waitpoint)"},
    {MSG_WP_COMPLETED, "wp.completed", MSG_K_EVENT,
     "waitpoint-registry (published on waitpoint-registry.events.<instance>.ipc)",
     "{waitpoint_ids: [friendly id]} on topic \"wp.completed.<env_id>\" (they completed or timed "
     "out: a holding worker asks again; a wake-up only, lost ones cost latency)",
     ""},
    {MSG_RUN_SUSPEND, "run.suspend", MSG_K_REQUEST, "run-manager",
     "{env_id, run, worker_id: str|nil, hold: bool (true: only check, never suspend)}",
     "{suspended: bool, pending: uint (waitpoints still pending), waitpoints: [waitpoint] (when "
     "not suspended and none is pending: the completed ones, handed over once)} (suspended: "
     "WAITING_TO_RESUME, no lease) | ERR_CONFLICT (not leased to worker_id) | ERR_NOTFOUND"},
    {MSG_RUN_WAKE, "run.wake", MSG_K_REQUEST, "run-manager",
     "{waitpoint_ids: [internal id] (1-1000, just completed)}",
     "{woken: uint} (waiting runs none of whose waitpoints is pending are queued again; the "
     "run-manager's sweep does the same for any wake that was lost)"},
    {MSG_SESSION_LIST, "session.list", MSG_K_REQUEST, "clickhouse-replicator",
     "{env_id, org_id, project_id, size: uint 1-100, after: cuid|nil, before: cuid|nil, types: "
     "[str], tags: [str], tasks: [str], external_id: str|nil, statuses: uint (bits 1 ACTIVE, 2 "
     "CLOSED, 4 EXPIRED; 0 = any), from_ms: uint, to_ms: uint (0 = unbounded)}",
     "{sessions: [session], next: cuid|nil, previous: cuid|nil} (ids from ClickHouse FINAL "
     "merged with PostgreSQL rows changed within the replication lag; rows from PostgreSQL, "
     "re-filtered there)"},
};

const size_t msg_catalogue_len = sizeof(msg_catalogue) / sizeof(msg_catalogue[0]);

const struct msg_def *msg_def_find(uint16_t type)
{
    for (size_t i = 0; i < msg_catalogue_len; i++)
        if (msg_catalogue[i].type == type)
            return &msg_catalogue[i];
    return NULL;
}

const char *msg_name(uint16_t type)
{
    const struct msg_def *d = msg_def_find(type);
    return d ? d->name : "unknown";
}

uint16_t msg_type_by_name(const char *name)
{
    for (size_t i = 0; i < msg_catalogue_len; i++)
        if (strcmp(msg_catalogue[i].name, name) == 0)
            return msg_catalogue[i].type;
    return 0;
}
