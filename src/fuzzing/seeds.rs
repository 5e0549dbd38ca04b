//! Starting inputs for every target, made by this build: valid proofs of every
//! method, frames of every type, keys in every format, a certificate chain, forms,
//! settings. (Third-party vectors are added beside them by `scripts/fuzz`.)

use super::export::formats_of;
use super::proofs::fixture;
use crate::identity::Identity;
use serde_json::json;

fn with(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(body);
    out
}

/// `(target, input)` pairs.
pub fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let f = fixture()?;
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, bytes: Vec<u8>| out.push((target, bytes));

    // Frames of every type, and each method's valid auth frame.
    let peer = "0123456789abcdef";
    for frame in [
        json!({"type": "request", "roomId": "fuzz-room", "fingerprint": "sha-256 AA:BB"}),
        json!({"type": "request", "create": true, "name": "Team", "webauthn": true}),
        json!({"type": "request", "roomId": "r", "address": "0x52908400098527886E0F7030069857D2E4169EE7", "ticket": true}),
        json!({"type": "signal", "to": peer, "data": {"sdp": "v=0\r\n", "type": "offer"}}),
        json!({"type": "verify-peer", "peerId": peer}),
        json!({"type": "whitelist", "add": ["ssh-ed25519 AAAA x", {"key": "0x52908400098527886E0F7030069857D2E4169EE7", "label": "w"}], "remove": ["did:key:z"]}),
        json!({"type": "report", "peerId": peer, "problem": "fingerprint-mismatch"}),
        json!({"type": "report", "peerId": peer, "problem": "media-key-mismatch"}),
        json!({"type": "request", "roomId": "fuzz-room", "fingerprint": "sha-256 AA:BB",
               "mediaKey": "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}),
        json!({"type": "sfu", "op": "publish", "jsep": {"type": "offer", "sdp": "v=0\r\n"}}),
        json!({"type": "sfu", "op": "subscribe", "peerId": peer}),
        json!({"type": "sfu", "op": "answer", "peerId": peer, "jsep": {"type": "answer", "sdp": "v=0\r\n"}}),
        json!({"type": "sfu", "op": "trickle", "peerId": peer, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}),
        json!({"type": "ping"}),
    ] {
        add("frame", frame.to_string().into_bytes());
    }
    for p in &f.proofs {
        add("frame", p.frame.to_string().into_bytes());
    }

    // Every identity of the fixture, in every format: alone, and as one list.
    let mut identities: Vec<Identity> = f.proofs.iter().map(|p| p.identity.clone()).collect();
    for text in [
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169",
    ] {
        identities.extend(Identity::parse(text).ok());
    }
    let mut list = String::from("# a list\n\n");
    for identity in &identities {
        for (format, text) in formats_of(identity)? {
            add("did", text.clone().into_bytes());
            add("key_list", text.clone().into_bytes());
            list.push_str(&format!("{}\n", text.replace('\n', if format == "pem" { "\n" } else { " " })));
        }
    }
    list.push_str("command=\"true\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b\n");
    list.push_str("alice@example.com namespaces=\"git,keygate\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n");
    add("key_list", list.clone().into_bytes());
    add("key_stream", with(&[1], list.as_bytes()));
    add("key_stream", with(&[200], list.as_bytes()));

    // COSE keys and the registration's attestation object.
    add("cose", f.cose_key.clone());
    add("cose", f.attestation_object.clone());

    // Signatures and messages as their methods carry them.
    for p in &f.proofs {
        if let Some(sig) = p.frame["signature"].as_str().filter(|s| s.starts_with("-----BEGIN SSH")) {
            add("sshsig", sig.as_bytes().to_vec());
        }
    }
    add("siwe", f.siwe.clone().into_bytes());

    // Passkey answers: the valid one, and each signed part to edit.
    add("webauthn", b"\x00{}".to_vec());
    add("webauthn", with(b"\x00", json!({"response": {"userHandle": "AAAA"}}).to_string().as_bytes()));
    for which in 0..3u8 {
        add("webauthn", vec![1, which]);
    }

    // Certificates: the chain as PEM, and each of its certificates to edit.
    let pem = |cert: &x509_cert::Certificate| -> Result<String, String> {
        use spki::der::EncodePem;
        cert.to_pem(spki::der::pem::LineEnding::LF).map_err(|e| e.to_string())
    };
    let chain = format!("{}{}", pem(&f.slot_attestation)?, pem(&f.device)?);
    add("x509", with(&[0], chain.as_bytes()));
    add("x509", vec![2, 0]);
    add("x509", vec![2, 1]);

    // Each proof, each field, each way of changing it, unchanged (they verify).
    for which in 0..f.proofs.len() as u8 {
        for field in 0..8u8 {
            for mode in 0..3u8 {
                add("proof", vec![which, field, mode]);
            }
        }
        add("proof", vec![which, 0, 0, 0, 5, 1]);
    }

    // Host pages: each route with a typical body, signed in with the form's token and not.
    for input in super::http::seeds() {
        add("http", input);
    }

    add(
        "config",
        b"listen = \"127.0.0.1:8080\"\ndb = \"keygate.db\"\norigin = \"https://meet.example.com\"\n\
          freshness_past = 120\nmax_peers_per_room = 8\nroom_creators = [\"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK\"]\n\
          stun_urls = [\"stun:stun.example.com\"]\nwebauthn_origins = [\"https://meet.example.com\"]\n"
            .to_vec(),
    );

    // Growth: each parser, with a prefix that gets past its first checks.
    for (parser, prefix, unit) in [
        (0u8, "{\"type\":\"whitelist\",\"add\":[", "\"x\","),
        (1, "", "ssh-ed25519 AAAA c\n"),
        (2, "", "{\"kty\":\n"),
        (3, "did:key:z", "1"),
        (4, "-----BEGIN SSH SIGNATURE-----\n", "AAAA"),
        (5, "example.com wants you to sign in with your Ethereum account:\n", "a"),
        (6, "-----BEGIN CERTIFICATE-----\n", "MIIB"),
        (7, "room_creators = [", "\"a\","),
    ] {
        let mut input = vec![parser, prefix.len() as u8];
        input.extend_from_slice(prefix.as_bytes());
        input.extend_from_slice(unit.as_bytes());
        add("growth", input);
    }
    Ok(out)
}
