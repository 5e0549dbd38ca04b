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
/// here to a minute, so only the bus can bring the removal in time). The second
/// server is given two NATS URLs, as for a cluster, the first of which is down.
#[tokio::test]
async fn over_the_bus_a_removal_reaches_another_server_at_once() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let down = format!("nats://127.0.0.1:{}", free_port());
    let nodes = servers_with(&db, 2, |n, c| {
        c.bus = Some([nats.url.clone(), format!("{down},{}", nats.url)][n].clone());
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

/// `count` servers on the database `db` and the bus at `nats`.
async fn on_one_bus(db: &std::path::Path, nats: &NatsServer, count: usize) -> Vec<TestServer> {
    servers_with(db, count, |_, c| c.bus = Some(nats.url.clone())).await
}

/// The same, letting each peer send far more frames than a call needs (to measure).
async fn on_one_bus_unlimited(db: &std::path::Path, nats: &NatsServer, count: usize) -> Vec<TestServer> {
    servers_with(db, count, |_, c| {
        c.bus = Some(nats.url.clone());
        c.messages_per_second = 100_000;
    })
    .await
}

/// Reads frames until one of `kind` about `peer` (by `peerId`, or `from` for a signal).
async fn about(c: &mut Client, kind: &str, peer: &Value) -> Value {
    loop {
        let f = until(c, kind).await;
        if f["peerId"] == *peer || f["from"] == *peer {
            return f;
        }
    }
}

/// One call, its three people on three servers: each is welcomed with those
/// already in (whatever server holds them), hears the others join and leave, and
/// reaches them with `signal` and `verify-peer` (and its outcome) across servers;
/// a host on the third server sends out a peer held by the first.
#[tokio::test]
async fn three_servers_on_one_bus_hold_one_call() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus(&db, &nats, 3).await;
    let (owner, b_key, c_key) = (key(), key(), key());
    let room = nodes[0].room(&owner, &[&b_key, &c_key]).await;
    let (mut a, wa) = admitted(&nodes[0], &room, &owner).await;
    let mut b = nodes[1].connect().await;
    let request = json!({"type": "request", "roomId": room.as_str(), "fingerprint": "sha-256 AA:BB"});
    let wb = b.join_webcrypto(request, &b_key).await.unwrap();
    let (mut c, wc) = admitted(&nodes[2], &room, &c_key).await;
    let ids = |w: &Value| w["peers"].as_array().unwrap().iter().map(|p| p["peerId"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&wb), vec![wa["peerId"].clone()], "b is welcomed with a, held by another server");
    let mut seen = ids(&wc);
    seen.sort_by_key(|v| v.to_string());
    let mut expected = vec![wa["peerId"].clone(), wb["peerId"].clone()];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(seen, expected, "c is welcomed with a and b");
    let joined = about(&mut a, "peer-joined", &wb["peerId"]).await;
    assert_eq!(joined["identity"], identity(&b_key).did().as_str());
    assert_eq!(joined["fingerprint"], "sha-256 AA:BB", "the signed fingerprint travels with the peer");
    about(&mut a, "peer-joined", &wc["peerId"]).await;
    about(&mut b, "peer-joined", &wc["peerId"]).await;

    // signal, across servers, both ways.
    a.send(&json!({"type": "signal", "to": wc["peerId"], "data": {"sdp": "offer from a"}})).await.unwrap();
    let got = about(&mut c, "signal", &wa["peerId"]).await;
    assert_eq!(got["data"]["sdp"], "offer from a");
    c.send(&json!({"type": "signal", "to": wb["peerId"], "data": {"sdp": "offer from c"}})).await.unwrap();
    assert_eq!(about(&mut b, "signal", &wc["peerId"]).await["data"]["sdp"], "offer from c");
    // A peer that is in no server's room is still unknown.
    a.send(&json!({"type": "signal", "to": "0000000000000000", "data": {}})).await.unwrap();
    assert_eq!(server_code(until_error(&mut a).await), "no-such-peer");

    // verify-peer: a (server 1) asks b (server 2); b's server challenges it and a hears.
    a.send(&json!({"type": "verify-peer", "peerId": wb["peerId"]})).await.unwrap();
    let challenge = until(&mut b, "challenge").await;
    assert_eq!(challenge["payload"]["purpose"], "reverify");
    assert_eq!(challenge["payload"]["fingerprint"], "sha-256 AA:BB");
    b.send(&Client::webcrypto_auth(&challenge, &b_key).unwrap()).await.unwrap();
    let verified = about(&mut a, "peer-verified", &wb["peerId"]).await;
    assert_eq!(verified["identity"], identity(&b_key).did().as_str());

    // The host, on the third server's pages, sends out a (held by the first).
    let host = nodes[2].server().gateway().whitelist();
    let peer: keygate::ids::PeerId = serde_json::from_value(wa["peerId"].clone()).unwrap();
    host.kick(&room, Actor::operator(), &peer).await.unwrap();
    assert_eq!(server_code(until_error(&mut a).await), "revoked");
    assert_eq!(about(&mut b, "peer-left", &wa["peerId"]).await["reason"], "removed");
    assert_eq!(about(&mut c, "peer-left", &wa["peerId"]).await["reason"], "removed");

    // Leaving, heard on the other server.
    b.close().await;
    assert_eq!(about(&mut c, "peer-left", &wb["peerId"]).await["reason"], "left");
    stop(nodes).await;
}

/// Reads frames until an `error` one, returned as the client's error.
async fn until_error(c: &mut Client) -> keygate::client::ws::ClientError {
    loop {
        match c.expect("error-never-matches").await {
            Err(e @ keygate::client::ws::ClientError::Server { .. }) => return e,
            Err(keygate::client::ws::ClientError::Unexpected(_)) => continue,
            Err(other) => panic!("no error frame: {other}"),
            Ok(_) => unreachable!(),
        }
    }
}

/// A room's capacity holds across servers: people joining on three servers at the
/// same moment fill it exactly, and a seat freed on one server is taken on another.
#[tokio::test]
async fn a_room_s_capacity_holds_across_servers() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus(&db, &nats, 3).await;
    let owner = key();
    let guests: Vec<_> = (0..9).map(|_| key()).collect();
    let room = nodes[0].room(&owner, &guests.iter().collect::<Vec<_>>()).await;
    nodes[0].server().gateway().store.set_max_peers(&room, Some(4)).await;
    let attempt = |n: usize| {
        let (node, room, guest) = (&nodes[n % 3], room.clone(), &guests[n]);
        async move {
            let mut c = node.connect().await;
            let outcome = c.join_webcrypto(join(&room), guest).await;
            (c, outcome.map_err(server_code))
        }
    };
    let outcomes = futures_util::future::join_all((0..9).map(attempt)).await;
    let admitted: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_ok()).collect();
    let full = outcomes.iter().filter(|(_, o)| o.as_ref().err().is_some_and(|e| e == "room-full")).count();
    assert_eq!((admitted.len(), full), (4, 5), "{:?}", outcomes.iter().map(|(_, o)| o).collect::<Vec<_>>());
    let (mut clients, welcomes): (Vec<Client>, Vec<Value>) =
        outcomes.into_iter().filter_map(|(c, o)| Some((c, o.ok()?))).unzip();
    // One leaves; whoever hears of it finds its seat free, on any server.
    let latecomer = key();
    nodes[0].server().gateway().store.allow(&room, &identity(&latecomer), "late").await;
    let leaving = welcomes.last().unwrap()["peerId"].clone();
    clients.pop().unwrap().close().await;
    about(&mut clients[0], "peer-left", &leaving).await;
    for node in &nodes {
        let mut c = node.connect().await;
        let outcome = c.join_webcrypto(join(&room), &latecomer).await.map_err(server_code);
        assert!(outcome.is_ok(), "the freed seat is free once its peer is heard to leave: {outcome:?}");
        c.close().await;
        about(&mut clients[0], "peer-left", &outcome.unwrap()["peerId"]).await;
    }
    stop(nodes).await;
}

/// A server killed outright (SIGKILL: no goodbye) has its peers announced as left
/// to the peers on other servers within a few seconds, and its seats count no more.
#[tokio::test]
async fn a_killed_server_s_peers_are_announced_as_left() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus(&db, &nats, 1).await;
    let (owner, doomed) = (key(), key());
    let room = nodes[0].room(&owner, &[&doomed]).await;
    nodes[0].server().gateway().store.set_max_peers(&room, Some(2)).await;
    // The second server, a process of its own.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut other = std::process::Command::new(keygate_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--origin", "http://localhost:8443", "--db"])
        .arg(&db)
        .args(["--bus", &nats.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut there = None;
    for _ in 0..100 {
        if let Ok(c) = Client::connect(&url).await {
            there = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut there = there.expect("the second server starts");
    let (mut here, _) = admitted(&nodes[0], &room, &owner).await;
    let welcome = there.join_webcrypto(join(&room), &doomed).await.unwrap();
    about(&mut here, "peer-joined", &welcome["peerId"]).await;

    let killed = Instant::now();
    let _ = other.kill();
    let _ = other.wait();
    let left = tokio::time::timeout(Duration::from_secs(15), about(&mut here, "peer-left", &welcome["peerId"]))
        .await
        .expect("the peer of the killed server is announced as left");
    assert_eq!(left["reason"], "disconnected");
    eprintln!("a killed server's peer announced as left after {} ms", killed.elapsed().as_millis());
    // Its seat no longer counts: the room (of two) takes another.
    eventually("the dead server's seat is free", async || {
        let mut c = nodes[0].connect().await;
        c.join_webcrypto(join(&room), &doomed).await.is_ok()
    })
    .await;
    stop(nodes).await;
}

/// The deployment of docs/scale.md in small: three servers behind nginx (round
/// robin, no stickiness), one PostgreSQL, one NATS. Three people who connect
/// through the one address land on three servers and hold one call; a key removed
/// with the CLI, straight in the database, leaves the call within a second. Bus
/// messages per join and per relayed frame are counted (printed, not asserted).
#[tokio::test]
async fn three_servers_behind_nginx_are_one_service() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus_unlimited(&db, &nats, 3).await;
    let front = free_port();
    let upstreams: Vec<u16> = nodes.iter().map(|n| n.server().addr().port()).collect();
    let Some(_nginx) = Nginx::balance(front, &upstreams) else { return };
    let url = format!("ws://127.0.0.1:{front}/ws");
    let people = [key(), key(), key()];
    let room = nodes[0].room(&people[0], &[&people[1], &people[2]]).await;
    let bus_messages =
        || nodes.iter().map(|n| n.server().gateway().rooms.bus().unwrap().messages()).collect::<Vec<_>>();
    let sent =
        |before: &[(u64, u64)], after: &[(u64, u64)]| after.iter().zip(before).map(|(a, b)| a.0 - b.0).sum::<u64>();
    let received =
        |before: &[(u64, u64)], after: &[(u64, u64)]| after.iter().zip(before).map(|(a, b)| a.1 - b.1).sum::<u64>();

    let mut calls = Vec::new();
    let mut welcomes = Vec::new();
    let mut per_join = Vec::new();
    for person in &people {
        let before = bus_messages();
        let mut c = Client::connect(&url).await.unwrap();
        welcomes.push(c.join_webcrypto(join(&room), person).await.unwrap());
        calls.push(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = bus_messages();
        per_join.push((sent(&before, &after), received(&before, &after)));
    }
    let held: Vec<usize> = nodes.iter().map(|n| n.server().gateway().rooms.peer_count()).collect();
    assert_eq!(held, vec![1, 1, 1], "round robin put one person on each server");
    assert_eq!(welcomes[2]["peers"].as_array().unwrap().len(), 2, "the third is welcomed with the other two");

    // A frame relayed from the first server's peer to the third's, 200 times.
    let to = welcomes[2]["peerId"].clone();
    let before = bus_messages();
    for seq in 0..200 {
        calls[0].send(&json!({"type": "signal", "to": to, "data": {"seq": seq}})).await.unwrap();
        assert_eq!(until(&mut calls[2], "signal").await["data"]["seq"], seq);
    }
    let after = bus_messages();
    eprintln!(
        "bus messages per join (sent, received over all servers; the 1st, 2nd, 3rd person): {per_join:?}; \
         per relayed frame, 200 frames: {:.2} sent, {:.2} received (presence ticks included)",
        sent(&before, &after) as f64 / 200.0,
        received(&before, &after) as f64 / 200.0
    );

    // The CLI removes the third person's key in the database; the server holding
    // them ejects them (it polls the change log), and the others hear they left.
    let removed = Instant::now();
    let did = identity(&people[2]).did().to_string();
    let out = keygate(&["room", "deny", room.as_str(), &did], &db);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server_code(until_error(&mut calls[2]).await), "revoked");
    eprintln!("a key removed by the CLI left a call behind nginx after {} ms", removed.elapsed().as_millis());
    assert_eq!(about(&mut calls[0], "peer-left", &to).await["reason"], "removed");
    assert_eq!(about(&mut calls[1], "peer-left", &to).await["reason"], "removed");
    stop(nodes).await;
}

/// How long a `signal` takes from one peer to another on the same server and on
/// another server over the bus (p50/p99 of 500 round trips each; printed for
/// docs/scale.md, not asserted).
#[tokio::test]
async fn relay_latency_across_servers_is_measured() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus_unlimited(&db, &nats, 2).await;
    let (a, b, c) = (key(), key(), key());
    let room = nodes[0].room(&a, &[&b, &c]).await;
    let (mut sender, _) = admitted(&nodes[0], &room, &a).await;
    let (mut same, w_same) = admitted(&nodes[0], &room, &b).await;
    let (mut other, w_other) = admitted(&nodes[1], &room, &c).await;
    let mut measure = async |to: &Value, receiver: &mut Client| {
        let mut took = Vec::new();
        for seq in 0..500 {
            let t = Instant::now();
            sender.send(&json!({"type": "signal", "to": to, "data": {"seq": seq}})).await.unwrap();
            until(receiver, "signal").await;
            took.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        took.sort_by(f64::total_cmp);
        (took[took.len() / 2], took[took.len() * 99 / 100])
    };
    let here = measure(&w_same["peerId"], &mut same).await;
    let there = measure(&w_other["peerId"], &mut other).await;
    eprintln!(
        "signal relay, p50/p99: same server {:.3}/{:.3} ms; across servers over NATS {:.3}/{:.3} ms",
        here.0, here.1, there.0, there.1
    );
    stop(nodes).await;
}

/// A browser call with its two people on two servers (tests/js/two_servers.browser.mjs):
/// media flows, chat and "confirm identity" work, and each server holds one of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_call_spans_two_servers() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let front = free_port();
    let Some((node, artifacts)) = browser_command("two_servers.browser.mjs", &format!("http://localhost:{front}"))
    else {
        return;
    };
    let nodes = servers_with(&db, 2, |_, c| {
        c.bus = Some(nats.url.clone());
        c.origin = Some(format!("http://localhost:{front}"));
    })
    .await;
    let upstreams: Vec<u16> = nodes.iter().map(|n| n.server().addr().port()).collect();
    let Some(_nginx) = Nginx::balance(front, &upstreams) else { return };
    let check = async || {
        let held: Vec<usize> = nodes.iter().map(|n| n.server().gateway().rooms.peer_count()).collect();
        assert_eq!(held, vec![1, 1], "each server holds one of the two");
        "checked"
    };
    let seen = run_browser_pausing(node, &artifacts, "in-call", check).await;
    if let Some(timings) = seen.iter().find(|l| l.starts_with('{')) {
        eprintln!("two-server call timings: {timings}");
    }
    stop(nodes).await;
}

/// `keygate bench` against two servers of one service: admissions spread over both
/// (rooms of four, so each admission is told across), and `signal` relayed from a
/// peer on the first to one on the second, every message delivered once.
#[tokio::test(flavor = "multi_thread")]
async fn the_load_tool_spreads_over_servers_and_relays_across_them() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus(&db, &nats, 2).await;
    let urls = nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let unused = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        let db = unused.path().join("unused.db");
        tokio::task::spawn_blocking(move || keygate(&args.iter().map(String::as_str).collect::<Vec<_>>(), &db))
    };
    let admissions =
        ["bench", "--url", &urls, "--clients", "4", "--per-room", "4", "--admissions", "40", "--idle", "0"];
    let out = run(admissions.iter().map(|s| s.to_string()).collect()).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!((report["servers"].as_u64(), report["admissions"].as_u64()), (Some(2), Some(40)), "{report}");
    assert_eq!(report["failed_admissions"], 0, "{report}");
    assert!(report["bus_messages_per_admission"].as_f64().unwrap() >= 1.0, "each admission is told: {report}");

    let relay = ["bench", "--relay", "80", "--relay-seconds", "1", "--url", &urls];
    let out = run(relay.iter().map(|s| s.to_string()).collect()).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    let row = &report["rows"][0];
    assert_eq!((row["sent"].as_u64(), row["received"].as_u64()), (Some(80), Some(80)), "{report}");
    assert!(row["bus_messages_per_message"].as_f64().unwrap() >= 1.0, "every message crossed the bus: {report}");
    stop(nodes).await;
}

/// The seats work on SQLite too (two servers on one database file on one machine,
/// sharing a bus): each sees the other's peer, and the room's cap holds across them.
#[tokio::test]
async fn two_servers_on_one_sqlite_file_share_a_call_and_its_cap() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let nodes = servers_with(&db, 2, |_, c| c.bus = Some(nats.url.clone())).await;
    let (owner, guest, third) = (key(), key(), key());
    let room = nodes[0].room(&owner, &[&guest, &third]).await;
    nodes[0].server().gateway().store.set_max_peers(&room, Some(2)).await;
    let (mut a, _) = admitted(&nodes[0], &room, &owner).await;
    let (_b, wb) = admitted(&nodes[1], &room, &guest).await;
    assert_eq!(wb["peers"].as_array().unwrap().len(), 1, "{wb}");
    about(&mut a, "peer-joined", &wb["peerId"]).await;
    let mut c = nodes[0].connect().await;
    assert_eq!(server_code(c.join_webcrypto(join(&room), &third).await.unwrap_err()), "room-full");
    stop(nodes).await;
}

/// A host's pages on a server that holds nobody of the call still show and act on
/// it: the list of rooms counts the people in it, the live page lists them (with a
/// confirmation made meanwhile), and "ask to re-verify" and "kick" reach the peer
/// on the other server.
#[tokio::test]
async fn a_host_page_on_another_server_sees_and_acts_on_the_call() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus(&db, &nats, 2).await;
    let (owner, guest) = (key(), key());
    let host =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    sign_in(&nodes[1], &host, &owner).await;
    let room = nodes[0].room(&owner, &[&guest]).await;
    let (mut g, welcome) = admitted(&nodes[0], &room, &guest).await;
    let base = nodes[1].http();
    let page = async |url: String| host.get(url).send().await.unwrap().text().await.unwrap();

    let rooms = page(format!("{base}/rooms")).await;
    assert!(rooms.contains("</td><td>1</td></tr>"), "one person in the call, on the other server: {rooms}");
    let live = format!("{base}/rooms/{room}/live");
    let html = page(live.clone()).await;
    let peer = welcome["peerId"].as_str().unwrap();
    assert!(html.contains(peer) && html.contains("not re-verified"), "{html}");

    let token = csrf(&html);
    let form = |action: &str| {
        host.post(format!("{base}/rooms/{room}/{action}")).form(&[("csrf", token.as_str()), ("peer", peer)])
    };
    assert_eq!(form("reverify").send().await.unwrap().status(), 303);
    let challenge = until(&mut g, "challenge").await;
    g.send(&Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    until(&mut g, "peer-verified").await;
    eventually("the live page shows the confirmation", async || page(live.clone()).await.contains("re-verified 20"))
        .await;

    assert_eq!(form("kick").send().await.unwrap().status(), 303);
    assert_eq!(server_code(until_error(&mut g).await), "revoked");
    // Once its server has seen it out (its seat freed), it is gone for every server.
    eventually("the kicked peer is gone", async || form("reverify").send().await.unwrap().status() == 404).await;
    stop(nodes).await;
}

/// A seat not taken up (the whitelist changed while the key was checked, so the
/// join is refused and tried again with the same peer) is free before the retry:
/// the retry is seated, not refused as a duplicate.
#[tokio::test]
async fn a_join_retried_after_a_list_change_takes_its_seat_again() {
    let Some(db) = shared_database().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let nodes = on_one_bus(&db, &nats, 1).await;
    let owner = key();
    let room = nodes[0].room(&owner, &[]).await;
    let rooms = &nodes[0].server().gateway().rooms;
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let info = keygate::protocol::PeerInfo {
        peer_id: keygate::ids::PeerId::generate(),
        identity: identity(&owner).did().to_owned(),
        key_fingerprint: String::new(),
        label: "owner".into(),
        method: "webcrypto",
        admitted_at: String::new(),
        last_verified: None,
        vouched: Default::default(),
        proof: None,
    };
    let handle =
        keygate::rooms::PeerHandle { info, tx, kick: std::sync::Arc::new(tokio::sync::watch::channel(None).0) };
    let stale = rooms.changes().wrapping_sub(1);
    let refused = rooms.join(&room, handle.clone(), 8, stale).await;
    assert!(matches!(refused, Err(keygate::rooms::JoinError::ListChanged)), "a stale check is not seated");
    let seated = rooms.join(&room, handle, 8, rooms.changes()).await;
    assert!(seated.is_ok(), "the retry is seated: {:?}", seated.err());
    stop(nodes).await;
}
