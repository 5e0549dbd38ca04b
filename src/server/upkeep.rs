//! Upkeep, every minute until shutdown: what expired is forgotten, refusals that
//! were counted rather than logged get their summary row, and database rows past
//! their time are deleted.

use crate::web::AppState;
use std::time::Duration;
use tokio::sync::watch;

/// How often expired state is forgotten.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Forgets expired state every minute until shutdown.
pub(super) async fn maintain(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => maintain_once(&state).await,
            _ = super::accept::stopped(&mut shutdown) => return,
        }
    }
}

/// One round of upkeep: expired challenges, registrations and limiter memory; a
/// summary row for refusals that were counted rather than logged; and the database
/// rows past their time (audit rows past the retention, lapsed sessions and invites).
pub(super) async fn maintain_once(state: &AppState) {
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
