//! `keygate bench` modes that run quickly enough to check in the suite: the relay
//! mode delivers every message it sends, once, through a real server.

use crate::common::*;

#[test]
fn the_relay_mode_delivers_every_signal_it_sends() {
    let dir = tempfile::tempdir().unwrap();
    // 80 messages/s is two pairs of peers at 40 each, for one second.
    let out = keygate(&["bench", "--relay", "80", "--relay-seconds", "1"], &dir.path().join("unused.db"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("| messages/s asked | pairs | relayed |"), "a table first: {text}");
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["pairs"], 2, "{report}");
    assert_eq!(row["sent"], 80, "{report}");
    assert_eq!(row["received"], 80, "every signal arrives: {report}");
    assert!(row["p99_ms"].as_f64().unwrap() > 0.0, "latencies are measured: {report}");
}

/// The whitelist mode starts its own server, and says so instead of ignoring `--url`.
#[test]
fn the_whitelist_mode_refuses_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = keygate(&["bench", "--whitelist", "10", "--url", "ws://127.0.0.1:9/ws"], &dir.path().join("unused.db"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

/// The whitelist mode runs end to end on a small list: a fresh database made by
/// its own `keygate room create`, an import, admissions, changes, the host page.
#[test]
fn the_whitelist_mode_measures_a_small_list() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--whitelist", "10", "--clients", "2", "--admissions", "20", "--changes", "1"];
    let out = keygate(&args, &dir.path().join("unused.db"));
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["entries"], 10, "{report}");
    assert!(row["steady_per_sec"].as_f64().unwrap() > 0.0, "admissions were measured: {report}");
}
