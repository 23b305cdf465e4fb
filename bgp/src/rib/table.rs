//! The Loc-RIB: for every prefix, the paths learned from peers (their Adj-RIB-In, after import
//! policy) and originated locally, kept with the best path first and its ECMP companions after it.
//!
//! Memory is the design constraint (routes x peers): a path is 16 octets, its attribute set and
//! next hop are interned and shared by every route that carries them, and a prefix with a single
//! path stores it inline with no allocation of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::decision::{self, Candidate, Decision, Options, Reason, Source};
use crate::wire::{NextHop, PathAttributes};

/// A path's attributes and next hop: what routes from one UPDATE share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttributes {
    /// The path attributes (NEXT_HOP is carried in `next_hop`, not here).
    pub attributes: PathAttributes,
    /// Where to forward.
    pub next_hop: NextHop,
}

/// An interned, shared [`RouteAttributes`].
pub type Attributes = Arc<RouteAttributes>;

/// Interns attribute sets so equal ones are stored once.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Attributes>,
}

impl Interner {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: RouteAttributes) -> Attributes {
        if let Some(existing) = self.set.get(&value) {
            return existing.clone();
        }
        let shared = Arc::new(value);
        self.set.insert(shared.clone());
        shared
    }

    /// Drops the sets no route uses any more.
    pub fn sweep(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
    }

    /// How many distinct sets are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none are held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Index of a route source: a peer, or [`PeerId::LOCAL`] for routes we originate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u16);

impl PeerId {
    /// Routes this speaker originates.
    pub const LOCAL: PeerId = PeerId(0);
}

/// Flags on a path.
pub mod path_flags {
    /// Kept across the peer's restart (RFC 4724), waiting to be refreshed or swept.
    pub const STALE: u8 = 1;
    /// Kept as long-lived stale (RFC 9494): least preferred.
    pub const LLGR_STALE: u8 = 2;
}

/// One path to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Attributes and next hop.
    pub attributes: Attributes,
    /// Where it came from.
    pub peer: PeerId,
    /// The ADD-PATH identifier the peer gave it (0 without ADD-PATH).
    pub path_id: u32,
    /// [`path_flags`].
    pub flags: u8,
}

impl Path {
    /// Kept from a restarting peer (RFC 4724) until it sends End-of-RIB again.
    pub fn is_stale(&self) -> bool {
        self.flags & path_flags::STALE != 0
    }

    /// Kept as long-lived stale (RFC 9494): least preferred.
    pub fn is_long_lived_stale(&self) -> bool {
        self.flags & path_flags::LLGR_STALE != 0
    }
}

/// The paths of one prefix: inline when there is one, boxed otherwise.
#[derive(Debug, Clone)]
enum Paths {
    One(Path),
    Many(Vec<Path>),
}

impl Paths {
    fn as_slice(&self) -> &[Path] {
        match self {
            Paths::One(path) => std::slice::from_ref(path),
            Paths::Many(paths) => paths,
        }
    }
}

/// A prefix's entry: its paths, best first, then the rest of the ECMP set.
#[derive(Debug, Clone)]
struct Entry {
    paths: Paths,
    /// How many paths from the front form the ECMP set (at least 1).
    multipath: u8,
    reason: Reason,
}

/// The best path of a prefix and its ECMP set, as reported to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Best {
    /// The paths of the ECMP set, best first.
    pub paths: Vec<Path>,
    /// Why the best one won.
    pub reason: Reason,
}

/// What a change did to a prefix's best path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The best path before the change, if there was one (what peers were last told).
    pub previous: Option<Path>,
    /// The ECMP set now, or `None` when no path is left.
    pub current: Option<Best>,
}

/// The result of adding or removing a path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edit {
    /// The best path changed like this.
    pub change: Option<Change>,
    /// Paths added (1 for a new path, 0 for a replacement) or removed.
    pub count: usize,
}

/// What the decision process needs to know about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Learned over eBGP.
    pub external: bool,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer's address.
    pub address: IpAddr,
}

/// A table keyed by prefix, split by family so IPv4 keys stay small, and ordered so that listings
/// page through it without sorting or copying the whole table.
#[derive(Debug)]
struct Map<K> {
    entries: BTreeMap<K, Entry>,
}

impl<K> Default for Map<K> {
    fn default() -> Self {
        Map {
            entries: BTreeMap::new(),
        }
    }
}

/// The Loc-RIB.
#[derive(Debug, Default)]
pub struct Table {
    v4: Map<Ipv4Network>,
    v6: Map<Ipv6Network>,
    peers: HashMap<PeerId, PeerInfo>,
    /// Decision options.
    pub options: Options,
}

const LOCAL_SOURCE: Source = Source {
    local: true,
    external: false,
    peer_router_id: Ipv4Addr::UNSPECIFIED,
    peer_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
};

impl Table {
    /// An empty table deciding with `options`.
    pub fn new(options: Options) -> Table {
        Table {
            options,
            ..Table::default()
        }
    }

    /// Registers (or updates) what the decision process needs to know about a peer.
    pub fn set_peer(&mut self, peer: PeerId, info: PeerInfo) {
        self.peers.insert(peer, info);
    }

    /// How many prefixes have at least one path.
    pub fn len(&self) -> usize {
        self.v4.entries.len() + self.v6.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces the path `(peer, path_id)` to `prefix`. Returns the new best when it
    /// changed.
    pub fn insert(&mut self, prefix: IpNetwork, path: Path) -> Edit {
        let (options, peers) = (self.options, &self.peers);
        match prefix {
            IpNetwork::V4(net) => upsert(&mut self.v4, net, path, options, peers),
            IpNetwork::V6(net) => upsert(&mut self.v6, net, path, options, peers),
        }
    }

    /// Removes the path `(peer, path_id)` from `prefix`. Returns the new best when it changed.
    pub fn remove(&mut self, prefix: IpNetwork, peer: PeerId, path_id: u32) -> Edit {
        let (options, peers) = (self.options, &self.peers);
        let matches = |p: &Path| p.peer == peer && p.path_id == path_id;
        match prefix {
            IpNetwork::V4(net) => remove_where(&mut self.v4, net, matches, options, peers),
            IpNetwork::V6(net) => remove_where(&mut self.v6, net, matches, options, peers),
        }
    }

    /// The ECMP set of `prefix`, best first.
    pub fn best(&self, prefix: IpNetwork) -> Option<Best> {
        let entry = match prefix {
            IpNetwork::V4(net) => self.v4.entries.get(&net),
            IpNetwork::V6(net) => self.v6.entries.get(&net),
        }?;
        Some(best_of(entry))
    }

    /// Every path to `prefix`, best first.
    pub fn paths(&self, prefix: IpNetwork) -> &[Path] {
        let entry = match prefix {
            IpNetwork::V4(net) => self.v4.entries.get(&net),
            IpNetwork::V6(net) => self.v6.entries.get(&net),
        };
        entry.map_or(&[], |e| e.paths.as_slice())
    }

    /// Up to `limit` prefixes after `after` (all IPv4 before IPv6), each with its ECMP set and
    /// why the best path won, in one walk.
    pub fn page(&self, after: Option<IpNetwork>, limit: usize) -> Vec<(IpNetwork, Best)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let ecmp = best_of;
        let v4_start = match after {
            None => Unbounded,
            Some(IpNetwork::V4(net)) => Excluded(net),
            Some(IpNetwork::V6(_)) => {
                return self
                    .v6
                    .entries
                    .range((v6_bound(after), Unbounded))
                    .take(limit)
                    .map(|(n, e)| (IpNetwork::V6(*n), ecmp(e)))
                    .collect();
            }
        };
        let mut out: Vec<(IpNetwork, Best)> = self
            .v4
            .entries
            .range((v4_start, Unbounded))
            .take(limit)
            .map(|(n, e)| (IpNetwork::V4(*n), ecmp(e)))
            .collect();
        let rest = limit - out.len();
        out.extend(
            self.v6
                .entries
                .iter()
                .take(rest)
                .map(|(n, e)| (IpNetwork::V6(*n), ecmp(e))),
        );
        out
    }

    /// Calls `f` for each prefix with its ECMP set.
    pub fn for_each_best(&self, mut f: impl FnMut(IpNetwork, &[Path])) {
        for (net, entry) in &self.v4.entries {
            f(
                IpNetwork::V4(*net),
                &entry.paths.as_slice()[..usize::from(entry.multipath)],
            );
        }
        for (net, entry) in &self.v6.entries {
            f(
                IpNetwork::V6(*net),
                &entry.paths.as_slice()[..usize::from(entry.multipath)],
            );
        }
    }

    /// Removes every path of `peer` for which `select` holds (all of them on session loss, the
    /// stale ones in a sweep), calling `changed` for each prefix whose best changed. Returns how
    /// many paths were removed.
    pub fn remove_peer_paths(
        &mut self,
        peer: PeerId,
        select: impl Fn(&Path) -> bool,
        mut changed: impl FnMut(IpNetwork, Change),
    ) -> usize {
        let mut removed = 0;
        let (options, peers) = (self.options, &self.peers);
        let select = &select;
        let prefixes: Vec<IpNetwork> = self
            .v4
            .entries
            .iter()
            .filter(|(_, e)| {
                e.paths
                    .as_slice()
                    .iter()
                    .any(|p| p.peer == peer && select(p))
            })
            .map(|(n, _)| IpNetwork::V4(*n))
            .chain(
                self.v6
                    .entries
                    .iter()
                    .filter(|(_, e)| {
                        e.paths
                            .as_slice()
                            .iter()
                            .any(|p| p.peer == peer && select(p))
                    })
                    .map(|(n, _)| IpNetwork::V6(*n)),
            )
            .collect();
        for prefix in prefixes {
            let matches = |p: &Path| p.peer == peer && select(p);
            let edit = match prefix {
                IpNetwork::V4(net) => remove_where(&mut self.v4, net, matches, options, peers),
                IpNetwork::V6(net) => remove_where(&mut self.v6, net, matches, options, peers),
            };
            removed += edit.count;
            if let Some(change) = edit.change {
                changed(prefix, change);
            }
        }
        removed
    }

    /// Sets `flag` on every path of `peer` (marking them stale when it restarts) and decides
    /// again where that matters (long-lived stale paths lose to any other). Returns the prefixes
    /// touched, with the change of best path where there was one.
    pub fn flag_peer_paths(&mut self, peer: PeerId, flag: u8) -> Vec<(IpNetwork, Option<Change>)> {
        let (options, peers) = (self.options, &self.peers);
        let mut touched = Vec::new();
        let mut mark = |entry: &mut Entry| -> bool {
            let before = summary(entry);
            let previous = entry.paths.as_slice().first().cloned();
            let hit = match &mut entry.paths {
                Paths::One(path) if path.peer == peer => {
                    path.flags |= flag;
                    true
                }
                Paths::One(_) => false,
                Paths::Many(paths) => {
                    let mut hit = false;
                    for path in paths.iter_mut().filter(|p| p.peer == peer) {
                        path.flags |= flag;
                        hit = true;
                    }
                    if hit {
                        let (multipath, reason) = decide(paths, options, peers);
                        entry.multipath = multipath;
                        entry.reason = reason;
                    }
                    hit
                }
            };
            if hit {
                let change = (summary(entry) != before).then(|| Change {
                    previous,
                    current: Some(best_of(entry)),
                });
                touched.push(change);
            }
            hit
        };
        let mut prefixes = Vec::new();
        for (net, entry) in self.v4.entries.iter_mut() {
            if mark(entry) {
                prefixes.push(IpNetwork::V4(*net));
            }
        }
        for (net, entry) in self.v6.entries.iter_mut() {
            if mark(entry) {
                prefixes.push(IpNetwork::V6(*net));
            }
        }
        prefixes.into_iter().zip(touched).collect()
    }
}

fn v6_bound(after: Option<IpNetwork>) -> std::ops::Bound<Ipv6Network> {
    match after {
        Some(IpNetwork::V6(net)) => std::ops::Bound::Excluded(net),
        _ => std::ops::Bound::Unbounded,
    }
}

fn best_of(entry: &Entry) -> Best {
    Best {
        paths: entry.paths.as_slice()[..usize::from(entry.multipath)].to_vec(),
        reason: entry.reason,
    }
}

fn source_of(peers: &HashMap<PeerId, PeerInfo>, path: &Path) -> Source {
    if path.peer == PeerId::LOCAL {
        return LOCAL_SOURCE;
    }
    match peers.get(&path.peer) {
        Some(info) => Source {
            local: false,
            external: info.external,
            peer_router_id: info.router_id,
            peer_address: info.address,
        },
        None => Source {
            local: false,
            ..LOCAL_SOURCE
        },
    }
}

/// Reorders `paths` best first, ECMP set next; returns (multipath count, reason).
fn decide(paths: &mut [Path], options: Options, peers: &HashMap<PeerId, PeerInfo>) -> (u8, Reason) {
    // Long-lived stale paths are only used when nothing else is left (RFC 9494 section 4.3).
    let fresh = paths
        .iter()
        .filter(|p| p.flags & path_flags::LLGR_STALE == 0)
        .count();
    let pool = if fresh > 0 { fresh } else { paths.len() };
    paths.sort_by_key(|p| p.flags & path_flags::LLGR_STALE != 0);
    let candidates: Vec<Candidate<'_>> = paths[..pool]
        .iter()
        .map(|p| Candidate {
            attributes: &p.attributes.attributes,
            source: source_of(peers, p),
        })
        .collect();
    let Some(Decision {
        best,
        multipath,
        reason,
    }) = decision::decide(&candidates, &options)
    else {
        return (0, Reason::OnlyPath);
    };
    let order: Vec<usize> = Decision {
        best,
        multipath,
        reason,
    }
    .multipath_indices()
    .collect();
    let count = order.len();
    // Move the ECMP set to the front, in order.
    let mut reordered: Vec<Path> = order.iter().map(|&i| paths[i].clone()).collect();
    reordered.extend(
        paths
            .iter()
            .enumerate()
            .filter(|(i, _)| !order.contains(i))
            .map(|(_, p)| p.clone()),
    );
    paths.clone_from_slice(&reordered);
    (count as u8, reason)
}

fn summary(entry: &Entry) -> (Vec<(PeerId, u32, *const RouteAttributes)>, Reason) {
    let paths = &entry.paths.as_slice()[..usize::from(entry.multipath)];
    (
        paths
            .iter()
            .map(|p| (p.peer, p.path_id, Arc::as_ptr(&p.attributes)))
            .collect(),
        entry.reason,
    )
}

fn upsert<K: Ord + Copy>(
    map: &mut Map<K>,
    key: K,
    path: Path,
    options: Options,
    peers: &HashMap<PeerId, PeerInfo>,
) -> Edit {
    let Some(entry) = map.entries.get_mut(&key) else {
        let entry = Entry {
            paths: Paths::One(path),
            multipath: 1,
            reason: Reason::OnlyPath,
        };
        let change = Change {
            previous: None,
            current: Some(best_of(&entry)),
        };
        map.entries.insert(key, entry);
        return Edit {
            change: Some(change),
            count: 1,
        };
    };
    let before = summary(entry);
    let previous = entry.paths.as_slice().first().cloned();
    let same = |p: &Path| p.peer == path.peer && p.path_id == path.path_id;
    let mut count = 0;
    match &mut entry.paths {
        Paths::One(existing) if same(existing) => *existing = path,
        Paths::One(existing) => {
            entry.paths = Paths::Many(vec![existing.clone(), path]);
            count = 1;
        }
        Paths::Many(paths) => match paths.iter_mut().find(|p| same(p)) {
            Some(existing) => *existing = path,
            None => {
                paths.push(path);
                count = 1;
            }
        },
    }
    if let Paths::Many(paths) = &mut entry.paths {
        let (multipath, reason) = decide(paths, options, peers);
        entry.multipath = multipath;
        entry.reason = reason;
    }
    let change = (summary(entry) != before).then(|| Change {
        previous,
        current: Some(best_of(entry)),
    });
    Edit { change, count }
}

fn remove_where<K: Ord + Copy>(
    map: &mut Map<K>,
    key: K,
    matches: impl Fn(&Path) -> bool,
    options: Options,
    peers: &HashMap<PeerId, PeerInfo>,
) -> Edit {
    let Some(entry) = map.entries.get_mut(&key) else {
        return Edit::default();
    };
    let before = summary(entry);
    let previous = entry.paths.as_slice().first().cloned();
    let gone = || Change {
        previous: previous.clone(),
        current: None,
    };
    let count = match &mut entry.paths {
        Paths::One(path) if matches(path) => {
            map.entries.remove(&key);
            return Edit {
                change: Some(gone()),
                count: 1,
            };
        }
        Paths::One(_) => return Edit::default(),
        Paths::Many(paths) => {
            let before_len = paths.len();
            paths.retain(|p| !matches(p));
            let removed = before_len - paths.len();
            match paths.len() {
                0 => {
                    map.entries.remove(&key);
                    return Edit {
                        change: Some(gone()),
                        count: removed,
                    };
                }
                1 => {
                    let last = paths.remove(0);
                    *entry = Entry {
                        paths: Paths::One(last),
                        multipath: 1,
                        reason: Reason::OnlyPath,
                    };
                }
                _ => {
                    let (multipath, reason) = decide(paths, options, peers);
                    entry.multipath = multipath;
                    entry.reason = reason;
                }
            }
            removed
        }
    };
    let change = (summary(entry) != before).then(|| Change {
        previous,
        current: Some(best_of(entry)),
    });
    Edit { change, count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsPath, Origin};

    fn peer_info(n: u8, external: bool) -> PeerInfo {
        PeerInfo {
            external,
            router_id: Ipv4Addr::new(10, 0, 0, n),
            address: IpAddr::V4(Ipv4Addr::new(192, 168, 0, n)),
        }
    }

    fn table() -> Table {
        let mut table = Table::new(Options {
            maximum_paths: 4,
            ..Options::default()
        });
        table.set_peer(PeerId(1), peer_info(1, true));
        table.set_peer(PeerId(2), peer_info(2, true));
        table.set_peer(PeerId(3), peer_info(3, true));
        table
    }

    fn path(interner: &mut Interner, peer: u16, as_path: &[u32], next_hop: u8) -> Path {
        let attributes = interner.intern(RouteAttributes {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence(as_path.to_vec())),
                ..PathAttributes::default()
            },
            next_hop: NextHop::V4(Ipv4Addr::new(192, 168, 0, next_hop)),
        });
        Path {
            attributes,
            peer: PeerId(peer),
            path_id: 0,
            flags: 0,
        }
    }

    fn prefix() -> IpNetwork {
        "10.1.0.0/24".parse().unwrap()
    }

    fn peers_of(edit: &Edit) -> Vec<u16> {
        match &edit.change {
            Some(Change {
                current: Some(best),
                ..
            }) => best.paths.iter().map(|p| p.peer.0).collect(),
            Some(Change { current: None, .. }) => vec![],
            None => panic!("expected a change"),
        }
    }

    #[test]
    fn the_first_path_to_a_prefix_is_its_best() {
        let mut interner = Interner::default();
        let mut table = table();
        let change = table.insert(prefix(), path(&mut interner, 1, &[1, 2], 1));
        assert_eq!(peers_of(&change), vec![1]);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_better_path_takes_over_and_a_worse_one_changes_nothing() {
        let mut interner = Interner::default();
        let mut table = table();
        table.insert(prefix(), path(&mut interner, 1, &[1, 2], 1));
        let change = table.insert(prefix(), path(&mut interner, 2, &[2], 2));
        assert_eq!(peers_of(&change), vec![2]);
        let worse = table.insert(prefix(), path(&mut interner, 3, &[3, 4, 5], 3));
        assert_eq!((worse.change, worse.count), (None, 1));
        assert_eq!(table.paths(prefix()).len(), 3);
    }

    #[test]
    fn equal_paths_join_the_ecmp_set() {
        let mut interner = Interner::default();
        let mut table = table();
        table.insert(prefix(), path(&mut interner, 2, &[2], 2));
        let change = table.insert(prefix(), path(&mut interner, 1, &[1], 1));
        assert_eq!(peers_of(&change), vec![1, 2], "lower router id first");
    }

    #[test]
    fn withdrawing_the_best_promotes_the_next_and_the_last_makes_it_unreachable() {
        let mut interner = Interner::default();
        let mut table = table();
        table.insert(prefix(), path(&mut interner, 1, &[1], 1));
        table.insert(prefix(), path(&mut interner, 2, &[2, 3], 2));
        assert_eq!(peers_of(&table.remove(prefix(), PeerId(1), 0)), vec![2]);
        let gone = table.remove(prefix(), PeerId(2), 0).change.unwrap();
        assert_eq!(
            (gone.previous.unwrap().peer, gone.current),
            (PeerId(2), None)
        );
        assert!(table.is_empty());
        assert_eq!(table.remove(prefix(), PeerId(2), 0), Edit::default());
    }

    #[test]
    fn a_path_replaced_by_its_peer_reports_the_new_attributes() {
        let mut interner = Interner::default();
        let mut table = table();
        table.insert(prefix(), path(&mut interner, 1, &[1], 1));
        let change = table.insert(prefix(), path(&mut interner, 1, &[1, 7], 1));
        let Some(Change {
            current: Some(best),
            previous,
        }) = change.change
        else {
            panic!()
        };
        let before = previous.unwrap().attributes.attributes.as_path.clone();
        assert_eq!(before, Some(AsPath::sequence([1])));
        assert_eq!(
            best.paths[0].attributes.attributes.as_path,
            Some(AsPath::sequence([1, 7]))
        );
        assert_eq!(table.paths(prefix()).len(), 1);
    }

    #[test]
    fn removing_a_peers_paths_reports_every_prefix_that_changed() {
        let mut interner = Interner::default();
        let mut table = table();
        let other: IpNetwork = "2001:db8::/48".parse().unwrap();
        table.insert(prefix(), path(&mut interner, 1, &[1], 1));
        table.insert(prefix(), path(&mut interner, 2, &[2, 3], 2));
        table.insert(other, path(&mut interner, 1, &[1], 1));
        let mut changes = Vec::new();
        table.remove_peer_paths(PeerId(1), |_| true, |p, c| changes.push((p, c)));
        changes.sort_by_key(|(p, _)| *p);
        assert_eq!(changes.len(), 2);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn long_lived_stale_paths_lose_to_any_fresh_path() {
        let mut interner = Interner::default();
        let mut table = table();
        table.insert(prefix(), path(&mut interner, 1, &[1], 1));
        table.flag_peer_paths(PeerId(1), path_flags::LLGR_STALE);
        let change = table.insert(prefix(), path(&mut interner, 2, &[2, 3, 4], 2));
        assert_eq!(peers_of(&change), vec![2]);
    }

    #[test]
    fn interned_attributes_are_shared_and_swept_when_unused() {
        let mut interner = Interner::default();
        let mut table = table();
        let a = path(&mut interner, 1, &[1], 1);
        let b = path(&mut interner, 1, &[1], 1);
        assert!(Arc::ptr_eq(&a.attributes, &b.attributes));
        table.insert(prefix(), a);
        drop(b);
        assert_eq!(interner.len(), 1);
        table.remove(prefix(), PeerId(1), 0);
        interner.sweep();
        assert!(interner.is_empty());
    }

    #[test]
    fn a_path_is_sixteen_octets() {
        assert_eq!(size_of::<Path>(), 16);
    }

    #[test]
    fn pages_walk_every_prefix_in_order_ipv4_first() {
        let mut interner = Interner::default();
        let mut table = table();
        let prefixes = [
            "10.2.0.0/24",
            "10.1.0.0/24",
            "2001:db8::/48",
            "10.1.0.0/16",
            "::/0",
        ];
        for p in prefixes {
            table.insert(p.parse().unwrap(), path(&mut interner, 1, &[1], 1));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = table.page(after, 2);
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            seen.extend(page.into_iter().map(|(p, best)| {
                assert_eq!(best.paths.len(), 1);
                p.to_string()
            }));
        }
        assert_eq!(
            seen,
            [
                "10.1.0.0/16",
                "10.1.0.0/24",
                "10.2.0.0/24",
                "::/0",
                "2001:db8::/48"
            ]
        );
    }
}
