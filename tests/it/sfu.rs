//! Rooms beyond the mesh, with Debian's Janus (VideoRoom) as the media engine on
//! loopback, started by each test from a temporary configuration: the client
//! keygate drives Janus with.

use crate::common::*;
use keygate::rooms::Media;
use keygate::sfu::janus::{Janus, JanusError};
use keygate::whitelist::Actor;
use serde_json::json;

/// keygate's one connection to Janus carries sessions, handles and VideoRoom
/// requests; Janus's refusals come back as errors, and a destroyed session is gone.
#[tokio::test]
async fn keygate_drives_janus_videoroom_over_its_websocket_api() {
    let Some(server) = JanusServer::start() else { return };
    let api = Janus::connect(&server.url).await.unwrap();
    let session = api.create_session().await.unwrap();
    let (handle, _events) = api.attach(session, "janus.plugin.videoroom").await.unwrap();
    let room = json!({"request": "create", "room": 4242, "secret": "kept by keygate", "publishers": 16});
    let created = api.message(session, handle, room.clone(), None).await.unwrap();
    assert_eq!(created["plugindata"]["data"]["videoroom"], "created", "{created}");
    let exists = api.message(session, handle, json!({"request": "exists", "room": 4242}), None).await.unwrap();
    assert_eq!(exists["plugindata"]["data"]["exists"], true, "{exists}");
    let again = api.message(session, handle, room, None).await;
    assert!(matches!(&again, Err(JanusError::Refused(r)) if r.contains("already exists")), "{again:?}");

    // A publisher joins under the id keygate gives it (here 7, named by its peer id).
    let join = json!({"request": "join", "ptype": "publisher", "room": 4242, "id": 7, "display": "0123456789abcdef"});
    let joined = api.message(session, handle, join, None).await.unwrap();
    assert_eq!(joined["plugindata"]["data"]["videoroom"], "joined", "{joined}");
    assert_eq!(joined["plugindata"]["data"]["id"], 7);
    let listed =
        api.message(session, handle, json!({"request": "listparticipants", "room": 4242}), None).await.unwrap();
    assert_eq!(listed["plugindata"]["data"]["participants"][0]["display"], "0123456789abcdef", "{listed}");

    api.keepalive(session).await.unwrap();
    api.destroy(session).await.unwrap();
    assert!(matches!(api.keepalive(session).await, Err(JanusError::Refused(_))), "a destroyed session is gone");
    // Whoever holds another session sees the publisher gone with it (Janus tears a
    // session's handles down in the background, so not necessarily at once).
    let watcher = api.create_session().await.unwrap();
    let (h, _) = api.attach(watcher, "janus.plugin.videoroom").await.unwrap();
    let listed = json!({"request": "listparticipants", "room": 4242});
    eventually("the destroyed session's publisher leaves the room", async || {
        let listed = api.message(watcher, h, listed.clone(), None).await.unwrap();
        listed["plugindata"]["data"]["participants"] == json!([])
    })
    .await;
}

/// `--janus` names Janus's API; a server that cannot reach it does not start, and
/// says where it looked.
#[tokio::test]
async fn a_server_without_its_janus_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = std::process::Command::new(keygate_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--janus", &format!("ws://127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("k.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot reach Janus") && said.contains(&port.to_string()), "{said}");
}

/// With a Janus to reach, the server starts with its connection and names it in
/// its start-up summary.
#[tokio::test]
async fn a_server_with_its_janus_starts_connected() {
    let Some(janus) = JanusServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(keygate_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--janus", &janus.url, "--db"])
        .arg(dir.path().join("k.db"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let summary: Vec<String> =
        std::io::BufReader::new(child.stdout.take().unwrap()).lines().take(10).map_while(Result::ok).collect();
    let _ = child.kill();
    let _ = child.wait();
    let line = summary.iter().find(|l| l.trim_start().starts_with("janus")).cloned().unwrap_or_default();
    assert!(line.contains(&janus.url) && line.contains("SFU"), "{summary:#?}");
}

/// An SDP as a browser would send it (audio, ICE and DTLS parameters, no
/// candidates: they trickle), enough for Janus to answer.
fn sdp(kind: &str, direction: &str, setup: &str) -> serde_json::Value {
    let fingerprint = vec!["AB"; 32].join(":");
    let sdp = [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS s",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=ice-options:trickle",
        &format!("a=fingerprint:sha-256 {fingerprint}"),
        &format!("a=setup:{setup}"),
        "a=mid:0",
        &format!("a={direction}"),
        "a=rtcp-mux",
        "a=msid:s t",
        "a=rtpmap:111 opus/48000/2",
        "a=ssrc:1111 cname:x",
        "",
    ]
    .join("\r\n");
    json!({"type": kind, "sdp": sdp})
}

/// Reads frames until an `sfu` one with `op`.
async fn sfu_frame(c: &mut keygate::client::ws::Client, op: &str) -> serde_json::Value {
    loop {
        let f = c.recv().await.unwrap();
        assert_ne!(f["type"], "error", "waiting for sfu {op}: {f}");
        if f["type"] == "sfu" && f["op"] == op {
            return f;
        }
    }
}

/// Media through Janus, relayed for admitted peers only: a peer publishes as
/// itself (keygate names its feed: its display is the admitted peer id); a feed
/// whose connection never came up is offered to no one; a stranger's socket gets
/// nothing; a peer removed from the whitelist leaves Janus with its seat.
/// (Media flowing is two_browsers_exchange_media_through_janus.)
#[tokio::test]
async fn admitted_peers_publish_through_janus_as_themselves_and_a_removal_ends_it() {
    let Some(janus) = JanusServer::start() else { return };
    let s = TestServer::with(|c| c.janus = Some(janus.url.clone())).await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    s.server().gateway().store.set_media(&room, Media::Sfu).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    let (mut b, wb) = admitted(&s, &room, &guest).await;
    until(&mut a, "peer-joined").await;

    // Not admitted: nothing reaches Janus.
    let mut stranger = s.connect().await;
    stranger.send(&json!({"type": "sfu", "op": "publish", "jsep": sdp("offer", "sendonly", "actpass")})).await.unwrap();
    assert_eq!(server_code(stranger.expect("sfu").await.unwrap_err()), "unauthenticated");

    // Janus gets only what a browser sends: an offer to publish, an ICE candidate.
    for (bad, says) in [
        (json!({"type": "sfu", "op": "publish", "jsep": sdp("answer", "sendonly", "actpass")}), "offer"),
        (json!({"type": "sfu", "op": "trickle", "candidate": {"janus": "destroy"}}), "candidate"),
    ] {
        b.send(&bad).await.unwrap();
        let refused = b.expect("sfu").await.unwrap_err();
        assert!(refused.to_string().contains(says), "{refused}");
    }

    // b publishes; Janus answers. Its connection never comes up (this test has no
    // media), so a hears of no feed and cannot ask for one.
    b.send(&json!({"type": "sfu", "op": "publish", "jsep": sdp("offer", "sendonly", "actpass")})).await.unwrap();
    let answer = sfu_frame(&mut b, "answer").await;
    assert_eq!(answer["jsep"]["type"], "answer", "{answer}");
    assert!(answer["jsep"]["sdp"].as_str().unwrap().contains("a=recvonly"), "{answer}");
    a.send(&json!({"type": "sfu", "op": "subscribe", "peerId": wb["peerId"]})).await.unwrap();
    let refused = a.expect("sfu").await.unwrap_err();
    assert!(refused.to_string().contains("publishes no media"), "{refused}");
    // An answer or a candidate for a subscription that does not exist is refused.
    a.send(
        &json!({"type": "sfu", "op": "answer", "peerId": wb["peerId"], "jsep": sdp("answer", "recvonly", "active")}),
    )
    .await
    .unwrap();
    assert_eq!(server_code(a.expect("sfu").await.unwrap_err()), "bad-message");
    // Only peers of the room.
    a.send(&json!({"type": "sfu", "op": "subscribe", "peerId": "0000000000000000"})).await.unwrap();
    assert_eq!(server_code(a.expect("sfu").await.unwrap_err()), "no-such-peer");

    // On Janus, the publisher is the one keygate admitted: its display is b's peer id.
    let view = janus.view().await;
    let janus_room = view.rooms().await[0]["room"].clone();
    let participants = async || {
        let listed = view.ask(json!({"request": "listparticipants", "room": janus_room})).await;
        listed["participants"].as_array().cloned().unwrap_or_default()
    };
    let now = participants().await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["display"], wb["peerId"]);
    // An operator sees the room on Janus and the sessions there (b's, and a's, opened by its subscribe).
    let scrape =
        async || reqwest::get(format!("http://{}/metrics", s.server().addr())).await.unwrap().text().await.unwrap();
    let metrics = scrape().await;
    assert!(metrics.contains("keygate_sfu_rooms 1") && metrics.contains("keygate_sfu_sessions 2"), "{metrics}");

    // The owner removes b's key: b is ejected, and its media leaves Janus with it.
    let removed = std::time::Instant::now();
    s.server().gateway().whitelist().remove(&room, Actor::operator(), &identity(&guest)).await.unwrap();
    assert_eq!(server_code(b.expect("never").await.unwrap_err()), "revoked");
    eventually("b's feed leaves Janus", async || participants().await.is_empty()).await;
    let metrics = scrape().await;
    assert!(metrics.contains("keygate_sfu_sessions 1"), "b's session went with its seat: {metrics}");
    eprintln!("removal to the feed gone from Janus: {} ms", removed.elapsed().as_millis());
    // The room stays on Janus while a peer of it has a session there, and goes
    // with the last.
    let listed = async || view.rooms().await.len();
    assert_eq!(listed().await, 1);
    a.close().await;
    eventually("the room leaves Janus with its last peer", async || listed().await == 0).await;
    s.shutdown().await;
}

/// Two people in headless Chromium publish their (fake) camera and microphone
/// through Janus and each decodes the other's video and audio
/// (tests/js/sfu.browser.mjs, speaking the `sfu` messages directly).
#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_exchange_media_through_janus() {
    let Some(janus) = JanusServer::start() else { return };
    let url = janus.url.clone();
    let Some(out) = run_browser_script("sfu.browser.mjs", |c| c.janus = Some(url)).await else { return };
    if let Some(timings) = out.lines().find(|l| l.starts_with('{')) {
        eprintln!("sfu timings: {timings}");
    }
    drop(janus);
}

/// Janus restarts (it forgets every session and room): keygate connects again by
/// itself, and a peer that publishes again is answered, with no restart of keygate.
#[tokio::test]
async fn after_janus_restarts_a_peer_publishes_again() {
    let Some(mut janus) = JanusServer::start() else { return };
    let s = TestServer::with(|c| c.janus = Some(janus.url.clone())).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.set_media(&room, Media::Sfu).await;
    let (mut a, _) = admitted(&s, &room, &owner).await;
    let publish = json!({"type": "sfu", "op": "publish", "jsep": sdp("offer", "sendonly", "actpass")});
    a.send(&publish).await.unwrap();
    assert_eq!(sfu_frame(&mut a, "answer").await["jsep"]["type"], "answer");

    janus.restart();
    let restarted = std::time::Instant::now();
    let mut answered = false;
    while !answered && restarted.elapsed() < std::time::Duration::from_secs(10) {
        a.send(&publish).await.unwrap();
        // Until keygate is connected again, it says at once that the SFU cannot be reached.
        answered = a.expect("sfu").await.is_ok_and(|f| f["op"] == "answer");
        if !answered {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    assert!(answered, "publishing works again after Janus restarted:\n{}", janus.log());
    eprintln!("Janus restart to a publish answered again: {} ms", restarted.elapsed().as_millis());
    s.shutdown().await;
}

/// A room's media mode decides how its calls carry media: the mesh by default (the
/// SFU refuses its peers), `sfu` from the next call on, and `auto` moves a call
/// that reaches `sfu_from` peers to the SFU, telling everyone at once; the next
/// call starts in the mesh again. A server without Janus keeps every call in the mesh.
#[tokio::test]
async fn a_room_s_media_mode_decides_how_its_calls_carry_media() {
    let Some(janus) = JanusServer::start() else { return };
    let s = TestServer::with(|c| {
        c.janus = Some(janus.url.clone());
        c.sfu_from = 3;
    })
    .await;
    let (owner, b, c) = (key(), key(), key());
    let room = s.room(&owner, &[&b, &c]).await;
    // As a host page sets it: the running server follows at once.
    let set_media = async |media: Media| {
        let edit = |s: &mut keygate::store::RoomSettings| s.media = Some(media.as_str().to_owned());
        s.server().gateway().whitelist().settings(&room, Actor::operator(), edit).await.unwrap();
    };
    let publish = json!({"type": "sfu", "op": "publish", "jsep": sdp("offer", "sendonly", "actpass")});

    // The mesh: no SFU for this call.
    let (mut a, wa) = admitted(&s, &room, &owner).await;
    assert_eq!(wa["media"], "mesh");
    a.send(&publish).await.unwrap();
    let refused = a.expect("sfu").await.unwrap_err();
    assert!(refused.to_string().contains("this call is peer to peer"), "{refused}");

    // `sfu`: the call under way stays as it is; the next one goes through the SFU.
    set_media(Media::Sfu).await;
    let (b1, wb) = admitted(&s, &room, &b).await;
    assert_eq!(wb["media"], "mesh", "a call keeps the way it started");
    a.close().await;
    b1.close().await;
    eventually("the call ends", async || s.server().gateway().rooms.peers(&room).is_empty()).await;
    let (mut a, wa) = admitted(&s, &room, &owner).await;
    assert_eq!(wa["media"], "sfu");
    a.send(&publish).await.unwrap();
    assert_eq!(sfu_frame(&mut a, "answer").await["jsep"]["type"], "answer");
    a.close().await;
    eventually("the call ends", async || s.server().gateway().rooms.peers(&room).is_empty()).await;

    // `auto`: the mesh for two; the third moves the call to the SFU.
    set_media(Media::Auto).await;
    let (mut a, wa) = admitted(&s, &room, &owner).await;
    let (mut b1, wb) = admitted(&s, &room, &b).await;
    assert_eq!((wa["media"].as_str(), wb["media"].as_str()), (Some("mesh"), Some("mesh")));
    until(&mut a, "peer-joined").await;
    let (c1, wc) = admitted(&s, &room, &c).await;
    assert_eq!(wc["media"], "sfu");
    for peer in [&mut a, &mut b1] {
        until(peer, "peer-joined").await;
        assert_eq!(peer.expect("media").await.unwrap()["mode"], "sfu");
    }
    b1.send(&publish).await.unwrap();
    assert_eq!(sfu_frame(&mut b1, "answer").await["jsep"]["type"], "answer");
    // Someone leaving does not move the call back; the next call starts in the mesh.
    c1.close().await;
    until(&mut a, "peer-left").await;
    for p in [a, b1] {
        p.close().await;
    }
    eventually("the call ends", async || s.server().gateway().rooms.peers(&room).is_empty()).await;
    let (_a, wa) = admitted(&s, &room, &owner).await;
    assert_eq!(wa["media"], "mesh");
    s.audit_has(&room, |e| e.event == "settings" && e.reason.as_deref().is_some_and(|r| r.ends_with("media auto")))
        .await;
    s.shutdown().await;

    // Without Janus, a room set to the SFU still meets in the mesh.
    let s = TestServer::start().await;
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.set_media(&room, Media::Sfu).await;
    let (_a, wa) = admitted(&s, &room, &owner).await;
    assert_eq!(wa["media"], "mesh");
    s.shutdown().await;

    // Nor with a bus: each server's Janus serves its own peers, and a call may span servers.
    let Some(nats) = NatsServer::start() else { return };
    let s = TestServer::with(|c| {
        c.janus = Some(janus.url.clone());
        c.bus = Some(nats.url.clone());
    })
    .await;
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.set_media(&room, Media::Sfu).await;
    let (_a, wa) = admitted(&s, &room, &owner).await;
    assert_eq!(wa["media"], "mesh");
    s.shutdown().await;
}

/// An `auto` room in Chromium: two meet peer to peer, the third moves the call to
/// the SFU on every page without anyone rejoining (tests/js/auto.browser.mjs).
#[tokio::test(flavor = "multi_thread")]
async fn an_auto_call_moves_to_the_sfu_as_it_grows() {
    let Some(janus) = JanusServer::start() else { return };
    let url = janus.url.clone();
    let adjust = |c: &mut keygate::config::Settings| {
        c.janus = Some(url);
        c.sfu_from = 3;
    };
    let Some(out) = run_browser_script("auto.browser.mjs", adjust).await else { return };
    if let Some(timings) = out.lines().find(|l| l.starts_with('{')) {
        eprintln!("auto timings: {timings}");
    }
    drop(janus);
}

/// A room on Janus takes as many publishers as keygate seats: Janus's own limit
/// (which counts publishers whose media flows) is far above any room's cap, so a
/// large call is never refused by Janus.
#[tokio::test]
async fn a_room_on_janus_takes_every_peer_keygate_seats() {
    let Some(janus) = JanusServer::start() else { return };
    let s = TestServer::with(|c| {
        c.janus = Some(janus.url.clone());
        c.max_peers_per_room = 50;
    })
    .await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.set_media(&room, Media::Sfu).await;
    let (mut c, _) = admitted(&s, &room, &owner).await;
    c.send(&json!({"type": "sfu", "op": "publish", "jsep": sdp("offer", "sendonly", "actpass")})).await.unwrap();
    assert_eq!(sfu_frame(&mut c, "answer").await["jsep"]["type"], "answer");
    let rooms = janus.view().await.rooms().await;
    assert_eq!(rooms[0]["description"], "keygate", "{rooms:?}");
    assert_eq!(rooms[0]["max_publishers"], 50, "the server's cap: {rooms:?}");
    s.shutdown().await;
}

/// A server killed with calls on Janus leaves its rooms there; the next server on
/// the same database clears them when it connects (their secrets derive from a key
/// in the database). A room of another keygate (another key) is left alone.
#[tokio::test]
async fn rooms_a_killed_server_left_on_janus_are_cleared_by_the_next() {
    let Some(janus) = JanusServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let owner = key();
    let room = keygate::ids::RoomId::generate();
    {
        let store = keygate::store::Store::open(&db).await.unwrap();
        store.create_room(&room, "on Janus", &identity(&owner)).await;
        store.set_media(&room, Media::Sfu).await;
    }
    let serve = |port: u16| {
        std::process::Command::new(keygate_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--janus", &janus.url, "--db"])
            .arg(&db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let connect = async |port: u16| {
        for _ in 0..100 {
            if let Ok(c) = keygate::client::ws::Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the server did not start");
    };

    // Another keygate's room on the same Janus, made with a secret of its own.
    let view = janus.view().await;
    view.ask(json!({"request": "create", "room": 777, "secret": "not yours", "description": "keygate"})).await;
    let ours = async || {
        let rooms = view.rooms().await;
        rooms.into_iter().filter_map(|r| r["room"].as_u64()).filter(|id| *id != 777).collect::<Vec<_>>()
    };

    let port = free_port();
    let mut first = serve(port);
    let mut c = connect(port).await;
    c.join_webcrypto(join(&room), &owner).await.unwrap();
    c.send(&json!({"type": "sfu", "op": "publish", "jsep": sdp("offer", "sendonly", "actpass")})).await.unwrap();
    assert_eq!(sfu_frame(&mut c, "answer").await["jsep"]["type"], "answer");
    assert_eq!(ours().await.len(), 1, "the call's room is on Janus");
    let _ = first.kill();
    let _ = first.wait();
    // Its sessions go with its connection; its room stays, empty.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(ours().await.len(), 1, "a killed server cannot clear up");

    let port = free_port();
    let mut next = serve(port);
    let _c = connect(port).await;
    eventually("the next server clears the room left on Janus", async || ours().await.is_empty()).await;
    let rooms = view.rooms().await;
    assert!(rooms.iter().any(|r| r["room"] == 777), "another keygate's room stays: {rooms:?}");
    let _ = next.kill();
    let _ = next.wait();
}

/// A call through the SFU survives a restart of keygate: the pages come back by
/// themselves, publish again and decode each other again, encrypted
/// (tests/js/sfu_restart.browser.mjs).
#[tokio::test(flavor = "multi_thread")]
async fn a_call_through_the_sfu_comes_back_after_a_server_restart() {
    let Some(janus) = JanusServer::start() else { return };
    let url = janus.url.clone();
    let Some(seen) = run_browser_restarting("sfu_restart.browser.mjs", |c| c.janus = Some(url)).await else { return };
    if let Some(timings) = seen.iter().find(|l| l.starts_with('{')) {
        eprintln!("sfu restart timings: {timings}");
    }
    drop(janus);
}
