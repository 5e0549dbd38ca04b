//! X.509 certificates as PIV proofs use them: reading (PEM, DER, bare base64),
//! the subject key, extensions by OID, and checking that one certificate was signed
//! by another (aws-lc-rs). No path building, names or dates beyond what attestation
//! needs: the trust decisions live in [`super::piv`].

use super::VerifyError;
use crate::identity::{key_from_spki, PublicKey};
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::Engine;
use spki::der::{Decode, Encode};
use x509_cert::Certificate;

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(what.into())
}

/// Reads one certificate from PEM, or from base64 (standard or URL-safe) of DER.
pub fn read_certificate(text: &str) -> Result<Certificate, VerifyError> {
    if text.len() > crate::identity::MAX_KEY_TEXT {
        return Err(malformed(format!(
            "a certificate of {} bytes; keygate reads at most {}",
            text.len(),
            crate::identity::MAX_KEY_TEXT
        )));
    }
    let text = text.trim().trim_start_matches('\u{feff}');
    let der = if text.contains("-----BEGIN CERTIFICATE-----") {
        let body: String = text
            .split("-----BEGIN CERTIFICATE-----")
            .nth(1)
            .and_then(|b| b.split("-----END CERTIFICATE-----").next())
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        decode_b64(&body)?
    } else {
        decode_b64(&text.split_whitespace().collect::<String>())?
    };
    Certificate::from_der(&der).map_err(|e| malformed(format!("not an X.509 certificate: {e}")))
}

/// Every certificate in a PEM bundle (or one bare-base64 DER certificate).
pub fn read_certificates(text: &str) -> Result<Vec<Certificate>, VerifyError> {
    let text = text.trim_start_matches('\u{feff}');
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return read_certificate(text).map(|c| vec![c]);
    }
    text.split("-----END CERTIFICATE-----")
        .filter(|block| block.contains("-----BEGIN CERTIFICATE-----"))
        .map(|block| read_certificate(&format!("{block}-----END CERTIFICATE-----")))
        .collect()
}

pub(crate) fn decode_b64(text: &str) -> Result<Vec<u8>, VerifyError> {
    let t = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
        .map_err(|_| malformed("not base64"))
}

/// The subject key of a certificate, as an identity key and as the bytes a verifier
/// takes (SEC1 point for EC, PKCS#1 DER for RSA).
pub fn subject_key(cert: &Certificate) -> Result<(PublicKey, Vec<u8>), VerifyError> {
    let spki_der = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| malformed(e.to_string()))?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&spki_der).map_err(|e| malformed(e.to_string()))?;
    let key = key_from_spki(&spki).map_err(|e| VerifyError::Unusable(format!("certificate key: {e}")))?;
    let raw = spki.subject_public_key.raw_bytes().to_vec();
    Ok((key, raw))
}

/// What kind of key signs, to pick a verification algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa,
}

impl KeyKind {
    /// The kind of a parsed key: the identity parser already read the algorithm and
    /// curve, so nothing here reads them again.
    pub fn of(key: &PublicKey) -> Result<KeyKind, VerifyError> {
        match key {
            PublicKey::P256(_) => Ok(KeyKind::P256),
            PublicKey::P384(_) => Ok(KeyKind::P384),
            PublicKey::Rsa(_) => Ok(KeyKind::Rsa),
            PublicKey::Ed25519(_) => Err(VerifyError::Unusable("Ed25519 certificates are not supported here".into())),
        }
    }
}

/// The raw value of the extension with `oid`, if present.
pub fn extension<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Checks that `issuer`'s key signed `cert`.
pub fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), VerifyError> {
    let tbs = cert.tbs_certificate.to_der().map_err(|e| malformed(e.to_string()))?;
    let signature = cert.signature.as_bytes().ok_or_else(|| malformed("certificate signature is not whole bytes"))?;
    let (key, issuer_key) = subject_key(issuer)?;
    let kind = KeyKind::of(&key)?;
    let alg: &'static dyn sig::VerificationAlgorithm = match (cert.signature_algorithm.oid.to_string().as_str(), kind) {
        ("1.2.840.113549.1.1.11", KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", KeyKind::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA512,
        ("1.2.840.10045.4.3.2", KeyKind::P256) => &sig::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", KeyKind::P256) => &sig::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.2", KeyKind::P384) => &sig::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", KeyKind::P384) => &sig::ECDSA_P384_SHA384_ASN1,
        (other, _) => return Err(VerifyError::Unusable(format!("certificate signature algorithm {other}"))),
    };
    UnparsedPublicKey::new(alg, &issuer_key).verify(&tbs, signature).map_err(|_| VerifyError::BadSignature)
}

/// The subject's text form, for messages.
pub fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}
