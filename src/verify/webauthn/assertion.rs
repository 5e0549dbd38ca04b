//! WebAuthn assertions checked directly: what a relying party checks of
//! `navigator.credentials.get()`, written out so that anyone holding the proof — a
//! peer re-verifying mid-call, or this server — can check it without ceremony state.
//!
//! ```text
//! clientDataJSON   {"type":"webauthn.get","challenge":b64url(C),"origin":O,…}
//! authenticatorData rpIdHash(32) ‖ flags(1) ‖ signCount(4) ‖ …
//! signature        over authenticatorData ‖ SHA-256(clientDataJSON)
//! ```
//!
//! Checked: type, challenge, origin (and cross-origin use), rpIdHash, user presence,
//! user verification when required, and the signature with the credential's COSE key
//! (ES256, ES384, EdDSA/Ed25519, RS256) on aws-lc-rs.

use crate::identity::{cose, ParseError, PublicKey};
use crate::verify::VerifyError;
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::Engine;
use ciborium::Value as Cbor;
use sha2::{Digest, Sha256};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;

/// A credential public key from its COSE form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoseKey {
    /// The key as identities know it.
    pub key: PublicKey,
    /// The COSE algorithm: -7 ES256, -35 ES384, -8 EdDSA, -257 RS256.
    pub alg: i64,
    /// What the verifier takes: SEC1 point, raw Ed25519 key, or PKCS#1 DER.
    verify_bytes: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(what.into())
}

impl CoseKey {
    /// Parses a COSE_Key (RFC 9053): EC2 P-256/P-384, OKP Ed25519, RSA.
    pub fn from_cbor(cbor: &[u8]) -> Result<CoseKey, VerifyError> {
        let value: Cbor = ciborium::from_reader(cbor).map_err(|e| malformed(format!("COSE key is not CBOR: {e}")))?;
        Self::from_value(&value)
    }

    fn from_value(value: &Cbor) -> Result<CoseKey, VerifyError> {
        let (key, alg, verify_bytes) = cose::from_value(value).map_err(|e| match e {
            ParseError::Unsupported(m) => VerifyError::Unusable(m),
            other => malformed(other.to_string()),
        })?;
        Ok(CoseKey { key, alg, verify_bytes })
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let alg: &'static dyn sig::VerificationAlgorithm = match self.alg {
            -7 => &sig::ECDSA_P256_SHA256_ASN1,
            -35 => &sig::ECDSA_P384_SHA384_ASN1,
            -8 => &sig::ED25519,
            _ => &sig::RSA_PKCS1_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(alg, &self.verify_bytes)
            .verify(message, signature)
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// A credential as registration yields it.
#[derive(Clone, Debug)]
pub struct RegisteredCredential {
    pub id: Vec<u8>,
    pub key: CoseKey,
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub backed_up: bool,
}

/// Reads the credential out of an attestation object's authenticator data
/// (attestation statements are not checked here).
pub fn credential_from_attestation(attestation_object: &[u8]) -> Result<RegisteredCredential, VerifyError> {
    let value: Cbor =
        ciborium::from_reader(attestation_object).map_err(|e| malformed(format!("attestation object: {e}")))?;
    let map = value.as_map().ok_or_else(|| malformed("attestation object is not a map"))?;
    let auth_data = map
        .iter()
        .find(|(k, _)| k.as_text() == Some("authData"))
        .and_then(|(_, v)| v.as_bytes())
        .ok_or_else(|| malformed("attestation object without authData"))?;
    if auth_data.len() < 37 + 18 || auth_data[32] & FLAG_AT == 0 {
        return Err(malformed("authenticator data without attested credential data"));
    }
    let flags = auth_data[32];
    let sign_count = u32::from_be_bytes([auth_data[33], auth_data[34], auth_data[35], auth_data[36]]);
    let id_len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    let id = auth_data.get(55..55 + id_len).ok_or_else(|| malformed("credential id truncated"))?.to_vec();
    let mut rest = &auth_data[55 + id_len..];
    let key_value: Cbor = ciborium::from_reader(&mut rest).map_err(|e| malformed(format!("credential key: {e}")))?;
    Ok(RegisteredCredential {
        id,
        key: CoseKey::from_value(&key_value)?,
        sign_count,
        backup_eligible: flags & FLAG_BE != 0,
        backed_up: flags & FLAG_BS != 0,
    })
}

/// What the relying party expects of an assertion.
#[derive(Clone, Debug)]
pub struct Expectation<'a> {
    pub rp_id: &'a str,
    pub origins: &'a [String],
    pub challenge: &'a [u8],
    pub require_user_verification: bool,
    /// Whether an assertion made in a cross-origin iframe is acceptable.
    pub allow_cross_origin: bool,
}

/// What a valid assertion says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionFacts {
    pub sign_count: u32,
    pub user_verified: bool,
    pub backed_up: bool,
}

/// Checks an assertion made by `key`.
pub fn verify_assertion(
    key: &CoseKey,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    expect: &Expectation<'_>,
) -> Result<AssertionFacts, VerifyError> {
    let client: serde_json::Value =
        serde_json::from_slice(client_data_json).map_err(|_| malformed("clientDataJSON is not JSON"))?;
    if client["type"] != "webauthn.get" {
        return Err(malformed("clientDataJSON type is not webauthn.get"));
    }
    let challenge = client["challenge"]
        .as_str()
        .and_then(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c.trim_end_matches('=')).ok())
        .ok_or_else(|| malformed("clientDataJSON challenge is not base64url"))?;
    if challenge != expect.challenge {
        return Err(VerifyError::Policy("the assertion answers another challenge".into()));
    }
    let origin = client["origin"].as_str().unwrap_or_default();
    if !expect.origins.iter().any(|o| o == origin) {
        return Err(VerifyError::Policy(format!("assertion made for origin {origin}")));
    }
    if client["crossOrigin"] == true && !expect.allow_cross_origin {
        return Err(VerifyError::Policy("assertion made in a cross-origin frame".into()));
    }
    if authenticator_data.len() < 37 {
        return Err(malformed("authenticator data is too short"));
    }
    if authenticator_data[..32] != Sha256::digest(expect.rp_id.as_bytes())[..] {
        return Err(VerifyError::Policy(format!("assertion made for another relying party than {}", expect.rp_id)));
    }
    let flags = authenticator_data[32];
    if flags & FLAG_UP == 0 {
        return Err(VerifyError::Policy("the authenticator did not confirm user presence".into()));
    }
    let user_verified = flags & FLAG_UV != 0;
    if expect.require_user_verification && !user_verified {
        return Err(VerifyError::Policy("user verification (PIN or biometric) is required".into()));
    }
    let mut signed = authenticator_data.to_vec();
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    key.verify(&signed, signature)?;
    Ok(AssertionFacts {
        sign_count: u32::from_be_bytes([
            authenticator_data[33],
            authenticator_data[34],
            authenticator_data[35],
            authenticator_data[36],
        ]),
        user_verified,
        backed_up: flags & FLAG_BS != 0,
    })
}
