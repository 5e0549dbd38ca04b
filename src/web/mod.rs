//! HTTP: the axum router, the pages, and the server's lifecycle.
//!
//! [`app`] builds the router from shared state; [`Server::start`] binds a port,
//! runs the router, follows whitelist changes, and drains on shutdown. Tests start
//! the same `Server` on port 0.

mod auth;
mod call;
mod host;
mod invites;
mod pages;
mod passkey_routes;
mod serve;

use crate::config::Settings;
use crate::identity::Identity;
use crate::limits::ClientKey;
use crate::signal::rooms::Rooms;
use crate::signal::{session, Gateway, Stats};
use crate::store::{AuditLog, Store, StoreError};
use crate::verify::{self, Verifiers};
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the server looks for whitelist changes made by other processes.
const CHANGE_POLL: Duration = Duration::from_millis(200);
/// How long shutdown waits for sockets to close before giving up on them.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
}

/// What the handlers share: the gateway, proofs in progress over HTTP, and the
/// per-address budget of the endpoints anyone may call.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub pending: Arc<auth::PendingProofs>,
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
        AppState {
            pending: Arc::new(auth::PendingProofs::new(&gateway.settings)),
            headers: Arc::new(hardening_headers(&gateway.origin)),
            gateway,
            limiter: Arc::new(limiter),
        }
    }

    /// Forgets what expired: unanswered challenges and registrations, and the rate
    /// limiter's memory of addresses that have gone quiet.
    pub fn prune(&self) {
        self.pending.prune();
        self.gateway.passkeys.prune();
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

fn router(state: AppState) -> Router {
    // What anyone may call without a session, each call costing the server a
    // challenge, a pending entry or a key parse: a budget per client address.
    let open = Router::new()
        .route("/identity", post(pages::identity))
        .route("/webauthn/register/start", post(passkey_routes::start))
        .route("/webauthn/register/finish", post(passkey_routes::finish))
        .route("/signin/challenge", post(auth::sign_in_challenge))
        .route("/signin/verify", post(auth::sign_in_verify))
        .route("/i/{invite}/challenge", post(invites::invite_challenge))
        .route("/i/{invite}/verify", post(invites::invite_verify))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), per_client_budget))
        .layer(axum::extract::DefaultBodyLimit::max(OPEN_BODY_LIMIT));
    Router::new()
        .route("/", get(pages::index))
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/passkey", get(pages::passkey))
        .route("/static/{name}", get(pages::static_file))
        .route("/r/{room}", get(call::call_page))
        .route("/signin", get(host::sign_in_page))
        .route("/keys", get(pages::keys))
        .route("/signout", post(auth::sign_out))
        .route("/rooms", get(host::my_rooms).post(host::create_room))
        .route("/rooms/{room}", get(host::room_page))
        .route("/rooms/{room}/allow", post(host::allow))
        .route("/rooms/{room}/deny", post(host::deny))
        .route("/rooms/{room}/settings", post(host::settings))
        .route("/rooms/{room}/owners", post(host::owners))
        .route("/rooms/{room}/audit", get(host::audit_page))
        .route("/rooms/{room}/live", get(host::live_page))
        .route("/rooms/{room}/kick", post(host::kick))
        .route("/rooms/{room}/reverify", post(host::reverify))
        .route("/rooms/{room}/invites", post(invites::create_invite))
        .route("/i/{invite}", get(invites::invite_page))
        .merge(open)
        .layer(axum::middleware::from_fn_with_state(state.clone(), harden))
        .with_state(state)
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

async fn websocket(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    use crate::limits::{ClientKey, ConnectionSlot, UnadmittedRefusal, UnadmittedSlot};
    let settings = &gw.settings;
    // Both places are held by guards that move into the upgrade: whether the
    // upgrade completes, fails or is reset, dropping them gives the places back.
    let slots = ConnectionSlot::take(&gw.stats.connections, settings.max_connections)
        .ok_or(UnadmittedRefusal::Server)
        .and_then(|connection| {
            let client = ClientKey::of(remote.ip());
            let unadmitted = UnadmittedSlot::take(
                &gw.stats.unadmitted,
                client,
                settings.max_unadmitted,
                settings.max_unadmitted_per_address,
            )?;
            Ok((connection, unadmitted))
        });
    // Small buffers: an idle admitted socket should cost kilobytes, not the
    // library's default 128 KiB. Frames a little above our own limit are still read
    // so that the client gets a clear error instead of a dropped socket; past twice
    // the limit the socket closes (1009).
    let hard_cap = settings.max_frame_bytes.saturating_mul(2).max(16 * 1024);
    upgrade.read_buffer_size(4096).write_buffer_size(0).max_message_size(hard_cap).max_frame_size(hard_cap).on_upgrade(
        move |mut socket| async move {
            let (connection, unadmitted) = match slots {
                Ok(slots) => slots,
                Err(refusal) => {
                    gw.stats.limited.fetch_add(1, Ordering::Relaxed);
                    let message = match refusal {
                        UnadmittedRefusal::Server => "the server is at its connection limit; try again shortly",
                        UnadmittedRefusal::Address => {
                            "too many connections from your address are waiting to be admitted; finish or close one"
                        }
                    };
                    let error = crate::signal::protocol::ServerMessage::Error {
                        code: crate::signal::protocol::code::SERVER_FULL,
                        message,
                    };
                    let _ = socket.send(Message::Text(error.to_text().into())).await;
                    let close = CloseFrame { code: 1013, reason: "server full".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
            };
            session::run(socket, gw, Some(remote), unadmitted).await;
            drop(connection);
        },
    )
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
        verify::signature_checks(),
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

/// How often expired state is forgotten.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Forgets expired state every minute until shutdown.
async fn maintain(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => maintain_once(&state).await,
            _ = serve::stopped(&mut shutdown) => return,
        }
    }
}

/// One round of upkeep: expired challenges, registrations and limiter memory; a
/// summary row for refusals that were counted rather than logged; and the database
/// rows past their time (audit rows past the retention, lapsed sessions and invites).
async fn maintain_once(state: &AppState) {
    state.prune();
    let gw = &state.gateway;
    for (room, client, held_back) in gw.refusal_rows.drain() {
        let event = crate::store::AuditEvent {
            room,
            event: "refused",
            identity: None,
            method: None,
            reason: Some(format!("{held_back} more refusals from {client}, counted but not logged one by one")),
            remote: Some(client.to_string()),
        };
        gw.audit.record(event).await;
    }
    let retention = match gw.settings.audit_retention_days {
        0 => None,
        days => Some(chrono::Duration::days(i64::from(days))),
    };
    match gw.store.prune_expired(chrono::Utc::now(), retention).await {
        Ok(pruned) if pruned.any() => tracing::info!(?pruned, "pruned expired rows"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning expired rows failed"),
    }
}

/// Files the process keeps open besides connections: the database and its WAL,
/// logs, the listener, the runtime's own descriptors, headroom for the CLI's
/// helpers. Connections may use the rest.
const RESERVED_FILES: u64 = 64;

/// The process's open-file limit (soft), after raising it to the hard limit.
pub fn open_file_limit() -> u64 {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// Lowers the connection limits so that, together, they fit in `files` open
/// files: past the file limit the server could no longer accept at all, and no
/// clean "server full" would ever be sent. Says so when it lowers anything.
pub fn fit_to_file_limit(settings: &mut Settings, files: u64) {
    let budget = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(2);
    let (ws, http) = (settings.max_connections, settings.max_http_connections);
    if ws.saturating_add(http) <= budget {
        return;
    }
    // A quarter for HTTP (page loads are short), the rest for WebSockets.
    let http_share = http.min((budget / 4).max(1));
    settings.max_http_connections = http_share;
    settings.max_connections = ws.min(budget - http_share);
    settings.max_unadmitted = settings.max_unadmitted.min(settings.max_connections);
    tracing::warn!(
        open_files = files,
        max_connections = settings.max_connections,
        max_http_connections = settings.max_http_connections,
        "connection limits lowered to fit the open-file limit (was {ws} WebSocket and {http} HTTP connections); \
         raise the limit (ulimit -n, LimitNOFILE=) to allow more"
    );
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    /// What the handlers share (pending proofs, limiters), for upkeep.
    state: AppState,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<()>,
    follower: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

impl Server {
    /// Opens the store, binds `settings.listen`, and starts serving.
    pub async fn start(settings: Settings) -> Result<Server, ServeError> {
        let store = Store::open(&settings.db).await?;
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| ServeError::Bind(settings.listen, e))?;
        let addr = listener.local_addr()?;
        let mut settings = settings;
        settings.listen = addr;
        fit_to_file_limit(&mut settings, open_file_limit());
        // Operators may name room creators in any key format; compare DIDs.
        settings.room_creators = settings
            .room_creators
            .iter()
            .map(|k| {
                Identity::parse(k)
                    .map(|i| i.did().to_owned())
                    .map_err(|e| ServeError::Config(format!("room_creators entry '{k}': {e}")))
            })
            .collect::<Result<_, _>>()?;
        let anchors = crate::verify::piv::PivVerifier::load_anchors(&settings.piv_attestation_roots)
            .map_err(|e| ServeError::Config(format!("piv_attestation_roots: {e}")))?;
        let origin = settings.public_origin();
        let passkeys = Arc::new(
            crate::passkeys::Passkeys::new(&settings.webauthn_rp_id(), &settings.webauthn_origins())
                .map_err(|e| ServeError::Config(e.to_string()))?,
        );
        let tickets = Arc::new(crate::verify::ticket::Tickets::default());
        let verifiers = Verifiers::with_tickets(anchors, Some(passkeys.core()), Some(tickets.clone()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (audit, _writer) = AuditLog::start(store.clone());
        let rooms = Arc::new(Rooms::new(store.clone()));
        let refusal_rows = crate::limits::RowBudget::new(settings.refusal_rows_per_minute);
        let gateway = Arc::new(Gateway {
            origin,
            passkeys,
            tickets,
            settings,
            store,
            rooms: rooms.clone(),
            verifiers,
            refusal_rows,
            audit,
            shutdown: shutdown_rx.clone(),
            stats: Stats::default(),
        });
        let follower = tokio::spawn(rooms.follow_changes(CHANGE_POLL, shutdown_rx.clone()));
        let limits = serve::HttpLimits {
            max_connections: gateway.settings.max_http_connections,
            header_timeout: gateway.settings.http_header_timeout,
            connections: gateway.stats.http_connections.clone(),
            limited: gateway.stats.limited.clone(),
        };
        let state = AppState::new(gateway.clone());
        let maintenance = tokio::spawn(maintain(state.clone(), shutdown_rx.clone()));
        let http = tokio::spawn(serve::serve(listener, router(state.clone()), limits, shutdown_rx));
        Ok(Server { addr, gateway, state, shutdown, http, follower, maintenance })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Runs one round of upkeep now (it runs every minute by itself).
    pub async fn maintain_now(&self) {
        maintain_once(&self.state).await;
    }

    /// Stops accepting, closes every socket with a close frame, flushes the audit
    /// log and closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.gateway.stats.connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tokio::time::timeout(DRAIN, self.http).await;
        let _ = self.follower.await;
        let _ = self.maintenance.await;
        self.gateway.audit.flush().await;
        self.gateway.store.close().await;
    }
}
