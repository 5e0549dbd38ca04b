//! Protocol v1: every frame that crosses `GET /ws`, in one place.
//!
//! Text frames carry one JSON object each, tagged by `"type"`. Clients send
//! [`ClientMessage`]; the server sends [`ServerMessage`]. `docs/protocol.md` shows
//! each with an example.

use crate::identity::Did;
use crate::ids::{PeerId, RoomId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What a client may send. (Serialize is for clients and for the round-trip
/// property the fuzzer and property tests check: what a client writes, the server
/// reads back as the same message.)
#[derive(Debug, PartialEq, Serialize, Deserialize)]
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
    /// Media through the room's SFU (Janus): publish this peer's media, subscribe
    /// to another peer's, answer its offer, pass ICE candidates.
    Sfu(SfuRequest),
    Ping,
}

/// What an admitted peer asks of the SFU (`{"type": "sfu", "op": …}`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum SfuRequest {
    /// This peer's media: `jsep` is its SDP offer; the answer comes back.
    Publish { jsep: Value },
    /// Another peer's media: an offer comes back for it.
    #[serde(rename_all = "camelCase")]
    Subscribe { peer_id: PeerId },
    /// The answer to the offer for `peer_id`'s media.
    #[serde(rename_all = "camelCase")]
    Answer { peer_id: PeerId, jsep: Value },
    /// An ICE candidate of this peer's publishing connection, or (with `peerId`)
    /// of its connection receiving that peer.
    #[serde(rename_all = "camelCase")]
    Trickle {
        #[serde(default)]
        peer_id: Option<PeerId>,
        candidate: Value,
    },
}

/// What a peer may report about another.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PeerProblem {
    /// The remote SDP or live DTLS certificate has another fingerprint than the signed one.
    FingerprintMismatch,
    /// The peer signed no fingerprint, so its media is bound to nothing.
    NoFingerprint,
    /// The forwarded admission proof did not verify in the reporter's browser.
    ProofInvalid,
    /// Through the SFU: the media key it handed over does not open with the ECDH key
    /// it signed, so it holds another key than the one its proof names.
    MediaKeyMismatch,
    /// Through the SFU: it signed no ECDH key, so its media cannot be end-to-end encrypted.
    NoMediaKey,
}

impl PeerProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerProblem::FingerprintMismatch => "fingerprint-mismatch",
            PeerProblem::NoFingerprint => "no-fingerprint",
            PeerProblem::ProofInvalid => "proof-invalid",
            PeerProblem::MediaKeyMismatch => "media-key-mismatch",
            PeerProblem::NoMediaKey => "no-media-key",
        }
    }
}

/// Ask for a challenge: to join `roomId`, or to create a room (`create: true`)
/// owned by whoever then authenticates.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub room_id: Option<RoomId>,
    #[serde(default)]
    pub create: bool,
    /// The DTLS certificate fingerprint to vouch for ("sha-256 AB:CD:…").
    pub fingerprint: Option<String>,
    /// The ECDH P-256 public key peers encrypt media keys to (base64url, raw).
    pub media_key: Option<String>,
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
#[derive(Debug, PartialEq, Serialize, Deserialize)]
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
pub const CLIENT_TYPES: &str = "request, auth, signal, verify-peer, whitelist, report, sfu, ping";

/// Reads one client text frame (already bounded in size by the session), or names
/// what is wrong with it: the one parser of `/ws` frames.
pub fn read_frame(text: &str) -> Result<ClientMessage, (ErrorCode, String)> {
    serde_json::from_str::<ClientMessage>(text).map_err(|e| classify_bad_frame(text, &e))
}

/// Names what is wrong with a frame that did not parse as a client message.
fn classify_bad_frame(text: &str, err: &serde_json::Error) -> (ErrorCode, String) {
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

/// A peer as others see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The normalized identity (DID).
    pub identity: Did,
    /// `SHA256:…` of the identity, for people to compare.
    pub key_fingerprint: String,
    pub label: String,
    pub method: &'static str,
    /// When the server admitted this peer (RFC 3339).
    pub admitted_at: String,
    /// When this peer last proved its key again on request (`verify-peer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<String>,
    /// The DTLS certificate fingerprint and media key this peer signed, if it sent them.
    #[serde(flatten)]
    pub vouched: crate::challenge::Vouched,
    /// The admission proof, for methods a browser can check itself (webcrypto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Box<RawValue>>,
}

/// A whitelist entry as reported back to an owner.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedEntry {
    pub identity: Did,
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

/// A resume token and how many seconds it stays valid.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeOffer<'a> {
    pub token: &'a str,
    pub expires_in: u64,
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
        identity: &'a Did,
        key_fingerprint: String,
        /// Whether this peer may change the whitelist.
        owner: bool,
        /// Whether this admission created the room.
        created: bool,
        peers: Vec<PeerInfo>,
        /// How this call carries media: `mesh` (peer to peer) or `sfu` (through the
        /// server's SFU, end-to-end encrypted).
        media: &'static str,
        ice_servers: Vec<Value>,
        /// A token to come back with if this socket drops (method `resume`), when
        /// the server allows resuming and the request signed a DTLS fingerprint.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeOffer<'a>>,
    },
    /// A newer resume token, sent every half `resume_window`; the older ones stay
    /// valid until they expire.
    Resume(ResumeOffer<'a>),
    PeerJoined(&'a PeerInfo),
    /// The call moves to another way of carrying media (an `auto` room's call
    /// reached the server's `sfu_from` peers): `sfu`.
    Media {
        mode: &'static str,
    },
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
        removed: Vec<Did>,
        errors: Vec<EntryError>,
    },
    /// The peer proved its key again, just now.
    #[serde(rename_all = "camelCase")]
    PeerVerified {
        peer_id: &'a PeerId,
        identity: &'a Did,
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
        identity: &'a Did,
        expires_in: u64,
    },
    Pong,
    Error {
        code: ErrorCode,
        message: &'a str,
    },
    /// From the SFU: `{"op": "answer"|"offer"|"feed", …}`.
    Sfu(&'a Value),
}

impl ServerMessage<'_> {
    /// The frame text. Serializing these types cannot fail.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Stable error codes. Clients switch on these; messages are for people.
/// Every `error` code, stable: clients switch on them. docs/protocol.md's table of
/// error codes is checked against this list by a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    BadMessage,
    FrameTooLarge,
    RateLimited,
    ServerFull,
    AuthTimeout,
    RoomNotFound,
    RoomFull,
    NoChallenge,
    UnsupportedMethod,
    PrivateKey,
    BadProof,
    NotAdmitted,
    Restricted,
    AlreadyAdmitted,
    Unauthenticated,
    NotOwner,
    NoSuchPeer,
    Revoked,
    RoomDeleted,
    NotConfirmed,
    SlowConsumer,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadMessage,
        ErrorCode::FrameTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::ServerFull,
        ErrorCode::AuthTimeout,
        ErrorCode::RoomNotFound,
        ErrorCode::RoomFull,
        ErrorCode::NoChallenge,
        ErrorCode::UnsupportedMethod,
        ErrorCode::PrivateKey,
        ErrorCode::BadProof,
        ErrorCode::NotAdmitted,
        ErrorCode::Restricted,
        ErrorCode::AlreadyAdmitted,
        ErrorCode::Unauthenticated,
        ErrorCode::NotOwner,
        ErrorCode::NoSuchPeer,
        ErrorCode::Revoked,
        ErrorCode::NotConfirmed,
        ErrorCode::RoomDeleted,
        ErrorCode::SlowConsumer,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The code as it appears in the `error` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::FrameTooLarge => "frame-too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::AuthTimeout => "auth-timeout",
            ErrorCode::RoomNotFound => "room-not-found",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::NoChallenge => "no-challenge",
            ErrorCode::UnsupportedMethod => "unsupported-method",
            ErrorCode::PrivateKey => "private-key",
            ErrorCode::BadProof => "bad-proof",
            ErrorCode::NotAdmitted => "not-admitted",
            ErrorCode::Restricted => "restricted",
            ErrorCode::AlreadyAdmitted => "already-admitted",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::NotOwner => "not-owner",
            ErrorCode::NoSuchPeer => "no-such-peer",
            ErrorCode::Revoked => "revoked",
            ErrorCode::RoomDeleted => "room-deleted",
            ErrorCode::NotConfirmed => "not-confirmed",
            ErrorCode::SlowConsumer => "slow-consumer",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::Internal => "internal",
        }
    }

    /// The close code the connection ends with after this error, if it ends.
    pub fn closes_with(self) -> Option<u16> {
        match self {
            ErrorCode::ServerFull => Some(1013),
            ErrorCode::AuthTimeout => Some(4001),
            ErrorCode::Revoked => Some(4003),
            ErrorCode::RoomDeleted => Some(4004),
            ErrorCode::NotConfirmed => Some(4003),
            ErrorCode::SlowConsumer => Some(4008),
            ErrorCode::ShuttingDown => Some(1001),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The codes by their old constant names, for call sites.
pub mod code {
    use super::ErrorCode;
    pub const BAD_JSON: ErrorCode = ErrorCode::BadJson;
    pub const UNKNOWN_TYPE: ErrorCode = ErrorCode::UnknownType;
    pub const BAD_MESSAGE: ErrorCode = ErrorCode::BadMessage;
    pub const FRAME_TOO_LARGE: ErrorCode = ErrorCode::FrameTooLarge;
    pub const RATE_LIMITED: ErrorCode = ErrorCode::RateLimited;
    pub const SERVER_FULL: ErrorCode = ErrorCode::ServerFull;
    pub const AUTH_TIMEOUT: ErrorCode = ErrorCode::AuthTimeout;
    pub const ROOM_NOT_FOUND: ErrorCode = ErrorCode::RoomNotFound;
    pub const ROOM_FULL: ErrorCode = ErrorCode::RoomFull;
    pub const NO_CHALLENGE: ErrorCode = ErrorCode::NoChallenge;
    pub const UNSUPPORTED_METHOD: ErrorCode = ErrorCode::UnsupportedMethod;
    pub const PRIVATE_KEY: ErrorCode = ErrorCode::PrivateKey;
    pub const BAD_PROOF: ErrorCode = ErrorCode::BadProof;
    pub const NOT_ADMITTED: ErrorCode = ErrorCode::NotAdmitted;
    pub const RESTRICTED: ErrorCode = ErrorCode::Restricted;
    pub const ALREADY_ADMITTED: ErrorCode = ErrorCode::AlreadyAdmitted;
    pub const UNAUTHENTICATED: ErrorCode = ErrorCode::Unauthenticated;
    pub const NOT_OWNER: ErrorCode = ErrorCode::NotOwner;
    pub const NO_SUCH_PEER: ErrorCode = ErrorCode::NoSuchPeer;
    pub const REVOKED: ErrorCode = ErrorCode::Revoked;
    pub const ROOM_DELETED: ErrorCode = ErrorCode::RoomDeleted;
    pub const NOT_CONFIRMED: ErrorCode = ErrorCode::NotConfirmed;
    pub const SLOW_CONSUMER: ErrorCode = ErrorCode::SlowConsumer;
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode::ShuttingDown;
    pub const INTERNAL: ErrorCode = ErrorCode::Internal;
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// The rows of a markdown table under `heading`: first cell → the rest.
    fn table(doc: &str, heading: &str) -> Vec<(String, String)> {
        let section = doc.split(heading).nth(1).unwrap_or_default();
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .filter_map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                Some((cells.first()?.trim_matches('`').to_owned(), cells[1..].join("|")))
            })
            .collect()
    }

    #[test]
    fn the_documented_error_codes_are_the_codes() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).unwrap_or_default();
        let documented = table(&doc, "## Error codes");
        let names: Vec<&str> = documented.iter().map(|(c, _)| c.as_str()).collect();
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, codes, "docs/protocol.md's error table and ErrorCode::ALL differ");
        for (code, (name, rest)) in ErrorCode::ALL.iter().zip(&documented) {
            let connection = rest.rsplit('|').next().unwrap_or_default().trim();
            match code.closes_with() {
                Some(close) => assert_eq!(connection, format!("closed, {close}"), "{name}"),
                None => assert!(connection.starts_with("stays"), "{name}: {connection}"),
            }
        }
        let closes = table(&doc, "## Close codes");
        for close in ErrorCode::ALL.iter().filter_map(|c| c.closes_with()) {
            assert!(closes.iter().any(|(c, _)| *c == close.to_string()), "close code {close} is not documented");
        }
    }
}
