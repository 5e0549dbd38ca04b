//! Protocol v1 admission through the real server: the `webcrypto` method and every
//! rule of DESIGN.md "Rules the server keeps".

use crate::common::*;
use keygate::client::ws::{Client, ClientError};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn whitelisted_key_is_admitted_and_peers_see_each_other() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;

    let (mut a, welcome_a) = admitted(&s, &room, &owner).await;
    assert_eq!(welcome_a["identity"], identity(&owner).did().as_str());
    assert_eq!(welcome_a["owner"], true);
    assert_eq!(welcome_a["peers"].as_array().unwrap().len(), 0);

    let mut b = s.connect().await;
    let fp = "sha-256 AB:CD:EF:01:23";
    let challenge = b.request(json!({"type": "request", "roomId": room.as_str(), "fingerprint": fp})).await.unwrap();
    assert_eq!(challenge["payload"]["fingerprint"], fp);
    assert_eq!(challenge["methods"], json!(["eth", "piv", "resume", "ssh", "ticket", "webauthn", "webcrypto"]));
    b.send(&Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    let welcome_b = b.expect("welcome").await.unwrap();
    assert_eq!(welcome_b["identity"], identity(&guest).did().as_str());
    assert_eq!(welcome_b["owner"], false);
    let peers = welcome_b["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["identity"], identity(&owner).did().as_str());
    assert_eq!(peers[0]["label"], "owner");
    assert_eq!(peers[0]["method"], "webcrypto");

    let joined = a.expect("peer-joined").await.unwrap();
    assert_eq!(joined["peerId"], welcome_b["peerId"]);
    assert_eq!(joined["fingerprint"], fp);
    assert_eq!(joined["keyFingerprint"], identity(&guest).fingerprint());
    // The forwarded proof lets A check B's admission itself, over the exact signed text.
    let proof = &joined["proof"];
    assert_eq!(proof["method"], "webcrypto");
    let signed = proof["signed"].as_str().unwrap();
    assert_eq!(signed, challenge["payload"].to_string());
    let sig = base64_url(proof["signature"].as_str().unwrap());
    keygate::verify::WebCryptoVerifier::check_jwk(&proof["publicKey"], signed.as_bytes(), &sig).unwrap();

    b.close().await;
    let left = a.expect("peer-left").await.unwrap();
    assert_eq!(left["peerId"], welcome_b["peerId"]);
    s.audit_has(&room, |e| e.event == "admitted" && e.identity.as_deref() == Some(identity(&guest).did().as_str()))
        .await;
    s.shutdown().await;
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[tokio::test]
async fn create_room_then_whitelist_over_the_socket() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let mut a = s.connect().await;
    let welcome =
        a.join_webcrypto(json!({"type": "request", "create": true, "name": "Standup"}), &owner).await.unwrap();
    assert_eq!(welcome["created"], true);
    assert_eq!(welcome["owner"], true);
    let room = keygate::ids::RoomId::parse(welcome["roomId"].as_str().unwrap()).unwrap();

    a.send(
        &json!({"type": "whitelist", "add": [{"key": guest.public_jwk().to_string(), "label": "guest"}, "nonsense"]}),
    )
    .await
    .unwrap();
    let updated = a.expect("whitelist-updated").await.unwrap();
    assert_eq!(updated["added"][0]["identity"], identity(&guest).did().as_str());
    assert_eq!(updated["added"][0]["label"], "guest");
    assert_eq!(updated["errors"][0]["entry"], 1);
    assert!(
        updated["errors"][0]["error"].as_str().unwrap().contains("accepted")
            || updated["errors"][0]["error"].as_str().unwrap().contains("paste")
    );

    let (_b, welcome_b) = admitted(&s, &room, &guest).await;
    assert_eq!(welcome_b["peers"][0]["identity"], identity(&owner).did().as_str());
    let record = s.server().gateway().store.room(&room).await.unwrap().unwrap();
    assert_eq!(record.name, "Standup");
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_key_is_told_only_not_admitted_and_the_reason_is_audited() {
    let s = TestServer::start().await;
    let (owner, stranger) = (key(), key());
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let err = c.join_webcrypto(join(&room), &stranger).await.unwrap_err();
    match err {
        ClientError::Server { code, message } => {
            assert_eq!(code, "not-admitted");
            assert_eq!(message, "not admitted");
        }
        other => panic!("{other}"),
    }
    let e = s.audit_has(&room, |e| e.event == "refused").await;
    assert_eq!(e.reason.as_deref(), Some("unknown key"));
    assert_eq!(e.identity.as_deref(), Some(identity(&stranger).did().as_str()));
    // The connection survives and may try again.
    c.send(&json!({"type": "ping"})).await.unwrap();
    c.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let s = TestServer::start().await;
    let (owner, guest, other) = (key(), key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let mut auth = Client::webcrypto_auth(&challenge, &other).unwrap();
    auth["publicKey"] = guest.public_jwk(); // claims guest's key, signed by another
    c.send(&auth).await.unwrap();
    assert_eq!(server_code(c.expect("welcome").await.unwrap_err()), "not-admitted");
    let e = s.audit_has(&room, |e| e.event == "refused").await;
    assert_eq!(e.reason.as_deref(), Some("bad signature"));
    s.shutdown().await;
}

#[tokio::test]
async fn a_nonce_is_accepted_once_on_its_own_connection_for_its_room() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let other_room = s.room(&owner, &[&guest]).await;

    // Replay on the same connection, after a refusal consumed the challenge.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let auth = Client::webcrypto_auth(&challenge, &guest).unwrap();
    let mut broken = auth.clone();
    broken["signature"] = json!("AAAA");
    c.send(&broken).await.unwrap();
    assert_eq!(server_code(c.expect("welcome").await.unwrap_err()), "not-admitted");
    c.send(&auth).await.unwrap();
    assert_eq!(server_code(c.expect("welcome").await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("replay: nonce already used")).await;

    // A valid answer taken to another connection (which has its own challenge).
    let mut thief = s.connect().await;
    thief.request(join(&room)).await.unwrap();
    let mut c2 = s.connect().await;
    let challenge2 = c2.request(join(&room)).await.unwrap();
    thief.send(&Client::webcrypto_auth(&challenge2, &guest).unwrap()).await.unwrap();
    assert_eq!(server_code(thief.expect("welcome").await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("nonce was not issued on this connection")).await;

    // The payload of one room presented for another.
    let mut c3 = s.connect().await;
    let challenge3 = c3.request(join(&other_room)).await.unwrap();
    let mut moved = challenge3.clone();
    moved["payload"]["roomId"] = json!(room.as_str());
    c3.send(&Client::webcrypto_auth(&moved, &guest).unwrap()).await.unwrap();
    assert_eq!(server_code(c3.expect("welcome").await.unwrap_err()), "not-admitted");
    s.audit_has(&other_room, |e| e.reason.as_deref() == Some("challenge was issued for another room")).await;

    // And the honest path still works on a fresh challenge.
    c2.send(&Client::webcrypto_auth(&challenge2, &guest).unwrap()).await.unwrap();
    c2.expect("welcome").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn a_stale_challenge_is_refused() {
    let s = TestServer::with(|c| c.freshness_past = Duration::from_millis(300)).await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.send(&Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    assert_eq!(server_code(c.expect("welcome").await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.starts_with("stale"))).await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_private_jwk_is_refused_with_a_clear_error() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let mut auth = Client::webcrypto_auth(&challenge, &guest).unwrap();
    auth["publicKey"]["d"] = json!("c2VjcmV0LXNjYWxhci1ieXRlcy1ub3QtcmVhbC1idXQtMzI");
    c.send(&auth).await.unwrap();
    match c.expect("welcome").await.unwrap_err() {
        ClientError::Server { code, message } => {
            assert_eq!(code, "private-key");
            assert!(message.contains("public JWK"), "{message}");
        }
        other => panic!("{other}"),
    }
    let events = s.audit(&room).await;
    assert!(
        events.iter().all(|e| !format!("{e:?}").contains("c2VjcmV0")),
        "private key material reached the audit log"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn relay_only_between_admitted_peers_of_one_room_with_from_set_by_the_server() {
    let s = TestServer::start().await;
    let (owner, guest, outsider) = (key(), key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let elsewhere = s.room(&outsider, &[]).await;
    let (mut a, wa) = admitted(&s, &room, &owner).await;
    let (mut b, wb) = admitted(&s, &room, &guest).await;
    let (mut x, _) = admitted(&s, &elsewhere, &outsider).await;
    until(&mut a, "peer-joined").await;

    b.send(&json!({"type": "signal", "to": wa["peerId"], "from": "spoofed", "data": {"sdp": "offer"}})).await.unwrap();
    let got = a.expect("signal").await.unwrap();
    assert_eq!(got["from"], wb["peerId"]);
    assert_eq!(got["data"], json!({"sdp": "offer"}));

    // A peer of another room cannot reach A, even knowing its peer id.
    x.send(&json!({"type": "signal", "to": wa["peerId"], "data": 1})).await.unwrap();
    assert_eq!(server_code(x.expect("signal").await.unwrap_err()), "no-such-peer");

    // Nor can a socket that is not admitted.
    let mut anon = s.connect().await;
    anon.send(&json!({"type": "signal", "to": wa["peerId"], "data": 1})).await.unwrap();
    assert_eq!(server_code(anon.expect("signal").await.unwrap_err()), "unauthenticated");
    anon.request(join(&room)).await.unwrap();
    anon.send(&json!({"type": "signal", "to": wa["peerId"], "data": 1})).await.unwrap();
    assert_eq!(server_code(anon.expect("signal").await.unwrap_err()), "unauthenticated");

    // A saw nothing but B's signal.
    a.send(&json!({"type": "ping"})).await.unwrap();
    a.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn only_owners_change_the_whitelist_and_removal_ejects_at_once() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    let (mut b, wb) = admitted(&s, &room, &guest).await;
    until(&mut a, "peer-joined").await;

    b.send(&json!({"type": "whitelist", "remove": [identity(&owner).did().as_str()]})).await.unwrap();
    assert_eq!(server_code(b.expect("whitelist-updated").await.unwrap_err()), "not-owner");

    a.send(&json!({"type": "whitelist", "remove": [identity(&owner).did().as_str()]})).await.unwrap();
    let updated = a.expect("whitelist-updated").await.unwrap();
    assert!(updated["errors"][0]["error"].as_str().unwrap().contains("owner"));

    a.send(&json!({"type": "whitelist", "remove": [guest.public_jwk().to_string()]})).await.unwrap();
    let updated = until(&mut a, "whitelist-updated").await;
    assert_eq!(updated["removed"][0], identity(&guest).did().as_str());
    let kicked = b.recv().await.unwrap();
    assert_eq!(kicked["code"], "revoked");
    assert!(matches!(b.recv().await, Err(ClientError::Closed)));
    let left = until(&mut a, "peer-left").await;
    assert_eq!(left["peerId"], wb["peerId"]);
    assert_eq!(left["reason"], "removed");

    // Removed means refused from now on.
    let mut again = s.connect().await;
    assert_eq!(server_code(again.join_webcrypto(join(&room), &guest).await.unwrap_err()), "not-admitted");
    s.shutdown().await;
}

#[tokio::test]
async fn removal_through_the_cli_ejects_the_live_session() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut b, _) = admitted(&s, &room, &guest).await;
    let jwk = guest.public_jwk().to_string();
    let out = tokio::process::Command::new(keygate_bin())
        .args(["room", "deny", room.as_str(), &jwk, "--db"])
        .arg(&s.db)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kicked = b.recv().await.unwrap();
    assert_eq!(kicked["code"], "revoked");
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_the_connection_survives() {
    let s = TestServer::start().await;
    let mut c = s.connect().await;
    c.send_text("{not json".into()).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "bad-json");
    c.send(&json!({"type": "dance"})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "unknown-type");
    c.send(&json!({"type": "signal"})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "bad-message");
    c.send(&json!({"type": "request", "roomId": "no/slashes"})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "bad-message");
    c.send(&json!({"type": "request", "roomId": "nosuchroom"})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "room-not-found");
    c.send(&json!({"type": "auth", "method": "webcrypto", "payload": {}})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "no-challenge");
    c.send(&json!({"type": "ping"})).await.unwrap();
    c.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn unsupported_method_is_named() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let ch = c.request(join(&room)).await.unwrap();
    c.send(&json!({"type": "auth", "method": "carrier-pigeon", "payload": ch["payload"]})).await.unwrap();
    match c.expect("welcome").await.unwrap_err() {
        ClientError::Server { code, message } => {
            assert_eq!(code, "unsupported-method");
            assert!(message.contains("webcrypto"));
        }
        other => panic!("{other}"),
    }
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_frames_are_refused_and_the_connection_survives() {
    let s = TestServer::with(|c| c.max_frame_bytes = 1024).await;
    let mut c = s.connect().await;
    c.send(&json!({"type": "ping", "pad": "x".repeat(2000)})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "frame-too-large");
    c.send(&json!({"type": "ping"})).await.unwrap();
    c.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn message_rate_is_bounded_with_an_error() {
    let s = TestServer::with(|c| c.messages_per_second = 5).await;
    let mut c = s.connect().await;
    for _ in 0..20 {
        c.send(&json!({"type": "ping"})).await.unwrap();
    }
    let mut limited = 0;
    for _ in 0..20 {
        let f = c.recv().await.unwrap();
        if f["code"] == "rate-limited" {
            limited += 1;
        }
    }
    assert!(limited >= 5, "only {limited} frames were rate limited");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.send(&json!({"type": "ping"})).await.unwrap();
    c.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn a_full_room_says_so() {
    let s = TestServer::with(|c| c.max_peers_per_room = 2).await;
    let (owner, g1, g2) = (key(), key(), key());
    let room = s.room(&owner, &[&g1, &g2]).await;
    let _a = admitted(&s, &room, &owner).await;
    let _b = admitted(&s, &room, &g1).await;
    let mut c = s.connect().await;
    assert_eq!(server_code(c.request(join(&room)).await.unwrap_err()), "room-full");
    s.shutdown().await;
}

#[tokio::test]
async fn total_connections_are_bounded_with_an_error() {
    let s = TestServer::with(|c| c.max_connections = 2).await;
    let mut a = s.connect().await;
    let mut b = s.connect().await;
    a.send(&json!({"type": "ping"})).await.unwrap();
    a.expect("pong").await.unwrap();
    b.send(&json!({"type": "ping"})).await.unwrap();
    b.expect("pong").await.unwrap();
    let mut c = s.connect().await;
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "server-full");
    drop(a);
    s.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_sockets_close_after_the_timeout() {
    let s = TestServer::with(|c| c.auth_timeout = Duration::from_millis(300)).await;
    let mut c = s.connect().await;
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "auth-timeout");
    assert!(matches!(c.recv().await, Err(ClientError::Closed)));
    // An admitted socket is not subject to it.
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.send(&json!({"type": "ping"})).await.unwrap();
    a.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_every_socket_a_close() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    let db = s.db.clone();
    let dir = s.dir.path().to_owned();
    let waiter = tokio::spawn(async move {
        let f = a.recv().await.unwrap();
        (f, a.recv().await.is_err())
    });
    let TestServer { server, dir: _keep, .. } = s;
    server.unwrap().shutdown().await;
    let (frame, closed) = waiter.await.unwrap();
    assert_eq!(frame["code"], "shutting-down");
    assert!(closed);
    // The audit log was flushed: the departure is on disk.
    let store = keygate::store::Store::open(&db).await.unwrap();
    let events = store.audit(&room, 10, None).await.unwrap();
    assert!(events.iter().any(|e| e.event == "left"), "{events:?} in {}", dir.display());
}

#[tokio::test]
async fn a_peer_confirms_its_identity_on_request() {
    let s = TestServer::start().await;
    let (owner, guest, impostor) = (key(), key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    let mut b = s.connect().await;
    let wb = b
        .join_webcrypto(json!({"type": "request", "roomId": room.as_str(), "fingerprint": "sha-256 AA:BB"}), &guest)
        .await
        .unwrap();
    until(&mut a, "peer-joined").await;

    // A asks; B gets a fresh challenge that re-signs its DTLS fingerprint, and answers.
    a.send(&json!({"type": "verify-peer", "peerId": wb["peerId"]})).await.unwrap();
    let challenge = b.expect("challenge").await.unwrap();
    assert_eq!(challenge["payload"]["purpose"], "reverify");
    assert_eq!(challenge["payload"]["fingerprint"], "sha-256 AA:BB");
    assert_eq!(challenge["methods"], json!(["webcrypto"]));
    b.send(&Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    let verified = until(&mut a, "peer-verified").await;
    assert_eq!(verified["peerId"], wb["peerId"]);
    assert_eq!(verified["identity"], identity(&guest).did().as_str());
    until(&mut b, "peer-verified").await;
    s.audit_has(&room, |e| e.event == "reverified").await;

    // Answered with another key: A is told it failed, the reason goes to the audit log.
    a.send(&json!({"type": "verify-peer", "peerId": wb["peerId"]})).await.unwrap();
    let challenge = b.expect("challenge").await.unwrap();
    b.send(&Client::webcrypto_auth(&challenge, &impostor).unwrap()).await.unwrap();
    let failed = until(&mut a, "peer-verification-failed").await;
    assert_eq!(failed["peerId"], wb["peerId"]);
    assert_eq!(failed["reason"], "failed");
    s.audit_has(&room, |e| e.event == "reverify-failed" && e.reason.as_deref() == Some("another key answered")).await;

    // Only peers of the room can be asked.
    a.send(&json!({"type": "verify-peer", "peerId": "0000000000000000"})).await.unwrap();
    assert_eq!(server_code(a.expect("pong").await.unwrap_err()), "no-such-peer");
    s.shutdown().await;
}

/// A key may hold a bounded number of unused tickets; past it, a clear
/// `rate-limited`, and the connection stays.
#[tokio::test]
async fn a_key_holds_a_bounded_number_of_unused_tickets() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let ticket_request = json!({"type": "request", "roomId": room.as_str(), "ticket": true});
    for _ in 0..16 {
        let ch = c.request(ticket_request.clone()).await.unwrap();
        c.send(&keygate::client::ws::Client::webcrypto_auth(&ch, &owner).unwrap()).await.unwrap();
        c.expect("ticket").await.unwrap();
    }
    let ch = c.request(ticket_request.clone()).await.unwrap();
    c.send(&keygate::client::ws::Client::webcrypto_auth(&ch, &owner).unwrap()).await.unwrap();
    match c.expect("ticket").await.unwrap_err() {
        keygate::client::ws::ClientError::Server { code, message } => {
            assert_eq!(code, "rate-limited");
            assert!(message.contains("too many unused tickets"), "{message}");
        }
        other => panic!("{other}"),
    }
    c.request(ticket_request).await.expect("the connection stays");
    s.shutdown().await;
}
