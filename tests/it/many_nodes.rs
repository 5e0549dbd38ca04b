//! Several keygate servers on one PostgreSQL database, as one service: whatever is
//! single use stays single use whichever server it reaches (tickets, resume tokens,
//! invites), each server admits from the shared lists, and a key removed on one
//! server is ejected from a call held by another. Needs the PostgreSQL server that
//! `scripts/with-postgres` starts (`.ci/test` runs every test under it).

use crate::common::*;
use keygate::client::ws::Client;
use keygate::whitelist::Actor;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A fresh database on the test PostgreSQL server; None (with a note) outside CI
/// when there is none. In CI its absence is a failure.
async fn shared_database() -> Option<PathBuf> {
    if std::env::var_os("KEYGATE_TEST_POSTGRES").is_none() {
        assert!(!in_ci(), "KEYGATE_TEST_POSTGRES is not set: .ci/test runs the tests under scripts/with-postgres");
        eprintln!("skipping: no PostgreSQL (run under scripts/with-postgres)");
        return None;
    }
    Some(postgres_database().await)
}

/// `count` servers on the database `db`: one service, under one public origin (as
/// behind a load balancer), each on its own port.
async fn servers(db: &std::path::Path, count: usize) -> Vec<TestServer> {
    servers_with(db, count, |_, _| {}).await
}

/// The same, with `adjust(n, settings)` for the n-th server.
async fn servers_with(
    db: &std::path::Path,
    count: usize,
    adjust: impl Fn(usize, &mut keygate::config::Settings),
) -> Vec<TestServer> {
    let mut all = Vec::new();
    for n in 0..count {
        all.push(
            TestServer::with(|c| {
                c.db = db.to_owned();
                c.origin = Some("http://localhost:8443".into());
                adjust(n, c);
            })
            .await,
        );
    }
    all
}

async fn stop(nodes: Vec<TestServer>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// Sends `auth` with `method` on a new connection to `server` that requested `room`
/// (signing `fingerprint`); the server's answer.
async fn answer(server: &TestServer, room: &keygate::ids::RoomId, fields: Value) -> Value {
    let mut c = server.connect().await;
    let ch =
        c.request(json!({"type": "request", "roomId": room.as_str(), "fingerprint": "sha-256 AB:CD"})).await.unwrap();
    let mut auth = json!({"type": "auth", "payload": ch["payload"]});
    auth.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    c.send(&auth).await.unwrap();
    c.recv().await.unwrap()
}

/// Of answers raced on different servers, how many got in.
fn welcomed(answers: &[Value]) -> usize {
    answers.iter().filter(|a| a["type"] == "welcome").count()
}

#[tokio::test]
async fn a_ticket_and_a_resume_token_are_good_once_across_servers() {
    let Some(db) = shared_database().await else { return };
    let nodes = servers(&db, 3).await;
    let (owner, guest) = (key(), key());
    let room = nodes[0].room(&owner, &[&guest]).await;

    let ticket_from = |n: usize| {
        let (node, room, guest) = (&nodes[n], room.clone(), &guest);
        async move {
            let mut c = node.connect().await;
            let ch = c.request(json!({"type": "request", "roomId": room.as_str(), "ticket": true})).await.unwrap();
            c.send(&Client::webcrypto_auth(&ch, guest).unwrap()).await.unwrap();
            c.expect("ticket").await.unwrap()["ticket"].as_str().unwrap().to_owned()
        }
    };
    // A ticket from one server admits on another (a load balancer need not stick).
    let ticket = ticket_from(0).await;
    let elsewhere = answer(&nodes[1], &room, json!({"method": "ticket", "ticket": ticket})).await;
    assert_eq!(elsewhere["type"], "welcome", "{elsewhere}");

    // Another ticket, presented to all three at once.
    let ticket = ticket_from(0).await;
    let present = |n: usize| answer(&nodes[n], &room, json!({"method": "ticket", "ticket": ticket}));
    let (a, b, c3) = tokio::join!(present(0), present(1), present(2));
    assert_eq!(welcomed(&[a.clone(), b.clone(), c3.clone()]), 1, "one ticket, one admission: {a} {b} {c3}");
    let token = [a, b, c3].into_iter().find(|w| w["type"] == "welcome").unwrap()["resume"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Its resume token, raced the same way: one server continues the admission.
    let resume = |n: usize| answer(&nodes[n], &room, json!({"method": "resume", "token": token}));
    let (a, b, c3) = tokio::join!(resume(0), resume(1), resume(2));
    assert_eq!(welcomed(&[a.clone(), b.clone(), c3.clone()]), 1, "one token, one resume: {a} {b} {c3}");
    for node in &nodes {
        node.server().gateway().audit.flush().await;
    }
    let store = &nodes[0].server().gateway().store;
    let refused: Vec<_> = store.audit(&room, 100, None).await.unwrap().into_iter().filter_map(|e| e.reason).collect();
    assert_eq!(refused.iter().filter(|r| *r == "unknown or already used ticket").count(), 2, "{refused:?}");
    assert_eq!(refused.iter().filter(|r| *r == "resume token already used").count(), 2, "{refused:?}");
    stop(nodes).await;
}

#[tokio::test]
async fn an_invite_for_one_is_used_once_across_servers() {
    let Some(db) = shared_database().await else { return };
    let nodes = servers(&db, 2).await;
    let owner = key();
    let room = nodes[0].room(&owner, &[]).await;
    let store = &nodes[0].server().gateway().store;
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let invite = keygate::whitelist::Whitelist::new(store, None)
        .create_invite(&room, Actor::operator(), "once", 1, expires)
        .await
        .unwrap();
    // Two people, each proving a key to a different server at the same moment.
    let enrol = |n: usize, who: keygate::client::p256_key::P256Key| {
        let (node, invite) = (&nodes[n], invite.clone());
        async move {
            let (_, ch) = post_json(node, &format!("/i/{invite}/challenge"), &json!({})).await;
            post_json(node, &format!("/i/{invite}/verify"), &http_answer(&ch, &who)).await.0
        }
    };
    let (a, b) = tokio::join!(enrol(0, key()), enrol(1, key()));
    assert_eq!([a, b].iter().filter(|s| **s == 200).count(), 1, "{a} {b}");
    assert_eq!(store.whitelist_len(&room).await.unwrap(), 2, "the owner and one invitee");
    stop(nodes).await;
}

#[tokio::test]
async fn a_key_removed_on_one_server_leaves_a_call_on_another() {
    let Some(db) = shared_database().await else { return };
    let nodes = servers(&db, 2).await;
    let (owner, guest) = (key(), key());
    let room = nodes[0].room(&owner, &[&guest]).await;
    // Both servers admit from the one list.
    let (_host, _) = admitted(&nodes[0], &room, &owner).await;
    let (mut in_call, _) = admitted(&nodes[1], &room, &guest).await;

    // The owner removes the guest on the first server; the second ejects it.
    let removed = Instant::now();
    nodes[0].server().gateway().whitelist().remove(&room, Actor::operator(), &identity(&guest)).await.unwrap();
    let ejected = tokio::time::timeout(Duration::from_secs(10), in_call.expect("never"))
        .await
        .expect("the second server ejects the removed key");
    assert_eq!(server_code(ejected.unwrap_err()), "revoked");
    eprintln!("removal on one server to ejection on another: {} ms", removed.elapsed().as_millis());
    // …and refuses it from then on.
    let mut again = nodes[1].connect().await;
    assert_eq!(server_code(again.join_webcrypto(join(&room), &guest).await.unwrap_err()), "not-admitted");
    stop(nodes).await;
}

/// A sign-in started on one server finishes on another (its challenge is sealed
/// into its id, not kept by the server that made it), and only once: the same
/// answer raced to two servers signs in once.
#[tokio::test]
async fn a_sign_in_started_on_one_server_finishes_on_another_once() {
    let Some(db) = shared_database().await else { return };
    let nodes = servers(&db, 2).await;
    let person = key();
    let challenge = || async { post_json(&nodes[0], "/signin/challenge", &json!({})).await.1 };
    let verify = |n: usize, answer: Value| {
        let node = &nodes[n];
        async move { post_json(node, "/signin/verify", &answer).await.0 }
    };
    let answer = http_answer(&challenge().await, &person);
    assert_eq!(verify(1, answer).await, 200, "a challenge from one server is answered on another");
    let answer = http_answer(&challenge().await, &person);
    let (a, b) = tokio::join!(verify(0, answer.clone()), verify(1, answer));
    assert_eq!([a, b].iter().filter(|s| **s == 200).count(), 1, "{a} {b}");
    stop(nodes).await;
}

/// A passkey registration started on one server finishes on another (the
/// registration is sealed into its id), once.
#[tokio::test]
async fn a_passkey_registration_started_on_one_server_finishes_on_another_once() {
    let Some(db) = shared_database().await else { return };
    let nodes = servers(&db, 2).await;
    let (_, started) = post_json(&nodes[0], "/webauthn/register/start", &json!({"label": "laptop"})).await;
    let origin = nodes[0].server().gateway().origin.clone();
    let authenticator = keygate::client::soft_webauthn::SoftAuthenticator::new("localhost", &origin).unwrap();
    let credential = authenticator.register(&started["options"]).unwrap();
    let body = json!({"registrationId": started["registrationId"], "credential": credential});
    let (status, finished) = post_json(&nodes[1], "/webauthn/register/finish", &body).await;
    assert_eq!(status, 200, "{finished}");
    let (status, again) = post_json(&nodes[0], "/webauthn/register/finish", &body).await;
    assert_eq!(status, 400);
    assert!(again["error"].as_str().unwrap().contains("no such registration in progress"), "{again}");
    stop(nodes).await;
}

/// A host-page change on one server, its redirect answered by another: the notice
/// and the lines that could not be read are shown there, once, to that session only.
#[tokio::test]
async fn a_change_s_notice_is_shown_by_whichever_server_the_redirect_reaches() {
    let Some(db) = shared_database().await else { return };
    let nodes = servers(&db, 2).await;
    let owner = key();
    // A browser: cookies (for 127.0.0.1, whatever the port), redirects not followed.
    let host =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    sign_in(&nodes[0], &host, &owner).await;
    let room = nodes[0].room(&owner, &[]).await;
    let html = host.get(format!("{}/rooms/{room}", nodes[0].http())).send().await.unwrap().text().await.unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf(&html))
        .text("keys", format!("{}\nnot a key", identity(&key()).did()));
    let res = host.post(format!("{}/rooms/{room}/allow", nodes[0].http())).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let page = host.get(format!("{}{to}", nodes[1].http())).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Added 1 key.") && page.contains("pasted line 2: not a key format"), "{page}");
    let again = host.get(format!("{}{to}", nodes[1].http())).send().await.unwrap().text().await.unwrap();
    assert!(!again.contains("Added 1 key."), "shown once");
    stop(nodes).await;
}

/// With the bus (NATS), a key removed on one server leaves a call on another at
/// once: that server reads the change log when told, not at its next poll (set
/// here to a minute, so only the bus can bring the removal in time).
#[tokio::test]
async fn over_the_bus_a_removal_reaches_another_server_at_once() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = servers_with(&db, 2, |n, c| {
        c.bus = Some(nats.url.clone());
        c.change_poll_ms = [200, 60_000][n];
    })
    .await;
    let (owner, guest) = (key(), key());
    let room = nodes[0].room(&owner, &[&guest]).await;
    let (mut in_call, _) = admitted(&nodes[1], &room, &guest).await;
    let removed = Instant::now();
    nodes[0].server().gateway().whitelist().remove(&room, Actor::operator(), &identity(&guest)).await.unwrap();
    let ejected = tokio::time::timeout(Duration::from_secs(10), in_call.expect("never"))
        .await
        .expect("the bus brings the removal long before the minute's poll");
    assert_eq!(server_code(ejected.unwrap_err()), "revoked");
    eprintln!("removal on one server to ejection on another, over the bus: {} ms", removed.elapsed().as_millis());
    stop(nodes).await;
}
