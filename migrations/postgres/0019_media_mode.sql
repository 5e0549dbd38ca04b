-- How a room's calls carry media (../0019): 'mesh', 'sfu' or 'auto'; NULL: mesh.
ALTER TABLE rooms ADD COLUMN media TEXT CHECK (media IN ('mesh', 'sfu', 'auto'));

-- Servers reload a room whose media mode changes, as for its other settings.
CREATE OR REPLACE FUNCTION room_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'rooms' THEN
        IF OLD.require_user_verification IS DISTINCT FROM NEW.require_user_verification
           OR OLD.max_peers IS DISTINCT FROM NEW.max_peers OR OLD.freshness_secs IS DISTINCT FROM NEW.freshness_secs
           OR OLD.reverify_every_secs IS DISTINCT FROM NEW.reverify_every_secs
           OR OLD.media IS DISTINCT FROM NEW.media THEN
            INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.id, '', 'add');
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, '', 'add');
    ELSIF EXISTS (SELECT 1 FROM rooms WHERE id = OLD.room_id) THEN
        INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, '', 'add');
    END IF;
    RETURN NULL;
END $$;
