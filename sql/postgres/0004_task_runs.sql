-- 0004_task_runs: task runs (the run-manager's own table). A run is queued (PENDING), leased to a
-- worker (DEQUEUED, then EXECUTING once it heartbeats), and ends in one final status. Statuses are
-- the internal ones of api contract §11.1, so liveness is "row exists and status not final"; the
-- public names the SDK sees (QUEUED, COMPLETED, FAILED...) are mapped when a run is read.
-- Scoping columns are denormalised copies without foreign keys, like sessions: a run outlives
-- nothing it points at. session_id is the internal session id, also without a foreign key: the
-- binding that matters is sessions.current_run_id, which only the run-manager writes.
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE TABLE task_runs (
    id                     text PRIMARY KEY,          -- cuid
    friendly_id            text NOT NULL UNIQUE,      -- "run_" || id
    runtime_environment_id text NOT NULL,
    organization_id        text NOT NULL,
    project_id             text NOT NULL,
    task_identifier        text NOT NULL,
    session_id             text,                      -- internal session id; NULL for a run of no session
    payload                jsonb NOT NULL,
    status                 text NOT NULL DEFAULT 'PENDING' CHECK (status IN (
        -- alive
        'DELAYED', 'PENDING', 'PENDING_VERSION', 'WAITING_FOR_DEPLOY', 'DEQUEUED', 'EXECUTING',
        'WAITING_TO_RESUME', 'RETRYING_AFTER_FAILURE', 'PAUSED',
        -- final
        'CANCELED', 'INTERRUPTED', 'COMPLETED_SUCCESSFULLY', 'COMPLETED_WITH_ERRORS',
        'SYSTEM_FAILURE', 'CRASHED', 'EXPIRED', 'TIMED_OUT')),
    attempt                integer NOT NULL DEFAULT 1, -- the current (or next) attempt, from 1
    max_attempts           integer NOT NULL DEFAULT 1,
    machine                text,
    queue                  text,
    tags                   text[] NOT NULL DEFAULT '{}',
    idle_timeout_s         integer,
    max_duration_s         integer,
    ttl_s                  integer,                   -- expires if not started within this
    lease_owner            text,                      -- worker id holding the lease
    lease_expires_at       timestamptz(3),
    output                 jsonb,
    error                  jsonb,
    created_at             timestamptz(3) NOT NULL DEFAULT now(),
    started_at             timestamptz(3),            -- first dequeue; NULL = never handed out
    completed_at           timestamptz(3),
    updated_at             timestamptz(3) NOT NULL DEFAULT now(),
    CHECK (friendly_id = 'run_' || id),
    CHECK (attempt >= 1 AND max_attempts >= 1 AND attempt <= max_attempts),
    -- a lease exists exactly while a worker holds the run
    CHECK ((status IN ('DEQUEUED', 'EXECUTING')) = (lease_expires_at IS NOT NULL))
);

-- Dequeue: the oldest queued runs of some tasks in one environment.
CREATE INDEX task_runs_dequeue_idx
    ON task_runs (runtime_environment_id, task_identifier, status, created_at);
CREATE INDEX task_runs_session_id_idx ON task_runs (session_id);

-- The sweeps (actors/run_manager/sweep.c), each over a small partial index.
CREATE INDEX task_runs_lease_sweep_idx ON task_runs (lease_expires_at)
    WHERE status IN ('DEQUEUED', 'EXECUTING');
CREATE INDEX task_runs_duration_sweep_idx ON task_runs (started_at)
    WHERE max_duration_s IS NOT NULL AND completed_at IS NULL;
CREATE INDEX task_runs_ttl_sweep_idx ON task_runs (created_at)
    WHERE status = 'PENDING' AND ttl_s IS NOT NULL AND started_at IS NULL;
CREATE INDEX task_runs_orphan_sweep_idx ON task_runs (created_at)
    WHERE status = 'PENDING' AND session_id IS NOT NULL AND started_at IS NULL;
