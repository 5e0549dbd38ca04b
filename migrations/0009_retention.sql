-- Rows past their time are deleted by the server's upkeep: audit rows older than
-- the retention setting, sign-in sessions past their expiry (already indexed), and
-- invites used up or expired. These indexes make each round touch only what it
-- deletes, however long the tables grow.
CREATE INDEX audit_by_time ON audit (at);
CREATE INDEX invites_by_expiry ON invites (expires_at);
