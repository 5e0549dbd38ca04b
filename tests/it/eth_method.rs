//! Method `eth`: Sign-In with Ethereum to the specification (the SIWE project's test
//! suite), EIP-191 recovery (ethers.js and eth-account vectors), and wallets made
//! with an independent implementation (ethers.js) admitting through the real server.

use crate::common::*;
use chrono::{DateTime, Utc};
use keygate::identity::Identity;
use keygate::verify::siwe::{from_fields, SiweMessage};
use keygate::verify::{personal_message_hash, recover_signer};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn load(dir: &Path, file: &str) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn siwe_parsing_follows_the_specification() {
    let Some(dir) = vectors() else { return };
    let dir = dir.join("siwe");
    for (name, case) in load(&dir, "parsing_positive.json") {
        let text = case["message"].as_str().unwrap();
        let parsed = SiweMessage::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let built = from_fields(&case["fields"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed, built, "{name}");
        assert_eq!(parsed.to_string(), text, "{name}: formatting gives back the message");
    }
    for (name, text) in load(&dir, "parsing_negative.json") {
        assert!(SiweMessage::parse(text.as_str().unwrap()).is_err(), "{name} must not parse");
    }
    for (name, fields) in load(&dir, "parsing_negative_objects.json") {
        assert!(from_fields(&fields).is_err(), "{name} must be refused");
    }
}

/// Verifies a SIWE test case as a server would: build, check at the case's time
/// (falling back to its issuedAt), domain and nonce binding, then recover the signer.
fn verify_case(case: &Value) -> Result<(), String> {
    let message = from_fields(case).map_err(|e| e.to_string())?;
    let time = case.get("time").and_then(|t| t.as_str()).unwrap_or(case["issuedAt"].as_str().unwrap_or_default());
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(time).map_err(|e| e.to_string())?.with_timezone(&Utc);
    message
        .check(now, case.get("domainBinding").and_then(|v| v.as_str()), case.get("matchNonce").and_then(|v| v.as_str()))
        .map_err(|e| e.to_string())?;
    let sig = keygate::verify::eth_signature(case["signature"].as_str().unwrap()).map_err(|e| e.to_string())?;
    let signer = recover_signer(message.to_string().as_bytes(), &sig).map_err(|e| e.to_string())?;
    if signer != message.address {
        return Err(format!("signed by {signer}"));
    }
    Ok(())
}

#[test]
fn siwe_verification_follows_the_specification() {
    let Some(dir) = vectors() else { return };
    let dir = dir.join("siwe");
    for (name, case) in load(&dir, "verification_positive.json") {
        verify_case(&case).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, case) in load(&dir, "verification_negative.json") {
        assert!(verify_case(&case).is_err(), "{name} must fail");
    }
}

#[test]
fn eip191_signatures_recover_to_their_addresses() {
    let Some(dir) = vectors() else { return };
    let file: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("eip191/vectors.json")).unwrap()).unwrap();
    let message_of = |v: &Value| {
        let m = v["message"].as_str().unwrap();
        if v["message_is_hex_bytes"] == true {
            hex_bytes(m)
        } else {
            m.as_bytes().to_vec()
        }
    };
    let mut checked = 0;
    for v in file["vectors"].as_array().unwrap() {
        let message = message_of(v);
        let mut sig: [u8; 65] = hex_bytes(v["signature"].as_str().unwrap()).try_into().unwrap();
        if let Some(h) = v["message_hash"].as_str() {
            assert_eq!(personal_message_hash(&message).to_vec(), hex_bytes(h), "{}", v["id"]);
        }
        let address = Identity::parse(v["address"].as_str().unwrap()).unwrap();
        assert_eq!(Identity::from_eth(recover_signer(&message, &sig).unwrap()), address, "{}", v["id"]);
        // Both spellings of the recovery byte name the same signer.
        sig[64] = if sig[64] >= 27 { sig[64] - 27 } else { sig[64] + 27 };
        assert_eq!(Identity::from_eth(recover_signer(&message, &sig).unwrap()), address, "{} (other v form)", v["id"]);
        // And a different message does not.
        let mut other = message.clone();
        other.push(b'!');
        assert!(recover_signer(&other, &sig).map_or(true, |a| Identity::from_eth(a) != address));
        checked += 1;
    }
    assert_eq!(checked, 8);
    for v in file["hash_only_vectors"].as_array().unwrap() {
        assert_eq!(
            personal_message_hash(&message_of(v)).to_vec(),
            hex_bytes(v["message_hash"].as_str().unwrap()),
            "{}",
            v["id"]
        );
    }
}

fn ethers_ready() -> Option<PathBuf> {
    tool("node")?;
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if js.join("node_modules/ethers").is_dir() {
        return Some(js);
    }
    assert!(!in_ci(), "ethers is not installed: run npm ci --prefix tests/js");
    eprintln!("skipping: ethers is not installed (npm ci --prefix tests/js)");
    None
}

async fn wallet(js: &Path, args: &[&str]) -> Value {
    let out = tokio::process::Command::new("node")
        .args(["--experimental-websocket", "--no-warnings"])
        .arg(js.join("eth_wallet.mjs"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "eth_wallet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text.trim().to_owned()))
}

const WALLET_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const OTHER_KEY: &str = "0x0123456789012345678901234567890123456789012345678901234567890123";

#[tokio::test]
async fn an_ethers_wallet_signs_in_and_every_altered_field_is_refused() {
    let Some(js) = ethers_ready() else { return };
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let address = wallet(&js, &["address", WALLET_KEY]).await;
    let address = address.as_str().unwrap().to_owned();
    // Whitelisted in lowercase: the identity is the same account.
    let id = Identity::parse(&address.to_lowercase()).unwrap();
    assert_eq!(id.did().as_str(), format!("did:pkh:eip155:1:{address}"));
    let url = s.url();

    // Not yet whitelisted.
    let out = wallet(&js, &["join", &url, room.as_str(), WALLET_KEY]).await;
    assert_eq!(out["code"], "not-admitted", "{out}");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("unknown key") && e.method.as_deref() == Some("eth")).await;

    s.server().gateway().store.allow(&room, &id, "wallet").await;
    s.server().gateway().rooms.invalidate(&room);
    for case in ["checksum", "lower"] {
        let out = wallet(&js, &["join", &url, room.as_str(), WALLET_KEY, "--address-case", case]).await;
        assert_eq!(out["type"], "welcome", "{case}: {out}");
        assert_eq!(out["identity"], id.did().as_str());
    }

    for (field, named) in [
        ("domain", "domain"),
        ("uri", "URI"),
        ("nonce", "nonce"),
        ("chain", "chain ID"),
        ("issued", "issued-at"),
        ("statement", "statement"),
    ] {
        let out = wallet(&js, &["join", &url, room.as_str(), WALLET_KEY, "--tamper", field]).await;
        assert_eq!(out["code"], "not-admitted", "{field}: {out}");
        let reason = format!("the signed message's {named} differs from the one issued");
        s.audit_has(&room, |e| e.reason.as_deref() == Some(reason.as_str())).await;
    }

    // Signed by another wallet than the address claimed.
    let out = wallet(&js, &["join", &url, room.as_str(), WALLET_KEY, "--wrong-key", OTHER_KEY]).await;
    assert_eq!(out["code"], "not-admitted", "{out}");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("bad signature") && e.method.as_deref() == Some("eth")).await;
    s.shutdown().await;
}

#[tokio::test]
async fn the_challenge_carries_a_siwe_message_built_from_it() {
    let s = TestServer::with(|c| c.eth_chain_id = 10).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let addr = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
    let challenge = c
        .request(serde_json::json!({"type": "request", "roomId": room.as_str(), "address": addr, "fingerprint": "sha-256 AB:CD"}))
        .await
        .unwrap();
    let siwe = SiweMessage::parse(challenge["siwe"].as_str().unwrap()).unwrap();
    let origin = format!("http://localhost:{}", s.server().addr().port());
    assert_eq!(s.server().gateway().origin, origin);
    assert_eq!(siwe.domain, origin.trim_start_matches("http://"));
    assert_eq!(siwe.uri, origin);
    assert_eq!(siwe.address.to_string(), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
    assert_eq!(siwe.chain_id, 10);
    assert_eq!(siwe.nonce, challenge["payload"]["nonce"]);
    assert_eq!(siwe.issued_at, challenge["payload"]["issuedAt"]);
    assert_eq!(siwe.request_id.as_deref(), Some(room.as_str()));
    assert!(siwe.statement.unwrap().contains(room.as_str()));
    assert!(siwe.expiration_time.is_some());
    assert_eq!(siwe.resources, vec!["urn:keygate:dtls-fingerprint:sha-256:AB:CD".to_owned()]);

    // A bad address is a clear error; eth without an address is explained.
    c.send(&serde_json::json!({"type": "request", "roomId": room.as_str(), "address": "0x123"})).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "bad-message");
    let challenge = c.request(join(&room)).await.unwrap();
    assert!(challenge.get("siwe").is_none());
    c.send(&serde_json::json!({"type": "auth", "method": "eth", "payload": challenge["payload"], "message": siwe_text(), "signature": format!("0x{}", "11".repeat(65))}))
        .await
        .unwrap();
    let err = c.recv().await.unwrap();
    assert_eq!(err["code"], "bad-proof", "{err}");
    s.shutdown().await;
}

fn siwe_text() -> String {
    "example.com wants you to sign in with your Ethereum account:\n0x2c7536E3605D9C16a7a3D7b1898e529396a65c23\n\n\nURI: https://example.com\nVersion: 1\nChain ID: 1\nNonce: abcdefgh1\nIssued At: 2026-01-01T00:00:00.000Z".into()
}
