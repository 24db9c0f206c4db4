-- 0001_sessions_v1: sessions replicated from Postgres by the clickhouse-replicator, for list
-- queries (read with FINAL). Written for ClickHouse 18.16: no DateTime64, no skip indexes, no
-- TTL. Times are DateTime (seconds, UTC) plus *_ms UInt64 epoch milliseconds; writers must send
-- the *_ms columns (18.16 JSONEachRow fills an omitted column with 0, not its DEFAULT).
-- ReplacingMergeTree keeps the row with the highest _version (the commit LSN).
-- Re-applied at every services.sh start: keep it idempotent.
CREATE TABLE IF NOT EXISTS sessions_v1
(
    organization_id  String,
    project_id       String,
    environment_id   String,
    environment_type String,
    session_id       String,
    friendly_id      String,
    external_id      Nullable(String),
    type             String,
    task_identifier  String,
    tags             Array(String),
    metadata         String,
    closed_at        Nullable(DateTime),
    closed_reason    Nullable(String),
    expires_at       Nullable(DateTime),
    created_at       DateTime,
    updated_at       DateTime,
    created_at_ms    UInt64,
    updated_at_ms    UInt64,
    _version         UInt64,
    _is_deleted      UInt8
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(created_at)
ORDER BY (organization_id, project_id, environment_id, created_at, session_id);
