//! "Never log secrets, tickets or session cookies": the real binary, at trace log
//! level (every library's included), serves a sign-in (session cookie), an
//! admission (signature) and a ticket, a resume token and its redemption, hands out
//! TURN credentials, and refuses a private JWK sent by mistake, and none of them
//! (nor the TURN secret) appears in what it logged; the database keeps no ticket
//! or cookie either.

use crate::common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_no_cookie_ticket_or_signature() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let port = free_port();
    let owner = key();
    let room = room_from_cli(&db, &owner);
    let mut server = Command::new(keygate_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .env("KEYGATE_LOG", "trace")
        .env("KEYGATE_TURN_URLS", "turn:127.0.0.1:3478")
        .env("KEYGATE_TURN_SECRET", "turn-shared-secret-for-the-log-test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A sign-in: the session cookie.
    let ch: Value =
        client.post(format!("{base}/signin/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let signature = owner.sign_b64(ch["payload"].to_string().as_bytes()).unwrap();
    let answer = json!({"challengeId": ch["challengeId"], "method": "webcrypto", "payload": ch["payload"], "signature": signature, "publicKey": owner.public_jwk()});
    let res = client.post(format!("{base}/signin/verify")).json(&answer).send().await.unwrap();
    let cookie =
        res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().split('=').nth(1).unwrap().to_owned();

    // A ticket, and an admission with it (the ticket) and without (the signature).
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut c = keygate::client::ws::Client::connect(&url).await.unwrap();
    let ch = c.request(json!({"type": "request", "roomId": room, "ticket": true})).await.unwrap();
    let auth = keygate::client::ws::Client::webcrypto_auth(&ch, &owner).unwrap();
    let admission_signature = auth["signature"].as_str().unwrap().to_owned();
    c.send(&auth).await.unwrap();
    let ticket = c.expect("ticket").await.unwrap()["ticket"].as_str().unwrap().to_owned();
    let mut b = keygate::client::ws::Client::connect(&url).await.unwrap();
    let signed = json!({"type": "request", "roomId": room, "fingerprint": "sha-256 AB:CD"});
    let ch = b.request(signed.clone()).await.unwrap();
    b.send(&json!({"type": "auth", "method": "ticket", "payload": ch["payload"], "ticket": ticket})).await.unwrap();
    let welcome = b.expect("welcome").await.unwrap();
    let turn_credential = welcome["iceServers"][0]["credential"].as_str().unwrap().to_owned();
    // Its resume token, redeemed on another socket.
    let resume_token = welcome["resume"]["token"].as_str().unwrap().to_owned();
    drop(b);
    let mut r = keygate::client::ws::Client::connect(&url).await.unwrap();
    let ch = r.request(signed).await.unwrap();
    r.send(&json!({"type": "auth", "method": "resume", "payload": ch["payload"], "token": resume_token}))
        .await
        .unwrap();
    r.expect("welcome").await.unwrap();
    let resume_mac = resume_token.split('.').nth(1).unwrap().to_owned();

    // A private key sent by mistake: refused, and its "d" logged nowhere.
    let private = keygate::client::p256_key::P256Key::generate().unwrap();
    let mut jwk = private.public_jwk();
    let d = "private-scalar-d-that-must-never-be-logged";
    jwk["d"] = json!(d);
    let mut m = keygate::client::ws::Client::connect(&url).await.unwrap();
    let ch = m.request(json!({"type": "request", "roomId": room})).await.unwrap();
    let mut auth = keygate::client::ws::Client::webcrypto_auth(&ch, &private).unwrap();
    auth["publicKey"] = jwk;
    m.send(&auth).await.unwrap();
    assert!(m.expect("welcome").await.is_err());

    server.kill().unwrap();
    let mut logged = String::new();
    server.stderr.take().unwrap().read_to_string(&mut logged).unwrap();
    server.wait().unwrap();
    assert!(logged.lines().count() > 3, "trace logging produced nothing to check:\n{logged}");
    for (what, secret) in [
        ("session cookie", &cookie),
        ("ticket", &ticket),
        ("resume token", &resume_token),
        ("resume token's MAC", &resume_mac),
        ("signature", &signature),
        ("signature", &admission_signature),
        ("TURN secret", &"turn-shared-secret-for-the-log-test".to_owned()),
        ("TURN credential", &turn_credential),
        ("private JWK", &d.to_owned()),
    ] {
        assert!(!logged.contains(secret.as_str()), "the log contains a {what}:\n{logged}");
    }
    // Nor does the database hold a ticket or a session cookie a reader could present
    // (it keeps their SHA-256), in its file or its write-ahead log.
    let mut stored = std::fs::read(&db).unwrap();
    stored.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("resume:"), "the database was read (a spent resume token is in it)");
    for (what, secret) in [("session cookie", &cookie), ("ticket", &ticket)] {
        assert!(!stored.contains(secret.as_str()), "the database holds a {what}");
    }
}
