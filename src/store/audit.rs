//! The audit log writer: events are queued and written in batches, one transaction
//! each, so admissions never wait for the disk. Nothing is dropped: when the queue
//! is full, the sender waits.

use super::{now_text, Store};
use crate::identity::Did;
use crate::ids::RoomId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// An event to record.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub room: RoomId,
    /// `admitted`, `refused`, `left`, `revoked`, `whitelist-add`, `whitelist-remove`, …
    pub event: &'static str,
    pub identity: Option<Did>,
    pub method: Option<&'static str>,
    pub reason: Option<String>,
    pub remote: Option<String>,
}

/// An event as stored.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub event: String,
    pub identity: Option<Did>,
    pub method: Option<String>,
    pub reason: Option<String>,
    pub remote: Option<String>,
}

enum Item {
    Event(String, AuditEvent),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// A handle for queueing audit events; clones share one writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Item>,
}

impl AuditLog {
    /// Starts the writer task; it ends once every handle is dropped.
    pub fn start(store: Store) -> (AuditLog, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_batches(store, rx));
        (AuditLog { tx }, writer)
    }

    pub async fn record(&self, event: AuditEvent) {
        if self.tx.send(Item::Event(now_text(), event)).await.is_err() {
            tracing::error!("audit writer has stopped; event not recorded");
        }
    }

    /// Waits until every event recorded before this call is in the database.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Events that may wait for the writer. While another process holds the database
/// (a `keygate room allow` batch into a million-key list holds it for about a
/// second), admissions keep recording events (two per admission at several
/// thousand a second); a session only waits for the writer once this is full.
/// Measured: with 8,192, 64 clients lost 695 admissions to a full server while
/// their sessions waited here; an event is about 300 bytes, so this is ~20 MB at most.
const QUEUE: usize = 65_536;

/// Most events written in one transaction.
const BATCH: usize = 2048;
/// How long the writer lets events gather before writing them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(25);

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Item>) {
    let mut items = Vec::with_capacity(BATCH);
    let mut events = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut items, BATCH).await > 0 {
        // Let a batch gather: one transaction per interval instead of one per event
        // keeps the database thread (and its wake-ups) off the admission path.
        if items.len() < BATCH && !items.iter().any(|i| matches!(i, Item::Flush(_))) {
            tokio::time::sleep(GATHER).await;
            while items.len() < BATCH {
                match rx.try_recv() {
                    Ok(item) => items.push(item),
                    Err(_) => break,
                }
            }
        }
        let mut flushes = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Event(at, e) => events.push((at, e)),
                Item::Flush(done) => flushes.push(done),
            }
        }
        if !events.is_empty() {
            if let Err(e) = write(&store, &events).await {
                tracing::error!(error = %e, events = events.len(), "audit write failed");
            }
            events.clear();
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Rows per INSERT statement: 7 parameters each stays far below SQLite's limit.
const ROWS_PER_STATEMENT: usize = 256;

/// Writes a batch in one transaction with few statements: each statement is a
/// round trip to the database thread, which would otherwise cost more than the write.
async fn write(store: &Store, batch: &[(String, AuditEvent)]) -> Result<(), sqlx::Error> {
    on_db!(store.db(), pool => {
        let mut tx = pool.begin().await?;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO audit (room_id, at, event, identity, method, reason, remote) ");
            insert.push_values(chunk, |mut row, (at, e)| {
                row.push_bind(e.room.as_str())
                    .push_bind(at.as_str())
                    .push_bind(e.event)
                    .push_bind(e.identity.as_ref().map(|i| i.as_str()))
                    .push_bind(e.method)
                    .push_bind(e.reason.as_deref())
                    .push_bind(e.remote.as_deref());
            });
            insert.build().execute(&mut *tx).await?;

            let admitted: Vec<_> = chunk.iter().filter(|(_, e)| e.event == "admitted").collect();
            if !admitted.is_empty() {
                // A VALUES list names its columns column1, column2… in both databases.
                let mut update = sqlx::QueryBuilder::new(
                    "UPDATE whitelist SET last_admitted_at = v.at FROM (SELECT column1 AS room_id, column2 AS identity, max(column3) AS at FROM (",
                );
                update.push_values(admitted, |mut row, (at, e)| {
                    row.push_bind(e.room.as_str()).push_bind(e.identity.as_ref().map(|i| i.as_str())).push_bind(at.as_str());
                });
                update.push(
                    ") AS listed GROUP BY 1, 2) AS v WHERE whitelist.room_id = v.room_id AND whitelist.identity = v.identity",
                );
                update.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await
    })
}
