//! Valid proofs of every method over one fixed challenge, and the property that
//! matters most: a verifier never says yes to a proof someone changed.
//!
//! The fixture is made once per process with keygate's own signers (the ones the
//! load tool and the CLI use) and a YubiKey-shaped PKI made with rcgen: a root, a
//! device (f9) certificate and a slot attestation with PIN and touch policies.

use super::Outcome;
use crate::client::p256_key::P256Key;
use crate::client::signer::ProofSigner;
use crate::client::soft_webauthn::SoftAuthenticator;
use crate::identity::Identity;
use crate::protocol::{read_frame, ClientMessage};
use crate::verify::siwe::{ForChallenge, SiweMessage};
use crate::verify::webauthn::{Ceremony, Passkeys};
use crate::verify::{Challenge, Evidence, Method, Verifiers, VerifyError, SSH_NAMESPACE};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::OnceLock;
use x509_cert::Certificate;

pub const ORIGIN: &str = "http://localhost:8080";

/// One valid `auth` frame and what a mutation of it may and may not change.
pub struct Proof {
    pub name: &'static str,
    pub frame: Value,
    pub identity: Identity,
    /// JSON pointers of the fields the proof is bound to: a change to what they
    /// decode to must be refused. Other fields (the payload echo, a credential's
    /// `id` beside its `rawId`, a user handle) may change, but never the identity.
    pub bound: &'static [&'static str],
}

pub struct Fixture {
    pub verifiers: Verifiers,
    pub payload: String,
    pub siwe: String,
    pub ceremony: Ceremony,
    pub proofs: Vec<Proof>,
    /// The PIV trust anchor, and the device certificate and slot attestation it vouches for.
    pub anchors: Vec<Certificate>,
    pub device: Certificate,
    pub slot_attestation: Certificate,
    /// The passkey's valid `credential` and the WebAuthn expectation it meets.
    pub webauthn_credential: Value,
    pub cose_key: Vec<u8>,
    /// The registration's attestation object.
    pub attestation_object: Vec<u8>,
}

static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();

pub fn fixture() -> Result<&'static Fixture, String> {
    FIXTURE.get_or_init(build).as_ref().map_err(Clone::clone)
}

fn e(what: &str) -> impl Fn(String) -> String + '_ {
    move |err| format!("fixture: {what}: {err}")
}

fn s<T: std::fmt::Display>(x: T) -> String {
    x.to_string()
}

fn build() -> Result<Fixture, String> {
    let payload_value = json!({"v": 1, "room": "fuzz-room", "ts": 1_700_000_000_000u64, "nonce": "bm9uY2Vub25jZW5vbmNl",
        "origin": ORIGIN, "fingerprint": "sha-256 AA:BB"});
    let payload = payload_value.to_string();
    let mut proofs = Vec::new();

    // A browser's WebCrypto key.
    let key = P256Key::generate().map_err(s).map_err(e("webcrypto key"))?;
    let frame = crate::client::ws::Client::webcrypto_auth(&json!({"payload": payload_value}), &key)
        .map_err(s)
        .map_err(e("webcrypto"))?;
    let identity = parsed(&key.public_jwk().to_string())?;
    proofs.push(Proof { name: "webcrypto", frame, identity, bound: &["/signature", "/publicKey/x", "/publicKey/y"] });

    // OpenSSH keys: Ed25519 and ECDSA P-256, signed with ssh-key as ssh-keygen -Y sign does.
    let ed = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7u8; 32]));
    let secret = p256::SecretKey::from_slice(&[9u8; 32]).map_err(s).map_err(e("p256 secret"))?;
    let ecdsa = ssh_key::PrivateKey::from(ssh_key::private::EcdsaKeypair::NistP256 {
        public: p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false),
        private: secret.into(),
    });
    for (name, key, alg) in
        [("ssh ed25519", ed, ssh_key::HashAlg::Sha512), ("ssh ecdsa-p256", ecdsa, ssh_key::HashAlg::Sha256)]
    {
        let signature = key
            .sign(SSH_NAMESPACE, alg, payload.as_bytes())
            .and_then(|sig| sig.to_pem(ssh_key::LineEnding::LF))
            .map_err(s)
            .map_err(e(name))?;
        let frame = json!({"type": "auth", "method": "ssh", "payload": payload_value, "signature": signature});
        let identity = parsed(&key.public_key().to_openssh().map_err(s).map_err(e(name))?)?;
        proofs.push(Proof { name, frame, identity, bound: &["/signature"] });
    }

    // A wallet signing a Sign-In with Ethereum message.
    let wallet = ProofSigner::generate(Method::Eth).map_err(s).map_err(e("wallet"))?;
    let ProofSigner::Eth(_, address) = &wallet else { return Err("fixture: not a wallet".into()) };
    let siwe = SiweMessage::for_challenge(
        *address,
        ForChallenge {
            origin: ORIGIN,
            statement: "Join fuzz-room".into(),
            request_id: "fuzz-room",
            nonce: "bm9uY2Vub25jZW5vbmNl",
            issued_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            lifetime: std::time::Duration::from_secs(120),
            vouched: &crate::challenge::Vouched { fingerprint: Some("sha-256 AA:BB".into()), media_key: None },
            chain_id: 1,
        },
    )
    .to_string();
    let frame = wallet.auth(&json!({"payload": payload_value, "siwe": siwe})).map_err(s).map_err(e("eth"))?;
    let identity = Identity::from_eth(*address);
    proofs.push(Proof { name: "eth", frame, identity, bound: &["/message", "/signature"] });

    // A PIV slot: its self-signed certificate, and an attestation chaining to the root.
    let pki = Pki::new().map_err(e("piv pki"))?;
    let signature = pki.sign(payload.as_bytes()).map_err(e("piv signature"))?;
    let frame = json!({"type": "auth", "method": "piv", "payload": payload_value,
        "certificate": pki.slot_pem, "signature": signature});
    let identity = parsed(&pki.slot_pem)?;
    proofs.push(Proof { name: "piv", frame: frame.clone(), identity: identity.clone(), bound: &["/signature"] });
    let mut attested = frame;
    attested["attestation"] = json!({"slot": pki.attestation_pem, "device": pki.device_pem});
    let bound = &["/signature", "/attestation/slot", "/attestation/device"];
    proofs.push(Proof { name: "piv attested", frame: attested, identity, bound });

    // A passkey, registered with the relying party, answering the challenge's ceremony.
    let passkeys = Passkeys::new("localhost", &[ORIGIN.to_owned()]).map_err(s).map_err(e("relying party"))?;
    let authenticator = SoftAuthenticator::new("localhost", ORIGIN).map_err(s).map_err(e("authenticator"))?;
    let (registration, options) = passkeys.begin_registration("fuzz").map_err(s).map_err(e("registration"))?;
    let created = authenticator.register(&options).map_err(s).map_err(e("register"))?;
    let (cose_key, attestation_object) =
        super::parsers::attested_cose_key(&created).map_err(e("attestation object"))?;
    let created = serde_json::from_value(created).map_err(s).map_err(e("registration credential"))?;
    let (credential, identity) =
        passkeys.complete_registration(&registration, &created).map_err(s).map_err(e("finish registration"))?;
    let ceremony =
        passkeys.challenge(&payload, vec![(credential, identity.clone())], false).map_err(s).map_err(e("ceremony"))?;
    let asserted = authenticator.assert(&ceremony.options).map_err(s).map_err(e("assert"))?;
    let frame = json!({"type": "auth", "method": "webauthn", "payload": payload_value, "credential": asserted});
    proofs.push(Proof {
        name: "webauthn",
        frame,
        identity,
        bound: &[
            "/credential/rawId",
            "/credential/response/authenticatorData",
            "/credential/response/clientDataJSON",
            "/credential/response/signature",
        ],
    });

    let anchors = vec![pki.root.clone()];
    let fixture = Fixture {
        verifiers: Verifiers::new(anchors.clone(), Some(passkeys.core())),
        payload,
        siwe,
        ceremony,
        proofs,
        anchors,
        device: pki.device,
        slot_attestation: pki.attestation,
        webauthn_credential: asserted,
        cose_key,
        attestation_object,
    };
    // Every fixture proof must pass, or the properties below would prove nothing.
    for p in &fixture.proofs {
        match verdict(&fixture, &p.frame) {
            Ok(id) if id == p.identity => {}
            Ok(id) => return Err(format!("fixture: {} verifies as {id}, not {}", p.name, p.identity)),
            Err(err) => return Err(format!("fixture: {} does not verify: {err}", p.name)),
        }
    }
    Ok(fixture)
}

fn parsed(text: &str) -> Result<Identity, String> {
    Identity::parse(text).map_err(|err| format!("fixture: {text}: {err}"))
}

/// Verifies an `auth` frame as the server does: read as a frame, the proof fields
/// given to the method's verifier with this fixture's challenge, then checked.
/// Returns the identity that proved itself.
pub fn verdict(f: &Fixture, frame: &Value) -> Result<Identity, VerifyError> {
    let text = frame.to_string();
    verdict_text(f, &text).map(|(identity, _)| identity)
}

/// [`verdict`] of a frame's text, with what the check learned.
pub fn verdict_text(f: &Fixture, text: &str) -> Result<(Identity, Evidence), VerifyError> {
    let Ok(ClientMessage::Auth { method, proof, .. }) = read_frame(text) else {
        return Err(VerifyError::Malformed("not an auth frame".into()));
    };
    let method: Method =
        serde_json::from_value(Value::String(method)).map_err(|_| VerifyError::Malformed("unknown method".into()))?;
    let verifier = f.verifiers.get(method).ok_or(VerifyError::Unsupported("method"))?;
    let challenge = Challenge { payload: f.payload.as_bytes(), siwe: Some(&f.siwe), webauthn: Some(&f.ceremony) };
    let claim = verifier.claim(&Value::Object(proof), &challenge)?;
    let identity = claim.identity.clone();
    let evidence = claim.check()?;
    Ok((identity, evidence))
}

/// A YubiKey-shaped PKI: root → device (f9) → slot attestation, and the slot's own
/// self-signed certificate, all for one slot key.
struct Pki {
    root: Certificate,
    device: Certificate,
    attestation: Certificate,
    device_pem: String,
    attestation_pem: String,
    slot_pem: String,
    slot_key: aws_lc_rs::signature::EcdsaKeyPair,
}

impl Pki {
    fn new() -> Result<Pki, String> {
        use rcgen::{BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair};
        let key = || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(s);
        let named = |cn: &str| -> Result<CertificateParams, String> {
            let mut p = CertificateParams::new(Vec::<String>::new()).map_err(s)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            Ok(p)
        };
        let (root_key, device_key, slot_key) = (key()?, key()?, key()?);
        let mut root_params = named("Fuzz Attestation Root")?;
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = root_params.self_signed(&root_key).map_err(s)?;
        let root_issuer = Issuer::new(root_params, &root_key);
        let device_params = named("Fuzz PIV Attestation")?;
        let device = device_params.signed_by(&device_key, &root_issuer).map_err(s)?;
        let device_issuer = Issuer::new(device_params, &device_key);
        let mut att_params = named("YubiKey PIV Attestation 9a")?;
        let yk = |last: u64, content: Vec<u8>| {
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 41482, 3, last], content)
        };
        att_params.custom_extensions = vec![
            yk(3, vec![5, 4, 3]),
            yk(7, vec![0x02, 0x04, 0x00, 0x9c, 0x4e, 0x68]),
            yk(8, vec![2, 2]),
            yk(9, vec![4]),
        ];
        let attestation = att_params.signed_by(&slot_key, &device_issuer).map_err(s)?;
        let slot = named("fuzz slot")?.self_signed(&slot_key).map_err(s)?;
        let cert = |der: &[u8]| -> Result<Certificate, String> {
            <Certificate as spki::der::Decode>::from_der(der).map_err(s)
        };
        let slot_pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &slot_key.serialize_der(),
        )
        .map_err(s)?;
        Ok(Pki {
            root: cert(root.der())?,
            device: cert(device.der())?,
            attestation: cert(attestation.der())?,
            device_pem: device.pem(),
            attestation_pem: attestation.pem(),
            slot_pem: slot.pem(),
            slot_key: slot_pair,
        })
    }

    /// What a PIV card returns: ECDSA over SHA-256 of the text, base64 DER.
    fn sign(&self, message: &[u8]) -> Result<String, String> {
        let sig = self.slot_key.sign(&aws_lc_rs::rand::SystemRandom::new(), message).map_err(s)?;
        Ok(STANDARD.encode(sig.as_ref()))
    }
}

/// How a field's text carries its bytes, so a mutation can be made to (and judged
/// by) what it decodes to.
#[derive(Clone, Copy, Debug)]
enum Codec {
    /// `-----BEGIN …-----` armour around base64 (PEM, SSH signatures).
    Armoured,
    /// `0x` and hex digits.
    Hex,
    Base64Url,
    Base64,
    Text,
}

impl Codec {
    fn of(text: &str) -> Codec {
        if text.starts_with("-----BEGIN ") {
            Codec::Armoured
        } else if text.starts_with("0x") && text[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
            Codec::Hex
        } else if URL_SAFE_NO_PAD.decode(text).is_ok() {
            Codec::Base64Url
        } else if STANDARD.decode(text).is_ok() {
            Codec::Base64
        } else {
            Codec::Text
        }
    }

    /// Decodes as leniently as the verifiers read these fields (padding optional,
    /// either base64 alphabet, `0x` optional, any case), so that only a change to
    /// the bytes counts as a change.
    fn decode(self, text: &str) -> Option<Vec<u8>> {
        let base64 = |t: &str| {
            let t = t.trim_end_matches('=');
            STANDARD_NO_PAD.decode(t).or_else(|_| URL_SAFE_NO_PAD.decode(t)).ok()
        };
        match self {
            // What lies between the armour's markers: certificates may come with
            // text around them (as openssl prints them), and carry the same bytes.
            Codec::Armoured => {
                let after = text.split_once("-----BEGIN ")?.1.split_once("-----")?.1;
                let body = after.split("-----END").next().unwrap_or(after);
                base64(&body.split_whitespace().collect::<String>())
            }
            Codec::Hex => {
                let hex = text.strip_prefix("0x").unwrap_or(text);
                (0..hex.len() / 2).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect()
            }
            Codec::Base64Url | Codec::Base64 => base64(text),
            Codec::Text => Some(text.as_bytes().to_vec()),
        }
    }

    fn encode(self, original: &str, bytes: &[u8]) -> String {
        match self {
            Codec::Armoured => {
                let first = original.lines().next().unwrap_or_default();
                let last = original.lines().rev().find(|l| l.starts_with("-----")).unwrap_or_default();
                let body = STANDARD.encode(bytes);
                let lines: Vec<&str> =
                    body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
                format!("{first}\n{}\n{last}\n", lines.join("\n"))
            }
            Codec::Hex => format!("0x{}", crate::ids::hex(bytes)),
            Codec::Base64Url => URL_SAFE_NO_PAD.encode(bytes),
            Codec::Base64 => STANDARD.encode(bytes),
            Codec::Text => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// Every string in a JSON value, by JSON pointer.
fn strings(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(at),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| strings(v, format!("{at}/{i}"), out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| strings(v, format!("{at}/{k}"), out)),
        _ => {}
    }
}

/// What a field is bound to, as the verifier reads it: an Ethereum signature's
/// recovery byte may be written 0/1 or 27/28.
fn normal(pointer: &str, method: &str, mut bytes: Vec<u8>) -> Vec<u8> {
    if method == "eth" && pointer == "/signature" && bytes.len() == 65 && bytes[64] >= 27 {
        bytes[64] -= 27;
    }
    bytes
}

/// The mutation target. Input: which proof, which field, how, then the edits.
///
/// - mode 0: edit the bytes a field decodes to (a signature, a key, a certificate,
///   authenticator data), re-encoded as it was: if they differ, no verifier may accept.
/// - mode 1: edit a field's text.
/// - mode 2: edit the frame's JSON text as a whole.
///
/// In every mode an accepted proof must be the fixture's identity, and must decode
/// to the same bytes in every field the proof is bound to (an attestation's, when the
/// check says it vouched for the key).
pub fn mutated(data: &[u8]) -> Outcome {
    let f = fixture()?;
    let [which, field, mode, edits @ ..] = data else { return Ok(()) };
    let p = &f.proofs[usize::from(*which) % f.proofs.len()];
    let method = p.frame["method"].as_str().unwrap_or_default();
    let mut fields = Vec::new();
    strings(&p.frame, String::new(), &mut fields);
    fields.retain(|f| !f.starts_with("/payload") && f != "/type" && f != "/method");
    let pointer = &fields[usize::from(*field) % fields.len()];
    let original_text = p.frame.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let codec = Codec::of(original_text);
    let mut frame = p.frame.clone();
    let text = match mode % 3 {
        0 => {
            let mut bytes = codec.decode(original_text).unwrap_or_default();
            apply(&mut bytes, edits);
            if let Some(slot) = frame.pointer_mut(pointer) {
                *slot = Value::String(codec.encode(original_text, &bytes));
            }
            frame.to_string()
        }
        1 => {
            let mut bytes = original_text.as_bytes().to_vec();
            apply(&mut bytes, edits);
            if let Some(slot) = frame.pointer_mut(pointer) {
                *slot = Value::String(String::from_utf8_lossy(&bytes).into_owned());
            }
            frame.to_string()
        }
        _ => {
            let mut bytes = p.frame.to_string().into_bytes();
            apply(&mut bytes, edits);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let Ok((identity, evidence)) = verdict_text(f, &text) else { return Ok(()) };
    let accepted: Value = serde_json::from_str(&text).map_err(|e| format!("accepted a frame that is not JSON: {e}"))?;
    if identity != p.identity {
        return Err(format!("{}: a changed proof verified as another identity, {identity}: {text}", p.name));
    }
    for bound in p.bound {
        // A proof stripped of its attestation is a plain proof: the room's PIV
        // requirement, not the verifier, refuses it where one is asked for.
        if bound.starts_with("/attestation/") && evidence.attestation.is_none() {
            continue;
        }
        let before = p.frame.pointer(bound).and_then(Value::as_str).unwrap_or_default();
        let codec = Codec::of(before);
        let after = accepted.pointer(bound).and_then(Value::as_str).unwrap_or_default();
        let (was, is) = (codec.decode(before), codec.decode(after));
        if was.map(|b| normal(bound, method, b)) != is.map(|b| normal(bound, method, b)) {
            return Err(format!("{}: a proof whose {bound} changed was accepted: {text}", p.name));
        }
    }
    Ok(())
}

/// Edits: pairs of (position, byte) XORed in, wrapping around the buffer; a pair
/// whose byte is 0 truncates there, one at 0xff with position 0xffff appends.
pub(super) fn apply(bytes: &mut Vec<u8>, edits: &[u8]) {
    for edit in edits.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([edit[0], edit[1]]));
        match (at, edit[2]) {
            (0xffff, b) => bytes.push(b),
            (_, 0) if !bytes.is_empty() => bytes.truncate(at % bytes.len()),
            (_, b) if !bytes.is_empty() => {
                let len = bytes.len();
                bytes[at % len] ^= b;
            }
            _ => {}
        }
    }
}
