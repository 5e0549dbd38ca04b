//! The host pages in a real headless Chromium, driven by playwright-core: see
//! tests/js/host_pages.browser.mjs for the flow. Screenshots of the pages are saved
//! under target/browser-artifacts when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::path::Path;

#[tokio::test]
async fn host_pages_in_chromium() {
    let (Some(_), Some(_)) = (tool("node"), tool("chromium")) else { return };
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !js.join("node_modules/playwright-core").is_dir() {
        assert!(!in_ci(), "playwright-core is not installed: run npm ci --prefix tests/js");
        eprintln!("skipping: playwright-core is not installed (npm ci --prefix tests/js)");
        return;
    }
    // WebCrypto and IndexedDB need a secure context: http://localhost is one.
    let port = free_port();
    let s = TestServer::with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts/host-pages");
    let out = tokio::process::Command::new("node")
        .arg(js.join("host_pages.browser.mjs"))
        .arg(format!("http://localhost:{port}"))
        .arg(&artifacts)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "browser flow failed (screenshots in {}):\n{}\n{}",
        artifacts.display(),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    s.shutdown().await;
}
