-- What a whitelist entry demands of a PIV key beyond its signature: a YubiKey
-- attestation, and a minimum PIN and touch policy ("attested", "pin:always",
-- "touch:cached", comma-separated). NULL demands nothing.
ALTER TABLE whitelist ADD COLUMN piv_requirement TEXT;

CREATE TRIGGER whitelist_piv_requirement_changed AFTER UPDATE OF piv_requirement ON whitelist BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
END;
