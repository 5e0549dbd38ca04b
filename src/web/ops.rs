//! What operators poll: `/healthz` and `/metrics`.

use super::AppState;
use crate::gateway::Gateway;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/metrics", get(metrics))
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let s = &gw.stats;
    let body = format!(
        "# TYPE keygate_connections gauge\nkeygate_connections {}\n\
         # TYPE keygate_admitted_peers gauge\nkeygate_admitted_peers {}\n\
         # TYPE keygate_admissions_total counter\nkeygate_admissions_total {}\n\
         # TYPE keygate_refusals_total counter\nkeygate_refusals_total {}\n\
         # TYPE keygate_signature_checks_total counter\nkeygate_signature_checks_total {}\n\
         # TYPE keygate_unadmitted_connections gauge\nkeygate_unadmitted_connections {}\n\
         # TYPE keygate_http_connections gauge\nkeygate_http_connections {}\n\
         # TYPE keygate_limited_total counter\nkeygate_limited_total {}\n\
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n\
         # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
        s.connections.get(),
        gw.rooms.peer_count(),
        s.admissions.load(Ordering::Relaxed),
        s.refusals.load(Ordering::Relaxed),
        s.signature_checks.load(Ordering::Relaxed),
        s.unadmitted.count(),
        s.http_connections.get(),
        s.limited.load(Ordering::Relaxed),
        resident_memory_bytes().unwrap_or(0),
        cpu_seconds().unwrap_or(0.0),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
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
