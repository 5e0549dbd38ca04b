//! What a client that has proved nothing can cost, through the real server: each
//! limit of docs/security.md ("Denial of service without a key") holds at its
//! edge, and people with keys still get in while it does.

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keygate::client::ws::Client;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OTHER_ADDRESS: [u8; 4] = [127, 0, 0, 2];

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// An `ssh-rsa` public key blob with a modulus of `bytes` bytes.
fn rsa_blob(bytes: usize) -> Vec<u8> {
    let mut n = vec![0u8];
    n.extend((0..bytes).map(|i| (i as u8).wrapping_mul(31) | 0x81));
    let mut blob = Vec::new();
    ssh_string(&mut blob, b"ssh-rsa");
    ssh_string(&mut blob, &[1, 0, 1]);
    ssh_string(&mut blob, &n);
    blob
}

/// Reads until the server closes the connection (or `limit` passes): whether it
/// closed, and what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Item 5: an upgrade aborted with a TCP reset gives its connection slot back.
#[tokio::test]
async fn aborted_upgrades_release_their_slots() {
    let s = TestServer::with(|c| c.max_connections = 20).await;
    let addr = s.server().addr();
    // The reset must land after the server read the request and before it wrote
    // its answer: spread the resets over that window.
    for i in 0..300u64 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut stream = stream;
        stream.set_zero_linger().unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        std::thread::sleep(Duration::from_micros((i % 30) * 10));
        drop(stream); // RST, before the 101 can be written
    }
    // Every slot comes back: the gauge drains to zero, and people get in.
    let open = metric_until(&s, "keygate_connections", |v| v == 0.0).await;
    assert_eq!(open, 0.0, "connection slots leaked");
    let owner = key();
    let room = s.room(&owner, &[]).await;
    for _ in 0..20 {
        let (_c, welcome) = admitted(&s, &room, &owner).await;
        assert_eq!(welcome["type"], "welcome");
    }
    s.shutdown().await;
}

/// Item 6: keys are bounded before they are decoded: RSA moduli over 8192 bits,
/// and any key or DID text over a small fixed size, get a clear refusal.
#[tokio::test]
async fn huge_keys_are_refused_before_decoding() {
    let s = TestServer::start().await;
    // A 64 KiB modulus: the request body is over its limit, unread.
    let line = format!("ssh-rsa {} big", STANDARD.encode(rsa_blob(64 * 1024)));
    let (status, _) = post_json(&s, "/identity", &json!({"key": line})).await;
    assert_eq!(status, 413);
    // 13 KiB of modulus: the key text is over its limit, refused before decoding.
    let line = format!("ssh-rsa {} big", STANDARD.encode(rsa_blob(13 * 1024)));
    let (status, body) = post_json(&s, "/identity", &json!({"key": line})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("too long for a key"), "{body}");
    // 11 KiB of modulus fits the text limit: refused by size before anything else.
    let line = format!("ssh-rsa {} big", STANDARD.encode(rsa_blob(11 * 1024)));
    let (status, body) = post_json(&s, "/identity", &json!({"key": line})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("accepts at most 8192"), "{body}");
    // A DID whose base58 would take seconds to decode.
    let did = format!("did:key:z{}", "2".repeat(100_000));
    let (status, _) = post_json(&s, "/identity", &json!({"key": did})).await;
    assert_eq!(status, 413, "the body limit stops it first");
    let did = format!("did:key:z{}", "2".repeat(10_000));
    let (status, body) = post_json(&s, "/identity", &json!({"key": did})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("too long"), "{body}");
    // A real RSA-8192-sized key still works (the limit is inclusive).
    let line = format!("ssh-rsa {} ok", STANDARD.encode(rsa_blob(1024)));
    let (status, body) = post_json(&s, "/identity", &json!({"key": line})).await;
    assert_eq!(status, 200, "{body}");

    // Over the socket, from a stranger: an SSHSIG carrying a 12 KiB modulus.
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let mut blob = b"SSHSIG".to_vec();
    blob.extend_from_slice(&1u32.to_be_bytes());
    ssh_string(&mut blob, &rsa_blob(12 * 1024));
    ssh_string(&mut blob, b"keygate");
    ssh_string(&mut blob, b"");
    ssh_string(&mut blob, b"sha512");
    let mut sig = Vec::new();
    ssh_string(&mut sig, b"rsa-sha2-512");
    ssh_string(&mut sig, &[7u8; 1024]);
    ssh_string(&mut blob, &sig);
    let armored = format!("-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n", STANDARD.encode(blob));
    c.send(&json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": armored}))
        .await
        .unwrap();
    let refusal = c.recv().await.unwrap();
    assert_eq!(refusal["type"], "error", "{refusal}");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("at most 8192"))).await;
    s.shutdown().await;
}

/// Item 7: an unadmitted socket has an absolute lifetime that asking for new
/// challenges cannot extend.
#[tokio::test]
async fn requests_do_not_extend_an_unadmitted_socket_s_life() {
    let s = TestServer::with(|c| {
        c.auth_timeout = Duration::from_millis(500);
        c.manual_freshness = Duration::from_secs(1);
    })
    .await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    // Keep asking; before, each request pushed the deadline out again.
    let mut closed_with = None;
    for _ in 0..100 {
        if c.send(&join(&room)).await.is_err() {
            break;
        }
        match c.recv().await {
            Ok(f) if f["type"] == "challenge" => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(f) => {
                closed_with = Some(f);
                break;
            }
            Err(_) => break,
        }
    }
    assert_eq!(closed_with.expect("the socket outlived its lifetime")["code"], "auth-timeout");
    s.shutdown().await;
}

/// Item 7: frames before admission have a smaller limit than after.
#[tokio::test]
async fn frames_before_admission_are_smaller() {
    let s = TestServer::with(|c| c.max_unadmitted_frame_bytes = 1024).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    c.send(&json!({"type": "ping", "pad": "x".repeat(2000)})).await.unwrap();
    assert_eq!(server_code(c.expect("pong").await.unwrap_err()), "frame-too-large");
    let (mut c, _) = admitted(&s, &room, &owner).await;
    c.send(&json!({"type": "ping", "pad": "x".repeat(2000)})).await.unwrap();
    c.expect("pong").await.unwrap();
    s.shutdown().await;
}

/// Item 7: unadmitted sockets have a cap of their own, and one per address, so
/// strangers cannot take the places of people with keys.
#[tokio::test]
async fn unadmitted_sockets_are_capped_in_all_and_per_address() {
    let s = TestServer::with(|c| {
        c.max_connections = 100;
        c.max_unadmitted = 4;
        c.max_unadmitted_per_address = 2;
    })
    .await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let url = s.url();
    let other: IpAddr = OTHER_ADDRESS.into();
    // Two idle strangers from one address: a third from it is refused…
    let _a = Client::connect(&url).await.unwrap();
    let _b = Client::connect(&url).await.unwrap();
    let mut c = Client::connect(&url).await.unwrap();
    let refusal = c.recv().await.unwrap();
    assert_eq!(refusal["code"], "server-full");
    assert!(refusal["message"].as_str().unwrap().contains("your address"), "{refusal}");
    // …while another address still gets in, up to the cap for all.
    let _d = Client::connect_from(&url, other).await.unwrap();
    let mut e = Client::connect_from(&url, other).await.unwrap();
    e.request(join(&room)).await.unwrap();
    let mut f = Client::connect_from(&url, "127.0.0.3".parse().unwrap()).await.unwrap();
    assert_eq!(f.recv().await.unwrap()["code"], "server-full");
    // A closed socket gives its place back, and an admitted peer no longer counts:
    // admitting frees a place for the next.
    drop(e);
    assert_eq!(metric_until(&s, "keygate_unadmitted_connections", |v| v <= 3.0).await, 3.0);
    let mut owner_socket = Client::connect_from(&url, "127.0.0.4".parse().unwrap()).await.unwrap();
    let challenge = owner_socket.request(join(&room)).await.unwrap();
    owner_socket.send(&Client::webcrypto_auth(&challenge, &owner).unwrap()).await.unwrap();
    owner_socket.expect("welcome").await.unwrap();
    let mut g = Client::connect_from(&url, "127.0.0.3".parse().unwrap()).await.unwrap();
    g.request(join(&room)).await.unwrap();
    s.shutdown().await;
}

async fn post_from(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    client.post(url).json(body).send().await.unwrap()
}

fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::from(address)).build().unwrap()
}

/// Item 8: one address flooding the sign-in and registration endpoints is slowed
/// down (429), and cannot push out anyone else's sign-in in progress.
#[tokio::test]
async fn one_address_cannot_lock_everyone_out_of_signing_in() {
    // The rate limit first, at its default.
    let s = TestServer::start().await;
    let base = s.http();
    let flooder = client_from([127, 0, 0, 1]);
    let mut limited = 0;
    for _ in 0..400 {
        let res = post_from(&flooder, &format!("{base}/signin/challenge"), &json!({})).await;
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
            limited += 1;
        }
    }
    assert!(limited > 0, "no request was limited");
    let res = post_from(&flooder, &format!("{base}/webauthn/register/start"), &json!({})).await;
    assert_eq!(res.status(), 429);
    let someone = client_from(OTHER_ADDRESS);
    let res = post_from(&someone, &format!("{base}/signin/challenge"), &json!({})).await;
    assert_eq!(res.status(), 200);
    s.shutdown().await;

    // Then the pending maps, with the rate limit out of the way: a flood of 20,000
    // challenges from one address leaves another's sign-in (started first) intact.
    let s = TestServer::with(|c| c.http_requests_per_minute = 1_000_000).await;
    let base = s.http();
    let person = key();
    let ch: Value = post_from(&someone, &format!("{base}/signin/challenge"), &json!({})).await.json().await.unwrap();
    let started: Value =
        post_from(&someone, &format!("{base}/webauthn/register/start"), &json!({})).await.json().await.unwrap();
    let flood = (0..8).map(|_| {
        let (flooder, base) = (flooder.clone(), base.clone());
        tokio::spawn(async move {
            for i in 0..2500 {
                let path = if i % 2 == 0 { "signin/challenge" } else { "webauthn/register/start" };
                let res = post_from(&flooder, &format!("{base}/{path}"), &json!({})).await;
                assert_eq!(res.status(), 200);
            }
        })
    });
    for task in flood.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    let signed = ch["payload"].to_string();
    let answer = json!({
        "challengeId": ch["challengeId"], "method": "webcrypto", "payload": ch["payload"],
        "signature": person.sign_b64(signed.as_bytes()).unwrap(), "publicKey": person.public_jwk(),
    });
    let res = post_from(&someone, &format!("{base}/signin/verify"), &answer).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // The registration started before the flood is still there to finish.
    let origin = s.server().gateway().origin.clone();
    let authenticator = keygate::client::soft_webauthn::SoftAuthenticator::new("localhost", &origin).unwrap();
    let credential = authenticator.register(&started["options"]).unwrap();
    let body = json!({"registrationId": started["registrationId"], "credential": credential});
    let res = post_from(&someone, &format!("{base}/webauthn/register/finish"), &body).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    s.shutdown().await;
}

/// Item 10: a connection that never finishes its headers is closed, and HTTP
/// connections have a global cap.
#[tokio::test]
async fn slow_headers_are_cut_off_and_http_connections_are_capped() {
    let s = TestServer::with(|c| {
        c.http_header_timeout = Duration::from_millis(300);
        c.max_http_connections = 5;
    })
    .await;
    let addr = s.server().addr();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (closed, _) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a connection that never finished its headers was kept");

    // Five idle connections hold every place; a sixth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut sixth = TcpStream::connect(addr).await.unwrap();
    let _ = sixth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (closed, answer) = read_until_closed(&mut sixth, Duration::from_secs(10)).await;
    assert!(closed && !answer.contains("200 OK"), "{answer}");
    // The idle ones time out, and the server serves again.
    for mut c in idle {
        let (closed, _) = read_until_closed(&mut c, Duration::from_secs(10)).await;
        assert!(closed);
    }
    assert!(metric_until(&s, "keygate_limited_total", |v| v >= 1.0).await >= 1.0);
    let res = reqwest::get(format!("{}/healthz", s.http())).await.unwrap();
    assert_eq!(res.status(), 200);
    s.shutdown().await;
}

/// A metric, once `done` holds for it (or after a few seconds).
async fn metric_until(s: &TestServer, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    let mut value = 0.0;
    for _ in 0..200 {
        value = metric(s, name).await;
        if done(value) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    value
}

/// Item 9: connection limits above the open-file limit are lowered at start, with a
/// warning, so the clean "server full" refusal fires before the process runs out
/// of descriptors, and /metrics stays reachable.
#[tokio::test]
async fn connection_limits_fit_the_open_file_limit() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keygate.toml");
    std::fs::write(&config, "max_unadmitted_per_address = 100000\nmax_unadmitted = 100000\n").unwrap();
    let command = format!(
        "ulimit -n 200 && exec {} serve --listen 127.0.0.1:0 --db {} --config {}",
        keygate_bin().display(),
        dir.path().join("k.db").display(),
        config.display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &command])
        .env("KEYGATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // "keygate listening on ORIGIN (ADDRESS:PORT)"
    let port: u16 = line.trim().trim_end_matches(')').rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let Ok(mut c) = Client::connect(&url).await else { continue };
        c.send(&json!({"type": "ping"})).await.unwrap();
        match c.recv().await {
            Ok(f) if f["type"] == "pong" => open.push(c),
            Ok(f) if f["code"] == "server-full" => refused += 1,
            other => panic!("neither a pong nor a clean refusal: {other:?}"),
        }
    }
    assert!(refused > 0 && !open.is_empty(), "{} open, {refused} refused", open.len());
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("keygate_connections"), "{metrics}");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("connection limits lowered"), "{log}");
    assert!(!log.contains("accept failed"), "{log}");
}

/// Item 11: strangers' refusals cannot fill a room's audit log: past a budget of
/// rows per room and address, refusals are counted into one row.
#[tokio::test]
async fn refusals_from_one_address_are_counted_not_logged_one_by_one() {
    let s = TestServer::with(|c| c.refusal_rows_per_minute = 5).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let stranger = key();
    let mut c = s.connect().await;
    for _ in 0..40 {
        let challenge = c.request(join(&room)).await.unwrap();
        c.send(&Client::webcrypto_auth(&challenge, &stranger).unwrap()).await.unwrap();
        assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    }
    s.server().gateway().audit.flush().await;
    let refused = |events: &[keygate::store::AuditRecord]| events.iter().filter(|e| e.event == "refused").count();
    assert_eq!(refused(&s.audit(&room).await), 5, "the budget holds");
    assert_eq!(metric(&s, "keygate_refusals_total").await, 40.0, "every refusal is still counted");
    // Upkeep writes one row with the count of the rest.
    s.server().maintain_now().await;
    s.server().gateway().audit.flush().await;
    let events = s.audit(&room).await;
    assert_eq!(refused(&events), 6);
    assert!(events[0].reason.as_deref().unwrap().starts_with("35 more refusals from 127.0.0.1"), "{:?}", events[0]);
    // Another address has a budget of its own.
    let mut other = Client::connect_from(&s.url(), OTHER_ADDRESS.into()).await.unwrap();
    let challenge = other.request(join(&room)).await.unwrap();
    other.send(&Client::webcrypto_auth(&challenge, &stranger).unwrap()).await.unwrap();
    other.recv().await.unwrap();
    s.server().gateway().audit.flush().await;
    assert_eq!(refused(&s.audit(&room).await), 7);
    s.shutdown().await;
}

/// Item 11: audit rows past the retention, expired sign-in sessions and used-up or
/// expired invites are deleted by the upkeep; nothing younger is.
#[tokio::test]
async fn upkeep_deletes_what_has_lapsed_and_nothing_else() {
    let s = TestServer::with(|c| c.audit_retention_days = 30).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let pool = db_pool(&s.db).await;
    for at in ["2020-01-01T00:00:00.000Z", "2020-06-01T00:00:00.000Z"] {
        sqlx::query("INSERT INTO audit (room_id, at, event, reason) VALUES (?, ?, 'refused', 'old')")
            .bind(room.as_str())
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    for (hash, expires) in [("lapsed", &yesterday), ("live", &tomorrow)] {
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, identity, method, csrf, created_at, expires_at) VALUES (?, 'did:key:z', 'webcrypto', 'c', ?, ?)",
        )
        .bind(hash)
        .bind(&yesterday)
        .bind(expires)
        .execute(&pool)
        .await
        .unwrap();
    }
    for (id, uses, expires) in [("spent", 0, &tomorrow), ("old", 3, &yesterday), ("open", 3, &tomorrow)] {
        sqlx::query(
            "INSERT INTO invites (id, room_id, label, uses_left, expires_at, created_by, created_at) VALUES (?, ?, '', ?, ?, 'x', ?)",
        )
        .bind(id)
        .bind(room.as_str())
        .bind(uses)
        .bind(expires)
        .bind(&yesterday)
        .execute(&pool)
        .await
        .unwrap();
    }
    let (_c, _) = admitted(&s, &room, &owner).await;
    s.server().maintain_now().await;
    s.server().gateway().audit.flush().await;
    let events = s.audit(&room).await;
    assert!(events.iter().all(|e| e.reason.as_deref() != Some("old")), "{events:?}");
    assert!(events.iter().any(|e| e.event == "admitted"), "recent rows stay: {events:?}");
    let sessions: Vec<(String,)> =
        sqlx::query_as("SELECT token_hash FROM web_sessions").fetch_all(&pool).await.unwrap();
    assert_eq!(sessions, [("live".to_owned(),)]);
    let invites: Vec<(String,)> = sqlx::query_as("SELECT id FROM invites").fetch_all(&pool).await.unwrap();
    assert_eq!(invites, [("open".to_owned(),)]);
    pool.close().await;
    s.shutdown().await;
}

/// Item 11: labels are capped on every road (here the socket, whose 5,500-character
/// label used to be echoed to every peer).
#[tokio::test]
async fn labels_are_capped_on_the_socket_too() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[]).await;
    let (mut host, _) = admitted(&s, &room, &owner).await;
    let long = "x".repeat(5_500);
    host.send(&json!({"type": "whitelist", "add": [{"key": identity(&guest).did().as_str(), "label": long}]}))
        .await
        .unwrap();
    let updated = until(&mut host, "whitelist-updated").await;
    assert_eq!(updated["added"][0]["label"].as_str().unwrap().chars().count(), keygate::whitelist::MAX_LABEL_CHARS);
    let (_g, _) = admitted(&s, &room, &guest).await;
    let joined = until(&mut host, "peer-joined").await;
    assert_eq!(joined["label"].as_str().unwrap().chars().count(), keygate::whitelist::MAX_LABEL_CHARS, "{joined}");
    s.shutdown().await;
}

/// An upgraded WebSocket leaves the HTTP connection count (it is counted under
/// `max_connections`): sockets in calls never use up the places page loads need.
#[tokio::test]
async fn upgraded_sockets_leave_the_http_count() {
    let s = TestServer::with(|c| c.max_http_connections = 3).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(admitted(&s, &room, &owner).await.0);
    }
    assert_eq!(metric_until(&s, "keygate_http_connections", |v| v <= 1.0).await, 1.0, "only this request");
    let res = reqwest::get(format!("{}/healthz", s.http())).await.unwrap();
    assert_eq!(res.status(), 200);
    s.shutdown().await;
}

/// Bodies of the endpoints anyone may call are bounded before they are decoded.
#[tokio::test]
async fn open_endpoints_read_small_bodies_only() {
    let s = TestServer::start().await;
    let client = reqwest::Client::new();
    let big = json!({"challengeId": "x", "method": "webcrypto", "pad": "x".repeat(100 * 1024)});
    for path in ["/signin/verify", "/webauthn/register/finish", "/identity"] {
        let res = client.post(format!("{}{path}", s.http())).json(&big).send().await.unwrap();
        assert_eq!(res.status(), 413, "{path}");
    }
    s.shutdown().await;
}
