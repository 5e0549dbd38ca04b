//! The message bus the servers of one service share (NATS, `bus = "nats://…"`).
//!
//! For now it carries one thing: that the change log has grown. A server that
//! commits a change to who may enter says so on `keygate.changes`; every server
//! listening reads the log at once ([`crate::rooms::Rooms::catch_up`]) instead of
//! at its next poll, so a key removed on one server leaves a call on another in
//! milliseconds. The log stays the truth: a lost message only means the poll
//! (`change_poll_ms`) applies the change a little later, and a message never says
//! what changed, so nothing on the bus can eject anyone the log does not name.

use std::sync::Arc;
use tokio::sync::watch;

/// The subject on which servers say that the change log has grown.
const CHANGES: &str = "keygate.changes";

/// A connection to the bus.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot reach the bus at {url}: {reason}")]
pub struct BusError {
    url: String,
    reason: String,
}

impl Bus {
    /// Connects to the NATS server at `url`; it reconnects by itself after.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let options = async_nats::ConnectOptions::new()
            .name("keygate")
            .retry_on_initial_connect()
            .connection_timeout(std::time::Duration::from_secs(5));
        let client = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let client = options.connect(url).await.map_err(|e| e.to_string())?;
            // Connected once before the server says it is up.
            client.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(client)
        })
        .await
        .map_err(|_| "no answer within 10 s".to_owned())
        .and_then(|r| r)
        .map_err(|reason| BusError { url: url.to_owned(), reason })?;
        Ok(Bus { client })
    }

    /// Tells every server that this one committed a change.
    pub async fn announce_change(&self) {
        if let Err(e) = self.client.publish(CHANGES, Vec::new().into()).await {
            // The others apply it at their next poll.
            tracing::warn!(error = %e, "announcing a change on the bus failed");
        }
    }

    /// Reads the change log whenever a server announces a change, until `shutdown`.
    pub async fn follow_changes(self, rooms: Arc<crate::rooms::Rooms>, mut shutdown: watch::Receiver<bool>) {
        use futures_util::StreamExt;
        let mut changes = match self.client.subscribe(CHANGES).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen on the bus; changes arrive by polling only");
                return;
            }
        };
        loop {
            tokio::select! {
                message = changes.next() => {
                    if message.is_none() {
                        return;
                    }
                    if let Err(e) = rooms.catch_up().await {
                        tracing::warn!(error = %e, "applying the change log failed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
