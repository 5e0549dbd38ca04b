-- What a host-page change did (its notice, the lines it could not read), kept for
-- the page its redirect opens (Post/Redirect/Get). In the store rather than in one
-- server's memory, so the redirected request may reach any server of the service.
-- Read once, by the session that made the change, within ten minutes.
CREATE TABLE flashes (
    id          TEXT PRIMARY KEY,
    -- SHA-256 of the session's CSRF token: only that session reads it.
    session     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    section     TEXT NOT NULL,
    -- {"notice": …, "errors": […]}
    body        TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX flashes_by_expiry ON flashes (expires_at);
