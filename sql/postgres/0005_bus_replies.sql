-- 0005_bus_replies: the first answer to every non-idempotent bus request, by request key, so that a
-- second arrival of the same request (the bus re-sent it after the instance handling it died, or
-- a fault duplicated it) gets that answer back and changes nothing (docs/bus.md, "Requests
-- handled once"). The row is written in the transaction of the request's effect: either both are
-- committed or neither. Only successful answers are kept (an error answer rolls the effect back).
-- Rows are deleted once expired (the actors' sweep): past the request's deadline nobody re-sends
-- it, and a late arrival is dropped as expired before it is handled.
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE TABLE bus_replies (
    req_key    uuid PRIMARY KEY,      -- the envelope's origin (high 64 bits) and req_id (low 64)
    type       integer NOT NULL,      -- message type of the request
    body_hash  bigint NOT NULL,       -- FNV-1a (64 bits) of the request body: a reused key is caught
    body       bytea,                 -- the answer's body (raw msgpack); NULL while being handled
    expires_at timestamptz NOT NULL,  -- deadline of the request + TETHER_BUS_REPLY_KEEP
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bus_replies_expires_at ON bus_replies (expires_at);
