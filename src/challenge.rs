//! The bytes of a challenge.
//!
//! A challenge is the payload a client signs: `{roomId, issuedAt, nonce, origin,
//! fingerprint?, purpose?}`, serialized once, compactly, keys in that order. The
//! server keeps those exact bytes and verifies against them; it never
//! re-serializes what the client sends back. [`IssuedChallenge::accept`] checks an
//! answer's payload against them (nonce, room, every byte, freshness); keeping a
//! challenge single use and bound to one connection or one id is the admission
//! pipeline's ([`crate::admission`]).

use crate::ids::{hex, random_bytes, RoomId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use std::time::Duration;

/// A challenge as issued: what was sent, and the exact bytes to verify against.
#[derive(Clone, Debug)]
pub struct IssuedChallenge {
    pub room: RoomId,
    pub nonce: String,
    pub issued_at: DateTime<Utc>,
    /// The payload, serialized once: `JSON.stringify(payload)` as the client will
    /// compute it, which is exactly what is signed ([`IssuedChallenge::signed_bytes`]).
    pub payload: Box<RawValue>,
    /// The DTLS fingerprint the client asked to have vouched for, if any.
    pub fingerprint: Option<String>,
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
    /// A fresh challenge to join `room`, with a 128-bit nonce (hex, so it is also a
    /// valid SIWE nonce).
    pub fn issue(room: RoomId, origin: &str, fingerprint: Option<String>, now: DateTime<Utc>) -> Self {
        Self::issue_for(room, origin, fingerprint, None, now)
    }

    /// A challenge for another purpose than joining (`sign-in`, `reverify`), which
    /// the payload names so that a proof made for one is never taken for another.
    pub fn issue_for(
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
        let payload = serde_json::value::to_raw_value(&payload).unwrap_or_default();
        // Keep the millisecond-truncated time, the one the client sees.
        let issued_at = DateTime::parse_from_rfc3339(&issued_at).map_or(now, |t| t.with_timezone(&Utc));
        IssuedChallenge { room, nonce, issued_at, payload, fingerprint }
    }

    /// The exact bytes a signature over the payload covers.
    pub fn signed_bytes(&self) -> &str {
        self.payload.get()
    }

    /// The payload as a JSON value, to embed in the `challenge` frame.
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(self.payload.get()).unwrap_or_default()
    }

    /// Whether what the client sent back as `payload` is the payload issued.
    pub fn matches(&self, returned: &serde_json::Value) -> bool {
        *returned == self.payload_json()
    }

    /// Checks an answer's returned payload against this challenge: its nonce, its
    /// room, every other field, and that it is still inside `window`.
    pub fn accept(&self, returned: &serde_json::Value, now: DateTime<Utc>, window: Freshness) -> Result<(), Refusal> {
        if returned.get("nonce").and_then(|n| n.as_str()) != Some(self.nonce.as_str()) {
            return Err(Refusal::ForeignNonce);
        }
        if returned.get("roomId").and_then(|r| r.as_str()) != Some(self.room.as_str()) {
            return Err(Refusal::WrongRoom);
        }
        if !self.matches(returned) {
            return Err(Refusal::PayloadMismatch);
        }
        let age = now.signed_duration_since(self.issued_at);
        if age > chrono::Duration::from_std(window.past).unwrap_or(chrono::Duration::MAX) {
            return Err(Refusal::Stale);
        }
        if -age > chrono::Duration::from_std(window.future).unwrap_or(chrono::Duration::MAX) {
            return Err(Refusal::FromTheFuture);
        }
        Ok(())
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
        assert_eq!(c.signed_bytes(), expected);
        assert_eq!(c.nonce.len(), 32);
    }

    #[test]
    fn stale_and_future_are_refused() {
        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        let p = c.payload_json();
        assert_eq!(c.accept(&p, Utc::now(), WINDOW), Ok(()));
        let later = Utc::now() + chrono::Duration::seconds(121);
        assert_eq!(c.accept(&p, later, WINDOW), Err(Refusal::Stale));

        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now() + chrono::Duration::seconds(10));
        assert_eq!(c.accept(&c.payload_json(), Utc::now(), WINDOW), Err(Refusal::FromTheFuture));
    }

    #[test]
    fn tampered_payload_other_room_and_other_nonce_are_refused() {
        let c = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        let mut p = c.payload_json();
        p["roomId"] = "r2".into();
        assert_eq!(c.accept(&p, Utc::now(), WINDOW), Err(Refusal::WrongRoom));
        let mut p = c.payload_json();
        p["origin"] = "evil".into();
        assert_eq!(c.accept(&p, Utc::now(), WINDOW), Err(Refusal::PayloadMismatch));
        let other = IssuedChallenge::issue(room("r1"), "o", None, Utc::now());
        assert_eq!(c.accept(&other.payload_json(), Utc::now(), WINDOW), Err(Refusal::ForeignNonce));
    }
}
