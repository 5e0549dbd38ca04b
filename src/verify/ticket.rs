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

use super::{Claim, Evidence, Method, Verifier, VerifyError};
use crate::challenge::IssuedChallenge;
use crate::identity::Identity;
use crate::ids::RoomId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

    /// Takes a ticket (single use): its identity if it is for `room` and unexpired.
    fn redeem(&self, ticket: &str, room: &RoomId) -> Result<Identity, VerifyError> {
        let t =
            self.lock().remove(ticket).ok_or_else(|| VerifyError::Policy("unknown or already used ticket".into()))?;
        if t.expires <= Instant::now() {
            return Err(VerifyError::Policy("expired ticket".into()));
        }
        if t.room != *room {
            return Err(VerifyError::Policy("ticket for another room".into()));
        }
        Ok(t.identity)
    }
}

pub struct TicketVerifier {
    tickets: Arc<Tickets>,
}

impl TicketVerifier {
    pub fn new(tickets: Arc<Tickets>) -> Self {
        TicketVerifier { tickets }
    }
}

impl Verifier for TicketVerifier {
    fn method(&self) -> Method {
        Method::Ticket
    }

    fn claim(&self, _auth: &serde_json::Value) -> Result<Claim, VerifyError> {
        Err(VerifyError::Unusable("a ticket answers a challenge for its room".into()))
    }

    fn claim_for(&self, auth: &serde_json::Value, issued: &IssuedChallenge) -> Result<Claim, VerifyError> {
        let ticket = auth
            .get("ticket")
            .and_then(|t| t.as_str())
            .ok_or_else(|| VerifyError::Malformed("missing ticket".into()))?;
        // Redeemed here, before the whitelist check: a ticket is single use whatever
        // follows. Its proof was the signature that obtained it.
        let identity = self.tickets.redeem(ticket, &issued.room)?;
        Ok(Claim::new(identity, |_| Ok(Evidence::default())))
    }
}
