//! The host pages in a real headless Chromium, driven by playwright-core: see
//! tests/js/host_pages.browser.mjs for the flow. Screenshots of the pages are saved
//! under target/browser-artifacts when it fails.

use crate::common::*;

#[tokio::test]
async fn host_pages_in_chromium() {
    run_browser_script("host_pages.browser.mjs", |_| {}).await;
}

/// A new team's first call from an empty server, as clicks (tests/js/first_call.browser.mjs):
/// prints how many clicks, typed fields and pages it takes, and the wall time on loopback.
/// `KEYGATE_GALLERY=docs/gallery` also refreshes the screenshot gallery in docs/.
#[tokio::test]
async fn a_new_team_gets_into_its_first_call_by_clicks() {
    let Some(out) = run_browser_script("first_call.browser.mjs", |_| {}).await else { return };
    let figures = out.lines().find(|l| l.starts_with('{')).expect("the flow prints its figures");
    let figures: serde_json::Value = serde_json::from_str(figures).unwrap();
    for field in ["clicks", "typed", "pages", "wall_ms"] {
        assert!(figures[field].as_u64().is_some(), "{field} in {figures}");
    }
    eprintln!("first call: {figures}");
}
