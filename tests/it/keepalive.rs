//! Calls that survive the signaling link: the server pings every socket and closes
//! the ones that stopped answering; a peer whose socket dropped comes back with its
//! resume token (method `resume`) without a new proof, once, for its own room and
//! DTLS certificate, across a server restart, and only while its key is listed.

use crate::common::*;
use keygate::client::ws::{Client, ClientError};
use keygate::whitelist::Actor;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const FP: &str =
    "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

fn join_signed(room: &keygate::ids::RoomId, fingerprint: &str) -> Value {
    json!({"type": "request", "roomId": room.as_str(), "fingerprint": fingerprint})
}

/// request → challenge → auth {method: "resume"}: the welcome, or the server's error.
async fn resume(
    c: &mut Client,
    room: &keygate::ids::RoomId,
    fingerprint: &str,
    token: &str,
) -> Result<Value, ClientError> {
    let challenge = c.request(join_signed(room, fingerprint)).await?;
    let methods: Vec<&str> = challenge["methods"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(methods.contains(&"resume"), "{challenge}");
    c.send(&json!({"type": "auth", "method": "resume", "payload": challenge["payload"], "token": token})).await?;
    c.expect("welcome").await
}

#[tokio::test]
async fn the_server_pings_and_closes_a_socket_that_stopped_answering() {
    let s = TestServer::with(|s| s.ping_interval = Duration::from_millis(200)).await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let mut a = s.connect().await;
    a.join_webcrypto(join(&room), &owner).await.unwrap();
    let mut b = s.connect().await;
    let wb = b.join_webcrypto(join(&room), &guest).await.unwrap();
    until(&mut a, "peer-joined").await;

    // Pings arrive; a client that reads answers them (tungstenite does).
    // `a` reads all along, so it answers and stays.
    let reader = tokio::spawn(async move {
        let left = until(&mut a, "peer-left").await;
        (a, left)
    });
    let mut pings = 0;
    while pings < 2 {
        if let Message::Ping(_) = b.next_message().await.unwrap() {
            pings += 1;
        }
    }
    // `b` now goes silent (it neither reads nor answers) and is closed after two
    // intervals without a word from it.
    let (mut a, left) = reader.await.unwrap();
    assert_eq!(left["peerId"], wb["peerId"]);
    assert_eq!(left["reason"], "disconnected");
    s.audit_has(&room, |e| e.event == "left" && e.reason.as_deref() == Some("disconnected")).await;
    // Still here, well past two intervals: pings answered keep a socket open.
    let until_then = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(m) = tokio::time::timeout_at(until_then, a.next_message()).await {
        assert!(!matches!(m, Ok(Message::Close(_)) | Err(_)), "{m:?}");
    }
    a.send(&json!({"type": "ping"})).await.unwrap();
    until(&mut a, "pong").await;
    assert_eq!(s.server().gateway().rooms.peer_count(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_ends_without_a_close_frame_was_lost_not_left() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let mut a = s.connect().await;
    a.join_webcrypto(join(&room), &owner).await.unwrap();
    for (leave, reason) in [(true, "left"), (false, "disconnected")] {
        let mut b = s.connect().await;
        b.join_webcrypto(join(&room), &guest).await.unwrap();
        until(&mut a, "peer-joined").await;
        if leave {
            b.close().await;
        } else {
            drop(b);
        }
        assert_eq!(until(&mut a, "peer-left").await["reason"], reason);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_dropped_peer_resumes_once_with_its_token_for_its_room_and_certificate() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let other_room = s.room(&owner, &[&guest]).await;
    let mut a = s.connect().await;
    a.join_webcrypto(join_signed(&room, "sha-256 01:02"), &owner).await.unwrap();

    let mut b = s.connect().await;
    let wb = b.join_webcrypto(join_signed(&room, FP), &guest).await.unwrap();
    let token = wb["resume"]["token"].as_str().unwrap().to_owned();
    assert_eq!(wb["resume"]["expiresIn"], 120);
    until(&mut a, "peer-joined").await;
    drop(b);
    assert_eq!(until(&mut a, "peer-left").await["reason"], "disconnected");

    // Another room or another certificate: refused, and the token is not spent.
    let mut wrong = s.connect().await;
    let e = resume(&mut wrong, &other_room, FP, &token).await.unwrap_err();
    assert_eq!(server_code(e), "not-admitted");
    let e = resume(&mut wrong, &room, "sha-256 99:99", &token).await.unwrap_err();
    assert_eq!(server_code(e), "not-admitted");

    // Back in, as the same identity admitted the same way, with no new signature.
    let checks = || s.server().gateway().stats.signature_checks.load(std::sync::atomic::Ordering::Relaxed);
    let before = checks();
    let mut b2 = s.connect().await;
    let back = resume(&mut b2, &room, FP, &token).await.unwrap();
    assert_eq!(checks(), before, "a resume checks no signature");
    assert_eq!(back["identity"], identity(&guest).did().as_str());
    assert!(back["resume"]["token"].as_str().is_some_and(|t| t != token), "{back}");
    let joined = until(&mut a, "peer-joined").await;
    assert_eq!(joined["identity"], identity(&guest).did().as_str());
    assert_eq!(joined["method"], "webcrypto", "peers see the method the key was proved with");
    assert_eq!(joined["fingerprint"], FP);
    assert!(joined.get("proof").is_none(), "a resume forwards no proof: {joined}");
    s.audit_has(&room, |e| {
        e.event == "admitted" && e.method.as_deref() == Some("webcrypto") && e.reason.as_deref() == Some("resumed")
    })
    .await;

    // Once only.
    let mut again = s.connect().await;
    assert_eq!(server_code(resume(&mut again, &room, FP, &token).await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.event == "refused" && e.reason.as_deref() == Some("resume token already used")).await;

    // A forged token (one byte of its MAC changed) is not read.
    let newer = back["resume"]["token"].as_str().unwrap().to_owned();
    let dot = newer.find('.').unwrap();
    let mut forged = newer.clone().into_bytes();
    forged[dot + 5] = if forged[dot + 5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let mut f = s.connect().await;
    assert_eq!(server_code(resume(&mut f, &room, FP, &forged).await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.event == "refused" && e.reason.as_deref() == Some("resume token not issued here")).await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_resume_token_outlives_a_restart_but_not_the_removal_of_its_key() {
    let mut s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let mut a = s.connect().await;
    let wa = a.join_webcrypto(join_signed(&room, FP), &owner).await.unwrap();
    let owner_token = wa["resume"]["token"].as_str().unwrap().to_owned();
    let mut b = s.connect().await;
    let wb = b.join_webcrypto(join_signed(&room, FP), &guest).await.unwrap();
    let guest_token = wb["resume"]["token"].as_str().unwrap().to_owned();

    s.restart().await;
    assert_eq!(server_code(until_error(&mut a).await), "shutting-down");

    // The key that MACs tokens is kept in the database: the owner comes straight back.
    let mut a2 = s.connect().await;
    let back = resume(&mut a2, &room, FP, &owner_token).await.unwrap();
    assert_eq!(back["identity"], identity(&owner).did().as_str());

    // The guest's key is removed meanwhile: its token no longer gets it in.
    let gw = s.server().gateway();
    gw.whitelist().remove(&room, Actor::operator(), &identity(&guest)).await.unwrap();
    let mut b2 = s.connect().await;
    assert_eq!(server_code(resume(&mut b2, &room, FP, &guest_token).await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.event == "refused" && e.reason.as_deref() == Some("unknown key")).await;
    drop(b);
    s.shutdown().await;
}

#[tokio::test]
async fn fresh_tokens_arrive_every_half_window_and_a_zero_window_gives_none() {
    let s = TestServer::with(|s| s.resume_window = Duration::from_millis(400)).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut a = s.connect().await;
    let wa = a.join_webcrypto(join_signed(&room, FP), &owner).await.unwrap();
    let first = wa["resume"]["token"].as_str().unwrap().to_owned();
    assert_eq!(wa["resume"]["expiresIn"], 1, "a window under a second is not said to be over");
    let next = until(&mut a, "resume").await;
    assert!(next["token"].as_str().is_some_and(|t| t != first), "{next}");
    // The first token expired (0.4 s) by the time a third arrives.
    until(&mut a, "resume").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = s.connect().await;
    assert_eq!(server_code(resume(&mut late, &room, FP, &first).await.unwrap_err()), "not-admitted");
    s.audit_has(&room, |e| e.event == "refused" && e.reason.as_deref() == Some("expired resume token")).await;
    s.shutdown().await;

    let s = TestServer::with(|s| s.resume_window = Duration::ZERO).await;
    let room = s.room(&owner, &[]).await;
    let mut a = s.connect().await;
    let wa = a.join_webcrypto(join_signed(&room, FP), &owner).await.unwrap();
    assert!(wa.get("resume").is_none(), "{wa}");
    // Nor does a socket without a DTLS fingerprint: there is no media to keep.
    let s2 = TestServer::start().await;
    let room = s2.room(&owner, &[]).await;
    let mut b = s2.connect().await;
    assert!(b.join_webcrypto(join(&room), &owner).await.unwrap().get("resume").is_none());
    s.shutdown().await;
    s2.shutdown().await;
}

/// The next `error` frame, as an error.
async fn until_error(c: &mut Client) -> ClientError {
    loop {
        let f = c.recv().await.unwrap();
        if f["type"] == "error" {
            return ClientError::Server {
                code: f["code"].as_str().unwrap_or_default().to_owned(),
                message: f["message"].as_str().unwrap_or_default().to_owned(),
            };
        }
    }
}
