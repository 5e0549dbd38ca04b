//! Seats: who is in which call on which server, for servers sharing a bus.
//!
//! A seat is taken in one transaction that holds a lock for its room (SQLite's
//! writer lock; on PostgreSQL an advisory lock keyed by the room), counts the
//! seats of servers still saying they are alive and adds one only below the
//! room's cap. So the cap holds however many servers admit at once, and a server
//! that died stops holding seats a few seconds later (upkeep deletes them).

use super::{Db, Store, StoreError};

/// A seat held on another server: that server and the peer as `peer-joined` has it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredSeat {
    pub peer_id: String,
    pub node: String,
    pub info: String,
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
                // Seats of servers gone silent do not count (upkeep deletes them).
                let seated: Vec<StoredSeat> = sqlx::query_as(
                    "SELECT peer_id, node, info FROM seats WHERE room_id = $1 \
                     AND node IN (SELECT node FROM nodes WHERE seen_ms >= $2)",
                )
                .bind(room)
                .bind(alive_since)
                .fetch_all(&mut *tx)
                .await?;
                if seated.len() >= max {
                    return Ok(None);
                }
                sqlx::query("INSERT INTO seats (room_id, peer_id, node, info) VALUES ($1, $2, $3, $4)")
                    .bind(room)
                    .bind(peer)
                    .bind(node)
                    .bind(info)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Some(seated)
            }
            // One round trip: the same statements in a function (migration 0018),
            // under an advisory lock keyed by the room's hash (class "kgst").
            Db::Postgres(pool) => {
                let seats: Vec<StoredSeat> =
                    sqlx::query_as("SELECT peer_id, node, info FROM keygate_take_seat($1, $2, $3, $4, $5, $6)")
                        .bind(room)
                        .bind(peer)
                        .bind(node)
                        .bind(info)
                        .bind(i64::try_from(max).unwrap_or(i64::MAX))
                        .bind(alive_since)
                        .fetch_all(pool)
                        .await?;
                let (mine, others): (Vec<StoredSeat>, Vec<StoredSeat>) =
                    seats.into_iter().partition(|s| s.peer_id == peer && s.node == node);
                (!mine.is_empty()).then_some(others)
            }
        })
    }

    /// Frees a peer's seat (it left, or was not seated after all).
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

    /// How many seats of servers seen alive since `alive_since` (ms) each room owned
    /// by `owner` has, in one query (rooms with none are left out).
    pub async fn seats_in_rooms_of(
        &self,
        owner: &str,
        alive_since: i64,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT s.room_id, count(*) FROM seats s JOIN room_owners o ON o.room_id = s.room_id \
                 WHERE o.identity = $1 AND s.node IN (SELECT node FROM nodes WHERE seen_ms >= $2) GROUP BY s.room_id",
            )
            .bind(owner)
            .bind(alive_since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().collect())
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
