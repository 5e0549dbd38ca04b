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
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Some((mut s, mut node, artifacts)) = start_browser_script("reconnect.browser.mjs", |_| {}).await else {
        return;
    };
    let mut child = node.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let in_call = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let done = line == "in-call";
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if in_call {
        s.restart().await;
        child.stdin.as_mut().unwrap().write_all(b"restarted\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    while let Ok(Some(line)) = stdout.next_line().await {
        seen.push(line);
    }
    // Measured, not asserted: the README quotes these.
    if let Some(timings) = seen.iter().find(|l| l.starts_with('{')) {
        eprintln!("restart timings: {timings}");
    }
    assert!(
        in_call && out.status.success() && seen.last().is_some_and(|l| l == "ok"),
        "reconnect flow failed (screenshots in {}):\n{}\n{}",
        artifacts.display(),
        seen.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    s.shutdown().await;
}
