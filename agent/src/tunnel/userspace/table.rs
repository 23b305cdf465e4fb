//! The forwarding table of the userspace IP-in-IP data path: inner destination prefixes and the
//! nodes behind them, matched longest prefix first; the set of node addresses whose IP-in-IP
//! packets are accepted (RFC 2003 section 3 leaves that to the decapsulator; Calico accepts only
//! known nodes); and this node's own prefixes, the only inner destinations delivered.
//! [`Routes`] shares the current table with the data-path threads.
//!
//! The decapsulator's checks (RFC 2003 section 3.1 lets it drop what it will not forward) are a
//! strict reverse-path check: the inner source must be routed back through the node the packet
//! came from, and the inner destination must be this node's, so nobody can use a node as a
//! reflector into its pods or onward into the underlay with a forged inner packet.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ipnetwork::Ipv4Network;

/// The forwarding table and the checks on decapsulated packets.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Inner destination prefix -> the nodes behind it.
    routes: Prefixes<Box<[Ipv4Addr]>>,
    /// Every node address in the table, sorted: the outer sources accepted.
    nodes: Vec<u32>,
    /// This node's blocks and addresses: the inner destinations accepted.
    local: Prefixes<()>,
}

/// Prefixes with a value each, for longest-prefix match: one sorted level per prefix length
/// present, longest first (pod blocks make one or two levels).
#[derive(Debug)]
struct Prefixes<T> {
    levels: Vec<Level<T>>,
}

impl<T> Default for Prefixes<T> {
    fn default() -> Prefixes<T> {
        Prefixes { levels: Vec::new() }
    }
}

/// The prefixes of one length, sorted by network.
#[derive(Debug)]
struct Level<T> {
    mask: u32,
    length: u8,
    entries: Vec<(u32, T)>,
}

impl<T> Prefixes<T> {
    /// `entries` sorted by (length, network) with no duplicates, any order of lengths.
    fn new(mut entries: Vec<((u8, u32), T)>) -> Prefixes<T> {
        // Longest first; within a length, networks ascending.
        entries.sort_by(|a, b| b.0.0.cmp(&a.0.0).then(a.0.1.cmp(&b.0.1)));
        let mut prefixes = Prefixes::default();
        for ((length, network), value) in entries {
            let entry = (network, value);
            match prefixes.levels.last_mut() {
                Some(level) if level.length == length => level.entries.push(entry),
                _ => prefixes.levels.push(Level {
                    mask: mask(length),
                    length,
                    entries: vec![entry],
                }),
            }
        }
        prefixes
    }

    /// The value of the longest prefix holding `address`.
    fn lookup(&self, address: u32) -> Option<&T> {
        self.levels.iter().find_map(|level| {
            let key = address & level.mask;
            let index = level.entries.binary_search_by_key(&key, |e| e.0).ok()?;
            level.entries.get(index).map(|e| &e.1)
        })
    }
}

impl Table {
    /// `routes`: inner destination prefix -> nodes (duplicate prefixes merge their nodes;
    /// prefixes without nodes are left out). `local`: this node's blocks and addresses.
    pub(super) fn new(routes: Vec<(Ipv4Network, Vec<Ipv4Addr>)>, local: Vec<Ipv4Network>) -> Table {
        let mut merged: BTreeMap<(u8, u32), Vec<Ipv4Addr>> = BTreeMap::new();
        for (prefix, nodes) in routes {
            merged
                .entry((prefix.prefix(), u32::from(prefix.network())))
                .or_default()
                .extend(nodes);
        }
        let mut nodes_seen = Vec::new();
        let mut entries = Vec::with_capacity(merged.len());
        for (key, mut nodes) in merged {
            // Sorted, so the choice of a flow's node does not depend on the order given.
            nodes.sort();
            nodes.dedup();
            if nodes.is_empty() {
                continue;
            }
            nodes_seen.extend(nodes.iter().map(|n| u32::from(*n)));
            entries.push((key, nodes.into_boxed_slice()));
        }
        nodes_seen.sort_unstable();
        nodes_seen.dedup();
        let local: BTreeMap<(u8, u32), ()> = local
            .into_iter()
            .map(|p| ((p.prefix(), u32::from(p.network())), ()))
            .collect();
        Table {
            routes: Prefixes::new(entries),
            nodes: nodes_seen,
            local: Prefixes::new(local.into_iter().collect()),
        }
    }

    /// The nodes behind the longest prefix holding `destination`.
    pub(super) fn lookup(&self, destination: u32) -> Option<&[Ipv4Addr]> {
        self.routes.lookup(destination).map(|nodes| &**nodes)
    }

    /// Whether `address` is one of the nodes.
    pub(super) fn knows(&self, address: u32) -> bool {
        self.nodes.binary_search(&address).is_ok()
    }

    /// Whether `source` lies in the blocks of `node`: the longest prefix holding it is routed
    /// through `node` (a strict reverse-path check, so a /32 borrowed by another node wins over
    /// the block around it).
    pub(super) fn routed_via(&self, source: u32, node: u32) -> bool {
        self.lookup(source)
            .is_some_and(|nodes| nodes.contains(&Ipv4Addr::from(node)))
    }

    /// Whether `destination` is this node's: in one of its blocks or one of its addresses.
    pub(super) fn is_local(&self, destination: u32) -> bool {
        self.local.lookup(destination).is_some()
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
            vec![
                "10.244.1.0/26".parse().unwrap(),
                "192.168.0.9/32".parse().unwrap(),
            ],
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
    fn an_inner_source_belongs_to_a_node_only_through_the_longest_prefix_routed_via_it() {
        let table = table(&[
            ("10.244.2.0/26", &["192.168.0.2"]),
            ("10.244.2.7/32", &["192.168.0.3"]),
            ("10.244.4.0/26", &["192.168.0.2", "192.168.0.4"]),
        ]);
        let node = |a: &str| u32::from(addr(a));
        assert!(table.routed_via(node("10.244.2.1"), node("192.168.0.2")));
        assert!(!table.routed_via(node("10.244.2.1"), node("192.168.0.3")));
        // Borrowed by .3: no longer .2's.
        assert!(table.routed_via(node("10.244.2.7"), node("192.168.0.3")));
        assert!(!table.routed_via(node("10.244.2.7"), node("192.168.0.2")));
        // Either node of an ECMP set.
        assert!(table.routed_via(node("10.244.4.9"), node("192.168.0.4")));
        assert!(table.routed_via(node("10.244.4.9"), node("192.168.0.2")));
        // In no block at all.
        assert!(!table.routed_via(node("10.99.0.1"), node("192.168.0.2")));
    }

    #[test]
    fn only_this_nodes_blocks_and_addresses_are_local() {
        let table = table(&[("10.244.2.0/26", &["192.168.0.2"])]);
        let local = |a: &str| table.is_local(u32::from(addr(a)));
        assert!(local("10.244.1.0") && local("10.244.1.63") && local("192.168.0.9"));
        assert!(!local("10.244.1.64") && !local("10.244.2.1") && !local("192.168.0.8"));
        assert!(
            !Table::default().is_local(0x0af4_0101),
            "nothing is local before it is known"
        );
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
