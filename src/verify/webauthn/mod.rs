//! WebAuthn, in one place: passkeys and security keys.
//!
//! - [`relying_party`]: the relying party (registering credentials, and the
//!   WebAuthn half of a challenge: options for the browser, ceremony state here);
//! - this file: method `webauthn`, the [`Verifier`] that finishes an assertion with
//!   webauthn-rs against the ceremony issued with the challenge;
//! - [`assertion`]: the same checks written out without ceremony state, as a peer
//!   holding only the forwarded proof makes them (checked on the W3C vectors).
//!
//! Keys in COSE form are a key format like any other ([`crate::identity::cose`]);
//! the authenticator side lives with the other signers
//! ([`crate::client::soft_webauthn`]).

pub mod assertion;
pub mod relying_party;

pub use relying_party::{credential_id_text, identity_of, load_credential, Ceremony, PasskeyError, Passkeys};

use super::{Challenge, Claim, Evidence, Method, Verifier, VerifyError};
use std::sync::Arc;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::PublicKeyCredential;
use webauthn_rs_core::WebauthnCore;

pub struct WebauthnVerifier {
    core: Arc<WebauthnCore>,
}

impl WebauthnVerifier {
    pub fn new(core: Arc<WebauthnCore>) -> Self {
        WebauthnVerifier { core }
    }
}

/// Names a webauthn-rs refusal for the audit log.
fn refusal(e: WebauthnError) -> VerifyError {
    match e {
        WebauthnError::InvalidRPOrigin | WebauthnError::InvalidRPIDHash => {
            VerifyError::Policy(format!("assertion made for another origin or relying party ({e})"))
        }
        WebauthnError::MismatchedChallenge => VerifyError::Policy("the assertion answers another challenge".into()),
        WebauthnError::CredentialPossibleCompromise => {
            VerifyError::Policy("the sign counter went backwards: the authenticator may be cloned".into())
        }
        WebauthnError::UserNotVerified => {
            VerifyError::Policy("user verification (PIN or biometric) is required".into())
        }
        WebauthnError::UserNotPresent => VerifyError::Policy("the authenticator did not confirm user presence".into()),
        WebauthnError::AuthenticationFailure => VerifyError::BadSignature,
        other => VerifyError::Policy(format!("assertion refused: {other}")),
    }
}

impl Verifier for WebauthnVerifier {
    fn method(&self) -> Method {
        Method::Webauthn
    }

    fn forwarded_fields(&self) -> &'static [&'static str] {
        &["credential"]
    }

    fn claim(&self, auth: &serde_json::Value, challenge: &Challenge<'_>) -> Result<Claim, VerifyError> {
        let Some(ceremony) = challenge.webauthn else {
            return Err(VerifyError::Unusable(
                "a WebAuthn proof answers a challenge requested with \"webauthn\": true".into(),
            ));
        };
        let credential: PublicKeyCredential = serde_json::from_value(
            auth.get("credential").cloned().ok_or_else(|| VerifyError::Malformed("missing credential".into()))?,
        )
        .map_err(|e| VerifyError::Malformed(format!("credential is not a PublicKeyCredential: {e}")))?;
        let identity = ceremony
            .credentials
            .get::<[u8]>(credential.raw_id.as_ref())
            .cloned()
            .ok_or_else(|| VerifyError::Policy("unknown key (a credential not registered for this room)".into()))?;
        let core = self.core.clone();
        let state = ceremony.state.clone();
        Ok(Claim::new(identity, challenge.payload, move |_signed| {
            // The ceremony state's challenge is the payload itself, so webauthn-rs
            // checking the challenge checks the signed payload.
            let result = core.authenticate_credential(&credential, &state).map_err(refusal)?;
            Ok(Evidence {
                user_present: Some(true),
                user_verified: Some(result.user_verified()),
                counter: Some(result.counter()),
                attestation: None,
                credential_id: Some(result.cred_id().to_vec()),
            })
        }))
    }
}
