//! Method `piv`: a PIV smartcard slot (YubiKey 9a/9c) signs SHA-256 of the
//! challenge text; optionally the YubiKey proves the key was made on the card.
//!
//! ```text
//! PIV signer (card)                                keygate
//!   ── request {roomId} ───────────────────────▶  |
//!   ◀──────────────── challenge {payload} ──────  |
//!   card: GENERAL AUTHENTICATE(SHA-256(payload))  |
//!   ── auth {method:"piv", payload,               |
//!           certificate: slot cert,               |  slot key → did:key; whitelist
//!           signature: DER ECDSA | RSA PKCS#1,    |
//!           attestation?: {slot, device,          |  slot ←signed— device (f9) ←…— root
//!                          chain?}} ──────────▶   |  attested key == slot key;
//!                                                 |  serial, firmware, PIN/touch policy
//! ```
//!
//! Attestation roots are configured by the operator (Yubico publishes them: the PIV
//! Root CA Serial 263751 for older keys, "Yubico Attestation Root 1" with its
//! intermediates for firmware 5.7.4 and later). A chain is accepted when it reaches
//! a configured certificate through CA certificates only (see
//! [`verify_attestation`]); the device (f9) certificate's own CA flags are not
//! required, since YubiKeys made in 2017–2018 carry none.

use super::x509::{extension, read_certificate, read_certificates, signed_by, subject, subject_key, KeyKind};
use super::{Challenge, Claim, Evidence, Method, Verifier, VerifyError};
use crate::identity::Identity;
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use x509_cert::Certificate;

const OID_FIRMWARE: &str = "1.3.6.1.4.1.41482.3.3";
const OID_SERIAL: &str = "1.3.6.1.4.1.41482.3.7";
const OID_POLICY: &str = "1.3.6.1.4.1.41482.3.8";
const OID_FORM_FACTOR: &str = "1.3.6.1.4.1.41482.3.9";

/// When the card asks for the PIN before signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinPolicy {
    Never,
    Once,
    Always,
}

/// When the card asks for a touch before signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TouchPolicy {
    Never,
    /// A touch is remembered for 15 seconds.
    Cached,
    Always,
}

impl PinPolicy {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(PinPolicy::Never),
            2 | 4 => Some(PinPolicy::Once),
            3 | 5 => Some(PinPolicy::Always),
            _ => None,
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "never" => Some(PinPolicy::Never),
            "once" => Some(PinPolicy::Once),
            "always" => Some(PinPolicy::Always),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PinPolicy::Never => "never",
            PinPolicy::Once => "once",
            PinPolicy::Always => "always",
        }
    }
}

impl TouchPolicy {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(TouchPolicy::Never),
            2 => Some(TouchPolicy::Always),
            3 => Some(TouchPolicy::Cached),
            _ => None,
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "never" => Some(TouchPolicy::Never),
            "cached" => Some(TouchPolicy::Cached),
            "always" => Some(TouchPolicy::Always),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TouchPolicy::Never => "never",
            TouchPolicy::Cached => "cached",
            TouchPolicy::Always => "always",
        }
    }
}

/// What a verified YubiKey attestation says about the key and the device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Attestation {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub pin_policy: Option<PinPolicy>,
    pub touch_policy: Option<TouchPolicy>,
    pub form_factor: Option<u8>,
}

impl Attestation {
    pub fn form_factor_name(&self) -> &'static str {
        match self.form_factor.map(|f| f & 0x7f) {
            Some(1) => "USB-A Keychain",
            Some(2) => "USB-A Nano",
            Some(3) => "USB-C Keychain",
            Some(4) => "USB-C Nano",
            Some(5) => "USB-C Lightning",
            Some(6) => "USB-A Bio",
            Some(7) => "USB-C Bio",
            _ => "unknown form factor",
        }
    }
}

impl fmt::Display for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_unknown = |o: Option<&str>| o.unwrap_or("unknown").to_owned();
        write!(
            f,
            "attested YubiKey serial {}, firmware {}, PIN {}, touch {}, {}",
            self.serial.map_or("unknown".into(), |s| s.to_string()),
            or_unknown(self.firmware.as_deref()),
            or_unknown(self.pin_policy.map(PinPolicy::name)),
            or_unknown(self.touch_policy.map(TouchPolicy::name)),
            self.form_factor_name()
        )?;
        if self.form_factor.is_some_and(|f| f & 0x80 != 0) {
            write!(f, " (FIPS)")?;
        }
        Ok(())
    }
}

/// What a whitelist entry demands of a PIV key beyond the signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PivRequirement {
    pub attested: bool,
    pub min_pin: Option<PinPolicy>,
    pub min_touch: Option<TouchPolicy>,
}

impl PivRequirement {
    /// Parses `attested`, `pin:once|always`, `touch:cached|always`, comma-separated.
    /// Any PIN or touch demand implies attestation, the only source of those facts.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut r = PivRequirement::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once(':') {
                None if part == "attested" => r.attested = true,
                Some(("pin", v)) => r.min_pin = Some(PinPolicy::parse(v).ok_or(format!("unknown PIN policy '{v}'"))?),
                Some(("touch", v)) => {
                    r.min_touch = Some(TouchPolicy::parse(v).ok_or(format!("unknown touch policy '{v}'"))?)
                }
                _ => return Err(format!("unknown requirement '{part}' (attested, pin:…, touch:…)")),
            }
        }
        r.attested |= r.min_pin.is_some() || r.min_touch.is_some();
        Ok(r)
    }

    pub fn is_empty(&self) -> bool {
        *self == PivRequirement::default()
    }

    /// Why `attestation` does not satisfy this requirement, if it does not.
    pub fn unmet(&self, attestation: Option<&Attestation>) -> Option<String> {
        if !self.attested {
            return None;
        }
        let Some(a) = attestation else {
            return Some("the whitelist entry requires a YubiKey attestation".into());
        };
        if let Some(min) = self.min_pin {
            if a.pin_policy.is_none_or(|p| p < min) {
                return Some(format!("the whitelist entry requires PIN policy {} or stricter", min.name()));
            }
        }
        if let Some(min) = self.min_touch {
            if a.touch_policy.is_none_or(|t| t < min) {
                return Some(format!("the whitelist entry requires touch policy {} or stricter", min.name()));
            }
        }
        None
    }
}

impl fmt::Display for PivRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.attested {
            parts.push("attested".to_owned());
        }
        if let Some(p) = self.min_pin {
            parts.push(format!("pin:{}", p.name()));
        }
        if let Some(t) = self.min_touch {
            parts.push(format!("touch:{}", t.name()));
        }
        f.write_str(&parts.join(","))
    }
}

/// Reads the facts a YubiKey writes into a slot attestation certificate.
pub fn attestation_facts(slot_attestation: &Certificate) -> Attestation {
    let firmware = extension(slot_attestation, OID_FIRMWARE)
        .filter(|v| v.len() == 3)
        .map(|v| format!("{}.{}.{}", v[0], v[1], v[2]));
    let serial = extension(slot_attestation, OID_SERIAL).and_then(|v| match v {
        [0x02, len, rest @ ..] if usize::from(*len) == rest.len() && rest.len() <= 5 => {
            Some(rest.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)) as u32)
        }
        _ => None,
    });
    let policy = extension(slot_attestation, OID_POLICY).filter(|v| v.len() >= 2);
    Attestation {
        serial,
        firmware,
        pin_policy: policy.and_then(|p| PinPolicy::from_byte(p[0])),
        touch_policy: policy.and_then(|p| TouchPolicy::from_byte(p[1])),
        form_factor: extension(slot_attestation, OID_FORM_FACTOR).and_then(|v| v.first().copied()),
    }
}

/// Whether a certificate is a slot attestation: only those carry the PIN and touch
/// policy. Device (f9) certificates carry the firmware version too, so the policy
/// is what tells them apart.
fn is_slot_attestation(cert: &Certificate) -> bool {
    extension(cert, OID_POLICY).is_some()
}

/// The certificate's basicConstraints: (CA, path length limit); (false, None) when
/// absent or unreadable.
fn basic_constraints(cert: &Certificate) -> (bool, Option<u8>) {
    use spki::der::Decode;
    use x509_cert::ext::pkix::BasicConstraints;
    extension(cert, "2.5.29.19")
        .and_then(|v| BasicConstraints::from_der(v).ok())
        .map_or((false, None), |bc| (bc.ca, bc.path_len_constraint))
}

/// Most certificates above the device certificate in a chain (Yubico's longest,
/// for firmware 5.7.4+, has three: PIV Attestation B, Intermediate B, Root 1).
const MAX_CHAIN: usize = 4;

/// Verifies a YubiKey attestation the way Yubico defines the chain:
///
/// ```text
///   configured root ─▶ [configured or supplied CA intermediates] ─▶ device (f9) ─▶ slot
/// ```
///
/// `slot` (the slot's attestation certificate) must be signed by `device` (the f9
/// certificate); `device` must be issued by a configured certificate or by a CA
/// certificate that leads to one. Every certificate that issues another above the
/// device must say CA=true with a path length that allows the CA certificates
/// below it, and no slot attestation (a certificate with a PIN/touch policy) may
/// issue anything: otherwise anyone with a YubiKey could sign made-up "slot
/// attestations" with their own attested slot key. The f9 certificate itself need
/// not say CA (those of 2017–2018 carry no basicConstraints); it is known by its
/// place: issued by the trusted chain, and not a slot attestation.
pub fn verify_attestation(
    slot: &Certificate,
    device: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
) -> Result<Attestation, VerifyError> {
    let refuse = |why: &str| Err(VerifyError::Policy(why.to_owned()));
    if anchors.is_empty() {
        return refuse("no PIV attestation roots are configured on this server");
    }
    if is_slot_attestation(device) {
        return refuse("the device certificate is a slot attestation: it cannot issue attestations");
    }
    let issued_by = |cert: &Certificate, by: &Certificate| {
        cert.tbs_certificate.issuer == by.tbs_certificate.subject && signed_by(cert, by).is_ok()
    };
    if !issued_by(slot, device) {
        return refuse("the slot attestation is not signed by the device certificate");
    }
    if let Some(bad) = intermediates.iter().find(|c| !basic_constraints(c).0 || is_slot_attestation(c)) {
        return Err(VerifyError::Policy(format!(
            "a supplied chain certificate is not a CA certificate ({})",
            subject(bad)
        )));
    }
    // May `issuer` issue a certificate with `cas_below` CA certificates under it?
    let may_issue = |issuer: &Certificate, cas_below: usize| {
        let (ca, path_len) = basic_constraints(issuer);
        ca && !is_slot_attestation(issuer) && path_len.is_none_or(|n| cas_below <= usize::from(n))
    };
    let mut current = device;
    let mut cas_below = usize::from(basic_constraints(device).0);
    for _ in 0..MAX_CHAIN {
        if anchors.iter().any(|a| issued_by(current, a) && may_issue(a, cas_below)) {
            return Ok(attestation_facts(slot));
        }
        // The operator's own intermediates come first, then the client's.
        let next = anchors.iter().chain(intermediates).find(|i| issued_by(current, i) && may_issue(i, cas_below));
        match next {
            Some(next) => {
                current = next;
                cas_below += 1;
            }
            None => break,
        }
    }
    Err(VerifyError::Policy(format!(
        "the attestation does not chain to a configured root (stopped at {})",
        subject(current)
    )))
}

/// Verifies `method = "piv"` proofs.
pub struct PivVerifier {
    anchors: Arc<Vec<Certificate>>,
}

impl PivVerifier {
    /// With the attestation roots (and any intermediates) the operator trusts.
    pub fn new(anchors: Vec<Certificate>) -> Self {
        PivVerifier { anchors: Arc::new(anchors) }
    }

    /// Reads trust anchors from PEM bundles (or bare base64 DER files).
    pub fn load_anchors(paths: &[std::path::PathBuf]) -> Result<Vec<Certificate>, String> {
        let mut out = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            out.extend(read_certificates(&text).map_err(|e| format!("{}: {e}", p.display()))?);
        }
        Ok(out)
    }
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(|f| f.as_str())
}

impl Verifier for PivVerifier {
    fn method(&self) -> Method {
        Method::Piv
    }

    /// What a peer's browser needs to check the proof itself (static/identity.js).
    fn forwarded_fields(&self) -> &'static [&'static str] {
        &["signature"]
    }

    fn claim(&self, auth: &serde_json::Value, challenge: &Challenge<'_>) -> Result<Claim, VerifyError> {
        let attestation = match auth.get("attestation") {
            None | Some(serde_json::Value::Null) => None,
            Some(a) => {
                let slot = read_certificate(field(a, "slot").ok_or_else(|| malformed("attestation.slot missing"))?)?;
                let device =
                    read_certificate(field(a, "device").ok_or_else(|| malformed("attestation.device missing"))?)?;
                let chain = match a.get("chain").and_then(|c| c.as_array()) {
                    Some(items) => {
                        items.iter().filter_map(|c| c.as_str()).map(read_certificate).collect::<Result<Vec<_>, _>>()?
                    }
                    None => Vec::new(),
                };
                Some((slot, device, chain))
            }
        };
        let certificate = match field(auth, "certificate") {
            Some(text) => read_certificate(text)?,
            None => match &attestation {
                Some((slot, _, _)) => slot.clone(),
                None => return Err(malformed("missing certificate (the slot certificate, PEM or base64 DER)")),
            },
        };
        let (key, key_bytes) = subject_key(&certificate)?;
        let kind = KeyKind::of(&key)?;
        let expected = match kind {
            KeyKind::P256 => "ECDSA-P256-SHA256",
            KeyKind::P384 => "ECDSA-P384-SHA256",
            KeyKind::Rsa => "RSA-PKCS1-SHA256",
        };
        if let Some(named) = field(auth, "algorithm") {
            if !named.eq_ignore_ascii_case(expected) {
                return Err(malformed(format!("algorithm {named} does not match the certificate's key ({expected})")));
            }
        }
        let signature =
            super::x509::decode_b64(field(auth, "signature").ok_or_else(|| malformed("missing signature"))?)?;
        let anchors = self.anchors.clone();
        let identity = Identity::from_key(key.clone());
        Ok(Claim::new(identity, challenge.payload, move |signed| {
            let alg: &'static dyn sig::VerificationAlgorithm = match kind {
                KeyKind::P256 => &sig::ECDSA_P256_SHA256_ASN1,
                KeyKind::P384 => &sig::ECDSA_P384_SHA256_ASN1,
                KeyKind::Rsa => &sig::RSA_PKCS1_2048_8192_SHA256,
            };
            UnparsedPublicKey::new(alg, &key_bytes)
                .verify(signed, &signature)
                .map_err(|_| VerifyError::BadSignature)?;
            let attested = match attestation {
                None => None,
                Some((slot, device, chain)) => {
                    let facts = verify_attestation(&slot, &device, &chain, &anchors)?;
                    if subject_key(&slot)?.0 != key {
                        return Err(VerifyError::Policy("the attested key is not the slot certificate's key".into()));
                    }
                    Some(facts)
                }
            };
            Ok(Evidence { attestation: attested, ..Evidence::default() })
        }))
    }
}

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(what.into())
}
