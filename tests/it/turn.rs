//! TURN credentials against a real coturn started on loopback: what keygate puts
//! into `welcome` allocates a relay (and relays packets); a credential past its
//! expiry, or one made with another secret, does not; unadmitted sockets never
//! see a credential.

use crate::common::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const SECRET: &str = "loopback-test-secret";

/// coturn on a free loopback port, REST credentials with `SECRET`, no TLS.
async fn coturn() -> Option<(Child, u16, tempfile::TempDir)> {
    let bin = tool("turnserver")?;
    tool("turnutils_uclient")?;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(bin)
        .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--no-tls", "--no-dtls", "--no-cli"])
        .args(["--use-auth-secret", "--realm=keygate.test", "--allow-loopback-peers", "--log-file=stdout"])
        .arg(format!("--static-auth-secret={SECRET}"))
        .arg(format!("--listening-port={port}"))
        .arg(format!("--userdb={}", dir.path().join("turndb").display()))
        .arg(format!("--pidfile={}", dir.path().join("turn.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnserver starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some((child, port, dir));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("turnserver did not start listening on {port}");
}

/// Allocates a relay with `turnutils_uclient` and sends packets through it.
async fn allocate(port: u16, username: &str, credential: &str) -> (bool, String) {
    let out = Command::new("turnutils_uclient")
        .args(["-y", "-n", "3", "-m", "1", "-e", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-u", username, "-w", credential, "127.0.0.1"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && text.contains("Total lost packets 0"), text)
}

async fn turn_server_entry(s: &TestServer) -> (String, String, serde_json::Value) {
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    assert!(!challenge.to_string().contains("credential"), "no TURN credential before admission: {challenge}");
    let auth = keygate::client::ws::Client::webcrypto_auth(&challenge, &owner).unwrap();
    c.send(&auth).await.unwrap();
    let welcome = c.expect("welcome").await.unwrap();
    let servers = welcome["iceServers"].as_array().unwrap().clone();
    let turn = servers.iter().find(|s| s.get("credential").is_some()).expect("a TURN entry").clone();
    (turn["username"].as_str().unwrap().to_owned(), turn["credential"].as_str().unwrap().to_owned(), turn)
}

/// Admits an RSA-3072 key made by ssh-keygen (signing with `ssh-keygen -Y sign`)
/// and returns its TURN username and credential.
async fn rsa_3072_turn_entry(s: &TestServer) -> (String, String) {
    let Some(_) = tool("ssh-keygen") else { panic!("ssh-keygen is needed") };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("id_rsa");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "rsa", "-b", "3072", "-f"])
        .arg(&key_file)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(dir.path().join("id_rsa.pub")).unwrap();
    let identity = keygate::identity::Identity::parse(&public).unwrap();
    assert!(identity.did().as_str().len() > 500, "{}", identity.did().as_str().len());
    let owner = key();
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.allow(&room, &identity, "rsa").await;
    s.server().gateway().rooms.invalidate(&room);
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let message = dir.path().join("challenge");
    std::fs::write(&message, challenge["payload"].to_string()).unwrap();
    let signed = std::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "keygate", "-f"])
        .arg(&key_file)
        .arg(&message)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let signature = std::fs::read_to_string(dir.path().join("challenge.sig")).unwrap();
    c.send(
        &serde_json::json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": signature}),
    )
    .await
    .unwrap();
    let welcome = c.expect("welcome").await.unwrap();
    let turn =
        welcome["iceServers"].as_array().unwrap().iter().find(|s| s.get("credential").is_some()).unwrap().clone();
    (turn["username"].as_str().unwrap().to_owned(), turn["credential"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn issued_credentials_allocate_and_expired_ones_do_not() {
    let Some((_turn, port, _dir)) = coturn().await else { return };
    let url = format!("turn:127.0.0.1:{port}?transport=udp");

    let s = TestServer::with(|c| {
        c.turn_urls = vec![url.clone()];
        c.turn_secret = Some(SECRET.into());
        c.stun_urls = vec![format!("stun:127.0.0.1:{port}")];
    })
    .await;
    let (username, credential, entry) = turn_server_entry(&s).await;
    assert_eq!(entry["urls"][0], url.as_str());
    let (expiry, identity) = username.split_once(':').unwrap();
    assert!(identity.starts_with("SHA256:"), "the username names the admitted key's fingerprint: {username}");
    let left = expiry.parse::<u64>().unwrap() as i64 - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&left), "default TTL is an hour: {left} s left");
    let (ok, log) = allocate(port, &username, &credential).await;
    assert!(ok, "an issued credential allocates a relay:\n{log}");

    // An RSA-3072 key (ssh-keygen's default): its DID is over 500 bytes, but its
    // credentials are as short as any and allocate too.
    let (username, credential) = rsa_3072_turn_entry(&s).await;
    assert!(username.len() < 80, "{username}");
    let (ok, log) = allocate(port, &username, &credential).await;
    assert!(ok, "an RSA-3072 identity's credential allocates a relay:\n{log}");

    // The same username with a credential made from another secret is refused.
    let (forged, log) = allocate(port, &username, "bm90IHRoZSBzZWNyZXQ=").await;
    assert!(!forged, "a wrong credential must not allocate:\n{log}");
    s.shutdown().await;

    // A server issuing one-second credentials: once expired, coturn refuses them.
    let s = TestServer::with(|c| {
        c.turn_urls = vec![url.clone()];
        c.turn_secret = Some(SECRET.into());
        c.turn_ttl = Duration::from_secs(1);
    })
    .await;
    let (username, credential, _) = turn_server_entry(&s).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (ok, log) = allocate(port, &username, &credential).await;
    assert!(!ok && log.contains("Cannot complete Allocation"), "an expired credential must not allocate:\n{log}");
    s.shutdown().await;
}
