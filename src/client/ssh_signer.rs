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
    let key = PrivateKey::read_openssh_file(path).map_err(|e| SshSignError::KeyFile(name.clone(), e.to_string()))?;
    if !key.is_encrypted() {
        return Ok(key);
    }
    let passphrase = match std::env::var("KEYGATE_KEY_PASSPHRASE") {
        Ok(p) => p,
        Err(_) => rpassword::prompt_password(format!("Passphrase for {name}: "))
            .map_err(|e| SshSignError::KeyFile(name.clone(), format!("cannot ask for the passphrase: {e}")))?,
    };
    key.decrypt(passphrase.as_bytes()).map_err(|_| SshSignError::Passphrase(name))
}
