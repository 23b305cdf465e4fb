//! The reconciler: pure functions from desired state (the configuration, the API's blocks and
//! peers) and observed state (the speaker's best paths, the kernel's routes) to what must change.
//! No netlink, no sockets, no clock: the agent's loop applies what these return, and the unit
//! tests below check the rules without namespaces.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use tern_bgp::wire::Community;
use tern_bgp::{Filter, PeerConfig, PrefixRange, SpeakerConfig};

use crate::config::{CommunityValue, Config, SourceAddress, parse_peer_ip};
use crate::error::DesiredPeerError;

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
    /// Prefixes outside the pools this peer may install (its filters).
    pub extra: Vec<IpNetwork>,
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
            peers.insert(
                node.address,
                DesiredPeer {
                    config: peer,
                    kind: PeerKind::Mesh,
                    extra: Vec::new(),
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
            peer.password = Some(password.trim_end_matches(['\n', '\r']).to_owned());
        }
        if !entry.filters.is_empty() {
            let ranges = entry
                .filters
                .iter()
                .map(|p| PrefixRange {
                    prefix: *p,
                    min_length: p.prefix(),
                    max_length: if p.is_ipv4() { 32 } else { 128 },
                })
                .collect();
            peer.import = Some(Filter { ranges });
        }
        peers.insert(
            address,
            DesiredPeer {
                config: peer,
                kind,
                extra: entry.filters.clone(),
            },
        );
    }
    Ok(peers)
}

/// The speaker configuration for `config`.
pub fn speaker_config(config: &Config, restarting: bool) -> SpeakerConfig {
    let router_id = config
        .router_id()
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
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
