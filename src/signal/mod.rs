//! Signaling: the protocol, live rooms, and the per-socket session loop.
//!
//! A socket's frames enter [`session::run`], which has challenges issued and
//! answers redeemed by the one proof pipeline ([`crate::admission`]), and then
//! relays between the admitted peers of one room ([`crate::rooms::Rooms`], whose
//! whitelist caches follow the store's change log). The frames are those of
//! [`crate::protocol`]. Nothing here parses keys or runs SQL directly.

pub mod ice;
pub mod session;
