-- How a room's calls carry media: 'mesh' (peer to peer), 'sfu' (through the
-- server's Janus, end-to-end encrypted), or 'auto' (mesh until the call reaches
-- the server's `sfu_from` peers, then the SFU for the rest of that call).
-- NULL: mesh.
ALTER TABLE rooms ADD COLUMN media TEXT CHECK (media IN ('mesh', 'sfu', 'auto'));

-- Running servers reload the room when it changes, as for the other settings.
CREATE TRIGGER room_media_changed AFTER UPDATE OF media ON rooms BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.id, '', 'add');
END;
