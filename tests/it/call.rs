//! A real call in headless Chromium: three participants with three methods see and
//! hear each other, chat and confirm identities; a certificate swap is flagged and
//! its media not shown; removing a key ejects its holder. See
//! tests/js/call.browser.mjs. Screenshots land in target/browser-artifacts/call.

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn three_methods_one_call_in_chromium() {
    let Some(out) = run_browser_script("call.browser.mjs", |_| {}).await else { return };
    // Measured, not asserted: the README quotes these.
    if let Some(timings) = out.lines().find(|l| l.starts_with('{')) {
        eprintln!("call timings: {timings}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_keeps_its_media_through_a_server_restart_and_a_dropped_socket() {
    let Some(seen) = run_browser_restarting("reconnect.browser.mjs", |_| {}).await else { return };
    // Measured, not asserted: the README quotes these.
    if let Some(timings) = seen.iter().find(|l| l.starts_with('{')) {
        eprintln!("restart timings: {timings}");
    }
}
