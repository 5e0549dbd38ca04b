//! Software signers for every method a program can drive on its own: what the load
//! tool uses to act as many browsers, ssh users and wallets at once.

use super::p256_key::P256Key;
use super::soft_webauthn::SoftAuthenticator;
use crate::identity::EthAddress;
use crate::ids::random_bytes;
use crate::verify::{personal_message_hash, Method, SSH_NAMESPACE};
use serde_json::{json, Value};
use sha3::{Digest, Keccak256};

#[derive(Debug, thiserror::Error)]
#[error("signer: {0}")]
pub struct SignerError(String);

fn err(e: impl std::fmt::Display) -> SignerError {
    SignerError(e.to_string())
}

/// A key of one method, able to answer challenges.
pub enum ProofSigner {
    /// A browser's WebCrypto P-256 key.
    WebCrypto(P256Key),
    /// An OpenSSH Ed25519 key.
    Ssh(Box<ssh_key::PrivateKey>),
    /// An Ethereum account.
    Eth(secp256k1::SecretKey, EthAddress),
    /// A PIV slot: a P-256 key and its self-signed slot certificate.
    Piv(Box<aws_lc_rs::signature::EcdsaKeyPair>, String),
    /// A passkey; its identity is known once registered with the server.
    Webauthn(Box<SoftAuthenticator>, Option<String>),
}

impl ProofSigner {
    pub fn generate(method: Method) -> Result<Self, SignerError> {
        Self::generate_for(method, "http://localhost:8080")
    }

    /// A new key for `method`; a passkey is made for the relying party of `origin`.
    pub fn generate_for(method: Method, origin: &str) -> Result<Self, SignerError> {
        match method {
            Method::Piv => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
                let cert = rcgen::CertificateParams::new(Vec::<String>::new())
                    .and_then(|p| p.self_signed(&key))
                    .map_err(err)?;
                let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &key.serialize_der(),
                )
                .map_err(err)?;
                Ok(ProofSigner::Piv(Box::new(pair), cert.pem()))
            }
            Method::Webauthn => {
                let rp_id = url::Url::parse(origin)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .ok_or_else(|| SignerError(format!("origin {origin} has no host")))?;
                Ok(ProofSigner::Webauthn(Box::new(SoftAuthenticator::new(&rp_id, origin).map_err(err)?), None))
            }
            Method::Webcrypto => Ok(ProofSigner::WebCrypto(P256Key::generate().map_err(err)?)),
            Method::Ssh => {
                let pair = ssh_key::private::Ed25519Keypair::from_seed(&random_bytes::<32>());
                Ok(ProofSigner::Ssh(Box::new(ssh_key::PrivateKey::from(pair))))
            }
            Method::Eth => {
                let secret = secp256k1::SecretKey::from_byte_array(random_bytes::<32>()).map_err(err)?;
                let public = secp256k1::PublicKey::from_secret_key_global(&secret).serialize_uncompressed();
                let hash = Keccak256::digest(&public[1..]);
                let mut address = [0u8; 20];
                address.copy_from_slice(&hash[12..]);
                Ok(ProofSigner::Eth(secret, EthAddress::from_bytes(address)))
            }
            other => Err(SignerError(format!("no software signer for method {}", other.as_str()))),
        }
    }

    pub fn method(&self) -> Method {
        match self {
            ProofSigner::WebCrypto(_) => Method::Webcrypto,
            ProofSigner::Ssh(_) => Method::Ssh,
            ProofSigner::Eth(..) => Method::Eth,
            ProofSigner::Piv(..) => Method::Piv,
            ProofSigner::Webauthn(..) => Method::Webauthn,
        }
    }

    /// The public key in a form a whitelist accepts.
    pub fn whitelist_entry(&self) -> Result<String, SignerError> {
        match self {
            ProofSigner::WebCrypto(k) => Ok(k.public_jwk().to_string()),
            ProofSigner::Ssh(k) => k.public_key().to_openssh().map_err(err),
            ProofSigner::Eth(_, address) => Ok(address.to_string()),
            ProofSigner::Piv(_, cert) => Ok(cert.clone()),
            ProofSigner::Webauthn(_, identity) => {
                identity.clone().ok_or_else(|| SignerError("register the passkey first".into()))
            }
        }
    }

    /// A `request` frame for `room` (with the address, for a wallet).
    pub fn request(&self, room: &str) -> Value {
        match self {
            ProofSigner::Eth(_, address) => json!({"type": "request", "roomId": room, "address": address.to_string()}),
            ProofSigner::Webauthn(..) => json!({"type": "request", "roomId": room, "webauthn": true}),
            _ => json!({"type": "request", "roomId": room}),
        }
    }

    /// The `auth` frame answering `challenge`.
    pub fn auth(&self, challenge: &Value) -> Result<Value, SignerError> {
        let payload = &challenge["payload"];
        match self {
            ProofSigner::WebCrypto(key) => super::ws::Client::webcrypto_auth(challenge, key).map_err(err),
            ProofSigner::Ssh(key) => {
                let sig = key
                    .sign(SSH_NAMESPACE, ssh_key::HashAlg::Sha512, payload.to_string().as_bytes())
                    .and_then(|s| s.to_pem(ssh_key::LineEnding::LF))
                    .map_err(err)?;
                Ok(json!({"type": "auth", "method": "ssh", "payload": payload, "signature": sig}))
            }
            ProofSigner::Eth(secret, _) => {
                let message = challenge["siwe"].as_str().ok_or_else(|| SignerError("challenge without siwe".into()))?;
                let signature = personal_sign(secret, message.as_bytes());
                Ok(
                    json!({"type": "auth", "method": "eth", "payload": payload, "message": message, "signature": signature}),
                )
            }
            ProofSigner::Piv(pair, cert) => {
                // A PIV card signs SHA-256 of the text; ECDSA with SHA-256 does both.
                let sig =
                    pair.sign(&aws_lc_rs::rand::SystemRandom::new(), payload.to_string().as_bytes()).map_err(err)?;
                let sig = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig.as_ref());
                Ok(json!({"type": "auth", "method": "piv", "payload": payload, "certificate": cert, "signature": sig}))
            }
            ProofSigner::Webauthn(authenticator, _) => {
                let credential = authenticator.assert(&challenge["webauthn"]).map_err(err)?;
                Ok(json!({"type": "auth", "method": "webauthn", "payload": payload, "credential": credential}))
            }
        }
    }
}

impl ProofSigner {
    /// Registers a passkey signer with the server at `http` (`http://host:port`);
    /// other signers need no registration.
    pub async fn enroll(&mut self, http: &str) -> Result<(), SignerError> {
        let ProofSigner::Webauthn(authenticator, identity) = self else { return Ok(()) };
        let started = super::http::post_json(http, "/webauthn/register/start", &json!({"label": "load tool"}))
            .await
            .map_err(err)?;
        let credential = authenticator.register(&started["options"]).map_err(err)?;
        let body = json!({"registrationId": started["registrationId"], "credential": credential, "label": "load tool"});
        let finished = super::http::post_json(http, "/webauthn/register/finish", &body).await.map_err(err)?;
        *identity = Some(
            finished["identity"]
                .as_str()
                .ok_or_else(|| SignerError(format!("registration failed: {finished}")))?
                .to_owned(),
        );
        Ok(())
    }
}

/// EIP-191 personal_sign: `0x` r‖s‖v with v = 27/28.
pub fn personal_sign(secret: &secp256k1::SecretKey, message: &[u8]) -> String {
    let digest = secp256k1::Message::from_digest(personal_message_hash(message));
    let (id, rs) = secp256k1::SECP256K1.sign_ecdsa_recoverable(digest, secret).serialize_compact();
    let mut sig = rs.to_vec();
    sig.push(27 + i32::from(id) as u8);
    format!("0x{}", crate::ids::hex(&sig))
}
