//! Proof verification: one [`Verifier`] per method, pure and synchronous.
//!
//! A verifier works in two steps so that the whitelist can be consulted in between:
//!
//! ```text
//!   proof + Challenge ──claim()──▶ Claim { identity, signed bytes, check }   (parsing only)
//!                                      │
//!                      whitelist ◀─────┘  unknown identity: refused here, no signature checked
//!                                      │
//!                          check() ──▶ Evidence / VerifyError   (the one expensive step)
//! ```
//!
//! This module knows nothing of sockets, rooms, clocks or SQL: what was issued
//! reaches it as a [`Challenge`] (the bytes, and what a method built with them).
//! Every signature check goes through [`Claim::check`]; the admission pipeline
//! counts each call (`/metrics`), so tests can prove that an unknown key costs no
//! crypto.
//!
//! Adding a method: its file here (a [`Verifier`]), its [`Method`] variant, and one
//! line in [`Verifiers::new`].

mod eth;
mod piv;
pub mod siwe;
mod ssh;
pub mod sshsig;
#[cfg(test)]
mod vectors;
pub mod webauthn;
mod webcrypto;
mod x509;

pub use eth::{decode_signature as eth_signature, personal_message_hash, recover_signer, EthVerifier};
pub use piv::{
    attestation_facts, verify_attestation, Attestation, PinPolicy, PivRequirement, PivVerifier, TouchPolicy,
};
pub use ssh::{SshVerifier, SSH_NAMESPACE};
pub use webauthn::WebauthnVerifier;
pub use webcrypto::WebCryptoVerifier;
pub use x509::{read_certificate, read_certificates, subject_key};

use crate::identity::Identity;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The ways a peer can prove it holds a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Webcrypto,
    Webauthn,
    Ssh,
    Piv,
    Eth,
    Ticket,
    /// Continues an admission after its socket dropped ([`crate::resume`]).
    Resume,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Webcrypto => "webcrypto",
            Method::Webauthn => "webauthn",
            Method::Ssh => "ssh",
            Method::Piv => "piv",
            Method::Eth => "eth",
            Method::Ticket => "ticket",
            Method::Resume => "resume",
        }
    }
}

/// Why a proof was not accepted. Deliberately coarse towards clients: the session
/// tells a client only "not admitted" and writes this reason to the audit log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The proof is not shaped as the method requires (missing field, bad encoding).
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The key in the proof cannot be used (wrong curve, bad point, unsupported type).
    #[error("unusable key: {0}")]
    Key(String),
    /// The client sent private key material. Unlike other failures, the client is told.
    #[error("the proof carries a private key")]
    PrivateKey,
    /// The proof is of a kind keygate refuses whoever made it (SHA-1 RSA, a foreign
    /// namespace, an unsupported key type). Decided from the proof's form alone, so
    /// the client is told how to fix it.
    #[error("{0}")]
    Unusable(String),
    /// The signature is valid but the proof breaks a rule (e.g. no user presence).
    #[error("{0}")]
    Policy(String),
    /// The signature does not verify over the exact challenge bytes.
    #[error("bad signature")]
    BadSignature,
    /// The method is known but this server does not accept it (yet, or by config).
    #[error("method {0} is not accepted here")]
    Unsupported(&'static str),
}

impl VerifyError {
    /// What the client may be told: only problems with the proof's form, which say
    /// nothing about whether the key is whitelisted or the signature valid.
    pub fn client_message(&self) -> Option<String> {
        match self {
            VerifyError::Unusable(m) => Some(m.clone()),
            _ => None,
        }
    }
}

/// What a successful check learned besides "valid", for the room's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Security keys and authenticators: the user touched the device.
    pub user_present: Option<bool>,
    /// Security keys and authenticators: the user gave a PIN or biometric.
    pub user_verified: Option<bool>,
    /// The authenticator's signature counter.
    pub counter: Option<u32>,
    /// A verified YubiKey attestation of the signing key.
    pub attestation: Option<Attestation>,
    /// The WebAuthn credential that signed, whose counter the store must advance.
    pub credential_id: Option<Vec<u8>>,
}

/// Deferred signature check of a parsed proof.
type Check = Box<dyn FnOnce(&[u8]) -> Result<Evidence, VerifyError> + Send>;

/// A parsed proof: who claims to have signed, the exact bytes the signature must
/// cover, and the check that would confirm it.
pub struct Claim {
    pub identity: Identity,
    signed: Vec<u8>,
    check: Check,
}

/// What was issued with a challenge, as a verifier sees it.
#[derive(Clone, Copy)]
pub struct Challenge<'a> {
    /// The payload text (`JSON.stringify` of the challenge's payload).
    pub payload: &'a [u8],
    /// The Sign-In with Ethereum message built for this challenge, if one was.
    pub siwe: Option<&'a str>,
    /// The WebAuthn ceremony started for this challenge, if one was.
    pub webauthn: Option<&'a webauthn::Ceremony>,
}

impl<'a> Challenge<'a> {
    /// A challenge with nothing built beside its payload.
    pub fn payload(payload: &'a [u8]) -> Self {
        Challenge { payload, siwe: None, webauthn: None }
    }
}

impl Claim {
    /// `signed`: the bytes the server issued that this proof must sign.
    pub fn new(
        identity: Identity,
        signed: &[u8],
        check: impl FnOnce(&[u8]) -> Result<Evidence, VerifyError> + Send + 'static,
    ) -> Self {
        Claim { identity, signed: signed.to_vec(), check: Box::new(check) }
    }

    /// Runs the signature check over exactly the bytes the server issued.
    pub fn check(self) -> Result<Evidence, VerifyError> {
        (self.check)(&self.signed)
    }
}

/// One proof method. Implementations are pure: no I/O, no clock, no shared state.
pub trait Verifier: Send + Sync {
    fn method(&self) -> Method;
    /// Parses the method's fields of an `auth` frame (the whole frame as JSON)
    /// answering `challenge`, and names the claimed identity and the bytes it must
    /// have signed, without checking any signature.
    fn claim(&self, auth: &serde_json::Value, challenge: &Challenge<'_>) -> Result<Claim, VerifyError>;
    /// The proof fields other peers need to check an admission themselves, which the
    /// server then forwards to them; empty when a peer could not check it anyway.
    fn forwarded_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether a person makes this proof by hand (copying a command, pasting the
    /// result), so its challenge must stay valid for minutes.
    fn by_hand(&self) -> bool {
        false
    }
}

/// The verifiers this server accepts, by method. Registered in one place: here.
#[derive(Clone)]
pub struct Verifiers {
    by_method: Arc<HashMap<Method, Box<dyn Verifier>>>,
}

impl Verifiers {
    /// Every pure method; PIV attestations must chain to one of `piv_anchors`, and
    /// WebAuthn is accepted when a relying party is given. (Tickets are state, not
    /// proofs: the admission pipeline redeems them.)
    pub fn new(
        piv_anchors: Vec<x509_cert::Certificate>,
        webauthn: Option<std::sync::Arc<webauthn_rs_core::WebauthnCore>>,
    ) -> Self {
        let mut list: Vec<Box<dyn Verifier>> = vec![
            Box::new(WebCryptoVerifier),
            Box::new(SshVerifier),
            Box::new(EthVerifier),
            Box::new(piv::PivVerifier::new(piv_anchors)),
        ];
        list.extend(webauthn.map(|core| Box::new(WebauthnVerifier::new(core)) as Box<dyn Verifier>));
        Verifiers { by_method: Arc::new(list.into_iter().map(|v| (v.method(), v)).collect()) }
    }

    pub fn get(&self, method: Method) -> Option<&dyn Verifier> {
        self.by_method.get(&method).map(|v| v.as_ref())
    }

    /// Whether any accepted method is made by hand (so challenges must live longer).
    pub fn any_by_hand(&self) -> bool {
        self.by_method.values().any(|v| v.by_hand())
    }

    /// Accepted methods, in a stable order, for the `challenge` message.
    pub fn methods(&self) -> Vec<Method> {
        let mut m: Vec<Method> = self.by_method.keys().copied().collect();
        m.sort_by_key(|m| m.as_str());
        m
    }
}
