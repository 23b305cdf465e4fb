//! The forwarding table of the userspace IP-in-IP data path: inner destination prefixes and the
//! nodes behind them, matched longest prefix first, and the set of node addresses whose IP-in-IP
//! packets are accepted (RFC 2003 section 3 leaves that to the decapsulator; Calico accepts only
//! known nodes). [`Routes`] shares the current table with the data-path threads.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ipnetwork::Ipv4Network;

/// Inner destination prefixes and the nodes behind them, for longest-prefix match: one sorted
/// level per prefix length present, longest first (pod blocks make one or two levels).
#[derive(Debug, Default)]
pub(super) struct Table {
    levels: Vec<Level>,
    /// Every node address in the table, sorted: the outer sources accepted.
    nodes: Vec<u32>,
}

/// The prefixes of one length, sorted by network.
#[derive(Debug)]
struct Level {
    mask: u32,
    length: u8,
    entries: Vec<(u32, Box<[Ipv4Addr]>)>,
}

impl Table {
    /// Duplicate prefixes merge their nodes; prefixes without nodes are left out.
    pub(super) fn new(routes: Vec<(Ipv4Network, Vec<Ipv4Addr>)>) -> Table {
        let mut merged: BTreeMap<(u8, u32), Vec<Ipv4Addr>> = BTreeMap::new();
        for (prefix, nodes) in routes {
            merged
                .entry((prefix.prefix(), u32::from(prefix.network())))
                .or_default()
                .extend(nodes);
        }
        let mut table = Table::default();
        // Longest first; within a length, networks ascending.
        let mut by_length: Vec<_> = merged.into_iter().collect();
        by_length.sort_by(|a, b| b.0.0.cmp(&a.0.0).then(a.0.1.cmp(&b.0.1)));
        for ((length, network), mut nodes) in by_length {
            // Sorted, so the choice of a flow's node does not depend on the order given.
            nodes.sort();
            nodes.dedup();
            if nodes.is_empty() {
                continue;
            }
            table.nodes.extend(nodes.iter().map(|n| u32::from(*n)));
            let entry = (network, nodes.into_boxed_slice());
            match table.levels.last_mut() {
                Some(level) if level.length == length => level.entries.push(entry),
                _ => table.levels.push(Level {
                    mask: mask(length),
                    length,
                    entries: vec![entry],
                }),
            }
        }
        table.nodes.sort_unstable();
        table.nodes.dedup();
        table
    }

    /// The nodes behind the longest prefix holding `destination`.
    pub(super) fn lookup(&self, destination: u32) -> Option<&[Ipv4Addr]> {
        self.levels.iter().find_map(|level| {
            let key = destination & level.mask;
            let index = level.entries.binary_search_by_key(&key, |e| e.0).ok()?;
            level.entries.get(index).map(|e| &*e.1)
        })
    }

    /// Whether `address` is one of the nodes.
    pub(super) fn knows(&self, address: u32) -> bool {
        self.nodes.binary_search(&address).is_ok()
    }
}

fn mask(length: u8) -> u32 {
    u32::MAX
        .checked_shl(32_u32.saturating_sub(u32::from(length)))
        .unwrap_or(0)
}

/// The table, replaced whole by the agent. Each thread keeps its own `Arc` of the current table
/// and takes the lock only when the generation says it was replaced.
#[derive(Debug, Default)]
pub(super) struct Routes {
    generation: AtomicU64,
    table: RwLock<Arc<Table>>,
}

impl Routes {
    pub(super) fn replace(&self, table: Table) {
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current table, refreshing `cached` if it was replaced.
    pub(super) fn current<'a>(&self, cached: &'a mut (u64, Arc<Table>)) -> &'a Table {
        let generation = self.generation.load(Ordering::Acquire);
        if cached.0 != generation {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            *cached = (generation, Arc::clone(&table));
        }
        &cached.1
    }

    pub(super) fn snapshot(&self) -> (u64, Arc<Table>) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), Arc::clone(&table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn table(routes: &[(&str, &[&str])]) -> Table {
        Table::new(
            routes
                .iter()
                .map(|(prefix, nodes)| {
                    (
                        prefix.parse().unwrap(),
                        nodes.iter().map(|n| addr(n)).collect(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_lookup_returns_the_nodes_of_the_longest_matching_prefix() {
        let table = table(&[
            ("10.244.0.0/16", &["192.168.0.1"]),
            ("10.244.2.0/26", &["192.168.0.2"]),
        ]);
        assert_eq!(table.lookup(0x0af4_0201), Some(&[addr("192.168.0.2")][..]));
        assert_eq!(table.lookup(0x0af4_0101), Some(&[addr("192.168.0.1")][..]));
        assert!(table.lookup(0x0a00_0001).is_none());
        assert!(table.knows(0xc0a8_0001));
        assert!(!table.knows(0xc0a8_0009));
    }

    #[test]
    fn a_replaced_table_reaches_a_cached_reader() {
        let routes = Routes::default();
        let mut cached = routes.snapshot();
        assert!(routes.current(&mut cached).lookup(0x0af4_0201).is_none());
        routes.replace(table(&[("10.244.2.0/26", &["192.168.0.2"])]));
        let nodes = routes.current(&mut cached).lookup(0x0af4_0201);
        assert_eq!(nodes, Some(&[addr("192.168.0.2")][..]));
        assert!(routes.current(&mut cached).knows(0xc0a8_0002));
    }
}
