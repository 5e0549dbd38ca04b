//! The server's lifecycle: open the store, bind, fit the connection limits to the
//! open-file limit, build the shared state, serve, follow whitelist changes, keep
//! up, and drain on shutdown. Tests start the same [`Server`] on port 0.

mod accept;
pub mod proxy;
pub mod tls;
mod upkeep;

use crate::config::Settings;
use crate::gateway::{ConfigError, Gateway};
use crate::store::{Store, StoreError};
use crate::web::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl From<ConfigError> for ServeError {
    fn from(e: ConfigError) -> Self {
        ServeError::Config(e.0)
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
    /// Reloads the TLS certificate, when serving TLS.
    certificates: Option<JoinHandle<()>>,
    /// Serves `/metrics` on `metrics_listen`, when set.
    metrics: Option<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
}

impl Server {
    /// Opens the store, binds `settings.listen`, and starts serving.
    pub async fn start(mut settings: Settings) -> Result<Server, ServeError> {
        for warning in settings.check().map_err(ServeError::Config)? {
            tracing::warn!("{warning}");
        }
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(tls::Tls::load(cert, key)?)),
            (None, None) => None,
            _ => return Err(ServeError::Config("tls_cert and tls_key go together: give both or neither".into())),
        };
        let proxies = proxy::TrustedProxies::parse(&settings.trusted_proxies).map_err(ServeError::Config)?;
        let store = Store::open(&settings.db).await?;
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| ServeError::Bind(settings.listen, e))?;
        let addr = listener.local_addr()?;
        settings.listen = addr;
        fit_to_file_limit(&mut settings, open_file_limit());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let resume_key = store.server_secret("resume").await?;
        let challenge_key = store.server_secret("sealed-state").await?;
        let janus_key = store.server_secret("janus-rooms").await?;
        let janus = match &settings.janus {
            Some(url) => {
                Some(crate::sfu::janus::Janus::connect(url).await.map_err(|e| ServeError::Config(e.to_string()))?)
            }
            None => None,
        };
        let gateway = Arc::new(
            Gateway::build(settings, store, shutdown_rx.clone())?
                .with_keys(&resume_key, &challenge_key)
                .with_janus(janus, &janus_key),
        );
        if let Some(sfu) = gateway.sfu.clone() {
            // What a crashed predecessor left on Janus goes now, not at the first call.
            tokio::spawn(async move {
                if let Err(e) = sfu.sweep().await {
                    tracing::warn!(error = %e, "clearing rooms left on Janus failed");
                }
            });
        }
        gateway.rooms.start_following().await?;
        let poll = Duration::from_millis(gateway.settings.change_poll_ms);
        let follower = tokio::spawn(gateway.rooms.clone().follow_changes(poll, shutdown_rx.clone()));
        if let Some(url) = &gateway.settings.bus {
            let bus = crate::bus::Bus::connect(url).await.map_err(|e| ServeError::Config(e.to_string()))?;
            gateway.rooms.use_bus(bus.clone());
            // Alive in the store before the first seat is taken.
            gateway.store.node_alive(bus.node(), crate::bus::now_ms()).await?;
            tokio::spawn(bus.run(gateway.rooms.clone(), shutdown_rx.clone()));
        }
        let limits = accept::HttpLimits {
            max_connections: gateway.settings.max_http_connections,
            header_timeout: gateway.settings.http_header_timeout,
            connections: gateway.stats.http_connections.clone(),
            limited: gateway.stats.limited.clone(),
        };
        let state = AppState::new(gateway.clone());
        let maintenance = tokio::spawn(upkeep::maintain(state.clone(), shutdown_rx.clone()));
        // SIGHUP reloads the certificate; without one it must not end the process
        // (`systemctl reload` sends it whatever the settings).
        let hangups = tls::hangups();
        let certificates = Some(match tls.clone() {
            Some(tls) => tokio::spawn(tls.follow(hangups, shutdown_rx.clone())),
            None => tokio::spawn(tls::ignore_hangups(hangups, shutdown_rx.clone())),
        });
        let (metrics, metrics_addr) = match gateway.settings.metrics_listen {
            None => (None, None),
            Some(at) => {
                let listener = TcpListener::bind(at).await.map_err(|e| ServeError::Bind(at, e))?;
                let bound = listener.local_addr()?;
                let app = crate::web::metrics_app(state.clone());
                let mut stop = shutdown_rx.clone();
                let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
                (
                    Some(tokio::spawn(async move {
                        let _ = serve.await;
                    })),
                    Some(bound),
                )
            }
        };
        let front = accept::Front { tls, proxies: Arc::new(proxies) };
        let http = tokio::spawn(accept::serve(listener, crate::web::router(state.clone()), limits, front, shutdown_rx));
        Ok(Server { addr, gateway, state, shutdown, http, follower, maintenance, certificates, metrics, metrics_addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served when it has an address of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Runs one round of upkeep now (it runs every minute by itself).
    pub async fn maintain_now(&self) {
        upkeep::maintain_once(&self.state).await;
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
        for task in [self.certificates, self.metrics].into_iter().flatten() {
            let _ = task.await;
        }
        self.gateway.audit.flush().await;
        if let Some(bus) = self.gateway.rooms.bus() {
            // The others hear every peer of this server leave, and its seats are free.
            bus.flush().await;
            if let Err(e) = self.gateway.store.forget_node(bus.node()).await {
                tracing::warn!(error = %e, "freeing this server's seats on shutdown failed");
            }
        }
        // Everything in the write-ahead log goes into the database file, so the file
        // alone is whole once the server has stopped.
        if let Err(e) = self.gateway.store.checkpoint().await {
            tracing::warn!(error = %e, "checkpointing the database on shutdown failed");
        }
        self.gateway.store.close().await;
    }
}
