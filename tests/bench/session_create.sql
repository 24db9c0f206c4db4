-- session_create.sql: what one POST /api/v1/sessions does in PostgreSQL, as raw SQL for pgbench
-- (tests/bench/session_create.sh): the create upsert, the run trigger, the optimistic claim and
-- the audit row. Ids are random, as the server's cuids are.
\set n random(1, 1000000000)
BEGIN;
INSERT INTO sessions (id, friendly_id, external_id, type, project_id, runtime_environment_id,
    organization_id, environment_type, task_identifier, trigger_config, tags)
VALUES ('b' || :client_id || '-' || :n, 'session_b' || :client_id || '-' || :n,
    'bench-' || :client_id || '-' || :n || '-' || random(), 'chat', 'p', 'bench-env', 'o',
    'DEVELOPMENT', 'echo', '{"basePayload":{"hello":"world"}}', '{}')
ON CONFLICT (runtime_environment_id, external_id)
    DO UPDATE SET trigger_config = EXCLUDED.trigger_config, updated_at = now();
COMMIT;
INSERT INTO task_runs (id, friendly_id, runtime_environment_id, organization_id, project_id,
    task_identifier, session_id, payload, max_attempts)
VALUES ('r' || :client_id || '-' || :n, 'run_r' || :client_id || '-' || :n, 'bench-env', 'o', 'p',
    'echo', 'b' || :client_id || '-' || :n,
    '{"hello":"world","sessionId":"x"}', 1);
INSERT INTO session_bindings (session_id, current_run_id, current_run_version)
VALUES ('b' || :client_id || '-' || :n, 'r' || :client_id || '-' || :n, 1)
ON CONFLICT DO NOTHING;
INSERT INTO session_runs (id, session_id, run_id, reason)
VALUES ('sr' || :client_id || '-' || :n, 'b' || :client_id || '-' || :n,
    'r' || :client_id || '-' || :n, 'initial');
