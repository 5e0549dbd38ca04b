//! Issuing and redeeming challenges.
//!
//! A challenge is the payload a client signs: `{roomId, issuedAt, nonce, origin,
//! fingerprint?}`, serialized once, compactly, keys in that order. The server keeps
//! those exact bytes and verifies against them; it never re-serializes what the
//! client sends back. Each connection holds at most one live challenge in its
//! [`ChallengeSlot`], which is what binds a nonce to one connection and one room and
//! makes it single use: redeeming always consumes it, whatever the outcome.

use crate::identity::EthAddress;
use crate::ids::{hex, random_bytes, RoomId};
use crate::verify::siwe::SiweMessage;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// A challenge as issued: what was sent, and the exact bytes to verify against.
#[derive(Clone, Debug)]
pub struct IssuedChallenge {
    pub room: RoomId,
    pub nonce: String,
    pub issued_at: DateTime<Utc>,
    /// `JSON.stringify(payload)` as the client will compute it.
    pub signed_bytes: String,
    /// The DTLS fingerprint the client asked to have vouched for, if any.
    pub fingerprint: Option<String>,
    /// The Sign-In with Ethereum message for this challenge, when the client named
    /// an Ethereum address; method `eth` signs it instead of the payload.
    pub siwe: Option<String>,
    /// The WebAuthn options and ceremony state, when the client asked for them.
    pub webauthn: Option<std::sync::Arc<crate::passkeys::WebauthnChallenge>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    room_id: &'a str,
    issued_at: &'a str,
    nonce: &'a str,
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
    /// Set for challenges that are not for joining a room (e.g. `sign-in`), so a
    /// proof made for one purpose can never be taken for another.
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
}

/// The room id written into sign-in challenges. Generated room ids are base58 and
/// never contain '-', so no room can have it.
pub const SIGN_IN_ROOM: &str = "keygate-sign-in";

/// Whether a DTLS fingerprint as sent in `request` is acceptable: `sha-256 AB:CD:…`
/// style, short, and made only of characters that JSON never escapes.
pub fn valid_fingerprint(f: &str) -> bool {
    (8..=200).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b' ' || b == b'-')
}

impl IssuedChallenge {
    /// A fresh challenge with a 128-bit nonce (hex, so it is also a valid SIWE nonce).
    pub fn issue(room: RoomId, origin: &str, fingerprint: Option<String>, now: DateTime<Utc>) -> Self {
        Self::issue_for(room, origin, fingerprint, None, now)
    }

    /// A challenge an admitted peer signs to prove its key again mid-call.
    pub fn issue_reverify(room: RoomId, origin: &str, fingerprint: Option<String>, now: DateTime<Utc>) -> Self {
        Self::issue_for(room, origin, fingerprint, Some("reverify"), now)
    }

    /// A challenge for signing in to the host pages.
    pub fn issue_sign_in(origin: &str, now: DateTime<Utc>) -> Self {
        let room = RoomId::parse(SIGN_IN_ROOM).unwrap_or_else(|_| RoomId::generate());
        Self::issue_for(room, origin, None, Some("sign-in"), now)
    }

    fn issue_for(
        room: RoomId,
        origin: &str,
        fingerprint: Option<String>,
        purpose: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        let nonce = hex(&random_bytes::<16>());
        let issued_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let payload = Payload {
            room_id: room.as_str(),
            issued_at: &issued_at,
            nonce: &nonce,
            origin,
            fingerprint: fingerprint.as_deref(),
            purpose,
        };
        // Serializing a struct of strings cannot fail.
        let signed_bytes = serde_json::to_string(&payload).unwrap_or_default();
        // Keep the millisecond-truncated time, the one the client sees.
        let issued_at = DateTime::parse_from_rfc3339(&issued_at).map_or(now, |t| t.with_timezone(&Utc));
        IssuedChallenge { room, nonce, issued_at, signed_bytes, fingerprint, siwe: None, webauthn: None }
    }

    /// Adds the SIWE message a wallet at `address` signs for this challenge: domain
    /// and URI from the origin, the room in the statement and as Request ID, the same
    /// nonce and issue time, and an expiration at the end of the freshness window.
    pub fn with_siwe(
        mut self,
        origin: &str,
        address: EthAddress,
        chain_id: u64,
        lifetime: std::time::Duration,
    ) -> Self {
        let issued_at = self.issued_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let expires = self.issued_at + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero());
        let message = SiweMessage {
            scheme: None,
            domain: origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/').to_owned(),
            address,
            statement: Some(if self.room.as_str() == SIGN_IN_ROOM {
                "Sign in to keygate.".to_owned()
            } else {
                format!("Join keygate room {}.", self.room)
            }),
            uri: origin.to_owned(),
            version: "1".into(),
            chain_id,
            nonce: self.nonce.clone(),
            issued_at,
            expiration_time: Some(expires.to_rfc3339_opts(SecondsFormat::Millis, true)),
            not_before: None,
            request_id: Some(self.room.to_string()),
            resources: self
                .fingerprint
                .iter()
                .map(|f| format!("urn:keygate:dtls-fingerprint:{}", f.replace(' ', ":")))
                .collect(),
        };
        self.siwe = Some(message.to_string());
        self
    }

    /// The payload as a JSON value, to embed in the `challenge` frame.
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.signed_bytes).unwrap_or_default()
    }

    /// Whether what the client sent back as `payload` is the payload issued.
    pub fn matches(&self, returned: &serde_json::Value) -> bool {
        *returned == self.payload_json()
    }
}

/// Why a challenge answer was not redeemable. Goes to the audit log, never to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoChallenge,
    Replay,
    ForeignNonce,
    WrongRoom,
    PayloadMismatch,
    Stale,
    FromTheFuture,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoChallenge => "no challenge was issued on this connection",
            Refusal::Replay => "replay: nonce already used",
            Refusal::ForeignNonce => "nonce was not issued on this connection",
            Refusal::WrongRoom => "challenge was issued for another room",
            Refusal::PayloadMismatch => "returned payload differs from the one issued",
            Refusal::Stale => "stale: challenge older than the freshness window",
            Refusal::FromTheFuture => "issuedAt is in the future",
        }
    }
}

/// The freshness window: how far in the past and future `issuedAt` may be.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    pub past: Duration,
    pub future: Duration,
}

/// The live challenge of one connection, and the nonces it already spent.
#[derive(Default)]
pub struct ChallengeSlot {
    live: Option<IssuedChallenge>,
    /// Recently spent nonces, so a replay on the same connection is named as such.
    spent: VecDeque<String>,
}

impl ChallengeSlot {
    /// Replaces any live challenge: only the newest one can be answered.
    pub fn put(&mut self, challenge: IssuedChallenge) {
        if let Some(old) = self.live.replace(challenge) {
            self.remember(old.nonce);
        }
    }

    pub fn live(&self) -> Option<&IssuedChallenge> {
        self.live.as_ref()
    }

    fn remember(&mut self, nonce: String) {
        if self.spent.len() == 4 {
            self.spent.pop_front();
        }
        self.spent.push_back(nonce);
    }

    /// Consumes the live challenge against the client's returned payload. Whatever
    /// the outcome, the live challenge is gone afterwards.
    pub fn redeem(
        &mut self,
        returned: &serde_json::Value,
        now: DateTime<Utc>,
        window: Freshness,
    ) -> Result<IssuedChallenge, Refusal> {
        let nonce = returned.get("nonce").and_then(|n| n.as_str()).unwrap_or("");
        if self.spent.iter().any(|s| s == nonce) {
            return Err(Refusal::Replay);
        }
        let live = self.live.take().ok_or(Refusal::NoChallenge)?;
        self.remember(live.nonce.clone());
        if live.nonce != nonce {
            return Err(Refusal::ForeignNonce);
        }
        if returned.get("roomId").and_then(|r| r.as_str()) != Some(live.room.as_str()) {
            return Err(Refusal::WrongRoom);
        }
        if !live.matches(returned) {
            return Err(Refusal::PayloadMismatch);
        }
        let age = now.signed_duration_since(live.issued_at);
        if age > chrono::Duration::from_std(window.past).unwrap_or(chrono::Duration::MAX) {
            return Err(Refusal::Stale);
        }
        if -age > chrono::Duration::from_std(window.future).unwrap_or(chrono::Duration::MAX) {
            return Err(Refusal::FromTheFuture);
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap_or_else(|_| RoomId::generate())
    }
    const WINDOW: Freshness = Freshness { past: Duration::from_secs(120), future: Duration::from_secs(5) };

    #[test]
    fn payload_is_compact_with_keys_in_protocol_order() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z").map(|t| t.with_timezone(&Utc));
        let now = now.unwrap_or_else(|_| Utc::now());
        let c = IssuedChallenge::issue(room("abc"), "https://k.example", Some("sha-256 AB:CD".into()), now);
        let expected = format!(
            r#"{{"roomId":"abc","issuedAt":"2026-01-02T03:04:05.678Z","nonce":"{}","origin":"https://k.example","fingerprint":"sha-256 AB:CD"}}"#,
            c.nonce
        );
        assert_eq!(c.signed_bytes, expected);
        assert_eq!(c.nonce.len(), 32);
    }

    #[test]
    fn a_nonce_redeems_once() {
        let mut slot = ChallengeSlot::default();
        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        let payload = c.payload_json();
        slot.put(c);
        assert!(slot.redeem(&payload, Utc::now(), WINDOW).is_ok());
        assert_eq!(slot.redeem(&payload, Utc::now(), WINDOW).err(), Some(Refusal::Replay));
    }

    #[test]
    fn stale_and_future_are_refused() {
        let mut slot = ChallengeSlot::default();
        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        let p = c.payload_json();
        slot.put(c);
        let later = Utc::now() + chrono::Duration::seconds(121);
        assert_eq!(slot.redeem(&p, later, WINDOW).err(), Some(Refusal::Stale));

        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now() + chrono::Duration::seconds(10));
        let p = c.payload_json();
        slot.put(c);
        assert_eq!(slot.redeem(&p, Utc::now(), WINDOW).err(), Some(Refusal::FromTheFuture));
    }

    #[test]
    fn tampered_payload_and_other_room_are_refused() {
        let mut slot = ChallengeSlot::default();
        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        let mut p = c.payload_json();
        p["roomId"] = "r2".into();
        slot.put(c.clone());
        assert_eq!(slot.redeem(&p, Utc::now(), WINDOW).err(), Some(Refusal::WrongRoom));

        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        let mut p = c.payload_json();
        p["origin"] = "evil".into();
        slot.put(c);
        assert_eq!(slot.redeem(&p, Utc::now(), WINDOW).err(), Some(Refusal::PayloadMismatch));
    }

    #[test]
    fn a_nonce_from_elsewhere_is_refused() {
        let mut slot = ChallengeSlot::default();
        let other = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        assert_eq!(slot.redeem(&other.payload_json(), Utc::now(), WINDOW).err(), Some(Refusal::NoChallenge));
        slot.put(IssuedChallenge::issue(room("r1"), "o", None, Utc::now()));
        assert_eq!(slot.redeem(&other.payload_json(), Utc::now(), WINDOW).err(), Some(Refusal::ForeignNonce));
    }
}
