-- The audit page filters a room's log by event: the newest rows of one event, a
-- page at a time, however long the log.
CREATE INDEX audit_by_event ON audit (room_id, event, id DESC);
