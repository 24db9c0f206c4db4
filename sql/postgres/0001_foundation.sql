-- 0001_foundation: key/value facts about the database itself (schema name, later e.g. the
-- cluster id). Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.
CREATE TABLE tether_meta (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO tether_meta (key, value) VALUES ('schema', 'tether') ON CONFLICT DO NOTHING;
