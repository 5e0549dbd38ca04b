//! Method `ticket`: a one-time ticket the native client obtained by proving a key
//! (ssh or PIV) for a room, redeemed by the browser it opened.
//!
//! ```text
//! keygate join URL --ssh                     keygate
//!   ── request {roomId, ticket: true} ─────▶ |
//!   ◀── challenge ───────────────────────── |
//!   ── auth {method: "ssh", …} ────────────▶ |  whitelist, signature: as for joining
//!   ◀── ticket {ticket, expiresIn} ───────── |  single use, 60 s, this room, this identity
//! browser opens URL#ticket=T (the fragment never reaches a server log)
//!   ── request {roomId} ; auth {method: "ticket", payload, ticket: T} ─▶ admitted
//! ```

//!
//! Tickets are state (issued here, taken once), not a proof: the admission
//! pipeline redeems them where the other methods' claims are parsed.

use crate::identity::Identity;
use crate::ids::RoomId;
use crate::store::{Store, StoreError, StoredTicket};
use chrono::{SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Most tickets one key may hold unredeemed at once (each lives `ticket_ttl`, 60 s
/// by default; a person runs `keygate join` once per call). Only a proven,
/// listed key gets a ticket at all.
const MAX_TICKETS_PER_KEY: i64 = 16;

/// What the store keeps a ticket under: its SHA-256, so a database reader holds
/// nothing it could present.
fn hash(ticket: &str) -> String {
    crate::ids::hex(&Sha256::digest(ticket.as_bytes()))
}

fn time_text(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Issues a ticket for `identity` to join `room` within `ttl`, kept in the store so
/// that any server of the service can redeem it (once). `None` when the key holds
/// too many unredeemed.
pub async fn issue(
    store: &Store,
    room: &RoomId,
    identity: &Identity,
    ttl: Duration,
) -> Result<Option<String>, StoreError> {
    let ticket = crate::ids::hex(&crate::ids::random_bytes::<24>());
    let expires = chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .unwrap_or_else(|| Utc::now() + chrono::Duration::days(365));
    let stored = StoredTicket {
        room_id: room.to_string(),
        identity: identity.did().to_string(),
        expires_at: time_text(expires),
    };
    Ok(store.put_ticket(&hash(&ticket), &stored, MAX_TICKETS_PER_KEY).await?.then_some(ticket))
}

/// Takes a ticket (single use, whatever follows, on every server): its identity if
/// it is for `room` and unexpired; otherwise why not, for the audit log.
pub async fn redeem(store: &Store, ticket: &str, room: &RoomId) -> Result<Identity, &'static str> {
    // A ticket is 48 hex digits; anything else was never issued.
    if ticket.len() != 48 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("unknown or already used ticket");
    }
    let t = match store.take_ticket(&hash(ticket)).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err("unknown or already used ticket"),
        Err(e) => {
            tracing::error!(error = %e, "ticket lookup failed");
            return Err("the ticket could not be looked up");
        }
    };
    if t.expires_at <= time_text(Utc::now()) {
        return Err("expired ticket");
    }
    if t.room_id != room.as_str() {
        return Err("ticket for another room");
    }
    Identity::parse(&t.identity).map_err(|_| "unreadable ticket")
}
