#![no_main]
//! `cargo fuzz run config`: see keygate::fuzzing for what it feeds and checks.

use keygate::fuzzing::{target, Target};
use std::sync::LazyLock;

static TARGET: LazyLock<&'static Target> =
    LazyLock::new(|| target("config").unwrap_or_else(|| panic!("no fuzz target config")));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = (TARGET.run)(data) {
        panic!("{broken}");
    }
});
