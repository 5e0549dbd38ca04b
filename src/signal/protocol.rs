//! Protocol v1: every frame that crosses `GET /ws`, in one place.
//!
//! Text frames carry one JSON object each, tagged by `"type"`. Clients send
//! [`ClientMessage`]; the server sends [`ServerMessage`]. `docs/protocol.md` shows
//! each with an example.

use crate::ids::{PeerId, RoomId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    /// Ask for a challenge: to join `roomId`, or to create a room (`create: true`)
    /// owned by whoever then authenticates.
    Request(Request),
    /// Answer the live challenge. `payload` is the challenge payload as received; the
    /// remaining fields are the method's proof.
    Auth {
        method: String,
        payload: Value,
        #[serde(flatten)]
        proof: Map<String, Value>,
    },
    /// Ask another peer of the room to prove its key again ("confirm identity").
    #[serde(rename_all = "camelCase")]
    VerifyPeer {
        peer_id: PeerId,
    },
    /// Relay `data` to peer `to` of the same room.
    Signal {
        to: PeerId,
        data: Value,
    },
    /// Owners only: change the room's whitelist.
    Whitelist {
        #[serde(default)]
        add: Vec<WhitelistAdd>,
        #[serde(default)]
        remove: Vec<String>,
    },
    /// Tell the server (its audit log) that a peer's media did not match what that
    /// peer signed, or that its forwarded proof did not verify in this browser.
    #[serde(rename_all = "camelCase")]
    Report {
        peer_id: PeerId,
        problem: PeerProblem,
    },
    Ping,
}

/// What a peer may report about another.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PeerProblem {
    /// The remote SDP or live DTLS certificate has another fingerprint than the signed one.
    FingerprintMismatch,
    /// The peer signed no fingerprint, so its media is bound to nothing.
    NoFingerprint,
    /// The forwarded admission proof did not verify in the reporter's browser.
    ProofInvalid,
}

impl PeerProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerProblem::FingerprintMismatch => "fingerprint-mismatch",
            PeerProblem::NoFingerprint => "no-fingerprint",
            PeerProblem::ProofInvalid => "proof-invalid",
        }
    }
}

/// Ask for a challenge: to join `roomId`, or to create a room (`create: true`)
/// owned by whoever then authenticates.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub room_id: Option<RoomId>,
    #[serde(default)]
    pub create: bool,
    /// The DTLS certificate fingerprint to vouch for ("sha-256 AB:CD:…").
    pub fingerprint: Option<String>,
    /// Display name of a room being created.
    pub name: Option<String>,
    /// An Ethereum address, to be sent a Sign-In with Ethereum message to sign.
    pub address: Option<String>,
    /// Ask for WebAuthn request options (method `webauthn`) in the challenge.
    #[serde(default)]
    pub webauthn: bool,
    /// Ask for a one-time ticket instead of joining (the native client's flow).
    #[serde(default)]
    pub ticket: bool,
}

/// A key to whitelist: in any accepted format, optionally labelled. One entry may
/// be a whole authorized_keys or allowed_signers file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WhitelistAdd {
    Key(String),
    Labelled {
        key: String,
        #[serde(default)]
        label: String,
    },
}

/// The message types a client may send, for the error that names them.
pub const CLIENT_TYPES: &str = "request, auth, signal, verify-peer, whitelist, report, ping";

/// A peer as others see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The normalized identity (DID).
    pub identity: String,
    /// `SHA256:…` of the identity, for people to compare.
    pub key_fingerprint: String,
    pub label: String,
    pub method: &'static str,
    /// When the server admitted this peer (RFC 3339).
    pub admitted_at: String,
    /// When this peer last proved its key again on request (`verify-peer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<String>,
    /// The DTLS certificate fingerprint this peer signed, if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The admission proof, for methods a browser can check itself (webcrypto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Box<RawValue>>,
}

/// A whitelist entry as reported back to an owner.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedEntry {
    pub identity: String,
    pub key_fingerprint: String,
    pub label: String,
}

/// A whitelist input that could not be used, and why.
#[derive(Debug, Serialize)]
pub struct EntryError {
    /// Index of the entry in `add` or `remove`.
    pub entry: usize,
    /// 1-based line within the entry, for multi-line input.
    pub line: usize,
    pub error: String,
}

/// What a person needs to answer a challenge with OpenSSH alone.
#[derive(Debug, Serialize)]
pub struct SshHint {
    /// The SSHSIG namespace to sign in (`-n`).
    pub namespace: &'static str,
    /// A ready-to-run command that signs the exact challenge text. The text travels
    /// as base64, so no shell quoting can change a byte of it.
    pub command: String,
}

impl SshHint {
    pub fn for_text(signed: &str) -> Self {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(signed);
        let ns = crate::verify::SSH_NAMESPACE;
        SshHint {
            namespace: ns,
            command: format!("printf %s '{b64}' | base64 -d | ssh-keygen -Y sign -n {ns} -f ~/.ssh/id_ed25519"),
        }
    }
}

/// A challenge as a client receives it: over the socket (`challenge`) and over
/// HTTP (sign-in, invites) alike.
#[derive(Debug, Serialize)]
pub struct ChallengeOffer<'a> {
    /// Exactly the bytes to sign (`JSON.stringify` of this object gives them back).
    pub payload: &'a RawValue,
    pub methods: Vec<&'static str>,
    /// How to answer with method `ssh`, for people with only OpenSSH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshHint>,
    /// The Sign-In with Ethereum message to sign (method `eth`), when the
    /// request named an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siwe: Option<&'a str>,
    /// `{"publicKey": …}` for `navigator.credentials.get`, when requested. Its
    /// challenge is the payload text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webauthn: Option<&'a Value>,
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    Challenge(ChallengeOffer<'a>),
    #[serde(rename_all = "camelCase")]
    Welcome {
        peer_id: &'a PeerId,
        room_id: &'a RoomId,
        identity: &'a str,
        key_fingerprint: String,
        /// Whether this peer may change the whitelist.
        owner: bool,
        /// Whether this admission created the room.
        created: bool,
        peers: Vec<PeerInfo>,
        ice_servers: Vec<Value>,
    },
    PeerJoined(&'a PeerInfo),
    #[serde(rename_all = "camelCase")]
    PeerLeft {
        peer_id: &'a PeerId,
        reason: &'a str,
    },
    Signal {
        from: &'a PeerId,
        data: &'a Value,
    },
    WhitelistUpdated {
        added: Vec<AddedEntry>,
        removed: Vec<String>,
        errors: Vec<EntryError>,
    },
    /// The peer proved its key again, just now.
    #[serde(rename_all = "camelCase")]
    PeerVerified {
        peer_id: &'a PeerId,
        identity: &'a str,
        method: &'static str,
        at: &'a str,
    },
    /// The peer did not prove its key again: `reason` is `"timeout"` (no answer
    /// within the challenge lifetime) or `"failed"` (the details are in the audit log).
    #[serde(rename_all = "camelCase")]
    PeerVerificationFailed {
        peer_id: &'a PeerId,
        reason: &'static str,
    },
    /// A one-time ticket to join the room from a browser (`auth` method `ticket`).
    #[serde(rename_all = "camelCase")]
    Ticket {
        ticket: &'a str,
        room_id: &'a RoomId,
        identity: &'a str,
        expires_in: u64,
    },
    Pong,
    Error {
        code: &'a str,
        message: &'a str,
    },
}

impl ServerMessage<'_> {
    /// The frame text. Serializing these types cannot fail.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Stable error codes. Clients switch on these; messages are for people.
pub mod code {
    pub const BAD_JSON: &str = "bad-json";
    pub const UNKNOWN_TYPE: &str = "unknown-type";
    pub const BAD_MESSAGE: &str = "bad-message";
    pub const FRAME_TOO_LARGE: &str = "frame-too-large";
    pub const RATE_LIMITED: &str = "rate-limited";
    pub const SERVER_FULL: &str = "server-full";
    pub const AUTH_TIMEOUT: &str = "auth-timeout";
    pub const ROOM_NOT_FOUND: &str = "room-not-found";
    pub const ROOM_FULL: &str = "room-full";
    pub const NO_CHALLENGE: &str = "no-challenge";
    pub const UNSUPPORTED_METHOD: &str = "unsupported-method";
    pub const PRIVATE_KEY: &str = "private-key";
    pub const BAD_PROOF: &str = "bad-proof";
    pub const NOT_ADMITTED: &str = "not-admitted";
    pub const ALREADY_ADMITTED: &str = "already-admitted";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const NOT_OWNER: &str = "not-owner";
    pub const NO_SUCH_PEER: &str = "no-such-peer";
    pub const REVOKED: &str = "revoked";
    /// The room requires periodic confirmation of identity and this peer did not give it.
    pub const NOT_CONFIRMED: &str = "not-confirmed";
    pub const SLOW_CONSUMER: &str = "slow-consumer";
    pub const SHUTTING_DOWN: &str = "shutting-down";
    pub const INTERNAL: &str = "internal";
}
