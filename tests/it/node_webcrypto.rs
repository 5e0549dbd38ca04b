//! The original talk's browser client, run as it is in Node (which ships WebCrypto):
//! PKCS#8 import, JSON.stringify(payload), P1363 signature. Only the signature's
//! encoding (base64url) and the public-only JWK differ from the talk.

use crate::common::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use keygate::client::p256_key::P256Key;
use serde_json::Value;
use std::path::Path;

async fn node_client(url: &str, room: &str, key_file: &Path, extra: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/webcrypto_client.mjs");
    let out = tokio::process::Command::new("node")
        .arg("--experimental-websocket")
        .arg("--no-warnings")
        .arg(script)
        .args([url, room])
        .arg(key_file)
        .args(extra)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "node client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_talks_webcrypto_client_is_admitted() {
    let Some(_) = tool("node") else { return };
    let s = TestServer::start().await;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let key_file = s.dir.path().join("browser.pk8");
    std::fs::write(&key_file, pkcs8.as_ref()).unwrap();
    let browser = P256Key::from_pkcs8(pkcs8.as_ref()).unwrap();
    let owner = key();
    let room = s.room(&owner, &[&browser]).await;

    let welcome =
        node_client(&s.url(), room.as_str(), &key_file, &["--fingerprint", "sha-256 01:23:45:67:89:AB"]).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["identity"], identity(&browser).did().as_str());

    // Exactly as the talk did: the private JWK as exported. Refused, clearly.
    let refused = node_client(&s.url(), room.as_str(), &key_file, &["--send-private-jwk"]).await;
    assert_eq!(refused["code"], "private-key", "{refused}");

    // A payload changed after signing is not admitted.
    let tampered = node_client(&s.url(), room.as_str(), &key_file, &["--tamper"]).await;
    assert_eq!(tampered["code"], "not-admitted", "{tampered}");

    // A key that is not on the list is not admitted either.
    let stranger = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let stranger_file = s.dir.path().join("stranger.pk8");
    std::fs::write(&stranger_file, stranger.as_ref()).unwrap();
    let unknown = node_client(&s.url(), room.as_str(), &stranger_file, &[]).await;
    assert_eq!(unknown["code"], "not-admitted", "{unknown}");
    s.shutdown().await;
}
