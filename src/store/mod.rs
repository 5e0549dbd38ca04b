//! The store: rooms, owners, whitelists, audit log, in SQLite (embedded, the
//! default) or PostgreSQL (`--db postgres://…`, which many nodes can share).
//!
//! Owns all SQL. A query is written once, with `$N` parameters (which SQLite reads
//! too), and runs on either database through [`on_db!`]; the few statements that
//! differ (SQLite's pragmas and index hints, string aggregation, case-insensitive
//! LIKE) say so where they are. Migrations are kept per database: `migrations/`
//! for SQLite and `migrations/postgres/` for PostgreSQL, the same schema in each. Speaks in identities and room ids, never in sockets. Audit events
//! are written in batches by [`AuditLog`] so that admissions never wait on a disk
//! write; everything else is written synchronously, since a whitelist change must be
//! durable before it is acknowledged.

/// Runs `$body` with `$pool` bound to the store's pool, whichever database it is:
/// the same code, type-checked once for each.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

mod audit;
mod changes;
mod credentials;
mod did_column;
mod once;
mod presence;
mod web;

pub use audit::{AuditEvent, AuditLog, AuditRecord};
pub use changes::{Change, ChangeAudit, NewEntry, RoomSettings};
pub use credentials::{KeyAttestation, StoredCredential, CREDENTIAL_HINTS, HINT_ROOMS_UP_TO};
pub use once::{StoredFlash, StoredTicket};
pub use presence::StoredSeat;
pub use web::{Invite, WebSession};

use crate::identity::{Did, Validity};
use crate::ids::RoomId;
use chrono::{SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;
use sqlx::SqlitePool;
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
    #[error("{0} works on a SQLite database only; for PostgreSQL use its own tools (pg_dump, pg_restore)")]
    SqliteOnly(&'static str),
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

/// The database behind a store.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

/// The `--db` setting as messages and the start-up summary show it: a file's
/// absolute path, or a PostgreSQL URL without its password.
pub fn shown_db(db: &Path) -> String {
    if is_postgres(db) {
        return shown_url(db.to_str().unwrap_or_default()).display().to_string();
    }
    std::path::absolute(db).unwrap_or_else(|_| db.to_owned()).display().to_string()
}

/// Whether `db` (the `--db` setting) names a PostgreSQL database rather than a
/// SQLite file.
pub fn is_postgres(db: &Path) -> bool {
    db.to_str().is_some_and(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"))
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
    /// How calls carry media (`mesh`, `sfu`, `auto`); `None`: mesh.
    pub media: Option<String>,
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
fn stored_instant(text: Option<String>, unreadable: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
    text.map(|t| chrono::DateTime::parse_from_rfc3339(&t).map_or(unreadable, |t| t.to_utc()))
}

/// The columns of [`select_entries!`], as either database returns them.
#[derive(sqlx::FromRow)]
struct EntryRow {
    identity: String,
    label: String,
    added_by: String,
    added_at: String,
    last_admitted_at: Option<String>,
    ssh_namespaces: Option<String>,
    piv_requirement: Option<String>,
    fingerprint: Option<String>,
    valid_after: Option<String>,
    valid_before: Option<String>,
}

impl From<EntryRow> for WhitelistEntry {
    fn from(row: EntryRow) -> Self {
        WhitelistEntry {
            identity: Did::from_stored(&row.identity),
            label: row.label,
            added_by: row.added_by,
            added_at: row.added_at,
            last_admitted_at: row.last_admitted_at,
            ssh_namespaces: row.ssh_namespaces.map(|n| n.split(',').map(str::to_owned).collect()),
            piv_requirement: row.piv_requirement,
            valid: Validity {
                after: stored_instant(row.valid_after, chrono::DateTime::<Utc>::MAX_UTC),
                before: stored_instant(row.valid_before, chrono::DateTime::<Utc>::MIN_UTC),
            },
            fingerprint: row.fingerprint.unwrap_or_default(),
        }
    }
}

/// A room's columns, as either database returns them.
#[derive(sqlx::FromRow)]
struct RoomRow {
    id: String,
    name: String,
    created_at: String,
    created_by: String,
    require_user_verification: bool,
    max_peers: Option<i64>,
    freshness_secs: Option<i64>,
    reverify_every_secs: Option<i64>,
    media: Option<String>,
}

impl RoomRow {
    const COLUMNS: &'static str = "id, name, created_at, created_by, require_user_verification, max_peers, \
                                   freshness_secs, reverify_every_secs, media";

    fn record(self, id: RoomId, owners: Vec<Did>) -> RoomRecord {
        RoomRecord {
            id,
            name: self.name,
            created_at: self.created_at,
            created_by: self.created_by,
            owners,
            require_user_verification: self.require_user_verification,
            max_peers: self.max_peers,
            freshness_secs: self.freshness_secs,
            reverify_every_secs: self.reverify_every_secs,
            media: self.media,
        }
    }
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
    /// Expired tickets, spent tokens past their expiry, unread notices, and the
    /// seats of servers long silent.
    pub single_use: u64,
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
    /// Opens (creating if needed) and migrates the database `db`: a SQLite file, in
    /// WAL mode with a modest page cache per connection, or a `postgres://` URL.
    pub async fn open(db: &Path) -> Result<Self, StoreError> {
        Self::open_for(db, Use::Server).await
    }

    /// Opens the database for a short-lived process that may write a million rows
    /// (see [`Use::Import`]); it calls [`Store::checkpoint`] when done.
    pub async fn open_for_import(db: &Path) -> Result<Self, StoreError> {
        Self::open_for(db, Use::Import).await
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// Copies what the write-ahead log holds into the database file and empties the
    /// log (a million-key import leaves hundreds of MB in it). Readers, such as a
    /// running server's, are waited for up to the busy timeout; if one still reads
    /// from the log then, the copy stops where it must and the log shrinks later.
    /// PostgreSQL checkpoints by itself.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Db::Sqlite(pool) = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
        }
        Ok(())
    }

    /// The secret named `name`: made (32 random bytes) the first time it is asked
    /// for, and the same from then on, across restarts, processes and nodes.
    pub async fn server_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let value = crate::ids::random_bytes::<32>().to_vec();
        Ok(on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(pool)
                .await?;
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(pool).await?
        }))
    }

    async fn open_for(db: &Path, usage: Use) -> Result<Self, StoreError> {
        if is_postgres(db) {
            return Self::open_postgres(db).await;
        }
        let path = db;
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
        let store = Store { db: Db::Sqlite(pool) };
        store.fill_in_fingerprints().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL and migrates it. Many nodes may start at once: the
    /// migrator holds PostgreSQL's advisory lock while it works.
    async fn open_postgres(db: &Path) -> Result<Self, StoreError> {
        let url = db.to_str().unwrap_or_default();
        let options: PgConnectOptions = url.parse().map_err(|e| StoreError::Open(shown_url(url), e))?;
        let options = options.log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(shown_url(url), e))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::MigrateAt(shown_url(url), e))?;
        Ok(Store { db: Db::Postgres(pool) })
    }

    /// Gives entries written before fingerprints were stored theirs (once; the
    /// partial index makes finding none free). A PostgreSQL database was never
    /// without them.
    async fn fill_in_fingerprints(&self) -> Result<(), StoreError> {
        let Db::Sqlite(pool) = &self.db else { return Ok(()) };
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT rowid, identity FROM whitelist INDEXED BY whitelist_without_fingerprint \
                 WHERE fingerprint IS NULL LIMIT 1000",
            )
            .fetch_all(pool)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = pool.begin().await?;
            for (rowid, identity) in rows {
                // An identity that no longer parses keeps an empty fingerprint.
                let fp = crate::identity::Identity::parse(&identity).map(|i| i.fingerprint()).unwrap_or_default();
                sqlx::query("UPDATE whitelist SET fingerprint = $1 WHERE rowid = $2")
                    .bind(fp)
                    .bind(rowid)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }

    pub async fn room(&self, id: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let select = format!("SELECT {} FROM rooms WHERE id = $1", RoomRow::COLUMNS);
        let found: Option<(RoomRow, Vec<String>)> = on_db!(&self.db, pool => {
            match sqlx::query_as::<_, RoomRow>(&select).bind(id.as_str()).fetch_optional(pool).await? {
                None => None,
                Some(row) => {
                    let owners =
                        sqlx::query_scalar("SELECT identity FROM room_owners WHERE room_id = $1 ORDER BY identity")
                            .bind(id.as_str())
                            .fetch_all(pool)
                            .await?;
                    Some((row, owners))
                }
            }
        });
        Ok(found.map(|(row, owners)| row.record(id.clone(), owners.iter().map(|o| Did::from_stored(o)).collect())))
    }

    /// All rooms, newest first, with how many identities each whitelists.
    pub async fn rooms(&self) -> Result<Vec<(RoomRecord, i64)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Listed {
            #[sqlx(flatten)]
            room: RoomRow,
            entries: i64,
            owners: Option<String>,
        }
        let owners = match &self.db {
            Db::Sqlite(_) => "group_concat(identity, ' ')",
            Db::Postgres(_) => "string_agg(identity, ' ')",
        };
        let select = format!(
            "SELECT {}, entries, (SELECT {owners} FROM room_owners o WHERE o.room_id = r.id) AS owners \
             FROM rooms r ORDER BY r.created_at DESC, r.id",
            RoomRow::COLUMNS
        );
        let rows: Vec<Listed> = on_db!(&self.db, pool => sqlx::query_as(&select).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = RoomId::parse(&row.room.id).ok()?;
                let owners = row.owners.unwrap_or_default().split(' ').map(Did::from_stored).collect();
                Some((row.room.record(id, owners), row.entries))
            })
            .collect())
    }

    /// One identity's entry in a room's whitelist: a lookup by the primary key, as
    /// cheap at a million entries as at ten.
    pub async fn entry(&self, room: &RoomId, identity: &str) -> Result<Option<WhitelistEntry>, StoreError> {
        let row: Option<EntryRow> = on_db!(&self.db, pool => {
            sqlx::query_as(concat!(select_entries!(), "$1 AND identity = $2"))
                .bind(room.as_str())
                .bind(identity)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(WhitelistEntry::from))
    }

    /// A page of a room's whitelist in identity order, after `page.after`, matching
    /// `page.search`. Paging and identity prefixes walk the primary key, so a page of
    /// a million-entry list costs what a page of a ten-entry one does. Labels and
    /// fingerprints have no index (each would cost an import of a million keys more
    /// than half its speed), so their searches read rows until the page is full:
    /// the room's rows in key order, each fetched from its place in the table, or,
    /// when the room holds at least a quarter of the table, the whole table in its
    /// own order, which reads pages in sequence (measured at a million entries with
    /// few matches: about 0.15 s against 0.55 s). PostgreSQL chooses its own plan.
    pub async fn whitelist_page(&self, room: &RoomId, page: &ListPage) -> Result<Vec<WhitelistEntry>, StoreError> {
        let scan = matches!(page.search, Search::Label(_) | Search::Fingerprint(_)) && self.mostly(room).await?;
        // LIKE ignores ASCII case in SQLite; ILIKE does in PostgreSQL.
        let like = if self.is_postgres() { " AND label ILIKE " } else { " AND label LIKE " };
        let rows: Vec<EntryRow> = on_db!(&self.db, pool => {
            let mut q = sqlx::QueryBuilder::new(if scan { select_entries!(in table order) } else { select_entries!() });
            q.push_bind(room.as_str());
            match &page.search {
                Search::All => {}
                Search::Identity(prefix) => {
                    q.push(" AND identity >= ").push_bind(prefix.clone());
                    q.push(" AND identity < ").push_bind(format!("{prefix}\u{10ffff}"));
                }
                // The prefix's own % and _ are escaped.
                Search::Label(prefix) => {
                    q.push(like).push_bind(like_prefix(prefix)).push(" ESCAPE '\\'");
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
            q.build_query_as().fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(WhitelistEntry::from).collect())
    }

    /// Whether `room` holds at least a quarter of all whitelist rows (the highest
    /// rowid counts every row the table holds, and some deleted ones). Only SQLite
    /// is told how to read the table.
    async fn mostly(&self, room: &RoomId) -> Result<bool, StoreError> {
        let Db::Sqlite(pool) = &self.db else { return Ok(false) };
        Ok(sqlx::query_scalar(
            "SELECT coalesce((SELECT entries FROM rooms WHERE id = $1), 0) * 4 \
             >= coalesce((SELECT max(rowid) FROM whitelist), 0)",
        )
        .bind(room.as_str())
        .fetch_one(pool)
        .await?)
    }

    /// How many identities a room whitelists.
    pub async fn whitelist_len(&self, room: &RoomId) -> Result<i64, StoreError> {
        Ok(on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT coalesce((SELECT entries FROM rooms WHERE id = $1), 0)")
                .bind(room.as_str())
                .fetch_one(pool)
                .await?
        }))
    }

    /// Every entry of a room's whitelist, in identity order, as a stream (an export
    /// of a million entries never holds them all).
    pub fn whitelist_stream<'a>(
        &'a self,
        room: &'a RoomId,
    ) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<WhitelistEntry, StoreError>> + Send + 'a>> {
        use futures_util::StreamExt;
        on_db!(&self.db, pool => {
            sqlx::query_as::<_, EntryRow>(concat!(select_entries!(), "$1 ORDER BY identity"))
                .bind(room.as_str())
                .fetch(pool)
                .map(|row| row.map(WhitelistEntry::from).map_err(StoreError::from))
                .boxed()
        })
    }

    /// Changes since `seq`, at most [`CHANGES_PAGE`] of them, oldest first.
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<WhitelistChange>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT seq, room_id, identity, op FROM whitelist_changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(seq)
                .bind(CHANGES_PAGE as i64)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(seq, room, identity, op)| WhitelistChange {
                seq,
                room,
                identity: Did::from_stored(&identity),
                removed: op == "remove",
            })
            .collect())
    }

    /// The newest change's sequence number (0 when there is none).
    pub async fn last_change(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT max(seq) FROM whitelist_changes").fetch_one(pool).await?
        });
        Ok(seq.unwrap_or(0))
    }

    /// Forgets changes older than the newest `keep`: every live server has long seen them.
    pub async fn prune_changes(&self, keep: i64) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM whitelist_changes WHERE seq <= (SELECT max(seq) FROM whitelist_changes) - $1")
                .bind(keep)
                .execute(pool)
                .await?
        .rows_affected()
        });
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
        let sql = match (event, &self.db) {
            (None, _) => {
                "SELECT id, at, event, identity, method, reason, remote FROM audit \
                 WHERE room_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            }
            // SQLite would pick the room's index and filter; this one finds the event.
            (Some(_), Db::Sqlite(_)) => {
                "SELECT id, at, event, identity, method, reason, remote FROM audit INDEXED BY audit_by_event \
                 WHERE room_id = $1 AND event = $4 AND id < $2 ORDER BY id DESC LIMIT $3"
            }
            (Some(_), Db::Postgres(_)) => {
                "SELECT id, at, event, identity, method, reason, remote FROM audit \
                 WHERE room_id = $1 AND event = $4 AND id < $2 ORDER BY id DESC LIMIT $3"
            }
        };
        Ok(on_db!(&self.db, pool => {
            let query = sqlx::query_as(sql).bind(room.as_str()).bind(before.unwrap_or(i64::MAX)).bind(limit);
            match event {
                Some(event) => query.bind(event.to_owned()),
                None => query,
            }
            .fetch_all(pool)
            .await?
        }))
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
                let deleted = on_db!(&self.db, pool => {
                    sqlx::query("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)")
                        .bind(&cutoff)
                        .bind(BATCH)
                        .execute(pool)
                        .await?
                        .rows_affected()
                });
                pruned.audit_rows += deleted;
                if deleted < BATCH as u64 {
                    break;
                }
            }
        }
        let now_ms = now.timestamp_millis();
        let now = text(now);
        on_db!(&self.db, pool => {
            pruned.sessions = sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1")
                .bind(&now)
                .execute(pool)
                .await?
                .rows_affected();
            pruned.invites = sqlx::query("DELETE FROM invites WHERE expires_at < $1 OR uses_left <= 0")
                .bind(&now)
                .execute(pool)
                .await?
                .rows_affected();
            pruned.single_use = sqlx::query("DELETE FROM tickets WHERE expires_at < $1")
                .bind(&now)
                .execute(pool)
                .await?
                .rows_affected()
                + sqlx::query("DELETE FROM spent_tokens WHERE expires_at < $1")
                    .bind(&now)
                    .execute(pool)
                    .await?
                    .rows_affected()
                + sqlx::query("DELETE FROM flashes WHERE expires_at < $1")
                    .bind(&now)
                    .execute(pool)
                    .await?
                    .rows_affected();
        });
        // Seats of servers silent for a minute (a stopped server frees its own).
        pruned.single_use += self.prune_presence(now_ms - 60_000).await?;
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
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('_sqlx_migrations', 'rooms', 'whitelist', 'audit')",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| StoreError::NotKeygate(e.to_string()))?;
        let store = Store { db: Db::Sqlite(pool) };
        if tables != 4 {
            store.close().await;
            return Err(StoreError::NotKeygate(format!("{} has no keygate tables", shown.display())));
        }
        Ok(store)
    }

    /// Whether the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: Option<String> =
            on_db!(&self.db, pool => sqlx::query_scalar("SELECT id FROM rooms LIMIT 1").fetch_optional(pool).await?);
        Ok(())
    }

    /// SQLite's own check of every page and index (PostgreSQL checks its pages as
    /// it reads them: there, whether it answers).
    pub async fn integrity(&self) -> Result<(), StoreError> {
        let Db::Sqlite(pool) = &self.db else { return self.ping().await };
        let result: String = sqlx::query_scalar("PRAGMA integrity_check(1)").fetch_one(pool).await?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged(result))
        }
    }

    /// Rooms, whitelisted keys (from the rooms' counters) and audit rows.
    pub async fn counts(&self) -> Result<(i64, i64, i64), StoreError> {
        Ok(on_db!(&self.db, pool => {
            let (rooms, keys): (i64, i64) =
                sqlx::query_as("SELECT count(*), CAST(coalesce(sum(entries), 0) AS BIGINT) FROM rooms")
                    .fetch_one(pool)
                    .await?;
            let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit").fetch_one(pool).await?;
            (rooms, keys, audit)
        }))
    }

    /// Writes a consistent copy of the database to `path` (which must not exist):
    /// one read transaction, so everything committed before it and nothing after,
    /// while other connections and processes go on reading and writing.
    pub async fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        let Db::Sqlite(pool) = &self.db else { return Err(StoreError::SqliteOnly("keygate backup")) };
        let target = path.to_str().ok_or_else(|| StoreError::NotKeygate("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1").bind(target).execute(pool).await?;
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

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Waits for pending writes and closes every connection.
    pub async fn close(&self) {
        on_db!(&self.db, pool => pool.close().await);
    }
}

/// A database URL as errors show it: without its password.
pub(crate) fn shown_url(url: &str) -> std::path::PathBuf {
    let mut shown = url::Url::parse(url).map_or_else(
        |_| "postgres://…".to_owned(),
        |mut u| {
            if u.password().is_some() {
                let _ = u.set_password(Some("…"));
            }
            u.to_string()
        },
    );
    shown.truncate(200);
    std::path::PathBuf::from(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let shown = shown_db(Path::new("postgres://keygate:hunter2@db.internal:5432/keygate"));
        assert!(!shown.contains("hunter2") && shown.contains("db.internal"), "{shown}");
        assert!(shown_db(Path::new("keygate.db")).ends_with("/keygate.db"));
    }
}
