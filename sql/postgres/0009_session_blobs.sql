-- Small documents a session keeps for its agent: the SDK's chat snapshot (the presigned URLs of
-- PUT/GET /api/v1/sessions/:session/snapshot-url lead here, docs/gateway.md). One row per
-- session and name; gone with the session.
CREATE TABLE session_blobs (
    session_id   text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    name         text NOT NULL,
    content_type text NOT NULL,
    body         bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, name)
);
