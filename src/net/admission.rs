//! Connection limits of the whole broker (Kafka's `max.connections` and
//! `max.connections.per.ip`). Every shard accepts on its own socket and the kernel spreads one
//! client's connections over all of them, so a per-shard share of either limit would refuse
//! clients well below it; the counts are atomics shared by every shard instead, which no shard
//! ever waits on.
//!
//! Per-address counts live in a fixed table of atomic slots, each holding a keyed hash of the
//! address and a count. An address's count is the sum of the slots in its probe window that
//! hold its hash: two shards admitting the same new address at once may each claim a slot,
//! and the sum still counts both. A connection first counts itself, then checks, and backs
//! out when over, so racing shards may refuse one connection too many but never admit one.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use glommio::net::TcpStream;

use super::close_log::{self, CloseKind};

/// Slots of the per-address table: twice the connections it must hold, within these bounds.
const ADDRESS_SLOTS_MIN: usize = 256;
const ADDRESS_SLOTS_MAX: usize = 1 << 20;
/// Slots an address may occupy, starting at its hash.
const PROBE_WINDOW_SLOTS: usize = 16;
/// A slot holds the address's hash in its high bits and the count in its low bits; 0 is free.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

impl Refusal {
    pub fn config_key(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

pub struct Admission {
    connections_max: usize,
    connections_per_ip_max: usize,
    open: AtomicUsize,
    /// `None` when the per-address limit cannot bind before the total does.
    addresses: Option<AddressTable>,
}

impl Admission {
    pub fn new(connections_max: usize, connections_per_ip_max: usize) -> Self {
        let per_ip_max = connections_per_ip_max.min(COUNT_MASK as usize - 1);
        let addresses = (per_ip_max < connections_max).then(|| {
            let slots = connections_max
                .saturating_mul(2)
                .clamp(ADDRESS_SLOTS_MIN, ADDRESS_SLOTS_MAX)
                .next_power_of_two();
            AddressTable::new(slots)
        });
        Admission {
            connections_max,
            connections_per_ip_max: per_ip_max,
            open: AtomicUsize::new(0),
            addresses,
        }
    }

    /// Counts a new connection from `ip`, or says which limit it is over. The returned guard
    /// uncounts it when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.connections_max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::MaxConnections);
        }
        let mut admitted = Admitted {
            admission: Arc::clone(self),
            address_slot: None,
        };
        if let Some(table) = &self.addresses {
            let key = table.key(ip);
            // A table with no slot left in the window does not count the address: refusing a
            // client for a full table would be worse, and the total still holds.
            if let Some(slot) = table.increment(key) {
                admitted.address_slot = Some((slot, key));
                if table.count(key) > self.connections_per_ip_max as u64 {
                    return Err(Refusal::MaxConnectionsPerIp); // `admitted` uncounts on drop.
                }
            }
        }
        Ok(admitted)
    }
}

/// Admits a connection just accepted, or closes it with a rate-limited log line and a count of
/// the limit it was over.
pub fn admit_stream(admission: &Arc<Admission>, stream: &TcpStream) -> Option<Admitted> {
    // A peer gone before it was admitted needs neither a count nor a line.
    let peer = stream.peer_addr().ok()?;
    match admission.admit(peer.ip()) {
        Ok(admitted) => Some(admitted),
        Err(refusal) => {
            crate::metrics::connection_refused(refusal.config_key());
            let (kind, limit) = match refusal {
                Refusal::MaxConnections => (CloseKind::MaxConnections, admission.connections_max),
                Refusal::MaxConnectionsPerIp => (
                    CloseKind::MaxConnectionsPerIp,
                    admission.connections_per_ip_max,
                ),
            };
            let reason = format!("{} ({limit}) reached", refusal.config_key());
            close_log::record(kind, &peer.to_string(), &reason);
            None
        }
    }
}

/// One admitted connection, uncounted on drop.
pub struct Admitted {
    admission: Arc<Admission>,
    address_slot: Option<(usize, u64)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let (Some((slot, key)), Some(table)) = (self.address_slot, &self.admission.addresses) {
            table.decrement(slot, key);
        }
        let previous = self.admission.open.fetch_sub(1, Ordering::AcqRel);
        assert!(previous > 0);
    }
}

struct AddressTable {
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl AddressTable {
    fn new(slot_count: usize) -> Self {
        assert!(slot_count.is_power_of_two() && slot_count >= PROBE_WINDOW_SLOTS);
        AddressTable {
            slots: (0..slot_count).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// A keyed hash of the address, never 0, shifted above the count bits. Keyed, so that a
    /// client cannot choose addresses that share a key.
    fn key(&self, ip: IpAddr) -> u64 {
        let hash = self.hasher.hash_one(ip.to_canonical());
        (hash << COUNT_BITS).max(1 << COUNT_BITS)
    }

    fn window(&self, key: u64) -> impl Iterator<Item = usize> {
        let mask = self.slots.len() - 1;
        let start = (key >> COUNT_BITS) as usize;
        (0..PROBE_WINDOW_SLOTS).map(move |i| (start + i) & mask)
    }

    /// Adds one to a slot holding `key`, or claims a free one; which slot, or `None` when the
    /// window is full of other addresses.
    fn increment(&self, key: u64) -> Option<usize> {
        for slot in self.window(key) {
            let cell = &self.slots[slot];
            let mut value = cell.load(Ordering::Acquire);
            while value & !COUNT_MASK == key {
                match cell.compare_exchange(value, value + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(slot),
                    Err(now) => value = now,
                }
            }
        }
        self.window(key).find(|&slot| {
            self.slots[slot]
                .compare_exchange(0, key | 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    fn count(&self, key: u64) -> u64 {
        self.window(key)
            .map(|slot| self.slots[slot].load(Ordering::Acquire))
            .filter(|value| value & !COUNT_MASK == key)
            .map(|value| value & COUNT_MASK)
            .sum()
    }

    /// Takes one off `slot`, which this connection's `increment` keeps holding `key`; the
    /// slot is free again at 0.
    fn decrement(&self, slot: usize, key: u64) {
        let cell = &self.slots[slot];
        let mut value = cell.load(Ordering::Acquire);
        loop {
            assert!(value & !COUNT_MASK == key && value & COUNT_MASK > 0);
            let next = if value & COUNT_MASK == 1 {
                0
            } else {
                value - 1
            };
            match cell.compare_exchange(value, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => value = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_and_the_per_address_limits_hold_and_free_on_drop() {
        let admission = Arc::new(Admission::new(5, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::MaxConnectionsPerIp));
        let _b1 = admission.admit(b).unwrap();
        let _b2 = admission.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::MaxConnectionsPerIp));
        let _c = admission.admit("10.0.0.3".parse().unwrap()).unwrap();
        assert_eq!(
            admission.admit("10.0.0.4".parse().unwrap()).err(),
            Some(Refusal::MaxConnections)
        );
        drop(a1);
        let _a3 = admission.admit(a).unwrap();
        assert_eq!(admission.open.load(Ordering::Acquire), 5);
    }

    #[test]
    fn slots_are_freed_when_their_count_reaches_zero() {
        let admission = Arc::new(Admission::new(1000, 3));
        for round in 0..3 {
            let held: Vec<_> = (0..300)
                .map(|i| admission.admit(IpAddr::from([10, round, 0, i as u8])))
                .collect::<Result<_, _>>()
                .unwrap();
            drop(held);
        }
        let table = admission.addresses.as_ref().unwrap();
        assert!(table.slots.iter().all(|s| s.load(Ordering::Acquire) == 0));
        assert_eq!(admission.open.load(Ordering::Acquire), 0);
    }
}
