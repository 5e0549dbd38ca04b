-- The schema of SQLite's migrations 0001 to 0015 (../), in one file for PostgreSQL,
-- so that from here on migration N is the same change in both directories.
-- Differences: integers are BIGINT (what the server reads), flags BOOLEAN, secrets
-- BYTEA, sequence numbers identities, and the change-log triggers call functions.
-- Times stay RFC 3339 text in UTC, which sorts as the instants do. Identities and
-- fingerprints compare byte by byte (COLLATE "C"), as in SQLite, whatever the
-- database's own collation: pages walk them in key order and prefix searches are
-- ranges of them.

CREATE TABLE rooms (
    id                         TEXT PRIMARY KEY,
    name                       TEXT NOT NULL DEFAULT '',
    created_at                 TEXT NOT NULL,
    created_by                 TEXT NOT NULL,
    require_user_verification  BOOLEAN NOT NULL DEFAULT FALSE,
    max_peers                  BIGINT,
    freshness_secs             BIGINT,
    reverify_every_secs        BIGINT,
    -- How many identities the room lists, kept by the writers.
    entries                    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE room_owners (
    room_id   TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    identity  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (room_id, identity)
);

CREATE TABLE whitelist (
    room_id           TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    identity          TEXT COLLATE "C" NOT NULL,
    label             TEXT NOT NULL DEFAULT '',
    added_by          TEXT NOT NULL,
    added_at          TEXT NOT NULL,
    last_admitted_at  TEXT,
    ssh_namespaces    TEXT,
    piv_requirement   TEXT,
    fingerprint       TEXT COLLATE "C",
    valid_after       TEXT,
    valid_before      TEXT,
    PRIMARY KEY (room_id, identity)
);

-- Every change a running server must act on (see ../0011): a removal (eject,
-- forget), a changed entry (forget), a change to the room itself (identity '').
CREATE TABLE whitelist_changes (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id   TEXT NOT NULL,
    identity  TEXT NOT NULL,
    op        TEXT NOT NULL CHECK (op IN ('add', 'remove'))
);

CREATE FUNCTION whitelist_entry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.label IS DISTINCT FROM NEW.label OR OLD.ssh_namespaces IS DISTINCT FROM NEW.ssh_namespaces
       OR OLD.piv_requirement IS DISTINCT FROM NEW.piv_requirement
       OR OLD.valid_after IS DISTINCT FROM NEW.valid_after OR OLD.valid_before IS DISTINCT FROM NEW.valid_before THEN
        INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, NEW.identity, 'add');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER whitelist_entry_changed AFTER UPDATE ON whitelist
FOR EACH ROW EXECUTE FUNCTION whitelist_entry_changed();

-- A removed entry, unless its room went with it (the room's own row says so).
CREATE FUNCTION whitelist_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM rooms WHERE id = OLD.room_id) THEN
        INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, OLD.identity, 'remove');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER whitelist_removed AFTER DELETE ON whitelist
FOR EACH ROW EXECUTE FUNCTION whitelist_removed();

-- The room's settings or owners changed: servers reload them.
CREATE FUNCTION room_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'rooms' THEN
        IF OLD.require_user_verification IS DISTINCT FROM NEW.require_user_verification
           OR OLD.max_peers IS DISTINCT FROM NEW.max_peers OR OLD.freshness_secs IS DISTINCT FROM NEW.freshness_secs
           OR OLD.reverify_every_secs IS DISTINCT FROM NEW.reverify_every_secs THEN
            INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.id, '', 'add');
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO whitelist_changes (room_id, identity, op) VALUES (NEW.room_id, '', 'add');
    ELSIF EXISTS (SELECT 1 FROM rooms WHERE id = OLD.room_id) THEN
        INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.room_id, '', 'add');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER room_settings_changed AFTER UPDATE ON rooms
FOR EACH ROW EXECUTE FUNCTION room_changed();
CREATE TRIGGER room_owner_added AFTER INSERT ON room_owners
FOR EACH ROW EXECUTE FUNCTION room_changed();
CREATE TRIGGER room_owner_removed AFTER DELETE ON room_owners
FOR EACH ROW EXECUTE FUNCTION room_changed();

-- A deleted room: one row for the whole room (../0013).
CREATE FUNCTION room_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO whitelist_changes (room_id, identity, op) VALUES (OLD.id, '', 'remove');
    RETURN NULL;
END $$;
CREATE TRIGGER room_deleted AFTER DELETE ON rooms
FOR EACH ROW EXECUTE FUNCTION room_deleted();

CREATE TABLE audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id   TEXT NOT NULL,
    at        TEXT NOT NULL,
    event     TEXT NOT NULL,
    identity  TEXT,
    method    TEXT,
    reason    TEXT,
    remote    TEXT
);
CREATE INDEX audit_by_room ON audit (room_id, id DESC);
CREATE INDEX audit_by_time ON audit (at);
CREATE INDEX audit_by_event ON audit (room_id, event, id DESC);

CREATE TABLE webauthn_credentials (
    id            TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    credential    TEXT NOT NULL,
    counter       BIGINT NOT NULL DEFAULT 0,
    label         TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);
CREATE INDEX webauthn_credentials_by_identity ON webauthn_credentials (identity);

CREATE TABLE web_sessions (
    token_hash  TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    method      TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);

CREATE TABLE invites (
    id          TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    label       TEXT NOT NULL DEFAULT '',
    uses_left   BIGINT NOT NULL,
    expires_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX invites_by_room ON invites (room_id);
CREATE INDEX invites_by_expiry ON invites (expires_at);

CREATE TABLE key_counters (
    identity    TEXT PRIMARY KEY,
    counter     BIGINT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE key_attestations (
    identity      TEXT PRIMARY KEY,
    serial        BIGINT,
    firmware      TEXT,
    pin_policy    TEXT,
    touch_policy  TEXT,
    form_factor   BIGINT,
    summary       TEXT NOT NULL,
    attested_at   TEXT NOT NULL
);

CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);
