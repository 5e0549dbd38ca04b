//! Sign-in sessions of the host pages, and invites.

use super::{now_text, Store, StoreError};
use crate::identity::Did;
use crate::ids::RoomId;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;

/// A signed-in browser session.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub identity: Did,
    pub method: String,
    pub csrf: String,
}

/// An invite link.
#[derive(Clone, Debug)]
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
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, identity, method, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(identity)
        .bind(method)
        .bind(csrf)
        .bind(now_text())
        .bind(text(expires))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The live session with this token hash, if it has not expired.
    pub async fn web_session(&self, token_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let row =
            sqlx::query("SELECT identity, method, csrf FROM web_sessions WHERE token_hash = ? AND expires_at > ?")
                .bind(token_hash)
                .bind(now_text())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| WebSession { identity: r.get("identity"), method: r.get("method"), csrf: r.get("csrf") }))
    }

    pub async fn delete_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = ? OR expires_at <= ?")
            .bind(token_hash)
            .bind(now_text())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Rooms the identity owns, newest first, with their whitelist sizes.
    pub async fn rooms_owned_by(&self, identity: &Did) -> Result<Vec<(RoomId, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.entries \
             FROM rooms r JOIN room_owners o ON o.room_id = r.id WHERE o.identity = ? ORDER BY r.created_at DESC",
        )
        .bind(identity)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((RoomId::parse(r.get::<&str, _>("id")).ok()?, r.get("name"), r.get("entries"))))
            .collect())
    }

    /// A usable invite (uses left, not expired).
    pub async fn invite(&self, id: &str) -> Result<Option<Invite>, StoreError> {
        let row = sqlx::query(
            "SELECT id, room_id, label, uses_left, expires_at FROM invites WHERE id = ? AND uses_left > 0 AND expires_at > ?",
        )
        .bind(id)
        .bind(now_text())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| Invite {
            id: r.get("id"),
            room: r.get("room_id"),
            label: r.get("label"),
            uses_left: r.get("uses_left"),
            expires_at: r.get("expires_at"),
        }))
    }

    pub async fn room_invites(&self, room: &RoomId) -> Result<Vec<Invite>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, room_id, label, uses_left, expires_at FROM invites WHERE room_id = ? AND uses_left > 0 AND expires_at > ? \
             ORDER BY created_at DESC",
        )
        .bind(room.as_str())
        .bind(now_text())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Invite {
                id: r.get("id"),
                room: r.get("room_id"),
                label: r.get("label"),
                uses_left: r.get("uses_left"),
                expires_at: r.get("expires_at"),
            })
            .collect())
    }
}
