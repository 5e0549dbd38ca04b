//! What may be used once in the whole service, whichever server it reaches: one-time
//! tickets, spent single-use tokens, and host-page notices shown once. Taking one is one statement (a `DELETE …
//! RETURNING`, an `INSERT … ON CONFLICT DO NOTHING`), so two servers racing for
//! the same one cannot both have it.

use super::{now_text, Store, StoreError};

/// A ticket as stored (its room, the DID it admits, when it expires).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredTicket {
    pub room_id: String,
    pub identity: String,
    pub expires_at: String,
}

impl Store {
    /// Keeps a ticket under `hash` unless its identity already holds `limit`
    /// unexpired ones (a count of at most `limit` index entries); returns whether
    /// it was kept.
    pub async fn put_ticket(&self, hash: &str, ticket: &StoredTicket, limit: i64) -> Result<bool, StoreError> {
        let now = now_text();
        Ok(on_db!(self.db(), pool => {
            let outstanding: i64 =
                sqlx::query_scalar("SELECT count(*) FROM tickets WHERE identity = $1 AND expires_at > $2")
                    .bind(&ticket.identity)
                    .bind(&now)
                    .fetch_one(pool)
                    .await?;
            if outstanding >= limit {
                false
            } else {
                sqlx::query("INSERT INTO tickets (hash, room_id, identity, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(hash)
                    .bind(&ticket.room_id)
                    .bind(&ticket.identity)
                    .bind(&ticket.expires_at)
                    .execute(pool)
                    .await?
                    .rows_affected()
                    == 1
            }
        }))
    }

    /// Takes the ticket stored under `hash`: it is gone for every server, whatever
    /// the caller finds in it.
    pub async fn take_ticket(&self, hash: &str) -> Result<Option<StoredTicket>, StoreError> {
        Ok(on_db!(self.db(), pool => {
            sqlx::query_as("DELETE FROM tickets WHERE hash = $1 RETURNING room_id, identity, expires_at")
                .bind(hash)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Spends the single-use `token` (valid until `expires_at`): true the first time,
    /// on any server; false after.
    pub async fn spend(&self, token: &str, expires_at: &str) -> Result<bool, StoreError> {
        Ok(on_db!(self.db(), pool => {
            sqlx::query("INSERT INTO spent_tokens (token, expires_at) VALUES ($1, $2) ON CONFLICT (token) DO NOTHING")
                .bind(token)
                .bind(expires_at)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }
}

/// A host-page notice kept for the page after a change's redirect.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredFlash {
    pub session: String,
    pub room_id: String,
    pub section: String,
    pub body: String,
}

impl Store {
    /// Keeps a notice under `id` until `expires_at`.
    pub async fn put_flash(&self, id: &str, flash: &StoredFlash, expires_at: &str) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO flashes (id, session, room_id, section, body, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(&flash.session)
            .bind(&flash.room_id)
            .bind(&flash.section)
            .bind(&flash.body)
            .bind(expires_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Takes the notice `id`, unexpired: it is gone for every server.
    pub async fn take_flash(&self, id: &str) -> Result<Option<StoredFlash>, StoreError> {
        let now = now_text();
        Ok(on_db!(self.db(), pool => {
            sqlx::query_as(
                "DELETE FROM flashes WHERE id = $1 AND expires_at > $2 RETURNING session, room_id, section, body",
            )
            .bind(id)
            .bind(&now)
            .fetch_optional(pool)
            .await?
        }))
    }
}
