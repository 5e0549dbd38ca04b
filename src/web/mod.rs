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

use crate::config::Settings;
use crate::identity::Identity;
use crate::signal::rooms::Rooms;
use crate::signal::{session, Gateway, Stats};
use crate::store::{AuditLog, Store, StoreError};
use crate::verify::{self, Verifiers};
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
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

/// What the handlers share: the gateway, and proofs in progress over HTTP.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub pending: Arc<auth::PendingProofs>,
}

impl axum::extract::FromRef<AppState> for Arc<Gateway> {
    fn from_ref(state: &AppState) -> Self {
        state.gateway.clone()
    }
}

/// Builds the router. Everything it needs comes in `gateway`.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let state = AppState { gateway, pending: Arc::new(auth::PendingProofs::default()) };
    Router::new()
        .route("/", get(pages::index))
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/passkey", get(pages::passkey))
        .route("/webauthn/register/start", axum::routing::post(passkey_routes::start))
        .route("/webauthn/register/finish", axum::routing::post(passkey_routes::finish))
        .route("/static/{name}", get(pages::static_file))
        .route("/r/{room}", get(call::call_page))
        .route("/signin", get(host::sign_in_page))
        .route("/keys", get(pages::keys))
        .route("/identity", axum::routing::post(pages::identity))
        .route("/signin/challenge", axum::routing::post(auth::sign_in_challenge))
        .route("/signin/verify", axum::routing::post(auth::sign_in_verify))
        .route("/signout", axum::routing::post(auth::sign_out))
        .route("/rooms", get(host::my_rooms).post(host::create_room))
        .route("/rooms/{room}", get(host::room_page))
        .route("/rooms/{room}/allow", axum::routing::post(host::allow))
        .route("/rooms/{room}/deny", axum::routing::post(host::deny))
        .route("/rooms/{room}/settings", axum::routing::post(host::settings))
        .route("/rooms/{room}/owners", axum::routing::post(host::owners))
        .route("/rooms/{room}/audit", get(host::audit_page))
        .route("/rooms/{room}/live", get(host::live_page))
        .route("/rooms/{room}/kick", axum::routing::post(host::kick))
        .route("/rooms/{room}/reverify", axum::routing::post(host::reverify))
        .route("/rooms/{room}/invites", axum::routing::post(invites::create_invite))
        .route("/i/{invite}", get(invites::invite_page))
        .route("/i/{invite}/challenge", axum::routing::post(invites::invite_challenge))
        .route("/i/{invite}/verify", axum::routing::post(invites::invite_verify))
        .with_state(state)
}

async fn websocket(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let has_slot = gw.stats.try_connect(gw.settings.max_connections);
    // Small buffers: an idle admitted socket should cost kilobytes, not the
    // library's default 128 KiB. Frames above our own limit are still read (up to a
    // hard cap) so that the client gets a clear error instead of a dropped socket.
    let hard_cap = gw.settings.max_frame_bytes.saturating_mul(4).max(1 << 16);
    upgrade.read_buffer_size(4096).write_buffer_size(0).max_message_size(hard_cap).max_frame_size(hard_cap).on_upgrade(
        move |mut socket| async move {
            if !has_slot {
                let message = format!(
                    "the server is at its limit of {} connections; try again shortly",
                    gw.settings.max_connections
                );
                let error = crate::signal::protocol::ServerMessage::Error {
                    code: crate::signal::protocol::code::SERVER_FULL,
                    message: &message,
                };
                let _ = socket.send(Message::Text(error.to_text().into())).await;
                let _ =
                    socket.send(Message::Close(Some(CloseFrame { code: 1013, reason: "server full".into() }))).await;
                return;
            }
            session::run(socket, gw.clone(), Some(remote.to_string())).await;
            gw.stats.disconnect();
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
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n\
         # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
        s.connections.load(Ordering::Relaxed),
        gw.rooms.peer_count(),
        s.admissions.load(Ordering::Relaxed),
        s.refusals.load(Ordering::Relaxed),
        verify::signature_checks(),
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

/// A running server.
pub struct Server {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<Result<(), std::io::Error>>,
    follower: JoinHandle<()>,
}

impl Server {
    /// Opens the store, binds `settings.listen`, and starts serving.
    pub async fn start(settings: Settings) -> Result<Server, ServeError> {
        let store = Store::open(&settings.db).await?;
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| ServeError::Bind(settings.listen, e))?;
        let addr = listener.local_addr()?;
        let mut settings = settings;
        settings.listen = addr;
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
        let gateway = Arc::new(Gateway {
            origin,
            passkeys,
            tickets,
            settings,
            store,
            rooms: rooms.clone(),
            verifiers,
            audit,
            shutdown: shutdown_rx.clone(),
            stats: Stats::default(),
        });
        let follower = tokio::spawn(rooms.follow_changes(CHANGE_POLL, shutdown_rx.clone()));
        let router = app(gateway.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let mut stop = shutdown_rx;
        let http = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Server { addr, gateway, shutdown, http, follower })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Stops accepting, closes every socket with a close frame, flushes the audit
    /// log and closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.gateway.stats.connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tokio::time::timeout(DRAIN, self.http).await;
        let _ = self.follower.await;
        self.gateway.audit.flush().await;
        self.gateway.store.close().await;
    }
}
