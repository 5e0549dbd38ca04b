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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub stats: Stats,
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub admissions: AtomicU64,
    pub refusals: AtomicU64,
}

impl Stats {
    /// Reserves a connection slot if fewer than `max` are open.
    pub fn try_connect(&self, max: usize) -> bool {
        self.connections.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    pub fn disconnect(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
