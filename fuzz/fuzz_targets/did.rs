#![no_main]
//! `cargo fuzz run did`: see keygate::fuzzing for what it feeds and checks.

use keygate::fuzzing::{target, Target};
use std::sync::LazyLock;

static TARGET: LazyLock<&'static Target> =
    LazyLock::new(|| target("did").unwrap_or_else(|| panic!("no fuzz target did")));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = (TARGET.run)(data) {
        panic!("{broken}");
    }
});
