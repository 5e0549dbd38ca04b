//! Method `ssh`: OpenSSH signatures from the OpenSSH project's own test data, from
//! Debian's `ssh-keygen -Y sign` through the real server, and the room policies.

use crate::common::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keygate::client::ws::{Client, ClientError};
use keygate::identity::Identity;
use keygate::verify::sshsig::{signed_data, HashAlg, SshSig};
use keygate::verify::VerifyError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sshsig_dir() -> Option<PathBuf> {
    vectors().map(|d| d.join("sshsig"))
}

#[test]
fn openssh_project_signatures_verify() {
    let Some(dir) = sshsig_dir() else { return };
    let message = std::fs::read(dir.join("signed-data")).unwrap();
    let namespace = std::fs::read_to_string(dir.join("namespace")).unwrap();
    let mut verified = Vec::new();
    for name in ["rsa", "ecdsa", "ed25519", "ecdsa_sk", "ed25519_sk", "ecdsa_sk_webauthn", "mldsa44-ed25519"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.sig"))).unwrap();
        let key = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
        let sig = match SshSig::decode(&text) {
            Ok(sig) => sig,
            Err(e) => {
                assert_eq!(name, "mldsa44-ed25519", "{name}: {e}");
                assert!(matches!(e, VerifyError::Unusable(_)), "{name}: {e:?}");
                continue;
            }
        };
        assert_eq!(sig.identity(), Identity::parse(&key).unwrap(), "{name}: the signing key is the published key");
        let evidence = sig.verify(&message, &namespace).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.contains("_sk") {
            assert_eq!(evidence.user_present, Some(true), "{name}");
            assert!(evidence.counter.is_some(), "{name}");
        }
        // One changed byte of the message, or another namespace, and it no longer verifies.
        let mut altered = message.clone();
        altered[0] ^= 1;
        assert_eq!(sig.verify(&altered, &namespace).unwrap_err(), VerifyError::BadSignature, "{name}");
        assert!(matches!(sig.verify(&message, "keygate"), Err(VerifyError::Unusable(_))), "{name}");
        verified.push(name);
    }
    assert_eq!(verified.len(), 6, "{verified:?}");
}

/// Generates an OpenSSH key with ssh-keygen; returns the private key path.
fn ssh_keygen(dir: &Path, kind: &str, bits: &str) -> PathBuf {
    let path = dir.join(format!("id_{kind}{bits}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", &format!("{kind}{bits}@test"), "-t", kind, "-f"]).arg(&path);
    if !bits.is_empty() {
        cmd.args(["-b", bits]);
    }
    assert!(cmd.status().unwrap().success());
    path
}

/// Runs the challenge's ready-to-copy command with `key` in place of the default key.
fn run_challenge_command(challenge: &Value, key: &Path) -> String {
    let command = challenge["ssh"]["command"].as_str().unwrap();
    assert!(command.contains("ssh-keygen -Y sign -n keygate"), "{command}");
    let command = command.replace("~/.ssh/id_ed25519", key.to_str().unwrap());
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn ssh_auth(challenge: &Value, signature: &str) -> Value {
    json!({"type": "auth", "method": "ssh", "payload": challenge["payload"], "signature": signature})
}

#[tokio::test]
async fn ssh_keygen_signatures_admit_through_the_real_server() {
    let Some(_) = tool("ssh-keygen") else { return };
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let store = &s.server().gateway().store;
    for (kind, bits) in [("ed25519", ""), ("ecdsa", "256"), ("ecdsa", "384"), ("rsa", "3072")] {
        let key_path = ssh_keygen(s.dir.path(), kind, bits);
        let line = std::fs::read_to_string(key_path.with_extension("pub")).unwrap();
        let id = Identity::parse(&line).unwrap();
        store.allow(&room, &id, &format!("{kind}{bits}")).await;
        s.server().gateway().rooms.invalidate(&room);

        let mut c = s.connect().await;
        let challenge = c.request(join(&room)).await.unwrap();
        assert_eq!(challenge["ssh"]["namespace"], "keygate");
        let signature = run_challenge_command(&challenge, &key_path);
        assert!(signature.starts_with("-----BEGIN SSH SIGNATURE-----"));
        c.send(&ssh_auth(&challenge, &signature)).await.unwrap();
        let welcome = c.expect("welcome").await.unwrap_or_else(|e| panic!("{kind}{bits}: {e}"));
        assert_eq!(welcome["identity"], id.did().as_str());
        s.audit_has(&room, |e| {
            e.event == "admitted"
                && e.method.as_deref() == Some("ssh")
                && e.identity.as_deref() == Some(id.did().as_str())
        })
        .await;
    }
    s.shutdown().await;
}

/// A server, a room (of a browser key's), and an Ed25519 key made by ssh-keygen with
/// its public line, not yet on the room's list.
async fn a_room_and_an_ssh_key() -> (TestServer, keygate::ids::RoomId, PathBuf, String) {
    let s = TestServer::start().await;
    let room = s.room(&key(), &[]).await;
    let key_path = ssh_keygen(s.dir.path(), "ed25519", "");
    let line = std::fs::read_to_string(key_path.with_extension("pub")).unwrap();
    (s, room, key_path, line)
}

#[tokio::test]
async fn ssh_refusals() {
    let Some(_) = tool("ssh-keygen") else { return };
    let (s, room, key_path, line) = a_room_and_an_ssh_key().await;

    // Not whitelisted: only "not admitted".
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&ssh_auth(&challenge, &run_challenge_command(&challenge, &key_path))).await.unwrap();
    assert_eq!(code_of(c.expect("welcome").await), "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("unknown key")).await;

    // Whitelisted from an allowed_signers line whose namespaces exclude keygate: the
    // holder, once its signature is good, is told which rule refuses it.
    let gw = s.server().gateway();
    gw.store.allow_line(&room, &format!("alice@example.com namespaces=\"git,file\" {line}")).await;
    gw.rooms.invalidate(&room);
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&ssh_auth(&challenge, &run_challenge_command(&challenge, &key_path))).await.unwrap();
    match c.expect("welcome").await.unwrap_err() {
        ClientError::Server { code, message } => {
            assert_eq!(code, "restricted");
            assert!(message.contains("namespaces=\"git,file\" only"), "{message}");
        }
        other => panic!("{other}"),
    }
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("namespaces"))).await;
    // Someone who only knows the listed public key learns nothing of the rule.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&ssh_auth(&challenge, &sign_with_ssh_keygen(&key_path, "keygate", b"other bytes"))).await.unwrap();
    match c.expect("welcome").await.unwrap_err() {
        ClientError::Server { code, message } => {
            assert_eq!((code.as_str(), message.as_str()), ("not-admitted", "not admitted"))
        }
        other => panic!("{other}"),
    }

    // The same line allowing keygate admits.
    gw.store.allow_line(&room, &format!("alice@example.com namespaces=\"git,keygate\" {line}")).await;
    gw.rooms.invalidate(&room);
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&ssh_auth(&challenge, &run_challenge_command(&challenge, &key_path))).await.unwrap();
    c.expect("welcome").await.unwrap();

    // Signed in another namespace: the client is told how to fix it.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let text = challenge["payload"].to_string();
    let sig = sign_with_ssh_keygen(&key_path, "git", text.as_bytes());
    c.send(&ssh_auth(&challenge, &sig)).await.unwrap();
    match c.expect("welcome").await.unwrap_err() {
        ClientError::Server { code, message } => {
            assert_eq!(code, "bad-proof");
            assert!(message.contains("-n keygate"), "{message}");
        }
        other => panic!("{other}"),
    }

    // A signature over other text is a bad signature.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let sig = sign_with_ssh_keygen(&key_path, "keygate", b"something else");
    c.send(&ssh_auth(&challenge, &sig)).await.unwrap();
    assert_eq!(code_of(c.expect("welcome").await), "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("bad signature")).await;

    // Garbage is malformed, and says nothing more than "not admitted".
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&ssh_auth(&challenge, "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----")).await.unwrap();
    assert_eq!(code_of(c.expect("welcome").await), "not-admitted");
    s.shutdown().await;
}

/// allowed_signers `valid-after` / `valid-before`: a listed key is accepted only
/// between them, and its holder is told which bound refused it; a forged signature
/// with the same key hears only "not admitted".
#[tokio::test]
async fn an_allowed_signers_entry_is_valid_only_between_its_dates() {
    let Some(_) = tool("ssh-keygen") else { return };
    let (s, room, key_path, line) = a_room_and_an_ssh_key().await;
    let gw = s.server().gateway();
    let attempt = |sign_other: bool| {
        let (s, room, key_path) = (&s, room.clone(), key_path.clone());
        async move {
            let mut c = s.connect().await;
            let challenge = c.request(join(&room)).await.unwrap();
            let signature = if sign_other {
                sign_with_ssh_keygen(&key_path, "keygate", b"other bytes")
            } else {
                run_challenge_command(&challenge, &key_path)
            };
            c.send(&ssh_auth(&challenge, &signature)).await.unwrap();
            c.expect("welcome").await
        }
    };
    let told = |r: Result<Value, ClientError>| match r {
        Err(ClientError::Server { code, message }) => format!("{code}: {message}"),
        Ok(v) => format!("admitted: {v}"),
        Err(e) => format!("{e}"),
    };
    for (options, expected) in [
        (
            "valid-before=\"20200101Z\"",
            "restricted: the key's entry on the room's list expired at 2020-01-01T00:00:00Z",
        ),
        (
            "valid-after=\"29990101000000Z\"",
            "restricted: the key's entry on the room's list is valid only from 2999-01-01T00:00:00Z",
        ),
        (
            "valid-after=\"202001011230Z\",valid-before=\"20200102Z\"",
            "restricted: the key's entry on the room's list expired at 2020-01-02T00:00:00Z",
        ),
    ] {
        let id = gw.store.allow_line(&room, &format!("carol {options} {line}")).await;
        gw.rooms.invalidate(&room);
        let said = told(attempt(false).await);
        assert!(said.starts_with(expected), "{options}: {said}");
        assert_eq!(told(attempt(true).await), "not-admitted: not admitted", "{options}");
        // The room page and the CLI show the dates.
        let entry = gw.store.listed(&room).await.into_iter().find(|e| &e.identity == id.did()).unwrap();
        assert!(entry.valid_text().is_some(), "{options}");
    }
    // Within its dates the key gets in; adding the plain line again lifts the dates.
    gw.store.allow_line(&room, &format!("carol valid-after=\"20200101\",valid-before=\"29991231Z\" {line}")).await;
    gw.rooms.invalidate(&room);
    attempt(false).await.unwrap();
    gw.store.allow_line(&room, &format!("carol valid-before=\"20200101Z\" {line}")).await;
    gw.rooms.invalidate(&room);
    assert!(told(attempt(false).await).starts_with("restricted"));
    gw.store.allow_line(&room, &line).await;
    gw.rooms.invalidate(&room);
    attempt(false).await.unwrap();
    // A date that is not one is named, and the line is not added.
    let err = keygate::identity::parse_key_list(&format!("carol valid-before=\"2020-01-01\" {line}")).pop().unwrap().1;
    assert!(err.unwrap_err().to_string().contains("valid-before=\"2020-01-01\" is not a time"));
    s.shutdown().await;
}

#[test]
fn sha1_rsa_signatures_are_refused_with_a_clear_message() {
    let Some(_) = tool("ssh-keygen") else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = ssh_keygen(dir.path(), "rsa", "2048");
    let armored = sign_with_ssh_keygen(&key, "keygate", b"hello");
    // Rewrite the signature's algorithm name to ssh-rsa (SHA-1), as old clients send.
    let blob = STANDARD.decode(armored.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let needle = b"\x00\x00\x00\x0crsa-sha2-512";
    let at = blob.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut forged = blob[..at].to_vec();
    forged.extend_from_slice(b"\x00\x00\x00\x07ssh-rsa");
    forged.extend_from_slice(&blob[at + needle.len()..]);
    // Fix the enclosing signature-string length.
    let sig_len_at = at - 4;
    let old_len = u32::from_be_bytes(forged[sig_len_at..sig_len_at + 4].try_into().unwrap());
    forged[sig_len_at..sig_len_at + 4].copy_from_slice(&(old_len - 5).to_be_bytes());
    match SshSig::decode(&STANDARD.encode(&forged)) {
        Err(VerifyError::Unusable(m)) => assert!(m.contains("SHA-1") && m.contains("rsa-sha2"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn code_of(r: Result<Value, ClientError>) -> String {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A software stand-in for a FIDO security key holding an sk-ecdsa key: it signs the
/// way OpenSSH's security-key middleware does, with the flags the test chooses and a
/// counter that moves on with each signature.
struct SoftSecurityKey {
    pair: EcdsaKeyPair,
    application: Vec<u8>,
    counter: std::sync::atomic::AtomicU32,
}

impl SoftSecurityKey {
    fn new() -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Self::from_pkcs8(pkcs8.as_ref(), b"ssh:")
    }

    fn from_pkcs8(pkcs8: &[u8], application: &[u8]) -> Self {
        SoftSecurityKey {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap(),
            application: application.to_vec(),
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn public_blob(&self) -> Vec<u8> {
        let mut b = Vec::new();
        ssh_string(&mut b, b"sk-ecdsa-sha2-nistp256@openssh.com");
        ssh_string(&mut b, b"nistp256");
        ssh_string(&mut b, self.pair.public_key().as_ref());
        ssh_string(&mut b, &self.application);
        b
    }

    fn public_line(&self) -> String {
        format!("sk-ecdsa-sha2-nistp256@openssh.com {} token", STANDARD.encode(self.public_blob()))
    }

    fn sign(&self, message: &[u8], flags: u8) -> String {
        let data = signed_data("keygate", HashAlg::Sha512, message);
        let counter = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut to_sign = Sha256::digest(&self.application).to_vec();
        to_sign.push(flags);
        to_sign.extend_from_slice(&counter.to_be_bytes());
        to_sign.extend_from_slice(&Sha256::digest(&data));
        let rs = self.pair.sign(&SystemRandom::new(), &to_sign).unwrap();
        let (r, s) = rs.as_ref().split_at(32);
        let mut inner = Vec::new();
        for n in [r, s] {
            let mut m = vec![0u8];
            m.extend_from_slice(n);
            ssh_string(&mut inner, &m);
        }
        let mut sig = Vec::new();
        ssh_string(&mut sig, b"sk-ecdsa-sha2-nistp256@openssh.com");
        ssh_string(&mut sig, &inner);
        sig.push(flags);
        sig.extend_from_slice(&counter.to_be_bytes());
        let mut blob = b"SSHSIG".to_vec();
        blob.extend_from_slice(&1u32.to_be_bytes());
        ssh_string(&mut blob, &self.public_blob());
        ssh_string(&mut blob, b"keygate");
        ssh_string(&mut blob, b"");
        ssh_string(&mut blob, b"sha512");
        ssh_string(&mut blob, &sig);
        format!("-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n", STANDARD.encode(blob))
    }
}

#[tokio::test]
async fn security_keys_need_presence_and_rooms_can_require_verification() {
    let s = TestServer::start().await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let token = SoftSecurityKey::new();
    let id = Identity::parse(&token.public_line()).unwrap();
    let gw = s.server().gateway();
    gw.store.allow(&room, &id, "token").await;

    let url = s.url();
    let attempt = |flags: u8| {
        let (url, token, room) = (url.clone(), &token, room.clone());
        async move {
            let mut c = Client::connect(&url).await.unwrap();
            let challenge = c.request(join(&room)).await.unwrap();
            let sig = token.sign(challenge["payload"].to_string().as_bytes(), flags);
            c.send(&ssh_auth(&challenge, &sig)).await.unwrap();
            c.expect("welcome").await
        }
    };
    // No touch: refused whatever the room says.
    assert_eq!(code_of(attempt(0x00).await), "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("user presence"))).await;
    // Touch only: fine until the room requires user verification.
    assert_eq!(attempt(0x01).await.unwrap()["identity"], id.did().as_str());
    gw.store.set_require_user_verification(&room, true).await;
    gw.rooms.invalidate(&room);
    assert_eq!(code_of(attempt(0x01).await), "restricted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("requires user verification"))).await;
    // Touch and PIN: admitted.
    assert_eq!(attempt(0x05).await.unwrap()["identity"], id.did().as_str());
    s.shutdown().await;
}

/// Security item 4: a passkey's key can also answer as an OpenSSH security key (the
/// same P-256 key is the same identity). Its sign counter is one counter for the key,
/// so a clone cannot skip the check by answering over ssh instead of webauthn, nor
/// the other way round.
#[tokio::test]
async fn one_sign_counter_per_key_whichever_method_carries_it() {
    use keygate::client::soft_webauthn::SoftAuthenticator;
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let s = TestServer::with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let passkey = SoftAuthenticator::from_pkcs8("localhost", &origin, pkcs8.as_ref()).unwrap();
    let token = SoftSecurityKey::from_pkcs8(pkcs8.as_ref(), b"localhost");
    let (status, started) = post_json(&s, "/webauthn/register/start", &json!({})).await;
    assert_eq!(status, 200);
    let body = json!({"registrationId": started["registrationId"], "credential": passkey.register(&started["options"]).unwrap()});
    let (status, registered) = post_json(&s, "/webauthn/register/finish", &body).await;
    assert_eq!(status, 200, "{registered}");
    let id = Identity::parse(&token.public_line()).unwrap();
    assert_eq!(registered["identity"], id.did().as_str(), "one key, one identity");
    gw.store.allow(&room, &id, "token").await;
    gw.rooms.invalidate(&room);

    let url = s.url();
    let over_webauthn = || {
        let (url, room, passkey) = (url.clone(), room.clone(), &passkey);
        async move {
            let mut c = Client::connect(&url).await.unwrap();
            let challenge =
                c.request(json!({"type": "request", "roomId": room.as_str(), "webauthn": true})).await.unwrap();
            let credential = passkey.assert(&challenge["webauthn"]).unwrap();
            c.send(&json!({"type": "auth", "method": "webauthn", "payload": challenge["payload"], "credential": credential}))
                .await
                .unwrap();
            c.expect("welcome").await
        }
    };
    let over_ssh = || {
        let (url, room, token) = (url.clone(), room.clone(), &token);
        async move {
            let mut c = Client::connect(&url).await.unwrap();
            let challenge = c.request(join(&room)).await.unwrap();
            let sig = token.sign(challenge["payload"].to_string().as_bytes(), 0x01);
            c.send(&ssh_auth(&challenge, &sig)).await.unwrap();
            c.expect("welcome").await
        }
    };
    // The passkey counts to 10; the same key over ssh at 1 is behind it.
    passkey.set_counter(9);
    assert_eq!(over_webauthn().await.unwrap()["identity"], id.did().as_str());
    assert_eq!(code_of(over_ssh().await), "not-admitted");
    s.audit_has(&room, |e| {
        e.method.as_deref() == Some("ssh") && e.reason.as_deref().is_some_and(|r| r.contains("counter went backwards"))
    })
    .await;
    // Over ssh past it, then the passkey (at 11) is behind.
    token.counter.store(20, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(over_ssh().await.unwrap()["identity"], id.did().as_str());
    assert_eq!(code_of(over_webauthn().await), "not-admitted");
    s.audit_has(&room, |e| {
        e.method.as_deref() == Some("webauthn")
            && e.reason.as_deref().is_some_and(|r| r.contains("counter went backwards"))
    })
    .await;
    // And a security key cannot replay its own counter over ssh.
    token.counter.store(20, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(code_of(over_ssh().await), "not-admitted");
    s.shutdown().await;
}
