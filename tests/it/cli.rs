//! The `keygate` binary as an operator uses it: identity, room create/allow/deny/
//! list/show against a real SQLite file.

use crate::common::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn identity_reads_text_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let k = key();
    let jwk = k.public_jwk().to_string();
    let did = identity(&k).did().as_str().to_owned();

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

    let created =
        keygate(&["room", "create", "--create-db", "--owner", owner_pub.to_str().unwrap(), "--name", "Standup"], &db);
    assert!(created.status.success(), "{}", stderr(&created));
    let room = stdout(&created).trim().to_owned();
    assert!(keygate::ids::RoomId::parse(&room).is_ok(), "{room}");

    // A whole authorized_keys file: good lines are added, the bad one is reported by number.
    let (a, b) = (key(), key());
    let keys_file = dir.path().join("team.keys");
    std::fs::write(
        &keys_file,
        format!("# team\n{}\nnot a key at all\n{}\n", identity(&a).did().as_str(), identity(&b).did().as_str()),
    )
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

    let denied = keygate(&["room", "deny", &room, identity(&b).did().as_str()], &db);
    assert!(denied.status.success(), "{}", stderr(&denied));
    let again = keygate(&["room", "deny", &room, identity(&b).did().as_str()], &db);
    assert!(!again.status.success());
    let owner_out = keygate(&["room", "deny", &room, owner_pub.to_str().unwrap()], &db);
    assert!(!owner_out.status.success() && stderr(&owner_out).contains("owner"));

    let show = stdout(&keygate(&["room", "show", &room], &db));
    let listed = show.split("recent audit events").next().unwrap();
    assert!(listed.contains("alice") && listed.contains(identity(&a).did().as_str()), "{show}");
    assert!(!listed.contains(identity(&b).did().as_str()), "{show}");
    assert!(show.contains("whitelist-remove"), "the removal is in the audit log: {show}");
    assert!(show.contains("owner@host") || show.contains("owner"), "{show}");

    let missing = keygate(&["room", "show", "nosuchroom"], &db);
    assert!(!missing.status.success() && stderr(&missing).contains("no room"));
}

/// Security items 12 and 13: the CLI's changes are audited in their own
/// transaction, and a key arrives with its PIV requirement in one write (one row,
/// one audit row naming both).
#[test]
fn cli_changes_are_audited_and_a_key_lands_with_its_requirement() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let owner = key();
    let created = keygate(&["room", "create", "--create-db", "--owner", &owner.public_jwk().to_string()], &db);
    assert!(created.status.success(), "{}", stderr(&created));
    let room = stdout(&created).trim().to_owned();
    let card = key();
    let did = identity(&card).did().as_str().to_owned();
    let allowed = keygate(&["room", "allow", &room, &did, "--piv-require", "pin:always"], &db);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let set = keygate(&["room", "set", &room, "--require-user-verification", "on"], &db);
    assert!(set.status.success(), "{}", stderr(&set));
    // The media mode: a clear error for a word it is not, and shown once set.
    let bogus = keygate(&["room", "set", &room, "--media", "p2p"], &db);
    assert!(!bogus.status.success() && stderr(&bogus).contains("use mesh, sfu or auto"), "{}", stderr(&bogus));
    assert!(stdout(&keygate(&["room", "show", &room], &db)).contains("media    mesh"));
    let media = keygate(&["room", "set", &room, "--media", "sfu"], &db);
    assert!(stdout(&media).contains("through the server's SFU, end-to-end encrypted"), "{}", stderr(&media));
    assert!(stdout(&keygate(&["room", "show", &room], &db)).contains("media    sfu"));
    let denied = keygate(&["room", "deny", &room, &did], &db);
    assert!(denied.status.success(), "{}", stderr(&denied));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = db_pool(&db).await;
        let rows: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT event, identity, reason FROM audit WHERE room_id = ? ORDER BY id")
                .bind(&room)
                .fetch_all(&pool)
                .await
                .unwrap();
        let events: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(events, ["room-created", "whitelist-add", "settings", "settings", "whitelist-remove"], "{rows:#?}");
        assert!(rows[3].2.as_deref().unwrap().ends_with("media sfu"), "{rows:#?}");
        assert!(rows.iter().all(|r| r.2.as_deref().is_some_and(|w| w.starts_with("by cli (cli)"))), "{rows:#?}");
        assert!(rows[1].2.as_deref().unwrap().contains("PIV requirement attested,pin:always"), "{rows:#?}");
        let changes: Vec<(String,)> =
            sqlx::query_as("SELECT op FROM whitelist_changes WHERE room_id = ? AND identity = ? ORDER BY seq")
                .bind(&room)
                .bind(&did)
                .fetch_all(&pool)
                .await
                .unwrap();
        let ops: Vec<&str> = changes.iter().map(|c| c.0.as_str()).collect();
        // Adds need no word to running servers (admission reads the list by its
        // index); a removal must reach them, to eject.
        assert_eq!(ops, ["remove"], "{ops:?}");
        pool.close().await;
    });
}
