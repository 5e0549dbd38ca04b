//! `keygate sign` with a real OpenSSH ssh-agent (keys added by ssh-add) and with key
//! files, admitting through the real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use keygate::identity::Identity;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// An ssh-agent started for one test, killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).stdout(Stdio::null()).spawn().unwrap();
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(socket.exists(), "ssh-agent did not create its socket");
        Agent { child, socket }
    }

    fn add(&self, key: &Path) {
        let status = Command::new("ssh-add").arg("-q").arg(key).env("SSH_AUTH_SOCK", &self.socket).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(dir: &Path, kind: &str, bits: &str) -> PathBuf {
    let path = dir.join(format!("{kind}{bits}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", &format!("{kind}{bits}@agent-test"), "-t", kind, "-f"]).arg(&path);
    if !bits.is_empty() {
        cmd.args(["-b", bits]);
    }
    assert!(cmd.status().unwrap().success());
    path
}

fn keygate_sign(args: &[&str], stdin: &str, auth_sock: Option<&Path>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(keygate_bin());
    cmd.arg("sign").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    match auth_sock {
        Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn keys_in_a_real_ssh_agent_sign_their_way_in() {
    let (Some(_), Some(_), Some(_)) = (tool("ssh-agent"), tool("ssh-add"), tool("ssh-keygen")) else { return };
    let s = TestServer::start().await;
    let agent = Agent::start(s.dir.path());
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let keys = [
        keygen(s.dir.path(), "ed25519", ""),
        keygen(s.dir.path(), "ecdsa", "256"),
        keygen(s.dir.path(), "rsa", "3072"),
    ];
    for k in &keys {
        agent.add(k);
        let id = Identity::parse(&std::fs::read_to_string(k.with_extension("pub")).unwrap()).unwrap();
        gw.store.allow(&room, &id, "agent key", "test").await.unwrap();
    }
    gw.rooms.invalidate(&room);

    for k in &keys {
        let comment = format!("{}@agent-test", k.file_name().unwrap().to_str().unwrap());
        let id = Identity::parse(&std::fs::read_to_string(k.with_extension("pub")).unwrap()).unwrap();
        let mut c = s.connect().await;
        let challenge = c.request(join(&room)).await.unwrap();
        // The whole challenge frame, as a person might paste it.
        let out = keygate_sign(&["--ssh", "--key", &comment], &challenge.to_string(), Some(&agent.socket));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let signature = String::from_utf8(out.stdout).unwrap();
        c.send(&json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": signature}))
            .await
            .unwrap();
        let welcome = c.expect("welcome").await.unwrap_or_else(|e| panic!("{comment}: {e}"));
        assert_eq!(welcome["identity"], id.did(), "{comment}");
    }

    // Choosing by fingerprint, with the base64 text from the challenge's command.
    let fp = String::from_utf8(
        Command::new("ssh-keygen").arg("-lf").arg(keys[1].with_extension("pub")).output().unwrap().stdout,
    )
    .unwrap();
    let fp = fp.split_whitespace().nth(1).unwrap().to_owned();
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let command = challenge["ssh"]["command"].as_str().unwrap();
    let b64 = command.split('\'').nth(1).unwrap();
    let out = keygate_sign(&["--ssh", "--key", &fp], b64, Some(&agent.socket));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.send(&json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": String::from_utf8(out.stdout).unwrap()})).await.unwrap();
    c.expect("welcome").await.unwrap();

    // Several keys and no choice: a clear error listing them.
    let out = keygate_sign(&["--ssh"], &challenge["payload"].to_string(), Some(&agent.socket));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("several keys") && err.contains("--key") && err.contains("ed25519@agent-test"), "{err}");
    let out = keygate_sign(&["--ssh", "--key", "nobody"], &challenge["payload"].to_string(), Some(&agent.socket));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key in the ssh-agent matches 'nobody'"));
    s.shutdown().await;
}

#[test]
fn without_an_agent_the_error_says_what_to_do() {
    let out = keygate_sign(&["--ssh"], "{\"roomId\":\"x\"}", None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSH_AUTH_SOCK is not set") && err.contains("ssh-add"), "{err}");
}

#[tokio::test]
async fn a_key_file_signs_too() {
    let Some(_) = tool("ssh-keygen") else { return };
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let file = keygen(s.dir.path(), "ecdsa", "384");
    let id = Identity::parse(&std::fs::read_to_string(file.with_extension("pub")).unwrap()).unwrap();
    s.server().gateway().store.allow(&room, &id, "file key", "test").await.unwrap();
    s.server().gateway().rooms.invalidate(&room);

    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let out = keygate_sign(&["--key-file", file.to_str().unwrap()], &format!("{}\n", challenge["payload"]), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.send(&json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": String::from_utf8(out.stdout).unwrap()})).await.unwrap();
    assert_eq!(c.expect("welcome").await.unwrap()["identity"], id.did());

    // An encrypted key with the wrong passphrase is refused clearly.
    let locked = s.dir.path().join("locked");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-N", "secret", "-t", "ed25519", "-f"])
        .arg(&locked)
        .status()
        .unwrap()
        .success());
    let out = Command::new(keygate_bin())
        .args(["sign", "--key-file", locked.to_str().unwrap(), "{\"a\":1}"])
        .env("KEYGATE_KEY_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(keygate_bin())
        .args(["sign", "--key-file", locked.to_str().unwrap(), "{\"a\":1}"])
        .env("KEYGATE_KEY_PASSPHRASE", "secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.shutdown().await;
}
