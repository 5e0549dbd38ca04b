//! Deploying: keygate serving HTTPS/WSS itself (a certificate reloaded on SIGHUP
//! and when its files change, a broken one never replacing a good one), and behind
//! Debian's nginx, whose idle timeout the server's pings outlive and whose
//! `X-Forwarded-For` names the client only when nginx is a trusted proxy.

use crate::common::*;
use keygate::client::ws::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn trusting(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Whether the server on `port` answers a handshake with the certificate `cert_pem`.
async fn serves(port: u16, cert_pem: &str) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(trusting(cert_pem)).connect(name, tcp).await.is_ok()
}

/// `GET path` over HTTPS, trusting `cert_pem`: the whole response.
async fn https_get(port: u16, cert_pem: &str, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(trusting(cert_pem)).connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    out
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    // Written beside and renamed, as certbot and acme.sh do: never half a file.
    for (name, text) in [("cert.pem", cert), ("key.pem", key)] {
        std::fs::write(dir.join(format!("{name}.new")), text).unwrap();
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_tls_and_reloads_its_certificate_on_sighup_and_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (certificate(), certificate(), certificate());
    write_pair(dir.path(), &a);
    let owner = key();
    let db = dir.path().join("k.db");
    let room = room_from_cli(&db, &owner);
    let port = free_port();
    let log = dir.path().join("server.log");
    let mut server = Command::new(keygate_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    eventually("the server answers with certificate A", async || serves(port, &a.0).await).await;

    // HTTPS pages, and an admission over WSS with an https origin in its challenge.
    let health = https_get(port, &a.0, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.to_ascii_lowercase().contains("strict-transport-security"), "HSTS on https: {health}");
    let mut ws = Client::connect_tls(&format!("wss://localhost:{port}/ws"), trusting(&a.0)).await.unwrap();
    let challenge = ws.request(json!({"type": "request", "roomId": room})).await.unwrap();
    assert_eq!(challenge["payload"]["origin"], format!("https://localhost:{port}"));
    ws.send(&Client::webcrypto_auth(&challenge, &owner).unwrap()).await.unwrap();
    ws.expect("welcome").await.unwrap();
    // Plain HTTP on the TLS port gets nothing.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Renewed files and a SIGHUP: new handshakes get B; the open socket stays.
    write_pair(dir.path(), &b);
    let hup = Command::new("kill").args(["-HUP", &server.id().to_string()]).status().unwrap();
    assert!(hup.success());
    eventually("SIGHUP loads certificate B", async || serves(port, &b.0).await).await;
    assert!(!serves(port, &a.0).await);
    ws.send(&json!({"type": "ping"})).await.unwrap();
    assert_eq!(ws.expect("pong").await.unwrap()["type"], "pong");

    // Renewed files and no signal: the change is noticed by itself.
    write_pair(dir.path(), &c);
    eventually("a file change loads certificate C", async || serves(port, &c.0).await).await;

    // A key that does not belong to the certificate: reported, and C stays.
    std::fs::write(dir.path().join("key.pem"), &a.1).unwrap();
    Command::new("kill").args(["-HUP", &server.id().to_string()]).status().unwrap();
    eventually("the mismatch is reported", async || {
        std::fs::read_to_string(&log).unwrap().contains("does not belong to the certificate")
    })
    .await;
    assert!(serves(port, &c.0).await, "the previous certificate is still served");

    server.kill().unwrap();
    server.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("TLS certificate reloaded (SIGHUP)"), "{logged}");
    assert!(logged.contains("TLS certificate reloaded (its files changed)"), "{logged}");
}

#[test]
fn a_certificate_that_cannot_be_served_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &other_key).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let serve = |cert: &str, key: &str| {
        let out = Command::new(keygate_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("k.db"))
            .arg("--tls-cert")
            .arg(dir.path().join(cert))
            .arg("--tls-key")
            .arg(dir.path().join(key))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = serve("cert.pem", "key.pem");
    assert!(e.contains("does not belong to the certificate") && e.contains("key.pem"), "{e}");
    let e = serve("missing.pem", "key.pem");
    assert!(e.contains("cannot read") && e.contains("missing.pem"), "{e}");
    let e = serve("empty.pem", "key.pem");
    assert!(e.contains("holds no PEM certificate") && e.contains("empty.pem"), "{e}");
    let e = serve("cert.pem", "empty.pem");
    assert!(e.contains("holds no PEM private key") && e.contains("empty.pem"), "{e}");
    // One without the other is refused by the command line itself.
    let out = Command::new(keygate_bin()).args(["serve", "--tls-cert", "x.pem"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("tls_key"));
}

/// Reads (and so answers pings) for `d`; whether the socket stayed open.
async fn stays_open(c: &mut Client, d: Duration) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(until, c.next_message()).await {
            Err(_) => return true,
            Ok(Ok(Message::Close(_))) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => {}
        }
    }
}

const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_pings_keep_calls_open_and_forwarded_addresses_are_believed_from_it_only() {
    let pinging = TestServer::with(|s| {
        s.ping_interval = Duration::from_millis(400);
        s.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let silent = TestServer::with(|s| s.ping_interval = Duration::ZERO).await;
    let (front, front_silent) = (free_port(), free_port());
    let routes = [(front, pinging.server().addr().port()), (front_silent, silent.server().addr().port())];
    let Some(_nginx) = Nginx::start(&routes, "1s") else { return };
    let owner = key();

    // Without pings, nginx closes a quiet admitted socket after its read timeout…
    let room = silent.room(&owner, &[]).await;
    let mut c = Client::connect_from(&format!("ws://127.0.0.1:{front_silent}/ws"), CLIENT).await.unwrap();
    c.join_webcrypto(join(&room), &owner).await.unwrap();
    assert!(!stays_open(&mut c, Duration::from_secs(4)).await, "nginx should close a quiet socket after 1 s");

    // …with them, the call outlives it several times over.
    let room = pinging.room(&owner, &[]).await;
    let mut c = Client::connect_from(&format!("ws://127.0.0.1:{front}/ws"), CLIENT).await.unwrap();
    c.join_webcrypto(join(&room), &owner).await.unwrap();
    assert!(stays_open(&mut c, Duration::from_secs(4)).await, "pings keep the socket open through nginx");
    c.send(&json!({"type": "ping"})).await.unwrap();
    until(&mut c, "pong").await;

    // nginx is trusted: the audited address is the client's, not nginx's, even when
    // the client sends an X-Forwarded-For of its own (nginx appends to it).
    let stranger = key();
    let spoofed = |url: String| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut r = url.into_client_request().unwrap();
        r.headers_mut().insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        r
    };
    let mut via = Client::connect_request(spoofed(format!("ws://127.0.0.1:{front}/ws")), CLIENT).await.unwrap();
    assert!(via.join_webcrypto(join(&room), &stranger).await.is_err());
    let refused = pinging.audit_has(&room, |e| e.event == "refused").await;
    assert_eq!(refused.remote.as_deref(), Some("127.0.0.2"), "{refused:?}");
    let admitted = pinging.audit_has(&room, |e| e.event == "admitted").await;
    assert_eq!(admitted.remote.as_deref(), Some("127.0.0.2"), "{admitted:?}");

    // From an address that is not a trusted proxy, the header is ignored.
    let direct = format!("ws://{}/ws", pinging.server().addr());
    let mut d = Client::connect_request(spoofed(direct), CLIENT).await.unwrap();
    let other = pinging.room(&owner, &[]).await;
    assert!(d.join_webcrypto(join(&other), &stranger).await.is_err());
    let refused = pinging.audit_has(&other, |e| e.event == "refused").await;
    let remote = refused.remote.unwrap();
    assert!(remote.starts_with("127.0.0.2:"), "the direct peer, with its port: {remote}");
    pinging.shutdown().await;
    silent.shutdown().await;
}
