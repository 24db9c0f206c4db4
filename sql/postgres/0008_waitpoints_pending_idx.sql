-- The waitpoint registry's figure of pending waitpoints (tether_waitpoints_pending, counted by
-- kind every sweep): an index of the pending rows alone, so the count reads those and no more.
CREATE INDEX waitpoints_pending_idx ON waitpoints (kind) WHERE status = 'PENDING';
