//! The SSH wire format (RFC 4251 §5) as far as public keys need it.

use super::{rsa_from_parts, ParseError, PublicKey};

/// A cursor over SSH wire-format bytes.
pub(crate) struct SshReader<'a> {
    rest: &'a [u8],
}

impl<'a> SshReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        SshReader { rest: bytes }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        let (head, rest) = self.rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    /// A length-prefixed byte string.
    pub(crate) fn string(&mut self) -> Result<&'a [u8], ParseError> {
        let len = self.u32()? as usize;
        if len > self.rest.len() {
            return Err(truncated());
        }
        let (s, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        let (head, rest) = self.rest.split_first().ok_or_else(truncated)?;
        self.rest = rest;
        Ok(*head)
    }

    /// Exactly `n` raw bytes.
    pub(crate) fn raw(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if n > self.rest.len() {
            return Err(truncated());
        }
        let (s, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(s)
    }

    /// Everything not yet read.
    pub(crate) fn raw_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// A public key blob, parsed with everything a signature check needs.
#[derive(Clone, Debug)]
pub(crate) struct SshPublicKey {
    /// The key type name, e.g. `ssh-ed25519`.
    pub kind: String,
    /// The key as identities know it.
    pub key: PublicKey,
    /// The key in the form the verifier takes: raw Ed25519 key, uncompressed SEC1
    /// point, or PKCS#1 DER for RSA.
    pub verify_bytes: Vec<u8>,
    /// For security keys (`sk-…`): the FIDO application, usually `ssh:`.
    pub application: Option<Vec<u8>>,
}

fn truncated() -> ParseError {
    ParseError::InvalidKey("SSH key data is truncated".into())
}

/// Parses a public key blob (`string type, …`), returning the key type name and key.
/// Security-key (`sk-…`) types carry an application string, which does not change
/// which key it is.
pub(crate) fn parse_public_key_blob(blob: &[u8]) -> Result<(String, PublicKey), ParseError> {
    parse_ssh_public_key(blob).map(|k| (k.kind, k.key))
}

/// Parses a public key blob with everything a signature check needs.
pub(crate) fn parse_ssh_public_key(blob: &[u8]) -> Result<SshPublicKey, ParseError> {
    let mut r = SshReader::new(blob);
    let kind = std::str::from_utf8(r.string()?)
        .map_err(|_| ParseError::InvalidKey("SSH key type is not text".into()))?
        .to_owned();
    let (key, verify_bytes) = match kind.as_str() {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            let k = r.string()?;
            let raw: [u8; 32] =
                k.try_into().map_err(|_| ParseError::InvalidKey("Ed25519 key must be 32 bytes".into()))?;
            (PublicKey::Ed25519(raw), k.to_vec())
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "sk-ecdsa-sha2-nistp256@openssh.com" => {
            let curve = r.string()?;
            let point = r.string()?;
            let key = match curve {
                b"nistp256" if !kind.contains("384") => PublicKey::p256_from_sec1(point)?,
                b"nistp384" if kind.contains("384") => PublicKey::p384_from_sec1(point)?,
                _ => return Err(ParseError::InvalidKey("ECDSA curve does not match the key type".into())),
            };
            (key, point.to_vec())
        }
        "ssh-rsa" => {
            let e = r.string()?;
            let n = r.string()?;
            let key = rsa_from_parts(n, e)?;
            let der = key.key_bytes().to_vec();
            (key, der)
        }
        other => {
            return Err(ParseError::Unsupported(format!("SSH key type '{other}'")));
        }
    };
    // Security keys name their FIDO application, e.g. "ssh:".
    let application = if kind.starts_with("sk-") { Some(r.string()?.to_vec()) } else { None };
    if !r.is_empty() {
        return Err(ParseError::InvalidKey("SSH key has trailing data".into()));
    }
    Ok(SshPublicKey { kind, key, verify_bytes, application })
}

/// The key types an OpenSSH public-key line may name.
pub(crate) const SSH_KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];
