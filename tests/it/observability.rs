//! What an operator sees: `/metrics` in OpenMetrics text with a HELP line for every
//! series, proofs labelled by method and outcome, histograms of admission and
//! signature-check time; `/metrics` on an address of its own when asked; `/readyz`
//! that asks the database; one structured log line per admission and refusal, as
//! JSON on request, and no colour codes in a log that is not a terminal.

use crate::common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let res = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn metrics_have_help_labels_and_histograms() {
    let s = TestServer::start().await;
    let (owner, stranger) = (key(), key());
    let room = s.room(&owner, &[]).await;
    s.connect().await.join_webcrypto(join(&room), &owner).await.unwrap();
    assert!(s.connect().await.join_webcrypto(join(&room), &stranger).await.is_err());

    let (status, body) = get(s.server().addr(), "/metrics").await;
    assert_eq!(status, 200);
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(body.contains(&format!("# HELP {name} ")), "{name} has no HELP line:\n{body}");
    }
    for series in [
        "keygate_proofs_total{method=\"webcrypto\",outcome=\"admitted\"} 1",
        "keygate_proofs_total{method=\"webcrypto\",outcome=\"refused\"} 1",
        "keygate_admission_duration_seconds_count{method=\"webcrypto\"} 2",
        // The stranger's key is not on the list: only the owner's signature was checked.
        "keygate_signature_check_duration_seconds_count{method=\"webcrypto\"} 1",
        "keygate_admissions_total 1",
        "keygate_connections ",
        "process_cpu_seconds_total ",
        "# EOF",
    ] {
        assert!(body.contains(series), "{series} missing:\n{body}");
    }
    assert!(
        body.contains("keygate_admission_duration_seconds_bucket{le=\"0.0001\",method=\"webcrypto\"}")
            || body.contains("keygate_admission_duration_seconds_bucket{method=\"webcrypto\",le=\"0.0001\"}"),
        "{body}"
    );

    // Ready while the database answers; not once it is gone.
    assert_eq!(get(s.server().addr(), "/readyz").await, (200, "ready\n".into()));
    s.server().gateway().store.close().await;
    let (status, said) = get(s.server().addr(), "/readyz").await;
    assert_eq!(status, 503, "{said}");
    assert!(said.starts_with("database unavailable"), "{said}");
    assert_eq!(get(s.server().addr(), "/healthz").await.0, 200, "the process itself still answers");
}

#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let s = TestServer::with(|s| s.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let private = s.server().metrics_addr().unwrap();
    assert_eq!(get(s.server().addr(), "/metrics").await.0, 404, "not on the public address");
    let (status, body) = get(private, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("# HELP keygate_connections "), "{body}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_log_line_per_admission_and_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let owner = key();
    let room = room_from_cli(&db, &owner);
    let port = free_port();
    let log = dir.path().join("log");
    let mut server = Command::new(keygate_bin())
        .args(["serve", "--log-format", "json", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut c = None;
    for _ in 0..100 {
        if let Ok(client) = keygate::client::ws::Client::connect(&url).await {
            c = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut c = c.unwrap();
    c.join_webcrypto(json!({"type": "request", "roomId": room}), &owner).await.unwrap();
    let stranger = key();
    let mut d = keygate::client::ws::Client::connect(&url).await.unwrap();
    assert!(d.join_webcrypto(json!({"type": "request", "roomId": room}), &stranger).await.is_err());
    server.kill().unwrap();
    server.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}'), "no colour codes in a file:\n{text}");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let admitted = lines.iter().find(|l| l["event"] == "admitted").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(admitted["identity"], identity(&owner).did().as_str());
    assert_eq!(admitted["method"], "webcrypto");
    assert_eq!(admitted["room"], room.as_str());
    assert_eq!(admitted["purpose"], "join");
    assert!(admitted["duration_ms"].as_f64().is_some(), "{admitted}");
    let refused = lines.iter().find(|l| l["event"] == "refused").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(refused["identity"], identity(&stranger).did().as_str());
    assert_eq!(refused["reason"], "unknown key");
    assert_eq!(refused["room"], room.as_str());
    assert!(refused["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{refused}");
}
