//! A software WebAuthn authenticator (ES256, "none" attestation): what the load tool
//! registers and signs with when it plays many passkey users. It builds exactly the
//! bytes a browser and authenticator would: clientDataJSON, authenticatorData, and
//! an ECDSA P-256 signature over `authenticatorData ‖ SHA-256(clientDataJSON)`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciborium::Value as Cbor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, thiserror::Error)]
#[error("software authenticator: {0}")]
pub struct SoftError(String);

pub struct SoftAuthenticator {
    pair: EcdsaKeyPair,
    credential_id: Vec<u8>,
    rp_id: String,
    origin: String,
    counter: AtomicU32,
}

fn err(e: impl std::fmt::Display) -> SoftError {
    SoftError(e.to_string())
}

impl SoftAuthenticator {
    pub fn new(rp_id: &str, origin: &str) -> Result<Self, SoftError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(err)?;
        Self::from_pkcs8(rp_id, origin, pkcs8.as_ref())
    }

    /// An authenticator holding the P-256 key in `pkcs8` (the same key may also
    /// answer elsewhere, e.g. as an OpenSSH security key).
    pub fn from_pkcs8(rp_id: &str, origin: &str, pkcs8: &[u8]) -> Result<Self, SoftError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8).map_err(err)?;
        Ok(SoftAuthenticator {
            pair,
            credential_id: crate::ids::random_bytes::<16>().to_vec(),
            rp_id: rp_id.to_owned(),
            origin: origin.to_owned(),
            counter: AtomicU32::new(0),
        })
    }

    /// The same authenticator under a credential id of the caller's choosing (a
    /// test plays an attacker who reuses someone else's id).
    pub fn with_credential_id(mut self, id: &[u8]) -> Self {
        self.credential_id = id.to_vec();
        self
    }

    /// Sets the sign counter the next assertion counts on from.
    pub fn set_counter(&self, counter: u32) {
        self.counter.store(counter, Ordering::Relaxed);
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    fn cose_key(&self) -> Result<Vec<u8>, SoftError> {
        let point = self.pair.public_key().as_ref();
        let key = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-7).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (Cbor::Integer((-2).into()), Cbor::Bytes(point[1..33].to_vec())),
            (Cbor::Integer((-3).into()), Cbor::Bytes(point[33..65].to_vec())),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&key, &mut out).map_err(err)?;
        Ok(out)
    }

    /// The `credential` to send to `/webauthn/register/finish` for `options`
    /// (`{"publicKey": …}` from `/webauthn/register/start`).
    pub fn register(&self, options: &Value) -> Result<Value, SoftError> {
        let challenge = options["publicKey"]["challenge"].as_str().ok_or_else(|| err("no challenge"))?;
        let client_data = self.client_data("webauthn.create", challenge);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(0x45); // UP | UV | AT
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key()?);
        let attestation = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]);
        let mut attestation_object = Vec::new();
        ciborium::into_writer(&attestation, &mut attestation_object).map_err(err)?;
        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        Ok(json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(attestation_object),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
            },
        }))
    }

    /// A `PublicKeyCredential` asserting `options` (the challenge's `webauthn`).
    pub fn assert(&self, options: &Value) -> Result<Value, SoftError> {
        let challenge = options["publicKey"]["challenge"].as_str().ok_or_else(|| err("no challenge"))?;
        let client_data = self.client_data("webauthn.get", challenge);
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(0x05); // UP | UV
        auth_data.extend_from_slice(&(self.counter.fetch_add(1, Ordering::Relaxed) + 1).to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature = self.pair.sign(&SystemRandom::new(), &signed).map_err(err)?;
        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        Ok(json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
                "userHandle": null,
            },
        }))
    }
}
