//! Every accepted key format resolves to the same normalized identity, checked
//! against the did:key specification's vectors and keys made by real tools.

use crate::common::*;
use keygate::identity::{parse_key_list, Identity, ParseError};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn load(dir: &Path, file: &str) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(dir.join("did-key").join(file)).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

#[test]
fn did_key_vectors_nist_curves() {
    let Some(dir) = vectors() else { return };
    let mut checked = 0;
    for (did, case) in load(&dir, "nist-curves.json") {
        let vm = &case["verificationMethod"];
        let result = Identity::parse(&did);
        if did.starts_with("did:key:z2J9") {
            // P-521: not a key type keygate admits.
            assert!(matches!(result, Err(ParseError::Unsupported(_))), "{did}: {result:?}");
            continue;
        }
        assert_eq!(result.unwrap().did().as_str(), did);
        if let Some(jwk) = vm.get("publicKeyJwk") {
            assert_eq!(Identity::parse(&jwk.to_string()).unwrap().did().as_str(), did, "JWK of {did}");
            // The private JWK is refused, not silently reduced to its public part.
            let private = vm["privateKeyJwk"].to_string();
            assert_eq!(Identity::parse(&private).unwrap_err(), ParseError::PrivateKey);
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn did_key_vectors_ed25519_and_rsa() {
    let Some(dir) = vectors() else { return };
    for (did, case) in load(&dir, "ed25519-x25519.json") {
        assert_eq!(Identity::parse(&did).unwrap().did().as_str(), did);
        let vkp = &case["verificationKeyPair"];
        if let Some(jwk) = vkp.get("publicKeyJwk") {
            assert_eq!(Identity::parse(&jwk.to_string()).unwrap().did().as_str(), did);
        }
        if let Some(b58) = vkp.get("publicKeyBase58").and_then(|v| v.as_str()) {
            let raw = bs58::decode(b58).into_vec().unwrap();
            let id = Identity::from_key(keygate::identity::PublicKey::Ed25519(raw.try_into().unwrap()));
            assert_eq!(id.did().as_str(), did);
        }
    }
    let rsa = load(&dir, "rsa.json");
    assert_eq!(rsa.len(), 2);
    for (did, case) in rsa {
        assert_eq!(Identity::parse(&did).unwrap().did().as_str(), did);
        assert_eq!(Identity::parse(&case["publicKeyJwk"].to_string()).unwrap().did().as_str(), did);
    }
}

#[test]
fn did_key_vectors_other_curves_are_refused_clearly() {
    let Some(dir) = vectors() else { return };
    for file in ["secp256k1.json", "bls12381.json"] {
        for (did, _) in load(&dir, file) {
            assert!(matches!(Identity::parse(&did), Err(ParseError::Unsupported(_))), "{did}");
        }
    }
}

/// Runs a tool, returning stdout; fails the test on error.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn openssh_and_openssl_keys_share_one_identity() {
    let (Some(_), Some(_)) = (tool("ssh-keygen"), tool("openssl")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (kind, bits, algo) in [("ecdsa", "256", "P-256"), ("ecdsa", "384", "P-384"), ("rsa", "3072", "RSA")] {
        let path = dir.path().join(format!("{kind}{bits}"));
        let mut keygen = Command::new("ssh-keygen");
        keygen.args(["-q", "-N", "", "-C", "alice@laptop", "-t", kind, "-f"]).arg(&path);
        if !bits.is_empty() {
            keygen.args(["-b", bits]);
        }
        run(&mut keygen);
        let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let from_ssh = Identity::parse(&line).unwrap();
        assert_eq!(from_ssh.kind(), algo);
        let parsed = parse_key_list(&line).pop().unwrap().1.unwrap();
        assert_eq!(parsed.comment.as_deref(), Some("alice@laptop"));

        // The same key as a PEM SubjectPublicKeyInfo and, through openssl, as an
        // X.509 certificate.
        let pem = run(Command::new("ssh-keygen").args(["-e", "-m", "PKCS8", "-f"]).arg(path.with_extension("pub")));
        assert_eq!(Identity::parse(&pem).unwrap(), from_ssh, "{kind}{bits} PEM");
        let pem_private = path.with_extension("pem");
        std::fs::copy(&path, &pem_private).unwrap();
        run(Command::new("ssh-keygen").args(["-q", "-p", "-N", "", "-m", "PKCS8", "-f"]).arg(&pem_private));
        let cert = run(Command::new("openssl")
            .args(["req", "-new", "-x509", "-days", "1", "-subj", "/CN=alice", "-key"])
            .arg(&pem_private));
        assert_eq!(Identity::parse(&cert).unwrap(), from_ssh, "{kind}{bits} certificate");
        let spki = run(Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&pem_private));
        assert_eq!(Identity::parse(&spki).unwrap(), from_ssh, "{kind}{bits} openssl SPKI");
        // And the DID parses back to itself.
        assert_eq!(Identity::parse(from_ssh.did().as_str()).unwrap(), from_ssh);
    }
}

#[test]
fn ed25519_from_openssl_matches_its_openssh_encoding() {
    use base64::Engine;
    let Some(_) = tool("openssl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ed.pem");
    run(Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out"]).arg(&key));
    let spki = run(Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key));
    let der =
        Command::new("openssl").args(["pkey", "-pubout", "-outform", "DER", "-in"]).arg(&key).output().unwrap().stdout;
    let raw = &der[der.len() - 32..];
    // The OpenSSH wire form: string "ssh-ed25519", string key.
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], raw] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    let line = format!("ssh-ed25519 {} bob", base64::engine::general_purpose::STANDARD.encode(&blob));
    let cert =
        run(Command::new("openssl").args(["req", "-new", "-x509", "-days", "1", "-subj", "/CN=bob", "-key"]).arg(&key));
    let id = Identity::parse(&spki).unwrap();
    assert_eq!(id.kind(), "Ed25519");
    assert!(id.did().as_str().starts_with("did:key:z6Mk"));
    assert_eq!(Identity::parse(&line).unwrap(), id);
    assert_eq!(Identity::parse(&cert).unwrap(), id);
}

#[test]
fn authorized_keys_and_allowed_signers_files() {
    let text = "\
# team keys
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice
no-pty,command=\"echo hi there\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
bob@example.com namespaces=\"keygate,git\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
ssh-ed25519 AAAAnot-base64!! broken

ssh-dss AAAAB3NzaC1kc3MAAACBAP carol
";
    let parsed = parse_key_list(text);
    assert_eq!(parsed.len(), 5);
    let ok: Vec<_> = parsed.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|k| k.identity == ok[0].identity));
    assert_eq!(ok[0].comment.as_deref(), Some("alice"));
    assert_eq!(ok[2].comment.as_deref(), Some("bob@example.com"));
    assert_eq!(ok[2].namespaces.as_deref(), Some(&["keygate".to_owned(), "git".to_owned()][..]));
    let bad: Vec<usize> = parsed.iter().filter(|(_, r)| r.is_err()).map(|(l, _)| *l).collect();
    assert_eq!(bad, vec![5, 7], "bad lines are reported by their line numbers");
}

#[test]
fn ethereum_addresses_and_garbage() {
    let id = Identity::parse("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap();
    assert_eq!(id.did().as_str(), "did:pkh:eip155:1:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    assert_eq!(Identity::parse("did:pkh:eip155:137:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").unwrap(), id);
    assert!(Identity::parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD").is_err());
    let err = Identity::parse("hello world").unwrap_err().to_string();
    assert!(
        err.contains("did:key")
            && err.contains("JWK")
            && err.contains("OpenSSH")
            && err.contains("PEM")
            && err.contains("Ethereum"),
        "{err}"
    );
    assert_eq!(Identity::parse("  ").unwrap_err(), ParseError::Empty);
    assert!(matches!(Identity::parse("did:web:example.com"), Err(ParseError::Unsupported(_))));
    assert!(matches!(
        Identity::parse("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
        Err(ParseError::PrivateKey)
    ));
}

#[test]
fn openssh_project_keys_including_security_keys() {
    let Some(dir) = vectors() else { return };
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("sshsig/cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().cloned().unwrap_or_else(|| cases["cases"].as_array().cloned().unwrap());
    let mut parsed = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let line = std::fs::read_to_string(dir.join("sshsig").join(format!("{name}.pub"))).unwrap();
        match Identity::parse(&line) {
            Ok(id) => {
                parsed += 1;
                let expected = if name.starts_with("ecdsa") {
                    "P-256"
                } else if name.starts_with("ed25519") {
                    "Ed25519"
                } else {
                    "RSA"
                };
                assert_eq!(id.kind(), expected, "{name}");
            }
            Err(e) => {
                assert!(name.starts_with("mldsa"), "{name}: {e}");
                assert!(matches!(e, ParseError::Unsupported(_)), "{name}: {e}");
            }
        }
    }
    assert_eq!(parsed, 6);
}

/// One key per line works for every format in one list: a one-line JWK, a JWK and
/// a PEM key spread over lines, OpenSSH, a DID with a label, an address. Bad lines
/// are named and the rest kept, and text fed in any pieces reads the same.
#[test]
fn a_mixed_list_reads_one_key_per_line_in_any_pieces() {
    use keygate::identity::KeyListReader;
    let (a, b) = (key(), key());
    let pretty = serde_json::to_string_pretty(&b.public_jwk()).unwrap();
    let pem = {
        use p256::pkcs8::EncodePublicKey;
        let jwk = b.public_jwk();
        let point =
            [&[4u8][..], &base64_url(jwk["x"].as_str().unwrap()), &base64_url(jwk["y"].as_str().unwrap())].concat();
        p256::PublicKey::from_sec1_bytes(&point).unwrap().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap()
    };
    let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
    let text = format!(
        "# team list\n{ed}\n{}\nnot a key\n{pretty}\n{pem}{} Carol\n0x52908400098527886E0F7030069857D2E4169EE7\n",
        a.public_jwk(),
        identity(&a).did(),
    );
    let whole = parse_key_list(&text);
    let lines: Vec<usize> = whole.iter().map(|(l, _)| *l).collect();
    let pretty_lines = pretty.lines().count();
    assert_eq!(
        lines,
        [2, 3, 4, 5, 5 + pretty_lines, 5 + pretty_lines + pem.lines().count(), 6 + pretty_lines + pem.lines().count()]
    );
    let ok: Vec<String> =
        whole.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|k| k.identity.did().to_string()).collect();
    assert_eq!(ok.len(), 6, "{whole:?}");
    assert_eq!(ok[1], identity(&a).did().as_str(), "one-line JWK");
    assert_eq!(ok[2], identity(&b).did().as_str(), "JWK over several lines");
    assert_eq!(ok[3], identity(&b).did().as_str(), "PEM block in a list");
    let carol = whole.iter().filter_map(|(_, r)| r.as_ref().ok()).nth(4).unwrap();
    assert_eq!(carol.comment.as_deref(), Some("Carol"), "a DID line's label");
    assert!(matches!(whole[2].1, Err(ParseError::Unrecognized)), "line 4 named: {:?}", whole[2]);

    // Fed one byte at a time, or in chunks of 7, the reader finds the same.
    for size in [1, 7, 4096] {
        let mut reader = KeyListReader::default();
        let mut found = Vec::new();
        for piece in text.as_bytes().chunks(size) {
            reader.feed(piece, &mut found);
        }
        reader.finish(&mut found);
        let same: Vec<(usize, Option<String>)> =
            found.iter().map(|(l, r)| (*l, r.as_ref().ok().map(|k| k.identity.did().to_string()))).collect();
        let expected: Vec<(usize, Option<String>)> =
            whole.iter().map(|(l, r)| (*l, r.as_ref().ok().map(|k| k.identity.did().to_string()))).collect();
        assert_eq!(same, expected, "chunks of {size}");
    }

    // A block that never ends is named, and what follows its bound is still read.
    let unterminated = format!("-----BEGIN PUBLIC KEY-----\n{}\n{ed}\n", "QUJD\n".repeat(5000));
    let found = parse_key_list(&unterminated);
    assert!(matches!(found[0], (1, Err(ParseError::TooLong(..)))), "{:?}", found.first());
    assert!(found.iter().any(|(_, r)| r.is_ok()), "the key after the runaway block is read");

    // A line that is not UTF-8 inside a block names the block, not nothing.
    let mut reader = KeyListReader::default();
    let mut found = Vec::new();
    reader.feed(b"# list\n-----BEGIN PUBLIC KEY-----\n\xff\xfe\n", &mut found);
    reader.feed(format!("{ed}\n").as_bytes(), &mut found);
    reader.finish(&mut found);
    assert!(matches!(&found[0], (2, Err(ParseError::InvalidKey(m))) if m.contains("UTF-8")), "{found:?}");
    assert!(matches!(&found[1], (4, Ok(_))), "{found:?}");
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}
