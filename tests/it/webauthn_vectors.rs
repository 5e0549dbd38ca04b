//! The direct WebAuthn assertion check on the W3C specification's test vectors.

use crate::common::*;
use keygate::verify::webauthn::assertion::{credential_from_attestation, verify_assertion, CoseKey, Expectation};
use keygate::verify::VerifyError;
use serde_json::Value;

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
            keygate::identity::Identity::parse(case["collector_derived"]["credentialPublicKey_cose"].as_str().unwrap());
        assert_eq!(pasted.unwrap(), keygate::identity::Identity::from_key(credential.key.key.clone()), "{name}");
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
