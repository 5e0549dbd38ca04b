//! `keygate sign` with a real OpenSSH ssh-agent (keys added by ssh-add) and with key
//! files, admitting through the real server.

use crate::common::*;
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

/// The identity of a key file's `.pub` half.
fn pub_identity(key: &Path) -> Identity {
    Identity::parse(&std::fs::read_to_string(key.with_extension("pub")).unwrap()).unwrap()
}

/// Whitelists the public half of each key file in `room`.
async fn allow_all(s: &TestServer, room: &keygate::ids::RoomId, keys: &[PathBuf]) {
    let gw = s.server().gateway();
    for k in keys {
        gw.store.allow(room, &pub_identity(k), "agent key").await;
    }
    gw.rooms.invalidate(room);
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
    let keys = [
        keygen(s.dir.path(), "ed25519", ""),
        keygen(s.dir.path(), "ecdsa", "256"),
        keygen(s.dir.path(), "rsa", "3072"),
    ];
    for k in &keys {
        agent.add(k);
    }
    allow_all(&s, &room, &keys).await;

    for k in &keys {
        let comment = format!("{}@agent-test", k.file_name().unwrap().to_str().unwrap());
        let id = pub_identity(k);
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
        assert_eq!(welcome["identity"], id.did().as_str(), "{comment}");
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
    let id = pub_identity(&file);
    s.server().gateway().store.allow(&room, &id, "file key").await;
    s.server().gateway().rooms.invalidate(&room);

    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let out = keygate_sign(&["--key-file", file.to_str().unwrap()], &format!("{}\n", challenge["payload"]), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.send(&json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": String::from_utf8(out.stdout).unwrap()})).await.unwrap();
    assert_eq!(c.expect("welcome").await.unwrap()["identity"], id.did().as_str());

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

fn keygate_cmd(args: &[&str], auth_sock: &Path) -> Output {
    Command::new(keygate_bin()).args(args).env("SSH_AUTH_SOCK", auth_sock).output().unwrap()
}

/// Redeems a ticket on a new connection, as the browser page does.
async fn redeem(s: &TestServer, room: &keygate::ids::RoomId, ticket: &str) -> serde_json::Value {
    let mut c = s.connect().await;
    let challenge = c.request(join(room)).await.unwrap();
    c.send(&json!({"type": "auth", "method": "ticket", "payload": challenge["payload"], "ticket": ticket}))
        .await
        .unwrap();
    c.recv().await.unwrap()
}

// Multi-threaded: the CLI runs as a blocking child process while this process's
// runtime serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygate_join_gets_a_one_time_ticket_with_an_agent_key() {
    let (Some(_), Some(_), Some(_)) = (tool("ssh-agent"), tool("ssh-add"), tool("ssh-keygen")) else { return };
    let s = TestServer::with(|c| c.ticket_ttl = std::time::Duration::from_millis(800)).await;
    let agent = Agent::start(s.dir.path());
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let keys = [
        keygen(s.dir.path(), "ed25519", ""),
        keygen(s.dir.path(), "ecdsa", "256"),
        keygen(s.dir.path(), "rsa", "3072"),
    ];
    let link = format!("http://{}/r/{room}", s.server().addr());

    // Not yet whitelisted: the error says what to send to the host.
    agent.add(&keys[0]);
    let id = pub_identity(&keys[0]);
    let out = keygate_cmd(&["join", &link, "--ssh", "--no-open"], &agent.socket);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not on the room's list") && err.contains(id.did().as_str()), "{err}");

    // keygate identity --ssh prints the DID the host needs.
    let out = keygate_cmd(&["identity", "--ssh"], &agent.socket);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().next(), Some(id.did().as_str()));

    for k in &keys[1..] {
        agent.add(k);
    }
    allow_all(&s, &room, &keys).await;

    for k in &keys {
        let comment = format!("{}@agent-test", k.file_name().unwrap().to_str().unwrap());
        let id = pub_identity(k);
        let out = keygate_cmd(&["join", &link, "--ssh", "--key", &comment, "--no-open"], &agent.socket);
        assert!(out.status.success(), "{comment}: {}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8(out.stdout).unwrap();
        let (url, ticket) = printed.trim().split_once("#ticket=").unwrap();
        assert!(
            url.ends_with(&format!("/r/{room}")) && !url.contains('?'),
            "the ticket is only in the fragment: {printed}"
        );
        let welcome = redeem(&s, &room, ticket).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["identity"], id.did().as_str());
        // The same ticket a second time is refused.
        assert_eq!(redeem(&s, &room, ticket).await["code"], "not-admitted");
    }
    s.audit_has(&room, |e| e.reason.as_deref() == Some("unknown or already used ticket")).await;

    // An expired ticket is refused.
    let out = keygate_cmd(&["join", &link, "--ssh", "--key", "ed25519@agent-test", "--no-open"], &agent.socket);
    let printed = String::from_utf8(out.stdout).unwrap();
    let ticket = printed.trim().split_once("#ticket=").unwrap().1.to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(redeem(&s, &room, &ticket).await["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("expired ticket")).await;
    s.shutdown().await;
}

/// `keygate join` names what refuses a listed key (its namespaces, its dates, a
/// full room) instead of "not on the room's list".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygate_join_names_the_rule_that_refuses_a_listed_key() {
    let Some(_) = tool("ssh-keygen") else { return };
    let s = TestServer::with(|c| c.max_peers_per_room = 1).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let path = keygen(s.dir.path(), "ed25519", "");
    let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let link = format!("http://{}/r/{room}", s.server().addr());
    let gw = s.server().gateway();
    let join = || {
        let out = keygate_cmd(&["join", &link, "--key-file", path.to_str().unwrap(), "--no-open"], Path::new("/none"));
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (options, expected) in [
        ("namespaces=\"git\"", "refused: the key is on the room's list for namespaces=\"git\" only, not 'keygate'"),
        ("valid-before=\"20200101Z\"", "refused: the key's entry on the room's list expired at 2020-01-01T00:00:00Z"),
    ] {
        gw.store.allow_line(&room, &format!("dave {options} {line}")).await;
        gw.rooms.invalidate(&room);
        let (ok, err) = join();
        assert!(!ok && err.contains(expected), "{options}: {err}");
        assert!(err.contains("ask the room's host"), "{err}");
    }
    gw.store.allow_line(&room, &line).await;
    gw.rooms.invalidate(&room);
    assert!(join().0, "the plain line admits");
    // The room's one seat taken: a ticket would be refused in the browser, so none is made.
    let _seated = admitted(&s, &room, &owner).await;
    let (ok, err) = join();
    assert!(!ok && err.contains("the room is full (1 peers): try again when someone leaves"), "{err}");
    s.shutdown().await;
}

#[tokio::test]
async fn pkcs8_pem_key_files_sign_too() {
    let (Some(_), Some(_)) = (tool("ssh-keygen"), tool("openssl")) else { return };
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let dir = s.dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let kinds: [(&str, &[&str]); 4] = [
        ("ed25519.pem", &["-algorithm", "ed25519"]),
        ("p256.pem", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ("p384.pem", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        (
            "locked.pem",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes-256-cbc", "-pass", "pass:secret"],
        ),
    ];
    for (file, args) in kinds {
        let mut all = vec!["genpkey", "-out", file];
        all.extend_from_slice(args);
        openssl(&all);
        let public = openssl(&["pkey", "-in", file, "-passin", "pass:secret", "-pubout"]);
        let id = Identity::parse(&String::from_utf8(public).unwrap()).unwrap();
        s.server().gateway().store.allow(&room, &id, file).await;
        s.server().gateway().rooms.invalidate(&room);

        let mut c = s.connect().await;
        let welcome = join_signed_with_key_file(&mut c, &room, &dir.join(file), Some("secret")).await;
        assert_eq!(welcome["identity"], id.did().as_str(), "{file}");
    }

    // The wrong passphrase, and a key type this signer does not take, are named.
    let out = Command::new(keygate_bin())
        .args(["sign", "--key-file", dir.join("locked.pem").to_str().unwrap(), "{\"a\":1}"])
        .env("KEYGATE_KEY_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"]);
    let out = Command::new(keygate_bin())
        .args(["sign", "--key-file", dir.join("rsa.pem").to_str().unwrap(), "{\"a\":1}"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("use Ed25519, P-256 or P-384"), "{err}");
    s.shutdown().await;
}

#[test]
fn an_empty_agent_says_to_add_a_key() {
    let Some(_) = tool("ssh-agent") else { return };
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let out = keygate_sign(&["--ssh"], "{\"roomId\":\"x\"}", Some(&agent.socket));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the ssh-agent holds no keys; add one with `ssh-add`"), "{err}");
    let out =
        Command::new(keygate_bin()).args(["identity", "--ssh"]).env("SSH_AUTH_SOCK", &agent.socket).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no keys"));
}

/// Key files from any common tool load: an OpenSSH private key wrapped at 64
/// columns (as Python's cryptography writes it), or with Windows line ends.
#[tokio::test]
async fn openssh_key_files_wrapped_otherwise_sign_too() {
    let Some(_) = tool("ssh-keygen") else { return };
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let dir = s.dir.path();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "wrapped", "-f"])
        .arg(dir.join("id"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = Identity::parse(&std::fs::read_to_string(dir.join("id.pub")).unwrap()).unwrap();
    s.server().gateway().store.allow(&room, &id, "wrapped").await;
    s.server().gateway().rooms.invalidate(&room);
    let original = std::fs::read_to_string(dir.join("id")).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let base64: String = lines[1..lines.len() - 1].concat();
    let at64: Vec<String> = base64.as_bytes().chunks(64).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    for (file, eol) in [("at64", "\n"), ("crlf", "\r\n")] {
        let text = format!("{}{eol}{}{eol}{}{eol}", lines[0], at64.join(eol), lines[lines.len() - 1]);
        std::fs::write(dir.join(file), text).unwrap();
        let mut c = s.connect().await;
        let welcome = join_signed_with_key_file(&mut c, &room, &dir.join(file), None).await;
        assert_eq!(welcome["identity"], id.did().as_str(), "{file}");
    }
    s.shutdown().await;
}

/// Joins `room` on `c` with an SSH signature that `keygate sign --key-file` made
/// (with `passphrase` for a locked file); the welcome.
async fn join_signed_with_key_file(
    c: &mut keygate::client::ws::Client,
    room: &keygate::ids::RoomId,
    file: &std::path::Path,
    passphrase: Option<&str>,
) -> serde_json::Value {
    let challenge = c.request(join(room)).await.unwrap();
    let mut sign = Command::new(keygate_bin());
    sign.args(["sign", "--key-file", file.to_str().unwrap(), &challenge["payload"].to_string()]);
    if let Some(p) = passphrase {
        sign.env("KEYGATE_KEY_PASSPHRASE", p);
    }
    let out = sign.output().unwrap();
    assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let signature = String::from_utf8(out.stdout).unwrap();
    c.send(&json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": signature}))
        .await
        .unwrap();
    c.expect("welcome").await.unwrap()
}
