//! The HTTP accept loop: what axum's `serve` does, plus the limits a public server
//! needs before any handler runs.
//!
//! - At most `max_http_connections` HTTP connections at once; past it a new
//!   connection is closed at once (and counted), instead of queueing without bound.
//! - A client must send each request's headers within `http_header_timeout`, so a
//!   connection that never finishes them (slowloris) is closed.
//! - Every accepted socket gets TCP_NODELAY: signaling is small messages that must
//!   not wait for Nagle's algorithm and a delayed ACK.
//! - Accept errors (the process is out of file descriptors) back off briefly
//!   instead of spinning; the connection limits are sized so that they should not
//!   happen (see [`super::fit_to_file_limit`]).
//!
//! - With TLS, the handshake must also finish within `http_header_timeout`.
//! - Behind trusted proxies, each request carries the client's address from
//!   `X-Forwarded-For` ([`super::proxy`]) instead of the proxy's.
//!
//! A connection that upgrades to a WebSocket leaves the HTTP count: it is counted
//! under `max_connections` from then on.

use crate::limits::{ConnectionSlot, Gauge};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// What stands between the socket and the router: TLS, and whose forwarded
/// addresses are believed.
pub(super) struct Front {
    pub tls: Option<Arc<super::tls::Tls>>,
    pub proxies: Arc<super::proxy::TrustedProxies>,
}

pub(super) struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connections: Arc<Gauge>,
    /// Counts connections turned away.
    pub limited: Arc<AtomicU64>,
}

/// Serves `router` on `listener` until `shutdown` turns true, then lets open
/// connections finish their current request.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    front: Front,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE/ENFILE and friends: the socket stays in the backlog.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Some(slot) = ConnectionSlot::take(&limits.connections, limits.max_connections) else {
            limits.limited.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxies = front.proxies.clone();
        let service = router.clone().map_request(move |mut request: axum::extract::Request| {
            let client = proxies.client(remote, request.headers());
            request.extensions_mut().insert(ConnectInfo(client));
            request
        });
        let header_timeout = limits.header_timeout;
        let stop = shutdown.clone();
        let tls = front.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, service, header_timeout, stop).await,
                // A handshake that fails or dawdles closes the connection, quietly:
                // scanners and plain-HTTP clients do both all day.
                Some(tls) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, tls.acceptor.accept(stream)).await {
                        serve_connection(stream, service, header_timeout, stop).await;
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Serves HTTP/1.1 (and upgrades) on one connection until it ends or the server stops.
async fn serve_connection<I, S>(io: I, service: S, header_timeout: Duration, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let service = TowerToHyperService::new(
        service.map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
    );
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once the server is stopping (holding no borrow of the flag).
pub(super) async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}
