//! Method `webauthn` through the real server: a credential registered over the JSON
//! endpoints and used to join, with webauthn-authenticator-rs's software passkey
//! standing in for the browser and authenticator; and every refusal the issue of
//! passkeys calls for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use keygate::ids::RoomId;
use serde_json::{json, Value};
use url::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs_core::proto::{CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse};

/// Registers a new credential on `authenticator`; returns (identity, credential id).
async fn register(s: &TestServer, origin: &Url, authenticator: &mut SoftPasskey) -> (String, String) {
    let (status, started) = post_json(s, "/webauthn/register/start", &json!({"label": "alice"})).await;
    assert_eq!(status, 200, "{started}");
    let options: CreationChallengeResponse = serde_json::from_value(started["options"].clone()).unwrap();
    let credential = authenticator.do_registration(origin.clone(), options).unwrap();
    let body = json!({"registrationId": started["registrationId"], "credential": credential, "label": "alice"});
    let (status, finished) = post_json(s, "/webauthn/register/finish", &body).await;
    assert_eq!(status, 200, "{finished}");
    assert!(finished["identity"].as_str().unwrap().starts_with("did:key:zDn"), "{finished}");
    (finished["identity"].as_str().unwrap().to_owned(), finished["credentialId"].as_str().unwrap().to_owned())
}

/// request → challenge (with WebAuthn options) → the authenticator's assertion.
async fn assert_for(
    c: &mut keygate::client::ws::Client,
    room: &RoomId,
    origin: &Url,
    authenticator: &mut SoftPasskey,
    rp_override: Option<&str>,
    allow: Option<&str>,
    user_verification: Option<&str>,
) -> (Value, PublicKeyCredential) {
    let challenge = c.request(json!({"type": "request", "roomId": room.as_str(), "webauthn": true})).await.unwrap();
    let mut options = challenge["webauthn"].clone();
    // The WebAuthn challenge is the payload text itself.
    let expected =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, challenge["payload"].to_string());
    assert_eq!(options["publicKey"]["challenge"], expected.as_str());
    if let Some(rp) = rp_override {
        options["publicKey"]["rpId"] = json!(rp);
    }
    // A client that ignores the server's requirement (or a forged one).
    if let Some(uv) = user_verification {
        options["publicKey"]["userVerification"] = json!(uv);
    }
    // A discoverable passkey answers even when the server offers no credential.
    if let Some(id) = allow {
        options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": id}]);
    }
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let assertion = authenticator.do_authentication(origin.clone(), options).unwrap();
    (challenge, assertion)
}

fn auth(challenge: &Value, credential: &PublicKeyCredential) -> Value {
    json!({"type": "auth", "method": "webauthn", "payload": challenge["payload"], "credential": credential})
}

#[tokio::test]
async fn a_software_passkey_registers_and_joins_and_every_refusal_holds() {
    let port = free_port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let sub = Url::parse(&format!("https://sub.localhost:{port}")).unwrap();
    let s = TestServer::with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.webauthn_origins =
            vec![origin.as_str().trim_end_matches('/').to_owned(), sub.as_str().trim_end_matches('/').to_owned()];
    })
    .await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let mut passkey = SoftPasskey::new(false);
    let (did, credential_id) = register(&s, &origin, &mut passkey).await;
    let identity = keygate::identity::Identity::parse(&did).unwrap();

    // Registered but not whitelisted: its credential is not offered, and it is refused.
    let mut c = s.connect().await;
    let (challenge, assertion) =
        assert_for(&mut c, &room, &origin, &mut passkey, None, Some(&credential_id), None).await;
    assert_eq!(challenge["webauthn"]["publicKey"]["allowCredentials"], json!([]));
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.starts_with("unknown key"))).await;

    gw.store.allow(&room, &identity, "alice's passkey", "test").await.unwrap();
    gw.rooms.invalidate(&room);
    let mut c = s.connect().await;
    let (challenge, assertion) = assert_for(&mut c, &room, &origin, &mut passkey, None, None, None).await;
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    let welcome = c.expect("welcome").await.unwrap();
    assert_eq!(welcome["identity"], did);
    s.audit_has(&room, |e| e.event == "admitted" && e.method.as_deref() == Some("webauthn")).await;

    // Replayed: the same assertion answering a new challenge.
    let mut c2 = s.connect().await;
    let fresh = c2.request(json!({"type": "request", "roomId": room.as_str(), "webauthn": true})).await.unwrap();
    c2.send(&auth(&fresh, &assertion)).await.unwrap();
    assert_eq!(c2.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the assertion answers another challenge")).await;

    // Made on another origin (not allowed).
    let evil = Url::parse(&format!("https://evil.localhost:{port}")).unwrap();
    let mut c = s.connect().await;
    let (challenge, assertion) = assert_for(&mut c, &room, &evil, &mut passkey, None, None, None).await;
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("another origin or relying party"))).await;

    // Made on an allowed origin but for another relying party id.
    let before = s.audit(&room).await.len();
    let mut c = s.connect().await;
    let (challenge, assertion) = assert_for(&mut c, &room, &sub, &mut passkey, Some("sub.localhost"), None, None).await;
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    let events = s.audit(&room).await;
    assert!(events.len() > before);
    assert!(
        events[0].reason.as_deref().is_some_and(|r| r.contains("another origin or relying party")),
        "{:?}",
        events[0]
    );

    // The stored counter is ahead of the authenticator's: a possible clone.
    gw.store.set_counter(&credential_id, 1_000).await.unwrap();
    let mut c = s.connect().await;
    let (challenge, assertion) = assert_for(&mut c, &room, &origin, &mut passkey, None, None, None).await;
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("counter went backwards"))).await;
    gw.store.set_counter(&credential_id, 0).await.unwrap();

    // The room requires user verification; this authenticator only proves presence.
    gw.store.set_require_user_verification(&room, true).await.unwrap();
    gw.rooms.invalidate(&room);
    let mut c = s.connect().await;
    let (challenge, assertion) =
        assert_for(&mut c, &room, &origin, &mut passkey, None, None, Some("discouraged")).await;
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("user verification"))).await;

    // Without asking for WebAuthn options, a webauthn proof is explained.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "bad-proof");
    s.shutdown().await;
}

#[tokio::test]
async fn registration_errors_are_clear() {
    let s = TestServer::start().await;
    let (status, body) =
        post_json(&s, "/webauthn/register/finish", &json!({"registrationId": "nope", "credential": {}})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("PublicKeyCredential"), "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn a_passkey_signs_in_to_the_host_pages() {
    let port = free_port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let s = TestServer::with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let mut passkey = SoftPasskey::new(false);
    let (did, credential_id) = register(&s, &origin, &mut passkey).await;
    let (status, ch) = post_json(&s, "/signin/challenge", &json!({})).await;
    assert_eq!(status, 200);
    let mut options = ch["webauthn"].clone();
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]), "sign-in offers discoverable credentials");
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let assertion = passkey.do_authentication(origin.clone(), serde_json::from_value(options).unwrap()).unwrap();
    let answer = json!({"challengeId": ch["challengeId"], "method": "webauthn", "payload": ch["payload"], "credential": assertion});
    let (status, who) = post_json(&s, "/signin/verify", &answer).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["identity"], did);
    // The same assertion again: the challenge is spent.
    let (status, _) = post_json(&s, "/signin/verify", &answer).await;
    assert_eq!(status, 403);
    s.shutdown().await;
}
