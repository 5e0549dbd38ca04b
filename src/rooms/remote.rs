//! A room's peers on other servers, with a bus.
//!
//! ```text
//!  server A                      store (seats)                 server B
//!  listen keygate.room.R ──────────────────────────────────────▶ (listening)
//!  take a seat (count < cap) ──▶ seats of R, under R's lock
//!  ◀── who is seated elsewhere
//!  seat here, welcome {peers: here + elsewhere}
//!  tell joined ─────────────────────── bus ───────────────────▶ peer-joined to B's peers
//!  signal to a peer on B ────────────── bus ───────────────────▶ delivered (B holds `to`)
//!  leave: tell left, free the seat ─── bus ───────────────────▶ peer-left
//! ```
//!
//! A server listens to a room from before it reads the seats until a while after
//! its last peer there left ([`LINGER`]), so it misses nothing between the two: a peer seated elsewhere
//! after the read is told on the bus, one seated before is in the read. What it
//! hears twice (told and read) is kept once; a peer that left before its seat was
//! read is remembered as gone for a while and not brought back.

use super::{LiveRoom, Outbound, PeerHandle, Rooms};
use crate::bus::{Bus, Heard, Tell};
use crate::identity::Did;
use crate::ids::{PeerId, RoomId};
use crate::protocol::{PeerInfo, ServerMessage};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Peers that left a room lately, remembered per room (see the module).
const GONE_KEPT: usize = 64;

/// How long a room stays listened to after its last peer here left: people leave
/// and come back, and a join into a room listened to needs no new subscription.
pub const LINGER: Duration = Duration::from_secs(30);

/// How long a join waits for the NATS server to confirm it listens to the room;
/// past that it goes on (a peer seated elsewhere meanwhile may be told late).
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// A room listened to on the bus; dropping it stops listening.
pub(super) struct Listening {
    generation: u64,
    ready: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A peer of the room connected to another server.
#[derive(Clone, Debug)]
pub(super) struct RemotePeer {
    pub node: Arc<str>,
    pub info: PeerInfo,
}

/// Where a peer of a room is, as this server knows.
pub(super) enum Whereabouts {
    Here(Box<PeerHandle>),
    /// On another server (or, for a room this server holds no peer of, possibly
    /// there: only the store knows).
    Elsewhere,
    Unknown,
}

impl LiveRoom {
    /// Adds peers of other servers this room did not know, telling its own peers.
    pub(super) fn meet(&mut self, elsewhere: Vec<RemotePeer>) {
        for peer in elsewhere {
            let id = &peer.info.peer_id;
            if self.remote.contains_key(id) || self.peers.contains_key(id) || self.gone.contains(id) {
                continue;
            }
            let frame: Arc<str> = ServerMessage::PeerJoined(&peer.info).to_text().into();
            for p in self.peers.values() {
                p.deliver(&frame);
            }
            self.remote.insert(id.clone(), peer);
        }
    }

    /// Removes a peer of another server, telling this room's own peers.
    fn part(&mut self, peer: &PeerId, reason: &str) {
        if self.gone.len() >= GONE_KEPT {
            self.gone.pop_front();
        }
        self.gone.push_back(peer.clone());
        if self.remote.remove(peer).is_some() {
            let frame: Arc<str> = ServerMessage::PeerLeft { peer_id: peer, reason }.to_text().into();
            for p in self.peers.values() {
                p.deliver(&frame);
            }
        }
    }
}

/// A join's hold on a room's listening; let go unless kept by a seated peer.
struct Interest<'a> {
    rooms: &'a Rooms,
    room: RoomId,
    kept: bool,
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.rooms.exit(&self.room);
        }
    }
}

impl Rooms {
    pub(super) fn whereabouts(&self, room: &RoomId, peer: &PeerId) -> Whereabouts {
        let live = self.lock();
        let r = live.get(room);
        if let Some(p) = r.and_then(|r| r.peers.get(peer)) {
            return Whereabouts::Here(Box::new(p.clone()));
        }
        let follows = r.is_some_and(|r| r.listening.is_some());
        let known = r.is_some_and(|r| r.remote.contains_key(peer));
        match self.bus.get() {
            Some(_) if known || !follows => Whereabouts::Elsewhere,
            _ => Whereabouts::Unknown,
        }
    }

    /// Tells the servers holding peers of `room`; false without a bus.
    pub(super) fn tell(&self, room: &RoomId, tell: Tell<'_>) -> bool {
        match self.bus.get() {
            Some(bus) => {
                bus.tell(room, tell);
                true
            }
            None => false,
        }
    }

    /// Seats a peer of this server in a room shared over `bus`.
    pub(super) async fn join_everywhere(
        &self,
        bus: &Bus,
        room: &RoomId,
        handle: PeerHandle,
        max_peers: usize,
        changes: u64,
    ) -> Result<super::Joined, super::JoinError> {
        let mut interest = self.enter(room).await;
        let info = serde_json::to_string(&handle.info).unwrap_or_default();
        let peer = handle.info.peer_id.clone();
        let alive_since = crate::bus::now_ms() - crate::bus::SEAT_TTL_MS;
        let seated =
            self.store.take_seat(room.as_str(), peer.as_str(), bus.node(), &info, max_peers, alive_since).await?;
        let Some(seated) = seated else {
            return Err(super::JoinError::Full(max_peers));
        };
        let elsewhere = seated
            .into_iter()
            .filter(|s| *s.node != **bus.node())
            .filter_map(|s| {
                let node: Arc<str> = s.node.into();
                bus.heard_of(&node);
                Some(RemotePeer { node, info: crate::bus::peer_from_json(&s.info)? })
            })
            .collect();
        // The store counted the room's capacity.
        match self.seat(room, handle, usize::MAX, changes, elsewhere) {
            Ok(joined) => {
                interest.kept = true;
                bus.tell(room, Tell::Joined(&info));
                Ok(joined)
            }
            Err(e) => {
                // Freed before returning: the caller may try again with this peer id
                // (the list changed while the key was checked).
                self.free_seat(room, &peer).await;
                Err(e)
            }
        }
    }

    /// Frees the seat of a peer of this server that is leaving. [`Rooms::leave`]
    /// does it before anyone hears of the departure: a seat still counted after its
    /// peer left would refuse the next person as "room full".
    pub(super) async fn free_seat(&self, room: &RoomId, peer: &PeerId) {
        if let Err(e) = self.store.free_seat(room.as_str(), peer.as_str()).await {
            // When the server is stopping, its seats go all at once; otherwise the
            // seat counts until upkeep, or until this server stops.
            tracing::warn!(error = %e, "freeing a seat failed");
        }
    }

    /// Tells the others that a peer of this server left (its seat already free).
    pub(super) fn left_everywhere(&self, bus: &Bus, room: &RoomId, peer: &PeerId, reason: &str) {
        bus.tell(room, Tell::Left(peer, reason));
        self.exit(room);
    }

    /// Records in its seat that a peer of this server proved its key again (host
    /// pages on every server show it), and tells the others.
    pub(super) async fn verified_everywhere(&self, bus: &Bus, room: &RoomId, info: &PeerInfo, at: &str) {
        let text = serde_json::to_string(info).unwrap_or_default();
        if let Err(e) = self.store.update_seat(room.as_str(), info.peer_id.as_str(), &text).await {
            tracing::warn!(error = %e, "recording a confirmation in the seats failed");
        }
        bus.tell(room, Tell::Verified(&info.peer_id, at));
    }

    /// Holds `room`'s listening on the bus (starting it if needed) and waits until
    /// the NATS server has it.
    async fn enter(&self, room: &RoomId) -> Interest<'_> {
        let mut ready = {
            let mut live = self.lock();
            let r = live.entry(room.clone()).or_default();
            r.interest += 1;
            r.idle_since = None;
            if r.listening.is_none() {
                if let (Some(bus), Some(me)) = (self.bus.get(), self.me.get()) {
                    let generation = self.listenings.fetch_add(1, Ordering::Relaxed) + 1;
                    let (ready, task) = bus.listen(room.clone(), generation, me.clone());
                    r.listening = Some(Listening { generation, ready, task });
                }
            }
            r.listening.as_ref().map(|l| l.ready.clone())
        };
        let interest = Interest { rooms: self, room: room.clone(), kept: false };
        if let Some(ready) = ready.as_mut() {
            if tokio::time::timeout(LISTEN_WAIT, ready.wait_for(|r| *r)).await.is_err() {
                tracing::warn!("the bus did not confirm listening to a room in time");
            }
        }
        interest
    }

    /// Lets go of one hold on `room`'s listening; after the last one, it lingers
    /// ([`LINGER`], see [`Rooms::stop_lingering`]).
    fn exit(&self, room: &RoomId) {
        let mut live = self.lock();
        let Some(r) = live.get_mut(room) else { return };
        r.interest = r.interest.saturating_sub(1);
        if r.interest == 0 && r.listening.is_some() {
            let now = tokio::time::Instant::now();
            r.idle_since = Some(now);
            self.lingering.lock().unwrap_or_else(|p| p.into_inner()).push_back((room.clone(), now));
        }
    }

    /// Stops listening to the rooms nobody here has needed for [`LINGER`], and
    /// forgets their peers elsewhere. Work per room stopped, not per room listened to.
    pub fn stop_lingering(&self) {
        let now = tokio::time::Instant::now();
        loop {
            let due = {
                let mut lingering = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
                match lingering.front() {
                    Some((_, since)) if now.duration_since(*since) >= LINGER => lingering.pop_front(),
                    _ => None,
                }
            };
            let Some((room, since)) = due else { return };
            let mut live = self.lock();
            let Some(r) = live.get_mut(&room) else { continue };
            // Needed again since, or idle again from a later time: not this one.
            if r.interest == 0 && r.idle_since == Some(since) {
                r.listening = None;
                r.idle_since = None;
                r.remote.clear();
                r.gone.clear();
            }
        }
    }

    /// Acts on what another server said about `room`, heard by listening number
    /// `generation` (dropped if that listening has ended).
    pub fn on_heard(&self, room: &RoomId, generation: u64, heard: Heard) {
        let mut live = self.lock();
        let Some(r) = live.get_mut(room) else { return };
        if r.listening.as_ref().is_none_or(|l| l.generation != generation) {
            return;
        }
        match heard {
            Heard::Joined { node, info } => r.meet(vec![RemotePeer { node, info }]),
            Heard::Left { peer, reason } => r.part(&peer, &reason),
            Heard::Verified { peer, at } => {
                if let Some(p) = r.remote.get_mut(&peer) {
                    p.info.last_verified = Some(at);
                }
            }
            Heard::Frame { to, frame } => {
                if let Some(p) = r.peers.get(&to) {
                    p.deliver(&frame);
                }
            }
            Heard::Reverify { target, requester } => {
                if let Some(p) = r.peers.get(&target) {
                    let _ = p.tx.try_send(Outbound::Reverify(requester));
                }
            }
            Heard::Kick { peer, code, message } => {
                if let Some(p) = r.peers.get(&peer) {
                    p.kick(code, &message);
                }
            }
        }
    }

    /// Announces as left, in every room, the peers of a server gone silent.
    pub fn node_lost(&self, node: &str) {
        let mut live = self.lock();
        for r in live.values_mut().filter(|r| !r.remote.is_empty()) {
            let lost: Vec<PeerId> =
                r.remote.iter().filter(|(_, p)| &*p.node == node).map(|(id, _)| id.clone()).collect();
            for peer in lost {
                r.part(&peer, "disconnected");
            }
        }
    }

    /// Reads again from the store who is seated elsewhere in every room this server
    /// holds peers of (after its connection to the bus came back), telling its
    /// peers who came and went meanwhile.
    pub async fn read_seats_again(&self) {
        let Some(bus) = self.bus.get() else { return };
        let rooms: Vec<RoomId> =
            self.lock().iter().filter(|(_, r)| r.listening.is_some()).map(|(id, _)| id.clone()).collect();
        for room in rooms {
            let seats = match self.store.seats(room.as_str(), crate::bus::now_ms() - crate::bus::SEAT_TTL_MS).await {
                Ok(seats) => seats,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a room's seats failed");
                    continue;
                }
            };
            let now: HashMap<PeerId, RemotePeer> = seats
                .into_iter()
                .filter(|s| *s.node != **bus.node())
                .filter_map(|s| {
                    let info = crate::bus::peer_from_json(&s.info)?;
                    Some((info.peer_id.clone(), RemotePeer { node: s.node.into(), info }))
                })
                .collect();
            let mut live = self.lock();
            let Some(r) = live.get_mut(&room) else { continue };
            let went: Vec<PeerId> = r.remote.keys().filter(|id| !now.contains_key(*id)).cloned().collect();
            for peer in went {
                r.part(&peer, "disconnected");
            }
            r.meet(now.into_values().collect());
        }
    }

    /// How many seats of live servers a room has, as the store counts them.
    pub(super) async fn seated(&self, room: &RoomId) -> Result<usize, crate::store::StoreError> {
        let since = crate::bus::now_ms() - crate::bus::SEAT_TTL_MS;
        Ok(self.store.seats(room.as_str(), since).await?.len())
    }

    /// Everyone in a room now, on every server (host pages): with a bus, the
    /// room's seats in the store; without, this server's peers.
    pub async fn everyone(&self, room: &RoomId) -> Vec<PeerInfo> {
        if self.bus.get().is_none() {
            return self.peers(room);
        }
        match self.store.seats(room.as_str(), crate::bus::now_ms() - crate::bus::SEAT_TTL_MS).await {
            Ok(seats) => seats.iter().filter_map(|s| crate::bus::peer_from_json(&s.info)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading a room's seats failed; showing this server's peers");
                self.peers(room)
            }
        }
    }

    /// How many people are in each of `rooms` now, on every server (the host's
    /// list of rooms, all owned by `owner`): one query with a bus.
    pub async fn counts(&self, owner: &Did, rooms: &[RoomId]) -> Vec<usize> {
        if self.bus.get().is_some() {
            let since = crate::bus::now_ms() - crate::bus::SEAT_TTL_MS;
            match self.store.seats_in_rooms_of(owner.as_str(), since).await {
                Ok(counts) => {
                    let count = |r: &RoomId| counts.get(r.as_str()).and_then(|n| usize::try_from(*n).ok());
                    return rooms.iter().map(|r| count(r).unwrap_or(0)).collect();
                }
                Err(e) => tracing::warn!(error = %e, "counting the rooms' seats failed; showing this server's peers"),
            }
        }
        rooms.iter().map(|r| self.peers(r).len()).collect()
    }

    /// The identity of a live peer of a room, on any server.
    pub async fn locate(&self, room: &RoomId, peer: &PeerId) -> Option<Did> {
        if let Some(did) = self.peer_identity(room, peer) {
            return Some(did);
        }
        self.bus.get()?;
        self.everyone(room).await.into_iter().find(|p| p.peer_id == *peer).map(|p| p.identity)
    }
}
