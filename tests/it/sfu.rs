//! Rooms beyond the mesh, with Debian's Janus (VideoRoom) as the media engine on
//! loopback, started by each test from a temporary configuration: the client
//! keygate drives Janus with.

use crate::common::*;
use keygate::sfu::janus::{Janus, JanusError};
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
    // Whoever holds another session sees the publisher gone with it.
    let watcher = api.create_session().await.unwrap();
    let (h, _) = api.attach(watcher, "janus.plugin.videoroom").await.unwrap();
    let listed = api.message(watcher, h, json!({"request": "listparticipants", "room": 4242}), None).await.unwrap();
    assert_eq!(listed["plugindata"]["data"]["participants"], json!([]), "{listed}");
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
    assert!(line.contains(&janus.url) && line.contains("rooms beyond the mesh"), "{summary:#?}");
}
