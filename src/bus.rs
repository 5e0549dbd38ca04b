//! The message bus the servers of one service share (NATS, `bus = "nats://…"`).
//!
//! What it carries, by subject:
//!
//! - `keygate.changes`: that the change log has grown. A server that commits a
//!   change to who may enter says so; every server reads the log at once
//!   ([`crate::rooms::Rooms::catch_up`]) instead of at its next poll. The log stays
//!   the truth: a lost message only means the poll (`change_poll_ms`) applies the
//!   change a little later, and a message never says what changed, so nothing on
//!   the bus can eject anyone the log does not name.
//! - `keygate.room.<room id>`: what happens in a call, for the servers holding its
//!   other peers: a peer joined or left, proved its key again, and what one peer
//!   sends another (a `signal` frame, a request to confirm its identity and the
//!   answer, a host's kick). A server listens on a room's subject while it has a
//!   peer there (or is seating one), so a message reaches only the servers that
//!   need it, and one subject per room keeps each server's messages in the order
//!   it sent them (a peer's `peer-joined` before its first `signal`).
//! - `keygate.presence`: every server says it is alive each second. The peers of a
//!   server silent for [`SILENT_AFTER`] (it crashed, or lost its network) are
//!   announced as left to everyone else.
//!
//! Who is seated where is in the store ([`crate::store::StoredSeat`]), which counts
//! a room's capacity across servers; the bus only tells. The bus is part of the
//! service's trusted inside, like its database: whoever can publish on it can
//! announce peers, so it must be reachable by the servers alone (see
//! docs/scale.md).

use crate::ids::{PeerId, RoomId};
use crate::protocol::{ErrorCode, PeerInfo};
use crate::verify::Method;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The subject on which servers say that the change log has grown.
const CHANGES: &str = "keygate.changes";
/// The subject on which servers say they are alive.
const PRESENCE: &str = "keygate.presence";

/// How often a server says it is alive (on the bus and in the store).
pub const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// A server not heard for this long has lost its peers: they are announced as left.
pub const SILENT_AFTER: Duration = Duration::from_secs(3);
/// Seats of a server the store has not seen alive for this long no longer count
/// toward a room's capacity (longer than [`SILENT_AFTER`]: a slow database must
/// not free live seats).
pub const SEAT_TTL_MS: i64 = 5_000;

fn room_subject(room: &RoomId) -> String {
    format!("keygate.room.{}", room.as_str())
}

/// Milliseconds since 1970, as presence is stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A message between servers, as JSON on the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
enum Wire {
    Alive { node: String },
    Joined { node: String, peer: String },
    Left { node: String, peer: PeerId, reason: String },
    Verified { node: String, peer: PeerId, at: String },
    Frame { node: String, to: PeerId, frame: String },
    Reverify { node: String, target: PeerId, requester: Option<PeerId> },
    Kick { node: String, peer: PeerId, code: String, message: String },
}

/// What another server said about a room, read.
#[derive(Debug)]
pub enum Heard {
    /// A peer was seated on server `node`.
    Joined {
        node: Arc<str>,
        info: PeerInfo,
    },
    Left {
        peer: PeerId,
        reason: String,
    },
    Verified {
        peer: PeerId,
        at: String,
    },
    /// A frame for peer `to`, already serialized.
    Frame {
        to: PeerId,
        frame: Arc<str>,
    },
    Reverify {
        target: PeerId,
        requester: Option<PeerId>,
    },
    Kick {
        peer: PeerId,
        code: ErrorCode,
        message: String,
    },
}

/// What this server tells the others about a room.
pub enum Tell<'a> {
    Joined(&'a str),
    Left(&'a PeerId, &'a str),
    Verified(&'a PeerId, &'a str),
    Frame(&'a PeerId, &'a str),
    Reverify(&'a PeerId, Option<&'a PeerId>),
    Kick(&'a PeerId, ErrorCode, &'a str),
}

/// A peer as `peer-joined` describes it, read back (from the bus or a seat).
pub fn peer_from_json(text: &str) -> Option<PeerInfo> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peer {
        peer_id: PeerId,
        identity: String,
        key_fingerprint: String,
        label: String,
        method: Method,
        admitted_at: String,
        last_verified: Option<String>,
        fingerprint: Option<String>,
        media_key: Option<String>,
        proof: Option<Box<serde_json::value::RawValue>>,
    }
    let p: Peer = serde_json::from_str(text).ok()?;
    if !p.identity.starts_with("did:") {
        return None;
    }
    Some(PeerInfo {
        peer_id: p.peer_id,
        identity: crate::identity::Did::from_stored(&p.identity),
        key_fingerprint: p.key_fingerprint,
        label: p.label,
        method: p.method.as_str(),
        admitted_at: p.admitted_at,
        last_verified: p.last_verified,
        vouched: crate::challenge::Vouched { fingerprint: p.fingerprint, media_key: p.media_key },
        proof: p.proof,
    })
}

/// A connection to the bus.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    /// This server's name on the bus, random per start.
    node: Arc<str>,
    /// The bus's URLs as they may be shown (without passwords).
    shown: String,
    /// Messages to publish, in order (a publisher task sends them).
    out: mpsc::UnboundedSender<Out>,
    /// When each other server was last heard.
    heard: Mutex<HashMap<Arc<str>, Instant>>,
    sent: AtomicU64,
    received: AtomicU64,
}

enum Out {
    Publish(String, Vec<u8>),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot reach the bus at {url}: {reason}")]
pub struct BusError {
    url: String,
    reason: String,
}

impl Bus {
    /// Connects to the NATS server at `url` (or to one of several, comma-separated:
    /// a NATS cluster); it reconnects by itself after, to any of them.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        Self::connect_within(url, Duration::from_secs(10)).await
    }

    async fn connect_within(url: &str, wait: Duration) -> Result<Self, BusError> {
        let node: Arc<str> = crate::ids::hex(&crate::ids::random_bytes::<8>()).into();
        let options = async_nats::ConnectOptions::new()
            .name(format!("keygate {node}"))
            // A server acts on what it sends itself before sending it.
            .no_echo()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5));
        let shown: Vec<String> =
            url.split(',').map(|u| crate::store::shown_url(u.trim()).display().to_string()).collect();
        let shown = shown.join(",");
        let client = tokio::time::timeout(wait, async {
            let servers: Vec<async_nats::ServerAddr> = url
                .split(',')
                .map(|u| u.trim().parse::<async_nats::ServerAddr>())
                .collect::<Result<_, _>>()
                // The parser's message may quote the URL, password and all.
                .map_err(|_| "not a NATS server URL".to_owned())?;
            let client = options.connect(servers).await.map_err(|e| e.to_string())?;
            // Connected once before the server says it is up.
            client.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(client)
        })
        .await
        .map_err(|_| format!("no answer within {} s", wait.as_secs()))
        .and_then(|r| r)
        .map_err(|reason| BusError { url: shown.clone(), reason })?;
        let (out, mut queue) = mpsc::unbounded_channel();
        let publisher = client.clone();
        tokio::spawn(async move {
            while let Some(item) = queue.recv().await {
                match item {
                    Out::Publish(subject, payload) => {
                        if let Err(e) = publisher.publish(subject, payload.into()).await {
                            tracing::warn!(error = %e, "publishing on the bus failed");
                        }
                    }
                    Out::Flush(done) => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), publisher.flush()).await;
                        let _ = done.send(());
                    }
                }
            }
        });
        let inner = Inner {
            client,
            node,
            shown,
            out,
            heard: Mutex::new(HashMap::new()),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        };
        Ok(Bus { inner: Arc::new(inner) })
    }

    /// This server's name on the bus.
    pub fn node(&self) -> &Arc<str> {
        &self.inner.node
    }

    /// The bus's URLs, without passwords.
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// Messages this server published and received on the bus so far.
    pub fn messages(&self) -> (u64, u64) {
        (self.inner.sent.load(Ordering::Relaxed), self.inner.received.load(Ordering::Relaxed))
    }

    fn publish(&self, subject: String, wire: &Wire) {
        let Ok(payload) = serde_json::to_vec(wire) else { return };
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        // Fails only once the publisher has stopped, when the server is stopping.
        let _ = self.inner.out.send(Out::Publish(subject, payload));
    }

    /// Waits until what was published so far has reached the NATS server (at
    /// most a few seconds): before stopping.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.inner.out.send(Out::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), flushed).await;
        }
    }

    /// Tells every server that this one committed a change.
    pub fn announce_change(&self) {
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let _ = self.inner.out.send(Out::Publish(CHANGES.to_owned(), Vec::new()));
    }

    /// Tells the servers holding peers of `room`.
    pub fn tell(&self, room: &RoomId, tell: Tell<'_>) {
        let node = self.inner.node.to_string();
        let wire = match tell {
            Tell::Joined(peer) => Wire::Joined { node, peer: peer.to_owned() },
            Tell::Left(peer, reason) => Wire::Left { node, peer: peer.clone(), reason: reason.to_owned() },
            Tell::Verified(peer, at) => Wire::Verified { node, peer: peer.clone(), at: at.to_owned() },
            Tell::Frame(to, frame) => Wire::Frame { node, to: to.clone(), frame: frame.to_owned() },
            Tell::Reverify(target, requester) => {
                Wire::Reverify { node, target: target.clone(), requester: requester.cloned() }
            }
            Tell::Kick(peer, code, message) => {
                Wire::Kick { node, peer: peer.clone(), code: code.as_str().to_owned(), message: message.to_owned() }
            }
        };
        self.publish(room_subject(room), &wire);
    }

    /// Reads a message from another server: notes that its sender is alive, and
    /// returns what it says about a room, if anything.
    fn read(&self, payload: &[u8]) -> Option<Heard> {
        self.inner.received.fetch_add(1, Ordering::Relaxed);
        let wire: Wire = match serde_json::from_slice(payload) {
            Ok(wire) => wire,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable message on the bus was ignored");
                return None;
            }
        };
        let node = match &wire {
            Wire::Alive { node }
            | Wire::Joined { node, .. }
            | Wire::Left { node, .. }
            | Wire::Verified { node, .. }
            | Wire::Frame { node, .. }
            | Wire::Reverify { node, .. }
            | Wire::Kick { node, .. } => node,
        };
        if **node == *self.inner.node {
            return None;
        }
        let node: Arc<str> = {
            let mut heard = self.inner.heard.lock().unwrap_or_else(|p| p.into_inner());
            let known = heard.get_key_value(node.as_str()).map(|(k, _)| k.clone());
            let key = known.unwrap_or_else(|| Arc::from(node.as_str()));
            heard.insert(key.clone(), Instant::now());
            key
        };
        Some(match wire {
            Wire::Alive { .. } => return None,
            Wire::Joined { peer, .. } => Heard::Joined { node, info: peer_from_json(&peer)? },
            Wire::Left { peer, reason, .. } => Heard::Left { peer, reason },
            Wire::Verified { peer, at, .. } => Heard::Verified { peer, at },
            Wire::Frame { to, frame, .. } => Heard::Frame { to, frame: frame.into() },
            Wire::Reverify { target, requester, .. } => Heard::Reverify { target, requester },
            Wire::Kick { peer, code, message, .. } => {
                let code = ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)?;
                Heard::Kick { peer, code, message }
            }
        })
    }

    /// Notes that server `node` was heard now (its seat was read).
    pub fn heard_of(&self, node: &Arc<str>) {
        let mut heard = self.inner.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.entry(node.clone()).or_insert_with(Instant::now);
    }

    /// Listens on `room`'s subject, handing what is heard to `rooms` (as the
    /// listening numbered `generation`), until the returned task is aborted.
    /// `ready` turns true once the NATS server has the subscription.
    pub fn listen(
        &self,
        room: RoomId,
        generation: u64,
        rooms: Weak<crate::rooms::Rooms>,
    ) -> (watch::Receiver<bool>, tokio::task::AbortHandle) {
        use futures_util::StreamExt;
        let (ready_tx, ready) = watch::channel(false);
        let bus = self.clone();
        let task = tokio::spawn(async move {
            let mut messages = match bus.inner.client.subscribe(room_subject(&room)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen on the bus for a room");
                    let _ = ready_tx.send(true);
                    return;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), bus.inner.client.flush()).await;
            let _ = ready_tx.send(true);
            while let Some(message) = messages.next().await {
                let Some(heard) = bus.read(&message.payload) else { continue };
                let Some(rooms) = rooms.upgrade() else { return };
                rooms.on_heard(&room, generation, heard);
            }
        });
        (ready, task.abort_handle())
    }

    /// Follows the bus until `shutdown`: reads the change log when another server
    /// changed it, says this server is alive (on the bus and in the store) every
    /// [`ALIVE_EVERY`], and announces as left the peers of servers gone silent.
    /// After this server's own connection to the bus comes back, every room it
    /// holds peers of is read again from the store (what was said meanwhile is lost).
    pub async fn run(self, rooms: Arc<crate::rooms::Rooms>, mut shutdown: watch::Receiver<bool>) {
        use futures_util::StreamExt;
        let client = &self.inner.client;
        let (changes, presence) = match (client.subscribe(CHANGES).await, client.subscribe(PRESENCE).await) {
            (Ok(c), Ok(p)) => (c, p),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen on the bus; changes arrive by polling only");
                return;
            }
        };
        let mut changes = changes;
        let mut presence = presence;
        let mut tick = tokio::time::interval(ALIVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_down = false;
        loop {
            tokio::select! {
                message = changes.next() => {
                    if message.is_none() {
                        return;
                    }
                    self.inner.received.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = rooms.catch_up().await {
                        tracing::warn!(error = %e, "applying the change log failed");
                    }
                }
                message = presence.next() => match message {
                    Some(message) => {
                        self.read(&message.payload);
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    let node = self.inner.node.to_string();
                    self.publish(PRESENCE.to_owned(), &Wire::Alive { node: node.clone() });
                    if let Err(e) = rooms.store().node_alive(&node, now_ms()).await {
                        tracing::warn!(error = %e, "recording that this server is alive failed");
                    }
                    rooms.stop_lingering();
                    let up = client.connection_state() == async_nats::connection::State::Connected;
                    if !up {
                        // Others are not silent; this server cannot hear them.
                        was_down = true;
                    } else if was_down {
                        was_down = false;
                        self.inner.heard.lock().unwrap_or_else(|p| p.into_inner()).values_mut().for_each(|t| *t = Instant::now());
                        rooms.read_seats_again().await;
                    } else {
                        for node in self.silent() {
                            tracing::info!(node = %node, "a server went silent; its peers are announced as left");
                            rooms.node_lost(&node);
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The servers not heard for [`SILENT_AFTER`], forgotten.
    fn silent(&self) -> Vec<Arc<str>> {
        let mut heard = self.inner.heard.lock().unwrap_or_else(|p| p.into_inner());
        let silent: Vec<Arc<str>> =
            heard.iter().filter(|(_, at)| at.elapsed() > SILENT_AFTER).map(|(node, _)| node.clone()).collect();
        for node in &silent {
            heard.remove(node);
        }
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security: a bus URL's password is never shown, in an error or anywhere.
    #[tokio::test]
    async fn a_bus_password_is_not_shown_when_the_bus_cannot_be_reached() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().map(|a| a.port()));
        let port = port.ok().and_then(Result::ok).unwrap_or(1);
        let url = format!("nats://keygate:hunter2@127.0.0.1:{port}, nats://other:hunter3@127.0.0.1:{port}");
        let Err(e) = Bus::connect_within(&url, Duration::from_secs(1)).await else {
            unreachable!("nothing listens there")
        };
        let shown = e.to_string();
        assert!(!shown.contains("hunter2") && !shown.contains("hunter3"), "{shown}");
        assert!(shown.contains("127.0.0.1") && shown.contains("no answer"), "{shown}");
    }

    /// What one server tells is what another reads, peer description included.
    #[test]
    fn a_peer_told_on_the_bus_reads_back_whole() {
        let info = PeerInfo {
            peer_id: PeerId::generate(),
            identity: crate::identity::Did::from_stored("did:key:zDnaexample"),
            key_fingerprint: "SHA256:abc".into(),
            label: "Ann".into(),
            method: "webauthn",
            admitted_at: "2026-11-30T18:00:00.000Z".into(),
            last_verified: None,
            vouched: crate::challenge::Vouched {
                fingerprint: Some("sha-256 AA:BB".into()),
                media_key: Some("BKey".into()),
            },
            proof: serde_json::value::RawValue::from_string(r#"{"a":1}"#.into()).ok(),
        };
        let text = serde_json::to_string(&info).unwrap_or_default();
        let back = peer_from_json(&text).map(|p| serde_json::to_string(&p).unwrap_or_default());
        assert_eq!(back.as_deref(), Some(text.as_str()));
        assert!(peer_from_json(&text.replace("did:key:", "key:")).is_none(), "an identity is a DID");
    }
}
