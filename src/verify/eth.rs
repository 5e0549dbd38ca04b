//! Method `eth`: a wallet signs a Sign-In with Ethereum message with EIP-191
//! `personal_sign`.
//!
//! ```text
//! wallet page                                keygate
//!   ── request {roomId, address} ──────────▶ |
//!   ◀── challenge {payload, siwe: MESSAGE} ── |  MESSAGE built from the challenge:
//!                                            |  domain+URI from the origin, nonce,
//!   personal_sign(MESSAGE) → 0x r‖s‖v        |  Issued At, Expiration, Request ID=room
//!   ── auth {method:"eth", payload,          |
//!           message: MESSAGE, signature} ──▶ |  address → did:pkh; whitelist;
//!                                            |  MESSAGE must equal the one issued;
//!                                            |  ecrecover == address
//! ```
//!
//! Recovery runs on libsecp256k1 (the `secp256k1` crate), measured about four times
//! faster than the pure-Rust `k256`; Keccak-256 from `sha3`.

use super::siwe::SiweMessage;
use super::{Challenge, Claim, Evidence, Method, Verifier, VerifyError};
use crate::identity::{EthAddress, Identity};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use sha3::{Digest, Keccak256};

pub struct EthVerifier;

/// The EIP-191 (version 0x45) hash of a personal message.
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    h.update(message);
    h.finalize().into()
}

/// Decodes a 65-byte `0x r‖s‖v` signature; `v` may be 0/1 or 27/28.
pub fn decode_signature(text: &str) -> Result<[u8; 65], VerifyError> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 130 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VerifyError::Malformed("an Ethereum signature is 0x followed by 130 hex digits (65 bytes)".into()));
    }
    let mut out = [0u8; 65];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    Ok(out)
}

/// The account that signed `message` with `signature` (EIP-191 personal_sign).
pub fn recover_signer(message: &[u8], signature: &[u8; 65]) -> Result<EthAddress, VerifyError> {
    let v = match signature[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return Err(VerifyError::Malformed("the signature's recovery byte must be 0, 1, 27 or 28".into())),
    };
    let id = RecoveryId::try_from(i32::from(v)).map_err(|_| VerifyError::BadSignature)?;
    let sig = RecoverableSignature::from_compact(&signature[..64], id).map_err(|_| VerifyError::BadSignature)?;
    let key = sig
        .recover(secp256k1::Message::from_digest(personal_message_hash(message)))
        .map_err(|_| VerifyError::BadSignature)?;
    let hash = Keccak256::digest(&key.serialize_uncompressed()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    Ok(EthAddress::from_bytes(address))
}

impl Verifier for EthVerifier {
    fn method(&self) -> Method {
        Method::Eth
    }

    /// What a peer's browser needs to check the proof itself (static/identity.js).
    fn forwarded_fields(&self) -> &'static [&'static str] {
        &["message", "signature"]
    }

    fn claim(&self, auth: &serde_json::Value, challenge: &Challenge<'_>) -> Result<Claim, VerifyError> {
        let issued = challenge.siwe.ok_or_else(|| {
            VerifyError::Unusable(
                "to sign in with a wallet, send your address in the request (\"address\": \"0x…\")".into(),
            )
        })?;
        let text = auth
            .get("message")
            .and_then(|m| m.as_str())
            .ok_or_else(|| VerifyError::Malformed("missing message (the signed Sign-In with Ethereum text)".into()))?
            .to_owned();
        let message = SiweMessage::parse(&text).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let signature = decode_signature(
            auth.get("signature")
                .and_then(|s| s.as_str())
                .ok_or_else(|| VerifyError::Malformed("missing signature (0x…)".into()))?,
        )?;
        let address = message.address;
        Ok(Claim::new(Identity::from_eth(address), issued.as_bytes(), move |issued| {
            // What was signed must be the message issued, to the byte.
            if text.as_bytes() != issued {
                let why = match std::str::from_utf8(issued).ok().and_then(|t| SiweMessage::parse(t).ok()) {
                    Some(original) => match message.first_difference(&original) {
                        Some(field) => format!("the signed message's {} differs from the one issued", field.name()),
                        None => "the signed message is formatted differently from the one issued".into(),
                    },
                    None => "the signed message differs from the one issued".into(),
                };
                return Err(VerifyError::Policy(why));
            }
            if recover_signer(text.as_bytes(), &signature)? != address {
                return Err(VerifyError::BadSignature);
            }
            Ok(Evidence::default())
        }))
    }
}
