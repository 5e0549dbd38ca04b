//! What a stranger can cost: per-client budgets and resources that release
//! themselves.
//!
//! Everything a client that has proved nothing can hold is bounded twice, once
//! server-wide and once per client address ([`ClientKey`]), and is held through a
//! guard that gives it back when dropped, so no exit path (an aborted upgrade, a
//! reset socket, a panic in a handler) can leak it:
//!
//! - [`ConnectionSlot`]: one of `max_connections` WebSocket connections;
//! - [`UnadmittedSlot`]: one of `max_unadmitted` sockets not yet admitted, and one
//!   of `max_unadmitted_per_address` for its address;
//!
//! Proofs and passkey registrations in progress over HTTP are held by no server:
//! they travel with the client, sealed ([`crate::sealed`]).
//!
//! Never: block, await, or hold a lock across an await.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Who a budget belongs to: a client's IP address, with IPv6 taken as its /64 (one
/// subscriber's network; a single host can use any address inside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => ClientKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    ClientKey(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A counter with a ceiling, shared by the guards it hands out.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
}

impl Gauge {
    fn try_take(&self, max: usize) -> bool {
        self.now.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    fn give_back(&self) {
        self.now.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn get(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }
}

/// One open WebSocket connection's place under `max_connections`.
pub struct ConnectionSlot {
    gauge: Arc<Gauge>,
}

impl ConnectionSlot {
    /// A slot if fewer than `max` are taken.
    pub fn take(gauge: &Arc<Gauge>, max: usize) -> Option<Self> {
        gauge.try_take(max).then(|| ConnectionSlot { gauge: gauge.clone() })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.gauge.give_back();
    }
}

/// Sockets not yet admitted: how many in all, and per client address.
#[derive(Default)]
pub struct Unadmitted {
    total: Gauge,
    by_client: Mutex<HashMap<ClientKey, usize>>,
}

impl Unadmitted {
    pub fn count(&self) -> usize {
        self.total.get()
    }

    /// Addresses that hold at least one unadmitted socket (what the map costs).
    pub fn addresses(&self) -> usize {
        lock(&self.by_client).len()
    }
}

/// Why a socket could not be given an unadmitted slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnadmittedRefusal {
    Server,
    Address,
}

/// One socket's place among the unadmitted, server-wide and for its address.
pub struct UnadmittedSlot {
    owner: Arc<Unadmitted>,
    client: ClientKey,
}

impl UnadmittedSlot {
    pub fn take(
        owner: &Arc<Unadmitted>,
        client: ClientKey,
        max: usize,
        per_client: usize,
    ) -> Result<Self, UnadmittedRefusal> {
        if !owner.total.try_take(max) {
            return Err(UnadmittedRefusal::Server);
        }
        let mut by_client = lock(&owner.by_client);
        let held = by_client.entry(client).or_insert(0);
        if *held >= per_client {
            if *held == 0 {
                by_client.remove(&client);
            }
            drop(by_client);
            owner.total.give_back();
            return Err(UnadmittedRefusal::Address);
        }
        *held += 1;
        Ok(UnadmittedSlot { owner: owner.clone(), client })
    }
}

impl Drop for UnadmittedSlot {
    fn drop(&mut self) {
        let mut by_client = lock(&self.owner.by_client);
        if let Some(held) = by_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                by_client.remove(&self.client);
            }
        }
        drop(by_client);
        self.owner.total.give_back();
    }
}

/// How many refusal rows one client address may write to one room's audit log per
/// minute. The rest are counted, and the count goes into the next row written for
/// that address and room, or into a summary row (see [`RowBudget::drain`]), so the
/// log says how many there were without a row for each.
pub struct RowBudget {
    limiter: governor::DefaultKeyedRateLimiter<(crate::ids::RoomId, ClientKey)>,
    held_back: Mutex<HashMap<(crate::ids::RoomId, ClientKey), u64>>,
}

impl RowBudget {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = std::num::NonZeroU32::new(per_minute).unwrap_or(std::num::NonZeroU32::MIN);
        RowBudget {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
            held_back: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a row may be written now for `client` in `room`; if so, how many
    /// were held back before it.
    pub fn take(&self, room: &crate::ids::RoomId, client: ClientKey) -> Option<u64> {
        let key = (room.clone(), client);
        if self.limiter.check_key(&key).is_ok() {
            Some(lock(&self.held_back).remove(&key).unwrap_or(0))
        } else {
            *lock(&self.held_back).entry(key).or_insert(0) += 1;
            None
        }
    }

    /// Every count held back and not yet reported, emptied: for summary rows.
    pub fn drain(&self) -> Vec<(crate::ids::RoomId, ClientKey, u64)> {
        let held = std::mem::take(&mut *lock(&self.held_back));
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        held.into_iter().map(|((room, client), n)| (room, client, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn client(n: u8) -> ClientKey {
        ClientKey::of(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn refusal_rows_are_budgeted_per_room_and_address() {
        let budget = RowBudget::new(3);
        let room = crate::ids::RoomId::generate();
        let written = (0..10).filter(|_| budget.take(&room, client(1)).is_some()).count();
        assert_eq!(written, 3);
        assert_eq!(budget.take(&room, client(2)), Some(0), "another address has its own budget");
        assert_eq!(budget.drain(), vec![(room, client(1), 7)]);
        assert!(budget.drain().is_empty());
    }

    #[test]
    fn ipv6_clients_are_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn unadmitted_slots_release_on_drop_and_cap_per_address() {
        let owner = Arc::new(Unadmitted::default());
        let a: Vec<_> = (0..2).map(|_| UnadmittedSlot::take(&owner, client(1), 10, 2).unwrap()).collect();
        assert_eq!(UnadmittedSlot::take(&owner, client(1), 10, 2).err(), Some(UnadmittedRefusal::Address));
        let b = UnadmittedSlot::take(&owner, client(2), 3, 2).unwrap();
        assert_eq!(UnadmittedSlot::take(&owner, client(3), 3, 2).err(), Some(UnadmittedRefusal::Server));
        drop(a);
        drop(b);
        assert_eq!((owner.count(), owner.addresses()), (0, 0));
    }
}
