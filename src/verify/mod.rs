//! Proof verification: one [`Verifier`] per method, pure and synchronous.
//!
//! A verifier works in two steps so that the whitelist can be consulted in between:
//!
//! ```text
//!   auth frame ──claim()──▶ Claim { identity, check }   (parsing only: no crypto)
//!                               │
//!               whitelist ◀─────┘  unknown identity: refused here, no signature checked
//!                               │
//!              check(signed bytes) ──▶ Ok / VerifyError   (the one expensive step)
//! ```
//!
//! This module knows nothing of sockets, rooms or SQL. Every signature check goes
//! through [`Claim::check`], which counts it, so tests can prove that an unknown key
//! costs no crypto.

mod webcrypto;

pub use webcrypto::WebCryptoVerifier;

use crate::identity::Identity;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The signature does not verify over the exact challenge bytes.
    #[error("bad signature")]
    BadSignature,
    /// The method is known but this server does not accept it (yet, or by config).
    #[error("method {0} is not accepted here")]
    Unsupported(&'static str),
}

/// Deferred signature check of a parsed proof.
type Check = Box<dyn FnOnce(&[u8]) -> Result<(), VerifyError> + Send>;

/// A parsed proof: who claims to have signed, and the check that would confirm it.
pub struct Claim {
    pub identity: Identity,
    check: Check,
}

static SIGNATURE_CHECKS: AtomicU64 = AtomicU64::new(0);

/// How many signature checks this process has run (exported on `/metrics`).
pub fn signature_checks() -> u64 {
    SIGNATURE_CHECKS.load(Ordering::Relaxed)
}

impl Claim {
    pub fn new(
        identity: Identity,
        check: impl FnOnce(&[u8]) -> Result<(), VerifyError> + Send + 'static,
    ) -> Self {
        Claim {
            identity,
            check: Box::new(check),
        }
    }

    /// Runs the signature check over exactly `signed`, the bytes the server issued.
    pub fn check(self, signed: &[u8]) -> Result<(), VerifyError> {
        SIGNATURE_CHECKS.fetch_add(1, Ordering::Relaxed);
        (self.check)(signed)
    }
}

/// One proof method. Implementations are pure: no I/O, no clock, no shared state.
pub trait Verifier: Send + Sync {
    fn method(&self) -> Method;
    /// Parses the method's fields of an `auth` frame (the whole frame as JSON) and
    /// names the claimed identity, without checking any signature.
    fn claim(&self, auth: &serde_json::Value) -> Result<Claim, VerifyError>;
    /// The proof fields other peers need to check an admission themselves, which the
    /// server then forwards to them; empty when a peer could not check it anyway.
    fn forwarded_fields(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The verifiers this server accepts, by method. Registered in one place: here.
#[derive(Clone)]
pub struct Verifiers {
    by_method: Arc<HashMap<Method, Box<dyn Verifier>>>,
}

impl Verifiers {
    pub fn standard() -> Self {
        let list: Vec<Box<dyn Verifier>> = vec![Box::new(WebCryptoVerifier)];
        Verifiers {
            by_method: Arc::new(list.into_iter().map(|v| (v.method(), v)).collect()),
        }
    }

    pub fn get(&self, method: Method) -> Option<&dyn Verifier> {
        self.by_method.get(&method).map(|v| v.as_ref())
    }

    /// Accepted methods, in a stable order, for the `challenge` message.
    pub fn methods(&self) -> Vec<Method> {
        let mut m: Vec<Method> = self.by_method.keys().copied().collect();
        m.sort_by_key(|m| m.as_str());
        m
    }
}
