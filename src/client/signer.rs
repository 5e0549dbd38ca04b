//! Software signers for every method a program can drive on its own: what the load
//! tool uses to act as many browsers, ssh users and wallets at once.

use super::p256_key::P256Key;
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
}

impl ProofSigner {
    pub fn generate(method: Method) -> Result<Self, SignerError> {
        match method {
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
        }
    }

    /// The public key in a form a whitelist accepts.
    pub fn whitelist_entry(&self) -> Result<String, SignerError> {
        match self {
            ProofSigner::WebCrypto(k) => Ok(k.public_jwk().to_string()),
            ProofSigner::Ssh(k) => k.public_key().to_openssh().map_err(err),
            ProofSigner::Eth(_, address) => Ok(address.to_string()),
        }
    }

    /// A `request` frame for `room` (with the address, for a wallet).
    pub fn request(&self, room: &str) -> Value {
        match self {
            ProofSigner::Eth(_, address) => json!({"type": "request", "roomId": room, "address": address.to_string()}),
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
        }
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
