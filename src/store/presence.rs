//! Seats: who is in which call on which server, for servers sharing a bus.
//!
//! A seat is taken in one transaction that holds a lock for its room (SQLite's
//! writer lock; on PostgreSQL an advisory lock keyed by the room), drops the
//! seats of servers that stopped saying they are alive, counts the rest and adds
//! one only below the room's cap. So the cap holds however many servers admit at
//! once, and a server that died frees its seats a few seconds later.

use super::{Db, Store, StoreError};

/// A seat held on another server: that server and the peer as `peer-joined` has it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredSeat {
    pub peer_id: String,
    pub node: String,
    pub info: String,
}

/// The class of PostgreSQL's per-room seat locks ("kgst"), the room's hash the key.
const SEAT_LOCK: i32 = 0x6b67_7374;

/// The statements of [`Store::take_seat`], on either database's transaction.
macro_rules! take_seat_in {
    ($tx:ident, $room:expr, $peer:expr, $node:expr, $info:expr, $max:expr, $alive_since:expr) => {{
        sqlx::query(
            "DELETE FROM seats WHERE room_id = $1 AND node NOT IN (SELECT node FROM nodes WHERE seen_ms >= $2)",
        )
        .bind($room)
        .bind($alive_since)
        .execute(&mut *$tx)
        .await?;
        let seated: Vec<StoredSeat> = sqlx::query_as("SELECT peer_id, node, info FROM seats WHERE room_id = $1")
            .bind($room)
            .fetch_all(&mut *$tx)
            .await?;
        if seated.len() >= $max {
            None
        } else {
            sqlx::query("INSERT INTO seats (room_id, peer_id, node, info) VALUES ($1, $2, $3, $4)")
                .bind($room)
                .bind($peer)
                .bind($node)
                .bind($info)
                .execute(&mut *$tx)
                .await?;
            $tx.commit().await?;
            Some(seated)
        }
    }};
}

impl Store {
    /// Seats peer `peer` of server `node` in `room` unless the room already has
    /// `max` seats held by servers seen alive since `alive_since` (ms). Returns the
    /// seats that were there (on this server too), or `None` when the room is full.
    pub async fn take_seat(
        &self,
        room: &str,
        peer: &str,
        node: &str,
        info: &str,
        max: usize,
        alive_since: i64,
    ) -> Result<Option<Vec<StoredSeat>>, StoreError> {
        Ok(match self.db() {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                take_seat_in!(tx, room, peer, node, info, max, alive_since)
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(SEAT_LOCK)
                    .bind(room)
                    .execute(&mut *tx)
                    .await?;
                take_seat_in!(tx, room, peer, node, info, max, alive_since)
            }
        })
    }

    /// Frees a peer's seat (it left).
    pub async fn free_seat(&self, room: &str, peer: &str) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query("DELETE FROM seats WHERE room_id = $1 AND peer_id = $2").bind(room).bind(peer).execute(pool).await?;
        });
        Ok(())
    }

    /// Rewrites a seated peer's description (it proved its key again).
    pub async fn update_seat(&self, room: &str, peer: &str, info: &str) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query("UPDATE seats SET info = $3 WHERE room_id = $1 AND peer_id = $2")
                .bind(room)
                .bind(peer)
                .bind(info)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The seats of `room` held by servers seen alive since `alive_since` (ms).
    pub async fn seats(&self, room: &str, alive_since: i64) -> Result<Vec<StoredSeat>, StoreError> {
        Ok(on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT peer_id, node, info FROM seats WHERE room_id = $1 \
                 AND node IN (SELECT node FROM nodes WHERE seen_ms >= $2)",
            )
            .bind(room)
            .bind(alive_since)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records that server `node` is alive at `now` (ms).
    pub async fn node_alive(&self, node: &str, now: i64) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query("INSERT INTO nodes (node, seen_ms) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms")
                .bind(node)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets server `node` and its seats (it is stopping).
    pub async fn forget_node(&self, node: &str) -> Result<(), StoreError> {
        on_db!(self.db(), pool => {
            sqlx::query("DELETE FROM seats WHERE node = $1").bind(node).execute(pool).await?;
            sqlx::query("DELETE FROM nodes WHERE node = $1").bind(node).execute(pool).await?;
        });
        Ok(())
    }

    /// Forgets the servers silent since `silent_since` (ms) and every seat whose
    /// server is not known (upkeep). Returns the seats freed.
    pub async fn prune_presence(&self, silent_since: i64) -> Result<u64, StoreError> {
        Ok(on_db!(self.db(), pool => {
            sqlx::query("DELETE FROM nodes WHERE seen_ms < $1").bind(silent_since).execute(pool).await?;
            sqlx::query("DELETE FROM seats WHERE node NOT IN (SELECT node FROM nodes)").execute(pool).await?.rows_affected()
        }))
    }
}
