//! One change to who may enter a room, as one transaction: the checks that
//! authorise it, the rows it writes, and its audit row commit together or not at
//! all (a crash can lose neither the audit row of an acknowledged change nor leave
//! a key without the requirement it was added with). Only
//! [`crate::whitelist::Whitelist`] opens one.

use super::{now_text, Store, StoreError};
use crate::identity::{Did, Identity, KeyLine, Validity};
use crate::ids::RoomId;
use sqlx::{Postgres, Sqlite, Transaction};

/// A whitelist entry to write: the key, and what it must prove.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// The key's DID.
    pub identity: Did,
    /// The key's fingerprint (`SHA256:…`), kept so hosts can search by it.
    pub fingerprint: String,
    /// Empty keeps an existing label.
    pub label: String,
    /// allowed_signers `namespaces=`, replacing any earlier restriction.
    pub ssh_namespaces: Option<Vec<String>>,
    /// allowed_signers `valid-after=` / `valid-before=`, replacing any earlier ones.
    pub valid: Validity,
    /// What a PIV key must prove; `None` keeps an existing requirement.
    pub piv_requirement: Option<String>,
}

impl NewEntry {
    /// An entry for `identity` under `label`, with no requirement.
    pub fn labelled(identity: &Identity, label: impl Into<String>) -> Self {
        NewEntry {
            identity: identity.did().clone(),
            fingerprint: identity.fingerprint(),
            label: label.into(),
            ssh_namespaces: None,
            valid: Validity::default(),
            piv_requirement: None,
        }
    }

    /// The entry for one line of a key list: labelled `label`, or else by the
    /// line's comment, with the line's SSH namespaces.
    /// The whitelist service clips the label when it writes the entry.
    pub fn from_line(line: KeyLine, label: &str, piv_requirement: Option<String>) -> Self {
        let label = if label.is_empty() { line.comment.as_deref().unwrap_or("") } else { label };
        NewEntry {
            label: label.to_owned(),
            ssh_namespaces: line.namespaces,
            valid: line.valid,
            piv_requirement,
            ..NewEntry::labelled(&line.identity, "")
        }
    }
}

/// A room's settings as a host sets them (`None`: the server's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct RoomSettings {
    pub require_user_verification: bool,
    pub max_peers: Option<i64>,
    pub freshness_secs: Option<i64>,
    pub reverify_every_secs: Option<i64>,
    /// How calls carry media: `mesh`, `sfu` or `auto` ([`crate::rooms::Media`]); `None`: mesh.
    pub media: Option<String>,
}

/// An audit row written inside a change.
pub struct ChangeAudit<'a> {
    pub event: &'static str,
    pub identity: Option<&'a Did>,
    pub reason: Option<&'a str>,
    pub remote: Option<&'a str>,
}

/// Entries per multi-row statement: 8 parameters each, well below SQLite's limit.
const ENTRIES_PER_STATEMENT: usize = 500;

/// An open change; dropped without [`Change::commit`], it writes nothing.
pub struct Change {
    tx: Tx,
}

/// A change's transaction, in whichever database the store is.
enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` bound to the change's connection.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// The key of the advisory lock every change holds on PostgreSQL ("kgchange").
const CHANGE_LOCK: i64 = 0x6b67_6368_616e_6765;

impl Store {
    pub(crate) async fn change(&self) -> Result<Change, StoreError> {
        let tx = match self.db() {
            // IMMEDIATE: a change reads (who owns the room) before it writes, and a
            // read transaction that must then become a write one fails at once
            // (SQLITE_BUSY, no waiting) if anyone wrote in between. Taking the write
            // lock first makes concurrent changes wait their turn under the busy
            // timeout instead.
            super::Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            // The same on PostgreSQL, whichever node the change comes from: changes
            // take their turn under one transaction-scoped lock, so what a change
            // read (who owns the room, which keys are listed) still holds when it
            // writes, as it does under SQLite's single writer.
            super::Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHANGE_LOCK).execute(&mut *tx).await?;
                Tx::Postgres(tx)
            }
        };
        Ok(Change { tx })
    }
}

impl Change {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn room_exists(&mut self, room: &RoomId) -> Result<bool, StoreError> {
        let found: Option<i64> = on_tx!(&mut self.tx, conn => sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM rooms WHERE id = $1")
            .bind(room.as_str())
            .fetch_optional(conn)
            .await?);
        Ok(found.is_some())
    }

    /// Whether `identity` owns `room` now.
    pub async fn owns(&mut self, room: &RoomId, identity: &Did) -> Result<bool, StoreError> {
        let found: Option<i64> = on_tx!(&mut self.tx, conn => sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM room_owners WHERE room_id = $1 AND identity = $2")
            .bind(room.as_str())
            .bind(identity)
            .fetch_optional(conn)
            .await?);
        Ok(found.is_some())
    }

    /// Rooms `identity` created since `since` (RFC 3339).
    pub async fn rooms_created_since(&mut self, identity: &Did, since: &str) -> Result<i64, StoreError> {
        Ok(
            on_tx!(&mut self.tx, conn => sqlx::query_scalar("SELECT count(*) FROM rooms WHERE created_by = $1 AND created_at > $2")
            .bind(identity)
            .bind(since)
            .fetch_one(conn)
            .await?),
        )
    }

    /// Creates a room owned by `owner`, who is also its first whitelist entry.
    pub async fn create_room(&mut self, id: &RoomId, name: &str, owner: &Identity) -> Result<(), StoreError> {
        let (identity, owner) = (owner, owner.did());
        let now = now_text();
        let inserted = on_tx!(&mut self.tx, conn => sqlx::query("INSERT INTO rooms (id, name, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
                .bind(id.as_str())
                .bind(name)
                .bind(&now)
                .bind(owner)
                .execute(conn)
                .await?.rows_affected());
        if inserted == 0 {
            return Err(StoreError::RoomExists(id.to_string()));
        }
        self.add_owner(id, owner).await?;
        self.put_entries(id, &[NewEntry::labelled(identity, "owner")], owner).await?;
        Ok(())
    }

    /// Adds or updates whitelist entries, each with its requirements in the same
    /// row, in a few multi-row statements (each statement is a round trip to the
    /// database thread). Returns, per entry, whether its identity was new to the list.
    pub async fn put_entries(
        &mut self,
        room: &RoomId,
        entries: &[NewEntry],
        added_by: &str,
    ) -> Result<Vec<bool>, StoreError> {
        let now = now_text();
        // Written in key order (a stable sort keeps repeated keys in line order), so
        // consecutive rows land on neighbouring index pages instead of random ones.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| entries[a].identity.as_str().cmp(entries[b].identity.as_str()));
        let mut new = vec![false; entries.len()];
        for chunk in order.chunks(ENTRIES_PER_STATEMENT) {
            let rows: Vec<&NewEntry> = chunk.iter().map(|&i| &entries[i]).collect();
            // Which are listed already (written earlier, or by an earlier chunk of
            // this batch): only those rows come back, none for a fresh import.
            let listed: Vec<String> = on_tx!(&mut self.tx, conn => {
                let mut q = sqlx::QueryBuilder::new("SELECT identity FROM whitelist WHERE room_id = ");
                q.push_bind(room.as_str()).push(" AND identity IN (");
                let mut ids = q.separated(", ");
                for entry in &rows {
                    ids.push_bind(entry.identity.as_str());
                }
                q.push(")");
                q.build_query_scalar().fetch_all(conn).await?
            });
            let listed: std::collections::HashSet<String> = listed.into_iter().collect();
            // A key listed twice is new once; its later line updates what it added
            // (sorted, repeats are neighbours, in line order).
            let (mut fresh, mut existing) = (Vec::new(), Vec::new());
            let mut previous: Option<&str> = None;
            for (&i, entry) in chunk.iter().zip(&rows) {
                let id = entry.identity.as_str();
                if listed.contains(id) || previous == Some(id) {
                    existing.push(*entry);
                } else {
                    new[i] = true;
                    fresh.push(*entry);
                }
                previous = Some(id);
            }
            if !fresh.is_empty() {
                self.insert_rows(room, &fresh, added_by, &now, false).await?;
            }
            if !existing.is_empty() {
                self.insert_rows(room, &existing, added_by, &now, true).await?;
            }
        }
        self.count_entries(room, new.iter().filter(|n| **n).count() as i64).await?;
        Ok(new)
    }

    /// One multi-row INSERT: with `update` false it adds rows not yet listed; with
    /// `update` true it updates listed ones (the label unless the new one is empty,
    /// the namespaces, the requirement unless none is given).
    async fn insert_rows(
        &mut self,
        room: &RoomId,
        rows: &[&NewEntry],
        added_by: &str,
        now: &str,
        update: bool,
    ) -> Result<(), StoreError> {
        on_tx!(&mut self.tx, conn => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO whitelist (room_id, identity, label, added_by, added_at, ssh_namespaces, piv_requirement, \
                 fingerprint, valid_after, valid_before) ",
            );
            q.push_values(rows, |mut row, e| {
                row.push_bind(room.as_str())
                    .push_bind(e.identity.as_str())
                    .push_bind(e.label.as_str())
                    .push_bind(added_by)
                    .push_bind(now)
                    .push_bind(e.ssh_namespaces.as_ref().map(|n| n.join(",")))
                    .push_bind(e.piv_requirement.as_deref())
                    .push_bind(e.fingerprint.as_str())
                    .push_bind(e.valid.after.map(crate::store::instant))
                    .push_bind(e.valid.before.map(crate::store::instant));
            });
            // Without `update`, none of them is listed: this transaction just looked.
            if update {
                q.push(
                    " ON CONFLICT (room_id, identity) DO UPDATE SET \
                       label = CASE WHEN excluded.label <> '' THEN excluded.label ELSE whitelist.label END, \
                       ssh_namespaces = excluded.ssh_namespaces, \
                       piv_requirement = coalesce(excluded.piv_requirement, whitelist.piv_requirement), \
                       fingerprint = excluded.fingerprint, \
                       valid_after = excluded.valid_after, \
                       valid_before = excluded.valid_before",
                );
            }
            q.build().execute(conn).await?
        .rows_affected()
        });
        Ok(())
    }

    /// Runs `sql` with the room and identity as its two parameters; returns whether
    /// it changed a row.
    async fn touch(&mut self, sql: &'static str, room: &RoomId, identity: &Did) -> Result<bool, StoreError> {
        let rows = on_tx!(&mut self.tx, conn => sqlx::query(sql).bind(room.as_str()).bind(identity).execute(conn).await?.rows_affected());
        Ok(rows > 0)
    }

    /// Deletes a room with its whitelist, owners, settings and invites; returns how
    /// many whitelist entries went with it. Its audit rows stay. The change log gets
    /// one row for the whole room (migration 0013).
    pub async fn delete_room(&mut self, room: &RoomId) -> Result<i64, StoreError> {
        let entries: i64 = on_tx!(&mut self.tx, conn => sqlx::query_scalar("SELECT entries FROM rooms WHERE id = $1")
            .bind(room.as_str())
            .fetch_optional(conn)
            .await?)
        .unwrap_or(0);
        on_tx!(&mut self.tx, conn => sqlx::query("DELETE FROM rooms WHERE id = $1").bind(room.as_str()).execute(conn).await?.rows_affected());
        Ok(entries)
    }

    /// Removes an entry; returns whether it was there.
    pub async fn delete_entry(&mut self, room: &RoomId, identity: &Did) -> Result<bool, StoreError> {
        let removed = self.touch("DELETE FROM whitelist WHERE room_id = $1 AND identity = $2", room, identity).await?;
        if removed {
            self.count_entries(room, -1).await?;
        }
        Ok(removed)
    }

    /// Keeps `rooms.entries` in step with the rows written.
    async fn count_entries(&mut self, room: &RoomId, delta: i64) -> Result<(), StoreError> {
        if delta != 0 {
            on_tx!(&mut self.tx, conn => sqlx::query("UPDATE rooms SET entries = entries + $1 WHERE id = $2")
                .bind(delta)
                .bind(room.as_str())
                .execute(conn)
                .await?.rows_affected());
        }
        Ok(())
    }

    /// Makes `identity` an owner; returns whether it was new.
    pub async fn add_owner(&mut self, room: &RoomId, identity: &Did) -> Result<bool, StoreError> {
        self.touch(
            "INSERT INTO room_owners (room_id, identity) VALUES ($1, $2) ON CONFLICT (room_id, identity) DO NOTHING",
            room,
            identity,
        )
        .await
    }

    /// Removes an owner unless it is the last; returns whether it was removed.
    pub async fn remove_owner(&mut self, room: &RoomId, identity: &Did) -> Result<bool, StoreError> {
        let sql = "DELETE FROM room_owners WHERE room_id = $1 AND identity = $2 \
                   AND (SELECT count(*) FROM room_owners WHERE room_id = $1) > 1";
        self.touch(sql, room, identity).await
    }

    pub async fn set_settings(&mut self, room: &RoomId, s: &RoomSettings) -> Result<(), StoreError> {
        on_tx!(&mut self.tx, conn => sqlx::query(
            "UPDATE rooms SET require_user_verification = $1, max_peers = $2, freshness_secs = $3, \
             reverify_every_secs = $4, media = $5 WHERE id = $6",
        )
        .bind(s.require_user_verification)
        .bind(s.max_peers)
        .bind(s.freshness_secs)
        .bind(s.reverify_every_secs)
        .bind(s.media.as_deref())
        .bind(room.as_str())
        .execute(conn)
        .await?.rows_affected());
        Ok(())
    }

    /// The room's settings now.
    pub async fn settings(&mut self, room: &RoomId) -> Result<RoomSettings, StoreError> {
        let row: Option<RoomSettings> = on_tx!(&mut self.tx, conn => sqlx::query_as(
            "SELECT require_user_verification, max_peers, freshness_secs, reverify_every_secs, media FROM rooms WHERE id = $1",
        )
        .bind(room.as_str())
        .fetch_optional(conn)
        .await?);
        row.ok_or_else(|| StoreError::NoRoom(room.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_invite(
        &mut self,
        id: &str,
        room: &RoomId,
        label: &str,
        uses: i64,
        expires_at: &str,
        created_by: &str,
    ) -> Result<(), StoreError> {
        on_tx!(&mut self.tx, conn => sqlx::query(
            "INSERT INTO invites (id, room_id, label, uses_left, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(room.as_str())
        .bind(label)
        .bind(uses)
        .bind(expires_at)
        .bind(created_by)
        .bind(now_text())
        .execute(conn)
        .await?.rows_affected());
        Ok(())
    }

    /// Takes one use of an invite for `room`; false if none was left (or it expired).
    pub async fn use_invite(&mut self, id: &str, room: &RoomId) -> Result<bool, StoreError> {
        let changed = on_tx!(&mut self.tx, conn => sqlx::query(
            "UPDATE invites SET uses_left = uses_left - 1 \
             WHERE id = $1 AND room_id = $2 AND uses_left > 0 AND expires_at > $3",
        )
        .bind(id)
        .bind(room.as_str())
        .bind(now_text())
        .execute(conn)
        .await?
        .rows_affected());
        Ok(changed > 0)
    }

    pub async fn audit(&mut self, room: &RoomId, row: ChangeAudit<'_>) -> Result<(), StoreError> {
        on_tx!(&mut self.tx, conn => sqlx::query(
            "INSERT INTO audit (room_id, at, event, identity, method, reason, remote) VALUES ($1, $2, $3, $4, NULL, $5, $6)",
        )
        .bind(room.as_str())
        .bind(now_text())
        .bind(row.event)
        .bind(row.identity)
        .bind(row.reason)
        .bind(row.remote)
        .execute(conn)
        .await?.rows_affected());
        Ok(())
    }
}
