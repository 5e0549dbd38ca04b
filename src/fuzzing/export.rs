//! Every form a key can be written in, for the round-trip property: whatever form a
//! key arrives in, each of its other forms must parse back to the same identity.

use crate::identity::{Identity, PublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ciborium::Value as Cbor;
use serde_json::json;
use spki::der::asn1::{BitString, ObjectIdentifier};
use spki::der::{Any, Decode, EncodePem};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The identity written in every format keygate reads, named: its DID always; for a
/// key also a JWK, a PEM public key, an OpenSSH line and a COSE key (hex and
/// base64url); for an account the address (checksummed and lower case).
pub fn formats_of(identity: &Identity) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = vec![("did", identity.did().to_string())];
    if let Some(address) = identity.eth_address() {
        out.push(("eth", address.checksummed()));
        out.push(("eth lower case", address.to_string().to_ascii_lowercase()));
        return Ok(out);
    }
    let key = identity.public_key().ok_or("an identity with neither key nor account")?;
    let parts = Parts::of(key)?;
    out.push(("jwk", parts.jwk()));
    out.push(("pem", parts.pem()?));
    out.push(("openssh", parts.openssh()));
    let cose = parts.cose()?;
    out.push(("cose hex", crate::ids::hex(&cose)));
    out.push(("cose base64url", URL_SAFE_NO_PAD.encode(&cose)));
    Ok(out)
}

/// A key's numbers, as the formats spell them.
enum Parts {
    Ec { crv: &'static str, x: Vec<u8>, y: Vec<u8> },
    Ed25519([u8; 32]),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn uncompressed(key: &PublicKey) -> Result<Vec<u8>, String> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    match key {
        PublicKey::P256(b) => p256::PublicKey::from_sec1_bytes(b)
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec())
            .map_err(|e| e.to_string()),
        PublicKey::P384(b) => p384::PublicKey::from_sec1_bytes(b)
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec())
            .map_err(|e| e.to_string()),
        _ => Err("not an EC key".into()),
    }
}

impl Parts {
    fn of(key: &PublicKey) -> Result<Parts, String> {
        Ok(match key {
            PublicKey::P256(_) | PublicKey::P384(_) => {
                let point = uncompressed(key)?;
                let size = (point.len() - 1) / 2;
                let crv = if size == 32 { "P-256" } else { "P-384" };
                Parts::Ec { crv, x: point[1..1 + size].to_vec(), y: point[1 + size..].to_vec() }
            }
            PublicKey::Ed25519(raw) => Parts::Ed25519(*raw),
            PublicKey::Rsa(der) => {
                let rsa = pkcs1::RsaPublicKey::from_der(der).map_err(|e| e.to_string())?;
                Parts::Rsa { n: rsa.modulus.as_bytes().to_vec(), e: rsa.public_exponent.as_bytes().to_vec() }
            }
        })
    }

    fn jwk(&self) -> String {
        let b = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        match self {
            Parts::Ec { crv, x, y } => json!({"kty": "EC", "crv": crv, "x": b(x), "y": b(y)}),
            Parts::Ed25519(x) => json!({"kty": "OKP", "crv": "Ed25519", "x": b(x)}),
            Parts::Rsa { n, e } => json!({"kty": "RSA", "n": b(n), "e": b(e)}),
        }
        .to_string()
    }

    fn pem(&self) -> Result<String, String> {
        let oid_any = |oid: &ObjectIdentifier| Any::encode_from(oid).map_err(|e| e.to_string());
        let (oid, parameters, bits) = match self {
            Parts::Ec { crv, x, y } => {
                let mut point = vec![4u8];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let curve = if *crv == "P-256" { P256 } else { P384 };
                (EC_PUBLIC_KEY, Some(oid_any(&curve)?), point)
            }
            Parts::Ed25519(raw) => (ED25519, None, raw.to_vec()),
            Parts::Rsa { n, e } => {
                let key = pkcs1::RsaPublicKey {
                    modulus: pkcs1::UintRef::new(n).map_err(|e| e.to_string())?,
                    public_exponent: pkcs1::UintRef::new(e).map_err(|e| e.to_string())?,
                };
                (RSA, Some(Any::null()), spki::der::Encode::to_der(&key).map_err(|e| e.to_string())?)
            }
        };
        let info = spki::SubjectPublicKeyInfoOwned {
            algorithm: spki::AlgorithmIdentifierOwned { oid, parameters },
            subject_public_key: BitString::from_bytes(&bits).map_err(|e| e.to_string())?,
        };
        info.to_pem(spki::der::pem::LineEnding::LF).map_err(|e| e.to_string())
    }

    fn openssh(&self) -> String {
        let mut blob = Vec::new();
        let string = |blob: &mut Vec<u8>, bytes: &[u8]| {
            blob.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            blob.extend_from_slice(bytes);
        };
        let mpint = |blob: &mut Vec<u8>, bytes: &[u8]| {
            let mut digits: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
            if digits.first().is_some_and(|b| b & 0x80 != 0) {
                digits.insert(0, 0);
            }
            string(blob, &digits);
        };
        let kind = match self {
            Parts::Ec { crv, x, y } => {
                let (kind, curve) = if *crv == "P-256" {
                    ("ecdsa-sha2-nistp256", "nistp256")
                } else {
                    ("ecdsa-sha2-nistp384", "nistp384")
                };
                string(&mut blob, kind.as_bytes());
                string(&mut blob, curve.as_bytes());
                let mut point = vec![4u8];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                string(&mut blob, &point);
                kind
            }
            Parts::Ed25519(raw) => {
                string(&mut blob, b"ssh-ed25519");
                string(&mut blob, raw);
                "ssh-ed25519"
            }
            Parts::Rsa { n, e } => {
                string(&mut blob, b"ssh-rsa");
                mpint(&mut blob, e);
                mpint(&mut blob, n);
                "ssh-rsa"
            }
        };
        format!("{kind} {} exported", STANDARD.encode(blob))
    }

    fn cose(&self) -> Result<Vec<u8>, String> {
        let int = |i: i64| Cbor::Integer(i.into());
        let map = match self {
            Parts::Ec { crv, x, y } => {
                let (alg, curve) = if *crv == "P-256" { (-7, 1) } else { (-35, 2) };
                vec![
                    (int(1), int(2)),
                    (int(3), int(alg)),
                    (int(-1), int(curve)),
                    (int(-2), Cbor::Bytes(x.clone())),
                    (int(-3), Cbor::Bytes(y.clone())),
                ]
            }
            Parts::Ed25519(raw) => {
                vec![(int(1), int(1)), (int(3), int(-8)), (int(-1), int(6)), (int(-2), Cbor::Bytes(raw.to_vec()))]
            }
            Parts::Rsa { n, e } => vec![
                (int(1), int(3)),
                (int(3), int(-257)),
                (int(-1), Cbor::Bytes(n.clone())),
                (int(-2), Cbor::Bytes(e.clone())),
            ],
        };
        let mut out = Vec::new();
        ciborium::into_writer(&Cbor::Map(map), &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// The round-trip property: every format of `identity` parses back to it.
pub fn round_trips(identity: &Identity) -> Result<(), String> {
    for (format, text) in formats_of(identity)? {
        match Identity::parse(&text) {
            Ok(back) if back == *identity => {}
            Ok(back) => return Err(format!("{identity} written as {format} ({text}) reads back as {back}")),
            Err(e) => return Err(format!("{identity} written as {format} ({text}) does not read back: {e}")),
        }
    }
    Ok(())
}
