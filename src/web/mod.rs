//! HTTP: the axum app, merged from one router per feature.
//!
//! ```text
//! app ─┬─ pages    /, /passkey, /keys, /static/…, POST /identity
//!      ├─ auth     POST /signin/challenge, /signin/verify, /signout
//!      ├─ host     /signin, /rooms…: the host pages (whitelist, owners, settings, audit, live)
//!      ├─ invites  /rooms/{room}/invites, /i/{invite}…
//!      ├─ passkeys POST /webauthn/register/start, /finish
//!      ├─ call     /r/{room}
//!      ├─ socket   /ws → signal::session
//!      └─ ops      /healthz, /readyz, /metrics (or on metrics_listen)
//! ```
//!
//! Each feature gives its routes for signed-in or page use (`router()`), and the
//! endpoints anyone may call, which cost the server a challenge, a pending entry or
//! a key parse (`open()`): those share a budget per client address and a small body
//! limit. Every answer carries the hardening headers. Handlers fail with one
//! [`Error`] type.

mod auth;
mod call;
mod error;
mod extract;
mod host;
mod invites;
mod ops;
mod pages;
mod passkey_routes;
mod socket;

pub use error::Error;
pub use ops::{cpu_seconds, resident_memory_bytes};

use crate::gateway::Gateway;
use crate::limits::ClientKey;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the handlers share: the gateway, proofs in progress over HTTP, and the
/// per-address budget of the endpoints anyone may call.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub limiter: Arc<governor::DefaultKeyedRateLimiter<ClientKey>>,
    /// The browser-side hardening every answer carries, computed once.
    headers: Arc<Vec<(header::HeaderName, header::HeaderValue)>>,
}

/// What every answer tells the browser (see docs/security.md): scripts, styles and
/// connections only from this origin, no inline script, never framed, no referrer
/// (call links name rooms), no type sniffing, and HSTS once the origin is https.
fn hardening_headers(origin: &str) -> Vec<(header::HeaderName, header::HeaderValue)> {
    let socket_origin = origin.replacen("http", "ws", 1);
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob: mediastream:; connect-src 'self' {socket_origin}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    let mut headers = vec![
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if origin.starts_with("https://") {
        headers.push((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000".to_owned()));
    }
    headers.into_iter().filter_map(|(name, value)| Some((name, header::HeaderValue::from_str(&value).ok()?))).collect()
}

async fn harden(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in state.headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

impl AppState {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let per_minute = NonZeroU32::new(gateway.settings.http_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_minute.get() / 2).unwrap_or(NonZeroU32::MIN);
        let limiter = governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute).allow_burst(burst));
        AppState { headers: Arc::new(hardening_headers(&gateway.origin)), gateway, limiter: Arc::new(limiter) }
    }

    /// Forgets what expired: unanswered challenges and registrations, and the rate
    /// limiter's memory of addresses that have gone quiet.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

impl axum::extract::FromRef<AppState> for Arc<Gateway> {
    fn from_ref(state: &AppState) -> Self {
        state.gateway.clone()
    }
}

/// Builds the router. Everything it needs comes in `gateway`.
pub fn app(gateway: Arc<Gateway>) -> Router {
    router(AppState::new(gateway))
}

/// The largest body an endpoint anyone may call reads: a proof with a PIV chain or
/// a WebAuthn attestation is a few KiB (axum's default would be 2 MiB).
const OPEN_BODY_LIMIT: usize = 64 * 1024;

pub(crate) fn router(state: AppState) -> Router {
    let open = Router::new()
        .merge(pages::open())
        .merge(auth::open())
        .merge(invites::open())
        .merge(passkey_routes::open())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), per_client_budget))
        .layer(axum::extract::DefaultBodyLimit::max(OPEN_BODY_LIMIT));
    Router::new()
        .merge(pages::router())
        .merge(auth::router())
        .merge(host::router())
        .merge(invites::router())
        .merge(call::router())
        .merge(socket::router())
        .merge(ops::router(state.gateway.settings.metrics_listen.is_some()))
        .merge(open)
        .layer(axum::middleware::from_fn_with_state(state.clone(), harden))
        .with_state(state)
}

/// What the separate metrics address serves (`metrics_listen`).
pub fn metrics_app(state: AppState) -> Router {
    ops::metrics_only().with_state(state)
}

/// Refuses (429, with Retry-After) a client address past its budget.
async fn per_client_budget(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.limiter.check_key(&ClientKey::of(remote.ip())) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            state.gateway.stats.limited.fetch_add(1, Ordering::Relaxed);
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            let secs = wait.as_secs().max(1);
            let body = axum::Json(serde_json::json!({
                "error": format!("too many requests from your address; try again in {secs} s")
            }));
            (axum::http::StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], body).into_response()
        }
    }
}
