//! WebAuthn credentials: stored at registration, read when a room's challenge
//! offers them, and their sign counters moved forward atomically.

use super::{now_text, Store, StoreError};
use crate::identity::Did;
use crate::ids::RoomId;

/// Rooms listing at most this many keys offer their members' passkeys as a hint.
pub const HINT_ROOMS_UP_TO: i64 = 1_000;
/// Most passkeys a challenge offers as a hint.
pub const CREDENTIAL_HINTS: i64 = 64;

/// A credential's columns, as either database returns them.
#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: String,
    identity: String,
    credential: String,
    counter: i64,
}

impl From<CredentialRow> for StoredCredential {
    fn from(r: CredentialRow) -> Self {
        StoredCredential {
            id: r.id,
            identity: Did::from_stored(&r.identity),
            credential: r.credential,
            counter: u32::try_from(r.counter).unwrap_or(u32::MAX),
        }
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
        let inserted = on_db!(self.db(), pool => sqlx::query(
            "INSERT INTO webauthn_credentials (id, identity, credential, label, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(identity)
        .bind(credential)
        .bind(label)
        .bind(now_text())
        .execute(pool)
        .await?
        .rows_affected());
        if inserted == 0 {
            return Err(StoreError::CredentialExists);
        }
        Ok(())
    }

    /// A credential by its id (base64url).
    pub async fn credential(&self, id: &str) -> Result<Option<StoredCredential>, StoreError> {
        let row: Option<CredentialRow> = on_db!(self.db(), pool => {
            sqlx::query_as("SELECT id, identity, credential, counter FROM webauthn_credentials WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(StoredCredential::from))
    }

    /// Up to [`CREDENTIAL_HINTS`] credentials of identities whitelisted in `room`,
    /// oldest first, when the room lists at most [`HINT_ROOMS_UP_TO`] keys (none
    /// otherwise): what a passkey challenge offers as a hint, read from the room's
    /// own entries, so its cost is bounded whatever the list's length or the
    /// number of passkeys registered. An answer is checked against the credential
    /// it names, never against this list.
    pub async fn room_credentials(&self, room: &RoomId) -> Result<Vec<StoredCredential>, StoreError> {
        // SQLite: CROSS JOIN keeps the room's list as the outer loop; PostgreSQL
        // plans the join itself (and has no CROSS JOIN … ON).
        let join = if self.is_postgres() { "JOIN" } else { "CROSS JOIN" };
        let sql = format!(
            "SELECT c.id, c.identity, c.credential, c.counter \
             FROM whitelist w {join} webauthn_credentials c ON c.identity = w.identity \
             WHERE w.room_id = $1 AND (SELECT entries FROM rooms WHERE id = $1) <= $2 \
             ORDER BY c.created_at LIMIT $3"
        );
        let rows: Vec<CredentialRow> = on_db!(self.db(), pool => {
            sqlx::query_as(&sql)
                .bind(room.as_str())
                .bind(HINT_ROOMS_UP_TO)
                .bind(CREDENTIAL_HINTS)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(StoredCredential::from).collect())
    }

    /// Keeps what a verified attestation showed about `identity`'s key (the newest
    /// wins).
    pub async fn record_attestation(&self, identity: &Did, a: &KeyAttestation) -> Result<(), StoreError> {
        on_db!(self.db(), pool => sqlx::query(
            "INSERT INTO key_attestations \
             (identity, serial, firmware, pin_policy, touch_policy, form_factor, summary, attested_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (identity) DO UPDATE SET serial = excluded.serial, firmware = excluded.firmware, \
               pin_policy = excluded.pin_policy, touch_policy = excluded.touch_policy, \
               form_factor = excluded.form_factor, summary = excluded.summary, attested_at = excluded.attested_at",
        )
        .bind(identity)
        .bind(a.serial.map(i64::from))
        .bind(&a.firmware)
        .bind(a.pin_policy)
        .bind(a.touch_policy)
        .bind(a.form_factor.map(i64::from))
        .bind(&a.summary)
        .bind(super::now_text())
        .execute(pool)
        .await?.rows_affected());
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
        let rows: Vec<(String, String)> = on_db!(self.db(), pool => {
            let mut q = sqlx::QueryBuilder::new("SELECT identity, summary FROM key_attestations WHERE identity IN (");
            let mut list = q.separated(", ");
            for identity in identities {
                list.push_bind(*identity);
            }
            list.push_unseparated(")");
            q.build_query_as().fetch_all(pool).await?
        });
        Ok(rows.into_iter().collect())
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
        macro_rules! advance {
            ($tx:expr) => {{
                let mut tx = $tx;
                let key = sqlx::query(
                    "INSERT INTO key_counters (identity, counter, updated_at) VALUES ($1, $2, $3) \
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
                        "UPDATE webauthn_credentials SET counter = $1, last_used_at = $2 \
                         WHERE id = $3 AND ($1 > counter OR ($1 = 0 AND counter = 0))",
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
            }};
        }
        // The key's row is written first and holds its lock (SQLite: the write lock
        // taken at BEGIN IMMEDIATE; PostgreSQL: the row lock of the upsert) until the
        // credential's counter has moved too, so two signatures by one key, on any
        // node, cannot both move it past the same value.
        match self.db() {
            super::Db::Sqlite(pool) => advance!(pool.begin_with("BEGIN IMMEDIATE").await?),
            super::Db::Postgres(pool) => advance!(pool.begin().await?),
        }
    }

    /// Sets a credential's stored counter (tests and repairs).
    pub async fn set_counter(&self, id: &str, counter: u32) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query("UPDATE webauthn_credentials SET counter = $1 WHERE id = $2")
                .bind(i64::from(counter))
                .bind(id)
                .execute(pool)
                .await?
        .rows_affected()
        });
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
