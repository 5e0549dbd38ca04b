//! The host pages in a real headless Chromium, driven by playwright-core: see
//! tests/js/host_pages.browser.mjs for the flow. Screenshots of the pages are saved
//! under target/browser-artifacts when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn host_pages_in_chromium() {
    run_browser_script("host_pages.browser.mjs", |_| {}).await;
}
