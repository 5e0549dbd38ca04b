//! The state one server shares between its sockets and its pages, built once from
//! the settings: the store, live rooms, the proof methods and their relying party,
//! tickets, the audit log, the refusal budget and the counters.

use crate::config::Settings;
use crate::identity::Identity;
use crate::rooms::Rooms;
use crate::store::{AuditLog, Store};
use crate::verify::webauthn::Passkeys;
use crate::verify::{Method, Verifiers};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything the sessions and handlers share. One per server.
pub struct Gateway {
    pub settings: Settings,
    /// The origin put into challenges (computed once from the settings).
    pub origin: String,
    pub store: Store,
    pub rooms: Arc<Rooms>,
    pub verifiers: Verifiers,
    /// The WebAuthn relying party (registration and the WebAuthn half of challenges).
    pub passkeys: Arc<Passkeys>,
    /// Tokens that let a peer back in after its socket dropped (method `resume`).
    pub resumes: crate::resume::Resumes,
    /// Challenges issued over HTTP (sign-in, invites), sealed into their ids.
    pub http_challenges: crate::admission::Pending,
    pub audit: AuditLog,
    /// Refusal rows per room and client address (strangers cannot fill the log).
    pub refusal_rows: crate::limits::RowBudget,
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub stats: Arc<Stats>,
    /// What `/metrics` exports.
    pub metrics: crate::metrics::Metrics,
    /// keygate's rooms on Janus, with `janus` set.
    pub sfu: Option<Arc<crate::sfu::relay::Sfu>>,
}

/// Settings that cannot be used as given.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Gateway {
    /// Builds the shared state over an open store. `settings` are taken as final
    /// (the server has already bound its port and fitted its limits).
    pub fn build(
        mut settings: Settings,
        store: Store,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Gateway, ConfigError> {
        // Operators may name room creators in any key format; compare DIDs.
        settings.room_creators = settings
            .room_creators
            .iter()
            .map(|k| {
                Identity::parse(k)
                    .map(|i| i.did().to_string())
                    .map_err(|e| ConfigError(format!("room_creators entry '{k}': {e}")))
            })
            .collect::<Result<_, _>>()?;
        let anchors = crate::verify::PivVerifier::load_anchors(&settings.piv_attestation_roots)
            .map_err(|e| ConfigError(format!("piv_attestation_roots: {e}")))?;
        let passkeys = Arc::new(
            Passkeys::new(&settings.webauthn_rp_id(), &settings.webauthn_origins())
                .map_err(|e| ConfigError(e.to_string()))?,
        );
        let verifiers = Verifiers::new(anchors, Some(passkeys.core()));
        let (audit, _writer) = AuditLog::start(store.clone());
        let stats = Arc::new(Stats::default());
        let rooms = Arc::new(Rooms::new(store.clone()));
        Ok(Gateway {
            origin: settings.public_origin(),
            refusal_rows: crate::limits::RowBudget::new(settings.refusal_rows_per_minute),
            metrics: crate::metrics::Metrics::new(stats.clone(), rooms.clone()),
            sfu: None,
            rooms,
            passkeys,
            resumes: crate::resume::Resumes::ephemeral(),
            http_challenges: crate::admission::Pending::ephemeral(),
            verifiers,
            audit,
            settings,
            store,
            shutdown,
            stats,
        })
    }

    /// Drives Janus over `janus` from now on: rooms set to `sfu` or `auto` use it.
    /// Its rooms' secrets derive from `key` (kept in the database).
    pub fn with_janus(mut self, janus: Option<Arc<crate::sfu::janus::Janus>>, key: &[u8]) -> Self {
        // A room's cap is the server's, or its own (at most 32 on the host page).
        let publishers = self.settings.max_peers_per_room.max(32) as u64;
        self.sfu = janus.map(|j| Arc::new(crate::sfu::relay::Sfu::new(j, key, publishers)));
        if let Some(sfu) = &self.sfu {
            self.rooms.use_sfu(self.settings.sfu_from);
            self.metrics.use_sfu(sfu.clone());
        }
        self
    }

    /// Resume tokens, HTTP challenges and passkey registrations MAC'd with keys kept
    /// in the database, so that they outlive a restart and every server of the
    /// service accepts them.
    pub fn with_keys(mut self, resume: &[u8], sealed_state: &[u8]) -> Self {
        self.resumes = crate::resume::Resumes::new(resume);
        self.http_challenges = crate::admission::Pending::new(sealed_state);
        self.passkeys = Arc::new(self.passkeys.with_secret(sealed_state));
        self
    }

    /// The whitelist service over this server's store and live rooms: every change
    /// to who may enter goes through it.
    pub fn whitelist(&self) -> crate::whitelist::Whitelist<'_> {
        crate::whitelist::Whitelist::new(&self.store, Some(&self.rooms))
    }

    /// Every method this server accepts, in a stable order.
    pub fn methods(&self) -> Vec<Method> {
        let mut all = self.verifiers.methods();
        all.extend([Method::Ticket, Method::Resume]);
        all.sort_by_key(|m| m.as_str());
        all
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
    /// Signature checks run ([`crate::verify::Claim::check`]): an unknown key costs none.
    pub signature_checks: AtomicU64,
    /// Connections and requests turned away by a limit.
    pub limited: Arc<AtomicU64>,
}
