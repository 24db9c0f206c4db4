-- 0010_session_bindings: which run a session is bound to, in a table of the run-manager's own.
-- Until now the binding was two columns of sessions (current_run_id, current_run_version) that
-- the run-manager wrote into the session-manager's table. Every table has one writer now:
-- sessions and session_blobs the session-manager; session_bindings, session_runs and task_runs
-- the run-manager. A session's reads join its binding (a session without a row is bound to
-- nothing, version 0). The claim is an upsert on this row with the version as its optimistic
-- lock (actors/run_manager/claim.c), and no longer rewrites the session row: with REPLICA
-- IDENTITY FULL every such update logged the whole old row and was streamed to ClickHouse.
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE TABLE session_bindings (
    session_id          text PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    current_run_id      text,                      -- internal task run id, no foreign key
    current_run_version integer NOT NULL,          -- optimistic-lock counter of the claim
    bound_at            timestamptz(3) NOT NULL DEFAULT now()
);
CREATE INDEX session_bindings_current_run_id_idx ON session_bindings (current_run_id);

INSERT INTO session_bindings (session_id, current_run_id, current_run_version, bound_at)
    SELECT id, current_run_id, current_run_version, updated_at FROM sessions
    WHERE current_run_id IS NOT NULL OR current_run_version > 0;

DROP INDEX sessions_current_run_id_idx;
ALTER TABLE sessions DROP COLUMN current_run_id, DROP COLUMN current_run_version;

-- A session with its binding, as the rows read before this change: for operators at psql and
-- the tests' checks. No process reads or writes through it.
CREATE VIEW sessions_bound AS
    SELECT s.*, b.current_run_id, COALESCE(b.current_run_version, 0) AS current_run_version
    FROM sessions s LEFT JOIN session_bindings b ON b.session_id = s.id;
