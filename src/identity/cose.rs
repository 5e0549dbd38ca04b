//! COSE keys (RFC 9053), as WebAuthn authenticators report credential keys.

use super::{rsa_from_parts, ParseError, PublicKey};
use ciborium::Value as Cbor;

fn invalid(what: impl Into<String>) -> ParseError {
    ParseError::InvalidKey(what.into())
}

fn map_get(map: &[(Cbor, Cbor)], label: i64) -> Option<&Cbor> {
    map.iter().find(|(k, _)| k.as_integer().is_some_and(|i| i128::from(i) == i128::from(label))).map(|(_, v)| v)
}

fn int(v: Option<&Cbor>) -> Option<i64> {
    v.and_then(|v| v.as_integer()).and_then(|i| i64::try_from(i128::from(i)).ok())
}

fn bytes(v: Option<&Cbor>) -> Option<&[u8]> {
    v.and_then(|v| v.as_bytes()).map(Vec::as_slice)
}

/// Parses a COSE_Key (RFC 9053) from CBOR bytes.
pub fn from_cbor(cbor: &[u8]) -> Result<(PublicKey, i64, Vec<u8>), ParseError> {
    let value: Cbor = ciborium::from_reader(cbor).map_err(|e| invalid(format!("COSE key is not CBOR: {e}")))?;
    from_value(&value)
}

/// Parses a COSE_Key: EC2 P-256/P-384, OKP Ed25519, RSA. Returns the key, its COSE
/// algorithm, and the bytes a verifier takes (SEC1 point, raw key, PKCS#1 DER).
pub fn from_value(value: &Cbor) -> Result<(PublicKey, i64, Vec<u8>), ParseError> {
    let map = value.as_map().ok_or_else(|| invalid("COSE key is not a map"))?;
    let kty = int(map_get(map, 1)).ok_or_else(|| invalid("COSE key without kty"))?;
    let alg = int(map_get(map, 3)).ok_or_else(|| invalid("COSE key without alg"))?;
    let unusable = |what: String| Err(ParseError::Unsupported(what));
    match (kty, alg) {
        (2, -7 | -35) => {
            let crv = int(map_get(map, -1));
            let (x, y) = (bytes(map_get(map, -2)), bytes(map_get(map, -3)));
            let (Some(x), Some(y)) = (x, y) else { return Err(invalid("EC2 key without x and y")) };
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            let key = match (crv, alg) {
                (Some(1), -7) => PublicKey::p256_from_sec1(&point),
                (Some(2), -35) => PublicKey::p384_from_sec1(&point),
                _ => return unusable(format!("EC2 curve {crv:?} with alg {alg}")),
            }?;
            Ok((key, alg, point))
        }
        (1, -8) => {
            if int(map_get(map, -1)) != Some(6) {
                return unusable("OKP keys other than Ed25519".into());
            }
            let x = bytes(map_get(map, -2)).ok_or_else(|| invalid("OKP key without x"))?;
            let raw: [u8; 32] = x.try_into().map_err(|_| invalid("Ed25519 key must be 32 bytes"))?;
            Ok((PublicKey::Ed25519(raw), alg, x.to_vec()))
        }
        (3, -257) => {
            let (n, e) = (bytes(map_get(map, -1)), bytes(map_get(map, -2)));
            let (Some(n), Some(e)) = (n, e) else { return Err(invalid("RSA key without n and e")) };
            let key = rsa_from_parts(n, e)?;
            let der = key.key_bytes().to_vec();
            Ok((key, alg, der))
        }
        _ => unusable(format!("COSE key type {kty} with algorithm {alg}")),
    }
}
