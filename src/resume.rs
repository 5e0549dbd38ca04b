//! Method `resume`: an admitted peer whose signaling socket dropped (a proxy's idle
//! timeout, a network change, a server restart) gets back into its room without
//! asking its person for another signature, touch or wallet confirmation.
//!
//! ```text
//! welcome {…, resume: {token, expiresIn}}     then `resume {token, expiresIn}` every half window
//!   token = base64url(room, identity, method, DTLS fingerprint, media key, proved at, expires, nonce)
//!           "." base64url(HMAC-SHA256 under a key kept in the database)
//! the socket drops; a new one:
//!   request {roomId, fingerprint, mediaKey} ; auth {method: "resume", payload, token} ─▶ welcome
//! ```
//!
//! A token is not a proof: it says that this server admitted this identity with this
//! method, for this room and this DTLS certificate, a short while ago. So it is only
//! good for the room, fingerprint and media key it names (the new request must sign
//! the same certificate and media key, so media stays bound to the same key), until it expires (the
//! `resume_window` setting), and once; the whitelist is checked again as for any
//! method, so a key removed in the meantime stays out. Its MAC key lives in the
//! database, so tokens outlive a restart and work on every server of the service;
//! spent tokens are recorded there too ([`crate::store::Store::spend`]), so a token
//! is good once in the whole service, across restarts.
//! The room's re-verification schedule counts from when the key was last proved,
//! not from the resume.

use crate::challenge::Vouched;
use crate::identity::Identity;
use crate::ids::RoomId;
use crate::verify::Method;
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest token read: what this server issues is about 300–500 bytes.
const MAX_TOKEN: usize = 1024;

/// What a token vouches for.
#[derive(Serialize, Deserialize)]
struct Body {
    /// Format version.
    v: u8,
    room: String,
    /// The identity's DID.
    id: String,
    method: Method,
    /// The DTLS fingerprint the admission signed.
    fp: Option<String>,
    /// The media key the admission signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mk: Option<String>,
    /// When the key was last proved (Unix milliseconds).
    proved: u64,
    /// When the token expires (Unix milliseconds).
    exp: u64,
    /// Makes every token distinct, so each can be spent once.
    n: String,
}

/// An admission to continue: who, how it was proved, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    pub identity: Identity,
    /// The method of the admission being continued.
    pub method: Method,
    /// When the key was last proved.
    pub proved_at: SystemTime,
}

/// Issues and checks resume tokens.
pub struct Resumes {
    key: hmac::Key,
}

/// What makes a checked token single use: it must be spent, once, in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Once {
    /// The token's own nonce, as the store records it.
    pub token: String,
    /// When the token expires (RFC 3339): the record is kept until then.
    pub expires_at: String,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Resumes {
    /// Tokens MAC'd with `secret` (kept in the database: see
    /// [`crate::store::Store::server_secret`]).
    pub fn new(secret: &[u8]) -> Self {
        Resumes { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// With a key of its own, for a gateway without a database key (tests, fuzzing).
    pub fn ephemeral() -> Self {
        Self::new(&crate::ids::random_bytes::<32>())
    }

    /// A token for `identity`, admitted to `room` with `method` for what it vouched for,
    /// whose key was last proved at `proved_at`; valid for `ttl` from `now`.
    pub fn issue(&self, room: &RoomId, resumed: &Resumed, vouched: &Vouched, now: SystemTime, ttl: Duration) -> String {
        let body = Body {
            v: 1,
            room: room.as_str().to_owned(),
            id: resumed.identity.did().as_str().to_owned(),
            method: resumed.method,
            fp: vouched.fingerprint.clone(),
            mk: vouched.media_key.clone(),
            proved: millis(resumed.proved_at),
            exp: now.checked_add(ttl).map_or(u64::MAX, millis),
            n: crate::ids::hex(&crate::ids::random_bytes::<12>()),
        };
        let body = B64.encode(serde_json::to_vec(&body).unwrap_or_default());
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", B64.encode(tag.as_ref()))
    }

    /// Checks `token` for a new connection to `room` that signs `vouched`: the
    /// admission it continues and what must be spent for it (once, in the store),
    /// or why not (for the audit log only).
    pub fn redeem(
        &self,
        token: &str,
        room: &RoomId,
        vouched: &Vouched,
        now: SystemTime,
    ) -> Result<(Resumed, Once), &'static str> {
        if token.len() > MAX_TOKEN {
            return Err("resume token too long");
        }
        let (body, tag) = token.split_once('.').ok_or("malformed resume token")?;
        let tag = B64.decode(tag).map_err(|_| "malformed resume token")?;
        // The MAC first: nothing of a forged token is read.
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| "resume token not issued here")?;
        let body: Body = B64
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|b: &Body| b.v == 1)
            .ok_or("unreadable resume token")?;
        let now = millis(now);
        if body.exp <= now {
            return Err("expired resume token");
        }
        if body.room != room.as_str() {
            return Err("resume token for another room");
        }
        if body.fp.is_none() || body.fp != vouched.fingerprint {
            return Err("resume token for another DTLS certificate");
        }
        if body.mk != vouched.media_key {
            return Err("resume token for another media key");
        }
        let identity = Identity::parse(&body.id).map_err(|_| "unreadable resume token")?;
        let once = Once { token: format!("resume:{}", body.n), expires_at: crate::sealed::millis_text(body.exp) };
        let proved_at = UNIX_EPOCH + Duration::from_millis(body.proved.min(now));
        Ok((Resumed { identity, method: body.method, proved_at }, once))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Resumes, RoomId, Resumed) {
        let key = crate::client::p256_key::P256Key::generate().unwrap_or_else(|e| unreachable!("{e}"));
        let identity = Identity::parse(&key.public_jwk().to_string()).unwrap_or_else(|e| unreachable!("{e}"));
        let resumed = Resumed { identity, method: Method::Webauthn, proved_at: UNIX_EPOCH + Duration::from_secs(1000) };
        (Resumes::ephemeral(), RoomId::generate(), resumed)
    }

    fn vouched(fp: Option<&str>, mk: Option<&str>) -> Vouched {
        Vouched { fingerprint: fp.map(str::to_owned), media_key: mk.map(str::to_owned) }
    }

    #[test]
    fn a_token_continues_its_admission_and_names_what_to_spend() {
        let (r, room, resumed) = fixture();
        let now = SystemTime::now();
        let token = r.issue(&room, &resumed, &vouched(Some("sha-256 AB:CD"), None), now, Duration::from_secs(60));
        let (continued, once) =
            r.redeem(&token, &room, &vouched(Some("sha-256 AB:CD"), None), now).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(continued, resumed);
        // The same token names the same thing to spend; another token another.
        assert_eq!(
            r.redeem(&token, &room, &vouched(Some("sha-256 AB:CD"), None), now).map(|(_, o)| o),
            Ok(once.clone())
        );
        let other = r.issue(&room, &resumed, &vouched(Some("sha-256 AB:CD"), None), now, Duration::from_secs(60));
        assert_ne!(r.redeem(&other, &room, &vouched(Some("sha-256 AB:CD"), None), now).map(|(_, o)| o), Ok(once));
    }

    #[test]
    fn a_token_is_good_only_for_its_room_certificate_and_time() {
        let (r, room, resumed) = fixture();
        let now = SystemTime::now();
        let token = || r.issue(&room, &resumed, &vouched(Some("sha-256 AB:CD"), None), now, Duration::from_secs(60));
        assert_eq!(
            r.redeem(&token(), &RoomId::generate(), &vouched(Some("sha-256 AB:CD"), None), now),
            Err("resume token for another room")
        );
        assert_eq!(
            r.redeem(&token(), &room, &vouched(Some("sha-256 EF:01"), None), now),
            Err("resume token for another DTLS certificate")
        );
        assert_eq!(
            r.redeem(&token(), &room, &Vouched::default(), now),
            Err("resume token for another DTLS certificate")
        );
        // A media key signed at admission must be signed again; one not signed must not appear.
        let fp = Some("sha-256 AB:CD");
        let keyed = r.issue(&room, &resumed, &vouched(fp, Some("BKey")), now, Duration::from_secs(60));
        assert_eq!(
            r.redeem(&keyed, &room, &vouched(fp, Some("BOther")), now),
            Err("resume token for another media key")
        );
        assert_eq!(r.redeem(&keyed, &room, &vouched(fp, None), now), Err("resume token for another media key"));
        assert_eq!(
            r.redeem(&token(), &room, &vouched(fp, Some("BKey")), now),
            Err("resume token for another media key")
        );
        assert!(r.redeem(&keyed, &room, &vouched(fp, Some("BKey")), now).is_ok());
        let later = now + Duration::from_secs(61);
        assert_eq!(
            r.redeem(&token(), &room, &vouched(Some("sha-256 AB:CD"), None), later),
            Err("expired resume token")
        );
        // Without a certificate there is nothing to continue.
        let bare = r.issue(&room, &resumed, &Vouched::default(), now, Duration::from_secs(60));
        assert_eq!(r.redeem(&bare, &room, &Vouched::default(), now), Err("resume token for another DTLS certificate"));
    }

    #[test]
    fn a_changed_or_foreign_token_is_refused_before_it_is_read() {
        let (r, room, resumed) = fixture();
        let now = SystemTime::now();
        let token = r.issue(&room, &resumed, &vouched(Some("sha-256 AB:CD"), None), now, Duration::from_secs(60));
        let (body, tag) = token.split_once('.').unwrap_or_default();
        let mut json: serde_json::Value =
            serde_json::from_slice(&B64.decode(body).unwrap_or_default()).unwrap_or_default();
        json["method"] = "piv".into();
        let forged = format!("{}.{tag}", B64.encode(json.to_string()));
        assert_eq!(
            r.redeem(&forged, &room, &vouched(Some("sha-256 AB:CD"), None), now),
            Err("resume token not issued here")
        );
        let other = Resumes::ephemeral();
        assert_eq!(
            other.redeem(&token, &room, &vouched(Some("sha-256 AB:CD"), None), now),
            Err("resume token not issued here")
        );
        assert_eq!(
            r.redeem("no dot", &room, &vouched(Some("sha-256 AB:CD"), None), now),
            Err("malformed resume token")
        );
        assert_eq!(
            r.redeem(&"a".repeat(MAX_TOKEN + 1), &room, &vouched(Some("sha-256 AB:CD"), None), now),
            Err("resume token too long")
        );
    }
}
