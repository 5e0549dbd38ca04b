-- Host pages: sign-in sessions and invites.

-- A signed-in browser. Only a hash of the cookie's token is stored, so the table
-- cannot be used to impersonate anyone. The CSRF token guards every form POST.
CREATE TABLE web_sessions (
    token_hash  TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    method      TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);

-- An invite link: whoever opens it and proves a key is whitelisted under `label`.
CREATE TABLE invites (
    id          TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    label       TEXT NOT NULL DEFAULT '',
    uses_left   INTEGER NOT NULL,
    expires_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE INDEX invites_by_room ON invites (room_id);
