//! Identifiers that travel in URLs and protocol frames: rooms and peers.
//! Parsed once at the edge; holding one means it is safe to embed anywhere.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A room id: 1–64 characters of `[A-Za-z0-9_-]`. The charset keeps ids safe in
/// URLs, HTML and JSON without escaping, so the signed payload serializes identically
/// in Rust and in a browser's `JSON.stringify`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a room id is 1 to 64 characters of letters, digits, '-' and '_'")]
pub struct BadRoomId;

impl RoomId {
    pub fn parse(text: &str) -> Result<Self, BadRoomId> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(RoomId(text.to_owned()))
        } else {
            Err(BadRoomId)
        }
    }

    /// A fresh unguessable id (96 random bits, base58: about 16 characters).
    pub fn generate() -> Self {
        RoomId(bs58::encode(random_bytes::<12>()).into_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoomId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

/// A peer id, unique per admitted session, chosen by the server.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    pub fn generate() -> Self {
        PeerId(hex(&random_bytes::<8>()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system RNG failing is not recoverable; aws-lc aborts the process itself.
    let _ = aws_lc_rs::rand::fill(&mut out);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
