//! What the call page relies on from the server, over real sockets: the page and
//! its modules are served, `welcome` carries ICE servers (and nothing before it),
//! an unanswered "confirm identity" times out, and a peer's report about another's
//! media lands in the audit log.

use crate::common::*;
use keygate::client::ws::Client;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_call_page_and_its_modules_are_served() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/r/{room}", s.http())).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("data-room=\"{room}\"")));
    for button in ["join-browser-key", "join-passkey", "join-wallet", "join-ssh", "join-ticket"] {
        assert!(html.contains(button), "{button} on the page");
    }
    for (path, expect) in [("call.js", "verify-peer"), ("rtc.js", "a=fingerprint"), ("identity.js", "did:key")] {
        let r = http.get(format!("{}/static/{path}", s.http())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
        assert!(r.text().await.unwrap().contains(expect), "{path}");
    }
    let css = http.get(format!("{}/static/style.css", s.http())).send().await.unwrap();
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    let missing = http.get(format!("{}/static/nope.js", s.http())).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let no_room = http.get(format!("{}/r/2NEpo7TZRRrLZSi2U", s.http())).send().await.unwrap();
    assert_eq!(no_room.status(), 404);
    assert!(no_room.text().await.unwrap().contains("no such room"));
    let bad_id = http.get(format!("{}/r/not-a-room", s.http())).send().await.unwrap();
    assert_eq!(bad_id.status(), 404);
    s.shutdown().await;
}

#[tokio::test]
async fn ice_servers_come_only_with_welcome() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let (_c, welcome) = admitted(&s, &room, &owner).await;
    assert_eq!(welcome["iceServers"], json!([]), "nothing configured, nothing sent");
    s.shutdown().await;

    let s = TestServer::with(|c| {
        c.stun_urls = vec!["stun:stun.example.net:3478".into()];
        c.turn_urls = vec!["turn:turn.example.net:3478".into()];
        c.turn_secret = Some("shared".into());
    })
    .await;
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    assert!(challenge.get("iceServers").is_none() && !challenge.to_string().contains("turn:"));
    c.send(&Client::webcrypto_auth(&challenge, &owner).unwrap()).await.unwrap();
    let welcome = c.expect("welcome").await.unwrap();
    let servers = welcome["iceServers"].as_array().unwrap();
    assert_eq!(servers[0], json!({"urls": ["stun:stun.example.net:3478"]}));
    assert_eq!(servers[1]["urls"], json!(["turn:turn.example.net:3478"]));
    let username = servers[1]["username"].as_str().unwrap();
    assert!(username.ends_with(&format!(":{}", identity(&owner).fingerprint())), "{username}");
    s.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_confirmation_times_out() {
    let s = TestServer::with(|c| c.freshness_past = Duration::from_secs(1)).await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    let (mut b, wb) = admitted(&s, &room, &guest).await;
    until(&mut a, "peer-joined").await;

    a.send(&json!({"type": "verify-peer", "peerId": wb["peerId"]})).await.unwrap();
    let challenge = b.expect("challenge").await.unwrap();
    // B walks away; after the challenge lifetime both sides are told.
    let failed = until(&mut a, "peer-verification-failed").await;
    assert_eq!(failed["peerId"], wb["peerId"]);
    assert_eq!(failed["reason"], "timeout");
    assert_eq!(until(&mut b, "peer-verification-failed").await["reason"], "timeout");
    s.audit_has(&room, |e| {
        e.event == "reverify-failed" && e.reason.as_deref() == Some("no answer within the challenge lifetime")
    })
    .await;
    // The withdrawn challenge can no longer be answered; B is still in the call.
    b.send(&Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    assert_eq!(server_code(b.expect("welcome").await.unwrap_err()), "already-admitted");
    b.send(&json!({"type": "ping"})).await.unwrap();
    b.expect("pong").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn a_report_about_a_peer_goes_to_the_audit_log() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut a, wa) = admitted(&s, &room, &owner).await;
    let (mut b, _) = admitted(&s, &room, &guest).await;
    until(&mut a, "peer-joined").await;

    b.send(&json!({"type": "report", "peerId": wa["peerId"], "problem": "fingerprint-mismatch"})).await.unwrap();
    let reporter = identity(&guest).did().as_str().to_owned();
    let record = s
        .audit_has(&room, |e| {
            e.event == "peer-reported" && e.identity.as_deref() == Some(identity(&owner).did().as_str())
        })
        .await;
    assert_eq!(record.reason.unwrap(), format!("fingerprint-mismatch (reported by {reporter})"));

    b.send(&json!({"type": "report", "peerId": wa["peerId"], "problem": "looks-odd"})).await.unwrap();
    assert_eq!(server_code(b.expect("pong").await.unwrap_err()), "bad-message");
    b.send(&json!({"type": "report", "peerId": "0000000000000000", "problem": "proof-invalid"})).await.unwrap();
    assert_eq!(server_code(b.expect("pong").await.unwrap_err()), "no-such-peer");

    let mut stranger = s.connect().await;
    stranger.send(&json!({"type": "report", "peerId": wa["peerId"], "problem": "no-fingerprint"})).await.unwrap();
    assert_eq!(server_code(stranger.expect("pong").await.unwrap_err()), "unauthenticated");
    s.shutdown().await;
}

#[tokio::test]
async fn a_room_can_require_periodic_confirmation() {
    let s = TestServer::with(|c| c.freshness_past = Duration::from_secs(1)).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let store = &s.server().gateway().store;
    let (mut a, wa) = admitted(&s, &room, &owner).await;

    // The host turns it on mid-call (in the database, as `keygate room set` does): the
    // live session follows, asks, and a good answer keeps the peer in.
    store.set_reverify_every(&room, Some(1)).await;
    let challenge = a.expect("challenge").await.unwrap();
    assert_eq!(challenge["payload"]["purpose"], "reverify");
    a.send(&Client::webcrypto_auth(&challenge, &owner).unwrap()).await.unwrap();
    let verified = a.expect("peer-verified").await.unwrap();
    assert_eq!(verified["peerId"], wa["peerId"]);

    // The next request goes unanswered: the peer is told, then ejected.
    a.expect("challenge").await.unwrap();
    assert_eq!(a.expect("peer-verification-failed").await.unwrap()["reason"], "timeout");
    let ejected = a.expect("welcome").await.unwrap_err();
    assert_eq!(server_code(ejected), "not-confirmed");
    assert!(a.recv().await.is_err(), "the socket is closed");
    s.audit_has(&room, |e| e.event == "left" && e.reason.as_deref() == Some("not-confirmed")).await;

    // Turned off mid-call, nobody is asked.
    let (mut b, _) = admitted(&s, &room, &owner).await;
    store.set_reverify_every(&room, None).await;
    b.send(&json!({"type": "ping"})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.recv().await.unwrap()["type"], "pong", "no challenge came");
    s.shutdown().await;
}
