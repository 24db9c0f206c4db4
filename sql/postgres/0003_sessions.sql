-- 0003_sessions: the session rows (api contract §8.1) and the append-only audit of which run a
-- session was bound to and why (§8.2). Scoping columns are denormalised copies, without foreign
-- keys, as upstream: a session row must never block an environment's lifecycle.
-- Ownership: the session-manager writes every column except current_run_id and
-- current_run_version; the run-manager writes those two and session_runs, nothing else.
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE TABLE sessions (
    id                     text PRIMARY KEY,          -- cuid
    friendly_id            text NOT NULL UNIQUE,      -- "session_" || id
    external_id            text,                      -- unique per environment (NULLs never collide)
    type                   text NOT NULL,
    project_id             text NOT NULL,
    runtime_environment_id text NOT NULL,
    organization_id        text NOT NULL,
    environment_type       text NOT NULL
        CHECK (environment_type IN ('DEVELOPMENT', 'STAGING', 'PRODUCTION', 'PREVIEW')),
    task_identifier        text NOT NULL,
    trigger_config         jsonb NOT NULL,
    tags                   text[] NOT NULL DEFAULT '{}',
    metadata               jsonb,
    current_run_id         text,                      -- internal task run id, no foreign key
    current_run_version    integer NOT NULL DEFAULT 0, -- optimistic-lock counter of the claim
    closed_at              timestamptz(3),            -- write-once
    closed_reason          text,
    expires_at             timestamptz(3),
    created_at             timestamptz(3) NOT NULL DEFAULT now(),
    updated_at             timestamptz(3) NOT NULL DEFAULT now(),
    UNIQUE (runtime_environment_id, external_id)
);

CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_current_run_id_idx ON sessions (current_run_id);

-- closed_at and closed_reason are written once: a second close keeps the first.
CREATE FUNCTION sessions_close_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.closed_at IS NOT NULL AND (NEW.closed_at IS DISTINCT FROM OLD.closed_at OR
                                      NEW.closed_reason IS DISTINCT FROM OLD.closed_reason) THEN
        RAISE EXCEPTION 'sessions.closed_at is write-once (session %)', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sessions_close_once BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_close_once();

-- Delete events of logical replication need the whole old row.
ALTER TABLE sessions REPLICA IDENTITY FULL;

CREATE TABLE session_runs (
    id           text PRIMARY KEY,
    session_id   text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE ON UPDATE CASCADE,
    run_id       text NOT NULL UNIQUE, -- internal task run id; only claim winners are recorded
    reason       text NOT NULL CHECK (reason IN ('initial', 'continuation', 'upgrade', 'manual')),
    triggered_at timestamptz(3) NOT NULL DEFAULT now()
);
CREATE INDEX session_runs_session_id_idx ON session_runs (session_id);
