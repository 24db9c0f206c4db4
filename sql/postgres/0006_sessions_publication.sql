-- 0006_sessions_publication: what the clickhouse-replicator streams (docs/clickhouse-replicator.md).
-- The publication is versioned with its slot (sessions_to_clickhouse_v1); a change of what is
-- published makes a _v2 pair rather than altering this one under a running slot. The slot
-- itself is made by the replicator at its first start (CREATE_REPLICATION_SLOT ...
-- EXPORT_SNAPSHOT), because its exported snapshot is what the backfill reads.
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE PUBLICATION sessions_to_clickhouse_v1_publication FOR TABLE sessions
    WITH (publish = 'insert, update, delete');

-- A slot whose backfill finished. A slot without its row here (a crash mid-backfill) is
-- dropped and made again at the next start, so a backfill is never half done.
CREATE TABLE clickhouse_replicator_slots (
    slot_name      text PRIMARY KEY,
    backfilled_lsn pg_lsn NOT NULL,
    backfilled_at  timestamptz NOT NULL DEFAULT now()
);

-- session.list reads the rows changed within the replication lag from PostgreSQL.
CREATE INDEX sessions_env_updated_at_idx ON sessions (runtime_environment_id, updated_at);
