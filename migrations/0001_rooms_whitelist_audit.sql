-- Rooms, their owners, their whitelists, and the audit log.
-- Identities are stored as their normalized DID text (see src/identity): one key,
-- one string, whichever format it was pasted in.

CREATE TABLE rooms (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);

-- Owners manage the whitelist. The creator is the first owner.
CREATE TABLE room_owners (
    room_id   TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    identity  TEXT NOT NULL,
    PRIMARY KEY (room_id, identity)
);

CREATE TABLE whitelist (
    room_id           TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    identity          TEXT NOT NULL,
    label             TEXT NOT NULL DEFAULT '',
    added_by          TEXT NOT NULL,
    added_at          TEXT NOT NULL,
    last_admitted_at  TEXT,
    PRIMARY KEY (room_id, identity)
);

-- Every whitelist change, appended by the triggers below, so that a running server
-- learns of changes made by another process (the `keygate room` CLI) by polling one
-- small indexed table, and can eject a removed identity at once.
CREATE TABLE whitelist_changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id   TEXT NOT NULL,
    identity  TEXT NOT NULL,
    op        TEXT NOT NULL CHECK (op IN ('add', 'remove'))
);

CREATE TRIGGER whitelist_added AFTER INSERT ON whitelist BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
END;

CREATE TRIGGER whitelist_relabelled AFTER UPDATE OF label ON whitelist BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
END;

CREATE TRIGGER whitelist_removed AFTER DELETE ON whitelist BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, OLD.identity, 'remove');
END;

-- Admissions and refusals with their reasons. The client is only ever told
-- "not admitted"; the reason is kept here for the room's owners.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id   TEXT NOT NULL,
    at        TEXT NOT NULL,
    event     TEXT NOT NULL,
    identity  TEXT,
    method    TEXT,
    reason    TEXT,
    remote    TEXT
);

CREATE INDEX audit_by_room ON audit (room_id, id DESC);
