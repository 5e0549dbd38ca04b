//! End-to-end media keys: each call page's ECDH key is vouched for by the proof it
//! signs, whatever the method, forwarded to the room with the peer, and signed again
//! on every confirmation and resume (docs/e2ee.md).

use crate::common::*;
use keygate::client::ws::Client;
use serde_json::json;

/// An ECDH P-256 public key as a call page sends it: raw, uncompressed, base64url.
pub fn media_key() -> String {
    use aws_lc_rs::agreement::{EphemeralPrivateKey, ECDH_P256};
    use base64::Engine;
    let secret = EphemeralPrivateKey::generate(&ECDH_P256, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.compute_public_key().unwrap().as_ref())
}

/// The media key is a field of the signed payload, reaches the room with the peer,
/// and is signed again when the peer is asked to confirm who it is.
#[tokio::test]
async fn a_media_key_is_signed_forwarded_and_signed_again() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;

    let (fp, mk) = ("sha-256 AB:CD:EF:01", media_key());
    let mut b = s.connect().await;
    let request = json!({"type": "request", "roomId": room.as_str(), "fingerprint": fp, "mediaKey": mk});
    let challenge = b.request(request).await.unwrap();
    assert_eq!(challenge["payload"]["mediaKey"], mk.as_str());
    let signed = challenge["payload"].to_string();
    assert!(signed.contains(&format!(r#""fingerprint":"{fp}","mediaKey":"{mk}"}}"#)), "{signed}");
    b.send(&Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    let welcome = b.expect("welcome").await.unwrap();

    let joined = until(&mut a, "peer-joined").await;
    assert_eq!(joined["mediaKey"], mk.as_str());
    assert_eq!(joined["fingerprint"], fp);
    // The forwarded proof is over the text that names the key, so a peer checks it.
    assert_eq!(joined["proof"]["signed"], signed.as_str());

    a.send(&json!({"type": "verify-peer", "peerId": welcome["peerId"]})).await.unwrap();
    let again = b.expect("challenge").await.unwrap();
    assert_eq!(again["payload"]["purpose"], "reverify");
    assert_eq!(again["payload"]["mediaKey"], mk.as_str());
    s.shutdown().await;
}

/// A wallet signs a Sign-In with Ethereum message, not the payload: the media key
/// is one of its resources, beside the DTLS fingerprint.
#[tokio::test]
async fn a_wallet_signs_its_media_key_as_a_resource() {
    let s = TestServer::start().await;
    let room = s.room(&key(), &[]).await;
    let mut c = s.connect().await;
    let mk = media_key();
    let addr = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
    let request = json!({"type": "request", "roomId": room.as_str(), "address": addr,
                         "fingerprint": "sha-256 AB:CD", "mediaKey": mk});
    let challenge = c.request(request).await.unwrap();
    let siwe = keygate::verify::siwe::SiweMessage::parse(challenge["siwe"].as_str().unwrap()).unwrap();
    assert_eq!(
        siwe.resources,
        vec!["urn:keygate:dtls-fingerprint:sha-256:AB:CD".to_owned(), format!("urn:keygate:media-key:{mk}")]
    );
    s.shutdown().await;
}

/// Anything but an uncompressed P-256 point in base64url is refused before a
/// challenge is issued, with what it should be.
#[tokio::test]
async fn a_malformed_media_key_is_refused_with_what_it_should_be() {
    let s = TestServer::start().await;
    let room = s.room(&key(), &[]).await;
    let good = media_key();
    let mut off_curve = good.clone().into_bytes();
    off_curve[60] = if off_curve[60] == b'A' { b'B' } else { b'A' };
    let off_curve = String::from_utf8(off_curve).unwrap();
    for (bad, says) in [
        ("x".repeat(10), "uncompressed P-256 public key"),
        ("B".repeat(1000), "uncompressed P-256 public key"),
        (format!("{}+", &good[..86]), "base64url"),
        (off_curve, "not a point on the P-256 curve"),
    ] {
        let mut c = s.connect().await;
        c.send(&json!({"type": "request", "roomId": room.as_str(), "mediaKey": bad})).await.unwrap();
        let refused = c.recv().await.unwrap();
        assert_eq!(refused["code"], "bad-message", "{refused}");
        assert!(refused["message"].as_str().unwrap().contains(says), "{refused}");
    }
    s.shutdown().await;
}

/// Four people with four methods in a call through Janus, every frame encrypted in
/// the browser: each decodes the others and sees the sender's picture; a curious
/// server subscribed to Janus without keys receives frames it cannot show; a page
/// holding another ECDH key than the one it signed is flagged and not shown; a
/// removal moves every sender to a key the removed peer never had
/// (tests/js/e2ee.browser.mjs).
#[tokio::test(flavor = "multi_thread")]
async fn four_methods_meet_through_janus_end_to_end_encrypted() {
    let Some(janus) = JanusServer::start() else { return };
    let url = janus.url.clone();
    let Some((s, mut node, artifacts)) =
        start_browser_script("e2ee.browser.mjs", |c| c.janus = Some(url.clone())).await
    else {
        return;
    };
    node.env("JANUS", &janus.url);
    let stdout = run_node(node, &artifacts, "e2ee.browser.mjs").await;
    if let Some(figures) = stdout.lines().find(|l| l.starts_with('{')) {
        eprintln!("e2ee figures: {figures}");
    }
    // Mallory was reported, by what her media key failed.
    let room = s.server().gateway().store.rooms().await.unwrap().into_iter().next().unwrap().0.id;
    s.audit_has(&room, |e| {
        e.event == "peer-reported" && e.reason.as_deref().is_some_and(|r| r.starts_with("media-key-mismatch"))
    })
    .await;
    s.shutdown().await;
    drop(janus);
}

/// An ssh-keygen key of `kind` (`-t`, with `-b bits`), and the line of its public key.
fn ssh_keygen(dir: &std::path::Path, kind: &str, bits: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(format!("id_{kind}{bits}"));
    let mut made = std::process::Command::new("ssh-keygen");
    made.args(["-q", "-N", "", "-t", kind, "-C", "", "-f"]).arg(&path);
    if !bits.is_empty() {
        made.args(["-b", bits]);
    }
    assert!(made.status().unwrap().success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public)
}

/// Signs the challenge's payload as its ready-to-copy command does, with `key`.
fn ssh_keygen_sign(key: &std::path::Path, challenge: &serde_json::Value) -> serde_json::Value {
    let signature = sign_with_ssh_keygen(key, "keygate", challenge["payload"].to_string().as_bytes());
    json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": signature})
}

/// Every method's proof, as the server forwards it with its peer, is checked by
/// Chromium itself (static/identity.js): ssh-keygen's Ed25519, ECDSA P-256, P-384
/// and RSA-3072 signatures, a wallet's Sign-In with Ethereum message (secp256k1
/// recovery in the page), a PIV slot's signature, a browser key's and a passkey's
/// assertion; each also
/// tampered three ways (another payload, another media key, another identity) and
/// refused (tests/js/proofs.browser.mjs).
#[tokio::test(flavor = "multi_thread")]
async fn browsers_check_every_method_s_proof_themselves() {
    use keygate::client::signer::ProofSigner;
    use keygate::verify::Method;
    let Some(_) = tool("ssh-keygen") else { return };
    let Some((s, mut node, artifacts)) =
        start_browser_script("proofs.browser.mjs", |c| c.max_peers_per_room = 16).await
    else {
        return;
    };
    let origin = s.server().gateway().origin.clone();
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let store = &s.server().gateway().store;
    let (mut watcher, _) = admitted(&s, &room, &owner).await;
    let dir = tempfile::tempdir().unwrap();

    // Each signer: its label, its whitelist line, and how it answers a challenge.
    type Answer = Box<dyn Fn(&serde_json::Value) -> serde_json::Value>;
    let mut signers: Vec<(&str, String, serde_json::Value, Answer)> = Vec::new();
    for (label, kind, bits) in [
        ("ssh ed25519", "ed25519", ""),
        ("ssh ecdsa-p256", "ecdsa", "256"),
        ("ssh ecdsa-p384", "ecdsa", "384"),
        ("ssh rsa-3072", "rsa", "3072"),
    ] {
        let (path, public) = ssh_keygen(dir.path(), kind, bits);
        signers.push((label, public, json!({}), Box::new(move |c| ssh_keygen_sign(&path, c))));
    }
    let methods = [
        ("wallet", Method::Eth),
        ("piv slot", Method::Piv),
        ("browser key", Method::Webcrypto),
        ("passkey", Method::Webauthn),
    ];
    for (label, method) in methods {
        let mut signer = ProofSigner::generate_for(method, &origin).unwrap();
        signer.enroll(&s.http()).await.unwrap();
        let extra = match &signer {
            ProofSigner::Eth(_, address) => json!({"address": address.to_string()}),
            ProofSigner::Webauthn(..) => json!({"webauthn": true}),
            _ => json!({}),
        };
        signers.push((label, signer.whitelist_entry().unwrap(), extra, Box::new(move |c| signer.auth(c).unwrap())));
    }

    let (mut peers, mut clients) = (Vec::new(), Vec::new());
    for (label, entry, extra, answer) in &signers {
        let identity = keygate::identity::Identity::parse(entry.trim()).unwrap();
        store.allow(&room, &identity, label).await;
        let mut c = s.connect().await;
        let mut request = json!({"type": "request", "roomId": room.as_str(), "fingerprint": "sha-256 AB:CD:EF:01", "mediaKey": media_key()});
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let challenge = c.request(request).await.unwrap();
        c.send(&answer(&challenge)).await.unwrap();
        c.expect("welcome").await.unwrap_or_else(|e| panic!("{label}: {e}"));
        let mut joined = until(&mut watcher, "peer-joined").await;
        assert!(joined.get("proof").is_some(), "{label}: the server forwards its proof: {joined}");
        joined.as_object_mut().unwrap().remove("type");
        peers.push(json!([label, joined]));
        clients.push(c);
    }
    let file = dir.path().join("peers.json");
    std::fs::write(&file, serde_json::to_string(&peers).unwrap()).unwrap();
    node.arg(&file).arg(room.as_str());
    let stdout = run_node(node, &artifacts, "proofs.browser.mjs").await;
    if let Some(figures) = stdout.lines().find(|l| l.starts_with('[')) {
        eprintln!("proof checks: {figures}");
    }
    s.shutdown().await;
}
