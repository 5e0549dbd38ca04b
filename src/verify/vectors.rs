//! The verifiers' parsers and checks on third-party vectors (`$KEYGATE_VECTORS`:
//! the W3C WebAuthn examples, piv-go's and TameMyCerts' chains from real YubiKeys)
//! and on attestation chains made with the openssl command line. They sit here, beside
//! the code they test, so `verify`'s inner modules need not be public for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::piv::verify_attestation;
use super::webauthn::assertion::{credential_from_attestation, verify_assertion, CoseKey, Expectation};
use super::x509::{read_certificate, read_certificates, subject_key};
use super::VerifyError;
use base64::Engine;
use serde_json::Value;
use spki::der::{Decode, Encode};
use std::path::{Path, PathBuf};
use std::process::Command;
use x509_cert::Certificate;

/// Whether this run is in CI, where missing vectors or tools are a failure.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// `$KEYGATE_VECTORS`, or `../shared/vectors` beside the repository; `None` (with a
/// note) outside CI when neither exists, a failure in CI.
fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("KEYGATE_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!in_ci(), "test vectors not found at {} (set KEYGATE_VECTORS)", dir.display());
    eprintln!("skipping: test vectors not found at {} (set KEYGATE_VECTORS)", dir.display());
    None
}

/// Whether the openssl command line is here: in CI its absence fails the test.
fn have_openssl() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(found || !in_ci(), "openssl is required for this test and is not installed");
    found
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn genkey(dir: &Path, name: &str) {
    let out = format!("{name}.key");
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &out]);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn w3c_webauthn_assertions() {
    let Some(dir) = vectors() else { return };
    let dir = dir.join("webauthn");
    let origins = vec!["https://example.org".to_owned()];
    let mut verified = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "json") || name == "index" || name.starts_with("attestation-root") {
            continue;
        }
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let reg = &case["registration"];
        let auth = &case["authentication"];
        let alg = case["collector_derived"]["credential_cose_alg"].as_i64().unwrap();
        let credential = match credential_from_attestation(&hex(reg["attestationObject"].as_str().unwrap())) {
            Ok(c) => c,
            Err(e) => {
                assert!(matches!(alg, -36 | -53), "{name}: {e}");
                assert!(matches!(e, VerifyError::Unusable(_)), "{name}: {e:?}");
                continue;
            }
        };
        let cose =
            CoseKey::from_cbor(&hex(case["collector_derived"]["credentialPublicKey_cose"].as_str().unwrap())).unwrap();
        assert_eq!(credential.key, cose, "{name}");
        // The same COSE key pasted as hex is an identity like any other key.
        let pasted =
            crate::identity::Identity::parse(case["collector_derived"]["credentialPublicKey_cose"].as_str().unwrap());
        assert_eq!(pasted.unwrap(), crate::identity::Identity::from_key(credential.key.key.clone()), "{name}");
        assert_eq!(hex(reg["credential_id"].as_str().unwrap()), credential.id, "{name}");

        let client_data = hex(auth["clientDataJSON"].as_str().unwrap());
        let auth_data = hex(auth["authenticatorData"].as_str().unwrap());
        let signature = hex(auth["signature"].as_str().unwrap());
        let challenge = hex(auth["challenge"].as_str().unwrap());
        let cross = case["collector_derived"]["authentication_clientData"]["crossOrigin"] == true;
        let expect = Expectation {
            rp_id: "example.org",
            origins: &origins,
            challenge: &challenge,
            require_user_verification: false,
            allow_cross_origin: true,
        };
        let facts = verify_assertion(&credential.key, &client_data, &auth_data, &signature, &expect)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            u64::from(facts.sign_count),
            case["collector_derived"]["authentication_authData"]["signCount"].as_u64().unwrap()
        );

        // Every expectation is enforced.
        let check = |e: &Expectation<'_>| verify_assertion(&credential.key, &client_data, &auth_data, &signature, e);
        let other_challenge = [0u8; 32];
        assert!(check(&Expectation { challenge: &other_challenge, ..expect.clone() }).is_err(), "{name}: challenge");
        assert!(check(&Expectation { rp_id: "example.com", ..expect.clone() }).is_err(), "{name}: rpId");
        let evil = vec!["https://evil.example".to_owned()];
        assert!(check(&Expectation { origins: &evil, ..expect.clone() }).is_err(), "{name}: origin");
        if !facts.user_verified {
            assert!(check(&Expectation { require_user_verification: true, ..expect.clone() }).is_err(), "{name}: UV");
        }
        if cross {
            assert!(
                check(&Expectation { allow_cross_origin: false, ..expect.clone() }).is_err(),
                "{name}: crossOrigin"
            );
        }
        let mut bad = signature.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            verify_assertion(&credential.key, &client_data, &auth_data, &bad, &expect).is_err(),
            "{name}: signature"
        );
        verified.push(name);
    }
    verified.sort();
    assert!(verified.len() >= 12, "{verified:?}");
}

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
fn csr_attestation(path: &Path) -> Option<(Certificate, Certificate, crate::identity::PublicKey)> {
    let text = std::fs::read_to_string(path).unwrap();
    // "CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST": read the base64 body.
    let body: String = text.lines().filter(|l| !l.starts_with("-----") && !l.starts_with('\u{feff}')).collect();
    let body = body.trim_start_matches('\u{feff}');
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap();
    let csr = x509_cert::request::CertReq::from_der(&der).unwrap();
    let spki_der = csr.info.public_key.to_der().unwrap();
    let csr_key =
        crate::identity::key_from_spki(&spki::SubjectPublicKeyInfoOwned::from_der(&spki_der).unwrap()).unwrap();
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

/// Security item 2: chains are built as Yubico builds them. Intermediates (from the
/// configuration or the client) must be CA certificates whose path length allows
/// what is below them; a client-supplied non-CA certificate is refused.
#[test]
fn attestation_chains_need_ca_intermediates_with_room_for_the_path() {
    if !have_openssl() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    // root (CA) ─▶ intermediate ─▶ device ─▶ slot, with the intermediate made three
    // ways: a CA with path length 0, a CA with path length 0 above a device that
    // says CA (so one CA below it is one too many), and no CA at all.
    genkey(d, "root");
    openssl(d, &["req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=Root", "-days", "30", "-out", "root.pem"]);
    let issue = |name: &str, by: &str, ext: &str| {
        genkey(d, name);
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
