//! A P-256 key that signs the way a browser's WebCrypto does for method
//! `webcrypto`: ECDSA with SHA-256, signature as IEEE P1363 r‖s, public key as JWK.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
#[error("P-256 key error: {0}")]
pub struct KeyError(String);

/// A software P-256 signing key.
pub struct P256Key {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl P256Key {
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| KeyError(e.to_string()))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// From a PKCS#8 DER private key, as WebCrypto's `importKey("pkcs8", …)` takes.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| KeyError(e.to_string()))?;
        Ok(P256Key { pair, rng: SystemRandom::new() })
    }

    /// The public key as a JWK (never with `d`).
    pub fn public_jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// The uncompressed SEC1 public point.
    pub fn public_point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Signs `message`; returns r‖s, base64url without padding.
    pub fn sign_b64(&self, message: &[u8]) -> Result<String, KeyError> {
        let sig = self.pair.sign(&self.rng, message).map_err(|e| KeyError(e.to_string()))?;
        Ok(URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}
