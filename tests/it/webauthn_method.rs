//! Method `webauthn` through the real server: a credential registered over the JSON
//! endpoints and used to join, with webauthn-authenticator-rs's software passkey
//! standing in for the browser and authenticator; and every refusal the issue of
//! passkeys calls for.

use crate::common::*;
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

    gw.store.allow(&room, &identity, "alice's passkey").await;
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
    gw.store.set_require_user_verification(&room, true).await;
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

/// Security item 1: the room's challenge lists credential ids to anyone, so a
/// registration that reuses one must be refused (409, nothing stored); otherwise a
/// stranger's key would take over the victim's identity.
#[tokio::test]
async fn a_known_credential_id_cannot_be_registered_again() {
    use keygate::client::soft_webauthn::SoftAuthenticator;
    let port = free_port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let s = TestServer::with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let mut victim = SoftPasskey::new(false);
    let (did, credential_id) = register(&s, &origin, &mut victim).await;
    gw.store.allow(&room, &keygate::identity::Identity::parse(&did).unwrap(), "victim").await;
    gw.rooms.invalidate(&room);

    // The stranger reads the victim's credential id from a challenge.
    let mut c = s.connect().await;
    let challenge = c.request(json!({"type": "request", "roomId": room.as_str(), "webauthn": true})).await.unwrap();
    let listed = challenge["webauthn"]["publicKey"]["allowCredentials"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed, credential_id);
    let raw_id = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &listed).unwrap();
    let origin_text = origin.as_str().trim_end_matches('/');
    let attacker = SoftAuthenticator::new("localhost", origin_text).unwrap().with_credential_id(&raw_id);
    let (status, started) = post_json(&s, "/webauthn/register/start", &json!({"label": "mallory"})).await;
    assert_eq!(status, 200);
    let credential = attacker.register(&started["options"]).unwrap();
    let body = json!({"registrationId": started["registrationId"], "credential": credential, "label": "mallory"});
    let (status, answer) = post_json(&s, "/webauthn/register/finish", &body).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("already registered"), "{answer}");

    // Nothing changed: the attacker's assertion is refused, the victim still joins.
    let stored = gw.store.credential(&credential_id).await.unwrap().unwrap();
    assert_eq!(stored.identity.as_str(), did);
    assert_eq!(keygate::verify::webauthn::load_credential(&stored).unwrap().1.did().as_str(), did);
    let mut c = s.connect().await;
    let challenge = c.request(json!({"type": "request", "roomId": room.as_str(), "webauthn": true})).await.unwrap();
    let forged = attacker.assert(&challenge["webauthn"]).unwrap();
    c.send(&json!({"type": "auth", "method": "webauthn", "payload": challenge["payload"], "credential": forged}))
        .await
        .unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    let mut c = s.connect().await;
    let (challenge, assertion) = assert_for(&mut c, &room, &origin, &mut victim, None, None, None).await;
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    assert_eq!(c.expect("welcome").await.unwrap()["identity"], did);
    s.shutdown().await;
}

/// Security item 1, second half: wherever a stored credential yields an identity,
/// the identity is recomputed from the stored key; a row whose key does not match
/// its identity column admits no one.
#[tokio::test]
async fn a_credential_row_whose_key_is_not_its_identity_admits_no_one() {
    use keygate::client::soft_webauthn::SoftAuthenticator;
    let port = free_port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let s = TestServer::with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let owner = key();
    let victim = key();
    let room = s.room(&owner, &[&victim]).await;
    let gw = s.server().gateway();
    // A row pointing the attacker's credential at the victim's identity (as the
    // overwrite used to leave behind).
    let origin_text = origin.as_str().trim_end_matches('/');
    let attacker = SoftAuthenticator::new("localhost", origin_text).unwrap();
    let (status, started) = post_json(&s, "/webauthn/register/start", &json!({})).await;
    assert_eq!(status, 200);
    let credential = attacker.register(&started["options"]).unwrap();
    let body = json!({"registrationId": started["registrationId"], "credential": credential});
    let (status, registered) = post_json(&s, "/webauthn/register/finish", &body).await;
    assert_eq!(status, 200, "{registered}");
    sqlx::query("UPDATE webauthn_credentials SET identity = ? WHERE id = ?")
        .bind(identity(&victim).did().as_str())
        .bind(registered["credentialId"].as_str().unwrap())
        .execute(&db_pool(&gw.settings.db).await)
        .await
        .unwrap();
    let mut c = s.connect().await;
    let challenge = c.request(json!({"type": "request", "roomId": room.as_str(), "webauthn": true})).await.unwrap();
    assert_eq!(challenge["webauthn"]["publicKey"]["allowCredentials"], json!([]), "the row is not offered");
    let forged = attacker.assert(&challenge["webauthn"]).unwrap();
    c.send(&json!({"type": "auth", "method": "webauthn", "payload": challenge["payload"], "credential": forged}))
        .await
        .unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    // Nor does it sign in to the host pages as the victim.
    let (_, ch) = post_json(&s, "/signin/challenge", &json!({})).await;
    let forged = attacker.assert(&ch["webauthn"]).unwrap();
    let answer =
        json!({"challengeId": ch["challengeId"], "method": "webauthn", "payload": ch["payload"], "credential": forged});
    let (status, who) = post_json(&s, "/signin/verify", &answer).await;
    assert_eq!(status, 403, "{who}");
    s.shutdown().await;
}

/// A room whose list has more passkey holders than a challenge offers as a hint:
/// every one of them gets in (each answer is checked against the credential it
/// names), and a large room offers none of its members' credential ids.
#[tokio::test]
async fn every_passkey_on_a_list_gets_in_however_many_there_are() {
    use keygate::client::signer::ProofSigner;
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let s = TestServer::with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.webauthn_origins = vec![origin.clone()];
        c.http_requests_per_minute = 100_000;
    })
    .await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let hints = keygate::store::CREDENTIAL_HINTS as usize;
    let mut holders = Vec::new();
    for _ in 0..hints + 6 {
        let mut signer = ProofSigner::generate_for(keygate::verify::Method::Webauthn, &origin).unwrap();
        signer.enroll(&s.http()).await.unwrap();
        let did = keygate::identity::Identity::parse(&signer.whitelist_entry().unwrap()).unwrap();
        gw.store.allow(&room, &did, "holder").await;
        holders.push(signer);
    }
    // Registered last, so not among the credentials offered as a hint.
    for signer in [&holders[0], holders.last().unwrap()] {
        let mut c = s.connect().await;
        let challenge = c.request(signer.request(room.as_str())).await.unwrap();
        let offered = challenge["webauthn"]["publicKey"]["allowCredentials"].as_array().unwrap().len();
        assert_eq!(offered, hints, "a small room offers a bounded hint");
        c.send(&signer.auth(&challenge).unwrap()).await.unwrap();
        c.expect("welcome").await.unwrap();
    }

    // A room listing more keys than the hint is read for offers no credential ids.
    let members: Vec<keygate::store::NewEntry> = (0..keygate::store::HINT_ROOMS_UP_TO as usize)
        .map(|i| {
            let raw = [
                (i % 251) as u8,
                (i / 251) as u8,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
                9,
            ];
            let member = keygate::identity::Identity::from_key(keygate::identity::PublicKey::Ed25519(raw));
            keygate::store::NewEntry::labelled(&member, "member")
        })
        .collect();
    keygate::whitelist::Whitelist::new(&gw.store, None)
        .add(&room, keygate::whitelist::Actor::operator(), &members)
        .await
        .unwrap();
    let last = holders.last().unwrap();
    let mut c = s.connect().await;
    let challenge = c.request(last.request(room.as_str())).await.unwrap();
    assert_eq!(challenge["webauthn"]["publicKey"]["allowCredentials"], json!([]), "{challenge}");
    c.send(&last.auth(&challenge).unwrap()).await.unwrap();
    c.expect("welcome").await.unwrap();
    s.shutdown().await;
}

/// Passkeys are asked to be discoverable (with a fallback: "preferred"), and a room
/// can be created with one: the create challenge names no credential, the answer
/// names the registered one, and its holder owns the new room.
#[tokio::test]
async fn a_room_is_created_with_a_discoverable_passkey() {
    let port = free_port();
    let origin = Url::parse(&format!("http://localhost:{port}")).unwrap();
    let s = TestServer::with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let (status, started) = post_json(&s, "/webauthn/register/start", &json!({"label": "creator"})).await;
    assert_eq!(status, 200);
    let selection = &started["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "preferred", "{selection}");
    assert_eq!(selection["requireResidentKey"], false, "{selection}");
    let mut passkey = SoftPasskey::new(false);
    let (did, credential_id) = register(&s, &origin, &mut passkey).await;

    let mut c = s.connect().await;
    let challenge =
        c.request(json!({"type": "request", "create": true, "name": "By passkey", "webauthn": true})).await.unwrap();
    let mut options = challenge["webauthn"].clone();
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]), "no list to hint from: {options}");
    // The software authenticator keeps no discoverable credential: the browser
    // would offer its own; name it here as the browser's list would.
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let assertion = passkey.do_authentication(origin.clone(), serde_json::from_value(options).unwrap()).unwrap();
    c.send(&auth(&challenge, &assertion)).await.unwrap();
    let welcome = c.expect("welcome").await.unwrap();
    assert_eq!(welcome["created"], true);
    assert_eq!(welcome["owner"], true);
    assert_eq!(welcome["identity"], did);
    let room = RoomId::parse(welcome["roomId"].as_str().unwrap()).unwrap();
    let record = s.server().gateway().store.room(&room).await.unwrap().unwrap();
    assert_eq!(record.owners.iter().map(|o| o.to_string()).collect::<Vec<_>>(), vec![did]);
    s.shutdown().await;
}
