-- When a listed key may be used: allowed_signers `valid-after="…"` and
-- `valid-before="…"`, as RFC 3339 instants in UTC (to the second). Either may be
-- absent; an entry with neither is valid at any time, as before.
ALTER TABLE whitelist ADD COLUMN valid_after TEXT;
ALTER TABLE whitelist ADD COLUMN valid_before TEXT;

-- A running server caches what admission reads of an entry; a change to its
-- validity must reach it as a change to its label or namespaces does.
DROP TRIGGER whitelist_entry_changed;
CREATE TRIGGER whitelist_entry_changed
AFTER UPDATE OF label, ssh_namespaces, piv_requirement, valid_after, valid_before ON whitelist
WHEN OLD.label IS NOT NEW.label OR OLD.ssh_namespaces IS NOT NEW.ssh_namespaces
  OR OLD.piv_requirement IS NOT NEW.piv_requirement
  OR OLD.valid_after IS NOT NEW.valid_after OR OLD.valid_before IS NOT NEW.valid_before
BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
END;
