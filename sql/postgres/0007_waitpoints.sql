-- 0007_waitpoints: waitpoints (the waitpoint-registry's own table) and the runs blocked on them.
-- A waitpoint is PENDING until it completes exactly once: COMPLETED (output, output_type) or
-- TIMED_OUT (output_is_error, the SDK's timeout error as output). Every completion is one
-- conditional UPDATE ... WHERE status = 'PENDING', so a drain, a sweep and a timer racing on one
-- waitpoint leave one winner and no-ops. Kinds: MANUAL (wait.createToken), SESSION_STREAM (the
-- next record on a session channel after from_seq - 1: api contract §5.10) and DURATION (wait.for
-- / wait.until: the timer completes it at timeout_at). task_run_waitpoints says which run waits on
-- which waitpoints; the run-manager reads it to suspend and resume runs (docs/run-manager.md).
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE TABLE waitpoints (
    id                          text PRIMARY KEY,            -- cuid
    friendly_id                 text NOT NULL UNIQUE,        -- "waitpoint_" || id
    runtime_environment_id      text NOT NULL,
    kind                        text NOT NULL CHECK (kind IN ('MANUAL', 'SESSION_STREAM', 'DURATION')),
    status                      text NOT NULL DEFAULT 'PENDING'
                                CHECK (status IN ('PENDING', 'COMPLETED', 'TIMED_OUT')),
    output                      text,                        -- as given (JSON text for tokens)
    output_type                 text NOT NULL DEFAULT 'application/json',
    output_is_error             boolean NOT NULL DEFAULT false,
    idempotency_key             text,
    idempotency_key_expires_at  timestamptz(3),
    tags                        text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 10),
    timeout_at                  timestamptz(3),              -- DURATION: when it completes
    run_id                      text,                        -- friendly id of the run that made it
    stream_key                  text,                        -- SESSION_STREAM: addressing key,
    stream_io                   text,                        --   channel
    from_seq                    bigint,                      --   and the first seq that wakes it
    created_at                  timestamptz(3) NOT NULL DEFAULT now(),
    completed_at                timestamptz(3),
    CHECK (friendly_id = 'waitpoint_' || id),
    CHECK ((status = 'PENDING') = (completed_at IS NULL)),
    CHECK ((kind = 'SESSION_STREAM') = (stream_key IS NOT NULL)),
    CHECK (kind <> 'SESSION_STREAM' OR (stream_io IN ('in', 'out') AND from_seq >= 0)),
    CHECK (kind <> 'DURATION' OR timeout_at IS NOT NULL)
);

-- Idempotency is per environment; an expired key is cleared before its new waitpoint is made.
CREATE UNIQUE INDEX waitpoints_idempotency_idx ON waitpoints (runtime_environment_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The timer: pending waitpoints by due time.
CREATE INDEX waitpoints_timeout_idx ON waitpoints (timeout_at)
    WHERE status = 'PENDING' AND timeout_at IS NOT NULL;
-- The drain and the reconciliation sweep: pending waiters of one channel.
CREATE INDEX waitpoints_stream_idx ON waitpoints (runtime_environment_id, stream_io, stream_key)
    WHERE status = 'PENDING' AND kind = 'SESSION_STREAM';
-- Token lists, newest first (ids are time-ordered cuids).
CREATE INDEX waitpoints_list_idx ON waitpoints (runtime_environment_id, kind, id);

CREATE TABLE task_run_waitpoints (
    run_id                  text NOT NULL,                   -- friendly run id
    waitpoint_id            text NOT NULL REFERENCES waitpoints (id),
    runtime_environment_id  text NOT NULL,
    created_at              timestamptz(3) NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, waitpoint_id)
);
CREATE INDEX task_run_waitpoints_waitpoint_idx ON task_run_waitpoints (waitpoint_id);
