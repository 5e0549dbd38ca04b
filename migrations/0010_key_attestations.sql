-- What a verified YubiKey attestation showed about a key, kept with the key: the
-- room page reads it here instead of searching the audit log's text (which the
-- retention setting deletes). `summary` is the sentence the pages show.
CREATE TABLE key_attestations (
    identity TEXT PRIMARY KEY,
    serial INTEGER,
    firmware TEXT,
    pin_policy TEXT,
    touch_policy TEXT,
    form_factor INTEGER,
    summary TEXT NOT NULL,
    attested_at TEXT NOT NULL
);

-- Attestations seen before this table existed survive only as audit text.
INSERT OR REPLACE INTO key_attestations (identity, summary, attested_at)
SELECT identity, reason, at FROM audit
WHERE event = 'admitted' AND identity IS NOT NULL AND reason LIKE 'attested YubiKey%'
ORDER BY id;
