//! A real call in headless Chromium: three participants with three methods see and
//! hear each other, chat and confirm identities; a certificate swap is flagged and
//! its media not shown; removing a key ejects its holder. See
//! tests/js/call.browser.mjs. Screenshots land in target/browser-artifacts/call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn three_methods_one_call_in_chromium() {
    let Some(out) = run_browser_script("call.browser.mjs", |_| {}).await else { return };
    // Measured, not asserted: the README quotes these.
    if let Some(timings) = out.lines().find(|l| l.starts_with('{')) {
        eprintln!("call timings: {timings}");
    }
}
