//! One WebSocket connection, from first frame to close.
//!
//! ```text
//!  connected ──request──▶ challenged ──auth ok──▶ admitted ──▶ relay, whitelist …
//!      │                     │  └─auth refused──▶ challenged (may request again)
//!      └──── auth timeout ───┴──▶ closed
//! ```
//!
//! The loop is generic over any `Stream + Sink` of WebSocket messages, so it runs
//! the same over a real socket and over in-memory channels. A client that breaks a
//! rule gets an `error` frame naming the rule and, unless the rule says otherwise,
//! the connection goes on.

mod reverify;

use super::protocol::{
    code, AddedEntry, ClientMessage, EntryError, PeerInfo, PeerProblem, Request, ServerMessage, SshHint, WhitelistAdd,
    CLIENT_TYPES,
};
use super::rooms::{Kick, Outbound, PeerHandle};
use super::Gateway;
use crate::challenge::{valid_fingerprint, ChallengeSlot, Freshness, IssuedChallenge};
use crate::identity::{parse_key_list, EthAddress, Identity};
use crate::ids::{PeerId, RoomId};
use crate::store::AuditEvent;
use crate::verify::{Method, VerifyError, SSH_NAMESPACE};
use axum::extract::ws::{CloseFrame, Message};
use chrono::Utc;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Close codes in the 4000 range are keygate's own.
const CLOSE_AUTH_TIMEOUT: u16 = 4001;
const CLOSE_REVOKED: u16 = 4003;
const CLOSE_SLOW: u16 = 4008;
const CLOSE_RATE: u16 = 4029;
const CLOSE_GOING_AWAY: u16 = 1001;

/// How many frames a connected peer may have queued before it counts as too slow.
const OUTBOUND_QUEUE: usize = 256;
/// Consecutive rate-limited frames after which the connection is closed.
const RATE_STRIKES: u32 = 100;

/// The room a `request` asked for.
struct Requested {
    room: RoomId,
    create: bool,
    name: String,
    /// A ticket is wanted instead of a seat (the native client).
    ticket: bool,
}

/// State of an admitted peer.
struct Admitted {
    room: RoomId,
    peer_id: PeerId,
    identity: Identity,
    owner: bool,
    method: Method,
    /// The DTLS fingerprint signed at admission, signed again on re-verification.
    fingerprint: Option<String>,
    rx: mpsc::Receiver<Outbound>,
    kick: watch::Receiver<Option<Kick>>,
    /// Who asked for the re-verification now under way (`None`: a host page).
    reverify_for: Vec<Option<PeerId>>,
    /// When the re-verification under way fails for want of an answer.
    reverify_deadline: Option<tokio::time::Instant>,
    /// Whether the room demanded the re-verification under way (failing it ejects).
    reverify_required: bool,
    /// When this peer last proved its key: admission, or a confirmed re-verification.
    proved_at: tokio::time::Instant,
}

/// A token bucket: `rate` frames per second, bursts up to twice that.
struct RateLimit {
    tokens: f64,
    rate: f64,
    last: Instant,
    strikes: u32,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimit { tokens: rate * 2.0, rate, last: Instant::now(), strikes: 0 }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate * 2.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

struct Session {
    gw: Arc<Gateway>,
    /// When an unadmitted socket is closed. A `request` pushes it out to the longest
    /// challenge lifetime, so a person signing by hand is not cut off.
    deadline: tokio::time::Instant,
    remote: Option<String>,
    slot: ChallengeSlot,
    requested: Option<Requested>,
    admitted: Option<Admitted>,
    rate: RateLimit,
}

/// Runs one connection until it closes.
pub async fn run<S, E>(mut socket: S, gw: Arc<Gateway>, remote: Option<String>)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let mut shutdown = gw.shutdown.clone();
    let mut s = Session {
        deadline: tokio::time::Instant::now() + gw.settings.auth_timeout,
        rate: RateLimit::new(gw.settings.messages_per_second),
        gw,
        remote,
        slot: ChallengeSlot::default(),
        requested: None,
        admitted: None,
    };
    let mut leave_reason = "left";
    loop {
        let reverify_at = s.admitted.as_ref().and_then(|a| a.reverify_deadline);
        // A room may require every peer to prove its key again this often.
        let reverify_due = s
            .admitted
            .as_ref()
            .filter(|a| a.reverify_deadline.is_none() && a.kick.borrow().is_none())
            .and_then(|a| s.gw.rooms.reverify_every(&a.room).map(|every| a.proved_at + every));
        let flow = tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(msg)) => s.on_frame(msg, &mut socket).await,
                _ => break,
            },
            event = peer_event(&mut s.admitted) => match event {
                PeerEvent::Frame(frame) => {
                    if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
                        break;
                    }
                    Flow::Continue
                }
                PeerEvent::Reverify(requester) => {
                    s.start_reverify(&mut socket, requester).await;
                    Flow::Continue
                }
                PeerEvent::Kicked(kick) => {
                    send_error(&mut socket, kick.code, &kick.message).await;
                    leave_reason = if kick.code == code::REVOKED { "removed" } else { kick.code };
                    match kick.code {
                        code::REVOKED => Flow::Close(CLOSE_REVOKED, "revoked"),
                        code::NOT_CONFIRMED => Flow::Close(CLOSE_REVOKED, "identity not confirmed"),
                        code::SHUTTING_DOWN => Flow::Close(CLOSE_GOING_AWAY, "server shutting down"),
                        _ => Flow::Close(CLOSE_SLOW, "too slow"),
                    }
                }
            },
            _ = tokio::time::sleep_until(reverify_at.unwrap_or_else(tokio::time::Instant::now)), if reverify_at.is_some() => {
                s.reverify_timed_out(&mut socket).await;
                Flow::Continue
            }
            _ = tokio::time::sleep_until(reverify_due.unwrap_or_else(tokio::time::Instant::now)), if reverify_due.is_some() => {
                s.start_required_reverify(&mut socket).await;
                Flow::Continue
            }
            _ = tokio::time::sleep_until(s.deadline), if s.admitted.is_none() => {
                send_error(&mut socket, code::AUTH_TIMEOUT, "not admitted in time; connect again and answer the challenge sooner").await;
                Flow::Close(CLOSE_AUTH_TIMEOUT, "auth timeout")
            }
            _ = shutdown.changed() => {
                send_error(&mut socket, code::SHUTTING_DOWN, "the server is restarting; reconnect in a moment").await;
                leave_reason = "server shutting down";
                Flow::Close(CLOSE_GOING_AWAY, "server shutting down")
            }
        };
        if let Flow::Close(code, reason) = flow {
            let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
            break;
        }
    }
    if let Some(a) = s.admitted.take() {
        s.gw.rooms.leave(&a.room, &a.peer_id, leave_reason);
        s.audit(&a.room, "left", Some(a.identity.did().to_owned()), None, Some(leave_reason.to_owned())).await;
    }
}

/// Something for an admitted peer from elsewhere in the server.
enum PeerEvent {
    Frame(Arc<str>),
    Reverify(Option<PeerId>),
    Kicked(Kick),
}

/// Waits for the next frame or kick for this peer; never resolves before admission.
async fn peer_event(admitted: &mut Option<Admitted>) -> PeerEvent {
    let Some(a) = admitted else {
        return std::future::pending().await;
    };
    loop {
        let kick = a.kick.borrow_and_update().clone();
        if let Some(k) = kick {
            return PeerEvent::Kicked(k);
        }
        tokio::select! {
            biased;
            Ok(()) = a.kick.changed() => continue,
            Some(event) = a.rx.recv() => return match event {
                Outbound::Frame(frame) => PeerEvent::Frame(frame),
                Outbound::Reverify(requester) => PeerEvent::Reverify(requester),
            },
            else => return std::future::pending().await,
        }
    }
}

async fn send_error<S: Sink<Message> + Unpin>(socket: &mut S, code: &str, message: &str) {
    send(socket, &ServerMessage::Error { code, message }).await;
}

async fn send<S: Sink<Message> + Unpin>(socket: &mut S, msg: &ServerMessage<'_>) {
    let _ = socket.send(Message::Text(msg.to_text().into())).await;
}

impl Session {
    async fn on_frame<S: Sink<Message> + Unpin>(&mut self, msg: Message, socket: &mut S) -> Flow {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                send_error(socket, code::BAD_MESSAGE, "binary frames are not part of the protocol; send JSON text")
                    .await;
                return Flow::Continue;
            }
            // Pings are answered by the WebSocket layer; a close ends the stream next.
            _ => return Flow::Continue,
        };
        let max = self.gw.settings.max_frame_bytes;
        if text.len() > max {
            let message = format!("frames are limited to {max} bytes; this one had {}", text.len());
            send_error(socket, code::FRAME_TOO_LARGE, &message).await;
            return Flow::Continue;
        }
        if !self.rate.allow() {
            if self.rate.strikes >= RATE_STRIKES {
                return Flow::Close(CLOSE_RATE, "rate limit");
            }
            let message = format!("at most {} messages per second; slow down", self.gw.settings.messages_per_second);
            send_error(socket, code::RATE_LIMITED, &message).await;
            return Flow::Continue;
        }
        let msg = match serde_json::from_str::<ClientMessage>(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                let (code, message) = classify_bad_frame(text.as_str(), &e);
                send_error(socket, code, &message).await;
                return Flow::Continue;
            }
        };
        match msg {
            ClientMessage::Request(request) => self.on_request(socket, request).await,
            ClientMessage::Auth { method, payload, proof } => self.on_auth(socket, &method, &payload, proof).await,
            ClientMessage::Signal { to, data } => self.on_signal(socket, &to, &data).await,
            ClientMessage::VerifyPeer { peer_id } => self.on_verify_peer(socket, &peer_id).await,
            ClientMessage::Whitelist { add, remove } => self.on_whitelist(socket, add, remove).await,
            ClientMessage::Report { peer_id, problem } => self.on_report(socket, &peer_id, problem).await,
            ClientMessage::Ping => send(socket, &ServerMessage::Pong).await,
        }
        Flow::Continue
    }

    async fn on_request<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, request: Request) {
        let Request { room_id, create, fingerprint, name, address, webauthn, ticket } = request;
        if ticket && create {
            return send_error(socket, code::BAD_MESSAGE, "a ticket is for joining an existing room").await;
        }
        if self.admitted.is_some() {
            return send_error(
                socket,
                code::ALREADY_ADMITTED,
                "this connection is already admitted; open another to join another room",
            )
            .await;
        }
        if let Some(f) = &fingerprint {
            if !valid_fingerprint(f) {
                return send_error(
                    socket,
                    code::BAD_MESSAGE,
                    "fingerprint must look like \"sha-256 AB:CD:…\" (letters, digits, ':', '-', spaces; at most 200)",
                )
                .await;
            }
        }
        let address = match address.as_deref().map(EthAddress::parse) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                let message = format!("address: {e}");
                return send_error(socket, code::BAD_MESSAGE, &message).await;
            }
        };
        let requested = match (room_id, create) {
            (Some(_), true) => {
                return send_error(socket, code::BAD_MESSAGE, "send either roomId or create:true, not both").await
            }
            (None, false) => {
                return send_error(
                    socket,
                    code::BAD_MESSAGE,
                    "request needs a roomId (or create:true to create a room)",
                )
                .await
            }
            (None, true) => {
                let name = name.unwrap_or_default();
                if name.chars().count() > 100 {
                    return send_error(socket, code::BAD_MESSAGE, "a room name is at most 100 characters").await;
                }
                Requested { room: RoomId::generate(), create: true, name, ticket: false }
            }
            (Some(room), false) => match self.gw.rooms.occupancy(&room).await {
                Err(e) => {
                    tracing::error!(error = %e, "room lookup failed");
                    return send_error(socket, code::INTERNAL, "the server could not look up the room; try again")
                        .await;
                }
                Ok(None) => return send_error(socket, code::ROOM_NOT_FOUND, "no such room; check the link").await,
                Ok(Some(n))
                    if !ticket
                        && n >= self.gw.rooms.max_peers(&room).unwrap_or(self.gw.settings.max_peers_per_room) =>
                {
                    let message = format!("the room is full ({n} peers)");
                    return send_error(socket, code::ROOM_FULL, &message).await;
                }
                Ok(Some(_)) => Requested { room, create: false, name: String::new(), ticket },
            },
        };
        let settings = &self.gw.settings;
        let mut challenge = IssuedChallenge::issue(requested.room.clone(), &self.gw.origin, fingerprint, Utc::now());
        if let Some(address) = address {
            challenge = challenge.with_siwe(&self.gw.origin, address, settings.eth_chain_id, settings.freshness_past);
        }
        if webauthn && !requested.create && self.gw.verifiers.get(Method::Webauthn).is_some() {
            match self.webauthn_ceremony(&requested.room, &challenge.signed_bytes).await {
                Ok(ceremony) => challenge.webauthn = Some(Arc::new(ceremony)),
                Err(message) => return send_error(socket, code::INTERNAL, &message).await,
            }
        }
        let payload: Box<RawValue> = match RawValue::from_string(challenge.signed_bytes.clone()) {
            Ok(p) => p,
            Err(_) => return send_error(socket, code::INTERNAL, "could not build a challenge").await,
        };
        let verifiers = &self.gw.verifiers;
        let methods = verifiers.methods().into_iter().map(Method::as_str).collect();
        let ssh = verifiers.get(Method::Ssh).map(|_| SshHint::for_text(&challenge.signed_bytes));
        let siwe = challenge.siwe.as_deref();
        let webauthn = challenge.webauthn.as_ref().map(|w| &w.options);
        send(socket, &ServerMessage::Challenge { payload: &payload, methods, ssh, siwe, webauthn }).await;
        let lifetime = if verifiers.any_by_hand() {
            settings.auth_timeout.max(settings.manual_freshness)
        } else {
            settings.auth_timeout
        };
        self.deadline = self.deadline.max(tokio::time::Instant::now() + lifetime);
        self.slot.put(challenge);
        self.requested = Some(requested);
    }

    async fn on_auth<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        method_name: &str,
        payload: &Value,
        proof: Map<String, Value>,
    ) {
        if self.admitted.is_some() {
            if self.admitted.as_ref().is_some_and(|a| !a.reverify_for.is_empty()) {
                return self.finish_reverify(socket, method_name, payload, proof).await;
            }
            return send_error(socket, code::ALREADY_ADMITTED, "this connection is already admitted").await;
        }
        let Some(requested) = &self.requested else {
            return send_error(socket, code::NO_CHALLENGE, "send a request first; auth answers its challenge").await;
        };
        let room = requested.room.clone();
        let verifier = serde_json::from_value::<Method>(Value::String(method_name.to_owned()))
            .ok()
            .and_then(|m| self.gw.verifiers.get(m));
        let Some(verifier) = verifier else {
            let accepted: Vec<&str> = self.gw.verifiers.methods().into_iter().map(Method::as_str).collect();
            let message = format!("method '{method_name}' is not accepted here; use one of: {}", accepted.join(", "));
            return send_error(socket, code::UNSUPPORTED_METHOD, &message).await;
        };
        let method = verifier.method();
        let settings = &self.gw.settings;
        let window = Freshness {
            past: if verifier.by_hand() {
                settings.manual_freshness
            } else {
                self.gw.rooms.freshness(&room).unwrap_or(settings.freshness_past)
            },
            future: settings.freshness_future,
        };
        let issued = match self.slot.redeem(payload, Utc::now(), window) {
            Ok(c) => c,
            Err(refusal) => return self.refuse(socket, &room, None, method, refusal.reason().to_owned()).await,
        };
        let proof = Value::Object(proof);
        let claim = match verifier.claim_for(&proof, &issued) {
            Ok(c) => c,
            Err(VerifyError::PrivateKey) => {
                self.refuse_quietly(&room, None, method, "client sent a private key".into()).await;
                return send_error(
                    socket,
                    code::PRIVATE_KEY,
                    "the publicKey JWK contains private key material (\"d\"); send only the public JWK — your private key must never leave your device",
                )
                .await;
            }
            Err(e) => return self.refuse_with(socket, &room, None, method, e).await,
        };
        let identity = claim.identity.clone();
        let did = identity.did().to_owned();
        let signed = match verifier.signed_text(&issued) {
            Ok(signed) => signed,
            Err(e) => return self.refuse_with(socket, &room, Some(did), method, e).await,
        };
        // The whitelist is consulted before the signature: an unknown key costs no crypto.
        let (label, owner, require_uv, piv_requirement) = if requested.create {
            let creators = &self.gw.settings.room_creators;
            if !creators.is_empty() && !creators.contains(&did) {
                return self.refuse(socket, &room, Some(did), method, "not allowed to create rooms".into()).await;
            }
            ("owner".to_owned(), true, false, None)
        } else {
            let access = match self.gw.rooms.access(&room, &did).await {
                Ok(Some(access)) => access,
                Ok(None) => return self.refuse(socket, &room, Some(did), method, "room no longer exists".into()).await,
                Err(e) => {
                    tracing::error!(error = %e, "whitelist lookup failed");
                    return send_error(socket, code::INTERNAL, "the server could not check the whitelist; try again")
                        .await;
                }
            };
            let Some(allowed) = access.allowed else {
                return self.refuse(socket, &room, Some(did), method, "unknown key".into()).await;
            };
            if method == Method::Ssh
                && allowed.ssh_namespaces.as_ref().is_some_and(|n| !n.iter().any(|n| n == SSH_NAMESPACE))
            {
                let reason = format!("allowed_signers namespaces of this key exclude '{SSH_NAMESPACE}'");
                return self.refuse(socket, &room, Some(did), method, reason).await;
            }
            (allowed.label, access.owner, access.require_user_verification, allowed.piv)
        };
        let evidence = match claim.check(signed) {
            Ok(evidence) => evidence,
            Err(e) => return self.refuse_with(socket, &room, Some(did), method, e).await,
        };
        if require_uv && evidence.user_verified == Some(false) {
            let reason = "the room requires user verification (PIN or biometric); the key only proved presence";
            return self.refuse(socket, &room, Some(did), method, reason.into()).await;
        }
        if let Some(why) = piv_requirement.and_then(|r| r.unmet(evidence.attestation.as_ref())) {
            return self.refuse(socket, &room, Some(did), method, why).await;
        }
        if let (Some(id), Some(counter)) = (&evidence.credential_id, evidence.counter) {
            match self.gw.store.advance_counter(&crate::passkeys::credential_id_text(id), counter).await {
                Ok(true) => {}
                Ok(false) => {
                    let reason = "the sign counter went backwards: the authenticator may be cloned";
                    return self.refuse(socket, &room, Some(did), method, reason.into()).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "counter update failed");
                    return send_error(socket, code::INTERNAL, "the server could not record the sign counter").await;
                }
            }
        }
        let detail = evidence.attestation.as_ref().map(ToString::to_string);
        if requested.ticket {
            return self.issue_ticket(socket, &room, &identity, method, detail).await;
        }
        let (create, name) = (requested.create, requested.name.clone());
        if create {
            if let Err(e) = self.gw.store.create_room(&room, &name, &identity).await {
                tracing::error!(error = %e, "room creation failed");
                return send_error(socket, code::INTERNAL, "the room could not be created; try again").await;
            }
        }
        let forwarded = forwarded_proof(method, verifier.forwarded_fields(), &issued, &proof);
        self.admit(socket, room, identity, label, owner, create, method, issued, forwarded, detail).await;
    }

    /// Refuses with a verifier's error: a problem with the proof's form is explained
    /// to the client (code `bad-proof`); anything else is only "not admitted".
    async fn refuse_with<S: Sink<Message> + Unpin>(
        &self,
        socket: &mut S,
        room: &RoomId,
        identity: Option<String>,
        method: Method,
        error: VerifyError,
    ) {
        match error.client_message() {
            Some(message) => {
                self.refuse_quietly(room, identity, method, error.to_string()).await;
                send_error(socket, code::BAD_PROOF, &message).await;
            }
            None => self.refuse(socket, room, identity, method, error.to_string()).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn admit<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        room: RoomId,
        identity: Identity,
        label: String,
        owner: bool,
        created: bool,
        method: Method,
        issued: IssuedChallenge,
        proof: Option<Box<RawValue>>,
        detail: Option<String>,
    ) {
        let peer_id = PeerId::generate();
        let key_fingerprint = identity.fingerprint();
        let info = PeerInfo {
            peer_id: peer_id.clone(),
            identity: identity.did().to_owned(),
            key_fingerprint: key_fingerprint.clone(),
            label,
            method: method.as_str(),
            admitted_at: crate::store::now_text(),
            last_verified: None,
            fingerprint: issued.fingerprint.clone(),
            proof,
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (kick_tx, kick) = watch::channel(None);
        let handle = PeerHandle { info, tx, kick: Arc::new(kick_tx) };
        let max_peers = self.gw.rooms.max_peers(&room).unwrap_or(self.gw.settings.max_peers_per_room);
        let peers = match self.gw.rooms.join(&room, handle, max_peers) {
            Ok(peers) => peers,
            Err(e) => {
                self.refuse_quietly(&room, Some(identity.did().to_owned()), method, e.to_string()).await;
                return send_error(socket, code::ROOM_FULL, &e.to_string()).await;
            }
        };
        let welcome = ServerMessage::Welcome {
            peer_id: &peer_id,
            room_id: &room,
            identity: identity.did(),
            key_fingerprint,
            owner,
            created,
            peers,
            ice_servers: super::ice::ice_servers(&self.gw.settings, identity.did(), std::time::SystemTime::now()),
        };
        send(socket, &welcome).await;
        self.gw.stats.admissions.fetch_add(1, Ordering::Relaxed);
        self.audit(&room, "admitted", Some(identity.did().to_owned()), Some(method), detail).await;
        let fingerprint = issued.fingerprint.clone();
        self.admitted = Some(Admitted {
            room,
            peer_id,
            identity,
            owner,
            method,
            fingerprint,
            rx,
            kick,
            reverify_for: Vec::new(),
            reverify_deadline: None,
            reverify_required: false,
            proved_at: tokio::time::Instant::now(),
        });
    }

    /// Tells the client only "not admitted"; the reason goes to the audit log.
    async fn refuse<S: Sink<Message> + Unpin>(
        &self,
        socket: &mut S,
        room: &RoomId,
        identity: Option<String>,
        method: Method,
        reason: String,
    ) {
        self.refuse_quietly(room, identity, method, reason).await;
        send_error(socket, code::NOT_ADMITTED, "not admitted").await;
    }

    async fn refuse_quietly(&self, room: &RoomId, identity: Option<String>, method: Method, reason: String) {
        self.gw.stats.refusals.fetch_add(1, Ordering::Relaxed);
        self.audit(room, "refused", identity, Some(method), Some(reason)).await;
    }

    async fn audit(
        &self,
        room: &RoomId,
        event: &'static str,
        identity: Option<String>,
        method: Option<Method>,
        reason: Option<String>,
    ) {
        self.gw
            .audit
            .record(AuditEvent {
                room: room.clone(),
                event,
                identity,
                method: method.map(Method::as_str),
                reason,
                remote: self.remote.clone(),
            })
            .await;
    }

    async fn on_signal<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, to: &PeerId, data: &Value) {
        let Some(a) = &self.admitted else {
            return send_error(socket, code::UNAUTHENTICATED, "signal is for admitted peers; authenticate first").await;
        };
        if *to == a.peer_id {
            return send_error(socket, code::BAD_MESSAGE, "a peer cannot signal itself").await;
        }
        let frame: Arc<str> = ServerMessage::Signal { from: &a.peer_id, data }.to_text().into();
        if !self.gw.rooms.send_to(&a.room, to, frame) {
            send_error(socket, code::NO_SUCH_PEER, "no such peer in this room (it may have left)").await;
        }
    }

    async fn on_whitelist<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        add: Vec<WhitelistAdd>,
        remove: Vec<String>,
    ) {
        let Some(a) = &self.admitted else {
            return send_error(socket, code::UNAUTHENTICATED, "whitelist is for admitted owners; authenticate first")
                .await;
        };
        if !a.owner {
            return send_error(socket, code::NOT_OWNER, "only the room's owners can change its whitelist").await;
        }
        let (room, by) = (a.room.clone(), a.identity.did().to_owned());
        let (mut added, mut removed, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for (entry, item) in add.into_iter().enumerate() {
            let (text, label) = match item {
                WhitelistAdd::Key(k) => (k, String::new()),
                WhitelistAdd::Labelled { key, label } => (key, label),
            };
            let keys = parse_key_list(&text);
            if keys.is_empty() {
                errors.push(EntryError { entry, line: 1, error: "no key found".into() });
            }
            for (line, parsed) in keys {
                let key = match parsed {
                    Ok(k) => k,
                    Err(e) => {
                        errors.push(EntryError { entry, line, error: e.to_string() });
                        continue;
                    }
                };
                let label = if label.is_empty() { key.comment.clone().unwrap_or_default() } else { label.clone() };
                match self.gw.store.allow_key(&room, &key.identity, &label, &by, key.namespaces.as_deref()).await {
                    Ok(_) => {
                        self.audit(
                            &room,
                            "whitelist-add",
                            Some(key.identity.did().to_owned()),
                            None,
                            Some(format!("by {by}")),
                        )
                        .await;
                        added.push(AddedEntry {
                            identity: key.identity.did().to_owned(),
                            key_fingerprint: key.identity.fingerprint(),
                            label,
                        });
                    }
                    Err(e) => errors.push(EntryError { entry, line, error: e.to_string() }),
                }
            }
        }
        let owners = self.gw.store.room(&room).await.ok().flatten().map(|r| r.owners).unwrap_or_default();
        for (entry, text) in remove.into_iter().enumerate() {
            let identity = match Identity::parse(&text) {
                Ok(i) => i,
                Err(e) => {
                    errors.push(EntryError { entry, line: 1, error: e.to_string() });
                    continue;
                }
            };
            if owners.iter().any(|o| o == identity.did()) {
                errors.push(EntryError {
                    entry,
                    line: 1,
                    error: "an owner cannot be removed from the whitelist".into(),
                });
                continue;
            }
            match self.gw.store.deny(&room, &identity).await {
                Ok(true) => {
                    self.gw.rooms.revoke(&room, identity.did());
                    self.audit(
                        &room,
                        "whitelist-remove",
                        Some(identity.did().to_owned()),
                        None,
                        Some(format!("by {by}")),
                    )
                    .await;
                    removed.push(identity.did().to_owned());
                }
                Ok(false) => errors.push(EntryError { entry, line: 1, error: "not on the whitelist".into() }),
                Err(e) => errors.push(EntryError { entry, line: 1, error: e.to_string() }),
            }
        }
        if !added.is_empty() {
            self.gw.rooms.invalidate(&room);
        }
        send(socket, &ServerMessage::WhitelistUpdated { added, removed, errors }).await;
    }
}

impl Session {
    /// The WebAuthn half of a challenge for `room`: the credentials registered by
    /// its whitelisted identities, with their current counters.
    async fn webauthn_ceremony(
        &self,
        room: &RoomId,
        signed: &str,
    ) -> Result<crate::passkeys::WebauthnChallenge, String> {
        let stored = self.gw.store.room_credentials(room).await.map_err(|e| {
            tracing::error!(error = %e, "credential lookup failed");
            "the server could not look up passkeys; try again".to_owned()
        })?;
        let credentials = stored
            .into_iter()
            .filter_map(|c| {
                let mut credential: webauthn_rs_core::proto::Credential = serde_json::from_str(&c.credential).ok()?;
                credential.counter = c.counter;
                Some((credential, Identity::parse(&c.identity).ok()?))
            })
            .collect();
        let require_uv = self.gw.rooms.requires_user_verification(room);
        self.gw.passkeys.challenge(signed, credentials, require_uv).map_err(|e| e.to_string())
    }
}

/// The admission proof as other peers receive it, for methods they can check
/// themselves: the exact signed text plus the method's proof fields.
fn forwarded_proof(method: Method, fields: &[&str], issued: &IssuedChallenge, proof: &Value) -> Option<Box<RawValue>> {
    if fields.is_empty() {
        return None;
    }
    let mut out = Map::new();
    out.insert("method".into(), method.as_str().into());
    out.insert("signed".into(), issued.signed_bytes.clone().into());
    for f in fields {
        if let Some(v) = proof.get(*f) {
            out.insert((*f).into(), v.clone());
        }
    }
    serde_json::value::to_raw_value(&out).ok()
}

/// Names what is wrong with a frame that did not parse as a client message.
fn classify_bad_frame(text: &str, err: &serde_json::Error) -> (&'static str, String) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (code::BAD_JSON, format!("frame is not valid JSON: {err}"));
    };
    match value.get("type").and_then(|t| t.as_str()) {
        None => (code::BAD_MESSAGE, format!("a message is a JSON object with a \"type\" ({CLIENT_TYPES})")),
        Some(t) if !CLIENT_TYPES.split(", ").any(|k| k == t) => {
            (code::UNKNOWN_TYPE, format!("unknown message type '{t}'; clients send {CLIENT_TYPES}"))
        }
        Some(t) => (code::BAD_MESSAGE, format!("malformed '{t}' message: {err}")),
    }
}

impl Session {
    /// Answers a proven `request {ticket: true}` with a one-time ticket.
    async fn issue_ticket<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        room: &RoomId,
        identity: &Identity,
        method: Method,
        attestation: Option<String>,
    ) {
        let ttl = self.gw.settings.ticket_ttl;
        let Some(ticket) = self.gw.tickets.issue(room, identity, ttl) else {
            return send_error(socket, code::SERVER_FULL, "too many tickets outstanding; try again shortly").await;
        };
        self.audit(room, "ticket-issued", Some(identity.did().to_owned()), Some(method), attestation).await;
        let frame = ServerMessage::Ticket {
            ticket: &ticket,
            room_id: room,
            identity: identity.did(),
            expires_in: ttl.as_secs(),
        };
        send(socket, &frame).await;
    }
}
