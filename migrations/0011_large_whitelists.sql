-- Whitelists of a million keys. Admission looks an identity up by the primary key
-- (room_id, identity) instead of loading the room's list, and a server keeps only
-- the entries it has looked up. A new entry needs no word to running servers; the
-- change log carries what they must act on: a removal (eject, forget), a changed
-- entry (forget), a change to the room itself (reload its settings and owners).
DROP TRIGGER whitelist_added;
DROP TRIGGER whitelist_relabelled;
DROP TRIGGER whitelist_namespaces_changed;
DROP TRIGGER whitelist_piv_requirement_changed;

-- What a running server may have cached of an entry (its label, namespaces, PIV
-- requirement) changed: one row, and only when a value really changed, so that
-- importing a list again writes nothing here.
CREATE TRIGGER whitelist_entry_changed AFTER UPDATE OF label, ssh_namespaces, piv_requirement ON whitelist
WHEN OLD.label IS NOT NEW.label OR OLD.ssh_namespaces IS NOT NEW.ssh_namespaces
  OR OLD.piv_requirement IS NOT NEW.piv_requirement
BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
END;

-- The key's fingerprint as pages print it (`SHA256:…`), so hosts can find an entry
-- by it. Rows from before this migration get theirs when the server next opens the
-- database (it is computed from the key, which SQL cannot do).
ALTER TABLE whitelist ADD COLUMN fingerprint TEXT;

-- No index beyond the primary key: every added index costs a large import a
-- quarter or more of its speed (measured: 97k rows/s without one on labels, 76k
-- with it, less with one on fingerprints, whose order is random). Identity-prefix
-- searches and paging use the primary key; label and fingerprint searches read
-- the room's rows in that order until a page is full.

-- The rows still waiting for their fingerprint: empty once the server has filled
-- them in, so finding none costs nothing at a million entries.
CREATE INDEX whitelist_without_fingerprint ON whitelist (room_id) WHERE fingerprint IS NULL;

-- How many identities each room lists, kept by the writers (the whitelist service)
-- so that pages need not count a million rows.
ALTER TABLE rooms ADD COLUMN entries INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET entries = (SELECT count(*) FROM whitelist w WHERE w.room_id = rooms.id);
