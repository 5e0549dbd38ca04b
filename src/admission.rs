//! Admission: the one proof pipeline. The socket (joining, tickets, "confirm
//! identity"), HTTP sign-in and invites all issue and redeem challenges here, so
//! freshness, whitelist-before-crypto, the policies (user verification, PIV
//! requirements, SSH namespaces, sign counters) and what a client may be told of a
//! refusal are decided once.
//!
//! ```text
//!  issue(purpose, asks) ──▶ Issued { challenge bytes, SIWE text?, WebAuthn ceremony?, methods }
//!      │  offer(): what the client is sent (the socket's `challenge` frame, HTTP JSON)
//!      ▼  kept by the caller: a socket's Slot; over HTTP, sealed into the challenge id
//!  redeem(source, answer, caller)
//!      method accepted? ─▶ take (single use) ─▶ payload and freshness ─▶ claim (parse only)
//!      ─▶ whitelist and purpose ─▶ signature ─▶ policies ─▶ sign counters
//!      ──▶ Admitted { identity, method, label, owner, … }
//!        | Refused { reason: audit log only, tell: what the client may know }
//! ```
//!
//! What the caller does with an admission (join the room, hand out a ticket, start
//! a session cookie, whitelist an invitee) stays with the caller.

use crate::challenge::{Freshness, IssuedChallenge, Refusal, Vouched, SIGN_IN_ROOM};
use crate::gateway::Gateway;
use crate::identity::{Did, EthAddress, Identity};
use crate::ids::RoomId;
use crate::limits::ClientKey;
use crate::protocol::{ChallengeOffer, SshHint};
use crate::store::AuditEvent;
use crate::verify::siwe::{ForChallenge, SiweMessage};
use crate::verify::webauthn::Ceremony;
use crate::verify::{Challenge, Claim, Evidence, Method, VerifyError, SSH_NAMESPACE};
use chrono::Utc;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a proof is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Joining `room`, creating it (`create`), or obtaining a one-time ticket for it
    /// (`ticket`, the native client).
    Join { room: RoomId, create: bool, ticket: bool },
    /// An admitted peer proves its key again mid-call.
    Reverify { room: RoomId, identity: Identity, admitted_with: Method },
    /// Signing in to the host pages.
    SignIn,
    /// Proving a key through an invite to `room`, to be whitelisted.
    Enrol { room: RoomId },
}

impl Purpose {
    /// The room the proof is for, if any.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            Purpose::Join { room, .. } | Purpose::Reverify { room, .. } | Purpose::Enrol { room } => Some(room),
            Purpose::SignIn => None,
        }
    }

    /// What the proof was for, in a log line.
    pub fn kind(&self) -> &'static str {
        match self {
            Purpose::Join { create: true, .. } => "create",
            Purpose::Join { ticket: true, .. } => "ticket",
            Purpose::Join { .. } => "join",
            Purpose::Reverify { .. } => "confirm",
            Purpose::SignIn => "sign-in",
            Purpose::Enrol { .. } => "enrol",
        }
    }

    /// The payload's `purpose` field: proofs for one purpose never pass for another.
    fn payload_label(&self) -> Option<&'static str> {
        match self {
            Purpose::Join { .. } | Purpose::Enrol { .. } => None,
            Purpose::Reverify { .. } => Some("reverify"),
            Purpose::SignIn => Some("sign-in"),
        }
    }
}

/// What the client asked to have built with its challenge.
#[derive(Clone, Debug, Default)]
pub struct Asks {
    /// The DTLS fingerprint and media key to vouch for.
    pub vouched: Vouched,
    /// A wallet address: a Sign-In with Ethereum message is built for it.
    pub address: Option<EthAddress>,
    /// WebAuthn options offering the room's registered credentials.
    pub webauthn: bool,
}

/// The WebAuthn half of a challenge.
#[derive(Debug)]
enum Passkey {
    Absent,
    /// The options the browser is sent: for a small room, its members' credentials
    /// as a hint for authenticators that keep none (the browser adds those it
    /// registered itself); otherwise none, and the browser offers a discoverable
    /// one. Whatever it answers with, the ceremony is built for the credential the
    /// answer names (looked up by its id), so no list of credentials is ever
    /// assembled to check an answer, and a room's list may hold any number.
    Offered {
        options: Value,
        require_uv: bool,
    },
}

/// A challenge as issued, with what was built beside it. Kept by the caller until
/// it is answered.
#[derive(Debug)]
pub struct Issued {
    pub purpose: Purpose,
    pub challenge: IssuedChallenge,
    siwe: Option<String>,
    passkey: Passkey,
    methods: Vec<Method>,
    by_hand: bool,
}

impl Issued {
    /// What the client is sent: the payload to sign and how to answer it.
    pub fn offer(&self) -> ChallengeOffer<'_> {
        let webauthn = match &self.passkey {
            Passkey::Absent => None,
            Passkey::Offered { options, .. } => Some(options),
        };
        ChallengeOffer {
            payload: &self.challenge.payload,
            methods: self.methods.iter().map(|m| m.as_str()).collect(),
            ssh: self.methods.contains(&Method::Ssh).then(|| SshHint::for_text(self.challenge.signed_bytes())),
            siwe: self.siwe.as_deref(),
            webauthn,
        }
    }

    /// Whether a person may answer it by hand (copying a command, pasting the
    /// result), so it must stay answerable for minutes.
    pub fn by_hand(&self) -> bool {
        self.by_hand
    }

    /// How long an answer is awaited: the challenge's lifetime.
    pub fn lifetime(&self, settings: &crate::config::Settings) -> Duration {
        if self.by_hand {
            settings.manual_freshness.max(settings.freshness_past)
        } else {
            settings.freshness_past
        }
    }
}

/// An answer to a challenge: the method, the payload as the client returned it, and
/// the method's proof fields (taken, not copied: a proof may be a few KiB).
pub struct Answer<'a> {
    pub method: &'a str,
    pub payload: &'a Value,
    pub proof: Map<String, Value>,
}

/// Who is answering, for budgets and the audit log.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub client: Option<ClientKey>,
    pub remote: Option<String>,
    /// Where a refusal is logged when no issued challenge names a room (a socket's
    /// requested room).
    pub room: Option<RoomId>,
}

/// Where issued challenges wait for their answer. Taking one is single use,
/// whatever follows.
pub trait Source {
    fn take(&mut self, payload: &Value) -> Result<Issued, Refusal>;
}

/// A socket's challenge: at most one live, the newest; spent nonces remembered so
/// that a replay on the same connection is named as such.
#[derive(Default)]
pub struct Slot {
    live: Option<Issued>,
    spent: VecDeque<String>,
}

impl Slot {
    /// Replaces any live challenge: only the newest one can be answered.
    pub fn put(&mut self, issued: Issued) {
        if let Some(old) = self.live.replace(issued) {
            self.remember(old.challenge.nonce);
        }
    }

    /// Withdraws the live challenge.
    pub fn clear(&mut self) {
        if let Some(old) = self.live.take() {
            self.remember(old.challenge.nonce);
        }
    }

    fn remember(&mut self, nonce: String) {
        if self.spent.len() == 4 {
            self.spent.pop_front();
        }
        self.spent.push_back(nonce);
    }
}

impl Source for Slot {
    fn take(&mut self, payload: &Value) -> Result<Issued, Refusal> {
        let nonce = payload.get("nonce").and_then(|n| n.as_str()).unwrap_or("");
        if self.spent.iter().any(|s| s == nonce) {
            return Err(Refusal::Replay);
        }
        let live = self.live.take().ok_or(Refusal::NoChallenge)?;
        self.remember(live.challenge.nonce.clone());
        Ok(live)
    }
}

/// Challenges issued over HTTP (sign-in, invites). A challenge's state travels
/// with the client, sealed into its id ([`crate::sealed`]): any server of the
/// service takes the answer (a load balancer need not stick), none keeps anything
/// until then, and each is taken once in the whole service.
pub struct Pending(crate::sealed::Sealer);

/// The longest challenge id read: what this server seals is about 1–2 KiB.
const MAX_SEALED: usize = 8 * 1024;

/// What a sealed HTTP challenge carries: what answering it needs, not the options
/// the client was sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    /// The invite's room when enrolling; none when signing in.
    enrol: Option<RoomId>,
    room: RoomId,
    nonce: String,
    issued_at: String,
    payload: String,
    #[serde(default)]
    vouched: Vouched,
    siwe: Option<String>,
    /// The passkey ceremony's user-verification requirement, when one was offered.
    passkey_uv: Option<bool>,
    methods: Vec<Method>,
    by_hand: bool,
}

impl Pending {
    /// Challenges sealed under `secret` (kept in the database: see
    /// [`crate::store::Store::server_secret`]).
    pub fn new(secret: &[u8]) -> Self {
        Pending(crate::sealed::Sealer::new("challenge", secret))
    }

    /// With a key of its own, for a gateway without a database key (tests, fuzzing).
    pub fn ephemeral() -> Self {
        Pending(crate::sealed::Sealer::ephemeral("challenge"))
    }

    /// Seals `issued` (a sign-in or an invite's challenge) for `ttl`; returns its id.
    pub fn put(&self, issued: &Issued, ttl: Duration) -> String {
        let enrol = match &issued.purpose {
            Purpose::Enrol { room } => Some(room.clone()),
            _ => None,
        };
        let c = &issued.challenge;
        let sealed = Sealed {
            enrol,
            room: c.room.clone(),
            nonce: c.nonce.clone(),
            issued_at: c.issued_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            payload: c.signed_bytes().to_owned(),
            vouched: c.vouched.clone(),
            siwe: issued.siwe.clone(),
            passkey_uv: match issued.passkey {
                Passkey::Absent => None,
                Passkey::Offered { require_uv, .. } => Some(require_uv),
            },
            methods: issued.methods.clone(),
            by_hand: issued.by_hand,
        };
        self.0.seal(&sealed, ttl)
    }

    /// The challenge `id` seals, if this service sealed it, it has not expired, it
    /// was not taken before (anywhere), and it was issued for a purpose `wanted`
    /// accepts. Whatever follows, it is taken.
    pub async fn take(
        &self,
        id: &str,
        wanted: fn(&Purpose) -> bool,
        store: &crate::store::Store,
    ) -> Result<Issued, Refusal> {
        // Unknown, expired or used: over HTTP, the answer is to start again.
        let sealed: Sealed = self.0.open_once(id, MAX_SEALED, store).await.map_err(|_| Refusal::NoChallenge)?;
        let purpose = match sealed.enrol {
            Some(room) => Purpose::Enrol { room },
            None => Purpose::SignIn,
        };
        if !wanted(&purpose) {
            return Err(Refusal::WrongRoom);
        }
        let payload = RawValue::from_string(sealed.payload).map_err(|_| Refusal::NoChallenge)?;
        let issued_at = chrono::DateTime::parse_from_rfc3339(&sealed.issued_at)
            .map_err(|_| Refusal::NoChallenge)?
            .with_timezone(&Utc);
        let challenge =
            IssuedChallenge { room: sealed.room, nonce: sealed.nonce, issued_at, payload, vouched: sealed.vouched };
        let passkey = match sealed.passkey_uv {
            None => Passkey::Absent,
            Some(require_uv) => Passkey::Offered { options: Value::Null, require_uv },
        };
        Ok(Issued { purpose, challenge, siwe: sealed.siwe, passkey, methods: sealed.methods, by_hand: sealed.by_hand })
    }
}

/// An HTTP challenge already taken from its seal (or why it could not be).
pub struct Taken(pub Option<Result<Issued, Refusal>>);

impl Source for Taken {
    fn take(&mut self, _payload: &Value) -> Result<Issued, Refusal> {
        self.0.take().unwrap_or(Err(Refusal::NoChallenge))
    }
}

/// A proof that got in.
#[derive(Debug)]
pub struct Admitted {
    pub purpose: Purpose,
    pub identity: Identity,
    pub method: Method,
    /// The whitelist entry's label (joining), or "owner" (creating).
    pub label: String,
    /// Whether the identity owns the room (joining), or will (creating).
    pub owner: bool,
    /// What the whitelist check saw, for [`crate::rooms::Rooms::join`].
    pub changes: u64,
    /// What the proof showed beyond its signature (a YubiKey attestation), for the log.
    pub detail: Option<String>,
    /// The proof as other peers receive it, for methods they can check themselves.
    pub forwarded: Option<Box<RawValue>>,
    /// The DTLS fingerprint and media key the proof signed.
    pub vouched: Vouched,
    /// For a resume: when the key was last proved (otherwise now).
    pub proved_at: Option<std::time::SystemTime>,
}

/// What a client may be told of a refusal. Everything else about it is in `reason`,
/// for the audit log only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tell {
    /// Only that it was not admitted: whether a key is known, a signature valid or
    /// a nonce spent is never said.
    NotAdmitted,
    /// The challenge is unknown, used or expired: ask for a new one.
    StartAgain,
    /// The proof's form is wrong, whoever made it; the message says how to fix it.
    BadProof(String),
    /// The proof carries a private key.
    PrivateKey,
    /// The method is not accepted here (the challenge stays answerable).
    Unsupported(String),
    /// The key is on the list and its signature is good, but a rule of its entry or
    /// of the room refuses it: the message names the rule. Only the key's holder can
    /// be told this (it comes after the signature), so it reveals nothing to others.
    Restricted(String),
    /// The server failed; try again.
    Internal(&'static str),
}

/// A proof that did not get in.
#[derive(Debug)]
pub struct Refused {
    /// For the audit log, never for the client.
    pub reason: String,
    pub tell: Tell,
    /// The identity the proof claimed, once it was parsed.
    pub identity: Option<Did>,
}

impl Refused {
    fn new(reason: impl Into<String>, tell: Tell) -> Self {
        Refused { reason: reason.into(), tell, identity: None }
    }

    fn internal(what: &'static str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{what} failed");
        Refused::new(format!("{what} failed"), Tell::Internal("the server could not check the proof; try again"))
    }

    fn quiet(reason: impl Into<String>) -> Self {
        Refused::new(reason, Tell::NotAdmitted)
    }

    /// A rule refused a proven key: the holder is told which, the audit log too.
    fn restricted(reason: impl Into<String>, advice: &str) -> Self {
        let reason = reason.into();
        let tell = Tell::Restricted(format!("{reason}; {advice}"));
        Refused::new(reason, tell)
    }
}

impl From<VerifyError> for Refused {
    fn from(e: VerifyError) -> Self {
        let tell = match &e {
            VerifyError::PrivateKey => Tell::PrivateKey,
            other => other.client_message().map_or(Tell::NotAdmitted, Tell::BadProof),
        };
        let reason = match e {
            VerifyError::PrivateKey => "client sent a private key".to_owned(),
            other => other.to_string(),
        };
        Refused::new(reason, tell)
    }
}

/// Why a challenge could not be issued (said to the client as it is).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IssueError(pub &'static str);

/// The pipeline over one server's state.
pub struct Admission<'g> {
    gw: &'g Gateway,
}

impl<'g> Admission<'g> {
    pub fn new(gw: &'g Gateway) -> Self {
        Admission { gw }
    }

    /// The methods that may answer a challenge for `purpose`.
    fn methods(&self, purpose: &Purpose) -> Vec<Method> {
        let proofs = self.gw.verifiers.methods();
        match purpose {
            Purpose::Join { create: false, ticket: false, .. } => {
                let mut all = proofs;
                all.extend([Method::Ticket, Method::Resume]);
                all.sort_by_key(|m| m.as_str());
                all
            }
            Purpose::Join { .. } | Purpose::SignIn | Purpose::Enrol { .. } => proofs,
            Purpose::Reverify { admitted_with, .. } => {
                answering_methods(*admitted_with).into_iter().filter(|m| proofs.contains(m)).collect()
            }
        }
    }

    /// Issues a challenge for `purpose`, with what `asks` wants built beside it.
    pub async fn issue(&self, purpose: Purpose, asks: Asks) -> Result<Issued, IssueError> {
        let gw = self.gw;
        let sign_in = || RoomId::parse(SIGN_IN_ROOM).unwrap_or_else(|_| RoomId::generate());
        let room = purpose.room().cloned().unwrap_or_else(sign_in);
        let challenge =
            IssuedChallenge::issue_for(room.clone(), &gw.origin, asks.vouched, purpose.payload_label(), Utc::now());
        let siwe = asks.address.map(|address| {
            let statement = match purpose {
                Purpose::SignIn => "Sign in to keygate.".to_owned(),
                _ => format!("Join keygate room {room}."),
            };
            let c = &challenge;
            let facts = ForChallenge {
                origin: &gw.origin,
                statement,
                request_id: c.room.as_str(),
                nonce: &c.nonce,
                issued_at: c.issued_at,
                lifetime: gw.settings.freshness_past,
                vouched: &c.vouched,
                chain_id: gw.settings.eth_chain_id,
            };
            SiweMessage::for_challenge(address, facts).to_string()
        });
        let methods = self.methods(&purpose);
        let passkey = if !methods.contains(&Method::Webauthn) {
            Passkey::Absent
        } else {
            match &purpose {
                Purpose::Join { room, create: false, .. } | Purpose::Reverify { room, .. } if asks.webauthn => {
                    self.room_offer(room, challenge.signed_bytes()).await?
                }
                // Creating a room, signing in, enrolling: no list to hint from; the
                // authenticator offers a discoverable credential.
                Purpose::Join { create: true, .. } if asks.webauthn => self.discoverable(challenge.signed_bytes()),
                Purpose::SignIn | Purpose::Enrol { .. } => self.discoverable(challenge.signed_bytes()),
                _ => Passkey::Absent,
            }
        };
        let by_hand = methods.iter().any(|m| gw.verifiers.get(*m).is_some_and(|v| v.by_hand()));
        Ok(Issued { purpose, challenge, siwe, passkey, methods, by_hand })
    }

    /// A WebAuthn challenge naming no credential: the authenticator offers its
    /// discoverable ones, and the answer names which.
    fn discoverable(&self, signed: &str) -> Passkey {
        match self.gw.passkeys.challenge(signed, Vec::new(), false) {
            Ok(ceremony) => Passkey::Offered { options: ceremony.options, require_uv: false },
            Err(_) => Passkey::Absent,
        }
    }

    /// The WebAuthn half of a challenge for `room`: the room's user-verification
    /// policy, and a few of its members' credentials as a hint.
    async fn room_offer(&self, room: &RoomId, signed: &str) -> Result<Passkey, IssueError> {
        let stored = self.gw.store.room_credentials(room).await.map_err(|e| {
            tracing::error!(error = %e, "credential lookup failed");
            IssueError("the server could not look up passkeys; try again")
        })?;
        let credentials = stored
            .into_iter()
            .filter_map(|c| match crate::verify::webauthn::load_credential(&c) {
                Ok(loaded) => Some(loaded),
                Err(e) => {
                    tracing::warn!(credential = %c.id, error = %e, "a stored credential was skipped");
                    None
                }
            })
            .collect();
        let require_uv = self.gw.rooms.requires_user_verification(room);
        let ceremony = self.gw.passkeys.challenge(signed, credentials, require_uv).map_err(|e| {
            tracing::error!(error = %e, "starting a WebAuthn ceremony failed");
            IssueError("the server could not start a passkey challenge; try again")
        })?;
        Ok(Passkey::Offered { options: ceremony.options, require_uv })
    }

    /// A passkey answer names its credential; the ceremony is built for that one,
    /// under the policy the challenge was issued with.
    async fn named_ceremony(&self, signed: &str, proof: &Value, require_uv: bool) -> Result<Ceremony, Refused> {
        let raw_id = proof.get("credential").and_then(|c| c["rawId"].as_str()).unwrap_or_default();
        let stored = self
            .gw
            .store
            .credential(raw_id.trim_end_matches('='))
            .await
            .map_err(|e| Refused::internal("credential lookup", e))?
            .ok_or_else(|| Refused::quiet("unknown key (a passkey not registered here)"))?;
        let (credential, identity) = crate::verify::webauthn::load_credential(&stored).map_err(|e| {
            tracing::warn!(credential = %stored.id, error = %e, "a stored credential was refused");
            Refused::quiet(format!("unusable stored credential: {e}"))
        })?;
        self.gw
            .passkeys
            .challenge(signed, vec![(credential, identity)], require_uv)
            .map_err(|e| Refused::internal("starting a WebAuthn ceremony", e))
    }

    /// The freshness window for an answer by `method` to a challenge for `purpose`.
    fn window(&self, purpose: &Purpose, by_hand: bool) -> Freshness {
        let settings = &self.gw.settings;
        let past = if by_hand {
            settings.manual_freshness
        } else {
            purpose.room().and_then(|r| self.gw.rooms.freshness(r)).unwrap_or(settings.freshness_past)
        };
        Freshness { past, future: settings.freshness_future }
    }

    /// Redeems an answer: takes its challenge from `source`, checks it in DESIGN's
    /// order, and records a refusal for a room in its audit log (within the
    /// address's budget of rows). Confirmations are logged by the caller, which
    /// knows who asked.
    pub async fn redeem(
        &self,
        source: &mut (dyn Source + Send),
        answer: Answer<'_>,
        caller: &Caller,
    ) -> Result<Admitted, Refused> {
        let started = std::time::Instant::now();
        // Parsed once: the decision and the metrics' label both use it.
        let parsed = serde_json::from_value::<Method>(Value::String(answer.method.to_owned())).ok();
        let label = parsed.map_or("other", Method::as_str);
        let outcome = self.decide(source, parsed, answer, caller).await;
        let took = started.elapsed();
        let ms = took.as_secs_f64() * 1000.0;
        // One line per decision, for operators: who, how, where, why; never a proof,
        // ticket or token.
        match &outcome {
            Ok(a) => {
                self.gw.metrics.proof(label, crate::metrics::Outcome::Admitted, took);
                let room = a.purpose.room().or(caller.room.as_ref()).map_or("-", RoomId::as_str);
                tracing::info!(
                    event = "admitted",
                    purpose = a.purpose.kind(),
                    room,
                    identity = %a.identity.did(),
                    method = a.method.as_str(),
                    detail = a.detail.as_deref().unwrap_or(""),
                    remote = caller.remote.as_deref().unwrap_or("-"),
                    duration_ms = ms,
                    "proof accepted"
                );
            }
            Err(r) => {
                let internal = matches!(r.tell, Tell::Internal(_));
                let o = if internal { crate::metrics::Outcome::Error } else { crate::metrics::Outcome::Refused };
                self.gw.metrics.proof(label, o, took);
                tracing::info!(
                    event = "refused",
                    room = caller.room.as_ref().map_or("-", RoomId::as_str),
                    identity = r.identity.as_ref().map_or("-", |d| d.as_str()),
                    method = label,
                    reason = %r.reason,
                    remote = caller.remote.as_deref().unwrap_or("-"),
                    duration_ms = ms,
                    "proof refused"
                );
            }
        }
        outcome
    }

    async fn decide(
        &self,
        source: &mut (dyn Source + Send),
        parsed: Option<Method>,
        answer: Answer<'_>,
        caller: &Caller,
    ) -> Result<Admitted, Refused> {
        let method =
            parsed.filter(|m| matches!(m, Method::Ticket | Method::Resume) || self.gw.verifiers.get(*m).is_some());
        let Some(method) = method else {
            let accepted: Vec<&str> = self.gw.methods().into_iter().map(Method::as_str).collect();
            let message =
                format!("method '{}' is not accepted here; use one of: {}", answer.method, accepted.join(", "));
            return Err(Refused::new("unsupported method", Tell::Unsupported(message)));
        };
        let issued = match source.take(answer.payload) {
            Ok(issued) => issued,
            Err(refusal) => {
                let tell = if refusal == Refusal::NoChallenge { Tell::StartAgain } else { Tell::NotAdmitted };
                let refused = Refused::new(refusal.reason(), tell);
                if let Some(room) = &caller.room {
                    self.record_refusal(room, None, method, &refused.reason, caller).await;
                }
                return Err(refused);
            }
        };
        let room = issued.purpose.room().cloned().or_else(|| caller.room.clone());
        let logged_by_caller = matches!(issued.purpose, Purpose::Reverify { .. });
        let outcome = self.check(issued, method, answer).await;
        if let (Err(refused), Some(room), false) = (&outcome, &room, logged_by_caller) {
            if !matches!(refused.tell, Tell::Internal(_)) {
                self.record_refusal(room, refused.identity.clone(), method, &refused.reason, caller).await;
            }
        }
        outcome
    }

    /// Everything after taking the challenge.
    async fn check(&self, issued: Issued, method: Method, answer: Answer<'_>) -> Result<Admitted, Refused> {
        let gw = self.gw;
        if !issued.methods.contains(&method) {
            let reason = match &issued.purpose {
                Purpose::Reverify { admitted_with, .. } => {
                    format!("answered with {}, admitted with {}", method.as_str(), admitted_with.as_str())
                }
                _ => format!("method {} cannot answer this challenge", method.as_str()),
            };
            return Err(Refused::quiet(reason));
        }
        let by_hand = gw.verifiers.get(method).is_some_and(|v| v.by_hand());
        let window = self.window(&issued.purpose, by_hand);
        issued.challenge.accept(answer.payload, Utc::now(), window).map_err(|r| Refused::quiet(r.reason()))?;
        let proof = Value::Object(answer.proof);
        let named;
        let webauthn = match &issued.passkey {
            Passkey::Offered { require_uv, .. } if method == Method::Webauthn => {
                named = self.named_ceremony(issued.challenge.signed_bytes(), &proof, *require_uv).await?;
                Some(&named)
            }
            _ => None,
        };
        let challenge =
            Challenge { payload: issued.challenge.signed_bytes().as_bytes(), siwe: issued.siwe.as_deref(), webauthn };
        let (claim, resumed) = match method {
            Method::Ticket => (self.ticket_claim(&proof, &issued).await?, None),
            Method::Resume => {
                let (claim, resumed) = self.resume_claim(&proof, &issued).await?;
                (claim, Some(resumed))
            }
            _ => {
                let verifier = gw.verifiers.get(method).ok_or_else(|| Refused::quiet("method no longer accepted"))?;
                (verifier.claim(&proof, &challenge)?, None)
            }
        };
        let did = claim.identity.did().to_owned();
        self.check_claim(issued, method, claim, proof, resumed).await.map_err(|r| Refused { identity: Some(did), ..r })
    }

    /// The claim against the purpose (the whitelist), then its signature, the
    /// policies and the counters.
    async fn check_claim(
        &self,
        issued: Issued,
        method: Method,
        claim: Claim,
        proof: Value,
        resumed: Option<crate::resume::Resumed>,
    ) -> Result<Admitted, Refused> {
        let gw = self.gw;
        let identity = claim.identity.clone();
        let did = identity.did();
        // A resume continues an admission: the whitelist is asked again under the
        // method that admission used; its policies were met by that admission's proof.
        let method = resumed.as_ref().map_or(method, |r| r.method);
        // The whitelist is consulted before the signature: an unknown key costs no crypto.
        let mut entry = self.entry(&issued.purpose, &identity, method).await?;
        if resumed.is_some() {
            entry.require_uv = false;
            entry.piv = None;
        }
        // A resume's claim checks nothing but its MAC, already done: no signature.
        let evidence = if resumed.is_some() {
            claim.check()?
        } else {
            gw.stats.signature_checks.fetch_add(1, Ordering::Relaxed);
            let checking = std::time::Instant::now();
            let evidence = claim.check();
            gw.metrics.signature(method.as_str(), checking.elapsed());
            evidence?
        };
        // Rules are applied to a proven key only, so that saying which one refused
        // tells nothing to someone who merely knows a listed public key.
        if let Some(why) = entry.restriction {
            return Err(Refused::restricted(why, "ask the room's host to change the key's entry"));
        }
        if entry.require_uv && evidence.user_verified == Some(false) {
            return Err(Refused::restricted(
                "the room requires user verification (PIN or biometric); the key only proved presence",
                "set a PIN on the key or use one that verifies you",
            ));
        }
        if let Some(why) = entry.piv.as_ref().and_then(|r| r.unmet(evidence.attestation.as_ref())) {
            return Err(Refused::restricted(
                why,
                "join with an attested YubiKey slot (keygate join --piv) or ask the host",
            ));
        }
        self.advance_counters(did, &evidence).await?;
        if let Some(a) = &evidence.attestation {
            let stored = crate::store::KeyAttestation {
                serial: a.serial,
                firmware: a.firmware.clone(),
                pin_policy: a.pin_policy.map(|p| p.name()),
                touch_policy: a.touch_policy.map(|t| t.name()),
                form_factor: a.form_factor,
                summary: a.to_string(),
            };
            if let Err(e) = gw.store.record_attestation(did, &stored).await {
                // The admission stands; the room page shows the attestation next time.
                tracing::warn!(error = %e, "recording an attestation failed");
            }
        }
        // A resume has no proof to forward: peers keep what they checked before.
        let forwarded = match &issued.purpose {
            Purpose::Join { .. } if resumed.is_none() => {
                let fields = gw.verifiers.get(method).map_or(&[][..], |v| v.forwarded_fields());
                forwarded_proof(method, fields, &issued.challenge, &proof)
            }
            _ => None,
        };
        Ok(Admitted {
            vouched: issued.challenge.vouched.clone(),
            purpose: issued.purpose,
            identity,
            method,
            label: entry.label,
            owner: entry.owner,
            changes: entry.changes,
            detail: match &resumed {
                Some(_) => Some("resumed".to_owned()),
                None => evidence.attestation.as_ref().map(ToString::to_string),
            },
            forwarded,
            proved_at: resumed.map(|r| r.proved_at),
        })
    }

    /// A resume token: this server's word that it admitted the identity with a
    /// method, for this room and DTLS certificate, a short while ago ([`crate::resume`]).
    async fn resume_claim(&self, proof: &Value, issued: &Issued) -> Result<(Claim, crate::resume::Resumed), Refused> {
        let token = proof
            .get("token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Refused::from(VerifyError::Malformed("missing token".into())))?;
        let c = &issued.challenge;
        let (resumed, once) =
            self.gw.resumes.redeem(token, &c.room, &c.vouched, std::time::SystemTime::now()).map_err(Refused::quiet)?;
        // Spent in the store: once in the whole service, and across restarts.
        match self.gw.store.spend(&once.token, &once.expires_at).await {
            Ok(true) => {}
            Ok(false) => return Err(Refused::quiet("resume token already used")),
            Err(e) => return Err(Refused::internal("spending a resume token", e)),
        }
        let claim = Claim::new(resumed.identity.clone(), c.signed_bytes().as_bytes(), |_| Ok(Evidence::default()));
        Ok((claim, resumed))
    }

    /// A ticket: state the service keeps (in the store), taken once, for the
    /// challenge's room. Its proof was the signature that obtained it.
    async fn ticket_claim(&self, proof: &Value, issued: &Issued) -> Result<Claim, Refused> {
        let ticket = proof
            .get("ticket")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Refused::from(VerifyError::Malformed("missing ticket".into())))?;
        let identity =
            crate::tickets::redeem(&self.gw.store, ticket, &issued.challenge.room).await.map_err(Refused::quiet)?;
        Ok(Claim::new(identity, issued.challenge.signed_bytes().as_bytes(), |_| Ok(Evidence::default())))
    }

    /// What the purpose allows `identity` (before any signature is checked).
    async fn entry(&self, purpose: &Purpose, identity: &Identity, method: Method) -> Result<Entry, Refused> {
        let did = identity.did();
        match purpose {
            Purpose::Join { create: true, .. } => {
                let creators = &self.gw.settings.room_creators;
                if !creators.is_empty() && !creators.iter().any(|c| c == did.as_str()) {
                    return Err(Refused::quiet("not allowed to create rooms"));
                }
                let changes = self.gw.rooms.changes();
                Ok(Entry { label: "owner".into(), owner: true, changes, ..Entry::default() })
            }
            Purpose::Join { room, .. } => {
                let access = match self.gw.rooms.access(room, did).await {
                    Ok(Some(access)) => access,
                    Ok(None) => return Err(Refused::quiet("room no longer exists")),
                    Err(e) => return Err(Refused::internal("whitelist lookup", e)),
                };
                let Some(allowed) = access.allowed else {
                    return Err(Refused::quiet("unknown key"));
                };
                let restriction = match &allowed.ssh_namespaces {
                    Some(n) if method == Method::Ssh && !n.iter().any(|n| n == SSH_NAMESPACE) => Some(format!(
                        "the key is on the room's list for namespaces=\"{}\" only, not '{SSH_NAMESPACE}'",
                        n.join(",")
                    )),
                    _ => {
                        allowed.valid.refuses(Utc::now()).map(|why| format!("the key's entry on the room's list {why}"))
                    }
                };
                Ok(Entry {
                    label: allowed.label,
                    owner: access.owner,
                    changes: access.changes,
                    require_uv: access.require_user_verification,
                    piv: allowed.piv,
                    restriction,
                })
            }
            Purpose::Reverify { identity: admitted, .. } => {
                if identity != admitted {
                    return Err(Refused::quiet("another key answered"));
                }
                Ok(Entry::default())
            }
            Purpose::SignIn | Purpose::Enrol { .. } => Ok(Entry::default()),
        }
    }

    /// A signature with a counter moves the key's counters on, or is refused.
    async fn advance_counters(&self, did: &Did, evidence: &Evidence) -> Result<(), Refused> {
        let Some(counter) = evidence.counter else { return Ok(()) };
        let credential = evidence.credential_id.as_deref().map(crate::verify::webauthn::credential_id_text);
        match self.gw.store.advance_counters(did, counter, credential.as_deref()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refused::quiet("the sign counter went backwards: the authenticator may be cloned")),
            Err(e) => Err(Refused::internal("counter update", e)),
        }
    }

    /// Counts a refusal and logs it, within the room's budget of rows for this
    /// client address: past it, refusals are counted into the next row (or the
    /// upkeep's summary row) instead of one row each.
    pub async fn record_refusal(
        &self,
        room: &RoomId,
        identity: Option<Did>,
        method: Method,
        reason: &str,
        caller: &Caller,
    ) {
        self.gw.stats.refusals.fetch_add(1, Ordering::Relaxed);
        let held_back = match caller.client {
            Some(client) => match self.gw.refusal_rows.take(room, client) {
                Some(n) => n,
                None => return,
            },
            None => 0,
        };
        let reason = match held_back {
            0 => reason.to_owned(),
            n => format!("{reason} (and {n} earlier refusals from this address, counted but not logged one by one)"),
        };
        let event = AuditEvent {
            room: room.clone(),
            event: "refused",
            identity,
            method: Some(method.as_str()),
            reason: Some(reason),
            remote: caller.remote.clone(),
        };
        self.gw.audit.record(event).await;
    }
}

/// The room's requirements for one identity, as the purpose sets them.
#[derive(Default)]
struct Entry {
    label: String,
    owner: bool,
    /// What the whitelist check saw; see [`crate::rooms::Access::changes`].
    changes: u64,
    require_uv: bool,
    piv: Option<crate::verify::PivRequirement>,
    /// A rule of the entry that refuses the key now (SSH namespaces, validity),
    /// applied once the signature is good.
    restriction: Option<String>,
}

/// The methods a re-verification may be answered with: the admission's own. A
/// ticket was obtained by `keygate join` with an SSH key or a PIV card, so its holder
/// answers with either (pasting what `keygate sign` prints); the identity must match.
fn answering_methods(admitted_with: Method) -> Vec<Method> {
    match admitted_with {
        Method::Ticket => vec![Method::Ssh, Method::Piv],
        // A resume keeps the method it continues; it is never what a seat holds.
        Method::Resume => Vec::new(),
        method => vec![method],
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
    out.insert("signed".into(), issued.signed_bytes().to_owned().into());
    for f in fields {
        if let Some(v) = proof.get(*f) {
            out.insert((*f).into(), v.clone());
        }
    }
    serde_json::value::to_raw_value(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(room: &str) -> Issued {
        let room = RoomId::parse(room).unwrap_or_else(|_| RoomId::generate());
        let challenge = IssuedChallenge::issue(room.clone(), "o", Vouched::default(), Utc::now());
        Issued {
            purpose: Purpose::Join { room, create: false, ticket: false },
            challenge,
            siwe: None,
            passkey: Passkey::Absent,
            methods: vec![Method::Webcrypto],
            by_hand: false,
        }
    }

    #[test]
    fn a_socket_challenge_is_taken_once() {
        let mut slot = Slot::default();
        let c = issued("r1");
        let payload = c.challenge.payload_json();
        slot.put(c);
        assert!(slot.take(&payload).is_ok());
        assert_eq!(slot.take(&payload).err(), Some(Refusal::Replay));
    }

    #[test]
    fn only_the_newest_challenge_is_live() {
        let mut slot = Slot::default();
        let first = issued("r1");
        let old = first.challenge.payload_json();
        assert_eq!(slot.take(&old).err(), Some(Refusal::NoChallenge));
        slot.put(first);
        slot.put(issued("r1"));
        assert_eq!(slot.take(&old).err(), Some(Refusal::Replay));
    }
}
