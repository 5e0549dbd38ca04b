//! The fuzz corpus as regression tests: every input committed under `fuzz/corpus/`
//! and `fuzz/regressions/` (crashes once found, now fixed) goes through the same
//! target function the fuzzer runs, on the stable toolchain, without building the
//! fuzzers. Plus: every target has its harness, and this build's seeds pass.

use keygate::fuzzing::{seeds, target, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

#[test]
fn every_committed_corpus_and_regression_input_passes_its_target() {
    let mut replayed = 0;
    let mut empty = Vec::new();
    for t in TARGETS {
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            for file in files(&fuzz_dir().join(kind).join(t.name)) {
                let input = std::fs::read(&file).unwrap();
                if let Err(broken) = (t.replay)(&input) {
                    panic!("{} fails target {}: {broken}", file.display(), t.name);
                }
                count += 1;
            }
        }
        if count == 0 {
            empty.push(t.name);
        }
        replayed += count;
    }
    assert!(empty.is_empty(), "targets without a committed corpus: {empty:?}");
    println!("replayed {replayed} inputs over {} targets", TARGETS.len());
}

#[test]
fn every_target_has_its_harness_and_this_builds_seeds_pass() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for t in TARGETS {
        let harness = std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{}.rs", t.name)))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{}.rs: {e}", t.name));
        assert!(harness.contains(&format!("target(\"{}\")", t.name)), "the harness of {} runs another target", t.name);
        assert!(manifest.contains(&format!("name = \"{}\"", t.name)), "fuzz/Cargo.toml does not build {}", t.name);
    }
    let harnesses = files(&fuzz_dir().join("fuzz_targets"));
    assert_eq!(harnesses.len(), TARGETS.len(), "a harness without a target: {harnesses:?}");
    let seeds = seeds().unwrap();
    // scripts/fuzz asks for the seeds to start from.
    let out = std::env::var_os("KEYGATE_FUZZ_SEEDS").map(PathBuf::from);
    for (i, (name, input)) in seeds.iter().enumerate() {
        let t = target(name).unwrap();
        if let Err(broken) = (t.replay)(input) {
            panic!("seed {i} of {name} fails: {broken}");
        }
        if let Some(dir) = &out {
            let dir = dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{i:03}")), input).unwrap();
        }
    }
    for t in TARGETS {
        assert!(seeds.iter().any(|(name, _)| *name == t.name), "no seed for {}", t.name);
    }
}

/// The faults fuzzing found, spelled out (their raw inputs are in fuzz/regressions/).
#[test]
fn an_rsa_key_without_a_modulus_is_refused_as_too_short() {
    let err = keygate::identity::rsa_from_parts(&[], &[1, 0, 1]).unwrap_err();
    assert!(err.to_string().contains("has 0 bits"), "{err}");
    let err = keygate::identity::rsa_from_parts(&[0, 0], &[3]).unwrap_err();
    assert!(err.to_string().contains("has 0 bits"), "{err}");
}

#[test]
fn text_after_an_ssh_signature_is_refused() {
    use keygate::verify::sshsig::SshSig;
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]));
    let armour =
        key.sign("keygate", ssh_key::HashAlg::Sha512, b"hello").unwrap().to_pem(ssh_key::LineEnding::LF).unwrap();
    assert!(SshSig::decode(&armour).unwrap().verify(b"hello", "keygate").is_ok());
    assert!(SshSig::decode(&format!("{armour}\n\n")).is_ok(), "whitespace after the block is fine");
    let err = SshSig::decode(&format!("{armour}\u{1}")).err().unwrap();
    assert!(err.to_string().contains("text follows"), "{err}");
}
