//! Live rooms: who is connected where, and each room's settings and owners.
//!
//! Whitelists are not loaded here: [`Rooms::access`] looks one identity up by the
//! store's primary key and keeps what it found (at most
//! [`MAX_CACHED_ENTRIES`] per room), so a room of a million keys costs what its
//! active members cost, and a new entry is seen by the next admission. What live
//! rooms must act on reaches them by the store's change log, the one road for
//! edits: [`Rooms::catch_up`] applies what the log holds past what was applied (a
//! removal ejects the identity's sessions and forgets its entry; a changed entry
//! is forgotten; a change to the room itself reloads its settings and owners). This process's writers (the whitelist
//! service) call it as soon as they commit; [`Rooms::follow_changes`] calls it on
//! every tick, for edits made by another process (the CLI). The room map's lock is
//! never held across an `.await`.
//!
//! With a bus (`bus = "nats://…"`), a room's peers may be connected to different
//! servers of one service. Each server keeps its own peers and, for each room it
//! holds peers of, the others' ([`remote`]): seats are taken in the store, which
//! counts the room's capacity across servers, and what happens is told on the bus.

mod remote;

use remote::Whereabouts;

use crate::identity::Did;
use crate::ids::{PeerId, RoomId};
use crate::protocol::{code, ErrorCode, PeerInfo, ServerMessage};
use crate::store::{Store, StoreError, WhitelistEntry};
use crate::verify::PivRequirement;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Entries a room keeps of those it looked up; past this it starts again (a room
/// whose members come and go in their thousands costs at most this much).
pub const MAX_CACHED_ENTRIES: usize = 10_000;

/// Rooms whose settings stay cached while nobody is in them; past this, empty
/// rooms are dropped from memory (and reloaded from the store on next use).
const MAX_CACHED_ROOMS: usize = 50_000;

/// How a room's calls carry media: the room's `media` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Media {
    /// Peer to peer, each link bound to the DTLS certificate its peer signed.
    #[default]
    Mesh,
    /// Through the server's SFU (Janus), end-to-end encrypted (docs/e2ee.md).
    Sfu,
    /// Mesh until the call reaches the server's `sfu_from` peers, then the SFU for
    /// the rest of that call.
    Auto,
}

impl Media {
    pub const ALL: [Media; 3] = [Media::Mesh, Media::Sfu, Media::Auto];

    pub fn parse(text: &str) -> Option<Media> {
        Media::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// As stored: `None` (never set) and anything unknown are the mesh.
    pub fn from_stored(text: Option<&str>) -> Media {
        text.and_then(Media::parse).unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Media::Mesh => "mesh",
            Media::Sfu => "sfu",
            Media::Auto => "auto",
        }
    }
}

/// Why the server is ending a session from outside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kick {
    pub code: ErrorCode,
    pub message: String,
}

/// What the rest of the server sends an admitted session.
#[derive(Debug)]
pub enum Outbound {
    /// A frame to write, already serialized (a broadcast serializes once).
    Frame(Arc<str>),
    /// Ask this peer to sign a fresh challenge; the result goes to the requesting
    /// peer (`None`: a host page asked).
    Reverify(Option<PeerId>),
}

/// How the rest of the server reaches one admitted session.
#[derive(Clone)]
pub struct PeerHandle {
    pub info: PeerInfo,
    pub tx: mpsc::Sender<Outbound>,
    pub kick: Arc<watch::Sender<Option<Kick>>>,
}

impl PeerHandle {
    fn kick(&self, code: ErrorCode, message: &str) {
        self.kick.send_replace(Some(Kick { code, message: message.to_owned() }));
    }

    /// Queues a frame; a peer too slow to drain its queue is ejected, not skipped.
    fn deliver(&self, frame: &Arc<str>) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Outbound::Frame(frame.clone())) {
            self.kick(code::SLOW_CONSUMER, "you fell too far behind the room's messages");
        }
    }
}

/// A whitelist entry as the admission check needs it.
#[derive(Clone, Debug)]
pub struct Allowed {
    pub label: String,
    /// allowed_signers `namespaces=`, when the key came with a restriction.
    pub ssh_namespaces: Option<Vec<String>>,
    /// What a PIV key must prove beyond its signature.
    pub piv: Option<PivRequirement>,
    /// When the key may be used (allowed_signers `valid-after` / `valid-before`).
    pub valid: crate::identity::Validity,
}

impl Allowed {
    fn from_entry(e: WhitelistEntry) -> Self {
        // An unreadable stored requirement demands attestation rather than nothing.
        let piv = e.piv_requirement.as_deref().map(|r| {
            PivRequirement::parse(r).unwrap_or(PivRequirement { attested: true, ..PivRequirement::default() })
        });
        Allowed { label: e.label, ssh_namespaces: e.ssh_namespaces, piv, valid: e.valid }
    }
}

/// What a session needs to know about a room to admit someone.
#[derive(Clone, Debug)]
pub struct Access {
    /// The whitelist entry, if the identity is on the whitelist.
    pub allowed: Option<Allowed>,
    pub owner: bool,
    pub require_user_verification: bool,
    /// [`Rooms::changes`] before the lookup: [`Rooms::join`] refuses to seat the
    /// identity if a change has been applied since, so a removal that lands while
    /// the signature is checked is never missed.
    pub changes: u64,
}

#[derive(Default)]
struct LiveRoom {
    /// Peers seated here, or being seated, that need the room's messages from other
    /// servers; the room is listened to on the bus while this is above zero, and
    /// for [`remote::LINGER`] after (people come back).
    interest: usize,
    listening: Option<remote::Listening>,
    /// Since when nobody here needs the room's messages, if nobody does.
    idle_since: Option<tokio::time::Instant>,
    /// The room's peers on other servers.
    remote: HashMap<PeerId, remote::RemotePeer>,
    /// Peers of other servers that left lately, so a late copy of their seat does
    /// not bring them back.
    gone: std::collections::VecDeque<PeerId>,
    owners: Vec<Did>,
    require_user_verification: bool,
    /// The room's own peer limit and challenge lifetime, when it sets them.
    max_peers: Option<usize>,
    freshness: Option<Duration>,
    /// How often every peer must confirm its identity again, if the host requires it.
    /// A watch, so live sessions follow a change made mid-call without asking.
    confirm_every: watch::Sender<Option<Duration>>,
    /// The room's media setting.
    media: Media,
    /// Whether the call under way goes through the SFU: decided when the first of
    /// its peers sits down, and turned on when an `auto` call grows.
    sfu_call: bool,
    /// Whether the settings and owners above are the store's (false until loaded,
    /// and again after a change to the room).
    loaded: bool,
    /// Entries looked up, as the store had them (the change log forgets them).
    entries: HashMap<Did, Allowed>,
    peers: HashMap<PeerId, PeerHandle>,
}

/// Every room that is loaded or has peers.
pub struct Rooms {
    store: Store,
    live: Mutex<HashMap<RoomId, LiveRoom>>,
    /// Changes applied so far (removals, edited entries, changed rooms; any room).
    /// What was read before a change is not cached after it (a load or an entry that
    /// raced with it is discarded), and a key whose entry was read before a change
    /// is not seated without a second look ([`Access::changes`]).
    changes: AtomicU64,
    /// The last change-log entry applied (`None` until following starts). Held
    /// while applying, so changes are applied once and in order.
    applied: tokio::sync::Mutex<Option<i64>>,
    /// The bus on which this server tells the others what changed, if any.
    bus: std::sync::OnceLock<crate::bus::Bus>,
    /// This, for the tasks that listen to rooms on the bus.
    me: std::sync::OnceLock<std::sync::Weak<Rooms>>,
    /// Numbers each listening to a room, so a message heard by one that ended is dropped.
    listenings: AtomicU64,
    /// Rooms listened to that nobody here needs any more, oldest first, with since when.
    lingering: Mutex<std::collections::VecDeque<(RoomId, tokio::time::Instant)>>,
    /// Set when this server has an SFU: the size at which `auto` calls move to it.
    sfu_from: std::sync::OnceLock<usize>,
}

/// What an admitted peer gets from joining.
pub struct Joined {
    /// The peers already in the room.
    pub others: Vec<PeerInfo>,
    /// Whether the call goes through the SFU.
    pub sfu: bool,
    /// How often the room requires a confirmation of identity (`None`: never).
    pub confirm_every: watch::Receiver<Option<Duration>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the room is full ({0} peers)")]
    Full(usize),
    /// A change was applied since the identity's entry was read: read it again.
    #[error("the whitelist changed while the key was checked")]
    ListChanged,
    /// The store could not seat the peer (servers sharing a bus).
    #[error("the room's seats could not be counted: {0}")]
    Store(#[from] StoreError),
}

impl Rooms {
    pub fn new(store: Store) -> Self {
        Rooms {
            store,
            live: Mutex::new(HashMap::new()),
            changes: AtomicU64::new(0),
            applied: tokio::sync::Mutex::new(None),
            bus: std::sync::OnceLock::new(),
            me: std::sync::OnceLock::new(),
            listenings: AtomicU64::new(0),
            lingering: Mutex::new(std::collections::VecDeque::new()),
            sfu_from: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, LiveRoom>> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes sure the room's settings and owners are cached. `Ok(false)`: no such room.
    pub async fn load(&self, room: &RoomId) -> Result<bool, StoreError> {
        if self.lock().get(room).is_some_and(|r| r.loaded) {
            return Ok(true);
        }
        let seen = self.changes();
        let Some(record) = self.store.room(room).await? else {
            return Ok(false);
        };
        let mut live = self.lock();
        if self.changes() == seen {
            let r = live.entry(room.clone()).or_default();
            r.owners = record.owners;
            r.require_user_verification = record.require_user_verification;
            r.max_peers = record.max_peers.and_then(|n| usize::try_from(n).ok());
            r.freshness = record.freshness_secs.and_then(|s| u64::try_from(s).ok()).map(Duration::from_secs);
            r.media = Media::from_stored(record.media.as_deref());
            let every = record
                .reverify_every_secs
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs);
            r.confirm_every.send_if_modified(|current| std::mem::replace(current, every) != every);
            r.loaded = true;
        }
        Ok(true)
    }

    /// Whether the room exists (loading it if needed), how many peers it has, and
    /// how many it takes (its own cap, or `default_max`). With a bus, a room that
    /// looks full from here is counted again in the store (another server's
    /// departure may not have been heard here yet).
    pub async fn occupancy(&self, room: &RoomId, default_max: usize) -> Result<Option<(usize, usize)>, StoreError> {
        if !self.load(room).await? {
            return Ok(None);
        }
        let (here, max) = {
            let live = self.lock();
            let r = live.get(room);
            (r.map_or(0, |r| r.peers.len() + r.remote.len()), r.and_then(|r| r.max_peers).unwrap_or(default_max))
        };
        if here >= max && self.bus.get().is_some() {
            return Ok(Some((self.seated(room).await?, max)));
        }
        Ok(Some((here, max)))
    }

    /// What `did` may do in `room`: the whitelist check that precedes any signature
    /// verification, one indexed lookup whatever the list's size.
    pub async fn access(&self, room: &RoomId, did: &Did) -> Result<Option<Access>, StoreError> {
        let changes = self.changes();
        let cached = |r: &LiveRoom, allowed: Option<Allowed>| Access {
            allowed,
            owner: r.owners.iter().any(|o| o == did),
            require_user_verification: r.require_user_verification,
            changes,
        };
        if let Some(r) = self.lock().get(room).filter(|r| r.loaded) {
            if let Some(hit) = r.entries.get(did) {
                return Ok(Some(cached(r, Some(hit.clone()))));
            }
        }
        let entry = self.store.entry(room, did).await?.map(Allowed::from_entry);
        for _ in 0..3 {
            {
                let mut live = self.lock();
                if let Some(r) = live.get_mut(room).filter(|r| r.loaded) {
                    // Keep what was found unless a change was applied meanwhile.
                    if let Some(allowed) = entry.as_ref().filter(|_| self.changes() == changes) {
                        if r.entries.len() >= MAX_CACHED_ENTRIES {
                            r.entries.clear();
                        }
                        r.entries.insert(did.clone(), allowed.clone());
                    }
                    return Ok(Some(cached(r, entry)));
                }
            }
            if !self.load(room).await? {
                return Ok(None);
            }
        }
        // The room's settings keep changing faster than loads complete; ask the store.
        let Some(record) = self.store.room(room).await? else {
            return Ok(None);
        };
        Ok(Some(Access {
            allowed: entry,
            owner: record.owners.iter().any(|o| o == did),
            require_user_verification: record.require_user_verification,
            changes,
        }))
    }

    /// How many changes have been applied, for [`Access::changes`].
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The (loaded) room's own peer limit, if it sets one.
    /// Whether the call under way in `room` goes through the SFU.
    pub fn through_sfu(&self, room: &RoomId) -> bool {
        self.lock().get(room).is_some_and(|r| r.sfu_call)
    }

    /// This server has an SFU: rooms set to `sfu` use it, and `auto` calls move to
    /// it when they reach `sfu_from` peers.
    pub fn use_sfu(&self, sfu_from: usize) {
        let _ = self.sfu_from.set(sfu_from);
    }

    pub fn max_peers(&self, room: &RoomId) -> Option<usize> {
        self.lock().get(room).and_then(|r| r.max_peers)
    }

    /// The (loaded) room's own challenge lifetime, if it sets one.
    pub fn freshness(&self, room: &RoomId) -> Option<Duration> {
        self.lock().get(room).and_then(|r| r.freshness)
    }

    /// Whether the (loaded) room refuses proofs without user verification.
    pub fn requires_user_verification(&self, room: &RoomId) -> bool {
        self.lock().get(room).is_some_and(|r| r.require_user_verification)
    }

    /// Adds an admitted peer, tells the others, and returns the peers already there
    /// with the room's confirmation schedule. `changes` is what the whitelist check
    /// saw ([`Access::changes`]); a change applied since refuses with
    /// [`JoinError::ListChanged`]. (A removal applied later finds the peer seated and
    /// ejects it: both take the room lock.)
    ///
    /// With a bus the seat is taken in the store first, where the room's capacity
    /// is counted across servers, and the others are told.
    pub async fn join(
        &self,
        room: &RoomId,
        handle: PeerHandle,
        max_peers: usize,
        changes: u64,
    ) -> Result<Joined, JoinError> {
        match self.bus.get() {
            None => self.seat(room, handle, max_peers, changes, Vec::new()),
            Some(bus) => self.join_everywhere(bus, room, handle, max_peers, changes).await,
        }
    }

    /// Seats a peer here, with `elsewhere` the room's peers on other servers as the
    /// store has them.
    fn seat(
        &self,
        room: &RoomId,
        handle: PeerHandle,
        max_peers: usize,
        changes: u64,
        elsewhere: Vec<remote::RemotePeer>,
    ) -> Result<Joined, JoinError> {
        let mut live = self.lock();
        if self.changes() != changes {
            return Err(JoinError::ListChanged);
        }
        let r = live.entry(room.clone()).or_default();
        if r.peers.len() >= max_peers {
            return Err(JoinError::Full(max_peers));
        }
        r.meet(elsewhere);
        // Each server keeps its own Janus rooms, so a call that may span servers (a
        // bus) stays in the mesh.
        let sfu_from = self.sfu_from.get().copied().filter(|_| self.bus.get().is_none());
        if r.peers.is_empty() && r.remote.is_empty() {
            // A new call: through the SFU if the room says so and this server has one.
            r.sfu_call = sfu_from.is_some() && r.media == Media::Sfu;
        }
        let frame: Arc<str> = ServerMessage::PeerJoined(&handle.info).to_text().into();
        let mut others: Vec<PeerInfo> = r.peers.values().map(|p| p.info.clone()).collect();
        others.extend(r.remote.values().map(|p| p.info.clone()));
        for p in r.peers.values() {
            p.deliver(&frame);
        }
        // An `auto` call that reaches its size moves to the SFU, everyone at once.
        let grown = sfu_from.is_some_and(|n| others.len() + 1 >= n);
        if r.media == Media::Auto && !r.sfu_call && grown {
            r.sfu_call = true;
            let frame: Arc<str> = ServerMessage::Media { mode: Media::Sfu.as_str() }.to_text().into();
            for p in r.peers.values() {
                p.deliver(&frame);
            }
        }
        r.peers.insert(handle.info.peer_id.clone(), handle);
        Ok(Joined { others, sfu: r.sfu_call, confirm_every: r.confirm_every.subscribe() })
    }

    /// Removes a peer and tells the others. An empty room keeps its cached settings
    /// (people reconnect), unless the cache has grown past [`MAX_CACHED_ROOMS`].
    /// With a bus, the other servers are told and the seat is free when this returns.
    pub async fn leave(&self, room: &RoomId, peer: &PeerId, reason: &str) {
        let bus = self.bus.get();
        if bus.is_some() && self.lock().get(room).is_some_and(|r| r.peers.contains_key(peer)) {
            // Before anyone hears of the departure, here or elsewhere.
            self.free_seat(room, peer).await;
        }
        {
            let mut live = self.lock();
            let Some(r) = live.get_mut(room) else { return };
            if r.peers.remove(peer).is_none() {
                return;
            }
            let frame: Arc<str> = ServerMessage::PeerLeft { peer_id: peer, reason }.to_text().into();
            for p in r.peers.values() {
                p.deliver(&frame);
            }
            if r.peers.is_empty() && live.len() > MAX_CACHED_ROOMS {
                live.retain(|_, r| !r.peers.is_empty() || r.listening.is_some());
            }
        }
        if let Some(bus) = bus {
            self.left_everywhere(bus, room, peer, reason);
        }
    }

    /// Queues `frame` for peer `to` in `room`, here or (with a bus) on its server.
    /// `false`: no such peer there.
    pub fn send_to(&self, room: &RoomId, to: &PeerId, frame: Arc<str>) -> bool {
        let live = self.lock();
        let Some(r) = live.get(room) else { return false };
        if let Some(p) = r.peers.get(to) {
            p.deliver(&frame);
            return true;
        }
        if !r.remote.contains_key(to) {
            return false;
        }
        drop(live);
        self.tell(room, crate::bus::Tell::Frame(to, &frame))
    }

    /// Ejects every live session of `did` in `room` and forgets its entry: it was
    /// removed from the list.
    pub fn revoke(&self, room: &RoomId, did: &Did) {
        self.forget(room, did);
        if let Some(r) = self.lock().get(room) {
            for p in r.peers.values().filter(|p| p.info.identity == *did) {
                p.kick(code::REVOKED, "your key was removed from this room's whitelist");
            }
        }
    }

    /// Ejects every live session of a deleted room and forgets the room.
    pub fn close(&self, room: &RoomId) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        let mut live = self.lock();
        if let Some(r) = live.get(room) {
            for p in r.peers.values() {
                p.kick(code::ROOM_DELETED, "this room was deleted by its owner");
            }
        }
        if let Some(r) = live.get_mut(room) {
            r.loaded = false;
            r.entries.clear();
        }
    }

    /// Forgets what was cached of `did`'s entry in `room` (it changed).
    pub fn forget(&self, room: &RoomId, did: &Did) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        if let Some(r) = self.lock().get_mut(room) {
            r.entries.remove(did);
        }
    }

    /// Forgets what the room cached (settings, owners, entries) so the next check
    /// reads the store.
    pub fn invalidate(&self, room: &RoomId) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        if let Some(r) = self.lock().get_mut(room) {
            r.loaded = false;
            r.entries.clear();
        }
    }

    /// The peers in a room now that this server knows of: its own, and those on
    /// other servers when it has peers there too (see [`Rooms::everyone`]).
    pub fn peers(&self, room: &RoomId) -> Vec<PeerInfo> {
        let live = self.lock();
        let Some(r) = live.get(room) else { return Vec::new() };
        r.peers.values().map(|p| p.info.clone()).chain(r.remote.values().map(|p| p.info.clone())).collect()
    }

    /// The identity a live peer of a room was admitted with.
    pub fn peer_identity(&self, room: &RoomId, peer: &PeerId) -> Option<Did> {
        let live = self.lock();
        let r = live.get(room)?;
        r.peers.get(peer).map(|p| &p.info).or_else(|| r.remote.get(peer).map(|p| &p.info)).map(|i| i.identity.clone())
    }

    /// Ejects one peer of a room, here or on its server; false if it is not there.
    pub fn kick_peer(&self, room: &RoomId, peer: &PeerId, code: ErrorCode, message: &str) -> bool {
        match self.whereabouts(room, peer) {
            Whereabouts::Here(p) => {
                p.kick(code, message);
                true
            }
            Whereabouts::Elsewhere => self.tell(room, crate::bus::Tell::Kick(peer, code, message)),
            Whereabouts::Unknown => false,
        }
    }

    /// Asks `target` to prove its key again, here or on its server. False: no such
    /// peer in the room.
    pub fn request_reverify(&self, room: &RoomId, target: &PeerId, requester: Option<PeerId>) -> bool {
        match self.whereabouts(room, target) {
            Whereabouts::Here(p) => p.tx.try_send(Outbound::Reverify(requester)).is_ok(),
            Whereabouts::Elsewhere => self.tell(room, crate::bus::Tell::Reverify(target, requester.as_ref())),
            Whereabouts::Unknown => false,
        }
    }

    /// Records that a peer of this server proved its key again at `at`.
    pub async fn mark_verified(&self, room: &RoomId, peer: &PeerId, at: &str) {
        let info = {
            let mut live = self.lock();
            let Some(p) = live.get_mut(room).and_then(|r| r.peers.get_mut(peer)) else { return };
            p.info.last_verified = Some(at.to_owned());
            p.info.clone()
        };
        if let Some(bus) = self.bus.get() {
            self.verified_everywhere(bus, room, &info, at).await;
        }
    }

    /// Ejects every session (used on shutdown).
    pub fn kick_all(&self, code: ErrorCode, message: &str) {
        for r in self.lock().values() {
            for p in r.peers.values() {
                p.kick(code, message);
            }
        }
    }

    /// How many admitted peers are connected, across rooms.
    pub fn peer_count(&self) -> usize {
        self.lock().values().map(|r| r.peers.len()).sum()
    }

    /// Starts following the change log from its current end: what is already in the
    /// store is what rooms will load.
    pub async fn start_following(&self) -> Result<(), StoreError> {
        *self.applied.lock().await = Some(self.store.last_change().await?);
        Ok(())
    }

    /// Applies every change the log holds past the last one applied: a removal
    /// ejects the identity's live sessions, a changed entry is forgotten, and a
    /// change to a room itself (settings, owners) drops its cached settings, reloading them now if it is in a call so
    /// its sessions follow (e.g. a confirmation schedule). Work per change, never per
    /// list entry. Does nothing before [`Rooms::start_following`].
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().await;
        let Some(mut seen) = *applied else { return Ok(()) };
        loop {
            let changes = self.store.changes_since(seen).await?;
            let full_page = changes.len() >= crate::store::CHANGES_PAGE;
            // Rooms whose own settings changed (one settings form writes several).
            let mut settings_changed = std::collections::HashSet::new();
            for c in changes {
                seen = c.seq;
                *applied = Some(seen);
                let Ok(room) = RoomId::parse(&c.room) else {
                    continue;
                };
                if c.removed && c.identity.is_empty() {
                    self.close(&room);
                } else if c.removed {
                    self.revoke(&room, &c.identity);
                } else if c.identity.is_empty() {
                    self.invalidate(&room);
                    settings_changed.insert(room);
                } else {
                    self.forget(&room, &c.identity);
                }
            }
            for room in settings_changed {
                if self.lock().get(&room).is_some_and(|r| !r.peers.is_empty()) {
                    if let Err(e) = self.load(&room).await {
                        tracing::warn!(error = %e, "reloading a room's settings failed");
                    }
                }
            }
            if !full_page {
                return Ok(());
            }
        }
    }

    /// Shares rooms with the other servers on `bus` from now on.
    pub fn use_bus(self: &Arc<Self>, bus: crate::bus::Bus) {
        let _ = self.me.set(Arc::downgrade(self));
        let _ = self.bus.set(bus);
    }

    /// The bus, if this server shares its rooms on one.
    pub fn bus(&self) -> Option<&crate::bus::Bus> {
        self.bus.get()
    }

    /// After this server committed a change: its own rooms apply it now, and the
    /// other servers are told to read the log.
    pub async fn changed_here(&self) -> Result<(), StoreError> {
        let applied = self.catch_up().await;
        if let Some(bus) = self.bus.get() {
            bus.announce_change();
        }
        applied
    }

    /// Applies the change log every `interval`, until `shutdown`: edits made by other
    /// processes reach live rooms this way.
    pub async fn follow_changes(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        if self.applied.lock().await.is_none() {
            if let Err(e) = self.start_following().await {
                tracing::error!(error = %e, "cannot read the whitelist change log; CLI changes will not eject sessions");
                return;
            }
        }
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "polling whitelist changes failed");
            }
            ticks += 1;
            if ticks % 600 == 0 {
                if let Err(e) = self.store.prune_changes(10_000).await {
                    tracing::warn!(error = %e, "pruning whitelist changes failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn handle(identity: &Did) -> PeerHandle {
        let (tx, _rx) = mpsc::channel(4);
        let (kick, _) = watch::channel(None);
        let info = PeerInfo {
            peer_id: PeerId::generate(),
            identity: identity.clone(),
            key_fingerprint: String::new(),
            label: String::new(),
            method: "webcrypto",
            admitted_at: String::new(),
            last_verified: None,
            vouched: Default::default(),
            proof: None,
        };
        PeerHandle { info, tx, kick: Arc::new(kick) }
    }

    /// Security: a removal applied while an admitted key's signature was being
    /// checked (after its entry was read, before it is seated) is not missed: the
    /// seat is refused and the list read again.
    #[tokio::test]
    async fn a_removal_between_the_lookup_and_the_seat_is_caught() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = Store::open(&dir.path().join("k.db")).await.unwrap_or_else(|e| unreachable!("{e}"));
        let owner = Identity::from_key(crate::identity::PublicKey::Ed25519([1; 32]));
        let room = RoomId::generate();
        crate::whitelist::Whitelist::new(&store, None)
            .create_room(&room, "race", &owner, crate::whitelist::Actor::operator(), None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let rooms = Rooms::new(store);
        let access = rooms.access(&room, owner.did()).await.unwrap_or_else(|e| unreachable!("{e}"));
        let seen = access.map(|a| a.changes).unwrap_or_default();
        rooms.revoke(&room, owner.did());
        let refused = rooms.join(&room, handle(owner.did()), 8, seen).await;
        assert!(matches!(refused, Err(JoinError::ListChanged)), "seated after a removal");
        // With what the list says now, the seat is given.
        assert!(rooms.join(&room, handle(owner.did()), 8, rooms.changes()).await.is_ok());
    }
}
