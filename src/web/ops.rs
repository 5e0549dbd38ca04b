//! What operators poll: `/healthz` (the process answers), `/readyz` (the database
//! answers too) and `/metrics` ([`crate::metrics`]).

use super::AppState;
use crate::gateway::Gateway;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// `/healthz`, `/readyz`, and `/metrics` unless it has an address of its own.
pub fn router(metrics_elsewhere: bool) -> Router<AppState> {
    let probes = Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(ready));
    if metrics_elsewhere {
        probes
    } else {
        probes.route("/metrics", get(metrics))
    }
}

/// What the metrics address serves.
pub fn metrics_only() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(|| async { "ok\n" }))
}

/// Ready to take calls: the database answers, and the server is not stopping (a
/// load balancer stops sending new clients during a drain).
async fn ready(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    if *gw.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_owned());
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), gw.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database did not answer within 2 s\n".to_owned()),
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], gw.metrics.render())
}

/// This process's resident set size, from /proc (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU time (user + system) this process has used, from /proc (Linux).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
