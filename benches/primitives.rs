//! Which signature primitive to use, measured: each candidate verifies (or recovers)
//! the same kind of signature over a challenge-sized message, single-threaded, for
//! about a second. Run with `cargo bench --bench primitives`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

fn rate(name: &str, mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < 1.0 {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    println!("{name:<48} {per_sec:>9.0}/s  {:>6.1} µs", 1e6 / per_sec);
    per_sec
}

fn main() {
    let message = br#"{"roomId":"5i9U78HiRkrdWRYo2","issuedAt":"2026-11-25T12:00:00.000Z","nonce":"0123456789abcdef0123456789abcdef","origin":"https://meet.example.com"}"#;

    // ECDSA P-256 / SHA-256, P1363 signature (method webcrypto, PIV, WebAuthn ES256).
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let sig = pair.sign(&rng, message).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let aws = rate("P-256 verify, aws-lc-rs", || {
        aws_lc_rs::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(black_box(message), sig.as_ref())
            .unwrap();
    });
    use p256::ecdsa::signature::Verifier;
    let rc_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let rc_sig = p256::ecdsa::Signature::from_slice(sig.as_ref()).unwrap();
    let rust = rate("P-256 verify, RustCrypto p256 0.13", || {
        rc_key.verify(black_box(message), &rc_sig).unwrap();
    });
    println!("  aws-lc-rs / p256: {:.1}×", aws / rust);

    // Ethereum: recover the signer of an EIP-191 personal message (method eth).
    let secret = secp256k1::SecretKey::from_byte_array([7u8; 32]).unwrap();
    let signature = keygate::client::signer::personal_sign(&secret, message);
    let sig_bytes: [u8; 65] = keygate::verify::eth_signature(&signature).unwrap();
    let lib = rate("secp256k1 recover + Keccak, libsecp256k1", || {
        keygate::verify::recover_signer(black_box(message), &sig_bytes).unwrap();
    });
    let hash = keygate::verify::personal_message_hash(message);
    let k_sig = k256::ecdsa::Signature::from_slice(&sig_bytes[..64]).unwrap();
    let k_id = k256::ecdsa::RecoveryId::from_byte(sig_bytes[64] - 27).unwrap();
    let k = rate("secp256k1 recover, RustCrypto k256 0.13", || {
        k256::ecdsa::VerifyingKey::recover_from_prehash(black_box(&hash), &k_sig, k_id).unwrap();
    });
    println!("  libsecp256k1 / k256: {:.1}×", lib / k);

    // Ed25519 (method ssh with ssh-ed25519 keys).
    use aws_lc_rs::signature::{Ed25519KeyPair, ED25519};
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
    let ed_sig = ed.sign(message);
    let ed_pub = ed.public_key().as_ref().to_vec();
    rate("Ed25519 verify, aws-lc-rs", || {
        aws_lc_rs::signature::UnparsedPublicKey::new(&ED25519, &ed_pub)
            .verify(black_box(message), ed_sig.as_ref())
            .unwrap();
    });
}
