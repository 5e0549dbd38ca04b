//! The SQLite store: rooms, owners, whitelists, audit log.
//!
//! Owns all SQL. Speaks in identities and room ids, never in sockets. Audit events
//! are written in batches by [`AuditLog`] so that admissions never wait on a disk
//! write; everything else is written synchronously, since a whitelist change must be
//! durable before it is acknowledged.

mod audit;
mod changes;
mod credentials;
mod did_column;
mod web;

pub use audit::{AuditEvent, AuditLog, AuditRecord};
pub use changes::{Change, ChangeAudit, NewEntry, RoomSettings};
pub use credentials::{KeyAttestation, StoredCredential, CREDENTIAL_HINTS, HINT_ROOMS_UP_TO};
pub use web::{Invite, WebSession};

use crate::identity::{Did, Validity};
use crate::ids::RoomId;
use chrono::{SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no room {0}")]
    NoRoom(String),
    #[error("room {0} already exists")]
    RoomExists(String),
    #[error("this credential is already registered")]
    CredentialExists,
    #[error("cannot open the database at {0}: {1}")]
    Open(std::path::PathBuf, sqlx::Error),
    #[error("the database at {0} could not be migrated: {1}")]
    MigrateAt(std::path::PathBuf, sqlx::migrate::MigrateError),
    #[error("not a keygate database: {0}")]
    NotKeygate(String),
    #[error("integrity check failed: {0}")]
    Damaged(String),
}

/// How a process uses the database, which sets the page cache and checkpoints.
#[derive(Clone, Copy)]
enum Use {
    /// A long-running server: 16 MiB of page cache per connection (SQLite's
    /// default is 2,000 KiB), and SQLite's checkpoint after commits that leave
    /// 1,000 pages in the log.
    Server,
    /// A short-lived process that may write a million rows (`keygate room allow`):
    /// 512 MiB of cache, so an import's batches rewrite each index page once per
    /// transaction instead of spilling it, and one checkpoint at its end
    /// ([`Store::checkpoint`]) instead of one after every batch.
    Import,
}

impl Use {
    fn cache_kib(self) -> i64 {
        match self {
            Use::Server => 16 * 1024,
            Use::Import => 512 * 1024,
        }
    }

    /// A statement over a second is worth a warning in a server; in an import, the
    /// batches and the final checkpoint take that long by design.
    fn slow_statement_level(self) -> log::LevelFilter {
        match self {
            Use::Server => log::LevelFilter::Warn,
            Use::Import => log::LevelFilter::Debug,
        }
    }

    fn autocheckpoint_pages(self) -> u32 {
        match self {
            Use::Server => 1000,
            Use::Import => 0,
        }
    }
}

/// How many change-log entries one read returns at most.
pub const CHANGES_PAGE: usize = 10_000;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// A room as stored.
#[derive(Clone, Debug)]
pub struct RoomRecord {
    pub id: RoomId,
    pub name: String,
    pub created_at: String,
    pub created_by: String,
    pub owners: Vec<Did>,
    /// Refuse proofs made without user verification (PIN, biometric).
    pub require_user_verification: bool,
    /// Most peers at once; `None`: the server's default.
    pub max_peers: Option<i64>,
    /// Challenge lifetime in seconds; `None`: the server's default.
    pub freshness_secs: Option<i64>,
    /// Every peer must confirm its identity again this often; `None`: never.
    pub reverify_every_secs: Option<i64>,
}

/// One whitelisted identity of a room.
#[derive(Clone, Debug)]
pub struct WhitelistEntry {
    pub identity: Did,
    pub label: String,
    pub added_by: String,
    pub added_at: String,
    pub last_admitted_at: Option<String>,
    /// allowed_signers `namespaces=` restriction, if the key came with one.
    pub ssh_namespaces: Option<Vec<String>>,
    /// What a PIV key must prove beyond its signature (attestation, policies).
    pub piv_requirement: Option<String>,
    /// allowed_signers `valid-after` / `valid-before`, if the key came with them.
    pub valid: Validity,
    /// `SHA256:…`, as pages print it.
    pub fingerprint: String,
}

/// `SELECT` of the columns [`entry_from_row`] reads, as a literal so that whole
/// queries are constants.
macro_rules! select_entries {
    () => {
        concat!(select_entries!(columns), "FROM whitelist WHERE room_id = ")
    };
    // Reading the table from start to end instead of through the primary key.
    (in table order) => {
        concat!(select_entries!(columns), "FROM whitelist NOT INDEXED WHERE room_id = ")
    };
    (columns) => {
        "SELECT identity, label, added_by, added_at, last_admitted_at, ssh_namespaces, piv_requirement, fingerprint, \
         valid_after, valid_before "
    };
}

/// An instant as the whitelist stores it (RFC 3339, UTC, to the second), so that
/// equal instants are equal text and the change trigger sees real changes only.
pub(crate) fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A stored instant; one that does not read (which only a hand edit makes) is
/// taken as `unreadable`, chosen so that the entry refuses rather than allows.
fn stored_instant(
    row: &sqlx::sqlite::SqliteRow,
    column: &str,
    unreadable: chrono::DateTime<Utc>,
) -> Option<chrono::DateTime<Utc>> {
    row.get::<Option<String>, _>(column)
        .map(|t| chrono::DateTime::parse_from_rfc3339(&t).map_or(unreadable, |t| t.to_utc()))
}

impl WhitelistEntry {
    /// The entry's validity as pages and the CLI print it, if it has one.
    pub fn valid_text(&self) -> Option<String> {
        let at = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        match (self.valid.after, self.valid.before) {
            (None, None) => None,
            (Some(a), None) => Some(format!("valid from {}", at(a))),
            (None, Some(b)) => Some(format!("valid until {}", at(b))),
            (Some(a), Some(b)) => Some(format!("valid from {} until {}", at(a), at(b))),
        }
    }
}

fn entry_from_row(row: &sqlx::sqlite::SqliteRow) -> WhitelistEntry {
    WhitelistEntry {
        identity: row.get("identity"),
        label: row.get("label"),
        added_by: row.get("added_by"),
        added_at: row.get("added_at"),
        last_admitted_at: row.get("last_admitted_at"),
        ssh_namespaces: row
            .get::<Option<String>, _>("ssh_namespaces")
            .map(|n| n.split(',').map(str::to_owned).collect()),
        piv_requirement: row.get("piv_requirement"),
        valid: Validity {
            after: stored_instant(row, "valid_after", chrono::DateTime::<Utc>::MAX_UTC),
            before: stored_instant(row, "valid_before", chrono::DateTime::<Utc>::MIN_UTC),
        },
        fingerprint: row.get::<Option<String>, _>("fingerprint").unwrap_or_default(),
    }
}

/// Which entries a list page shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Search {
    #[default]
    All,
    /// Labels starting with this text, in any case.
    Label(String),
    /// Identities (DIDs) starting with this text.
    Identity(String),
    /// Fingerprints (`SHA256:…`) starting with this text.
    Fingerprint(String),
}

impl Search {
    /// What a host typed in a search box: a key in any format finds its entry; a
    /// DID or fingerprint prefix searches those; anything else is a label prefix.
    pub fn parse(text: &str) -> Search {
        let text = text.trim();
        if text.is_empty() {
            return Search::All;
        }
        if let Ok(identity) = crate::identity::Identity::parse(text) {
            return Search::Identity(identity.did().to_string());
        }
        if text.starts_with("did:") {
            return Search::Identity(text.to_owned());
        }
        if let Some(rest) = text.strip_prefix("SHA256:").or_else(|| text.strip_prefix("sha256:")) {
            return Search::Fingerprint(format!("SHA256:{rest}"));
        }
        Search::Label(text.to_owned())
    }

    /// The text that finds this again (for a search box and page links).
    pub fn text(&self) -> &str {
        match self {
            Search::All => "",
            Search::Label(t) | Search::Identity(t) | Search::Fingerprint(t) => t,
        }
    }
}

/// One page of a room's whitelist.
#[derive(Clone, Debug)]
pub struct ListPage {
    pub search: Search,
    /// Start after this identity (the last one of the page before).
    pub after: Option<String>,
    pub limit: i64,
}

/// `text%` for LIKE, with LIKE's own wildcards in `text` escaped.
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A whitelist change as recorded by the database triggers.
#[derive(Clone, Debug)]
pub struct WhitelistChange {
    pub seq: i64,
    pub room: String,
    /// Empty for a change to the room itself (settings, owners).
    pub identity: Did,
    pub removed: bool,
}

/// What one round of [`Store::prune_expired`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub audit_rows: u64,
    pub sessions: u64,
    pub invites: u64,
}

impl Pruned {
    pub fn any(&self) -> bool {
        *self != Pruned::default()
    }
}

pub fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, in WAL mode,
    /// for a server: a modest page cache per connection.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_for(path, Use::Server).await
    }

    /// Opens the database for a short-lived process that may write a million rows
    /// (see [`Use::Import`]); it calls [`Store::checkpoint`] when done.
    pub async fn open_for_import(path: &Path) -> Result<Self, StoreError> {
        Self::open_for(path, Use::Import).await
    }

    /// Copies what the write-ahead log holds into the database file and empties the
    /// log (a million-key import leaves hundreds of MB in it). Readers, such as a
    /// running server's, are waited for up to the busy timeout; if one still reads
    /// from the log then, the copy stops where it must and the log shrinks later.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        Ok(())
    }

    /// The secret named `name`: made (32 random bytes) the first time it is asked
    /// for, and the same from then on, across restarts and processes.
    pub async fn server_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(crate::ids::random_bytes::<32>().to_vec())
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn open_for(path: &Path, usage: Use) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // A multi-row upsert keeps a statement journal; in memory, not a temp file.
            .pragma("temp_store", "memory")
            .pragma("cache_size", format!("-{}", usage.cache_kib()))
            .pragma("wal_autocheckpoint", usage.autocheckpoint_pages().to_string())
            // After a checkpoint, the log file shrinks back to this (a million-key
            // import grows it to hundreds of MB, which would otherwise stay on disk).
            .pragma("journal_size_limit", (64 * 1024 * 1024).to_string())
            .busy_timeout(Duration::from_secs(5))
            .log_slow_statements(usage.slow_statement_level(), Duration::from_secs(1));
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(shown.clone(), e))?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(|e| StoreError::MigrateAt(shown, e))?;
        let store = Store { pool };
        store.fill_in_fingerprints().await?;
        Ok(store)
    }

    /// Gives entries written before fingerprints were stored theirs (once; the
    /// partial index makes finding none free).
    async fn fill_in_fingerprints(&self) -> Result<(), StoreError> {
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT rowid, identity FROM whitelist INDEXED BY whitelist_without_fingerprint \
                 WHERE fingerprint IS NULL LIMIT 1000",
            )
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = self.pool.begin().await?;
            for (rowid, identity) in rows {
                // An identity that no longer parses keeps an empty fingerprint.
                let fp = crate::identity::Identity::parse(&identity).map(|i| i.fingerprint()).unwrap_or_default();
                sqlx::query("UPDATE whitelist SET fingerprint = ? WHERE rowid = ?")
                    .bind(fp)
                    .bind(rowid)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }

    pub async fn room(&self, id: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, name, created_at, created_by, require_user_verification, max_peers, freshness_secs, \
             reverify_every_secs FROM rooms WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let owners = sqlx::query_scalar("SELECT identity FROM room_owners WHERE room_id = ? ORDER BY identity")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(RoomRecord {
            id: id.clone(),
            name: row.get("name"),
            created_at: row.get("created_at"),
            created_by: row.get("created_by"),
            owners,
            require_user_verification: row.get("require_user_verification"),
            max_peers: row.get("max_peers"),
            freshness_secs: row.get("freshness_secs"),
            reverify_every_secs: row.get("reverify_every_secs"),
        }))
    }

    /// All rooms, newest first, with how many identities each whitelists.
    pub async fn rooms(&self) -> Result<Vec<(RoomRecord, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.created_at, r.created_by, r.require_user_verification, r.max_peers, r.freshness_secs, r.reverify_every_secs, \
               r.entries, \
               (SELECT group_concat(identity, ' ') FROM room_owners o WHERE o.room_id = r.id) AS owners \
             FROM rooms r ORDER BY r.created_at DESC, r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = RoomId::parse(row.get::<&str, _>("id")).ok()?;
                let owners: Option<String> = row.get("owners");
                Some((
                    RoomRecord {
                        id,
                        name: row.get("name"),
                        created_at: row.get("created_at"),
                        created_by: row.get("created_by"),
                        owners: owners.unwrap_or_default().split(' ').map(Did::from_stored).collect(),
                        require_user_verification: row.get("require_user_verification"),
                        max_peers: row.get("max_peers"),
                        freshness_secs: row.get("freshness_secs"),
                        reverify_every_secs: row.get("reverify_every_secs"),
                    },
                    row.get("entries"),
                ))
            })
            .collect())
    }

    /// One identity's entry in a room's whitelist: a lookup by the primary key, as
    /// cheap at a million entries as at ten.
    pub async fn entry(&self, room: &RoomId, identity: &str) -> Result<Option<WhitelistEntry>, StoreError> {
        let row = sqlx::query(concat!(select_entries!(), "? AND identity = ?"))
            .bind(room.as_str())
            .bind(identity)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(entry_from_row))
    }

    /// A page of a room's whitelist in identity order, after `page.after`, matching
    /// `page.search`. Paging and identity prefixes walk the primary key, so a page of
    /// a million-entry list costs what a page of a ten-entry one does. Labels and
    /// fingerprints have no index (each would cost an import of a million keys more
    /// than half its speed), so their searches read rows until the page is full:
    /// the room's rows in key order, each fetched from its place in the table, or,
    /// when the room holds at least a quarter of the table, the whole table in its
    /// own order, which reads pages in sequence (measured at a million entries with
    /// few matches: about 0.15 s against 0.55 s).
    pub async fn whitelist_page(&self, room: &RoomId, page: &ListPage) -> Result<Vec<WhitelistEntry>, StoreError> {
        let scan = matches!(page.search, Search::Label(_) | Search::Fingerprint(_)) && self.mostly(room).await?;
        let mut q = sqlx::QueryBuilder::new(if scan { select_entries!(in table order) } else { select_entries!() });
        q.push_bind(room.as_str());
        match &page.search {
            Search::All => {}
            Search::Identity(prefix) => {
                q.push(" AND identity >= ").push_bind(prefix.clone());
                q.push(" AND identity < ").push_bind(format!("{prefix}\u{10ffff}"));
            }
            // LIKE ignores ASCII case; the prefix's own % and _ are escaped.
            Search::Label(prefix) => {
                q.push(" AND label LIKE ").push_bind(like_prefix(prefix)).push(" ESCAPE '\\'");
            }
            Search::Fingerprint(prefix) => {
                q.push(" AND fingerprint >= ").push_bind(prefix.clone());
                q.push(" AND fingerprint < ").push_bind(format!("{prefix}\u{10ffff}"));
            }
        }
        if let Some(after) = &page.after {
            q.push(" AND identity > ").push_bind(after.clone());
        }
        q.push(" ORDER BY identity LIMIT ").push_bind(page.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(entry_from_row).collect())
    }

    /// Whether `room` holds at least a quarter of all whitelist rows (the highest
    /// rowid counts every row the table holds, and some deleted ones).
    async fn mostly(&self, room: &RoomId) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce((SELECT entries FROM rooms WHERE id = ?), 0) * 4 \
             >= coalesce((SELECT max(rowid) FROM whitelist), 0)",
        )
        .bind(room.as_str())
        .fetch_one(&self.pool)
        .await?)
    }

    /// How many identities a room whitelists.
    pub async fn whitelist_len(&self, room: &RoomId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT coalesce((SELECT entries FROM rooms WHERE id = ?), 0)")
            .bind(room.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Every entry of a room's whitelist, in identity order, as a stream (an export
    /// of a million entries never holds them all).
    pub fn whitelist_stream<'a>(
        &'a self,
        room: &'a RoomId,
    ) -> impl futures_util::Stream<Item = Result<WhitelistEntry, StoreError>> + 'a {
        use futures_util::StreamExt;
        sqlx::query(concat!(select_entries!(), "? ORDER BY identity"))
            .bind(room.as_str())
            .fetch(&self.pool)
            .map(|row| row.map(|r| entry_from_row(&r)).map_err(StoreError::from))
    }

    /// Whitelist changes after `seq`, oldest first.
    /// Changes since `seq`, at most [`CHANGES_PAGE`] of them, oldest first.
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<WhitelistChange>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, room_id, identity, op FROM whitelist_changes WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(seq)
                .bind(CHANGES_PAGE as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|row| WhitelistChange {
                seq: row.get("seq"),
                room: row.get("room_id"),
                identity: row.get("identity"),
                removed: row.get::<&str, _>("op") == "remove",
            })
            .collect())
    }

    /// The newest change's sequence number (0 when there is none).
    pub async fn last_change(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT max(seq) FROM whitelist_changes").fetch_one(&self.pool).await?;
        Ok(seq.unwrap_or(0))
    }

    /// Forgets changes older than the newest `keep`: every live server has long seen them.
    pub async fn prune_changes(&self, keep: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM whitelist_changes WHERE seq <= (SELECT max(seq) FROM whitelist_changes) - ?")
            .bind(keep)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The room's audit log, newest first; `before` pages backwards by event id.
    pub async fn audit(&self, room: &RoomId, limit: i64, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_of(room, None, limit, before).await
    }

    /// A page of a room's audit log, newest first, of one event only if `event` is
    /// given (through its own index: a rare event costs no scan of the log).
    pub async fn audit_of(
        &self,
        room: &RoomId,
        event: Option<&str>,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let query = match event {
            None => sqlx::query(
                "SELECT id, at, event, identity, method, reason, remote FROM audit \
                 WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            )
            .bind(room.as_str()),
            Some(event) => sqlx::query(
                "SELECT id, at, event, identity, method, reason, remote FROM audit INDEXED BY audit_by_event \
                 WHERE room_id = ? AND event = ? AND id < ? ORDER BY id DESC LIMIT ?",
            )
            .bind(room.as_str())
            .bind(event.to_owned()),
        };
        let rows = query.bind(before.unwrap_or(i64::MAX)).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|row| AuditRecord {
                id: row.get("id"),
                at: row.get("at"),
                event: row.get("event"),
                identity: row.get("identity"),
                method: row.get("method"),
                reason: row.get("reason"),
                remote: row.get("remote"),
            })
            .collect())
    }

    /// Deletes what has lapsed by `now`: audit rows older than `retention` (`None`:
    /// keep them), expired sign-in sessions, and invites used up or expired. Audit
    /// rows go in bounded batches so that no writer waits long behind the upkeep.
    pub async fn prune_expired(
        &self,
        now: chrono::DateTime<Utc>,
        retention: Option<chrono::Duration>,
    ) -> Result<Pruned, StoreError> {
        const BATCH: i64 = 5_000;
        let text = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut pruned = Pruned::default();
        if let Some(retention) = retention {
            let cutoff = text(now - retention);
            loop {
                let deleted = sqlx::query(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
                )
                .bind(&cutoff)
                .bind(BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
                pruned.audit_rows += deleted;
                if deleted < BATCH as u64 {
                    break;
                }
            }
        }
        let now = text(now);
        pruned.sessions = sqlx::query("DELETE FROM web_sessions WHERE expires_at < ?")
            .bind(&now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        pruned.invites = sqlx::query("DELETE FROM invites WHERE expires_at < ? OR uses_left <= 0")
            .bind(&now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(pruned)
    }

    /// Opens a database file without changing it (no migration, no log file): to
    /// check a backup. Fails unless it is a keygate database.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let options = SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(shown.clone(), e))?;
        let store = Store { pool };
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('_sqlx_migrations', 'rooms', 'whitelist', 'audit')",
        )
        .fetch_one(&store.pool)
        .await
        .map_err(|e| StoreError::NotKeygate(e.to_string()))?;
        if tables != 4 {
            store.close().await;
            return Err(StoreError::NotKeygate(format!("{} has no keygate tables", shown.display())));
        }
        Ok(store)
    }

    /// Whether the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM rooms LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(())
    }

    /// SQLite's own check of every page and index.
    pub async fn integrity(&self) -> Result<(), StoreError> {
        let result: String = sqlx::query_scalar("PRAGMA integrity_check(1)").fetch_one(&self.pool).await?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged(result))
        }
    }

    /// Rooms, whitelisted keys (from the rooms' counters) and audit rows.
    pub async fn counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let (rooms, keys): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(entries), 0) FROM rooms").fetch_one(&self.pool).await?;
        let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit").fetch_one(&self.pool).await?;
        Ok((rooms, keys, audit))
    }

    /// Writes a consistent copy of the database to `path` (which must not exist):
    /// one read transaction, so everything committed before it and nothing after,
    /// while other connections and processes go on reading and writing.
    pub async fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        let target = path.to_str().ok_or_else(|| StoreError::NotKeygate("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(&self.pool).await?;
        Ok(())
    }

    /// Whether another connection (a running server, a CLI command) has the
    /// database at `path` open: an exclusive lock cannot be had then.
    pub async fn in_use(path: &Path) -> Result<bool, StoreError> {
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .locking_mode(sqlx::sqlite::SqliteLockingMode::Exclusive)
            .busy_timeout(Duration::from_millis(200));
        let mut conn = options.connect().await.map_err(|e| StoreError::Open(shown, e))?;
        let locked = sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.is_err();
        if !locked {
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        let _ = sqlx::Connection::close(conn).await;
        Ok(locked)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for pending writes and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
