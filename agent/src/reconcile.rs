//! The reconciler: pure functions from desired state (the configuration, the API's blocks and
//! peers) and observed state (the speaker's best paths, the kernel's routes) to what must change.
//! No netlink, no sockets, no clock: the agent's loop applies what these return, and the unit
//! tests below check the rules without namespaces.

use std::collections::{BTreeMap, BTreeSet, HashSet, btree_map};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use tern_bgp::wire::{Community, NextHop as BgpNextHop};
use tern_bgp::{Filter, PeerConfig, RouteEntry, SpeakerConfig};

use crate::config::{CommunityValue, Config, IpPool, MAX_MD5_KEY, SourceAddress, parse_peer_ip};
use crate::error::{DesiredPeerError, PasswordTooLong};
use crate::routes::{Change, KernelRoute, NextHop, RouteKind};
use crate::tunnel::{Encapsulation, TunnelDevices, TunnelUse, encapsulation, tunnel_address};

/// Where a peer comes from in the configuration (Calico's peer types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// Another node, through the node-to-node mesh.
    Mesh,
    /// A BGPPeer for every node.
    Global,
    /// A BGPPeer for this node only.
    NodeSpecific,
}

/// A peer the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    /// Its speaker configuration.
    pub config: PeerConfig,
    /// Where it came from.
    pub kind: PeerKind,
}

/// The peers `config` asks for, keyed by address.
pub fn desired_peers(config: &Config) -> Result<BTreeMap<IpAddr, DesiredPeer>, DesiredPeerError> {
    let mut peers = BTreeMap::new();
    let own = config.node_address.ip();
    if config.node_to_node_mesh_enabled {
        for node in &config.nodes {
            if node.address == own {
                continue;
            }
            let mut peer =
                PeerConfig::new(node.address, node.as_number.unwrap_or(config.as_number));
            // As in Calico, the node with the higher address waits for the other.
            peer.passive = own > node.address;
            peer.local_address = Some(own);
            peer.hold_time = 90;
            peer.max_prefix = Some(config.max_prefixes.speaker());
            peers.insert(
                node.address,
                DesiredPeer {
                    config: peer,
                    kind: PeerKind::Mesh,
                },
            );
        }
    }
    for entry in &config.peers {
        let kind = match &entry.node {
            None => PeerKind::Global,
            Some(node) if node == &config.node_name => PeerKind::NodeSpecific,
            Some(_) => continue,
        };
        let (address, port) = parse_peer_ip(&entry.peer_ip)?;
        let mut peer = PeerConfig::new(address, entry.as_number);
        peer.port = port;
        peer.passive = entry.passive;
        peer.keep_original_next_hop = entry.keep_original_next_hop;
        peer.max_prefix = Some(entry.max_prefixes.unwrap_or(config.max_prefixes).speaker());
        // RFC 4724's restart time field holds 12 bits.
        peer.max_restart_time = entry
            .max_restart_time
            .map(|time| time.0.as_secs().min(4095) as u16);
        peer.local_address = match entry.source_address {
            SourceAddress::UseNodeIP if own.is_ipv4() == address.is_ipv4() => Some(own),
            _ => None,
        };
        if entry.ttl_security > 0 {
            peer.ttl_security = true;
            peer.multihop_ttl = Some(entry.ttl_security);
        } else {
            peer.multihop_ttl = entry.multihop;
        }
        if let Some(path) = &entry.password_file {
            let password =
                std::fs::read_to_string(path).map_err(|source| DesiredPeerError::PasswordFile {
                    peer: entry.peer_ip.clone(),
                    path: path.clone(),
                    source,
                })?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.len() > MAX_MD5_KEY {
                return Err(DesiredPeerError::PasswordTooLong {
                    peer: entry.peer_ip.clone(),
                    path: path.clone(),
                    source: PasswordTooLong(password.len()),
                });
            }
            peer.password = Some(password.to_owned());
        }
        if !entry.filters.is_empty() {
            let ranges = entry.filters.iter().map(|f| f.0).collect();
            peer.import = Some(Filter { ranges });
        }
        peers.insert(address, DesiredPeer { config: peer, kind });
    }
    Ok(peers)
}

/// The speaker configuration for `config`.
pub fn speaker_config(config: &Config, restarting: bool) -> SpeakerConfig {
    let router_id = config.router_id().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut speaker = SpeakerConfig::new(config.as_number, router_id);
    speaker.graceful_restart_time = Some(config.graceful_restart_time.0.as_secs().min(4095) as u16);
    speaker.restarting = restarting;
    speaker.decision.maximum_paths = 8;
    speaker
}

pub fn communities(config: &Config, prefix: IpNetwork) -> Vec<Community> {
    config
        .communities_for(prefix)
        .into_iter()
        .filter_map(|c| match c {
            CommunityValue::Standard(a, b) => Some(Community::new(a, b)),
            // Large communities on originated routes come with the API work.
            CommunityValue::Large(..) => None,
        })
        .collect()
}

/// Whether a block is announced: it lies in a pool that does not set `disableBGPExport`.
pub fn exported(config: &Config, block: IpNetwork) -> bool {
    config
        .ip_pools
        .iter()
        .any(|p| p.cidr.contains(block.network()) && !p.disable_bgp_export)
}

/// Whether `prefix` is `outer` or lies inside it.
fn within(prefix: IpNetwork, outer: IpNetwork) -> bool {
    outer.is_ipv4() == prefix.is_ipv4()
        && outer.contains(prefix.network())
        && prefix.prefix() >= outer.prefix()
}

/// The rules of import safety: what a learned route may put into the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The IP pools; only enabled ones admit.
    pub pools: &'a [IpPool],
    /// This node's blocks, wherever they came from (file or API): a learned route for one of
    /// them, or for anything inside one, never enters the kernel.
    pub own_blocks: &'a [IpNetwork],
    /// The peers, for their filters.
    pub peers: &'a BTreeMap<IpAddr, DesiredPeer>,
}

impl Admission<'_> {
    /// Whether a route to `prefix` learned from `sources` (the peers of its ECMP set; `None`
    /// for our own) may go into the kernel: never one of our blocks or inside one; otherwise
    /// when it lies in an enabled pool, or a non-mesh peer of the set has an import filter
    /// that names it (a default route from a top-of-rack router: filters match exactly unless
    /// they give a range of lengths, see [`crate::filter`]).
    pub fn admits(&self, prefix: IpNetwork, sources: &[Option<IpAddr>]) -> bool {
        if self.own_blocks.iter().any(|b| within(prefix, *b)) {
            return false;
        }
        let in_pool = self
            .pools
            .iter()
            .any(|p| !p.disabled && within(prefix, p.cidr));
        in_pool
            || sources.iter().flatten().any(|source| {
                self.peers.get(source).is_some_and(|peer| {
                    peer.kind != PeerKind::Mesh
                        && peer
                            .config
                            .import
                            .as_ref()
                            .is_some_and(|f| f.accepts(prefix))
                })
            })
    }
}

/// The gateways of a best path's ECMP set, in path order (unspecified next hops left out).
pub fn gateways(entry: &RouteEntry) -> Vec<IpAddr> {
    entry
        .best
        .paths
        .iter()
        .filter_map(|path| match path.attributes.next_hop {
            BgpNextHop::V4(address) if !address.is_unspecified() => Some(IpAddr::V4(address)),
            BgpNextHop::V6 { global, .. } if !global.is_unspecified() => Some(IpAddr::V6(global)),
            _ => None,
        })
        .collect()
}

/// The next hops toward `gateways` for a route to `prefix`, per data path: plain (routed), or
/// `via <node> dev tunl0 onlink` (IP-in-IP), or `via <block's first address> dev vxlan.tern
/// onlink` (VXLAN, one hop per block), as the pool holding the prefix says (`CrossSubnet` only
/// off the node's subnet). A hop whose tunnel is not up stays plain. Sorted, without
/// duplicates.
pub fn next_hops(
    config: &Config,
    devices: TunnelDevices,
    prefix: IpNetwork,
    gateways: &[IpAddr],
) -> (Vec<NextHop>, TunnelUse) {
    let plain = |gateway: IpAddr| NextHop {
        gateway,
        interface: None,
        onlink: false,
    };
    let mut used = TunnelUse::default();
    let mut hops: Vec<NextHop> = match prefix {
        IpNetwork::V4(block) if devices.any() => {
            let mut hops = Vec::with_capacity(gateways.len());
            for gateway in gateways {
                let IpAddr::V4(node) = *gateway else {
                    hops.push(plain(*gateway));
                    continue;
                };
                match (encapsulation(config, prefix, *gateway), devices) {
                    (
                        Encapsulation::Ipip,
                        TunnelDevices {
                            ipip: Some(ifindex),
                            ..
                        },
                    ) => {
                        used.ipip_nodes.push(node);
                        hops.push(NextHop {
                            gateway: *gateway,
                            interface: Some(ifindex),
                            onlink: true,
                        });
                    }
                    (
                        Encapsulation::Vxlan,
                        TunnelDevices {
                            vxlan: Some(ifindex),
                            ..
                        },
                    ) => {
                        // One tunnel address per block: VXLAN takes the first next hop only.
                        if used.vxlan_node.is_none() {
                            used.vxlan_node = Some(node);
                            hops.push(NextHop {
                                gateway: IpAddr::V4(tunnel_address(block)),
                                interface: Some(ifindex),
                                onlink: true,
                            });
                        }
                    }
                    _ => hops.push(plain(*gateway)),
                }
            }
            used.ipip_nodes.sort();
            used.ipip_nodes.dedup();
            hops
        }
        _ => gateways.iter().copied().map(plain).collect(),
    };
    hops.sort();
    hops.dedup();
    (hops, used)
}

/// The kernel route for a best path, or `None` when it must not be in the kernel (refused by
/// [`Admission`], or no usable next hop), with what the tunnels must know of it.
pub fn kernel_route(
    admission: &Admission<'_>,
    config: &Config,
    devices: TunnelDevices,
    entry: &RouteEntry,
) -> Option<(RouteKind, TunnelUse)> {
    if !admission.admits(entry.prefix, &entry.sources) {
        return None;
    }
    let (hops, used) = next_hops(config, devices, entry.prefix, &gateways(entry));
    (!hops.is_empty()).then_some((RouteKind::Via(hops), used))
}

/// What one batch of best-path changes does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Programmed {
    /// Kernel changes, in order: a route to install or replace, or `None` to delete.
    pub kernel: Vec<Change>,
    /// Routes whose tunnel use changed (an empty use: the route uses no tunnel any more).
    pub tunnels: Vec<(IpNetwork, TunnelUse)>,
}

/// The routes learned from peers that are in the kernel (or on their way), and the routes
/// adopted from an earlier run that wait for the stale sweep.
#[derive(Debug, Default)]
pub struct Learned {
    /// Learned routes that should be in the kernel.
    pub routes: BTreeMap<IpNetwork, RouteKind>,
    /// Routes found in the kernel at start, kept until [`Learned::sweep`].
    pub stale: BTreeSet<IpNetwork>,
    /// Peers whose End-of-RIB we wait for before the sweep.
    pub awaiting_eor: HashSet<IpAddr>,
    /// Whether the sweep is done.
    pub swept: bool,
}

impl Learned {
    /// Applies a batch of best-path changes (a prefix with its new best path, or `None` when it
    /// has none) to the learned routes, and returns what the kernel and the tunnels must do.
    /// Only routes that come out different are written.
    pub fn program(
        &mut self,
        admission: &Admission<'_>,
        config: &Config,
        devices: TunnelDevices,
        batch: Vec<(IpNetwork, Option<RouteEntry>)>,
    ) -> Programmed {
        let mut out = Programmed::default();
        for (prefix, entry) in batch {
            let wanted = entry
                .as_ref()
                .and_then(|e| kernel_route(admission, config, devices, e));
            match wanted {
                Some((kind, used)) => {
                    if !self.stale.is_empty() {
                        self.stale.remove(&prefix);
                    }
                    if devices.any() {
                        out.tunnels.push((prefix, used));
                    }
                    match self.routes.entry(prefix) {
                        btree_map::Entry::Occupied(mut known) => {
                            if *known.get() != kind {
                                known.insert(kind.clone());
                                out.kernel.push((prefix, Some(kind)));
                            }
                        }
                        btree_map::Entry::Vacant(slot) => {
                            slot.insert(kind.clone());
                            out.kernel.push((prefix, Some(kind)));
                        }
                    }
                }
                None => {
                    if devices.any() {
                        out.tunnels.push((prefix, TunnelUse::default()));
                    }
                    if self.routes.remove(&prefix).is_some() {
                        out.kernel.push((prefix, None));
                    }
                }
            }
        }
        out
    }

    /// Notes a peer's End-of-RIB; returns whether the sweep is now due.
    pub fn end_of_rib(&mut self, peer: IpAddr) -> bool {
        self.awaiting_eor.remove(&peer);
        self.sweep_due()
    }

    /// Whether every awaited peer sent its End-of-RIB and the sweep has not run.
    pub fn sweep_due(&self) -> bool {
        self.awaiting_eor.is_empty() && !self.swept
    }

    /// The adopted routes nobody announced again, to delete; marks the sweep done (a second
    /// call returns nothing).
    pub fn sweep(&mut self) -> Vec<IpNetwork> {
        if self.swept {
            return Vec::new();
        }
        self.swept = true;
        std::mem::take(&mut self.stale).into_iter().collect()
    }

    /// A resync from the speaker (every best path): the batch that deletes what it no longer
    /// holds and sets everything it does.
    pub fn resync(&self, entries: Vec<RouteEntry>) -> Vec<(IpNetwork, Option<RouteEntry>)> {
        let known: BTreeSet<IpNetwork> = entries.iter().map(|e| e.prefix).collect();
        let mut batch: Vec<(IpNetwork, Option<RouteEntry>)> = self
            .routes
            .keys()
            .filter(|p| !known.contains(p))
            .map(|p| (*p, None))
            .collect();
        batch.extend(entries.into_iter().map(|e| (e.prefix, Some(e))));
        batch
    }
}

/// What the repair pass mends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Routes missing from the kernel or different there.
    pub fix: Vec<KernelRoute>,
    /// Routes of ours in the kernel that nothing wants (adopted stale ones excepted).
    pub extra: Vec<IpNetwork>,
}

/// Compares the kernel's routes of our protocol (`actual`) with what it should hold: the
/// learned routes and a blackhole for each of our blocks. Interface indexes are not compared
/// (the kernel reports them for gateways we gave without one).
pub fn repair(
    learned: &Learned,
    blocks: &[IpNetwork],
    actual: &BTreeMap<IpNetwork, RouteKind>,
) -> Repair {
    let mut wanted: BTreeMap<IpNetwork, RouteKind> = learned.routes.clone();
    for block in blocks {
        wanted.insert(*block, RouteKind::Blackhole);
    }
    let normalise = |kind: &RouteKind| match kind {
        RouteKind::Via(hops) => {
            let mut hops: Vec<NextHop> = hops
                .iter()
                .map(|h| NextHop {
                    interface: None,
                    ..*h
                })
                .collect();
            hops.sort();
            RouteKind::Via(hops)
        }
        other => other.clone(),
    };
    let fix = wanted
        .iter()
        .filter(|(prefix, kind)| actual.get(prefix).map(normalise) != Some(normalise(kind)))
        .map(|(prefix, kind)| KernelRoute {
            prefix: *prefix,
            kind: kind.clone(),
        })
        .collect();
    let extra = actual
        .keys()
        .filter(|p| !wanted.contains_key(p) && !learned.stale.contains(p))
        .copied()
        .collect();
    Repair { fix, extra }
}

/// What a reload does to the peers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerChanges {
    /// Sessions to remove.
    pub removed: Vec<IpAddr>,
    /// Sessions to add, or to change (the speaker resets only what needs it).
    pub changed: Vec<PeerConfig>,
    /// The peers after the reload: the configuration's, plus those added through the API that
    /// the configuration does not name.
    pub peers: BTreeMap<IpAddr, DesiredPeer>,
    /// The API's peers that remain the API's.
    pub api_peers: BTreeSet<IpAddr>,
}

/// The peer changes from `current` (with `api_peers` among them) to the configuration's
/// `configured` peers. A peer the configuration now names stops being the API's.
pub fn peer_changes(
    current: &BTreeMap<IpAddr, DesiredPeer>,
    api_peers: &BTreeSet<IpAddr>,
    configured: BTreeMap<IpAddr, DesiredPeer>,
) -> PeerChanges {
    let mut peers = configured;
    let api_peers: BTreeSet<IpAddr> = api_peers
        .iter()
        .filter(|a| !peers.contains_key(a))
        .copied()
        .collect();
    for address in &api_peers {
        if let Some(peer) = current.get(address) {
            peers.insert(*address, peer.clone());
        }
    }
    let removed = current
        .keys()
        .filter(|a| !peers.contains_key(a))
        .copied()
        .collect();
    let changed = peers
        .iter()
        .filter(|(address, peer)| current.get(address).map(|p| &p.config) != Some(&peer.config))
        .map(|(_, peer)| peer.config.clone())
        .collect();
    PeerChanges {
        removed,
        changed,
        peers,
        api_peers,
    }
}

/// The settings a running ternd cannot change (the speaker's identity, its listener, what the
/// kernel routes are tagged with, its own files): the names of those that differ in `new`,
/// with the old and the new value, after they are set back to `old`'s in `new`, so a reload
/// applies everything else and the caller reports these as needing a restart.
pub fn keep_restart_only_settings(old: &Config, new: &mut Config) -> Vec<String> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident: $name:literal),* $(,)?) => {$(
            if old.$field != new.$field {
                changed.push(format!("{} ({:?} to {:?})", $name, old.$field, new.$field));
                new.$field = old.$field.clone();
            }
        )*};
    }
    keep!(
        node_name: "nodeName",
        as_number: "asNumber",
        router_id: "routerId",
        listen_address: "listenAddress",
        listen_port: "listenPort",
        route_table: "routeTable",
        route_protocol: "routeProtocol",
        graceful_restart_time: "gracefulRestartTime",
        state_file: "stateFile",
        api_socket: "apiSocket",
        api_tcp: "apiTcp",
    );
    if old.router_id() != new.router_id() {
        // The router id follows an IPv4 nodeAddress when it is not set.
        changed.push(format!(
            "routerId, from nodeAddress ({:?} to {:?})",
            old.router_id(),
            new.router_id()
        ));
        new.router_id = old.router_id();
    }
    changed
}

/// Whether the settings that shape encapsulated routes differ.
pub fn encapsulation_changed(old: &Config, new: &Config) -> bool {
    old.ip_pools != new.ip_pools
        || old.node_address != new.node_address
        || old.ipip_mtu != new.ipip_mtu
        || old.vxlan_mtu != new.vxlan_mtu
        || old.vxlan_vni != new.vxlan_vni
        || old.vxlan_port != new.vxlan_port
        || old.ipip_data_path != new.ipip_data_path
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use tern_bgp::wire::PathAttributes;
    use tern_bgp::{Best, Path as BgpPath, PeerId, Reason, RouteAttributes};

    use super::*;

    /// A node 10.1.1.11/24 with pool 10.244.0.0/16 (its encapsulation as given), a disabled pool
    /// 10.250.0.0/16, the file block 10.244.1.0/26, two mesh nodes and a top-of-rack peer whose
    /// filter admits the default route.
    fn config(ipip: &str, vxlan: &str) -> Config {
        let text = format!(
            "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
             nodes:\n  - name: n2\n    address: 10.1.1.12\n  - name: n3\n    address: 10.1.2.13\n\
             peers:\n  - peerIP: 10.1.1.1\n    asNumber: 65000\n    filters: [0.0.0.0/0]\n\
             ipPools:\n  - cidr: 10.244.0.0/16\n    ipipMode: {ipip}\n    vxlanMode: {vxlan}\n\
             \x20 - cidr: 10.250.0.0/16\n    disabled: true\n\
             blocks: [10.244.1.0/26]\n"
        );
        Config::parse(&text, Path::new("test.yaml")).unwrap()
    }

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A best path to `prefix` whose ECMP set goes via `next_hops`, learned from the same
    /// addresses.
    fn entry(prefix: &str, next_hops: &[&str]) -> RouteEntry {
        let paths = next_hops
            .iter()
            .enumerate()
            .map(|(i, hop)| BgpPath {
                attributes: Arc::new(RouteAttributes {
                    attributes: PathAttributes::default(),
                    next_hop: BgpNextHop::V4(hop.parse().unwrap()),
                }),
                peer: PeerId(i as u16 + 1),
                path_id: 0,
                flags: 0,
            })
            .collect();
        RouteEntry {
            prefix: net(prefix),
            best: Best {
                paths,
                reason: Reason::OnlyPath,
            },
            sources: next_hops.iter().map(|h| Some(ip(h))).collect(),
        }
    }

    fn plain(gateway: &str) -> NextHop {
        NextHop {
            gateway: ip(gateway),
            interface: None,
            onlink: false,
        }
    }

    fn onlink(gateway: &str, ifindex: u32) -> NextHop {
        NextHop {
            gateway: ip(gateway),
            interface: Some(ifindex),
            onlink: true,
        }
    }

    /// The kernel route for `entry` on a node holding `blocks`, with the given devices.
    fn route(
        config: &Config,
        blocks: &[IpNetwork],
        devices: TunnelDevices,
        entry: &RouteEntry,
    ) -> Option<RouteKind> {
        let peers = desired_peers(config).unwrap();
        let admission = Admission {
            pools: &config.ip_pools,
            own_blocks: blocks,
            peers: &peers,
        };
        kernel_route(&admission, config, devices, entry).map(|(kind, _)| kind)
    }

    const ROUTED: TunnelDevices = TunnelDevices {
        ipip: None,
        vxlan: None,
    };

    #[test]
    fn a_learned_route_for_an_own_block_or_inside_it_is_never_installed() {
        let config = config("Never", "Never");
        // 10.244.1.0/26 comes from the file, 10.244.2.0/26 from the API.
        let blocks = [net("10.244.1.0/26"), net("10.244.2.0/26")];
        for hijack in [
            "10.244.1.0/26",
            "10.244.1.0/27",
            "10.244.1.5/32",
            "10.244.2.0/26",
            "10.244.2.32/28",
            "10.244.2.7/32",
        ] {
            let learned = entry(hijack, &["10.1.1.12"]);
            assert_eq!(route(&config, &blocks, ROUTED, &learned), None, "{hijack}");
        }
        let other = entry("10.244.3.0/26", &["10.1.1.12"]);
        assert_eq!(
            route(&config, &blocks, ROUTED, &other),
            Some(RouteKind::Via(vec![plain("10.1.1.12")]))
        );
        // A block that covers ours is another node's business (Calico's borrowed /32s).
        let covering = entry("10.244.0.0/23", &["10.1.1.12"]);
        assert!(route(&config, &blocks, ROUTED, &covering).is_some());
    }

    #[test]
    fn only_prefixes_inside_an_enabled_pool_are_admitted_from_mesh_peers() {
        let config = config("Never", "Never");
        let blocks = [net("10.244.1.0/26")];
        let admitted = |prefix: &str| {
            route(&config, &blocks, ROUTED, &entry(prefix, &["10.1.1.12"])).is_some()
        };
        assert!(admitted("10.244.9.0/26"));
        assert!(admitted("10.244.0.0/16"));
        assert!(!admitted("10.0.0.0/8"), "wider than the pool");
        assert!(!admitted("192.168.0.0/24"), "outside every pool");
        assert!(!admitted("10.250.1.0/26"), "inside a disabled pool");
        assert!(!admitted("0.0.0.0/0"), "a mesh peer has no filters");
    }

    #[test]
    fn a_peer_filter_admits_what_it_names_only_from_that_peer() {
        let config = config("Never", "Never");
        let blocks = [net("10.244.1.0/26")];
        let from_tor = entry("0.0.0.0/0", &["10.1.1.1"]);
        assert_eq!(
            route(&config, &blocks, ROUTED, &from_tor),
            Some(RouteKind::Via(vec![plain("10.1.1.1")]))
        );
        let covered = entry("10.0.0.0/8", &["10.1.1.1"]);
        assert_eq!(
            route(&config, &blocks, ROUTED, &covered),
            None,
            "a filter for 0.0.0.0/0 names the default route only"
        );
        let from_stranger = entry("0.0.0.0/0", &["10.9.9.9"]);
        assert_eq!(route(&config, &blocks, ROUTED, &from_stranger), None);
        // The filter never admits one of our own blocks.
        let hijack = entry("10.244.1.0/26", &["10.1.1.1"]);
        assert_eq!(route(&config, &blocks, ROUTED, &hijack), None);
    }

    #[test]
    fn an_ecmp_set_becomes_one_route_with_every_next_hop_sorted_once() {
        let config = config("Never", "Never");
        let ecmp = entry("10.244.9.0/26", &["10.1.1.13", "10.1.1.12", "10.1.1.13"]);
        assert_eq!(
            route(&config, &[], ROUTED, &ecmp),
            Some(RouteKind::Via(vec![plain("10.1.1.12"), plain("10.1.1.13")]))
        );
    }

    #[test]
    fn the_data_path_follows_the_pool_mode_and_the_devices_that_are_up() {
        let both = TunnelDevices {
            ipip: Some(7),
            vxlan: Some(8),
        };
        let same_subnet = entry("10.244.9.0/26", &["10.1.1.12"]);
        let other_subnet = entry("10.244.9.0/26", &["10.1.2.13"]);
        let cases = [
            // (ipipMode, vxlanMode, devices, entry, expected hops)
            (
                "Never",
                "Never",
                both,
                &same_subnet,
                vec![plain("10.1.1.12")],
            ),
            (
                "Always",
                "Never",
                both,
                &same_subnet,
                vec![onlink("10.1.1.12", 7)],
            ),
            (
                "Always",
                "Never",
                ROUTED,
                &same_subnet,
                vec![plain("10.1.1.12")],
            ),
            (
                "CrossSubnet",
                "Never",
                both,
                &same_subnet,
                vec![plain("10.1.1.12")],
            ),
            (
                "CrossSubnet",
                "Never",
                both,
                &other_subnet,
                vec![onlink("10.1.2.13", 7)],
            ),
            (
                "Never",
                "Always",
                both,
                &same_subnet,
                vec![onlink("10.244.9.0", 8)],
            ),
            (
                "Never",
                "CrossSubnet",
                both,
                &same_subnet,
                vec![plain("10.1.1.12")],
            ),
            (
                "Never",
                "CrossSubnet",
                both,
                &other_subnet,
                vec![onlink("10.244.9.0", 8)],
            ),
        ];
        for (ipip, vxlan, devices, entry, hops) in cases {
            let config = config(ipip, vxlan);
            assert_eq!(
                route(&config, &[], devices, entry),
                Some(RouteKind::Via(hops)),
                "ipipMode {ipip}, vxlanMode {vxlan}, {devices:?}, via {:?}",
                entry.sources
            );
        }
    }

    #[test]
    fn tunnels_learn_the_nodes_behind_each_route() {
        let config = config("Always", "Never");
        let devices = TunnelDevices {
            ipip: Some(7),
            vxlan: None,
        };
        let (hops, used) = next_hops(
            &config,
            devices,
            net("10.244.9.0/26"),
            &[ip("10.1.1.13"), ip("10.1.1.12")],
        );
        assert_eq!(hops, vec![onlink("10.1.1.12", 7), onlink("10.1.1.13", 7)]);
        assert_eq!(
            used.ipip_nodes,
            vec![Ipv4Addr::new(10, 1, 1, 12), Ipv4Addr::new(10, 1, 1, 13)]
        );
        // VXLAN has one tunnel address per block: the first next hop only.
        let config = self::config("Never", "Always");
        let devices = TunnelDevices {
            ipip: None,
            vxlan: Some(8),
        };
        let (hops, used) = next_hops(
            &config,
            devices,
            net("10.244.9.0/26"),
            &[ip("10.1.1.13"), ip("10.1.1.12")],
        );
        assert_eq!(hops, vec![onlink("10.244.9.0", 8)]);
        assert_eq!(used.vxlan_node, Some(Ipv4Addr::new(10, 1, 1, 13)));
    }

    fn program(
        learned: &mut Learned,
        config: &Config,
        batch: Vec<(IpNetwork, Option<RouteEntry>)>,
    ) -> Programmed {
        let peers = desired_peers(config).unwrap();
        let blocks = config.blocks.clone();
        let admission = Admission {
            pools: &config.ip_pools,
            own_blocks: &blocks,
            peers: &peers,
        };
        learned.program(&admission, config, ROUTED, batch)
    }

    #[test]
    fn only_routes_that_change_are_written_and_a_lost_best_path_is_deleted() {
        let config = config("Never", "Never");
        let mut learned = Learned::default();
        let a = entry("10.244.9.0/26", &["10.1.1.12"]);
        let first = program(&mut learned, &config, vec![(a.prefix, Some(a.clone()))]);
        assert_eq!(
            first.kernel,
            vec![(a.prefix, Some(RouteKind::Via(vec![plain("10.1.1.12")])))]
        );
        let again = program(&mut learned, &config, vec![(a.prefix, Some(a.clone()))]);
        assert!(again.kernel.is_empty());
        let gone = program(&mut learned, &config, vec![(a.prefix, None)]);
        assert_eq!(gone.kernel, vec![(a.prefix, None)]);
        assert!(learned.routes.is_empty());
        // A route that never was in the kernel is not deleted.
        let refused = entry("192.168.0.0/24", &["10.1.1.12"]);
        let none = program(&mut learned, &config, vec![(refused.prefix, Some(refused))]);
        assert!(none.kernel.is_empty());
    }

    #[test]
    fn after_every_end_of_rib_only_the_stale_routes_not_learned_again_are_swept() {
        let config = config("Never", "Never");
        let relearned = entry("10.244.9.0/26", &["10.1.1.12"]);
        let mut learned = Learned {
            stale: [net("10.244.9.0/26"), net("10.244.8.0/26")].into(),
            awaiting_eor: [ip("10.1.1.12"), ip("10.1.2.13")].into(),
            ..Learned::default()
        };
        program(
            &mut learned,
            &config,
            vec![(relearned.prefix, Some(relearned.clone()))],
        );
        assert!(!learned.end_of_rib(ip("10.1.1.12")), "one peer still to go");
        assert!(learned.end_of_rib(ip("10.1.2.13")));
        assert_eq!(learned.sweep(), vec![net("10.244.8.0/26")]);
        assert!(learned.swept && !learned.sweep_due());
        assert!(learned.sweep().is_empty(), "the sweep runs once");
        assert!(learned.routes.contains_key(&relearned.prefix));
    }

    #[test]
    fn a_resync_deletes_what_the_speaker_no_longer_holds() {
        let config = config("Never", "Never");
        let mut learned = Learned::default();
        let a = entry("10.244.9.0/26", &["10.1.1.12"]);
        let b = entry("10.244.8.0/26", &["10.1.1.12"]);
        program(
            &mut learned,
            &config,
            vec![(a.prefix, Some(a.clone())), (b.prefix, Some(b.clone()))],
        );
        let batch = learned.resync(vec![a.clone()]);
        let programmed = program(&mut learned, &config, batch);
        assert_eq!(programmed.kernel, vec![(b.prefix, None)]);
        assert_eq!(learned.routes.keys().collect::<Vec<_>>(), vec![&a.prefix]);
    }

    #[test]
    fn repair_mends_missing_and_different_routes_and_removes_unwanted_ones() {
        let mut learned = Learned::default();
        learned.routes.insert(
            net("10.244.9.0/26"),
            RouteKind::Via(vec![plain("10.1.1.12")]),
        );
        learned.routes.insert(
            net("10.244.8.0/26"),
            RouteKind::Via(vec![plain("10.1.1.12")]),
        );
        learned.stale.insert(net("10.244.6.0/26"));
        let blocks = [net("10.244.1.0/26")];
        let actual: BTreeMap<IpNetwork, RouteKind> = [
            // The kernel reports the interface of a plain gateway: not a difference.
            (
                net("10.244.9.0/26"),
                RouteKind::Via(vec![NextHop {
                    interface: Some(3),
                    ..plain("10.1.1.12")
                }]),
            ),
            (
                net("10.244.8.0/26"),
                RouteKind::Via(vec![plain("10.1.1.99")]),
            ),
            (
                net("10.244.7.0/26"),
                RouteKind::Via(vec![plain("10.1.1.12")]),
            ),
            (
                net("10.244.6.0/26"),
                RouteKind::Via(vec![plain("10.1.1.12")]),
            ),
        ]
        .into();
        let mended = repair(&learned, &blocks, &actual);
        assert_eq!(
            mended.fix,
            vec![
                KernelRoute {
                    prefix: net("10.244.1.0/26"),
                    kind: RouteKind::Blackhole
                },
                KernelRoute {
                    prefix: net("10.244.8.0/26"),
                    kind: RouteKind::Via(vec![plain("10.1.1.12")])
                },
            ]
        );
        assert_eq!(
            mended.extra,
            vec![net("10.244.7.0/26")],
            "stale ones wait for the sweep"
        );
    }

    #[test]
    fn a_reload_keeps_api_peers_unless_the_file_now_names_them() {
        let config = config("Never", "Never");
        let mut current = desired_peers(&config).unwrap();
        let api = |address: &str| DesiredPeer {
            config: PeerConfig::new(ip(address), 65001),
            kind: PeerKind::Global,
        };
        current.insert(ip("10.5.5.5"), api("10.5.5.5"));
        current.insert(ip("10.1.1.1"), api("10.1.1.1"));
        let api_peers: BTreeSet<IpAddr> = [ip("10.5.5.5"), ip("10.1.1.1")].into();
        // The new file drops n3 and still names the top-of-rack 10.1.1.1.
        let mut configured = desired_peers(&config).unwrap();
        configured.remove(&ip("10.1.2.13"));
        let changes = peer_changes(&current, &api_peers, configured);
        assert_eq!(changes.removed, vec![ip("10.1.2.13")]);
        assert_eq!(changes.api_peers, [ip("10.5.5.5")].into());
        assert!(changes.peers.contains_key(&ip("10.5.5.5")));
        // 10.1.1.1 now comes from the file, whose settings differ from the API's.
        let changed: Vec<IpAddr> = changes.changed.iter().map(|p| p.address).collect();
        assert_eq!(changed, vec![ip("10.1.1.1")]);
    }

    #[test]
    fn mesh_peers_wait_for_the_lower_address_and_the_node_skips_itself() {
        let peers = desired_peers(&config("Never", "Never")).unwrap();
        let addresses: Vec<IpAddr> = peers.keys().copied().collect();
        assert_eq!(
            addresses,
            vec![ip("10.1.1.1"), ip("10.1.1.12"), ip("10.1.2.13")]
        );
        assert_eq!(peers[&ip("10.1.1.12")].kind, PeerKind::Mesh);
        assert!(
            !peers[&ip("10.1.1.12")].config.passive,
            "10.1.1.11 < 10.1.1.12: we connect"
        );
        assert_eq!(peers[&ip("10.1.1.1")].kind, PeerKind::Global);
    }

    #[test]
    fn every_peer_gets_a_prefix_limit_and_its_max_restart_time() {
        let text = "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
             nodes:\n  - name: n2\n    address: 10.1.1.12\n\
             peers:\n  - peerIP: 10.1.1.1\n    asNumber: 65000\n    maxRestartTime: 30s\n\
             \x20   maxPrefixes: {limit: 10}\n\
             maxPrefixes: {limit: 500}\n";
        let peers = desired_peers(&Config::parse(text, Path::new("t.yaml")).unwrap()).unwrap();
        let tor = &peers[&ip("10.1.1.1")].config;
        assert_eq!(tor.max_restart_time, Some(30));
        assert_eq!(tor.max_prefix.map(|m| m.limit), Some(10));
        let mesh = &peers[&ip("10.1.1.12")].config;
        assert_eq!(
            mesh.max_prefix.map(|m| m.limit),
            Some(500),
            "the file's default"
        );
        assert_eq!(mesh.max_restart_time, None);
    }

    #[test]
    fn settings_a_reload_cannot_apply_are_named_and_kept() {
        let old = config("Never", "Never");
        let mut new = old.clone();
        new.as_number = 64513;
        new.listen_port = 1179;
        new.route_protocol = crate::config::RouteProtocol(80);
        new.ip_pools[0].ipip_mode = crate::config::EncapMode::Always;
        let changed = keep_restart_only_settings(&old, &mut new);
        assert_eq!(
            changed,
            [
                "asNumber (64512 to 64513)",
                "listenPort (179 to 1179)",
                "routeProtocol (RouteProtocol(12) to RouteProtocol(80))"
            ]
        );
        assert_eq!(new.as_number, 64512);
        assert_eq!(new.listen_port, 179);
        assert_eq!(
            new.ip_pools[0].ipip_mode,
            crate::config::EncapMode::Always,
            "the rest is applied"
        );
        let mut moved = old.clone();
        moved.node_address = "10.1.1.99/24".parse().unwrap();
        let changed = keep_restart_only_settings(&old, &mut moved);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(moved.router_id(), old.router_id());
    }

    #[test]
    fn a_password_file_longer_than_an_md5_key_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("tern-md5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with_password = |octets: usize| {
            let file = dir.join(format!("key-{octets}"));
            std::fs::write(&file, format!("{}\n", "k".repeat(octets))).unwrap();
            let text = format!(
                "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
                 peers:\n  - peerIP: 10.1.1.1\n    asNumber: 65000\n    passwordFile: {}\n",
                file.display()
            );
            desired_peers(&Config::parse(&text, Path::new("t.yaml")).unwrap())
        };
        let longest = with_password(80).unwrap();
        assert_eq!(
            longest[&ip("10.1.1.1")]
                .config
                .password
                .as_deref()
                .map(str::len),
            Some(80),
            "the newline is not part of the key"
        );
        let error = with_password(81).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            error.contains("key-81") && error.contains("81 octets"),
            "{error}"
        );
    }
}
