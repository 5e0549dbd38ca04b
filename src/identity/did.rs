//! DID encoding: `did:key` (multicodec + base58btc multibase) and `did:pkh` for
//! Ethereum accounts.

use super::{EthAddress, Identity, ParseError, PublicKey};

pub(crate) const ED25519_PUB: u64 = 0xed;
pub(crate) const P256_PUB: u64 = 0x1200;
pub(crate) const P384_PUB: u64 = 0x1201;
pub(crate) const RSA_PUB: u64 = 0x1205;
const SECP256K1_PUB: u64 = 0xe7;
const X25519_PUB: u64 = 0xec;

/// Unsigned LEB128, as multicodec prefixes are written.
pub(crate) fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut n: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(9) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // Reject non-minimal encodings so one key has one DID.
            if i > 0 && *b == 0 {
                return None;
            }
            return Some((n, &bytes[i + 1..]));
        }
    }
    None
}

/// The longest base58 text of a did:key read.
const MAX_DID_KEY_CHARS: usize = 1600;

pub(crate) fn encode_key(codec: u64, key: &[u8]) -> String {
    let mut bytes = varint(codec);
    bytes.extend_from_slice(key);
    format!("did:key:z{}", bs58::encode(bytes).into_string())
}

/// Parses `did:key:z…` or `did:pkh:eip155:<chain>:0x…`.
pub(crate) fn parse(text: &str) -> Result<Identity, ParseError> {
    if let Some(rest) = text.strip_prefix("did:key:") {
        // A DID URL fragment (`did:key:z…#z…`) names the same key.
        let rest = rest.split('#').next().unwrap_or(rest);
        let encoded = rest
            .strip_prefix('z')
            .ok_or_else(|| ParseError::InvalidKey("did:key must use base58btc multibase ('z…')".into()))?;
        // base58 decoding costs the square of the length: bound it first. The
        // longest real did:key, an RSA-8192 key's, has about 1,420 characters.
        if encoded.len() > MAX_DID_KEY_CHARS {
            return Err(ParseError::TooLong(encoded.len(), MAX_DID_KEY_CHARS));
        }
        let bytes = bs58::decode(encoded)
            .into_vec()
            .map_err(|_| ParseError::InvalidKey("did:key is not valid base58btc".into()))?;
        let (codec, key) =
            read_varint(&bytes).ok_or_else(|| ParseError::InvalidKey("did:key has a bad multicodec prefix".into()))?;
        let raw = key;
        let key = match codec {
            P256_PUB => PublicKey::p256_from_sec1(key)?,
            P384_PUB => PublicKey::p384_from_sec1(key)?,
            ED25519_PUB => PublicKey::Ed25519(
                key.try_into().map_err(|_| ParseError::InvalidKey("Ed25519 key must be 32 bytes".into()))?,
            ),
            RSA_PUB => PublicKey::rsa_from_pkcs1(key)?,
            SECP256K1_PUB => {
                return Err(ParseError::Unsupported(
                    "secp256k1 did:key (use the Ethereum address, did:pkh, for wallets)".into(),
                ))
            }
            X25519_PUB => {
                return Err(ParseError::Unsupported("X25519 is a key-agreement key, not a signing key".into()))
            }
            other => return Err(ParseError::Unsupported(format!("did:key multicodec 0x{other:x}"))),
        };
        // Base58 round-trips, so text that carries the key in its normal form is
        // already its DID: no need to encode it again (a million-key import's cost).
        if key.multicodec() == codec && key.key_bytes() == raw && !text.contains('#') {
            return Ok(Identity::from_key_and_did(key, text));
        }
        return Ok(Identity::from_key(key));
    }
    if let Some(rest) = text.strip_prefix("did:pkh:") {
        let mut parts = rest.splitn(3, ':');
        let (ns, chain, account) = (parts.next(), parts.next(), parts.next());
        match (ns, chain, account) {
            (Some("eip155"), Some(chain), Some(account))
                if !chain.is_empty() && chain.bytes().all(|b| b.is_ascii_digit()) =>
            {
                // The account is the same key on every EVM chain: normalize to chain 1.
                return Ok(Identity::from_eth(EthAddress::parse(account)?));
            }
            _ => return Err(ParseError::Unsupported("did:pkh other than eip155 accounts".into())),
        }
    }
    Err(ParseError::Unsupported(format!("DID method '{}'", text.split(':').take(2).collect::<Vec<_>>().join(":"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_multicodec_table() {
        assert_eq!(varint(P256_PUB), [0x80, 0x24]);
        assert_eq!(varint(P384_PUB), [0x81, 0x24]);
        assert_eq!(varint(ED25519_PUB), [0xed, 0x01]);
        assert_eq!(varint(RSA_PUB), [0x85, 0x24]);
        assert_eq!(read_varint(&[0x80, 0x24, 7]), Some((P256_PUB, &[7u8][..])));
        assert_eq!(read_varint(&[0x80, 0x00]), None, "non-minimal varint");
    }
}
