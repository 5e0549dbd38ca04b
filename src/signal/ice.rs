//! ICE servers for admitted peers: STUN addresses as configured, and TURN
//! credentials in coturn's REST scheme ("TURN REST API", `use-auth-secret`):
//!
//! ```text
//! username   = "<unix expiry>:<key fingerprint>"     e.g. 1700000000:SHA256:2bd8…
//! credential = base64(HMAC-SHA1(static-auth-secret, username))
//! ```
//!
//! The username names the admitted key by its fingerprint (as pages show it), not
//! its DID: a DID of an RSA-3072 key (ssh-keygen's default) is over 500 bytes, and
//! coturn refuses usernames that long. The fingerprint is 50 bytes for every key.
//!
//! coturn recomputes the credential from its copy of the secret and refuses it once
//! the expiry has passed, so keygate never stores TURN passwords. Credentials are made
//! per admission and only go into `welcome`: an unadmitted socket never sees one.

use crate::config::Settings;
use aws_lc_rs::hmac;
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `iceServers` for a peer admitted as `identity` (its key fingerprint, see
/// [`crate::identity::Identity::fingerprint`]), valid until `now + ttl`.
pub fn ice_servers(settings: &Settings, identity: &str, now: SystemTime) -> Vec<Value> {
    let mut servers = Vec::new();
    if !settings.stun_urls.is_empty() {
        servers.push(json!({ "urls": settings.stun_urls }));
    }
    if let (false, Some(secret)) = (settings.turn_urls.is_empty(), &settings.turn_secret) {
        let (username, credential) = turn_credential(secret, identity, now + settings.turn_ttl);
        servers.push(json!({ "urls": settings.turn_urls, "username": username, "credential": credential }));
    }
    servers
}

/// A coturn REST username and password that expire at `expires`.
pub fn turn_credential(secret: &str, identity: &str, expires: SystemTime) -> (String, String) {
    let expiry = expires.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let username = format!("{expiry}:{identity}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    (username, base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_rfc2104_hmac_sha1() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(crate::ids::hex(tag.as_ref()), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn username_is_expiry_then_identity() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) = turn_credential("s3cret", "SHA256:abc", at);
        assert_eq!(user, "1700000000:SHA256:abc");
        // base64 of a 20-byte tag.
        assert_eq!(pass.len(), 28);
        assert_ne!(turn_credential("other", "SHA256:abc", at).1, pass);
    }

    #[test]
    fn only_configured_servers_are_sent() {
        let mut s = Settings::default();
        assert!(ice_servers(&s, "did:key:z", SystemTime::now()).is_empty());
        s.stun_urls = vec!["stun:stun.example.net:3478".into()];
        s.turn_urls = vec!["turn:turn.example.net:3478?transport=udp".into()];
        assert_eq!(ice_servers(&s, "did:key:z", SystemTime::now()).len(), 1, "TURN needs its secret");
        s.turn_secret = Some("s3cret".into());
        let servers = ice_servers(&s, "did:key:z", SystemTime::now());
        assert_eq!(servers.len(), 2);
        assert!(servers[1]["username"].as_str().is_some_and(|u| u.ends_with(":did:key:z")));
    }
}
