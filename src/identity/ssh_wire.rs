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

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

fn truncated() -> ParseError {
    ParseError::InvalidKey("SSH key data is truncated".into())
}

/// Parses a public key blob (`string type, …`), returning the key type name and key.
/// Security-key (`sk-…`) types carry an application string, which does not change
/// which key it is.
pub(crate) fn parse_public_key_blob(blob: &[u8]) -> Result<(String, PublicKey), ParseError> {
    let mut r = SshReader::new(blob);
    let kind = std::str::from_utf8(r.string()?)
        .map_err(|_| ParseError::InvalidKey("SSH key type is not text".into()))?
        .to_owned();
    let key = match kind.as_str() {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            let k = r.string()?;
            let key = PublicKey::Ed25519(
                k.try_into()
                    .map_err(|_| ParseError::InvalidKey("Ed25519 key must be 32 bytes".into()))?,
            );
            if kind.starts_with("sk-") {
                r.string()?; // application, e.g. "ssh:"
            }
            key
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "sk-ecdsa-sha2-nistp256@openssh.com" => {
            let curve = r.string()?;
            let point = r.string()?;
            let key = match curve {
                b"nistp256" if !kind.contains("384") => PublicKey::p256_from_sec1(point)?,
                b"nistp384" if kind.contains("384") => PublicKey::p384_from_sec1(point)?,
                _ => {
                    return Err(ParseError::InvalidKey(
                        "ECDSA curve does not match the key type".into(),
                    ))
                }
            };
            if kind.starts_with("sk-") {
                r.string()?;
            }
            key
        }
        "ssh-rsa" => {
            let e = r.string()?;
            let n = r.string()?;
            rsa_from_parts(n, e)?
        }
        other => {
            return Err(ParseError::Unsupported(format!("SSH key type '{other}'")));
        }
    };
    if !r.is_empty() {
        return Err(ParseError::InvalidKey("SSH key has trailing data".into()));
    }
    Ok((kind, key))
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
