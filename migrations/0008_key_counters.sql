-- One sign counter per key, whatever method carried the signature. A FIDO key can
-- answer as a passkey (method webauthn) or as an OpenSSH security key (method ssh,
-- sk-ecdsa / webauthn-sk): both report the authenticator's counter, and a counter
-- kept only per WebAuthn credential would let a cloned authenticator skip the check
-- by answering over ssh. Keyed by identity (the key's DID).
CREATE TABLE key_counters (
    identity    TEXT PRIMARY KEY,
    counter     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
