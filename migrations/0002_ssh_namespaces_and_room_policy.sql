-- Room policy and per-key SSH namespaces.

-- Refuse security-key and authenticator proofs made without user verification
-- (PIN or biometric), not just a touch.
ALTER TABLE rooms ADD COLUMN require_user_verification INTEGER NOT NULL DEFAULT 0;

-- The `namespaces="…"` of the allowed_signers line a key was whitelisted from,
-- comma-separated; NULL means the line did not restrict it. A key whose namespaces
-- exclude "keygate" cannot sign in with method ssh.
ALTER TABLE whitelist ADD COLUMN ssh_namespaces TEXT;

-- A policy change must reach running servers as a whitelist change does: the empty
-- identity tells them to reload the room.
CREATE TRIGGER room_policy_changed AFTER UPDATE OF require_user_verification ON rooms BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.id, '', 'add');
END;

CREATE TRIGGER whitelist_namespaces_changed AFTER UPDATE OF ssh_namespaces ON whitelist BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
END;
