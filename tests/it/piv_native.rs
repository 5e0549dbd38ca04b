//! `keygate join|sign|identity --piv` through the real PC/SC stack: pcscd with
//! vsmartcard's vpcd driver, and a software PIV card (tests/it/common/piv_card.rs)
//! plugged into it over vpicc, answering what the `yubikey` crate sends. The card's
//! keys and certificates come from an OpenSSL-made PKI shaped like a YubiKey's.
//!
//! One test, in order: pcscd allows one card session at a time, and the card stays
//! plugged in from when it connects until the process ends.

use crate::common::piv_card::{CardState, Slot, SlotKey, SoftPiv};
use crate::common::piv_pki::TestPiv;
use crate::common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PIN: &str = "123456";

/// pcscd with the vpcd reader: started here (it daemonizes) when not running.
fn pcscd_with_vpcd() -> bool {
    if tool("pcscd").is_none() {
        return false;
    }
    if !Path::new("/etc/reader.conf.d/vpcd").exists()
        || !Path::new("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists()
    {
        assert!(!in_ci(), "vsmartcard-vpcd is required for this test and is not installed");
        eprintln!("skipping: vsmartcard-vpcd is not installed");
        return false;
    }
    let running = || std::os::unix::net::UnixStream::connect("/run/pcscd/pcscd.comm").is_ok();
    if !running() {
        let _ = Command::new("pcscd").status();
    }
    for _ in 0..50 {
        if running() && std::net::TcpStream::connect(("127.0.0.1", 35963)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pcscd is not running with the vpcd reader (is /etc/reader.conf.d/vpcd loaded?)");
}

fn keygate(args: &[&str], pin: &str) -> Output {
    Command::new(keygate_bin()).args(args).env("KEYGATE_PIV_PIN", pin).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn der(pem: &str) -> Vec<u8> {
    use spki::der::Decode;
    let (_, der) = spki::der::pem::decode_vec(pem.as_bytes()).unwrap();
    x509_cert::Certificate::from_der(&der).unwrap();
    der
}

/// The card: 9a P-256 with an attestation, 9c P-384, 9d P-256 whose touch never comes.
fn card(pki: &TestPiv) -> Arc<Mutex<CardState>> {
    use p256::pkcs8::DecodePrivateKey;
    let mut state = CardState::new(0x009C_4E68, PIN);
    let key_pem = |name: &str| pki.text(&format!("{name}.key"));
    let slot = |name: &str, key: SlotKey, attested: bool, touch_times_out: bool| Slot {
        key,
        certificate: der(&pki.text(&format!("{name}.pem"))),
        attestation: attested.then(|| der(&pki.text(&format!("{name}.att.pem")))),
        touch_times_out,
    };
    state.slots.insert(
        0x9a,
        slot(
            "slot9a",
            SlotKey::P256(p256::ecdsa::SigningKey::from_pkcs8_pem(&key_pem("slot9a")).unwrap()),
            true,
            false,
        ),
    );
    state.slots.insert(
        0x9c,
        slot(
            "slot9c",
            SlotKey::P384(p384::ecdsa::SigningKey::from_pkcs8_pem(&key_pem("slot9c")).unwrap()),
            false,
            false,
        ),
    );
    state.slots.insert(
        0x9d,
        slot(
            "slot9d",
            SlotKey::P256(p256::ecdsa::SigningKey::from_pkcs8_pem(&key_pem("slot9d")).unwrap()),
            false,
            true,
        ),
    );
    state.device_certificate = Some(der(&pki.text("device.pem")));
    Arc::new(Mutex::new(state))
}

/// Plugs the card into vpcd; it stays until the process ends.
fn plug_in(state: Arc<Mutex<CardState>>) {
    std::thread::spawn(move || {
        let connection = vpicc::connect().expect("vpcd accepts the card");
        let _ = connection.run(&mut SoftPiv(state));
    });
}

/// Admits a WebSocket client with a ticket link printed by `keygate join`.
async fn admit_with_ticket(s: &TestServer, link: &str) -> Result<Value, keygate::client::ws::ClientError> {
    let (path, ticket) = link.trim().split_once("#ticket=").expect("the ticket is in the fragment");
    let room = path.rsplit('/').next().unwrap();
    let mut c = s.connect().await;
    let challenge = c.request(json!({"type": "request", "roomId": room})).await?;
    c.send(&json!({"type": "auth", "method": "ticket", "payload": challenge["payload"], "ticket": ticket})).await?;
    c.expect("welcome").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_yubikey_joins_signs_and_says_what_went_wrong() {
    let (Some(_), true) = (tool("openssl"), pcscd_with_vpcd()) else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("slot9a", "P-256", 2, 1);
    pki.slot("slot9c", "P-384", 2, 1);
    pki.slot("slot9d", "P-256", 3, 3);

    // No PC/SC service (its socket is elsewhere).
    let out = Command::new(keygate_bin())
        .args(["identity", "--piv"])
        .env("PCSCLITE_CSOCK_NAME", work.path().join("no-pcscd.sock"))
        .output()
        .unwrap();
    assert!(stderr(&out).contains("smart card service is not running: start pcscd"), "{}", stderr(&out));

    // No card in the reader yet.
    let out = keygate(&["identity", "--piv"], PIN);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no YubiKey with a PIV application found"), "{}", stderr(&out));

    let state = card(&pki);
    plug_in(state.clone());
    // pcscd notices a new card after a moment.
    let mut out = keygate(&["identity", "--piv"], PIN);
    for _ in 0..40 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        out = keygate(&["identity", "--piv"], PIN);
    }
    assert!(out.status.success(), "identity --piv: {}", stderr(&out));
    let did = pki.identity("slot9a").did().as_str().to_owned();
    assert!(stdout(&out).starts_with(&format!("{did}\n")), "{}", stdout(&out));
    assert!(stdout(&out).contains("YubiKey 10243688 (firmware 5.4.3), slot 9a"), "{}", stdout(&out));
    let out = keygate(&["identity", "--piv", "--slot", "9c"], PIN);
    assert!(stdout(&out).starts_with(pki.identity("slot9c").did().as_str()), "{}", stderr(&out));

    let s = TestServer::with(|c| c.piv_attestation_roots = vec![pki.dir.join("root.pem")]).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let store = &s.server().gateway().store;
    store.allow(&room, &pki.identity("slot9a"), "yubikey 9a").await;
    let link = format!("{}/r/{room}", s.http());

    // join --piv --attest: a ticket, admitted once; the audit log has the attestation.
    let out = keygate(&["join", &link, "--piv", "--attest", "--no-open"], PIN);
    assert!(out.status.success(), "join --piv: {}", stderr(&out));
    let ticket_link = stdout(&out);
    let welcome = admit_with_ticket(&s, &ticket_link).await.unwrap();
    assert_eq!(welcome["identity"], did.as_str());
    let again = admit_with_ticket(&s, &ticket_link).await.unwrap_err();
    assert_eq!(server_code(again), "not-admitted", "a ticket is single use");
    let issued = s.audit_has(&room, |e| e.event == "ticket-issued").await;
    assert_eq!(issued.method.as_deref(), Some("piv"));
    assert!(issued.reason.as_deref().unwrap_or_default().contains("10243688"), "{issued:?}");
    {
        let seen = &state.lock().unwrap().seen;
        assert!(seen.contains(&0xC0), "long answers were chained with GET RESPONSE: {seen:x?}");
        assert!(seen.contains(&0xF9) && seen.contains(&0x20) && seen.contains(&0x87), "{seen:x?}");
    }

    // A key that is not on the list is told what to send to the host.
    let out = keygate(&["join", &link, "--piv", "--slot", "9c", "--no-open"], PIN);
    assert!(!out.status.success());
    let who = pki.identity("slot9c").did().as_str().to_owned();
    let expected = format!("not on the room's list — send your identity to the host: {who}");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));

    // sign --piv --slot 9c (P-384): the printed proof admits over the socket.
    store.allow(&room, &pki.identity("slot9c"), "yubikey 9c").await;
    // An entry that requires an attestation: join says so once the card has signed.
    store.set_piv_requirement(&room, &pki.identity("slot9c"), Some("attested")).await;
    s.server().gateway().rooms.invalidate(&room);
    let out = keygate(&["join", &link, "--piv", "--slot", "9c", "--no-open"], PIN);
    assert!(!out.status.success());
    let expected = "refused: the whitelist entry requires a YubiKey attestation; join with an attested YubiKey slot";
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    let whitelist = keygate::whitelist::Whitelist::new(store, None);
    whitelist.remove(&room, keygate::whitelist::Actor::operator(), &pki.identity("slot9c")).await.unwrap();
    store.allow(&room, &pki.identity("slot9c"), "yubikey 9c").await;
    s.server().gateway().rooms.invalidate(&room);
    let mut c = s.connect().await;
    let challenge = c.request(json!({"type": "request", "roomId": room.as_str()})).await.unwrap();
    let out = keygate(&["sign", "--piv", "--slot", "9c", &challenge.to_string()], PIN);
    assert!(out.status.success(), "sign --piv: {}", stderr(&out));
    let proof: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(proof["method"], "piv");
    let mut auth = proof.clone();
    auth["type"] = json!("auth");
    auth["payload"] = challenge["payload"].clone();
    c.send(&auth).await.unwrap();
    assert_eq!(c.expect("welcome").await.unwrap()["identity"], pki.identity("slot9c").did().as_str());

    // A touch that never comes.
    let out = keygate(&["sign", "--piv", "--slot", "9d", &challenge.to_string()], PIN);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("touch the YubiKey while it blinks"), "{}", stderr(&out));

    // Even at the most verbose log level, the PIN is never written.
    let out = Command::new(keygate_bin())
        .args(["sign", "--piv", &challenge.to_string()])
        .env("KEYGATE_PIV_PIN", PIN)
        .env("KEYGATE_LOG", "trace,yubikey=trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pin_bytes = PIN.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
    for secret in [PIN.to_owned(), pin_bytes, "0x31, 0x32, 0x33".to_owned()] {
        assert!(!stderr(&out).contains(&secret), "the log holds the PIN ({secret}):\n{}", stderr(&out));
    }

    // Wrong PINs count down, then the PIN is blocked, even for the right one.
    for expected in ["wrong PIN: 2 tries left", "wrong PIN: 1 try left", "the PIN is blocked"] {
        let out = keygate(&["join", &link, "--piv", "--no-open"], "654321");
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "expected '{expected}': {}", stderr(&out));
    }
    let out = keygate(&["join", &link, "--piv", "--no-open"], PIN);
    assert!(stderr(&out).contains("unblock it with the PUK"), "{}", stderr(&out));
    assert_eq!(state.lock().unwrap().tries_left, 0);
    s.shutdown().await;
}
