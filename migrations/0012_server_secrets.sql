-- Keys the server makes once and keeps, such as the one that MACs resume tokens, so
-- that what it issued before a restart still checks out after it.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
