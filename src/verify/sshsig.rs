//! OpenSSH signatures (SSHSIG, as `ssh-keygen -Y sign` makes them).
//!
//! ```text
//! blob   = "SSHSIG" u32(1) string(public key) string(namespace) string(reserved)
//!          string(hash algorithm: sha256 | sha512) string(signature)
//! signed = "SSHSIG" string(namespace) string(reserved) string(hash algorithm)
//!          string(H(message))
//! ```
//!
//! Security keys (`sk-…`) sign `SHA256(application) ‖ flags ‖ counter ‖ SHA256(signed)`
//! instead (hashed once more by ECDSA); `webauthn-sk-…` signatures wrap the signed
//! data in a WebAuthn clientData whose fixed prefix is checked byte for byte, as
//! OpenSSH does. Every check runs on aws-lc-rs.

use super::{Evidence, VerifyError};
use crate::identity::ssh_wire::{parse_ssh_public_key, SshPublicKey, SshReader};
use crate::identity::{Identity, ParseError};
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};

const MAGIC: &[u8; 6] = b"SSHSIG";

/// Standard base64, padded or not (people paste both).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);
const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const ARMOR_END: &str = "-----END SSH SIGNATURE-----";

/// FIDO flags in security-key signatures.
const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED_DATA: u8 = 0x40;
const FLAG_EXTENSION_DATA: u8 = 0x80;

/// The digest SSHSIG applies to the message before signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(message).to_vec(),
            HashAlg::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// A decoded SSHSIG, not yet checked.
#[derive(Clone, Debug)]
pub struct SshSig {
    key: SshPublicKey,
    pub namespace: String,
    pub hash_alg: HashAlg,
    /// The signature's own algorithm name, e.g. `rsa-sha2-512`.
    pub sig_type: String,
    /// The signature blob after its algorithm name.
    sig_body: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(what.into())
}

fn from_parse(e: ParseError) -> VerifyError {
    match e {
        ParseError::Unsupported(m) => VerifyError::Unusable(format!("unsupported SSH key: {m}")),
        other => VerifyError::Malformed(other.to_string()),
    }
}

/// The bytes an SSHSIG signer signs for `message`.
pub fn signed_data(namespace: &str, hash_alg: HashAlg, message: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for field in [namespace.as_bytes(), b"", hash_alg.name().as_bytes(), &hash_alg.digest(message)] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

impl SshSig {
    /// Reads an armored signature (`-----BEGIN SSH SIGNATURE-----`) or the base64 of
    /// the raw blob.
    pub fn decode(text: &str) -> Result<SshSig, VerifyError> {
        let text = text.trim();
        let body: String = match text.strip_prefix(ARMOR_BEGIN) {
            Some(rest) => {
                let (body, after) = rest.split_once(ARMOR_END).unwrap_or((rest, ""));
                if !after.is_empty() {
                    return Err(malformed("text follows the -----END SSH SIGNATURE----- line; paste the block alone"));
                }
                body.split_whitespace().collect()
            }
            None => text.split_whitespace().collect(),
        };
        let blob = BASE64.decode(&body).map_err(|_| {
            malformed("the SSH signature is not base64 (paste the whole -----BEGIN SSH SIGNATURE----- block)")
        })?;
        Self::from_blob(&blob)
    }

    fn from_blob(blob: &[u8]) -> Result<SshSig, VerifyError> {
        let mut r = SshReader::new(blob);
        if r.raw(6).map_err(from_parse)? != MAGIC {
            return Err(malformed("not an SSH signature (no SSHSIG preamble)"));
        }
        if r.u32().map_err(from_parse)? != 1 {
            return Err(VerifyError::Unusable("unsupported SSHSIG version".into()));
        }
        let key = parse_ssh_public_key(r.string().map_err(from_parse)?).map_err(from_parse)?;
        let namespace = String::from_utf8(r.string().map_err(from_parse)?.to_vec())
            .map_err(|_| malformed("SSHSIG namespace is not text"))?;
        r.string().map_err(from_parse)?; // reserved
        let hash_alg = match r.string().map_err(from_parse)? {
            b"sha256" => HashAlg::Sha256,
            b"sha512" => HashAlg::Sha512,
            _ => return Err(VerifyError::Unusable("SSHSIG hash must be sha256 or sha512".into())),
        };
        let mut sig = SshReader::new(r.string().map_err(from_parse)?);
        if !r.is_empty() {
            return Err(malformed("SSH signature has trailing data"));
        }
        let sig_type = String::from_utf8(sig.string().map_err(from_parse)?.to_vec())
            .map_err(|_| malformed("signature type is not text"))?;
        let sig_body = sig.raw_rest().to_vec();
        let expected: &[&str] = match key.kind.as_str() {
            "ssh-rsa" => &["rsa-sha2-256", "rsa-sha2-512", "ssh-rsa"],
            "sk-ecdsa-sha2-nistp256@openssh.com" => {
                &["sk-ecdsa-sha2-nistp256@openssh.com", "webauthn-sk-ecdsa-sha2-nistp256@openssh.com"]
            }
            other => &[other][..],
        };
        if !expected.contains(&sig_type.as_str()) {
            return Err(malformed(format!("a {} key cannot make a {sig_type} signature", key.kind)));
        }
        if sig_type == "ssh-rsa" {
            return Err(VerifyError::Unusable(
                "ssh-rsa signatures use SHA-1 and are refused; sign with rsa-sha2-256 or rsa-sha2-512 \
                 (any OpenSSH since 7.2 does so by default)"
                    .into(),
            ));
        }
        Ok(SshSig { key, namespace, hash_alg, sig_type, sig_body })
    }

    /// The identity of the signing key.
    pub fn identity(&self) -> Identity {
        Identity::from_key(self.key.key.clone())
    }

    /// The signing key's type name.
    pub fn key_type(&self) -> &str {
        &self.key.kind
    }

    /// Checks the signature over `message` in `namespace`.
    pub fn verify(&self, message: &[u8], namespace: &str) -> Result<Evidence, VerifyError> {
        if self.namespace != namespace {
            return Err(VerifyError::Unusable(format!(
                "signed for namespace '{}'; sign with -n {namespace}",
                self.namespace
            )));
        }
        let data = signed_data(namespace, self.hash_alg, message);
        let mut r = SshReader::new(&self.sig_body);
        let key = &self.key.verify_bytes;
        let ok = |alg: &'static dyn sig::VerificationAlgorithm, msg: &[u8], s: &[u8]| {
            UnparsedPublicKey::new(alg, key).verify(msg, s).map_err(|_| VerifyError::BadSignature)
        };
        match self.sig_type.as_str() {
            "ssh-ed25519" => {
                ok(&sig::ED25519, &data, r.string().map_err(from_parse)?)?;
                end(&r)?;
                Ok(Evidence::default())
            }
            "ecdsa-sha2-nistp256" => {
                ok(&sig::ECDSA_P256_SHA256_FIXED, &data, &fixed_rs(r.string().map_err(from_parse)?, 32)?)?;
                end(&r)?;
                Ok(Evidence::default())
            }
            "ecdsa-sha2-nistp384" => {
                ok(&sig::ECDSA_P384_SHA384_FIXED, &data, &fixed_rs(r.string().map_err(from_parse)?, 48)?)?;
                end(&r)?;
                Ok(Evidence::default())
            }
            "rsa-sha2-256" | "rsa-sha2-512" => {
                let alg: &'static dyn sig::VerificationAlgorithm = if self.sig_type == "rsa-sha2-256" {
                    &sig::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &sig::RSA_PKCS1_2048_8192_SHA512
                };
                ok(alg, &data, r.string().map_err(from_parse)?)?;
                end(&r)?;
                Ok(Evidence::default())
            }
            "sk-ssh-ed25519@openssh.com" => {
                let s = r.string().map_err(from_parse)?.to_vec();
                let (flags, counter) = (r.u8().map_err(from_parse)?, r.u32().map_err(from_parse)?);
                end(&r)?;
                let signed = self.sk_signed(flags, counter, &[], &Sha256::digest(&data))?;
                ok(&sig::ED25519, &signed, &s)?;
                sk_evidence(flags, counter)
            }
            "sk-ecdsa-sha2-nistp256@openssh.com" | "webauthn-sk-ecdsa-sha2-nistp256@openssh.com" => {
                let rs = fixed_rs(r.string().map_err(from_parse)?, 32)?;
                let (flags, counter) = (r.u8().map_err(from_parse)?, r.u32().map_err(from_parse)?);
                let (msghash, extensions) = if self.sig_type.starts_with("webauthn") {
                    let origin = r.string().map_err(from_parse)?;
                    let client_data = r.string().map_err(from_parse)?;
                    let extensions = r.string().map_err(from_parse)?;
                    (webauthn_client_data_hash(&data, origin, client_data, flags, extensions)?, extensions.to_vec())
                } else {
                    (Sha256::digest(&data).to_vec(), Vec::new())
                };
                end(&r)?;
                let signed = self.sk_signed(flags, counter, &extensions, &msghash)?;
                ok(&sig::ECDSA_P256_SHA256_FIXED, &signed, &rs)?;
                sk_evidence(flags, counter)
            }
            other => Err(VerifyError::Unusable(format!("signature type {other}"))),
        }
    }

    /// What a security key signs: SHA256(application) ‖ flags ‖ counter ‖ ext ‖ hash.
    fn sk_signed(&self, flags: u8, counter: u32, extensions: &[u8], msghash: &[u8]) -> Result<Vec<u8>, VerifyError> {
        let app = self.key.application.as_deref().ok_or_else(|| malformed("security key without application"))?;
        let mut out = Sha256::digest(app).to_vec();
        out.push(flags);
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(extensions);
        out.extend_from_slice(msghash);
        Ok(out)
    }
}

fn end(r: &SshReader<'_>) -> Result<(), VerifyError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(malformed("signature has trailing data"))
    }
}

fn sk_evidence(flags: u8, counter: u32) -> Result<Evidence, VerifyError> {
    if flags & FLAG_USER_PRESENT == 0 {
        return Err(VerifyError::Policy("security key signed without user presence (no touch)".into()));
    }
    Ok(Evidence {
        user_present: Some(true),
        user_verified: Some(flags & FLAG_USER_VERIFIED != 0),
        counter: Some(counter),
        attestation: None,
        credential_id: None,
    })
}

/// OpenSSH's check of a `webauthn-sk-…` signature: the clientData must begin with
/// exactly `{"type":"webauthn.get","challenge":"<b64url(signed)>","origin":"<origin>"`.
fn webauthn_client_data_hash(
    signed: &[u8],
    origin: &[u8],
    client_data: &[u8],
    flags: u8,
    extensions: &[u8],
) -> Result<Vec<u8>, VerifyError> {
    if origin.contains(&b'"')
        || flags & FLAG_ATTESTED_DATA != 0
        || (flags & FLAG_EXTENSION_DATA == 0) != extensions.is_empty()
    {
        return Err(malformed("inconsistent WebAuthn signature fields"));
    }
    let mut prefix = br#"{"type":"webauthn.get","challenge":""#.to_vec();
    prefix.extend_from_slice(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed).as_bytes());
    prefix.extend_from_slice(br#"","origin":""#);
    prefix.extend_from_slice(origin);
    prefix.push(b'"');
    if !client_data.starts_with(&prefix) {
        return Err(VerifyError::BadSignature);
    }
    Ok(Sha256::digest(client_data).to_vec())
}

/// `string(mpint r, mpint s)` → fixed-width r‖s.
fn fixed_rs(blob: &[u8], size: usize) -> Result<Vec<u8>, VerifyError> {
    let mut r = SshReader::new(blob);
    let mut out = Vec::with_capacity(2 * size);
    for _ in 0..2 {
        let mut n = r.string().map_err(from_parse)?;
        while let [0, rest @ ..] = n {
            n = rest;
        }
        if n.len() > size {
            return Err(malformed("ECDSA signature component too large"));
        }
        out.extend(std::iter::repeat_n(0, size - n.len()));
        out.extend_from_slice(n);
    }
    end(&r)?;
    Ok(out)
}
