//! The fuzz targets' bodies: one per parser of hostile bytes, each calling the
//! function the server calls and checking the properties that must hold of
//! whatever it accepts, not only that it does not panic.
//!
//! ```text
//! fuzz/fuzz_targets/NAME.rs ──▶ keygate::fuzzing::target("NAME").run(bytes)   (cargo fuzz, nightly)
//! tests/it/fuzz_corpus.rs   ──▶ every committed input, replayed                 (cargo test, stable)
//! ```
//!
//! A target returns `Err` with what broke; the fuzz harness turns that into a crash
//! and the replay test into a failure. `scripts/fuzz` runs them all; see
//! docs/security.md, "Fuzzing".

mod export;
mod growth;
mod http;
mod parsers;
mod proofs;
mod seeds;

pub use export::{formats_of, round_trips};

/// What a target found: `Err` names the broken property and the input.
pub type Outcome = Result<(), String>;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// What it feeds, to whom, and what must hold.
    pub about: &'static str,
    /// Under the fuzzer.
    pub run: fn(&[u8]) -> Outcome,
    /// Under the corpus replay test: the same, minus any judgement of time.
    pub replay: fn(&[u8]) -> Outcome,
}

/// Every target, by name. `fuzz/fuzz_targets/` has one file per entry.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frame",
        about: "/ws client frames (read_frame): what reads, written back, reads the same",
        run: parsers::frame,
        replay: parsers::frame,
    },
    Target {
        name: "key_list",
        about: "pasted key lists (parse_key_list): each key round-trips through every format",
        run: parsers::key_list,
        replay: parsers::key_list,
    },
    Target {
        name: "key_stream",
        about: "uploaded lists (KeyListReader): the pieces they arrive in change nothing",
        run: parsers::key_stream,
        replay: parsers::key_stream,
    },
    Target {
        name: "did",
        about: "one key in any format (Identity::parse): its DID reads back the same",
        run: parsers::did,
        replay: parsers::did,
    },
    Target {
        name: "cose",
        about: "COSE keys and attestation objects: both readers agree, keys round-trip",
        run: parsers::cose,
        replay: parsers::cose,
    },
    Target {
        name: "sshsig",
        about: "SSH signatures (SshSig::decode): keys round-trip, no check passes unsigned text",
        run: parsers::sshsig,
        replay: parsers::sshsig,
    },
    Target {
        name: "siwe",
        about: "Sign-In with Ethereum messages: what parses is valid and prints back as itself",
        run: parsers::siwe,
        replay: parsers::siwe,
    },
    Target {
        name: "webauthn",
        about: "passkey assertions, server and peer checks: only the authenticator's answer passes",
        run: parsers::webauthn,
        replay: parsers::webauthn,
    },
    Target {
        name: "x509",
        about: "certificates and PIV attestation chains: only the root's own chain verifies",
        run: parsers::x509,
        replay: parsers::x509,
    },
    Target {
        name: "proof",
        about: "valid proofs of every method, changed: never accepted, never another identity",
        run: proofs::mutated,
        replay: proofs::mutated,
    },
    Target {
        name: "http",
        about: "host pages, forms and uploads via the router: no 500, no change without a session",
        run: http::request,
        replay: http::request,
    },
    Target {
        name: "config",
        about: "the TOML settings file (Settings::from_toml)",
        run: parsers::config,
        replay: parsers::config,
    },
    Target {
        name: "growth",
        about: "every text parser at n and 16n bytes up to its bound: time grows linearly",
        run: |data| growth::growth(data, true),
        replay: |data| growth::growth(data, false),
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

pub use seeds::seeds;
