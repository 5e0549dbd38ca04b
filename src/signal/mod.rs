//! Signaling: the protocol, live rooms, and the per-socket session loop.
//!
//! A socket's frames enter [`session::run`], which issues challenges
//! ([`crate::challenge`]), checks proofs ([`crate::verify`]) against whitelists
//! ([`rooms::Rooms`], backed by [`crate::store`]), and then relays between the
//! admitted peers of one room. Nothing here parses keys or runs SQL directly.

pub mod ice;
pub mod protocol;
pub mod rooms;
pub mod session;

use crate::config::Settings;
use crate::store::{AuditLog, Store};
use crate::verify::Verifiers;
use rooms::Rooms;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything the sessions share. One per server.
pub struct Gateway {
    pub settings: Settings,
    /// The origin put into challenges (computed once from the settings).
    pub origin: String,
    pub store: Store,
    pub rooms: Arc<Rooms>,
    pub verifiers: Verifiers,
    /// The WebAuthn relying party (registration and the WebAuthn half of challenges).
    pub passkeys: Arc<crate::passkeys::Passkeys>,
    /// One-time tickets issued to native clients (method `ticket`).
    pub tickets: Arc<crate::verify::ticket::Tickets>,
    pub audit: AuditLog,
    /// Refusal rows per room and client address (strangers cannot fill the log).
    pub refusal_rows: crate::limits::RowBudget,
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub stats: Stats,
}

impl Gateway {
    /// The whitelist service over this server's store and live rooms: every change
    /// to who may enter goes through it.
    pub fn whitelist(&self) -> crate::whitelist::Whitelist<'_> {
        crate::whitelist::Whitelist::new(&self.store, Some(&self.rooms))
    }
}

/// Counters exported on `/metrics`, and the gauges behind the connection limits.
#[derive(Default)]
pub struct Stats {
    /// Open WebSocket connections, admitted or not (`max_connections`).
    pub connections: Arc<crate::limits::Gauge>,
    /// Sockets not yet admitted, in all and per address (`max_unadmitted…`).
    pub unadmitted: Arc<crate::limits::Unadmitted>,
    /// HTTP connections open now (`max_http_connections`), upgrades excluded.
    pub http_connections: Arc<crate::limits::Gauge>,
    pub admissions: AtomicU64,
    pub refusals: AtomicU64,
    /// Connections and requests turned away by a limit.
    pub limited: Arc<AtomicU64>,
}
