//! WebAuthn credentials: stored at registration, read when a room's challenge
//! offers them, and their sign counters moved forward atomically.

use super::{now_text, Store, StoreError};
use crate::identity::Did;
use crate::ids::RoomId;
use sqlx::Row;

/// Rooms listing at most this many keys offer their members' passkeys as a hint.
pub const HINT_ROOMS_UP_TO: i64 = 1_000;
/// Most passkeys a challenge offers as a hint.
pub const CREDENTIAL_HINTS: i64 = 64;

/// A credential row (columns id, identity, credential, counter).
fn stored(r: &sqlx::sqlite::SqliteRow) -> StoredCredential {
    StoredCredential {
        id: r.get("id"),
        identity: r.get("identity"),
        credential: r.get("credential"),
        counter: u32::try_from(r.get::<i64, _>("counter")).unwrap_or(u32::MAX),
    }
}

/// A stored credential.
#[derive(Clone, Debug)]
pub struct StoredCredential {
    pub id: String,
    pub identity: Did,
    /// The relying party's record of it (webauthn-rs JSON).
    pub credential: String,
    pub counter: u32,
}

impl Store {
    /// Stores a newly registered credential. A credential id is never reused: a
    /// registration naming a known id is refused with [`StoreError::CredentialExists`]
    /// and nothing is written, or anyone could replace a whitelisted person's key
    /// under their identity (the ids are public: challenges list them).
    pub async fn add_credential(
        &self,
        id: &str,
        identity: &Did,
        credential: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO webauthn_credentials (id, identity, credential, label, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(identity)
        .bind(credential)
        .bind(label)
        .bind(now_text())
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::CredentialExists);
        }
        Ok(())
    }

    /// A credential by its id (base64url).
    pub async fn credential(&self, id: &str) -> Result<Option<StoredCredential>, StoreError> {
        let row = sqlx::query("SELECT id, identity, credential, counter FROM webauthn_credentials WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(stored))
    }

    /// Up to [`CREDENTIAL_HINTS`] credentials of identities whitelisted in `room`,
    /// oldest first, when the room lists at most [`HINT_ROOMS_UP_TO`] keys (none
    /// otherwise): what a passkey challenge offers as a hint, read from the room's
    /// own entries, so its cost is bounded whatever the list's length or the
    /// number of passkeys registered. An answer is checked against the credential
    /// it names, never against this list.
    pub async fn room_credentials(&self, room: &RoomId) -> Result<Vec<StoredCredential>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.identity, c.credential, c.counter \
             FROM whitelist w CROSS JOIN webauthn_credentials c ON c.identity = w.identity \
             WHERE w.room_id = ? AND (SELECT entries FROM rooms WHERE id = ?) <= ? \
             ORDER BY c.created_at LIMIT ?",
        )
        .bind(room.as_str())
        .bind(room.as_str())
        .bind(HINT_ROOMS_UP_TO)
        .bind(CREDENTIAL_HINTS)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(stored).collect())
    }

    /// Keeps what a verified attestation showed about `identity`'s key (the newest
    /// wins).
    pub async fn record_attestation(&self, identity: &Did, a: &KeyAttestation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO key_attestations \
             (identity, serial, firmware, pin_policy, touch_policy, form_factor, summary, attested_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(identity)
        .bind(a.serial.map(i64::from))
        .bind(&a.firmware)
        .bind(a.pin_policy)
        .bind(a.touch_policy)
        .bind(a.form_factor.map(i64::from))
        .bind(&a.summary)
        .bind(super::now_text())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What attestations showed about these keys (a page of a room's list):
    /// identity → the sentence the pages show.
    pub async fn attestations_of(
        &self,
        identities: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        if identities.is_empty() {
            return Ok(Default::default());
        }
        let mut q = sqlx::QueryBuilder::new("SELECT identity, summary FROM key_attestations WHERE identity IN (");
        let mut list = q.separated(", ");
        for identity in identities {
            list.push_bind(*identity);
        }
        list.push_unseparated(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get("identity"), r.get("summary"))).collect())
    }

    /// Moves an authenticator's sign counters forward: the key's, kept per identity
    /// whatever method carried the signature, and the WebAuthn credential's when one
    /// signed. Returns false, changing nothing, when `counter` does not move past
    /// either (a counter that stays at 0 means the authenticator does not count, and
    /// is accepted while it has never counted).
    pub async fn advance_counters(
        &self,
        identity: &Did,
        counter: u32,
        credential_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_text();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let key = sqlx::query(
            "INSERT INTO key_counters (identity, counter, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (identity) DO UPDATE SET counter = excluded.counter, updated_at = excluded.updated_at \
             WHERE excluded.counter > key_counters.counter OR (excluded.counter = 0 AND key_counters.counter = 0)",
        )
        .bind(identity)
        .bind(i64::from(counter))
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if key == 0 {
            return Ok(false);
        }
        if let Some(id) = credential_id {
            let credential = sqlx::query(
                "UPDATE webauthn_credentials SET counter = ?1, last_used_at = ?2 \
                 WHERE id = ?3 AND (?1 > counter OR (?1 = 0 AND counter = 0))",
            )
            .bind(i64::from(counter))
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if credential == 0 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a credential's stored counter (tests and repairs).
    pub async fn set_counter(&self, id: &str, counter: u32) -> Result<(), StoreError> {
        sqlx::query("UPDATE webauthn_credentials SET counter = ? WHERE id = ?")
            .bind(i64::from(counter))
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// What a verified YubiKey attestation showed about a key, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyAttestation {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub pin_policy: Option<&'static str>,
    pub touch_policy: Option<&'static str>,
    pub form_factor: Option<u8>,
    /// The sentence the pages show.
    pub summary: String,
}
