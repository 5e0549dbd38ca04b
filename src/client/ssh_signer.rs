//! Signing challenges with OpenSSH keys: from a running ssh-agent (which may be
//! OpenSSH's, or an agent exposing hardware keys such as yubikey-agent), or from a
//! private key file. The result is an armored SSHSIG in namespace `keygate`, the
//! same thing `ssh-keygen -Y sign -n keygate` prints.

use crate::verify::SSH_NAMESPACE;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use std::path::{Path, PathBuf};

/// Where the signing key lives.
#[derive(Clone, Debug)]
pub enum SshKeySource {
    /// A key held by the agent at `$SSH_AUTH_SOCK`; `select` picks one by fingerprint
    /// (`SHA256:…`), comment, or public key line when the agent holds several.
    Agent { select: Option<String> },
    /// An OpenSSH private key file; a passphrase is asked for when it is encrypted.
    File(PathBuf),
}

/// What went wrong, phrased for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum SshSignError {
    #[error(
        "no ssh-agent: SSH_AUTH_SOCK is not set (start one with `eval $(ssh-agent)` and add a key with `ssh-add`)"
    )]
    NoAgent,
    #[error("cannot reach the ssh-agent at {0}: {1}")]
    AgentUnreachable(String, String),
    #[error("the ssh-agent holds no keys; add one with `ssh-add`")]
    AgentEmpty,
    #[error("no key in the ssh-agent matches '{0}'; it holds:\n{1}")]
    NoMatch(String, String),
    #[error("the ssh-agent holds several keys; choose one with --key FINGERPRINT or --key COMMENT:\n{0}")]
    Ambiguous(String),
    #[error("the ssh-agent refused to sign: {0}")]
    AgentRefused(String),
    #[error("cannot read the key file {0}: {1}")]
    KeyFile(String, String),
    #[error("wrong passphrase for {0}")]
    Passphrase(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs `message` and returns the armored signature.
pub fn sign(source: &SshKeySource, message: &[u8]) -> Result<String, SshSignError> {
    let sig = match source {
        SshKeySource::Agent { select } => sign_with_agent(select.as_deref(), message)?,
        SshKeySource::File(path) => load_private_key(path)?
            .sign(SSH_NAMESPACE, HashAlg::Sha512, message)
            .map_err(|e| SshSignError::Sign(e.to_string()))?,
    };
    sig.to_pem(LineEnding::LF).map_err(|e| SshSignError::Sign(e.to_string()))
}

/// The public key that [`sign`] would use.
pub fn public_key(source: &SshKeySource) -> Result<PublicKey, SshSignError> {
    match source {
        SshKeySource::Agent { select } => {
            let (_, key) = agent_key(select.as_deref())?;
            Ok(key)
        }
        SshKeySource::File(path) => Ok(load_private_key(path)?.public_key().clone()),
    }
}

fn describe(keys: &[PublicKey]) -> String {
    keys.iter()
        .map(|k| format!("  {} {} {}", k.fingerprint(HashAlg::Sha256), k.algorithm().as_str(), k.comment()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn matches(key: &PublicKey, select: &str) -> bool {
    let select = select.trim();
    key.fingerprint(HashAlg::Sha256).to_string() == select
        || key.comment() == select
        || PublicKey::from_openssh(select).is_ok_and(|k| k.key_data() == key.key_data())
}

fn agent_key(select: Option<&str>) -> Result<(ssh_agent_client_rs::Client, PublicKey), SshSignError> {
    let socket = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).ok_or(SshSignError::NoAgent)?;
    let socket_name = socket.to_string_lossy().into_owned();
    let mut client = ssh_agent_client_rs::Client::connect(Path::new(&socket))
        .map_err(|e| SshSignError::AgentUnreachable(socket_name.clone(), e.to_string()))?;
    let keys: Vec<PublicKey> = client
        .list_all_identities()
        .map_err(|e| SshSignError::AgentUnreachable(socket_name, e.to_string()))?
        .into_iter()
        .filter_map(|identity| match identity {
            ssh_agent_client_rs::Identity::PublicKey(k) => Some(k.into_owned()),
            ssh_agent_client_rs::Identity::Certificate(_) => None,
        })
        .collect();
    if keys.is_empty() {
        return Err(SshSignError::AgentEmpty);
    }
    let chosen: Vec<&PublicKey> = match select {
        Some(s) => keys.iter().filter(|k| matches(k, s)).collect(),
        None => keys.iter().collect(),
    };
    match (chosen.as_slice(), select) {
        ([one], _) => {
            let key = (*one).clone();
            Ok((client, key))
        }
        ([], Some(s)) => Err(SshSignError::NoMatch(s.to_owned(), describe(&keys))),
        _ => Err(SshSignError::Ambiguous(describe(&chosen.into_iter().cloned().collect::<Vec<_>>()))),
    }
}

fn sign_with_agent(select: Option<&str>, message: &[u8]) -> Result<SshSig, SshSignError> {
    let (mut client, key) = agent_key(select)?;
    let data =
        SshSig::signed_data(SSH_NAMESPACE, HashAlg::Sha512, message).map_err(|e| SshSignError::Sign(e.to_string()))?;
    // RSA keys are asked for rsa-sha2-512 signatures, never SHA-1.
    let signature = client.sign(key.clone(), &data).map_err(|e| SshSignError::AgentRefused(e.to_string()))?;
    SshSig::new(key.key_data().clone(), SSH_NAMESPACE, HashAlg::Sha512, signature)
        .map_err(|e| SshSignError::Sign(e.to_string()))
}

fn load_private_key(path: &Path) -> Result<PrivateKey, SshSignError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SshSignError::KeyFile(name.clone(), e.to_string()))?;
    if text.contains("-----BEGIN PRIVATE KEY-----") || text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return pkcs8_private_key(&text, &name);
    }
    // OpenSSH wraps the base64 at 70 columns, and the parser insists on it; other
    // tools (Python's cryptography, editors, Windows line ends) wrap otherwise.
    let key = PrivateKey::from_openssh(&text)
        .or_else(|e| rewrapped_openssh(&text).ok_or(e).and_then(PrivateKey::from_openssh))
        .map_err(|e| {
            SshSignError::KeyFile(name.clone(), format!("{e} (expected an OpenSSH or PKCS#8 PEM private key)"))
        })?;
    if !key.is_encrypted() {
        return Ok(key);
    }
    let passphrase = passphrase(&name)?;
    key.decrypt(passphrase.as_bytes()).map_err(|_| SshSignError::Passphrase(name))
}

/// An OpenSSH private key file as OpenSSH writes it: its base64 re-wrapped at 70
/// columns, LF line ends. `None` unless the text holds one such armoured block.
fn rewrapped_openssh(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const END: &str = "-----END OPENSSH PRIVATE KEY-----";
    let body = text.split_once(BEGIN)?.1.split_once(END)?.0;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    if base64.is_empty() || !base64.is_ascii() {
        return None;
    }
    let mut out = format!("{BEGIN}\n");
    for line in base64.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(line).ok()?);
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    Some(out)
}

fn passphrase(name: &str) -> Result<zeroize::Zeroizing<String>, SshSignError> {
    match std::env::var("KEYGATE_KEY_PASSPHRASE") {
        Ok(p) => Ok(zeroize::Zeroizing::new(p)),
        Err(_) => rpassword::prompt_password(format!("Passphrase for {name}: "))
            .map(zeroize::Zeroizing::new)
            .map_err(|e| SshSignError::KeyFile(name.to_owned(), format!("cannot ask for the passphrase: {e}"))),
    }
}

/// A PKCS#8 PEM key (`openssl genpkey`), encrypted or not: Ed25519, P-256 or P-384.
fn pkcs8_private_key(text: &str, name: &str) -> Result<PrivateKey, SshSignError> {
    use pkcs8::der::Decode;
    use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData};
    let bad = |e: &dyn std::fmt::Display| SshSignError::KeyFile(name.to_owned(), e.to_string());
    let (label, der) = pkcs8::der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| bad(&e))?;
    let der = if label == "ENCRYPTED PRIVATE KEY" {
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::from_der(&der).map_err(|e| bad(&e))?;
        let passphrase = passphrase(name)?;
        encrypted
            .decrypt(passphrase.as_bytes())
            .map_err(|_| SshSignError::Passphrase(name.to_owned()))?
            .as_bytes()
            .to_vec()
    } else {
        der
    };
    let info = pkcs8::PrivateKeyInfo::from_der(&der).map_err(|e| bad(&e))?;
    let data = match info.algorithm.oid.to_string().as_str() {
        "1.3.101.112" => {
            // The key is an OCTET STRING holding the 32-byte seed.
            let seed = pkcs8::der::asn1::OctetStringRef::from_der(info.private_key).map_err(|e| bad(&e))?;
            let seed: [u8; 32] = seed.as_bytes().try_into().map_err(|_| bad(&"an Ed25519 seed is 32 bytes"))?;
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed))
        }
        "1.2.840.10045.2.1" => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            if let Ok(secret) = p256::SecretKey::try_from(info.clone()) {
                let public = secret.public_key().to_encoded_point(false);
                KeypairData::Ecdsa(EcdsaKeypair::NistP256 { public, private: secret.into() })
            } else {
                let secret =
                    p384::SecretKey::try_from(info).map_err(|_| bad(&"only P-256 and P-384 EC keys are supported"))?;
                let public = secret.public_key().to_encoded_point(false);
                KeypairData::Ecdsa(EcdsaKeypair::NistP384 { public, private: secret.into() })
            }
        }
        other => {
            return Err(bad(&format!(
            "PKCS#8 keys of algorithm {other} are not supported; use Ed25519, P-256 or P-384 (or an OpenSSH key file)"
        )))
        }
    };
    PrivateKey::new(data, "").map_err(|e| bad(&e))
}
