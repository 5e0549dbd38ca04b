//! One target per parser of hostile bytes, each calling the function the server
//! calls and checking what must hold of whatever it accepts.

use super::export::round_trips;
use super::proofs::{fixture, verdict, ORIGIN};
use super::Outcome;
use crate::config::Settings;
use crate::identity::{cose, parse_key_list, Identity, KeyLine, KeyListReader, ParseError};
use crate::protocol::read_frame;
use crate::verify::siwe::SiweMessage;
use crate::verify::sshsig::SshSig;
use crate::verify::webauthn::assertion::{credential_from_attestation, verify_assertion, CoseKey, Expectation};
use crate::verify::{attestation_facts, read_certificates, subject_key, verify_attestation, SSH_NAMESPACE};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// Text as the server receives it: axum hands text frames and form fields over as
/// UTF-8 only, so other bytes never reach these parsers.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `/ws` frames: whatever [`read_frame`] accepts, written back out as a client
/// would write it, reads back as the same message; whatever it refuses is named.
pub fn frame(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else { return Ok(()) };
    match read_frame(text) {
        Ok(message) => {
            let written =
                serde_json::to_string(&message).map_err(|e| format!("{message:?} does not serialize: {e}"))?;
            match read_frame(&written) {
                Ok(back) if back == message => Ok(()),
                Ok(back) => Err(format!("{text:?} reads as {message:?}, written as {written:?} reads as {back:?}")),
                Err((_, why)) => Err(format!("{text:?} reads as {message:?}, but written as {written:?}: {why}")),
            }
        }
        Err((_, why)) if why.is_empty() => Err(format!("{text:?} refused without a reason")),
        Err(_) => Ok(()),
    }
}

/// Pasted key lists (the room page, the socket's whitelist frame, `keygate room
/// allow`): every key read round-trips through each of its formats, and every line
/// number is within the text.
pub fn key_list(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else { return Ok(()) };
    let lines = text.split('\n').count();
    for (line, result) in parse_key_list(text) {
        if line == 0 || line > lines {
            return Err(format!("line {line} named in a text of {lines} lines"));
        }
        if let Ok(key) = result {
            round_trips(&key.identity)?;
        }
    }
    Ok(())
}

/// A line a key list reader read: its number, and the key (DID, format,
/// namespaces; comment) or the error, comparable.
type Read = (usize, Result<(String, Option<String>), String>);

fn found(keys: &[(usize, Result<KeyLine, ParseError>)]) -> Vec<Read> {
    keys.iter()
        .map(|(line, r)| {
            let r = match r {
                Ok(k) => Ok((format!("{} {} {:?}", k.identity, k.format, k.namespaces), k.comment.clone())),
                Err(e) => Err(e.to_string()),
            };
            (*line, r)
        })
        .collect()
}

/// Uploads and CLI files, read as they stream: the pieces a list arrives in never
/// change what is read. The first byte seeds where the pieces are cut.
pub fn key_stream(data: &[u8]) -> Outcome {
    let [seed, body @ ..] = data else { return Ok(()) };
    let whole = {
        let mut reader = KeyListReader::default();
        let mut out = Vec::new();
        reader.feed(body, &mut out);
        reader.finish(&mut out);
        out
    };
    let mut reader = KeyListReader::default();
    let mut pieces = Vec::new();
    let (mut rest, mut state) = (body, u32::from(*seed) | 1);
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let cut = (state >> 16) as usize % 97 + 1;
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        reader.feed(piece, &mut pieces);
        rest = tail;
    }
    reader.finish(&mut pieces);
    if found(&whole) != found(&pieces) {
        return Err(format!("read whole: {:?}\nread in pieces: {:?}", found(&whole), found(&pieces)));
    }
    for (_, key) in &whole {
        if let Ok(key) = key {
            round_trips(&key.identity)?;
        }
    }
    Ok(())
}

/// One key in any format (`Identity::parse`: the CLI, invites, room creators): its
/// DID reads back as the same identity and is already in normal form.
pub fn did(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else { return Ok(()) };
    let Ok(identity) = Identity::parse(text) else { return Ok(()) };
    let again = Identity::parse(identity.did()).map_err(|e| format!("{text:?} gave {identity}, which reads: {e}"))?;
    if again.did() != identity.did() {
        return Err(format!("{text:?} gave {identity}, which reads back as {again}"));
    }
    round_trips(&identity)
}

/// COSE keys and WebAuthn attestation objects (passkey registration): the two COSE
/// readers agree, and every key read round-trips.
pub fn cose(data: &[u8]) -> Outcome {
    let plain = cose::from_cbor(data);
    let checked = CoseKey::from_cbor(data);
    match (&plain, &checked) {
        (Ok((key, alg, _)), Ok(c)) if *key == c.key && *alg == c.alg => round_trips(&Identity::from_key(key.clone()))?,
        (Err(_), Err(_)) => {}
        _ => return Err(format!("the COSE readers disagree: {plain:?} against {checked:?}")),
    }
    if let Ok(credential) = credential_from_attestation(data) {
        round_trips(&Identity::from_key(credential.key.key))?;
    }
    Ok(())
}

/// SSH signatures (`auth` with method ssh, `keygate sign`): whatever decodes names
/// a key that round-trips, and a check over a message it did not sign fails.
pub fn sshsig(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else { return Ok(()) };
    let Ok(sig) = SshSig::decode(text) else { return Ok(()) };
    round_trips(&sig.identity())?;
    if sig.verify(b"a message nobody signed", SSH_NAMESPACE).is_ok() {
        return Err(format!("{text:?} verifies over a message it could not have signed"));
    }
    Ok(())
}

/// Sign-In with Ethereum messages: what parses is valid, and prints back as text
/// that parses to the same message and prints the same.
pub fn siwe(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else { return Ok(()) };
    let Ok(message) = SiweMessage::parse(text) else { return Ok(()) };
    message.validate().map_err(|e| format!("{text:?} parsed but is not valid: {e}"))?;
    let printed = message.to_string();
    let back = SiweMessage::parse(&printed).map_err(|e| format!("{text:?} prints as {printed:?}, which fails: {e}"))?;
    if back != message || back.to_string() != printed {
        return Err(format!("{text:?} prints as {printed:?}, which reads back differently"));
    }
    if printed != text {
        return Err(format!("{text:?} parses but prints differently: {printed:?}"));
    }
    Ok(())
}

/// The TOML settings file: whatever reads gives usable origins.
pub fn config(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else { return Ok(()) };
    let Ok(settings) = Settings::from_toml(text) else { return Ok(()) };
    let _ = (settings.public_origin(), settings.webauthn_rp_id(), settings.webauthn_origins());
    Ok(())
}

/// The COSE key inside a registration credential's attestation object, and the object.
pub fn attested_cose_key(credential: &Value) -> Result<(Vec<u8>, Vec<u8>), String> {
    let object = credential["response"]["attestationObject"].as_str().unwrap_or_default();
    let object = URL_SAFE_NO_PAD.decode(object).map_err(|e| e.to_string())?;
    let value: ciborium::Value = ciborium::from_reader(object.as_slice()).map_err(|e| e.to_string())?;
    let auth_data = value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("authData")))
        .and_then(|(_, v)| v.as_bytes())
        .ok_or("no authData")?;
    let id_len = auth_data.get(53..55).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let key = auth_data.get(55 + id_len..).ok_or("authData without a credential")?;
    Ok((key.to_vec(), object.clone()))
}

/// The passkey answer fields a proof is bound to, decoded.
fn assertion_parts(credential: &Value) -> Option<[Vec<u8>; 4]> {
    let field = |pointer: &str| {
        credential
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).ok())
    };
    Some([
        field("/rawId")?,
        field("/response/authenticatorData")?,
        field("/response/clientDataJSON")?,
        field("/response/signature")?,
    ])
}

/// Merges `patch` into `value` (objects member by member; anything else replaces).
fn merge(value: &mut Value, patch: &Value) {
    match (value, patch) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, patch) => *slot = patch.clone(),
    }
}

/// WebAuthn assertions, checked twice: by the server (webauthn-rs, against the
/// ceremony issued with the challenge) and as a peer checks a forwarded proof
/// ([`verify_assertion`]). Whichever accepts, the answer must be the one the
/// authenticator made, byte for byte in every signed field.
///
/// First byte even: the rest is JSON merged into the authenticator's valid
/// `credential` (`{}` leaves it valid). Odd: the second byte picks authenticator
/// data, client data or signature, and the rest are edits to its bytes.
pub fn webauthn(data: &[u8]) -> Outcome {
    let f = fixture()?;
    let [mode, rest @ ..] = data else { return Ok(()) };
    let mut credential = f.webauthn_credential.clone();
    if mode % 2 == 0 {
        let Ok(patch) = serde_json::from_slice::<Value>(rest) else { return Ok(()) };
        merge(&mut credential, &patch);
    } else {
        let [which, edits @ ..] = rest else { return Ok(()) };
        let name = ["authenticatorData", "clientDataJSON", "signature"][usize::from(*which) % 3];
        let text = credential["response"][name].as_str().unwrap_or_default();
        let mut bytes = URL_SAFE_NO_PAD.decode(text).unwrap_or_default();
        super::proofs::apply(&mut bytes, edits);
        credential["response"][name] = Value::String(URL_SAFE_NO_PAD.encode(bytes));
    }
    let frame = json!({"type": "auth", "method": "webauthn", "payload": {}, "credential": credential});
    let server = verdict(f, &frame);
    let peer = assertion_parts(&credential).map(|[_, auth_data, client_data, signature]| {
        let key = CoseKey::from_cbor(&f.cose_key)?;
        let origins = [ORIGIN.to_owned()];
        let expect = Expectation {
            rp_id: "localhost",
            origins: &origins,
            challenge: f.payload.as_bytes(),
            require_user_verification: false,
            allow_cross_origin: false,
        };
        verify_assertion(&key, &client_data, &auth_data, &signature, &expect)
    });
    if server.is_ok() || peer.as_ref().is_some_and(Result::is_ok) {
        let (made, given) = (assertion_parts(&f.webauthn_credential), assertion_parts(&credential));
        // The credential id picks the key; the peer check is given the key directly.
        let same = match (made, given) {
            (Some(m), Some(g)) if server.is_ok() => m == g,
            (Some(m), Some(g)) => m[1..] == g[1..],
            _ => false,
        };
        if !same {
            return Err(format!("a changed assertion was accepted (server: {server:?}, peer: {peer:?}): {credential}"));
        }
    }
    Ok(())
}

/// X.509 certificates and PIV attestation chains: every certificate's key
/// round-trips, and a chain verifies against the configured root only if it is the
/// one that root's device vouched for.
///
/// First byte 0: the rest is PEM text. 1: the rest is DER certificates, each after
/// a two-byte length. 2: the root's own chain (slot attestation, device), the next
/// byte picking a certificate and the rest edits to its DER.
pub fn x509(data: &[u8]) -> Outcome {
    let f = fixture()?;
    let [mode, rest @ ..] = data else { return Ok(()) };
    let pem = |der: &[u8]| {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    };
    let text = if mode % 3 == 0 {
        match self::text(rest) {
            Some(t) => t.to_owned(),
            None => return Ok(()),
        }
    } else if mode % 3 == 2 {
        let [which, edits @ ..] = rest else { return Ok(()) };
        let mut chain = Vec::new();
        for (i, cert) in [&f.slot_attestation, &f.device].into_iter().enumerate() {
            let mut der = spki::der::Encode::to_der(cert).map_err(|e| e.to_string())?;
            if usize::from(*which) % 2 == i {
                super::proofs::apply(&mut der, edits);
            }
            chain.push(pem(&der));
        }
        chain.concat()
    } else {
        let mut out = String::new();
        let mut rest = rest;
        while let [a, b, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*a, *b]));
            let (der, tail) = tail.split_at(len.min(tail.len()));
            out.push_str(&pem(der));
            rest = tail;
        }
        out
    };
    let Ok(certs) = read_certificates(&text) else { return Ok(()) };
    for cert in &certs {
        if let Ok((key, _)) = subject_key(cert) {
            round_trips(&Identity::from_key(key))?;
        }
        let _ = attestation_facts(cert);
    }
    if let [slot, device, chain @ ..] = certs.as_slice() {
        if verify_attestation(slot, device, chain, &f.anchors).is_ok()
            && (*slot != f.slot_attestation || *device != f.device)
        {
            return Err(format!("an attestation the root never vouched for verified: {text}"));
        }
    }
    Ok(())
}
