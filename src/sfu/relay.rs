//! What an admitted peer may ask of Janus, relayed by keygate (`sfu` messages).
//!
//! ```text
//!  peer A ── sfu {op: publish, jsep: offer} ──▶ keygate: A's Janus session, a publisher
//!                                                handle joined as feed F(A), display A
//!  peer A ◀── sfu {op: answer, jsep} ────────── Janus's answer
//!  room   ◀── sfu {op: feed, peerId: A} ─────── (the others may subscribe)
//!  peer B ── sfu {op: subscribe, peerId: A} ──▶ a subscriber handle of B's session on F(A)
//!  peer B ◀── sfu {op: offer, peerId: A, jsep}
//!  peer B ── sfu {op: answer, peerId: A, jsep} ▶ start
//! ```
//!
//! keygate decides which feed belongs to whom: a peer publishes only as itself
//! (the feed id is keygate's, its display the admitted peer id), and subscribes
//! only to a peer admitted to the same room. A peer's Janus session ends with its
//! seat (leaving, a kick, a removal from the whitelist): its media stops at once.
//!
//! A room on Janus goes with the last of its peers' sessions. Each room's secret is
//! derived from a key kept in the database, so rooms a crashed server left behind
//! are found and destroyed by the next one to connect ([`Sfu::sweep`]).

use super::janus::{Janus, JanusError};
use crate::ids::{PeerId, RoomId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a peer's Janus session is kept alive (Janus drops one silent for 60 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);

const VIDEOROOM: &str = "janus.plugin.videoroom";

/// A Janus room and who publishes in it.
struct SfuRoom {
    /// The connection to Janus it was made under ([`Janus::generation`]).
    generation: u64,
    janus_room: u64,
    /// Each publishing peer's feed id.
    feeds: HashMap<PeerId, u64>,
}

/// What keygate writes as the description of its rooms on Janus.
const DESCRIPTION: &str = "keygate";

/// keygate's rooms on Janus.
pub struct Sfu {
    janus: Arc<Janus>,
    /// Each room's secret is an HMAC of its id under this key (kept in the database).
    secrets: aws_lc_rs::hmac::Key,
    /// The most publishers a room on Janus takes: no fewer than any room's cap,
    /// which keygate enforces itself (its seats), so Janus never refuses a seated peer.
    publishers: u64,
    /// keygate's own session and handle, which create rooms, and the connection
    /// they were made under.
    admin: tokio::sync::Mutex<Option<(u64, u64, u64)>>,
    rooms: Mutex<HashMap<RoomId, SfuRoom>>,
    /// Peers of each room with a Janus session: the room on Janus is destroyed
    /// when the last one's ends.
    seated: Mutex<HashMap<RoomId, usize>>,
}

/// A number Janus takes as an id and a browser reads exactly (below 2^53).
fn janus_id() -> u64 {
    u64::from_be_bytes(crate::ids::random_bytes::<8>()) >> 11
}

impl Sfu {
    /// Drives `janus`; room secrets derive from `key`; rooms take `publishers`.
    pub fn new(janus: Arc<Janus>, key: &[u8], publishers: u64) -> Self {
        Sfu {
            janus,
            secrets: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            publishers,
            admin: tokio::sync::Mutex::new(None),
            rooms: Mutex::new(HashMap::new()),
            seated: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, SfuRoom>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The secret of Janus room `id`: only keygate, holding the key, can destroy it.
    fn secret(&self, id: u64) -> String {
        crate::ids::hex(&aws_lc_rs::hmac::sign(&self.secrets, &id.to_be_bytes()).as_ref()[..16])
    }

    /// keygate's own session and handle on the current connection to Janus, made on
    /// first use (and again after Janus restarts), with the lock that serializes
    /// making rooms and sweeping them held by the caller. A new one first sweeps away
    /// the rooms nobody uses that an earlier keygate process left.
    async fn admin_in(&self, admin: &mut Option<(u64, u64, u64)>) -> Result<(u64, u64, u64), JanusError> {
        let generation = self.janus.generation();
        if let Some(a) = admin.filter(|a| a.0 == generation) {
            return Ok(a);
        }
        let session = self.janus.create_session().await?;
        let handle = match self.janus.attach(session, VIDEOROOM).await {
            Ok((handle, _)) => handle,
            Err(e) => {
                // No session is left behind without its keepalive.
                let _ = self.janus.destroy(session).await;
                return Err(e);
            }
        };
        let janus = self.janus.clone();
        tokio::spawn(async move {
            while janus.keepalive(session).await.is_ok() {
                tokio::time::sleep(KEEPALIVE_EVERY).await;
            }
        });
        *admin = Some((generation, session, handle));
        if let Err(e) = self.sweep_with(session, handle).await {
            tracing::warn!(error = %e, "clearing rooms left on Janus failed");
        }
        Ok((generation, session, handle))
    }

    /// Destroys keygate's rooms on Janus that have nobody in them and that this
    /// process does not use: what a server that crashed (or lost Janus) left
    /// behind. Returns how many went. Rooms of another keygate (another key) are
    /// left alone: Janus refuses their secret.
    pub async fn sweep(&self) -> Result<usize, JanusError> {
        let mut admin = self.admin.lock().await;
        let (_, session, handle) = self.admin_in(&mut admin).await?;
        // Under the lock: no room of this process is being made meanwhile.
        self.sweep_with(session, handle).await
    }

    async fn sweep_with(&self, session: u64, handle: u64) -> Result<usize, JanusError> {
        let listed = self.janus.message(session, handle, json!({"request": "list"}), None).await?;
        let ours: Vec<u64> = self.lock().values().map(|r| r.janus_room).collect();
        let mut gone = 0;
        for r in listed["plugindata"]["data"]["list"].as_array().into_iter().flatten() {
            let Some(id) = r["room"].as_u64() else { continue };
            if r["description"] != DESCRIPTION || r["num_participants"] != 0 || ours.contains(&id) {
                continue;
            }
            let destroy = json!({"request": "destroy", "room": id, "secret": self.secret(id)});
            if self.janus.message(session, handle, destroy, None).await.is_ok() {
                gone += 1;
            }
        }
        if gone > 0 {
            tracing::info!(rooms = gone, "cleared rooms left on Janus");
        }
        Ok(gone)
    }

    /// The Janus room of `room`, created on first use.
    async fn janus_room(&self, room: &RoomId) -> Result<u64, JanusError> {
        let generation = self.janus.generation();
        if let Some(r) = self.lock().get(room).filter(|r| r.generation == generation) {
            return Ok(r.janus_room);
        }
        // Making a room and sweeping take turns, so a sweep never sees a room
        // made but not yet recorded.
        let mut admin = self.admin.lock().await;
        let (_, session, handle) = self.admin_in(&mut admin).await?;
        // Two first publishers at once: the first made the room while this one waited.
        if let Some(r) = self.lock().get(room).filter(|r| r.generation == generation) {
            return Ok(r.janus_room);
        }
        let id = janus_id();
        let create = json!({"request": "create", "room": id, "secret": self.secret(id), "description": DESCRIPTION,
                            "publishers": self.publishers});
        self.janus.message(session, handle, create, None).await?;
        let mut rooms = self.lock();
        // One made under an earlier connection is gone with it.
        rooms.insert(room.clone(), SfuRoom { generation, janus_room: id, feeds: HashMap::new() });
        Ok(id)
    }

    /// One more peer of `room` has a Janus session.
    fn seat(&self, room: &RoomId) {
        *self.seated.lock().unwrap_or_else(|p| p.into_inner()).entry(room.clone()).or_default() += 1;
    }

    /// One peer of `room` less has a Janus session; after the last, the room on
    /// Janus is destroyed and forgotten.
    async fn unseat(&self, room: &RoomId) {
        {
            let mut seated = self.seated.lock().unwrap_or_else(|p| p.into_inner());
            let Some(n) = seated.get_mut(room) else { return };
            *n = n.saturating_sub(1);
            if *n > 0 {
                return;
            }
            seated.remove(room);
        }
        let Some(gone) = self.lock().remove(room) else { return };
        let admin = *self.admin.lock().await;
        if let Some((_, session, handle)) = admin.filter(|a| a.0 == gone.generation) {
            let destroy =
                json!({"request": "destroy", "room": gone.janus_room, "secret": self.secret(gone.janus_room)});
            if let Err(e) = self.janus.message(session, handle, destroy, None).await {
                tracing::warn!(error = %e, "destroying a room on Janus failed");
            }
        }
    }

    /// Rooms on Janus now, and peers with a Janus session (for /metrics).
    pub fn counts(&self) -> (usize, usize) {
        let seated = self.seated.lock().unwrap_or_else(|p| p.into_inner()).values().sum();
        (self.lock().len(), seated)
    }

    /// The peers of `room` whose published media Janus has.
    pub fn publishers(&self, room: &RoomId) -> Vec<PeerId> {
        self.lock().get(room).map(|r| r.feeds.keys().cloned().collect()).unwrap_or_default()
    }
}

/// One admitted peer's part in the SFU: its Janus session and handles.
pub struct SfuSeat {
    sfu: Arc<Sfu>,
    room: RoomId,
    peer: PeerId,
    /// The connection to Janus its session was made under.
    generation: u64,
    session: u64,
    publisher: Option<u64>,
    subscribers: HashMap<PeerId, u64>,
    keepalive: tokio::task::AbortHandle,
}

impl SfuSeat {
    /// Opens a Janus session for admitted peer `peer` of `room`.
    pub async fn open(sfu: &Arc<Sfu>, room: &RoomId, peer: &PeerId) -> Result<SfuSeat, JanusError> {
        let generation = sfu.janus.generation();
        let (session, keepalive) = Self::session(sfu).await?;
        sfu.seat(room);
        Ok(SfuSeat {
            sfu: sfu.clone(),
            room: room.clone(),
            peer: peer.clone(),
            generation,
            session,
            publisher: None,
            subscribers: HashMap::new(),
            keepalive,
        })
    }

    /// A new Janus session, kept alive until the returned task is aborted.
    async fn session(sfu: &Sfu) -> Result<(u64, tokio::task::AbortHandle), JanusError> {
        let session = sfu.janus.create_session().await?;
        let janus = sfu.janus.clone();
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEPALIVE_EVERY).await;
                if janus.keepalive(session).await.is_err() {
                    return;
                }
            }
        })
        .abort_handle();
        Ok((session, keepalive))
    }

    /// After Janus restarted, this peer's session is gone: a new one, with nothing
    /// published or received yet (the browser publishes and subscribes again).
    async fn current(&mut self) -> Result<(), JanusError> {
        let generation = self.sfu.janus.generation();
        if generation == self.generation {
            return Ok(());
        }
        self.keepalive.abort();
        let (session, keepalive) = Self::session(&self.sfu).await?;
        (self.generation, self.session, self.keepalive) = (generation, session, keepalive);
        self.publisher = None;
        self.subscribers.clear();
        Ok(())
    }

    /// Publishes this peer's media with its SDP `offer`; returns Janus's answer.
    /// Once Janus has the media (its connection is up), the feed may be received
    /// and `live` runs (to tell the room).
    pub async fn publish(&mut self, offer: Value, live: impl FnOnce() + Send + 'static) -> Result<Value, JanusError> {
        self.current().await?;
        let janus = &self.sfu.janus;
        let janus_room = self.sfu.janus_room(&self.room).await?;
        let handle = match self.publisher {
            Some(handle) => handle,
            None => {
                let (handle, mut events) = janus.attach(self.session, VIDEOROOM).await?;
                let feed = janus_id();
                let join = json!({"request": "join", "ptype": "publisher", "room": janus_room, "id": feed,
                                  "display": self.peer.as_str()});
                if let Err(e) = janus.message(self.session, handle, join, None).await {
                    janus.detach(self.session, handle).await;
                    return Err(e);
                }
                self.publisher = Some(handle);
                let (sfu, room, peer) = (self.sfu.clone(), self.room.clone(), self.peer.clone());
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        if event["janus"] == "webrtcup" {
                            if let Some(r) = sfu.lock().get_mut(&room) {
                                r.feeds.insert(peer, feed);
                            }
                            live();
                            return;
                        }
                    }
                });
                handle
            }
        };
        let configure = json!({"request": "configure", "audio": true, "video": true});
        let answer = janus.message(self.session, handle, configure, Some(offer)).await?;
        Ok(answer["jsep"].clone())
    }

    /// Subscribes to `target`'s media (a peer of the same room that publishes);
    /// returns Janus's offer. `None`: `target` publishes nothing here.
    pub async fn subscribe(&mut self, target: &PeerId) -> Result<Option<Value>, JanusError> {
        self.current().await?;
        let janus = &self.sfu.janus;
        let found = self.sfu.lock().get(&self.room).and_then(|r| Some((r.janus_room, *r.feeds.get(target)?)));
        let Some((janus_room, feed)) = found else { return Ok(None) };
        // A subscription asked again replaces the old one; those to peers that no
        // longer publish (they left) end too, so a long call holds one handle per
        // peer publishing now.
        let publishing = self.sfu.publishers(&self.room);
        let ended: Vec<PeerId> =
            self.subscribers.keys().filter(|p| *p == target || !publishing.contains(p)).cloned().collect();
        for peer in ended {
            if let Some(old) = self.subscribers.remove(&peer) {
                janus.detach(self.session, old).await;
            }
        }
        let (handle, _) = janus.attach(self.session, VIDEOROOM).await?;
        let join = json!({"request": "join", "ptype": "subscriber", "room": janus_room, "streams": [{"feed": feed}]});
        let offer = match janus.message(self.session, handle, join, None).await {
            Ok(offer) => offer,
            Err(e) => {
                janus.detach(self.session, handle).await;
                return Err(e);
            }
        };
        self.subscribers.insert(target.clone(), handle);
        Ok(Some(offer["jsep"].clone()))
    }

    /// Starts receiving `target`'s media with this peer's SDP `answer`. False: no
    /// subscription to it.
    pub async fn answer(&mut self, target: &PeerId, answer: Value) -> Result<bool, JanusError> {
        self.current().await?;
        let Some(handle) = self.subscribers.get(target).copied() else { return Ok(false) };
        self.sfu.janus.message(self.session, handle, json!({"request": "start"}), Some(answer)).await?;
        Ok(true)
    }

    /// Passes an ICE candidate of the publishing connection (`None`) or of the one
    /// receiving `target`. False: no such connection.
    pub async fn trickle(&mut self, target: Option<&PeerId>, candidate: Value) -> Result<bool, JanusError> {
        self.current().await?;
        let handle = match target {
            None => self.publisher,
            Some(t) => self.subscribers.get(t).copied(),
        };
        let Some(handle) = handle else { return Ok(false) };
        self.sfu.janus.trickle(self.session, handle, candidate).await?;
        Ok(true)
    }

    /// Ends this peer's Janus session: what it published and received stops.
    pub async fn close(self) {
        self.keepalive.abort();
        if let Some(r) = self.sfu.lock().get_mut(&self.room) {
            r.feeds.remove(&self.peer);
        }
        for handle in self.publisher.iter().chain(self.subscribers.values()) {
            self.sfu.janus.forget(*handle);
        }
        if let Err(e) = self.sfu.janus.destroy(self.session).await {
            tracing::warn!(error = %e, "ending a peer's Janus session failed");
        }
        self.sfu.unseat(&self.room).await;
    }
}
