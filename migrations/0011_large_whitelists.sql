-- Whitelists of a million keys. Admission looks an identity up by the primary key
-- (room_id, identity) instead of loading the room's list, so entries need no copy
-- in memory and an edit to one entry needs no word to running servers: the change
-- log now carries only what live rooms must act on (a removal ejects; a change to
-- the room itself reloads its settings and owners).
DROP TRIGGER whitelist_added;
DROP TRIGGER whitelist_relabelled;
DROP TRIGGER whitelist_namespaces_changed;
DROP TRIGGER whitelist_piv_requirement_changed;

-- The key's fingerprint as pages print it (`SHA256:…`), so hosts can find an entry
-- by it. Rows from before this migration get theirs when the server next opens the
-- database (it is computed from the key, which SQL cannot do).
ALTER TABLE whitelist ADD COLUMN fingerprint TEXT;

-- Searching a room's list by label prefix (any case) and by fingerprint prefix;
-- identity prefixes use the primary key.
CREATE INDEX whitelist_by_label ON whitelist (room_id, label COLLATE NOCASE, identity);
CREATE INDEX whitelist_by_fingerprint ON whitelist (room_id, fingerprint);

-- The rows still waiting for their fingerprint: empty once the server has filled
-- them in, so finding none costs nothing at a million entries.
CREATE INDEX whitelist_without_fingerprint ON whitelist (room_id) WHERE fingerprint IS NULL;
