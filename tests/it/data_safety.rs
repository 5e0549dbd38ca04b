//! Data safety: `keygate backup` under write load misses nothing acknowledged before
//! it started, and `keygate restore` puts it back (refusing while a server has the
//! database open); the server folds its write-ahead log into the file when it stops;
//! `room` commands do not create a database by mistake; deleting a room (CLI or host
//! page) ejects its peers, writes one change-log row whatever its size, and keeps
//! its audit log.

use crate::common::*;
use keygate::store::NewEntry;
use keygate::whitelist::Actor;
use reqwest::redirect::Policy;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn keygate(args: &[&str], db: &Path) -> Output {
    Command::new(keygate_bin()).args(args).arg("--db").arg(db).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The DIDs `keygate room export` prints for a room.
fn exported(db: &Path, room: &str) -> BTreeSet<String> {
    let out = keygate(&["room", "export", room], db);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_misses_nothing_acknowledged_and_restores() {
    let mut s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let db = s.db.clone();
    let dir = tempfile::tempdir().unwrap();

    // A writer adds keys one by one; each is acknowledged (committed) before the next.
    let gw = s.server().gateway().clone();
    let writer_room = room.clone();
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        while !*stop.borrow_and_update() {
            let k = key();
            let entry = NewEntry::labelled(&identity(&k), "load");
            gw.whitelist().add(&writer_room, Actor::operator(), &[entry]).await.unwrap();
            acked.push((std::time::Instant::now(), identity(&k).did().to_string()));
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut backups = Vec::new();
    for i in 0..3 {
        let file = dir.path().join(format!("backup-{i}.db"));
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking({
            let (db, file) = (db.clone(), file.clone());
            move || Command::new(keygate_bin()).arg("backup").arg(&file).arg("--db").arg(&db).output().unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("backed up"), "{}", text(&out));
        backups.push((started, file));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    let acked = writer.await.unwrap();
    assert!(acked.len() > 20, "the writer made {} keys", acked.len());

    // Every key acknowledged before a backup started is in it.
    for (started, file) in &backups {
        let inside = exported(file, room.as_str());
        let before: Vec<_> = acked.iter().filter(|(at, _)| at < started).map(|(_, did)| did).collect();
        assert!(!before.is_empty());
        let missing = before.iter().filter(|d| !inside.contains(d.as_str())).count();
        assert_eq!(missing, 0, "{missing} of {} acknowledged keys missing from {}", before.len(), file.display());
    }
    // A backup never overwrites.
    let again = keygate(&["backup", backups[0].1.to_str().unwrap()], &db);
    assert!(!again.status.success() && text(&again).contains("already exists"), "{}", text(&again));

    // Restoring over the database of a running server is refused…
    let (_, last) = &backups[2];
    let busy = keygate(&["restore", last.to_str().unwrap(), "--force"], &db);
    assert!(!busy.status.success() && text(&busy).contains("open in another process"), "{}", text(&busy));
    // …and, once it has stopped, replaces it, keeping the old one beside.
    let everything = exported(&db, room.as_str());
    s.stop().await;
    let wal = Path::new(&format!("{}-wal", db.display())).metadata().map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal, 0, "the server folds its log into the database when it stops");
    let without_force = keygate(&["restore", last.to_str().unwrap()], &db);
    assert!(!without_force.status.success() && text(&without_force).contains("--force"), "{}", text(&without_force));
    let restored = keygate(&["restore", last.to_str().unwrap(), "--force"], &db);
    assert!(restored.status.success(), "{}", text(&restored));
    assert_eq!(exported(&db, room.as_str()), exported(last, room.as_str()));
    assert_eq!(exported(Path::new(&format!("{}.before-restore", db.display())), room.as_str()), everything);

    // Not a keygate database, or not there: said, and nothing changes.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let bad = keygate(&["restore", junk.to_str().unwrap(), "--force"], &db);
    assert!(!bad.status.success() && text(&bad).contains("junk.db"), "{}", text(&bad));
    let none = keygate(&["restore", "/nonexistent/backup.db"], &db);
    assert!(!none.status.success() && text(&none).contains("no backup at /nonexistent/backup.db"), "{}", text(&none));
    assert_eq!(exported(&db, room.as_str()), exported(last, room.as_str()));
}

#[test]
fn room_commands_do_not_create_a_database_by_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("keygat.db");
    for args in [
        &["room", "list"][..],
        &["room", "create", "--owner", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"],
    ] {
        let out = keygate(args, &typo);
        assert!(!out.status.success());
        let said = text(&out);
        assert!(said.contains("no keygate database at") && said.contains(&typo.display().to_string()), "{said}");
        assert!(said.contains("--create-db"), "{said}");
        assert!(!typo.exists(), "nothing is created");
    }
    let backup = keygate(&["backup", dir.path().join("b.db").to_str().unwrap()], &typo);
    assert!(!backup.status.success() && text(&backup).contains("no keygate database at"));
    let created = keygate(&["room", "list", "--create-db"], &typo);
    assert!(created.status.success(), "{}", text(&created));
    assert!(typo.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_room_ejects_its_peers_in_one_change_and_keeps_its_audit() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    // A longer list: deleting it still writes one change-log row.
    let many: Vec<NewEntry> = (0..500).map(|_| NewEntry::labelled(&identity(&key()), "member")).collect();
    let gw = s.server().gateway();
    gw.whitelist().add(&room, Actor::operator(), &many).await.unwrap();
    let mut a = s.connect().await;
    a.join_webcrypto(join(&room), &owner).await.unwrap();
    let mut b = s.connect().await;
    b.join_webcrypto(join(&room), &guest).await.unwrap();
    let head = gw.store.last_change().await.unwrap();

    // From another process, as an operator would.
    let out = keygate(&["room", "delete", room.as_str()], &s.db);
    assert!(out.status.success(), "{}", text(&out));
    for c in [&mut a, &mut b] {
        let e = until(c, "error").await;
        assert_eq!(e["code"], "room-deleted", "{e}");
    }
    assert_eq!(gw.store.last_change().await.unwrap(), head + 1, "one change-log row for the whole room");
    assert!(gw.store.room(&room).await.unwrap().is_none());
    assert_eq!(gw.store.whitelist_len(&room).await.unwrap(), 0);
    let mut c = s.connect().await;
    assert_eq!(server_code(c.join_webcrypto(join(&room), &owner).await.unwrap_err()), "room-not-found");

    // Its audit log stays, ending with the deletion.
    let shown = text(&keygate(&["room", "show", room.as_str()], &s.db));
    assert!(
        shown.contains("was deleted") && shown.contains("room-deleted") && shown.contains("with 502 whitelisted keys"),
        "{shown}"
    );
    s.audit_has(&room, |e| e.event == "left" && e.reason.as_deref() == Some("room-deleted")).await;
    let again = keygate(&["room", "delete", room.as_str()], &s.db);
    assert!(!again.status.success() && text(&again).contains("no room"), "{}", text(&again));
    s.shutdown().await;
}

#[tokio::test]
async fn an_owner_deletes_a_room_on_its_page_after_typing_its_id() {
    let s = TestServer::start().await;
    let host = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
    let owner = key();
    sign_in(&s, &host, &owner).await;
    let room = s.room(&owner, &[]).await;
    let path = format!("{}/rooms/{room}", s.http());
    let html = host.get(&path).send().await.unwrap().text().await.unwrap();
    let token = csrf(&html);
    assert!(html.contains("Delete room"));

    let wrong =
        host.post(format!("{path}/delete")).form(&[("csrf", token.as_str()), ("confirm", "yes")]).send().await.unwrap();
    assert!(wrong.text().await.unwrap().contains("type its id"));
    assert!(s.server().gateway().store.room(&room).await.unwrap().is_some());

    let done = host
        .post(format!("{path}/delete"))
        .form(&[("csrf", token.as_str()), ("confirm", room.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), reqwest::StatusCode::SEE_OTHER);
    let to = done.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, format!("/rooms?deleted={room}"));
    let listing = host.get(format!("{}{to}", s.http())).send().await.unwrap().text().await.unwrap();
    assert!(listing.contains(&format!("Room {room} was deleted")), "{listing}");
    assert!(s.server().gateway().store.room(&room).await.unwrap().is_none());
    s.audit_has(&room, |e| e.event == "room-deleted" && e.reason.as_deref().is_some_and(|r| r.contains("host page")))
        .await;
    s.shutdown().await;
}

/// `backup` and `restore` are for the SQLite file: with a PostgreSQL URL they say
/// so, before connecting, and never repeat the URL's password.
#[test]
fn backup_and_restore_point_a_postgres_database_to_its_own_tools() {
    let dir = tempfile::tempdir().unwrap();
    let url = std::path::Path::new("postgres://keygate:hunter2@127.0.0.1:1/keygate");
    let copy = dir.path().join("copy.db");
    for args in [vec!["backup", copy.to_str().unwrap()], vec!["restore", copy.to_str().unwrap(), "--force"]] {
        let out = keygate(&args, url);
        assert!(!out.status.success());
        let said = stderr(&out);
        assert!(said.contains("works on a SQLite database only") && said.contains("pg_dump"), "{said}");
        assert!(!said.contains("hunter2"), "{said}");
    }
}
