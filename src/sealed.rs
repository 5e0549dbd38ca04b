//! State a server hands its client to bring back, instead of keeping it: an HTTP
//! challenge (sign-in, invite), a passkey registration in progress. Sealed under a
//! key kept in the database, so any server of the service opens it (a load
//! balancer need not stick) and none holds anything until it comes back; opened
//! once in the whole service, by spending its nonce in the store.
//!
//! ```text
//! token = base64url({"exp": unix ms, "n": nonce, "v": value}) "." base64url(HMAC-SHA256)
//! ```

use crate::store::Store;
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a sealed token did not open.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// Not one this service sealed, or not readable as what was asked for.
    Invalid,
    Expired,
    /// Opened before, here or on another server.
    Used,
    /// The store could not record it as opened.
    Store,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// When it stops opening (Unix milliseconds).
    exp: u64,
    /// What is spent when it is opened.
    n: String,
    v: T,
}

/// Seals and opens tokens under one key.
pub struct Sealer {
    key: hmac::Key,
    /// What its tokens are for, as the store records them spent ("challenge", …).
    kind: &'static str,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix milliseconds as the store writes instants (RFC 3339, UTC), at most the end
/// of year 9999, so that every instant is four-digit-year text and sorts as it should.
pub fn millis_text(ms: u64) -> String {
    const LAST: u64 = 253_402_300_799_999;
    let t = i64::try_from(ms.min(LAST)).ok().and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis);
    t.unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Sealer {
    /// Tokens for `kind`, MAC'd with `secret` (see [`Store::server_secret`]).
    pub fn new(kind: &'static str, secret: &[u8]) -> Self {
        // One secret may serve several kinds: each gets its own key.
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), kind.as_bytes());
        Sealer { key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), kind }
    }

    /// With a key of its own, for a gateway without a database key (tests, fuzzing).
    pub fn ephemeral(kind: &'static str) -> Self {
        Self::new(kind, &crate::ids::random_bytes::<32>())
    }

    /// Seals `value` for `ttl`.
    pub fn seal<T: Serialize>(&self, value: &T, ttl: Duration) -> String {
        let envelope = Envelope {
            exp: SystemTime::now().checked_add(ttl).map_or(u64::MAX, millis),
            n: crate::ids::hex(&crate::ids::random_bytes::<16>()),
            v: value,
        };
        let body = B64.encode(serde_json::to_vec(&envelope).unwrap_or_default());
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", B64.encode(tag.as_ref()))
    }

    /// Opens `token` (at most `max_len` bytes): its value, once in the whole
    /// service. The MAC is checked before anything of the token is read.
    pub async fn open_once<T: DeserializeOwned>(
        &self,
        token: &str,
        max_len: usize,
        store: &Store,
    ) -> Result<T, Unsealed> {
        if token.len() > max_len {
            return Err(Unsealed::Invalid);
        }
        let (body, tag) = token.split_once('.').ok_or(Unsealed::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| Unsealed::Invalid)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| Unsealed::Invalid)?;
        let envelope: Envelope<T> =
            B64.decode(body).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(Unsealed::Invalid)?;
        if envelope.exp <= millis(SystemTime::now()) {
            return Err(Unsealed::Expired);
        }
        match store.spend(&format!("{}:{}", self.kind, envelope.n), &millis_text(envelope.exp)).await {
            Ok(true) => Ok(envelope.v),
            Ok(false) => Err(Unsealed::Used),
            Err(e) => {
                tracing::error!(error = %e, kind = self.kind, "recording a sealed token as opened failed");
                Err(Unsealed::Store)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sealed_value_opens_once_with_its_own_key_and_kind_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = Store::open(&dir.path().join("k.db")).await.unwrap_or_else(|e| unreachable!("{e}"));
        let secret = [7u8; 32];
        let sealer = Sealer::new("challenge", &secret);
        let token = sealer.seal(&"hello".to_owned(), Duration::from_secs(60));
        // Another kind under the same secret, or another secret, does not open it.
        let other_kind = Sealer::new("registration", &secret);
        assert_eq!(other_kind.open_once::<String>(&token, 1024, &store).await, Err(Unsealed::Invalid));
        let other_key = Sealer::ephemeral("challenge");
        assert_eq!(other_key.open_once::<String>(&token, 1024, &store).await, Err(Unsealed::Invalid));
        // A changed body is refused before it is read; a token too long unread.
        let (body, tag) = token.split_once('.').unwrap_or_default();
        let changed = format!("{}A.{tag}", &body[..body.len() - 1]);
        assert_eq!(sealer.open_once::<String>(&changed, 1024, &store).await, Err(Unsealed::Invalid));
        assert_eq!(sealer.open_once::<String>(&token, 10, &store).await, Err(Unsealed::Invalid));
        // It opens once, then never again; an expired one never.
        assert_eq!(sealer.open_once::<String>(&token, 1024, &store).await, Ok("hello".to_owned()));
        assert_eq!(sealer.open_once::<String>(&token, 1024, &store).await, Err(Unsealed::Used));
        let lapsed = sealer.seal(&"late".to_owned(), Duration::ZERO);
        assert_eq!(sealer.open_once::<String>(&lapsed, 1024, &store).await, Err(Unsealed::Expired));
        store.close().await;
    }

    #[test]
    fn instants_are_four_digit_years_however_far() {
        assert_eq!(millis_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(millis_text(u64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
