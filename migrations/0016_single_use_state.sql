-- What may be used once must be used once in the whole service, not once per
-- process: with many servers on one database, a ticket taken on one must be gone
-- for all, and a resume token spent on one must be spent for all. Both were kept
-- in each server's memory (and a restart forgot which resume tokens were spent).

-- One-time tickets (method `ticket`), under the SHA-256 of the ticket: the
-- database never holds a ticket a reader could present.
CREATE TABLE tickets (
    hash        TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    identity    TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX tickets_by_expiry ON tickets (expires_at);
-- A key's outstanding tickets are counted when it asks for another.
CREATE INDEX tickets_by_identity ON tickets (identity);

-- Single-use tokens spent so far (resume tokens, by their nonce), each kept until
-- it would have expired anyway.
CREATE TABLE spent_tokens (
    token       TEXT PRIMARY KEY,
    expires_at  TEXT NOT NULL
);
CREATE INDEX spent_tokens_by_expiry ON spent_tokens (expires_at);
