-- Passkeys and security keys registered with this server. A credential yields an
-- identity (the DID of its public key) like any other key; this table keeps what
-- WebAuthn needs besides: the credential id the browser asks for, and the sign
-- counter, which must only grow (a step back suggests a cloned authenticator).
CREATE TABLE webauthn_credentials (
    id            TEXT PRIMARY KEY,      -- base64url credential id
    identity      TEXT NOT NULL,
    credential    TEXT NOT NULL,         -- the relying-party record (JSON)
    counter       INTEGER NOT NULL DEFAULT 0,
    label         TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);

CREATE INDEX webauthn_credentials_by_identity ON webauthn_credentials (identity);
