//! The bytes of a challenge.
//!
//! A challenge is the payload a client signs: `{roomId, issuedAt, nonce, origin,
//! fingerprint?, mediaKey?, purpose?}`, serialized once, compactly, keys in that order. The
//! server keeps those exact bytes and verifies against them; it never
//! re-serializes what the client sends back. [`IssuedChallenge::accept`] checks an
//! answer's payload against them (nonce, room, every byte, freshness); keeping a
//! challenge single use and bound to one connection or one id is the admission
//! pipeline's ([`crate::admission`]).

use crate::ids::{hex, random_bytes, RoomId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
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
    /// What the client asked to have vouched for: its DTLS certificate, its media key.
    pub vouched: Vouched,
}

/// What a proof vouches for beside the room: the connection's DTLS certificate (so
/// no one can sit between two peers' media) and its end-to-end media key (so no
/// one can read media that passes through a server: see docs/e2ee.md). Each, when
/// sent in `request`, is a field of the signed payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vouched {
    /// The DTLS certificate's fingerprint ("sha-256 AB:CD:…").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// An ephemeral ECDH P-256 public key, uncompressed, base64url without padding:
    /// peers send their media keys encrypted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    room_id: &'a str,
    issued_at: &'a str,
    nonce: &'a str,
    origin: &'a str,
    #[serde(flatten)]
    vouched: &'a Vouched,
    /// Set for challenges that are not for joining a room (e.g. `sign-in`), so a
    /// proof made for one purpose can never be taken for another.
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
}

/// The room id written into sign-in challenges. Generated room ids are base58 and
/// never contain '-', so no room can have it.
pub const SIGN_IN_ROOM: &str = "keygate-sign-in";

/// The length of a media key as sent: 65 bytes (SEC1 uncompressed), base64url.
const MEDIA_KEY_LEN: usize = 87;

/// Whether a media key as sent in `request` is an uncompressed P-256 point in
/// unpadded base64url; an error says what is wrong with it.
pub fn check_media_key(k: &str) -> Result<(), &'static str> {
    use base64::Engine;
    let shape = "mediaKey must be an uncompressed P-256 public key (65 bytes), base64url without padding \
                 (WebCrypto exportKey(\"raw\") of an ECDH P-256 key)";
    if k.len() != MEDIA_KEY_LEN || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(shape);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k).map_err(|_| shape)?;
    if bytes.first() != Some(&4) {
        return Err(shape);
    }
    p256::PublicKey::from_sec1_bytes(&bytes).map_err(|_| "mediaKey is not a point on the P-256 curve")?;
    Ok(())
}

/// Whether a DTLS fingerprint as sent in `request` is acceptable: `sha-256 AB:CD:…`
/// style, short, and made only of characters that JSON never escapes.
pub fn valid_fingerprint(f: &str) -> bool {
    (8..=200).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b' ' || b == b'-')
}

impl IssuedChallenge {
    /// A fresh challenge to join `room`, with a 128-bit nonce (hex, so it is also a
    /// valid SIWE nonce).
    pub fn issue(room: RoomId, origin: &str, vouched: Vouched, now: DateTime<Utc>) -> Self {
        Self::issue_for(room, origin, vouched, None, now)
    }

    /// A challenge for another purpose than joining (`sign-in`, `reverify`), which
    /// the payload names so that a proof made for one is never taken for another.
    pub fn issue_for(room: RoomId, origin: &str, vouched: Vouched, purpose: Option<&str>, now: DateTime<Utc>) -> Self {
        let nonce = hex(&random_bytes::<16>());
        let issued_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let payload = Payload {
            room_id: room.as_str(),
            issued_at: &issued_at,
            nonce: &nonce,
            origin,
            vouched: &vouched,
            purpose,
        };
        // Serializing a struct of strings cannot fail.
        let payload = serde_json::value::to_raw_value(&payload).unwrap_or_default();
        // Keep the millisecond-truncated time, the one the client sees.
        let issued_at = DateTime::parse_from_rfc3339(&issued_at).map_or(now, |t| t.with_timezone(&Utc));
        IssuedChallenge { room, nonce, issued_at, payload, vouched }
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
        let vouched = Vouched { fingerprint: Some("sha-256 AB:CD".into()), media_key: None };
        let c = IssuedChallenge::issue(room("abc"), "https://k.example", vouched, now);
        let expected = format!(
            r#"{{"roomId":"abc","issuedAt":"2026-01-02T03:04:05.678Z","nonce":"{}","origin":"https://k.example","fingerprint":"sha-256 AB:CD"}}"#,
            c.nonce
        );
        assert_eq!(c.signed_bytes(), expected);
        assert_eq!(c.nonce.len(), 32);
        let vouched = Vouched { fingerprint: Some("sha-256 AB:CD".into()), media_key: Some("BKey".into()) };
        let c = IssuedChallenge::issue_for(room("abc"), "o", vouched, Some("reverify"), now);
        assert!(c.signed_bytes().ends_with(r#""fingerprint":"sha-256 AB:CD","mediaKey":"BKey","purpose":"reverify"}"#));
    }

    #[test]
    fn a_media_key_is_an_uncompressed_p256_point() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let point = p256::SecretKey::from_slice(&[7; 32]).map(|k| k.public_key());
        let point = point.map(|p| p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&p, false));
        let good = b64(point.as_ref().map(|p| p.as_bytes()).unwrap_or_default());
        assert_eq!(check_media_key(&good), Ok(()));
        let mut off_curve = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&good).unwrap_or_default();
        off_curve[64] ^= 1;
        assert_eq!(check_media_key(&b64(&off_curve)), Err("mediaKey is not a point on the P-256 curve"));
        let compressed = point.map(|_| p256::SecretKey::from_slice(&[7; 32]).map(|k| k.public_key()));
        let compressed = compressed
            .ok()
            .and_then(Result::ok)
            .map(|p| p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&p, true).as_bytes().to_vec());
        for bad in
            [b64(&compressed.unwrap_or_default()), format!("{good}="), good.replace(&good[..1], "+"), String::new()]
        {
            assert!(check_media_key(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stale_and_future_are_refused() {
        let c = IssuedChallenge::issue(room("r1"), "o", Vouched::default(), Utc::now());
        let p = c.payload_json();
        assert_eq!(c.accept(&p, Utc::now(), WINDOW), Ok(()));
        let later = Utc::now() + chrono::Duration::seconds(121);
        assert_eq!(c.accept(&p, later, WINDOW), Err(Refusal::Stale));

        let c = IssuedChallenge::issue(room("r1"), "o", Vouched::default(), Utc::now() + chrono::Duration::seconds(10));
        assert_eq!(c.accept(&c.payload_json(), Utc::now(), WINDOW), Err(Refusal::FromTheFuture));
    }

    #[test]
    fn tampered_payload_other_room_and_other_nonce_are_refused() {
        let c = IssuedChallenge::issue(room("r1"), "o", Vouched::default(), Utc::now());
        let mut p = c.payload_json();
        p["roomId"] = "r2".into();
        assert_eq!(c.accept(&p, Utc::now(), WINDOW), Err(Refusal::WrongRoom));
        let mut p = c.payload_json();
        p["origin"] = "evil".into();
        assert_eq!(c.accept(&p, Utc::now(), WINDOW), Err(Refusal::PayloadMismatch));
        let other = IssuedChallenge::issue(room("r1"), "o", Vouched::default(), Utc::now());
        assert_eq!(c.accept(&other.payload_json(), Utc::now(), WINDOW), Err(Refusal::ForeignNonce));
    }
}
