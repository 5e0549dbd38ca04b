//! The `keygate` binary as an operator uses it: identity, room create/allow/deny/
//! list/show against a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn keygate(args: &[&str], db: &std::path::Path) -> Output {
    Command::new(keygate_bin()).args(args).env("KEYGATE_DB", db).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn identity_reads_text_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let k = key();
    let jwk = k.public_jwk().to_string();
    let did = identity(&k).did().to_owned();

    let literal = keygate(&["identity", &jwk], &db);
    assert!(literal.status.success(), "{}", stderr(&literal));
    let out = stdout(&literal);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(did.as_str()));
    assert!(lines.next().unwrap().starts_with(&format!("{} (P-256)", identity(&k).fingerprint())));

    let file = dir.path().join("key.jwk");
    std::fs::write(&file, &jwk).unwrap();
    assert_eq!(stdout(&keygate(&["identity", file.to_str().unwrap()], &db)).lines().next(), Some(did.as_str()));

    let mut child = Command::new(keygate_bin())
        .args(["identity", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(did.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).lines().next(), Some(did.as_str()));

    let bad = keygate(&["identity", "not a key"], &db);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("accepted") || stderr(&bad).contains("paste"), "{}", stderr(&bad));
}

#[test]
fn rooms_are_scripted_without_a_browser() {
    let Some(_) = tool("ssh-keygen") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let owner = dir.path().join("owner");
    Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", "owner@host", "-f"])
        .arg(&owner)
        .status()
        .unwrap();
    let owner_pub = owner.with_extension("pub");

    let created = keygate(&["room", "create", "--owner", owner_pub.to_str().unwrap(), "--name", "Standup"], &db);
    assert!(created.status.success(), "{}", stderr(&created));
    let room = stdout(&created).trim().to_owned();
    assert!(keygate::ids::RoomId::parse(&room).is_ok(), "{room}");

    // A whole authorized_keys file: good lines are added, the bad one is reported by number.
    let (a, b) = (key(), key());
    let keys_file = dir.path().join("team.keys");
    std::fs::write(&keys_file, format!("# team\n{}\nnot a key at all\n{}\n", identity(&a).did(), identity(&b).did()))
        .unwrap();
    let allowed = keygate(&["room", "allow", &room, keys_file.to_str().unwrap()], &db);
    assert!(!allowed.status.success(), "a bad line must make the exit status non-zero");
    assert!(stderr(&allowed).contains("line 3"), "{}", stderr(&allowed));
    assert_eq!(stdout(&allowed).lines().filter(|l| l.starts_with("added")).count(), 2);

    let labelled = keygate(&["room", "allow", &room, &a.public_jwk().to_string(), "--label", "alice"], &db);
    assert!(labelled.status.success(), "{}", stderr(&labelled));

    // A PIV requirement on an entry, and a misspelt one refused.
    let card = key();
    let required =
        keygate(&["room", "allow", &room, &card.public_jwk().to_string(), "--piv-require", "touch:always"], &db);
    assert!(required.status.success(), "{}", stderr(&required));
    let typo =
        keygate(&["room", "allow", &room, &card.public_jwk().to_string(), "--piv-require", "touch:sometimes"], &db);
    assert!(!typo.status.success() && stderr(&typo).contains("touch policy"), "{}", stderr(&typo));
    let show = stdout(&keygate(&["room", "show", &room], &db));
    assert!(show.contains("PIV: requires attested,touch:always"), "{show}");

    let list = stdout(&keygate(&["room", "list"], &db));
    assert!(list.contains(&room) && list.contains("Standup") && list.contains("4 keys"), "{list}");

    let denied = keygate(&["room", "deny", &room, identity(&b).did()], &db);
    assert!(denied.status.success(), "{}", stderr(&denied));
    let again = keygate(&["room", "deny", &room, identity(&b).did()], &db);
    assert!(!again.status.success());
    let owner_out = keygate(&["room", "deny", &room, owner_pub.to_str().unwrap()], &db);
    assert!(!owner_out.status.success() && stderr(&owner_out).contains("owner"));

    let show = stdout(&keygate(&["room", "show", &room], &db));
    assert!(show.contains("alice") && show.contains(identity(&a).did()), "{show}");
    assert!(!show.contains(identity(&b).did()), "{show}");
    assert!(show.contains("owner@host") || show.contains("owner"), "{show}");

    let missing = keygate(&["room", "show", "nosuchroom"], &db);
    assert!(!missing.status.success() && stderr(&missing).contains("no room"));
}
