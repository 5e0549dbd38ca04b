//! The host pages in a real headless Chromium, driven by playwright-core: see
//! tests/js/host_pages.browser.mjs for the flow. Screenshots of the pages are saved
//! under target/browser-artifacts when it fails.

use crate::common::*;

#[tokio::test]
async fn host_pages_in_chromium() {
    run_browser_script("host_pages.browser.mjs", |_| {}).await;
}
