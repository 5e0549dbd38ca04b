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
//!
//! Here: the loop, frame limits and dispatch, and the relay. Admission (challenge,
//! proof, ticket) is in `admission`, owners' whitelist changes in `whitelist`,
//! "confirm identity" and peer reports in `reverify`.

mod admission;
mod reverify;
mod sfu;
mod whitelist;

use crate::admission::{Admission, Admitted, Answer, Asks, Caller, Purpose, Slot, Tell};
use crate::challenge::{check_media_key, valid_fingerprint, Vouched};
use crate::gateway::Gateway;
use crate::identity::{parse_key_list, EthAddress, Identity};
use crate::ids::{PeerId, RoomId};
use crate::protocol::{
    code, read_frame, AddedEntry, ClientMessage, EntryError, ErrorCode, PeerInfo, PeerProblem, Request, ServerMessage,
    WhitelistAdd,
};
use crate::rooms::{Kick, Outbound, PeerHandle};
use crate::store::AuditEvent;
use crate::verify::Method;
use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Close codes in the 4000 range are keygate's own; the one each error code ends a
/// connection with is [`ErrorCode::closes_with`]. These are the fallbacks.
const CLOSE_AUTH_TIMEOUT: u16 = 4001;
const CLOSE_SLOW: u16 = 4008;
const CLOSE_RATE: u16 = 4029;
const CLOSE_GOING_AWAY: u16 = 1001;

/// How many frames a connected peer may have queued before it counts as too slow.
const OUTBOUND_QUEUE: usize = 256;
/// Consecutive rate-limited frames after which the connection is closed.
const RATE_STRIKES: u32 = 100;

/// The room a `request` asked for (refusals are logged there), and the name of a
/// room to be created.
struct Requested {
    room: RoomId,
    name: String,
}

/// State of an admitted peer: its seat in a room.
struct Seat {
    room: RoomId,
    peer_id: PeerId,
    identity: Identity,
    method: Method,
    /// The DTLS fingerprint and media key signed at admission, signed again on
    /// re-verification.
    vouched: Vouched,
    rx: mpsc::Receiver<Outbound>,
    kick: watch::Receiver<Option<Kick>>,
    /// The confirmation of identity under way, if any.
    confirming: Option<Confirming>,
    /// When this peer last proved its key: admission, or a confirmed re-verification.
    proved_at: tokio::time::Instant,
    /// How often the room requires a confirmation; follows the room's setting.
    confirm_every: watch::Receiver<Option<std::time::Duration>>,
    /// When the next resume token is due (`None`: this seat cannot resume).
    resume_due: Option<tokio::time::Instant>,
    /// Its Janus session, once it used the room's SFU.
    sfu: Option<crate::sfu::relay::SfuSeat>,
}

impl Seat {
    /// What a resume token says of this seat: who, admitted how, proved when.
    fn resumable(&self) -> crate::resume::Resumed {
        let ago = self.proved_at.elapsed();
        let now = std::time::SystemTime::now();
        crate::resume::Resumed {
            identity: self.identity.clone(),
            method: self.method,
            proved_at: now.checked_sub(ago).unwrap_or(now),
        }
    }
}

/// A confirmation of identity ("confirm identity", or the room's schedule) waiting
/// for this peer's answer.
struct Confirming {
    /// Who asked (`None`: a host page or the room's schedule).
    askers: Vec<Option<PeerId>>,
    /// When it fails for want of an answer.
    deadline: tokio::time::Instant,
    /// Whether the room demanded it: failing it ejects the peer.
    required: bool,
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
    /// When an unadmitted socket is closed: `auth_timeout` after connecting, or,
    /// once it has asked for a challenge, the longest challenge lifetime after
    /// connecting (a person signing by hand needs minutes). Nothing pushes it later.
    deadline: tokio::time::Instant,
    connected_at: tokio::time::Instant,
    /// Whose budgets this socket spends (its address; `None` off the network).
    client: Option<crate::limits::ClientKey>,
    /// This socket's place among the unadmitted; given back at admission (or close).
    unadmitted: Option<crate::limits::UnadmittedSlot>,
    remote: Option<String>,
    slot: Slot,
    requested: Option<Requested>,
    admitted: Option<Seat>,
    rate: RateLimit,
    /// When the client last sent anything (a pong included).
    heard: tokio::time::Instant,
    /// When the next ping is due (`None`: pings are off).
    ping_due: Option<tokio::time::Instant>,
}

/// Runs one connection until it closes.
pub async fn run<S, E>(
    mut socket: S,
    gw: Arc<Gateway>,
    remote: Option<std::net::SocketAddr>,
    unadmitted: crate::limits::UnadmittedSlot,
) where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let mut shutdown = gw.shutdown.clone();
    let connected_at = tokio::time::Instant::now();
    let mut s = Session {
        deadline: connected_at + gw.settings.auth_timeout,
        connected_at,
        client: remote.map(|a| crate::limits::ClientKey::of(a.ip())),
        unadmitted: Some(unadmitted),
        rate: RateLimit::new(gw.settings.messages_per_second),
        gw,
        remote: remote.map(crate::server::proxy::remote_text),
        slot: Slot::default(),
        requested: None,
        admitted: None,
        heard: connected_at,
        ping_due: None,
    };
    let ping_every = s.gw.settings.ping_interval;
    if !ping_every.is_zero() {
        s.ping_due = Some(connected_at + ping_every);
    }
    // A socket that ends without a close frame (or with an unusual code) was lost,
    // not left: its peers may keep its media while it comes back (method `resume`).
    let mut leave_reason = "disconnected";
    loop {
        let confirm_by = s.admitted.as_ref().and_then(|a| a.confirming.as_ref()).map(|c| c.deadline);
        // A room may require every peer to prove its key again this often.
        let confirm_due = s
            .admitted
            .as_ref()
            .filter(|a| a.confirming.is_none() && a.kick.borrow().is_none())
            .and_then(|a| a.confirm_every.borrow().map(|every| a.proved_at + every));
        let resume_due = s.admitted.as_ref().and_then(|a| a.resume_due);
        let flow = tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(msg)) => {
                    s.heard = tokio::time::Instant::now();
                    // Closing normally (1000, or 1001 when a page goes away) is
                    // leaving; any other code is a connection lost.
                    if let Message::Close(frame) = &msg {
                        if frame.as_ref().is_none_or(|f| matches!(f.code, 1000 | 1001)) {
                            leave_reason = "left";
                        }
                    }
                    s.on_frame(msg, &mut socket).await
                }
                _ => break,
            },
            _ = tokio::time::sleep_until(s.ping_due.unwrap_or_else(tokio::time::Instant::now)), if s.ping_due.is_some() => {
                s.ping(&mut socket, ping_every).await
            }
            _ = tokio::time::sleep_until(resume_due.unwrap_or_else(tokio::time::Instant::now)), if resume_due.is_some() => {
                s.send_resume(&mut socket).await;
                Flow::Continue
            }
            event = peer_event(&mut s.admitted) => match event {
                PeerEvent::Frame(frame) => {
                    if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
                        break;
                    }
                    Flow::Continue
                }
                PeerEvent::Reverify(requester) => {
                    s.start_reverify(&mut socket, requester, false).await;
                    Flow::Continue
                }
                // The loop recomputes when the next confirmation is due.
                PeerEvent::ScheduleChanged => Flow::Continue,
                PeerEvent::Kicked(kick) => {
                    send_error(&mut socket, kick.code, &kick.message).await;
                    leave_reason = match kick.code {
                        code::REVOKED => "removed",
                        other => other.as_str(),
                    };
                    let reason = match kick.code {
                        code::REVOKED => "revoked",
                        code::NOT_CONFIRMED => "identity not confirmed",
                        code::ROOM_DELETED => "room deleted",
                        code::SHUTTING_DOWN => "server shutting down",
                        _ => "too slow",
                    };
                    Flow::Close(kick.code.closes_with().unwrap_or(CLOSE_SLOW), reason)
                }
            },
            _ = tokio::time::sleep_until(confirm_by.unwrap_or_else(tokio::time::Instant::now)), if confirm_by.is_some() => {
                s.reverify_timed_out(&mut socket).await;
                Flow::Continue
            }
            _ = tokio::time::sleep_until(confirm_due.unwrap_or_else(tokio::time::Instant::now)), if confirm_due.is_some() => {
                s.start_reverify(&mut socket, None, true).await;
                Flow::Continue
            }
            _ = tokio::time::sleep_until(s.deadline), if s.admitted.is_none() => {
                send_error(&mut socket, code::AUTH_TIMEOUT, "not admitted in time; connect again and answer the challenge sooner").await;
                Flow::Close(code::AUTH_TIMEOUT.closes_with().unwrap_or(CLOSE_AUTH_TIMEOUT), "auth timeout")
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
    if let Some(mut a) = s.admitted.take() {
        if let Some(sfu) = a.sfu.take() {
            sfu.close().await;
        }
        s.gw.rooms.leave(&a.room, &a.peer_id, leave_reason).await;
        s.audit(&a.room, "left", Some(a.identity.did().to_owned()), None, Some(leave_reason.to_owned())).await;
    }
}

/// Something for an admitted peer from elsewhere in the server.
enum PeerEvent {
    Frame(Arc<str>),
    Reverify(Option<PeerId>),
    ScheduleChanged,
    Kicked(Kick),
}

/// Waits for the next frame or kick for this peer; never resolves before admission.
async fn peer_event(admitted: &mut Option<Seat>) -> PeerEvent {
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
            Ok(()) = a.confirm_every.changed() => return PeerEvent::ScheduleChanged,
            Some(event) = a.rx.recv() => return match event {
                Outbound::Frame(frame) => PeerEvent::Frame(frame),
                Outbound::Reverify(requester) => PeerEvent::Reverify(requester),
            },
            else => return std::future::pending().await,
        }
    }
}

impl Session {
    /// Pings, unless the client has been silent for two intervals: then it is gone
    /// (a proxy or a network dropped it without a word) and the socket closes.
    async fn ping<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, every: std::time::Duration) -> Flow {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.heard) > every * 2 {
            return Flow::Close(CLOSE_GOING_AWAY, "no answer to pings");
        }
        self.ping_due = Some(now + every);
        if socket.send(Message::Ping(Default::default())).await.is_err() {
            return Flow::Close(CLOSE_GOING_AWAY, "gone");
        }
        Flow::Continue
    }

    /// A fresh resume token for this seat, if it can resume: with it, the token's
    /// lifetime in seconds. Schedules the next one.
    fn resume_offer(&mut self) -> Option<(String, u64)> {
        let window = self.gw.settings.resume_window;
        let seat = self.admitted.as_mut()?;
        seat.vouched.fingerprint.as_ref()?;
        if window.is_zero() {
            return None;
        }
        seat.resume_due = Some(tokio::time::Instant::now() + window / 2);
        let resumable = seat.resumable();
        let token = self.gw.resumes.issue(&seat.room, &resumable, &seat.vouched, std::time::SystemTime::now(), window);
        // Whole seconds, rounded up: a page must not take a live token for spent.
        Some((token, window.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX)))
    }

    async fn send_resume<S: Sink<Message> + Unpin>(&mut self, socket: &mut S) {
        match self.resume_offer() {
            Some((token, expires_in)) => {
                send(socket, &ServerMessage::Resume(crate::protocol::ResumeOffer { token: &token, expires_in })).await
            }
            None => {
                if let Some(seat) = self.admitted.as_mut() {
                    seat.resume_due = None;
                }
            }
        }
    }
}

async fn send_error<S: Sink<Message> + Unpin>(socket: &mut S, code: ErrorCode, message: &str) {
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
        let max = if self.admitted.is_some() {
            self.gw.settings.max_frame_bytes
        } else {
            self.gw.settings.max_unadmitted_frame_bytes.min(self.gw.settings.max_frame_bytes)
        };
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
        let msg = match read_frame(text.as_str()) {
            Ok(m) => m,
            Err((code, message)) => {
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
            ClientMessage::Sfu(request) => self.on_sfu(socket, request).await,
            ClientMessage::Ping => send(socket, &ServerMessage::Pong).await,
        }
        Flow::Continue
    }

    async fn audit(
        &self,
        room: &RoomId,
        event: &'static str,
        identity: Option<crate::identity::Did>,
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
}

#[cfg(test)]
mod tests {
    //! The session loop over in-memory channels instead of a socket: no server, no
    //! port, the same code.
    use super::*;
    use crate::client::p256_key::P256Key;
    use crate::client::ws::Client;
    use crate::limits::{ClientKey, UnadmittedSlot};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    /// One end of an in-memory WebSocket: frames in, frames out.
    struct Pipe {
        from_client: UnboundedReceiver<Message>,
        to_client: UnboundedSender<Message>,
    }

    impl Stream for Pipe {
        type Item = Result<Message, std::convert::Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.from_client.poll_recv(cx).map(|m| m.map(Ok))
        }
    }

    impl Sink<Message> for Pipe {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), ()> {
            self.to_client.send(item).map_err(|_| ())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn next_frame(rx: &mut UnboundedReceiver<Message>) -> Value {
        match rx.recv().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap_or_default(),
            other => Value::String(format!("{other:?}")),
        }
    }

    #[tokio::test]
    async fn a_peer_is_admitted_over_in_memory_channels() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = crate::store::Store::open(&dir.path().join("k.db")).await.unwrap_or_else(|e| unreachable!("{e}"));
        let (_stop, shutdown) = watch::channel(false);
        let gw = Arc::new(
            crate::gateway::Gateway::build(crate::config::Settings::default(), store, shutdown)
                .unwrap_or_else(|e| unreachable!("{e}")),
        );
        let key = P256Key::generate().unwrap_or_else(|e| unreachable!("{e}"));
        let owner = Identity::parse(&key.public_jwk().to_string()).unwrap_or_else(|e| unreachable!("{e}"));
        let room = RoomId::generate();
        let actor = crate::whitelist::Actor::operator();
        gw.whitelist()
            .create_room(&room, "in memory", &owner, actor, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));

        let (to_server, from_client) = unbounded_channel();
        let (to_client, mut from_server) = unbounded_channel();
        let client = ClientKey::of([127, 0, 0, 1].into());
        let slot = UnadmittedSlot::take(&gw.stats.unadmitted, client, 8, 8).unwrap_or_else(|_| unreachable!());
        let session = tokio::spawn(run(Pipe { from_client, to_client }, gw.clone(), None, slot));

        let request = serde_json::json!({"type": "request", "roomId": room});
        let _ = to_server.send(Message::Text(request.to_string().into()));
        let challenge = next_frame(&mut from_server).await;
        assert_eq!(challenge["type"], "challenge", "{challenge}");
        let auth = Client::webcrypto_auth(&challenge, &key).unwrap_or_else(|e| unreachable!("{e}"));
        let _ = to_server.send(Message::Text(auth.to_string().into()));
        let welcome = next_frame(&mut from_server).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["identity"], owner.did().as_str());
        assert_eq!(gw.rooms.peer_count(), 1);

        // Closing the client's side ends the loop, and the peer leaves the room.
        drop(to_server);
        let _ = session.await;
        assert_eq!(gw.rooms.peer_count(), 0);
    }
}
