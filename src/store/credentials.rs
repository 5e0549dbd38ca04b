//! WebAuthn credentials: stored at registration, read when a room's challenge
//! offers them, and their sign counters moved forward atomically.

use super::{now_text, Store, StoreError};
use crate::ids::RoomId;
use sqlx::Row;

/// A stored credential.
#[derive(Clone, Debug)]
pub struct StoredCredential {
    pub id: String,
    pub identity: String,
    /// The relying party's record of it (webauthn-rs JSON).
    pub credential: String,
    pub counter: u32,
}

impl Store {
    pub async fn add_credential(
        &self,
        id: &str,
        identity: &str,
        credential: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webauthn_credentials (id, identity, credential, label, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET credential = excluded.credential, label = excluded.label",
        )
        .bind(id)
        .bind(identity)
        .bind(credential)
        .bind(label)
        .bind(now_text())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A credential by its id (base64url).
    pub async fn credential(&self, id: &str) -> Result<Option<StoredCredential>, StoreError> {
        let row = sqlx::query("SELECT id, identity, credential, counter FROM webauthn_credentials WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| StoredCredential {
            id: r.get("id"),
            identity: r.get("identity"),
            credential: r.get("credential"),
            counter: u32::try_from(r.get::<i64, _>("counter")).unwrap_or(u32::MAX),
        }))
    }

    /// The credentials of every identity whitelisted in `room`.
    pub async fn room_credentials(&self, room: &RoomId) -> Result<Vec<StoredCredential>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.identity, c.credential, c.counter FROM webauthn_credentials c \
             JOIN whitelist w ON w.identity = c.identity WHERE w.room_id = ? ORDER BY c.created_at LIMIT 64",
        )
        .bind(room.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredCredential {
                id: r.get("id"),
                identity: r.get("identity"),
                credential: r.get("credential"),
                counter: u32::try_from(r.get::<i64, _>("counter")).unwrap_or(u32::MAX),
            })
            .collect())
    }

    /// Moves a credential's sign counter to `counter`. Returns false, changing
    /// nothing, when `counter` is not above the stored one (a counter of 0 means the
    /// authenticator does not count and is always accepted).
    pub async fn advance_counter(&self, id: &str, counter: u32) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE webauthn_credentials SET counter = max(counter, ?1), last_used_at = ?2 \
             WHERE id = ?3 AND (?1 = 0 OR ?1 > counter)",
        )
        .bind(i64::from(counter))
        .bind(now_text())
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(changed > 0)
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
