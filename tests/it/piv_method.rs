//! Method `piv`: chains, keys and signatures made with OpenSSL for P-256, P-384 and
//! RSA, admitting through the real server. The attestation checks on chains from
//! real YubiKeys (piv-go and TameMyCerts data) sit beside them, in `verify::vectors`.

use crate::common::piv_pki::TestPiv;
use crate::common::*;
use keygate::verify::Challenge;
use serde_json::{json, Value};

#[tokio::test]
async fn piv_slots_sign_their_way_in_with_attestation_and_policy() {
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("p256", "P-256", 0x02, 0x02);
    pki.slot("p384", "P-384", 0x03, 0x01);
    pki.slot("rsa", "rsa", 0x01, 0x03);
    let roots = work.path().join("root.pem");
    let s = TestServer::with(|c| c.piv_attestation_roots = vec![roots.clone()]).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    for name in ["p256", "p384", "rsa"] {
        gw.store.allow(&room, &pki.identity(name), name).await;
    }
    gw.rooms.invalidate(&room);

    // Plain signatures with each key type, then with attestation.
    for name in ["p256", "p384", "rsa"] {
        for attested in [None, Some(name)] {
            let mut c = s.connect().await;
            let challenge = c.request(join(&room)).await.unwrap();
            c.send(&pki.auth(&challenge, name, attested)).await.unwrap();
            let welcome = c.expect("welcome").await.unwrap_or_else(|e| panic!("{name} {attested:?}: {e}"));
            assert_eq!(welcome["identity"], pki.identity(name).did().as_str());
        }
    }
    let event = s
        .audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("attested YubiKey serial 10243688")))
        .await;
    assert!(event.reason.unwrap().contains("firmware 5.4.3"));
    // What an attestation showed is kept with the key, so the room page shows it
    // after the audit rows that told of it are gone (retention).
    s.server().gateway().audit.flush().await;
    let past_everything = chrono::Utc::now() + chrono::Duration::days(1);
    gw.store.prune_expired(past_everything, Some(chrono::Duration::zero())).await.unwrap();
    let (card, host) = (pki.identity("p256"), identity(&owner));
    let listed = [card.did().as_str(), host.did().as_str()];
    let facts = gw.store.attestations_of(&listed).await.unwrap();
    assert!(facts[pki.identity("p256").did().as_str()].contains("firmware 5.4.3"), "{facts:?}");
    assert!(!facts.contains_key(identity(&owner).did().as_str()), "{facts:?}");

    // The whitelist entry demands touch always: p256 (touch always) passes, p384
    // (touch never) and an unattested proof do not.
    gw.store.set_piv_requirement(&room, &pki.identity("p256"), Some("touch:always")).await;
    gw.store.set_piv_requirement(&room, &pki.identity("p384"), Some("touch:always")).await;
    gw.rooms.invalidate(&room);
    let try_join = |name: &'static str, attested: Option<&'static str>| {
        let (url, room, pki) = (s.url(), room.clone(), &pki);
        async move {
            let mut c = keygate::client::ws::Client::connect(&url).await.unwrap();
            let challenge = c.request(join(&room)).await.unwrap();
            c.send(&pki.auth(&challenge, name, attested)).await.unwrap();
            c.recv().await.unwrap()
        }
    };
    assert_eq!(try_join("p256", Some("p256")).await["type"], "welcome");
    // The card's holder is told which requirement it did not meet.
    let refused = try_join("p256", None).await;
    assert_eq!(refused["code"], "restricted");
    assert!(refused["message"].as_str().unwrap().starts_with("the whitelist entry requires a YubiKey attestation"));
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the whitelist entry requires a YubiKey attestation")).await;
    assert_eq!(try_join("p384", Some("p384")).await["code"], "restricted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the whitelist entry requires touch policy always or stricter"))
        .await;

    // An attestation of another key is refused.
    assert_eq!(try_join("rsa", Some("p256")).await["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the attested key is not the slot certificate's key")).await;

    // A signature by another key than the certificate's.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let mut auth = pki.auth(&challenge, "rsa", None);
    auth["signature"] = json!(pki.sign("p384", &challenge["payload"].to_string()));
    c.send(&auth).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("bad signature") && e.method.as_deref() == Some("piv")).await;
    s.shutdown().await;
}

#[tokio::test]
async fn attestation_needs_a_configured_root() {
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("p256", "P-256", 0x02, 0x02);
    let s = TestServer::start().await; // no roots configured
    let owner = key();
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.allow(&room, &pki.identity("p256"), "card").await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&pki.auth(&challenge, "p256", Some("p256"))).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("no PIV attestation roots"))).await;
    s.shutdown().await;
}

#[test]
fn malformed_piv_proofs_are_refused_before_any_crypto() {
    use keygate::verify::{Verifier, VerifyError};
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("p256", "P-256", 0x02, 0x02);
    let verifier = keygate::verify::PivVerifier::new(Vec::new());
    let cert = pki.text("p256.pem");
    let sig = pki.sign("p256", "hello");
    let claim =
        |auth: Value| verifier.claim(&auth, &Challenge::payload(b"")).map(|c| c.identity.did().as_str().to_owned());
    // The algorithm must match the certificate's key.
    let wrong = claim(json!({"certificate": cert, "signature": sig, "algorithm": "RSA-PKCS1-SHA256"}));
    assert!(matches!(wrong, Err(VerifyError::Malformed(m)) if m.contains("does not match")));
    assert!(matches!(
        claim(json!({"certificate": "not a certificate", "signature": sig})),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(claim(json!({"certificate": cert})), Err(VerifyError::Malformed(m)) if m.contains("signature")));
    assert!(matches!(claim(json!({"signature": sig})), Err(VerifyError::Malformed(m)) if m.contains("certificate")));
    // A well-formed proof names the slot key, and checks over exactly the text signed.
    let ok = verifier
        .claim(
            &json!({"certificate": cert, "signature": sig, "algorithm": "ECDSA-P256-SHA256"}),
            &Challenge::payload(b"hello"),
        )
        .unwrap();
    assert_eq!(ok.identity, pki.identity("p256"));
    assert!(ok.check().is_ok());
    let again =
        verifier.claim(&json!({"certificate": cert, "signature": sig}), &Challenge::payload(b"hello!")).unwrap();
    assert_eq!(again.check().unwrap_err(), VerifyError::BadSignature);
}

/// Security item 2: anyone with a YubiKey holds an attested slot key. A "slot
/// attestation" for a software key signed with it, presented with that genuine
/// slot attestation as the "device" certificate (and the real device certificate
/// as the chain), must not pass for an attested key with made-up facts.
#[tokio::test]
async fn a_slot_attestation_cannot_act_as_the_device_certificate() {
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("mine", "P-256", 0x01, 0x01);
    pki.forged_slot("soft", "mine", 0x03, 0x02);
    let roots = work.path().join("root.pem");
    let s = TestServer::with(|c| c.piv_attestation_roots = vec![roots.clone()]).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    gw.store.allow(&room, &pki.identity("soft"), "victim").await;
    gw.store.set_piv_requirement(&room, &pki.identity("soft"), Some("pin:always,touch:always")).await;
    gw.rooms.invalidate(&room);

    let forged = |challenge: &Value, chain: Vec<String>| {
        let mut auth = pki.auth(challenge, "soft", None);
        auth["attestation"] =
            json!({"slot": pki.text("soft.att.pem"), "device": pki.text("mine.att.pem"), "chain": chain});
        auth
    };
    for chain in [vec![pki.text("device.pem")], Vec::new(), vec![pki.text("device.pem"), pki.text("mine.att.pem")]] {
        let mut c = s.connect().await;
        let challenge = c.request(join(&room)).await.unwrap();
        c.send(&forged(&challenge, chain)).await.unwrap();
        assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    }
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("cannot issue attestations"))).await;
    assert!(
        !s.audit(&room)
            .await
            .iter()
            .any(|e| e.event == "admitted" && e.reason.as_deref().is_some_and(|r| r.contains("attested YubiKey"))),
        "no made-up attestation reached the audit log"
    );
    s.shutdown().await;
}
