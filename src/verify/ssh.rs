//! Method `ssh`: an OpenSSH signature (SSHSIG) over the challenge text, made with
//! `ssh-keygen -Y sign`, an ssh-agent (`keygate sign --ssh`), or a security key.
//!
//! ```text
//! person / keygate sign                     keygate
//!   ── request {roomId} ───────────────────▶ |
//!   ◀── challenge {payload, ssh:{namespace,  |
//!                  command}} ─────────────── |
//!   printf %s B64 | base64 -d |              |
//!     ssh-keygen -Y sign -n keygate -f KEY   |  (B64: the payload text, so shells
//!                                            |   cannot mangle it)
//!   ── auth {method:"ssh", payload,          |
//!           signature: "-----BEGIN SSH       |
//!           SIGNATURE-----…"} ─────────────▶ |  key → did:key; whitelist; verify
//! ```

use super::sshsig::SshSig;
use super::{Challenge, Claim, Method, Verifier, VerifyError};

/// The SSHSIG namespace keygate signatures are made in, so that a signature made
/// for git or for file signing can never be replayed as a keygate login.
pub const SSH_NAMESPACE: &str = "keygate";

pub struct SshVerifier;

impl Verifier for SshVerifier {
    fn method(&self) -> Method {
        Method::Ssh
    }

    /// What a peer's browser needs to check the proof itself (static/identity.js).
    fn forwarded_fields(&self) -> &'static [&'static str] {
        &["signature"]
    }

    fn claim(&self, auth: &serde_json::Value, challenge: &Challenge<'_>) -> Result<Claim, VerifyError> {
        let text = auth.get("signature").and_then(|s| s.as_str()).ok_or_else(|| {
            VerifyError::Malformed("missing signature (the -----BEGIN SSH SIGNATURE----- block)".into())
        })?;
        let sig = SshSig::decode(text)?;
        if sig.namespace != SSH_NAMESPACE {
            return Err(VerifyError::Unusable(format!(
                "the signature was made for namespace '{}'; sign with -n {SSH_NAMESPACE}",
                sig.namespace
            )));
        }
        Ok(Claim::new(sig.identity(), challenge.payload, move |signed| sig.verify(signed, SSH_NAMESPACE)))
    }

    fn by_hand(&self) -> bool {
        true
    }
}
