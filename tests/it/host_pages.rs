//! The host pages through the real server over HTTP: sign-in with a key, rooms,
//! whitelist forms (paste and upload), removal that ejects, invites, audit and live
//! pages, CSRF, and access control for owners, other signed-in people and visitors.

use crate::common::*;
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

/// A change on a host page answers with a redirect (Post/Redirect/Get); the page it
/// leads to says what the change did, once.
async fn after_change(client: &reqwest::Client, base: &str, res: reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "a change redirects");
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let (status, html) = page(client, &format!("{base}{to}")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = page(client, &format!("{base}{to}")).await;
    assert!(!again.contains("class=\"notice\""), "a reload shows the page, not the change again");
    html
}

/// A server, a browser signed in as a room's owner, and the room.
async fn signed_in_owner_of_a_room(
) -> (TestServer, String, reqwest::Client, keygate::client::p256_key::P256Key, keygate::ids::RoomId) {
    let s = TestServer::start().await;
    let (base, host, owner) = (s.http(), browser(), key());
    sign_in(&s, &host, &owner).await;
    let room = s.room(&owner, &[]).await;
    (s, base, host, owner, room)
}

/// The `/static/…` files a page or module names in quotes.
fn static_refs(text: &str) -> Vec<String> {
    text.split("\"/static/").skip(1).map(|rest| format!("/static/{}", rest.split('"').next().unwrap())).collect()
}

async fn page(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let res = client.get(url).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn a_host_signs_in_creates_a_room_and_manages_its_whitelist() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let host_key = key();
    let who = sign_in(&s, &host, &host_key).await;
    assert_eq!(who["identity"], identity(&host_key).did().as_str());

    let (status, html) = page(&host, &format!("{base}/rooms")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("You own no rooms yet"), "{html}");
    let token = csrf(&html);

    // A wrong CSRF token is refused; the right one creates the room.
    let res = host.post(format!("{base}/rooms")).form(&[("csrf", "forged"), ("name", "Standup")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res =
        host.post(format!("{base}/rooms")).form(&[("csrf", token.as_str()), ("name", "Standup")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let room_path = res.headers()["location"].to_str().unwrap().to_owned();
    let room = keygate::ids::RoomId::parse(room_path.trim_start_matches("/rooms/")).unwrap();

    // Paste two keys and upload a file with a bad line: good lines kept, bad ones named.
    let (alice, bob, carol) = (key(), key(), key());
    let file = format!("# team\n{}\nnot a key\n", identity(&carol).did().as_str());
    let form = reqwest::multipart::Form::new()
        .text("csrf", token.clone())
        .text("keys", format!("{}\n{}", identity(&alice).did().as_str(), identity(&bob).did().as_str()))
        .part("file", reqwest::multipart::Part::text(file).file_name("authorized_keys"))
        .text("label", "");
    let res = host.post(format!("{base}{room_path}/allow")).multipart(form).send().await.unwrap();
    let html = after_change(&host, &base, res).await;
    assert!(html.contains("Added 3 keys."), "{html}");
    assert!(html.contains("file line 3"), "{html}");
    for k in [&alice, &bob, &carol] {
        assert!(html.contains(identity(k).did().as_str()));
    }

    // Bob joins; removing him on the page ejects his live session.
    let (mut bob_socket, _) = admitted(&s, &room, &bob).await;
    let (_, html) = page(&host, &format!("{base}{room_path}/live")).await;
    assert!(html.contains(identity(&bob).did().as_str()), "{html}");
    let res = host
        .post(format!("{base}{room_path}/deny"))
        .form(&[("csrf", token.as_str()), ("identity", identity(&bob).did().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(bob_socket.recv().await.unwrap()["code"], "revoked");

    // Removals that cannot happen say why, and change nothing.
    let owner_did = identity(&host_key).did().as_str().to_owned();
    for (what, expected) in [
        ("not a key", "That is not an identity on this list."),
        (owner_did.as_str(), "An owner cannot be removed from the whitelist."),
        (identity(&bob).did().as_str(), "That key was not on the whitelist."),
    ] {
        let res = host
            .post(format!("{base}{room_path}/deny"))
            .form(&[("csrf", token.as_str()), ("identity", what)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.text().await.unwrap().contains(expected), "{what}");
    }

    // Settings, and the audit log shows the removal.
    let res = host
        .post(format!("{base}{room_path}/settings"))
        .form(&[("csrf", token.as_str()), ("require_uv", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(s.server().gateway().store.room(&room).await.unwrap().unwrap().require_user_verification);
    let (status, html) = page(&host, &format!("{base}{room_path}/audit")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("whitelist-remove") && html.contains("admitted"), "{html}");

    // An invite link enrols whoever proves a key through it, once.
    let res = host
        .post(format!("{base}{room_path}/invites"))
        .form(&[("csrf", token.as_str()), ("label", "Dana"), ("uses", "1"), ("hours", "2")])
        .send()
        .await
        .unwrap();
    let html = after_change(&host, &base, res).await;
    let at = html.find("/i/").unwrap() + 3;
    let invite: String = html[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let guest = browser();
    let (status, html) = page(&guest, &format!("{base}/i/{invite}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Dana") && html.contains("Standup"), "{html}");
    let dana = key();
    let ch: Value =
        guest.post(format!("{base}/i/{invite}/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let answer = json!({
        "challengeId": ch["challengeId"], "method": "webcrypto", "payload": ch["payload"],
        "signature": dana.sign_b64(ch["payload"].to_string().as_bytes()).unwrap(), "publicKey": dana.public_jwk(),
    });
    let res = guest.post(format!("{base}/i/{invite}/verify")).json(&answer).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, dana_welcome) = admitted(&s, &room, &dana).await;
    assert_eq!(dana_welcome["identity"], identity(&dana).did().as_str());
    let entry = s
        .server()
        .gateway()
        .store
        .listed(&room)
        .await
        .into_iter()
        .find(|e| e.identity == identity(&dana).did().as_str())
        .unwrap();
    assert_eq!(entry.label, "Dana");
    let (status, _) = page(&guest, &format!("{base}/i/{invite}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a single-use invite is used up");

    // Signing out ends the session.
    let res = host.post(format!("{base}/signout")).form(&[("csrf", token.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, _) = page(&host, &format!("{base}/rooms")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    s.shutdown().await;
}

#[tokio::test]
async fn only_owners_see_or_change_a_room() {
    let s = TestServer::start().await;
    let base = s.http();
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let path = format!("{base}/rooms/{room}");

    // A signed-out visitor is sent to sign in, for every page and form.
    let visitor = browser();
    for url in [format!("{base}/rooms"), path.clone(), format!("{path}/audit"), format!("{path}/live")] {
        let res = visitor.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{url}");
        assert_eq!(res.headers()["location"], "/signin");
    }
    for action in ["deny", "settings", "kick", "invites", "owners", "reverify"] {
        let res = visitor
            .post(format!("{path}/{action}"))
            .form(&[("csrf", "x"), ("identity", "x"), ("peer", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{action}");
    }

    // Someone else, signed in, is refused with the same answer as for a missing room.
    let other = browser();
    sign_in(&s, &other, &key()).await;
    let (_, html) = page(&other, &format!("{base}/rooms")).await;
    let token = csrf(&html);
    for url in [path.clone(), format!("{path}/audit"), format!("{path}/live"), format!("{base}/rooms/nosuchroom")] {
        let (status, html) = page(&other, &url).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}");
        assert!(html.contains("not one of its owners"), "{url}");
    }
    for action in ["deny", "settings", "kick", "invites", "owners", "reverify"] {
        let res = other
            .post(format!("{path}/{action}"))
            .form(&[("csrf", token.as_str()), ("identity", identity(&owner).did().as_str()), ("peer", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
    }
    let form = reqwest::multipart::Form::new()
        .text("csrf", token.clone())
        .text("keys", identity(&key()).did().as_str().to_owned());
    let res = other.post(format!("{path}/allow")).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.server().gateway().store.listed(&room).await.len(), 1, "nothing was added");
    s.shutdown().await;
}

#[tokio::test]
async fn sign_in_refusals() {
    let s = TestServer::start().await;
    let base = s.http();
    let client = browser();
    let k = key();
    let ch: Value =
        client.post(format!("{base}/signin/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let good = json!({
        "challengeId": ch["challengeId"], "method": "webcrypto", "payload": ch["payload"],
        "signature": k.sign_b64(ch["payload"].to_string().as_bytes()).unwrap(), "publicKey": k.public_jwk(),
    });
    let mut forged = good.clone();
    forged["signature"] = json!(key().sign_b64(ch["payload"].to_string().as_bytes()).unwrap());
    let res = client.post(format!("{base}/signin/verify")).json(&forged).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The challenge was used up by the failed attempt: the good answer is too late.
    let res = client.post(format!("{base}/signin/verify")).json(&good).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("unknown, used or expired"), "{body}");
    // Why a proof failed is for the audit log only, as on the socket: a tampered
    // payload is "not accepted", never "the payload differs".
    let ch: Value =
        client.post(format!("{base}/signin/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let mut tampered = ch["payload"].clone();
    tampered["origin"] = json!("https://elsewhere.example");
    let answer = json!({
        "challengeId": ch["challengeId"], "method": "webcrypto", "payload": tampered,
        "signature": k.sign_b64(tampered.to_string().as_bytes()).unwrap(), "publicKey": k.public_jwk(),
    });
    let res = client.post(format!("{base}/signin/verify")).json(&answer).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "the proof was not accepted", "{body}");
    // A proof for a room cannot sign anyone in.
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let mut c = s.connect().await;
    let room_challenge = c.request(join(&room)).await.unwrap();
    let ch: Value =
        client.post(format!("{base}/signin/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let crossed = json!({
        "challengeId": ch["challengeId"], "method": "webcrypto", "payload": room_challenge["payload"],
        "signature": owner.sign_b64(room_challenge["payload"].to_string().as_bytes()).unwrap(), "publicKey": owner.public_jwk(),
    });
    let res = client.post(format!("{base}/signin/verify")).json(&crossed).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    s.shutdown().await;
}

#[tokio::test]
async fn room_settings_and_co_owners_take_effect() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let owner = key();
    sign_in(&s, &host, &owner).await;
    let (g1, g2, co) = (key(), key(), key());
    let room = s.room(&owner, &[&g1, &g2]).await;
    let path = format!("{base}/rooms/{room}");
    let (_, html) = page(&host, &path).await;
    let token = csrf(&html);

    // A bad number is explained on the page; a good one limits the room.
    let res = host
        .post(format!("{path}/settings"))
        .form(&[("csrf", token.as_str()), ("max_peers", "1000")])
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("Max peers must be a whole number from 2 to 32"));
    let res = host
        .post(format!("{path}/settings"))
        .form(&[("csrf", token.as_str()), ("max_peers", "2"), ("freshness", "60")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let record = s.server().gateway().store.room(&room).await.unwrap().unwrap();
    assert_eq!((record.max_peers, record.freshness_secs), (Some(2), Some(60)));
    let _a = admitted(&s, &room, &owner).await;
    let _b = admitted(&s, &room, &g1).await;
    let mut c = s.connect().await;
    c.send(&join(&room)).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "room-full");

    // A co-owner can manage the room; the last owner cannot be removed.
    let res = host
        .post(format!("{path}/owners"))
        .form(&[("csrf", token.as_str()), ("identity", &co.public_jwk().to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let co_browser = browser();
    sign_in(&s, &co_browser, &co).await;
    let (status, html) = page(&co_browser, &path).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let res = host
        .post(format!("{path}/owners"))
        .form(&[("csrf", token.as_str()), ("identity", identity(&co).did().as_str()), ("remove", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = host
        .post(format!("{path}/owners"))
        .form(&[("csrf", token.as_str()), ("identity", identity(&owner).did().as_str()), ("remove", "1")])
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("A room keeps at least one owner."));
    let (status, _) = page(&co_browser, &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a removed co-owner loses access");
    s.shutdown().await;
}

#[tokio::test]
async fn sign_in_with_an_ssh_signature_pasted_back() {
    let Some(_) = tool("ssh-keygen") else { return };
    let s = TestServer::start().await;
    let base = s.http();
    let client = browser();
    let key_path = s.dir.path().join("id_ed25519");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-f"])
        .arg(&key_path)
        .status()
        .unwrap()
        .success());
    let ch: Value =
        client.post(format!("{base}/signin/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let command = ch["ssh"]["command"].as_str().unwrap().replace("~/.ssh/id_ed25519", key_path.to_str().unwrap());
    let out = std::process::Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = json!({"challengeId": ch["challengeId"], "method": "ssh", "payload": ch["payload"], "signature": String::from_utf8(out.stdout).unwrap()});
    let res = client.post(format!("{base}/signin/verify")).json(&answer).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let who: Value = res.json().await.unwrap();
    let expected =
        keygate::identity::Identity::parse(&std::fs::read_to_string(key_path.with_extension("pub")).unwrap()).unwrap();
    assert_eq!(who["identity"], expected.did().as_str());
    let (status, _) = page(&client, &format!("{base}/rooms")).await;
    assert_eq!(status, StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test]
async fn a_host_asks_a_live_peer_to_re_verify() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let (owner, guest) = (key(), key());
    sign_in(&s, &host, &owner).await;
    let room = s.room(&owner, &[&guest]).await;
    let (mut g, welcome) = admitted(&s, &room, &guest).await;
    let live = format!("{base}/rooms/{room}/live");
    let (_, html) = page(&host, &live).await;
    assert!(html.contains("not re-verified"), "{html}");
    let token = csrf(&html);
    let peer = welcome["peerId"].as_str().unwrap();
    let res = host
        .post(format!("{base}/rooms/{room}/reverify"))
        .form(&[("csrf", token.as_str()), ("peer", peer)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let challenge = g.expect("challenge").await.unwrap();
    assert_eq!(challenge["payload"]["purpose"], "reverify");
    g.send(&keygate::client::ws::Client::webcrypto_auth(&challenge, &guest).unwrap()).await.unwrap();
    until(&mut g, "peer-verified").await;
    let (_, html) = page(&host, &live).await;
    assert!(html.contains("re-verified 20"), "{html}");
    s.shutdown().await;
}

#[tokio::test]
async fn sign_in_with_a_wallet() {
    let s = TestServer::start().await;
    let base = s.http();
    let client = browser();
    let wallet = keygate::client::signer::ProofSigner::generate(keygate::verify::Method::Eth).unwrap();
    let address = wallet.whitelist_entry().unwrap();
    let ch: Value = client
        .post(format!("{base}/signin/challenge"))
        .json(&json!({"address": address}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let siwe = keygate::verify::siwe::SiweMessage::parse(ch["siwe"].as_str().unwrap()).unwrap();
    assert_eq!(siwe.nonce, ch["payload"]["nonce"]);
    let mut answer = wallet.auth(&ch).unwrap();
    answer["challengeId"] = ch["challengeId"].clone();
    let res = client.post(format!("{base}/signin/verify")).json(&answer).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let who: Value = res.json().await.unwrap();
    assert_eq!(who["identity"], format!("did:pkh:eip155:1:{address}"));
    s.shutdown().await;
}

/// Security item 3: a co-owner removed on the host page loses its owner powers on
/// the socket it already has open.
#[tokio::test]
async fn a_removed_co_owner_cannot_change_the_whitelist_from_an_open_socket() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let (owner, co, stranger) = (key(), key(), key());
    sign_in(&s, &host, &owner).await;
    let room = s.room(&owner, &[]).await;
    let path = format!("{base}/rooms/{room}");
    let (_, html) = page(&host, &path).await;
    let token = csrf(&html);
    let res = host
        .post(format!("{path}/owners"))
        .form(&[("csrf", token.as_str()), ("identity", identity(&co).did().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (mut co_socket, welcome) = admitted(&s, &room, &co).await;
    assert_eq!(welcome["owner"], true);
    let add = json!({"type": "whitelist", "add": [identity(&key()).did().as_str()]});
    co_socket.send(&add).await.unwrap();
    assert_eq!(until(&mut co_socket, "whitelist-updated").await["added"].as_array().unwrap().len(), 1);

    let res = host
        .post(format!("{path}/owners"))
        .form(&[("csrf", token.as_str()), ("identity", identity(&co).did().as_str()), ("remove", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    co_socket.send(&json!({"type": "whitelist", "add": [identity(&stranger).did().as_str()]})).await.unwrap();
    assert_eq!(until(&mut co_socket, "error").await["code"], "not-owner");
    co_socket.send(&json!({"type": "whitelist", "remove": [identity(&owner).did().as_str()]})).await.unwrap();
    assert_eq!(until(&mut co_socket, "error").await["code"], "not-owner");
    let listed = s.server().gateway().store.listed(&room).await;
    assert!(!listed.iter().any(|e| e.identity == identity(&stranger).did().as_str()), "nothing added after removal");
    s.shutdown().await;
}

/// event, identity, reason, remote.
type AuditRow = (String, String, String, String);

/// The audit rows in the database file itself, read over a connection of the
/// test's own: what a crash right after the answer would leave.
async fn audit_rows_on_disk(s: &TestServer, room: &keygate::ids::RoomId) -> Vec<AuditRow> {
    let pool = db_pool(&s.db).await;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT event, identity, reason, remote FROM audit WHERE room_id = ? ORDER BY id")
            .bind(room.as_str())
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(e, i, r, a)| (e, i.unwrap_or_default(), r.unwrap_or_default(), a.unwrap_or_default()))
        .collect()
}

/// Security item 12: every change to who may enter, from the host page, is in the
/// audit log (who, how, from where) the moment it is acknowledged: written in the
/// change's own transaction, not batched after it.
#[tokio::test]
async fn every_host_page_change_is_audited_in_its_own_transaction() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let owner = key();
    let me = identity(&owner).did().as_str().to_owned();
    sign_in(&s, &host, &owner).await;
    let (_, html) = page(&host, &format!("{base}/rooms")).await;
    let token = csrf(&html);
    let res =
        host.post(format!("{base}/rooms")).form(&[("csrf", token.as_str()), ("name", "Audited")]).send().await.unwrap();
    let path = format!("{base}{}", res.headers()["location"].to_str().unwrap());
    let room = keygate::ids::RoomId::parse(path.rsplit('/').next().unwrap()).unwrap();
    let (guest, co) = (key(), key());
    let form = reqwest::multipart::Form::new()
        .text("csrf", token.clone())
        .text("keys", identity(&guest).did().as_str().to_owned())
        .text("label", "guest")
        .text("piv_require", "");
    assert_eq!(
        host.post(format!("{path}/allow")).multipart(form).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let post = |action: &'static str, fields: Vec<(&'static str, String)>| {
        let (host, path, token) = (host.clone(), path.clone(), token.clone());
        async move {
            let mut form = vec![("csrf", token)];
            form.extend(fields);
            host.post(format!("{path}/{action}")).form(&form).send().await.unwrap().status()
        }
    };
    assert_eq!(
        post("owners", vec![("identity", identity(&co).did().as_str().to_owned())]).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post("owners", vec![("identity", identity(&co).did().as_str().to_owned()), ("remove", "1".into())]).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(post("settings", vec![("max_peers", "4".into())]).await, StatusCode::SEE_OTHER);
    assert_eq!(
        post("invites", vec![("uses", "2".into()), ("hours", "1".into()), ("label", "team".into())]).await,
        StatusCode::SEE_OTHER
    );
    let (mut guest_socket, welcome) = admitted(&s, &room, &guest).await;
    let peer = welcome["peerId"].as_str().unwrap().to_owned();
    assert_eq!(post("kick", vec![("peer", peer)]).await, StatusCode::SEE_OTHER);
    assert_eq!(until(&mut guest_socket, "error").await["code"], "revoked");
    assert_eq!(
        post("deny", vec![("identity", identity(&guest).did().as_str().to_owned())]).await,
        StatusCode::SEE_OTHER
    );

    let rows = audit_rows_on_disk(&s, &room).await;
    let by_me = format!("by {me} (host page)");
    for (event, who) in [
        ("room-created", me.as_str()),
        ("whitelist-add", identity(&guest).did().as_str()),
        ("owner-add", identity(&co).did().as_str()),
        ("owner-remove", identity(&co).did().as_str()),
        ("settings", ""),
        ("invite-created", ""),
        ("kicked", identity(&guest).did().as_str()),
        ("whitelist-remove", identity(&guest).did().as_str()),
    ] {
        let row = rows.iter().find(|r| r.0 == event).unwrap_or_else(|| panic!("no {event} row in {rows:#?}"));
        assert_eq!(row.1, who, "{row:?}");
        assert!(row.2.starts_with(&by_me), "{row:?}");
        assert!(row.3.starts_with("127.0.0.1:"), "the row says from where: {row:?}");
    }
    s.shutdown().await;
}

/// Security item 11: room creation per identity per hour is capped (a small
/// team's day never reaches the default of 20).
#[tokio::test]
async fn room_creation_is_capped_per_identity_per_hour() {
    let s = TestServer::with(|c| c.max_rooms_per_identity_per_hour = 3).await;
    let base = s.http();
    let host = browser();
    sign_in(&s, &host, &key()).await;
    let (_, html) = page(&host, &format!("{base}/rooms")).await;
    let token = csrf(&html);
    for _ in 0..3 {
        let res = host.post(format!("{base}/rooms")).form(&[("csrf", token.as_str())]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let res = host.post(format!("{base}/rooms")).form(&[("csrf", token.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.text().await.unwrap().contains("many rooms in the last hour"));
    // Over the socket too.
    let creator = key();
    let create = || async {
        let mut c = s.connect().await;
        let ch = c.request(serde_json::json!({"type": "request", "create": true})).await.unwrap();
        c.send(&keygate::client::ws::Client::webcrypto_auth(&ch, &creator).unwrap()).await.unwrap();
        c.expect("welcome").await
    };
    for _ in 0..3 {
        assert_eq!(create().await.unwrap()["created"], true);
    }
    assert_eq!(server_code(create().await.unwrap_err()), "rate-limited");
    s.shutdown().await;
}

/// Security item 16: every page carries a Content-Security-Policy with no inline
/// script (the pages have none left), is never framed, sends no referrer and no
/// sniffing; HSTS once the origin is https; a POST without its CSRF field gets the
/// product's refusal page.
#[tokio::test]
async fn pages_are_hardened_and_forms_without_csrf_are_refused_clearly() {
    let (s, base, host, _owner, room) = signed_in_owner_of_a_room().await;
    let invite = {
        let (_, html) = page(&host, &format!("{base}/rooms/{room}")).await;
        let token = csrf(&html);
        let res = host
            .post(format!("{base}/rooms/{room}/invites"))
            .form(&[("csrf", token.as_str()), ("uses", "1"), ("hours", "1"), ("label", "x")])
            .send()
            .await
            .unwrap();
        let html = after_change(&host, &base, res).await;
        let at = html.find("/i/").unwrap() + 3;
        html[at..].split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap().to_owned()
    };
    for path in [
        "/",
        "/signin",
        "/keys",
        "/passkey",
        "/rooms",
        &format!("/rooms/{room}"),
        &format!("/i/{invite}"),
        &format!("/r/{room}"),
    ] {
        let res = host.get(format!("{base}{path}")).send().await.unwrap();
        let headers = res.headers().clone();
        let policy = headers["content-security-policy"].to_str().unwrap().to_owned();
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{path}: {policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(!headers.contains_key("strict-transport-security"), "{path}: no HSTS over http");
        let html = res.text().await.unwrap();
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(tag.contains("src=\"/static/"), "{path}: an inline script: <script{tag}>");
        }
        // Every file the page loads is served, and every module those import.
        let mut files: Vec<String> = static_refs(&html);
        while let Some(file) = files.pop() {
            let res = host.get(format!("{base}{file}")).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path} loads {file}");
            if file.ends_with(".js") {
                files.extend(static_refs(&res.text().await.unwrap()));
            }
        }
    }
    // A POST with no csrf field: the refusal page, not a plain-text 422.
    let res = host.post(format!("{base}/rooms/{room}/deny")).form(&[("identity", "x")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("The form expired"));
    let res = host.post(format!("{base}/rooms/{room}/deny")).form(&[("csrf", "x")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("The form was incomplete"));
    s.shutdown().await;

    let s = TestServer::with(|c| c.origin = Some("https://meet.example.com".into())).await;
    let res = reqwest::get(format!("{}/", s.http())).await.unwrap();
    assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000");
    assert!(res.headers()["content-security-policy"].to_str().unwrap().contains("wss://meet.example.com"));
    s.shutdown().await;
}

/// One key per line, in every format, pasted on the room page and given to
/// `keygate room allow`: every good line added, the bad one named, on both roads.
#[tokio::test]
async fn a_list_of_every_format_is_read_the_same_on_the_page_and_by_the_cli() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let owner = key();
    sign_in(&s, &host, &owner).await;
    let (jwk_line, jwk_pretty, did_line, pem_key) = (key(), key(), key(), key());
    let pem = {
        use p256::pkcs8::EncodePublicKey;
        let jwk = pem_key.public_jwk();
        let coordinate = |c: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap()
        };
        let point = [&[4u8][..], &coordinate("x"), &coordinate("y")].concat();
        p256::PublicKey::from_sec1_bytes(&point).unwrap().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap()
    };
    let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
    let eth = "0x52908400098527886E0F7030069857D2E4169EE7";
    let list = format!(
        "{ed}\n{}\n{}\nthis is not a key\n{pem}{} Dave\n{eth}\n",
        jwk_line.public_jwk(),
        serde_json::to_string_pretty(&jwk_pretty.public_jwk()).unwrap(),
        identity(&did_line).did(),
    );
    let expected: Vec<String> = [
        keygate::identity::Identity::parse(ed).unwrap().did().to_string(),
        identity(&jwk_line).did().to_string(),
        identity(&jwk_pretty).did().to_string(),
        identity(&pem_key).did().to_string(),
        identity(&did_line).did().to_string(),
        keygate::identity::Identity::parse(eth).unwrap().did().to_string(),
    ]
    .into();
    let bad_line = 3 + serde_json::to_string_pretty(&jwk_pretty.public_jwk()).unwrap().lines().count();

    // On the page.
    let room = s.room(&owner, &[]).await;
    let path = format!("{base}/rooms/{room}");
    let (_, html) = page(&host, &path).await;
    let form = reqwest::multipart::Form::new().text("csrf", csrf(&html)).text("keys", list.clone()).text("label", "");
    let res = host.post(format!("{path}/allow")).multipart(form).send().await.unwrap();
    let html = after_change(&host, &base, res).await;
    assert!(html.contains("Added 6 keys."), "{html}");
    assert!(html.contains(&format!("line {bad_line}")), "the bad line is named: {html}");
    for did in &expected {
        let entry = s.server().gateway().store.entry(&room, did).await.unwrap();
        assert!(entry.is_some(), "{did} missing after the paste");
        // A compact row: its short fingerprint, a button that copies the DID, the DID on demand.
        let fp = &entry.unwrap().fingerprint;
        assert!(html.contains(&format!("data-copy=\"{did}\"")) && html.contains(&format!("title=\"{fp}\"")), "{did}");
    }

    // With the CLI, from a file.
    let other = s.room(&owner, &[]).await;
    let file = s.dir.path().join("mixed.txt");
    std::fs::write(&file, &list).unwrap();
    let out = std::process::Command::new(keygate_bin())
        .args(["room", "allow", other.as_str(), file.to_str().unwrap(), "--db"])
        .arg(&s.db)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("line {bad_line}")), "{said}");
    for did in &expected {
        let entry = s.server().gateway().store.entry(&other, did).await.unwrap();
        assert!(
            entry.is_some(),
            "{did} missing after room allow:
{said}"
        );
    }
    s.shutdown().await;
}

/// Every signed-in page's header says who is signed in and offers to sign out;
/// pages for everyone offer to sign in.
#[tokio::test]
async fn the_header_says_who_is_signed_in() {
    let s = TestServer::start().await;
    let base = s.http();
    let host = browser();
    let owner = key();
    let (_, html) = page(&host, &format!("{base}/keys")).await;
    assert!(html.contains("href=\"/signin\">Sign in</a>") && !html.contains("Signed in as"), "{html}");
    sign_in(&s, &host, &owner).await;
    let room = s.room(&owner, &[]).await;
    let did = identity(&owner).did().to_string();
    // The pages anyone may open say so too, once signed in.
    for path in [
        "/rooms".to_owned(),
        format!("/rooms/{room}"),
        format!("/rooms/{room}/audit"),
        format!("/rooms/{room}/live"),
        "/".to_owned(),
        "/keys".to_owned(),
        "/passkey".to_owned(),
        format!("/r/{room}"),
    ] {
        let (status, html) = page(&host, &format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let header = &html[html.find("<header>").unwrap()..html.find("</header>").unwrap()];
        assert!(header.contains("Signed in as") && header.contains(&format!("title=\"{did}\"")), "{path}: {header}");
        assert!(header.contains("action=\"/signout\"") && !header.contains(">Sign in<"), "{path}: {header}");
    }
    s.shutdown().await;
}

/// The audit page shows one kind of event on request, a page at a time, the filter
/// kept from page to page.
#[tokio::test]
async fn the_audit_page_filters_by_event_and_pages() {
    let (s, base, host, owner, room) = signed_in_owner_of_a_room().await;
    let entries: Vec<keygate::store::NewEntry> =
        (0..60).map(|_| keygate::store::NewEntry::labelled(&identity(&key()), "member")).collect();
    s.server().gateway().whitelist().add(&room, keygate::whitelist::Actor::operator(), &entries).await.unwrap();
    admitted(&s, &room, &owner).await;
    s.server().gateway().audit.flush().await;

    let rows = |html: &str, event: &str| html.matches(&format!("<tr class=\"{event}\">")).count();
    let (_, html) = page(&host, &format!("{base}/rooms/{room}/audit?event=admitted")).await;
    assert_eq!((rows(&html, "admitted"), rows(&html, "whitelist-add")), (1, 0), "{html}");
    assert!(html.contains("<option value=\"admitted\" selected>"), "the filter shows what is shown");

    let (_, html) = page(&host, &format!("{base}/rooms/{room}/audit?event=whitelist-add")).await;
    assert_eq!((rows(&html, "whitelist-add"), rows(&html, "admitted")), (50, 0));
    let older =
        html.split("href=\"").find(|h| h.contains("before=")).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    assert!(older.contains("event=whitelist-add"), "the next page keeps the filter: {older}");
    let (_, html) = page(&host, &format!("{base}{older}")).await;
    assert_eq!(rows(&html, "whitelist-add"), 10, "the other ten on the next page");

    // No such event: everything.
    let (_, html) = page(&host, &format!("{base}/rooms/{room}/audit?event=%3Cscript%3E")).await;
    assert!(rows(&html, "admitted") == 1 && !html.contains("<script>"), "{html}");
    s.shutdown().await;
}
