-- Per-room settings a host can change on the room page. NULL: the server's default.
ALTER TABLE rooms ADD COLUMN max_peers INTEGER;
ALTER TABLE rooms ADD COLUMN freshness_secs INTEGER;

-- Running servers reload a room whose settings or owners change, as they do for
-- whitelist changes (the empty identity names the room itself).
CREATE TRIGGER room_settings_changed AFTER UPDATE OF max_peers, freshness_secs ON rooms BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.id, '', 'add');
END;

CREATE TRIGGER room_owner_added AFTER INSERT ON room_owners BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, '', 'add');
END;

CREATE TRIGGER room_owner_removed AFTER DELETE ON room_owners BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, '', 'add');
END;
