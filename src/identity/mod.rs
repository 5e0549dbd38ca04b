//! Identities: the one normalized form every proof resolves to.
//!
//! An [`Identity`] is a public key (or an Ethereum account) printed as a DID:
//! `did:key:z…` for keys, `did:pkh:eip155:1:0x…` for accounts. It is built only by
//! parsing ([`Identity::parse`] for anything a host can paste, [`Identity::from_key`]
//! for a key a verifier extracted), so holding one is the proof that it is
//! well-formed and canonical: two encodings of the same key always compare equal.
//!
//! This module never checks signatures and never touches the network or the store.

pub mod cose;
mod did;
mod eth;
mod formats;
pub(crate) mod ssh_wire;

pub use eth::EthAddress;
pub use formats::{
    key_from_spki, parse_jwk, parse_key_list, KeyLine, KeyListReader, ParseError, Validity, ACCEPTED_FORMATS,
    MAX_KEY_TEXT,
};

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// A public key in the canonical byte form its DID encodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PublicKey {
    /// Compressed SEC1 point (33 bytes); always a valid point on P-256.
    P256([u8; 33]),
    /// Compressed SEC1 point (49 bytes); always a valid point on P-384.
    P384([u8; 49]),
    /// The 32-byte Ed25519 public key.
    Ed25519([u8; 32]),
    /// DER `RSAPublicKey` (PKCS#1), as did:key encodes RSA.
    Rsa(Vec<u8>),
}

impl PublicKey {
    /// A P-256 key from any SEC1 encoding (compressed or uncompressed); the point is
    /// checked to lie on the curve.
    pub fn p256_from_sec1(bytes: &[u8]) -> Result<Self, ParseError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let key = p256::PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| ParseError::InvalidKey("not a point on the P-256 curve".into()))?;
        let mut out = [0u8; 33];
        out.copy_from_slice(key.to_encoded_point(true).as_bytes());
        Ok(PublicKey::P256(out))
    }

    /// A P-384 key from any SEC1 encoding; the point is checked to lie on the curve.
    pub fn p384_from_sec1(bytes: &[u8]) -> Result<Self, ParseError> {
        use p384::elliptic_curve::sec1::ToEncodedPoint;
        let key = p384::PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| ParseError::InvalidKey("not a point on the P-384 curve".into()))?;
        let mut out = [0u8; 49];
        out.copy_from_slice(key.to_encoded_point(true).as_bytes());
        Ok(PublicKey::P384(out))
    }

    /// An RSA key from its PKCS#1 DER form; the modulus must have at least 2048 bits.
    pub fn rsa_from_pkcs1(der: &[u8]) -> Result<Self, ParseError> {
        use pkcs1::der::{Decode, Encode};
        let key =
            pkcs1::RsaPublicKey::from_der(der).map_err(|_| ParseError::InvalidKey("not a DER RSAPublicKey".into()))?;
        rsa_from_parts(key.modulus.as_bytes(), key.public_exponent.as_bytes()).and_then(|k| {
            // Re-encode so that a non-minimal encoding cannot give a second identity.
            let canonical = key.to_der().map_err(|_| ParseError::InvalidKey("RSA key does not re-encode".into()))?;
            if canonical.as_slice() != der {
                return Err(ParseError::InvalidKey("RSA key is not in canonical DER".into()));
            }
            Ok(k)
        })
    }

    /// The key's multicodec code, as used by did:key.
    fn multicodec(&self) -> u64 {
        match self {
            PublicKey::P256(_) => did::P256_PUB,
            PublicKey::P384(_) => did::P384_PUB,
            PublicKey::Ed25519(_) => did::ED25519_PUB,
            PublicKey::Rsa(_) => did::RSA_PUB,
        }
    }

    /// The key bytes as did:key encodes them (without the multicodec prefix).
    pub fn key_bytes(&self) -> &[u8] {
        match self {
            PublicKey::P256(b) => b,
            PublicKey::P384(b) => b,
            PublicKey::Ed25519(b) => b,
            PublicKey::Rsa(b) => b,
        }
    }

    /// A short name for pages and logs.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "P-256",
            PublicKey::P384(_) => "P-384",
            PublicKey::Ed25519(_) => "Ed25519",
            PublicKey::Rsa(_) => "RSA",
        }
    }
}

/// The largest RSA modulus accepted (OpenSSH's own limit is 16384; no YubiKey or
/// browser makes keys past 4096).
pub const MAX_RSA_BITS: usize = 8192;

/// Builds a canonical RSA key from big-endian modulus and exponent bytes.
pub fn rsa_from_parts(n: &[u8], e: &[u8]) -> Result<PublicKey, ParseError> {
    use pkcs1::der::Encode;
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    // After the zeros are stripped, the first byte (if any) is not zero.
    let bits = n.first().map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if bits < 2048 {
        return Err(ParseError::InvalidKey(format!("RSA modulus has {bits} bits; keygate accepts 2048 bits or more")));
    }
    // Checked from the length alone, before anything costs more than the bytes: a
    // huge modulus would make every later step (DER, base58, the signature) slow.
    if bits > MAX_RSA_BITS {
        return Err(ParseError::InvalidKey(format!(
            "RSA modulus has {bits} bits; keygate accepts at most {MAX_RSA_BITS}"
        )));
    }
    if e.is_empty() || e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) {
        return Err(ParseError::InvalidKey("RSA public exponent is not a small odd number".into()));
    }
    let key = pkcs1::RsaPublicKey {
        modulus: pkcs1::UintRef::new(n).map_err(|_| ParseError::InvalidKey("bad RSA modulus".into()))?,
        public_exponent: pkcs1::UintRef::new(e).map_err(|_| ParseError::InvalidKey("bad RSA exponent".into()))?,
    };
    let der = key.to_der().map_err(|_| ParseError::InvalidKey("RSA key does not encode".into()))?;
    Ok(PublicKey::Rsa(der))
}

fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Key(PublicKey),
    Eth(EthAddress),
}

/// A normalized identity as text, `did:key:z…` or `did:pkh:eip155:1:0x…`: what the
/// store, live rooms, pages and frames carry. Made by the parser ([`Identity::did`])
/// or read back from the store, which only ever holds what the parser made. Cheap to
/// clone; reads as a `&str` wherever one is wanted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(Arc<str>);

impl Did {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A DID the store gives back (written from an [`Identity`]).
    pub fn from_stored(text: &str) -> Did {
        Did(Arc::from(text))
    }
}

impl std::ops::Deref for Did {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Did {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Did {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Did {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Did {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<Did> for &str {
    fn eq(&self, other: &Did) -> bool {
        *self == &*other.0
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Did {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The normalized identity of a key holder. Cheap to clone; compares by its DID.
#[derive(Clone)]
pub struct Identity {
    subject: Arc<Subject>,
    /// The DID, computed once: identities are compared, hashed and printed far more
    /// often than they are built.
    did: Did,
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.did == other.did
    }
}
impl Eq for Identity {}
impl std::hash::Hash for Identity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.did.hash(state)
    }
}

impl Identity {
    /// The identity of a public key.
    pub fn from_key(key: PublicKey) -> Self {
        let did = did::encode_key(key.multicodec(), key.key_bytes());
        Identity { subject: Arc::new(Subject::Key(key)), did: Did(did.into()) }
    }

    /// A key whose DID text is already known to be its normal form.
    fn from_key_and_did(key: PublicKey, did: &str) -> Self {
        Identity { subject: Arc::new(Subject::Key(key)), did: Did(did.into()) }
    }

    /// The identity of an Ethereum account.
    pub fn from_eth(address: EthAddress) -> Self {
        let did = format!("did:pkh:eip155:1:{address}");
        Identity { subject: Arc::new(Subject::Eth(address)), did: Did(did.into()) }
    }

    /// Parses one key in any accepted format (see [`ACCEPTED_FORMATS`]).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        formats::parse_one(text).map(|line| line.identity)
    }

    /// The DID, e.g. `did:key:zDn…`.
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// The public key, unless this is an Ethereum account.
    pub fn public_key(&self) -> Option<&PublicKey> {
        match &*self.subject {
            Subject::Key(k) => Some(k),
            Subject::Eth(_) => None,
        }
    }

    /// The Ethereum account, if this is one.
    pub fn eth_address(&self) -> Option<&EthAddress> {
        match &*self.subject {
            Subject::Eth(a) => Some(a),
            Subject::Key(_) => None,
        }
    }

    /// What kind of key this is, for pages and the CLI.
    pub fn kind(&self) -> &'static str {
        match &*self.subject {
            Subject::Key(k) => k.algorithm(),
            Subject::Eth(_) => "Ethereum account",
        }
    }

    /// A short human fingerprint, `SHA256:` and unpadded base64 as OpenSSH prints it.
    /// For a key it is taken over the multicodec-prefixed key bytes the DID encodes;
    /// for an account over the DID text.
    pub fn fingerprint(&self) -> String {
        use base64::Engine;
        let digest = match &*self.subject {
            Subject::Key(k) => {
                let mut h = Sha256::new();
                h.update(did::varint(k.multicodec()));
                h.update(k.key_bytes());
                h.finalize()
            }
            Subject::Eth(_) => Sha256::digest(self.did.as_bytes()),
        };
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.did)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.did)
    }
}

impl std::str::FromStr for Identity {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse(s)
    }
}

impl serde::Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.did)
    }
}
