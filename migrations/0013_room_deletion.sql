-- Deleting a room: one change-log row says so (running servers eject its peers),
-- instead of one per whitelist entry and owner deleted with it. The audit log,
-- which has no foreign key to rooms, keeps the room's history.
DROP TRIGGER whitelist_removed;
CREATE TRIGGER whitelist_removed AFTER DELETE ON whitelist
WHEN EXISTS (SELECT 1 FROM rooms WHERE id = OLD.room_id)
BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, OLD.identity, 'remove');
END;

DROP TRIGGER room_owner_removed;
CREATE TRIGGER room_owner_removed AFTER DELETE ON room_owners
WHEN EXISTS (SELECT 1 FROM rooms WHERE id = OLD.room_id)
BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, '', 'add');
END;

CREATE TRIGGER room_deleted AFTER DELETE ON rooms BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.id, '', 'remove');
END;
