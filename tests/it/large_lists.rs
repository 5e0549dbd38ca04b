//! Whitelists of any length: imports that stream in batches and name their bad
//! lines, pages and searches on the host page and in the CLI, an export that reads
//! back, one change seen by the next admission at once, and removals applied while
//! a bulk import runs.

use crate::common::*;
use keygate::identity::{Identity, PublicKey};
use std::fmt::Write as _;

/// The DID of member `i` of a made-up list (an Ed25519 key nobody holds).
fn member(i: usize) -> String {
    let mut raw = [7u8; 32];
    raw[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Identity::from_key(PublicKey::Ed25519(raw)).did().to_string()
}

/// `n` lines of `DID  member-i`, with `bad` line numbers (1-based) replaced by junk.
fn member_list(n: usize, bad: &[usize]) -> String {
    let mut list = String::with_capacity(n * 70);
    for i in 1..=n {
        if bad.contains(&i) {
            let _ = writeln!(list, "not a key, line {i}");
        } else {
            let _ = writeln!(list, "{}  member-{i}", member(i));
        }
    }
    list
}

fn room_with_owner(db: &std::path::Path, owner: &keygate::client::p256_key::P256Key) -> String {
    let created = keygate(&["room", "create", "--create-db", "--owner", &owner.public_jwk().to_string()], db);
    assert!(created.status.success(), "{}", stderr(&created));
    stdout(&created).trim().to_owned()
}

/// An import names each bad line (first, middle, last) and keeps every good one in
/// batches with an audit row each; `room show` pages and searches by label, DID
/// prefix, fingerprint and the key itself; `room export` reads back as it was.
#[test]
fn a_long_list_imports_pages_searches_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let owner = key();
    let room = room_with_owner(&db, &owner);
    let batch = keygate::whitelist::IMPORT_BATCH;
    let n = batch + 10_123;
    let (first, middle, last) = (1, n / 2, n);
    let file = dir.path().join("members.txt");
    let mut list = member_list(n, &[first, middle, last]);
    // Keys in other formats, one per line: a JWK and a wallet.
    let guest = key();
    let _ = writeln!(list, "{}", guest.public_jwk());
    let _ = writeln!(list, "0x52908400098527886E0F7030069857D2E4169EE7 wallet");
    // A key listed again, in the next batch: kept once, with the later label.
    let _ = writeln!(list, "{}  renamed-10", member(10));
    std::fs::write(&file, &list).unwrap();

    let out = keygate(&["room", "allow", &room, file.to_str().unwrap()], &db);
    let err = stderr(&out);
    assert!(!out.status.success(), "bad lines make the exit status a failure");
    for line in [first, middle, last] {
        assert!(err.contains(&format!("line {line}: not a key format")), "line {line} named: {err}");
    }
    assert!(err.contains("3 line(s) could not be read; the others were added"), "{err}");
    let added = n - 3 + 2;
    assert!(stdout(&out).contains(&format!("added {added} keys, kept 1")), "{}", stdout(&out));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = db_pool(&db).await;
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT event, identity, reason FROM audit WHERE room_id = ? AND event LIKE 'whitelist-%' ORDER BY id",
        )
        .bind(&room)
        .fetch_all(&pool)
        .await
        .unwrap();
        // Two batches (a full one and the rest), one audit row each naming its count.
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert!(rows.iter().all(|r| r.0 == "whitelist-import" && r.1.is_none()), "{rows:#?}");
        assert!(rows[0].2.as_deref().unwrap().contains(&format!("{batch} keys ({batch} new)")), "{rows:#?}");
        let count: i64 =
            sqlx::query_scalar("SELECT entries FROM rooms WHERE id = ?").bind(&room).fetch_one(&pool).await.unwrap();
        assert_eq!(count as usize, added + 1, "the kept count includes the owner");
        pool.close().await;
    });

    // The first page: 50 entries in identity order, and how to get the next.
    let show = keygate(&["room", "show", &room], &db);
    let page = stdout(&show);
    assert!(page.contains(&format!("whitelist ({} keys), 50 from the start", added + 1)), "{page}");
    let listed: Vec<&str> =
        page.lines().filter(|l| l.starts_with("  did:")).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(listed.len(), 50, "{page}");
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "identity order");
    let more = page.lines().find(|l| l.contains("… more:")).expect("a next-page hint");
    assert!(more.contains(&format!("--after '{}'", listed[49])), "{more}");
    let next = stdout(&keygate(&["room", "show", &room, "--after", listed[49], "--limit", "10"], &db));
    let next_dids: Vec<&str> =
        next.lines().filter(|l| l.starts_with("  did:")).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(next_dids.len(), 10, "{next}");
    assert!(next_dids[0] > listed[49], "the next page starts after the last one shown");

    // Search by label prefix, by DID prefix, by fingerprint, and by the key itself.
    let by_label = stdout(&keygate(&["room", "show", &room, "--search", "MEMBER-4242"], &db));
    let labels: Vec<&str> = by_label.lines().filter(|l| l.starts_with("  did:")).collect();
    assert!(!labels.is_empty() && labels.iter().all(|l| l.contains("member-4242")), "{by_label}");
    assert!(labels.iter().any(|l| l.contains(&member(4242))), "{by_label}");
    let prefix = &member(777)[..30];
    let by_did = stdout(&keygate(&["room", "show", &room, "--search", prefix], &db));
    assert!(by_did.lines().filter(|l| l.starts_with("  did:")).all(|l| l.starts_with(&format!("  {prefix}"))));
    assert!(by_did.contains(&member(777)), "{by_did}");
    let fingerprint = identity(&guest).fingerprint();
    let by_fp = stdout(&keygate(&["room", "show", &room, "--search", &fingerprint[..20]], &db));
    assert!(by_fp.contains(identity(&guest).did().as_str()), "{by_fp}");
    let by_key = stdout(&keygate(&["room", "show", &room, "--search", &guest.public_jwk().to_string()], &db));
    assert_eq!(by_key.lines().filter(|l| l.starts_with("  did:")).count(), 1, "{by_key}");
    assert!(by_key.contains(identity(&guest).did().as_str()), "{by_key}");

    // The export is every entry as `DID label`, and reads back into another room.
    let export = keygate(&["room", "export", &room], &db);
    assert!(export.status.success(), "{}", stderr(&export));
    let exported = stdout(&export);
    assert_eq!(exported.lines().count(), added + 1);
    assert!(exported.contains(&format!("{}  member-{}", member(middle + 1), middle + 1)));
    assert!(exported.contains(&format!("{}  renamed-10\n", member(10))), "the later line's label");
    let copy = room_with_owner(&db, &owner);
    let back = dir.path().join("export.txt");
    std::fs::write(&back, &exported).unwrap();
    let reimported = keygate(&["room", "allow", &copy, back.to_str().unwrap()], &db);
    assert!(reimported.status.success(), "{}", stderr(&reimported));
    let round_trip = stdout(&keygate(&["room", "export", &copy], &db));
    assert_eq!(round_trip, exported, "labels and identities survive an export and import");

    // A small room beside the two long ones is searched through its own rows.
    let small = room_with_owner(&db, &owner);
    let few = dir.path().join("few.txt");
    std::fs::write(&few, member_list(30, &[])).unwrap();
    assert!(keygate(&["room", "allow", &small, few.to_str().unwrap()], &db).status.success());
    let found = stdout(&keygate(&["room", "show", &small, "--search", "member-2"], &db));
    let found: Vec<&str> = found.lines().filter(|l| l.starts_with("  did:")).collect();
    assert_eq!(found.len(), 11, "member-2 and member-20…29: {found:#?}");
    let fingerprint = Identity::parse(&member(25)).unwrap().fingerprint();
    let by_fp = stdout(&keygate(&["room", "show", &small, "--search", &fingerprint[..18]], &db));
    assert!(by_fp.contains(&member(25)), "{by_fp}");
}

/// The host page shows a page of a long list with its total, pages on, and
/// searches; the upload takes the same import, naming bad lines.
#[tokio::test]
async fn the_host_page_pages_and_searches_a_long_list() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let base = s.http();
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    sign_in(&s, &client, &owner).await;

    let n = 3_000;
    let upload = reqwest::multipart::Form::new()
        .text("csrf", csrf_of(&client, &format!("{base}/rooms/{room}")).await)
        .text("label", "")
        .part("file", reqwest::multipart::Part::bytes(member_list(n, &[1, 1500, n]).into_bytes()).file_name("m.txt"));
    let res = client.post(format!("{base}/rooms/{room}/allow")).multipart(upload).send().await.unwrap();
    let html = res.text().await.unwrap();
    for line in [1, 1500, n] {
        assert!(html.contains(&format!("file line {line}: not a key format")), "line {line} named");
    }
    assert!(html.contains(&format!("Added {} keys.", n - 3)), "{html}");
    assert_eq!(gw.store.whitelist_len(&room).await.unwrap() as usize, n - 3 + 1);

    let html = client.get(format!("{base}/rooms/{room}")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("{} keys on the list; 50 shown", n - 2)), "a count and a page");
    assert_eq!(html.matches("<code class=\"did\">did:").count(), 50 + 1, "50 rows (and the owner list)");
    let after = html.split("name=\"after\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    let next = client
        .get(format!("{base}/rooms/{room}"))
        .query(&[("after", after.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first_next =
        next.split("<summary>Details</summary><code class=\"did\">").nth(1).and_then(|r| r.split('<').next()).unwrap();
    assert!(first_next > after.as_str(), "the next page starts after the last entry shown");

    let found = client
        .get(format!("{base}/rooms/{room}"))
        .query(&[("q", "member-2718")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(found.contains(&member(2718)) && found.contains("1 shown matching"), "{found}");
    s.shutdown().await;
}

async fn csrf_of(client: &reqwest::Client, url: &str) -> String {
    csrf(&client.get(url).send().await.unwrap().text().await.unwrap())
}

/// In a room of 20,000 keys, adding one key lets it in at the next attempt, and
/// removing it ejects its live session and refuses it at once: no reload to wait for.
#[tokio::test]
async fn one_change_to_a_long_list_is_seen_by_the_next_admission() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let service = gw.whitelist();
    let mut import = service.import(&room, keygate::whitelist::Actor::operator());
    for i in 0..20_000 {
        let did = member(i);
        let id = Identity::parse(&did).unwrap();
        import.push(keygate::store::NewEntry::labelled(&id, format!("member-{i}"))).await.unwrap();
    }
    import.finish().await.unwrap();

    let newcomer = key();
    let refused = s.connect().await.join_webcrypto(join(&room), &newcomer).await.unwrap_err();
    assert_eq!(server_code(refused), "not-admitted");

    gw.store.allow(&room, &identity(&newcomer), "new").await;
    let (mut inside, welcome) = admitted(&s, &room, &newcomer).await;
    assert_eq!(welcome["type"], "welcome");

    let host = identity(&owner);
    let actor = keygate::whitelist::Actor::owner(host.did(), "test", None);
    service.remove(&room, actor, &identity(&newcomer)).await.unwrap();
    let frame = inside.recv().await.unwrap();
    assert_eq!(frame["code"], "revoked", "{frame}");
    let refused = s.connect().await.join_webcrypto(join(&room), &newcomer).await.unwrap_err();
    assert_eq!(server_code(refused), "not-admitted");
    s.shutdown().await;
}

/// A removal made while a bulk import is writing (another process, the CLI) still
/// reaches the live session: the change follower does not wait for the import.
#[tokio::test]
async fn removals_are_applied_while_a_bulk_import_runs() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (mut inside, _) = admitted(&s, &room, &guest).await;

    let file = s.dir.path().join("bulk.txt");
    // Two batches: the removal is made between their commits.
    let batch = keygate::whitelist::IMPORT_BATCH;
    let n = 2 * batch;
    std::fs::write(&file, member_list(n, &[])).unwrap();
    let mut import = tokio::process::Command::new(keygate_bin())
        .args(["room", "allow", room.as_str(), file.to_str().unwrap(), "--db"])
        .arg(&s.db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for its first batch to land, so the removal meets an import under way.
    let store = &s.server().gateway().store;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while (store.whitelist_len(&room).await.unwrap() as usize) < batch {
        assert!(std::time::Instant::now() < deadline, "the import never committed a batch");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(import.try_wait().unwrap().is_none(), "the import is still running");
    let guest_did = identity(&guest).did().to_string();
    let deny = tokio::process::Command::new(keygate_bin())
        .args(["room", "deny", room.as_str(), &guest_did, "--db"])
        .arg(&s.db)
        .output()
        .await
        .unwrap();
    assert!(deny.status.success(), "{}", stderr(&deny));
    let frame = inside.recv().await.unwrap();
    assert_eq!(frame["code"], "revoked", "{frame}");
    assert!(import.wait().await.unwrap().success());
    assert_eq!(store.whitelist_len(&room).await.unwrap() as usize, n + 1, "the owner and the import");
    s.shutdown().await;
}

/// An entry changed by another process (the CLI, which cannot tell this server)
/// is forgotten by the server that cached it once its change follower sees the log:
/// the next admission carries the new label.
#[tokio::test]
async fn an_entry_changed_elsewhere_is_not_served_stale() {
    let s = TestServer::start().await;
    let (owner, guest) = (key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let (first, welcome) = admitted(&s, &room, &guest).await;
    assert_eq!(welcome["type"], "welcome");
    first.close().await;
    let store = &s.server().gateway().store;
    let renamed = keygate::store::NewEntry::labelled(&identity(&guest), "renamed");
    keygate::whitelist::Whitelist::new(store, None)
        .add(&room, keygate::whitelist::Actor::operator(), &[renamed])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (mut host, _) = admitted(&s, &room, &owner).await;
        let (again, _) = admitted(&s, &room, &guest).await;
        let joined = host.expect("peer-joined").await.unwrap();
        host.close().await;
        again.close().await;
        if joined["label"] == "renamed" {
            break;
        }
        assert_eq!(joined["label"], "guest");
        assert!(std::time::Instant::now() < deadline, "the cached entry was never forgotten");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.shutdown().await;
}
