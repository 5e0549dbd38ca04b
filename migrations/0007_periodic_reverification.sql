-- A host can require every peer of a room to confirm its identity again every so
-- often during a call. NULL: never (the default).
ALTER TABLE rooms ADD COLUMN reverify_every_secs INTEGER;

-- Running servers reload the room when it changes, as for the other settings.
CREATE TRIGGER room_reverify_changed AFTER UPDATE OF reverify_every_secs ON rooms BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.id, '', 'add');
END;
