//! The WebAuthn relying party: registering passkeys and security keys, and the
//! WebAuthn half of a room's challenge. Built on webauthn-rs (its core crate).
//!
//! ```text
//! registration (GET /passkey page, JSON endpoints)
//!   browser ── POST /webauthn/register/start {label} ────────▶ options + registrationId
//!   navigator.credentials.create(options)
//!   browser ── POST /webauthn/register/finish {registrationId, credential} ─▶ identity (did:key)
//!
//! admission (over /ws)
//!   ── request {roomId, webauthn: true} ─▶ challenge {payload, webauthn: {publicKey}}
//!        the WebAuthn challenge IS the payload text, so the assertion signs the
//!        room, nonce, time, origin and DTLS fingerprint, and any peer can check it
//!   navigator.credentials.get(options)
//!   ── auth {method: "webauthn", payload, credential} ─▶ webauthn-rs finishes it
//!        against the ceremony state this connection holds
//! ```
//!
//! webauthn-rs picks its own random challenges; keygate's state carries the payload
//! as the challenge instead (set through the state's serialized form), which keeps
//! the binding to connection and room in the state and adds the binding to the
//! signed payload.

use crate::identity::{rsa_from_parts, Identity, PublicKey};
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AuthenticationState, COSEKeyType, Credential, ECDSACurve, EDDSACurve,
    RegisterPublicKeyCredential, RegistrationState, UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

/// How long a started registration may take to finish.
const REGISTRATION_TTL: Duration = Duration::from_secs(300);
/// The longest registration id read: what this server seals is about 1 KiB.
const MAX_REGISTRATION_ID: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("WebAuthn configuration: {0}")]
    Config(String),
    #[error("no such registration in progress (it may have expired or been finished); start again")]
    UnknownRegistration,
    #[error("the credential was not accepted: {0}")]
    Rejected(String),
    #[error("unsupported credential key: {0}")]
    UnsupportedKey(String),
}

/// The WebAuthn half of a challenge: options for the browser, ceremony state for
/// the server, and which identity each offered credential belongs to.
#[derive(Debug)]
pub struct Ceremony {
    /// `{"publicKey": PublicKeyCredentialRequestOptions}` as the browser takes it.
    pub options: Value,
    pub state: AuthenticationState,
    /// Credential id → (identity DID, stored credential id text).
    pub credentials: HashMap<Vec<u8>, Identity>,
}

/// The relying party, shared by the pages and the sessions.
pub struct Passkeys {
    core: Arc<WebauthnCore>,
    /// Registrations in progress travel with the browser, sealed into their ids
    /// ([`crate::sealed`]): any server finishes them, once, and none holds them.
    registrations: crate::sealed::Sealer,
}

impl Passkeys {
    /// `rp_id` is the registrable domain (e.g. `meet.example.com`), `origins` the
    /// page origins allowed to use it.
    pub fn new(rp_id: &str, origins: &[String]) -> Result<Self, PasskeyError> {
        let origins = origins
            .iter()
            .map(|o| url::Url::parse(o).map_err(|e| PasskeyError::Config(format!("origin {o}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if rp_id.is_empty() {
            return Err(PasskeyError::Config("empty relying party id".into()));
        }
        let core =
            WebauthnCore::new_unsafe_experts_only("keygate", rp_id, origins, Duration::from_secs(120), None, None);
        Ok(Passkeys { core: Arc::new(core), registrations: crate::sealed::Sealer::ephemeral("registration") })
    }

    /// The same relying party, sealing registrations under `secret` (kept in the
    /// database), so that every server of the service finishes them.
    pub fn with_secret(&self, secret: &[u8]) -> Self {
        Passkeys { core: self.core.clone(), registrations: crate::sealed::Sealer::new("registration", secret) }
    }

    pub fn core(&self) -> Arc<WebauthnCore> {
        self.core.clone()
    }

    /// Starts registering a new credential; returns its registration id (the
    /// registration, sealed) and the options for `navigator.credentials.create`.
    pub fn start_registration(&self, label: &str) -> Result<(String, Value), PasskeyError> {
        let (state, options) = self.begin_registration(label)?;
        Ok((self.registrations.seal(&state, REGISTRATION_TTL), options))
    }

    /// A registration's state and the browser's options, for a caller that keeps
    /// the state itself (the benchmark).
    pub fn begin_registration(&self, label: &str) -> Result<(RegistrationState, Value), PasskeyError> {
        // No accounts: every credential gets a fresh random user handle.
        let user_id = crate::ids::random_bytes::<16>();
        let name = if label.trim().is_empty() { "keygate key" } else { label.trim() };
        let builder = self
            .core
            .new_challenge_register_builder(&user_id, name, name)
            .map_err(|e| PasskeyError::Rejected(e.to_string()))?
            .attestation(AttestationConveyancePreference::None)
            .user_verification_policy(UserVerificationPolicy::Preferred);
        let (options, state) =
            self.core.generate_challenge_register(builder).map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        let mut options = serde_json::to_value(&options).map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        // A discoverable credential (a passkey proper) where the authenticator can
        // keep one, so that signing in needs nothing typed and works from any browser
        // the passkey syncs to; an authenticator that cannot still registers one.
        // (The registration's checks do not depend on it.)
        if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
            selection["residentKey"] = "preferred".into();
            selection["requireResidentKey"] = false.into();
        }
        Ok((state, options))
    }

    /// Finishes a registration; returns the credential and its identity.
    pub async fn finish_registration(
        &self,
        registration_id: &str,
        credential: &RegisterPublicKeyCredential,
        store: &crate::store::Store,
    ) -> Result<(Credential, Identity), PasskeyError> {
        let state: RegistrationState = self
            .registrations
            .open_once(registration_id, MAX_REGISTRATION_ID, store)
            .await
            .map_err(|_| PasskeyError::UnknownRegistration)?;
        self.complete_registration(&state, credential)
    }

    /// Checks `credential` against a registration's `state`: the credential and its
    /// identity.
    pub fn complete_registration(
        &self,
        state: &RegistrationState,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<(Credential, Identity), PasskeyError> {
        let credential = self
            .core
            .register_credential(credential, state, None)
            .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        let identity = identity_of(&credential)?;
        Ok((credential, identity))
    }

    /// The WebAuthn half of a challenge whose payload text is `signed`, offering
    /// `credentials` (stored JSON with their counters and identities).
    pub fn challenge(
        &self,
        signed: &str,
        credentials: Vec<(Credential, Identity)>,
        require_user_verification: bool,
    ) -> Result<Ceremony, PasskeyError> {
        let policy = if require_user_verification {
            UserVerificationPolicy::Required
        } else {
            UserVerificationPolicy::Preferred
        };
        let by_id: HashMap<Vec<u8>, Identity> =
            credentials.iter().map(|(c, i)| (c.cred_id.clone(), i.clone())).collect();
        let creds: Vec<Credential> = credentials.into_iter().map(|(c, _)| c).collect();
        let builder = self
            .core
            .new_challenge_authenticate_builder(creds, Some(policy))
            .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        let (options, state) =
            self.core.generate_challenge_authenticate(builder).map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        // Put the payload in place of the library's random challenge, in both halves.
        let challenge = Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed));
        let mut options = serde_json::to_value(&options).map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        options["publicKey"]["challenge"] = challenge.clone();
        let mut state_json = serde_json::to_value(&state).map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        state_json["challenge"] = challenge;
        let state: AuthenticationState =
            serde_json::from_value(state_json).map_err(|e| PasskeyError::Rejected(e.to_string()))?;
        Ok(Ceremony { options, state, credentials: by_id })
    }
}

/// A stored credential as the relying party uses it: its record with the stored
/// counter, and its identity recomputed from the stored key. The identity column is
/// only an index: a row whose key does not yield it is refused, so no write to the
/// record (or a record from an older version) can lend one key another's identity.
pub fn load_credential(stored: &crate::store::StoredCredential) -> Result<(Credential, Identity), PasskeyError> {
    let mut credential: Credential = serde_json::from_str(&stored.credential)
        .map_err(|e| PasskeyError::Rejected(format!("unreadable credential record: {e}")))?;
    credential.counter = stored.counter;
    let identity = identity_of(&credential)?;
    if *identity.did() != stored.identity {
        return Err(PasskeyError::Rejected("the stored key does not match the credential's identity".into()));
    }
    Ok((credential, identity))
}

/// The identity of a credential: the DID of its public key.
pub fn identity_of(credential: &Credential) -> Result<Identity, PasskeyError> {
    let unsupported = |m: &str| PasskeyError::UnsupportedKey(m.to_owned());
    let key = match &credential.cred.key {
        COSEKeyType::EC_EC2(ec) => {
            let mut point = vec![4u8];
            point.extend_from_slice(&ec.x);
            point.extend_from_slice(&ec.y);
            match ec.curve {
                ECDSACurve::SECP256R1 => PublicKey::p256_from_sec1(&point),
                ECDSACurve::SECP384R1 => PublicKey::p384_from_sec1(&point),
                _ => return Err(unsupported("P-521")),
            }
            .map_err(|e| unsupported(&e.to_string()))?
        }
        COSEKeyType::EC_OKP(okp) => match okp.curve {
            EDDSACurve::ED25519 => {
                PublicKey::Ed25519(okp.x.as_slice().try_into().map_err(|_| unsupported("Ed25519 key size"))?)
            }
            _ => return Err(unsupported("Ed448")),
        },
        COSEKeyType::RSA(rsa) => rsa_from_parts(&rsa.n, &rsa.e).map_err(|e| unsupported(&e.to_string()))?,
    };
    Ok(Identity::from_key(key))
}

/// The credential id as stored (base64url).
pub fn credential_id_text(id: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}
