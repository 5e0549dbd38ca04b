//! Method `piv`: YubiKey attestation chains from real devices (piv-go and
//! TameMyCerts test data), and chains, keys and signatures made with OpenSSL for
//! P-256, P-384 and RSA, admitting through the real server.

use crate::common::piv_pki::TestPiv;
use crate::common::*;
use base64::Engine;
use keygate::verify::piv::{verify_attestation, PinPolicy, TouchPolicy};
use keygate::verify::x509::{read_certificate, read_certificates, subject_key};
use keygate::verify::Challenge;
use serde_json::{json, Value};
use spki::der::{Decode, Encode};
use std::path::Path;
use x509_cert::Certificate;

fn read(path: &Path) -> Certificate {
    read_certificate(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn roots(dir: &Path) -> Vec<Certificate> {
    ["yubico-piv-root-ca-serial-263751.pem", "yubico-u2f-root-ca-serial-457200631.pem", "yubico-attestation-root-1.pem"]
        .iter()
        .map(|f| read(&dir.join("roots").join(f)))
        .collect()
}

#[test]
fn piv_go_chains_from_real_yubikeys() {
    let Some(dir) = vectors() else { return };
    let dir = dir.join("piv");
    let anchors = roots(&dir);
    for case in ["ValidChain", "ValidChain2018", "InvalidChain", "InvalidChain2"] {
        let case_dir = dir.join("piv-go-verify").join(case);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(case_dir.join("expected.json")).unwrap()).unwrap();
        let slot = read(&case_dir.join("slot.pem"));
        let device = read(&case_dir.join("attestation.pem"));
        let result = verify_attestation(&slot, &device, &[], &anchors);
        assert_eq!(result.is_ok(), expected["valid"] == true, "{case}: {result:?}");
        if let Ok(facts) = result {
            let d = &expected["decoded"]["slot_cert"];
            assert_eq!(facts.firmware.as_deref(), d["firmware_version"].as_str(), "{case}");
            assert_eq!(facts.serial.map(u64::from), d["serial"].as_u64(), "{case}");
            assert_eq!(facts.pin_policy.map(|p| p.name()), d["pin_policy"].as_str(), "{case}");
            assert_eq!(facts.touch_policy.map(|t| t.name()), d["touch_policy"].as_str(), "{case}");
            assert_eq!(facts.form_factor.map(u64::from), d["formfactor"].as_u64(), "{case}");
        }
    }
    // Without the right root, a genuine chain is refused.
    let slot = read(&dir.join("piv-go-verify/ValidChain/slot.pem"));
    let device = read(&dir.join("piv-go-verify/ValidChain/attestation.pem"));
    assert!(verify_attestation(&slot, &device, &[], &anchors[2..]).is_err());
    assert!(verify_attestation(&slot, &device, &[], &[]).is_err());
}

/// The attestation certificates a YubiKey CSR carries (TameMyCerts' format):
/// (slot attestation, device f9, CSR key).
fn csr_attestation(path: &Path) -> Option<(Certificate, Certificate, keygate::identity::PublicKey)> {
    let text = std::fs::read_to_string(path).unwrap();
    // "CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST": read the base64 body.
    let body: String = text.lines().filter(|l| !l.starts_with("-----") && !l.starts_with('\u{feff}')).collect();
    let body = body.trim_start_matches('\u{feff}');
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap();
    let csr = x509_cert::request::CertReq::from_der(&der).unwrap();
    let spki_der = csr.info.public_key.to_der().unwrap();
    let csr_key =
        keygate::identity::key_from_spki(&spki::SubjectPublicKeyInfoOwned::from_der(&spki_der).unwrap()).unwrap();
    let mut slot = None;
    let mut device = None;
    for attr in csr.info.attributes.iter().filter(|a| a.oid.to_string() == "1.2.840.113549.1.9.14") {
        for value in attr.values.iter() {
            let exts: x509_cert::ext::Extensions = value.decode_as().unwrap();
            for e in exts {
                let der = e.extn_value.as_bytes();
                match e.extn_id.to_string().as_str() {
                    "1.3.6.1.4.1.41482.3.2" => device = Certificate::from_der(der).ok(),
                    "1.3.6.1.4.1.41482.3.1" | "1.3.6.1.4.1.41482.3.11" => slot = Certificate::from_der(der).ok(),
                    _ => {}
                }
            }
        }
    }
    Some((slot?, device?, csr_key))
}

#[test]
fn tamemycerts_csrs_from_real_yubikeys() {
    let Some(dir) = vectors() else { return };
    let dir = dir.join("piv");
    let cer = |f: &str| {
        read_certificates(&std::fs::read_to_string(dir.join("tamemycerts").join(f)).unwrap()).unwrap().remove(0)
    };
    let anchors = vec![cer("Yubico_PIV_Root_CA_Serial_263751.cer"), cer("Yubico_Attestation_Root_1.cer")];
    let intermediates = vec![cer("Yubico_Attestation_Intermediate_B_1.cer"), cer("Yubico_PIV_Attestation_B_1.cer")];
    let mut checked = 0;
    for (folder, list) in [("tamemycerts", "csrs"), ("tamemycerts-inline", "cases")] {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(folder).join("expected.json")).unwrap()).unwrap();
        for case in expected[list].as_array().unwrap() {
            let file = case["file"].as_str().unwrap();
            let accept = case["accept"] == true;
            let outcome = csr_attestation(&dir.join(folder).join(file)).ok_or("no attestation".to_owned()).and_then(
                |(slot, device, csr_key)| {
                    let facts =
                        verify_attestation(&slot, &device, &intermediates, &anchors).map_err(|e| e.to_string())?;
                    if subject_key(&slot).unwrap().0 != csr_key {
                        return Err("attested key differs".into());
                    }
                    Ok(facts)
                },
            );
            assert_eq!(outcome.is_ok(), accept, "{folder}/{file}: {outcome:?}");
            if let (Ok(facts), Some(d)) = (&outcome, case.get("decoded")) {
                if let Some(fw) = d["firmware_version"].as_str() {
                    assert_eq!(facts.firmware.as_deref(), Some(fw), "{file}");
                }
                if let Some(pin) = d["pin_policy"].as_str() {
                    assert_eq!(facts.pin_policy.map(|p| p.name()), Some(pin), "{file}");
                }
                if let Some(touch) = d["touch_policy"].as_str() {
                    assert_eq!(facts.touch_policy.map(|t| t.name()), Some(touch), "{file}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
    // A root that is not Yubico's trusts none of them.
    let foreign = read(&dir.join("tamemycerts-inline/test_ca_not_yubico.pem"));
    let (slot, device, _) = csr_attestation(
        &dir.join("tamemycerts-inline/yubikey_valid_5_4_3_Once_Never_UsbAKeychain_9a_Normal_RSA_2048.csr.pem"),
    )
    .unwrap();
    assert!(verify_attestation(&slot, &device, &intermediates, &[foreign]).is_err());
}

#[tokio::test]
async fn piv_slots_sign_their_way_in_with_attestation_and_policy() {
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("p256", "P-256", 0x02, 0x02);
    pki.slot("p384", "P-384", 0x03, 0x01);
    pki.slot("rsa", "rsa", 0x01, 0x03);
    let roots = work.path().join("root.pem");
    let s = TestServer::with(|c| c.piv_attestation_roots = vec![roots.clone()]).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    for name in ["p256", "p384", "rsa"] {
        gw.store.allow(&room, &pki.identity(name), name).await;
    }
    gw.rooms.invalidate(&room);

    // Plain signatures with each key type, then with attestation.
    for name in ["p256", "p384", "rsa"] {
        for attested in [None, Some(name)] {
            let mut c = s.connect().await;
            let challenge = c.request(join(&room)).await.unwrap();
            c.send(&pki.auth(&challenge, name, attested)).await.unwrap();
            let welcome = c.expect("welcome").await.unwrap_or_else(|e| panic!("{name} {attested:?}: {e}"));
            assert_eq!(welcome["identity"], pki.identity(name).did().as_str());
        }
    }
    let event = s
        .audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("attested YubiKey serial 10243688")))
        .await;
    assert!(event.reason.unwrap().contains("firmware 5.4.3"));
    // What an attestation showed is kept with the key, so the room page shows it
    // after the audit rows that told of it are gone (retention).
    s.server().gateway().audit.flush().await;
    let past_everything = chrono::Utc::now() + chrono::Duration::days(1);
    gw.store.prune_expired(past_everything, Some(chrono::Duration::zero())).await.unwrap();
    let facts = gw.store.room_attestations(&room).await.unwrap();
    assert!(facts[pki.identity("p256").did().as_str()].contains("firmware 5.4.3"), "{facts:?}");
    assert!(!facts.contains_key(identity(&owner).did().as_str()), "{facts:?}");

    // The whitelist entry demands touch always: p256 (touch always) passes, p384
    // (touch never) and an unattested proof do not.
    gw.store.set_piv_requirement(&room, &pki.identity("p256"), Some("touch:always")).await;
    gw.store.set_piv_requirement(&room, &pki.identity("p384"), Some("touch:always")).await;
    gw.rooms.invalidate(&room);
    let try_join = |name: &'static str, attested: Option<&'static str>| {
        let (url, room, pki) = (s.url(), room.clone(), &pki);
        async move {
            let mut c = keygate::client::ws::Client::connect(&url).await.unwrap();
            let challenge = c.request(join(&room)).await.unwrap();
            c.send(&pki.auth(&challenge, name, attested)).await.unwrap();
            c.recv().await.unwrap()
        }
    };
    assert_eq!(try_join("p256", Some("p256")).await["type"], "welcome");
    assert_eq!(try_join("p256", None).await["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the whitelist entry requires a YubiKey attestation")).await;
    assert_eq!(try_join("p384", Some("p384")).await["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the whitelist entry requires touch policy always or stricter"))
        .await;

    // An attestation of another key is refused.
    assert_eq!(try_join("rsa", Some("p256")).await["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("the attested key is not the slot certificate's key")).await;

    // A signature by another key than the certificate's.
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    let mut auth = pki.auth(&challenge, "rsa", None);
    auth["signature"] = json!(pki.sign("p384", &challenge["payload"].to_string()));
    c.send(&auth).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref() == Some("bad signature") && e.method.as_deref() == Some("piv")).await;
    s.shutdown().await;
}

#[tokio::test]
async fn attestation_needs_a_configured_root() {
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("p256", "P-256", 0x02, 0x02);
    let s = TestServer::start().await; // no roots configured
    let owner = key();
    let room = s.room(&owner, &[]).await;
    s.server().gateway().store.allow(&room, &pki.identity("p256"), "card").await;
    let mut c = s.connect().await;
    let challenge = c.request(join(&room)).await.unwrap();
    c.send(&pki.auth(&challenge, "p256", Some("p256"))).await.unwrap();
    assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("no PIV attestation roots"))).await;
    let _ = (PinPolicy::Once, TouchPolicy::Always);
    s.shutdown().await;
}

#[test]
fn malformed_piv_proofs_are_refused_before_any_crypto() {
    use keygate::verify::{Verifier, VerifyError};
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("p256", "P-256", 0x02, 0x02);
    let verifier = keygate::verify::piv::PivVerifier::new(Vec::new());
    let cert = pki.text("p256.pem");
    let sig = pki.sign("p256", "hello");
    let claim =
        |auth: Value| verifier.claim(&auth, &Challenge::payload(b"")).map(|c| c.identity.did().as_str().to_owned());
    // The algorithm must match the certificate's key.
    let wrong = claim(json!({"certificate": cert, "signature": sig, "algorithm": "RSA-PKCS1-SHA256"}));
    assert!(matches!(wrong, Err(VerifyError::Malformed(m)) if m.contains("does not match")));
    assert!(matches!(
        claim(json!({"certificate": "not a certificate", "signature": sig})),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(claim(json!({"certificate": cert})), Err(VerifyError::Malformed(m)) if m.contains("signature")));
    assert!(matches!(claim(json!({"signature": sig})), Err(VerifyError::Malformed(m)) if m.contains("certificate")));
    // A well-formed proof names the slot key, and checks over exactly the text signed.
    let ok = verifier
        .claim(
            &json!({"certificate": cert, "signature": sig, "algorithm": "ECDSA-P256-SHA256"}),
            &Challenge::payload(b"hello"),
        )
        .unwrap();
    assert_eq!(ok.identity, pki.identity("p256"));
    assert!(ok.check().is_ok());
    let again =
        verifier.claim(&json!({"certificate": cert, "signature": sig}), &Challenge::payload(b"hello!")).unwrap();
    assert_eq!(again.check().unwrap_err(), VerifyError::BadSignature);
}

/// Security item 2: anyone with a YubiKey holds an attested slot key. A "slot
/// attestation" for a software key signed with it, presented with that genuine
/// slot attestation as the "device" certificate (and the real device certificate
/// as the chain), must not pass for an attested key with made-up facts.
#[tokio::test]
async fn a_slot_attestation_cannot_act_as_the_device_certificate() {
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = TestPiv::new(work.path());
    pki.slot("mine", "P-256", 0x01, 0x01);
    pki.forged_slot("soft", "mine", 0x03, 0x02);
    let roots = work.path().join("root.pem");
    let s = TestServer::with(|c| c.piv_attestation_roots = vec![roots.clone()]).await;
    let owner = key();
    let room = s.room(&owner, &[]).await;
    let gw = s.server().gateway();
    gw.store.allow(&room, &pki.identity("soft"), "victim").await;
    gw.store.set_piv_requirement(&room, &pki.identity("soft"), Some("pin:always,touch:always")).await;
    gw.rooms.invalidate(&room);

    let forged = |challenge: &Value, chain: Vec<String>| {
        let mut auth = pki.auth(challenge, "soft", None);
        auth["attestation"] =
            json!({"slot": pki.text("soft.att.pem"), "device": pki.text("mine.att.pem"), "chain": chain});
        auth
    };
    for chain in [vec![pki.text("device.pem")], Vec::new(), vec![pki.text("device.pem"), pki.text("mine.att.pem")]] {
        let mut c = s.connect().await;
        let challenge = c.request(join(&room)).await.unwrap();
        c.send(&forged(&challenge, chain)).await.unwrap();
        assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    }
    s.audit_has(&room, |e| e.reason.as_deref().is_some_and(|r| r.contains("cannot issue attestations"))).await;
    assert!(
        !s.audit(&room)
            .await
            .iter()
            .any(|e| e.event == "admitted" && e.reason.as_deref().is_some_and(|r| r.contains("attested YubiKey"))),
        "no made-up attestation reached the audit log"
    );
    s.shutdown().await;
}

/// Security item 2: chains are built as Yubico builds them. Intermediates (from the
/// configuration or the client) must be CA certificates whose path length allows
/// what is below them; a client-supplied non-CA certificate is refused.
#[test]
fn attestation_chains_need_ca_intermediates_with_room_for_the_path() {
    use crate::common::piv_pki::{genkey, openssl};
    let Some(_) = tool("openssl") else { return };
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    // root (CA) ─▶ intermediate ─▶ device ─▶ slot, with the intermediate made three
    // ways: a CA with path length 0, a CA with path length 0 above a device that
    // says CA (so one CA below it is one too many), and no CA at all.
    genkey(d, "root", "P-256");
    openssl(d, &["req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=Root", "-days", "30", "-out", "root.pem"]);
    let issue = |name: &str, by: &str, ext: &str| {
        genkey(d, name, "P-256");
        std::fs::write(d.join(format!("{name}.ext")), format!("[x]\n{ext}\n")).unwrap();
        let csr = format!("{name}.csr");
        openssl(d, &["req", "-new", "-key", &format!("{name}.key"), "-subj", &format!("/CN={name}"), "-out", &csr]);
        let (ca, ca_key) = (format!("{by}.pem"), format!("{by}.key"));
        let (ext_file, out) = (format!("{name}.ext"), format!("{name}.pem"));
        let args = ["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-days", "30"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["-extfile", &ext_file, "-extensions", "x", "-out", &out]);
        openssl(d, &args);
        read(&d.join(out))
    };
    let policy = "1.3.6.1.4.1.41482.3.8 = DER:0302";
    let ca0 = issue("ca0", "root", "basicConstraints = critical,CA:true,pathlen:0");
    let device = issue("device", "ca0", "subjectKeyIdentifier = hash");
    let slot = issue("slot", "device", policy);
    let ca_device = issue("cadevice", "ca0", "basicConstraints = critical,CA:true");
    let slot2 = issue("slot2", "cadevice", policy);
    let not_ca = issue("notca", "root", "subjectKeyIdentifier = hash");
    let device3 = issue("device3", "notca", "subjectKeyIdentifier = hash");
    let slot3 = issue("slot3", "device3", policy);
    let root = read(&d.join("root.pem"));

    // The intermediate from the client, or from the configuration: both fine.
    verify_attestation(&slot, &device, std::slice::from_ref(&ca0), std::slice::from_ref(&root)).unwrap();
    verify_attestation(&slot, &device, &[], &[root.clone(), ca0.clone()]).unwrap();
    // pathlen:0 leaves no room for a device that claims to be a CA.
    let err = verify_attestation(&slot2, &ca_device, std::slice::from_ref(&ca0), std::slice::from_ref(&root));
    assert!(err.unwrap_err().to_string().contains("does not chain"));
    // A non-CA certificate cannot stand in the chain, from the client or the configuration.
    let err = verify_attestation(&slot3, &device3, std::slice::from_ref(&not_ca), std::slice::from_ref(&root));
    assert!(err.unwrap_err().to_string().contains("not a CA certificate"));
    let err = verify_attestation(&slot3, &device3, &[], &[root.clone(), not_ca.clone()]);
    assert!(err.unwrap_err().to_string().contains("does not chain"));
}
