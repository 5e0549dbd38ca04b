//! Sign-in sessions of the host pages, and invites.

use super::{now_text, Store, StoreError};
use crate::identity::Did;
use crate::ids::RoomId;
use chrono::{DateTime, SecondsFormat, Utc};

/// A signed-in browser session.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub identity: Did,
    pub method: String,
    pub csrf: String,
}

/// An invite link.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Invite {
    pub id: String,
    pub room: String,
    pub label: String,
    pub uses_left: i64,
    pub expires_at: String,
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Store {
    pub async fn create_web_session(
        &self,
        token_hash: &str,
        identity: &Did,
        method: &str,
        csrf: &str,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self.db(), pool => sqlx::query(
            "INSERT INTO web_sessions (token_hash, identity, method, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(identity)
        .bind(method)
        .bind(csrf)
        .bind(now_text())
        .bind(text(expires))
        .execute(pool)
        .await?.rows_affected());
        Ok(())
    }

    /// The live session with this token hash, if it has not expired.
    pub async fn web_session(&self, token_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let row: Option<(String, String, String)> = on_db!(self.db(), pool => {
            sqlx::query_as("SELECT identity, method, csrf FROM web_sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(now_text())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(identity, method, csrf)| WebSession { identity: Did::from_stored(&identity), method, csrf }))
    }

    pub async fn delete_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1 OR expires_at <= $2")
                .bind(token_hash)
                .bind(now_text())
                .execute(pool)
                .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Rooms the identity owns, newest first, with their whitelist sizes.
    pub async fn rooms_owned_by(&self, identity: &Did) -> Result<Vec<(RoomId, String, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_db!(self.db(), pool => sqlx::query_as(
            "SELECT r.id, r.name, r.entries \
             FROM rooms r JOIN room_owners o ON o.room_id = r.id WHERE o.identity = $1 ORDER BY r.created_at DESC",
        )
        .bind(identity)
        .fetch_all(pool)
        .await?);
        Ok(rows.into_iter().filter_map(|(id, name, entries)| Some((RoomId::parse(&id).ok()?, name, entries))).collect())
    }

    /// A usable invite (uses left, not expired).
    pub async fn invite(&self, id: &str) -> Result<Option<Invite>, StoreError> {
        let row: Option<Invite> = on_db!(self.db(), pool => sqlx::query_as(
            "SELECT id, room_id AS room, label, uses_left, expires_at FROM invites \
             WHERE id = $1 AND uses_left > 0 AND expires_at > $2",
        )
        .bind(id)
        .bind(now_text())
        .fetch_optional(pool)
        .await?);
        Ok(row)
    }

    pub async fn room_invites(&self, room: &RoomId) -> Result<Vec<Invite>, StoreError> {
        Ok(on_db!(self.db(), pool => sqlx::query_as(
            "SELECT id, room_id AS room, label, uses_left, expires_at FROM invites \
             WHERE room_id = $1 AND uses_left > 0 AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(room.as_str())
        .bind(now_text())
        .fetch_all(pool)
        .await?))
    }
}
