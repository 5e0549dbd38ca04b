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
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most tickets outstanding at once, server-wide.
const MAX_TICKETS: usize = 100_000;

struct Ticket {
    room: RoomId,
    identity: Identity,
    expires: Instant,
}

/// Tickets issued and not yet redeemed.
#[derive(Default)]
pub struct Tickets {
    open: Mutex<HashMap<String, Ticket>>,
}

impl Tickets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ticket>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a ticket for `identity` to join `room` within `ttl`.
    pub fn issue(&self, room: &RoomId, identity: &Identity, ttl: Duration) -> Option<String> {
        let mut open = self.lock();
        let now = Instant::now();
        open.retain(|_, t| t.expires > now);
        if open.len() >= MAX_TICKETS {
            return None;
        }
        let ticket = crate::ids::hex(&crate::ids::random_bytes::<24>());
        open.insert(ticket.clone(), Ticket { room: room.clone(), identity: identity.clone(), expires: now + ttl });
        Some(ticket)
    }

    /// Takes a ticket (single use, whatever follows): its identity if it is for
    /// `room` and unexpired; otherwise why not, for the audit log.
    pub fn redeem(&self, ticket: &str, room: &RoomId) -> Result<Identity, &'static str> {
        let t = self.lock().remove(ticket).ok_or("unknown or already used ticket")?;
        if t.expires <= Instant::now() {
            return Err("expired ticket");
        }
        if t.room != *room {
            return Err("ticket for another room");
        }
        Ok(t.identity)
    }

    /// Forgets expired tickets.
    pub fn prune(&self) {
        let now = Instant::now();
        self.lock().retain(|_, t| t.expires > now);
    }
}
