//! `ternd check-config FILE`: a dry run. It reads and checks a configuration the way ternd does
//! at start and says what ternd would do with it: the node, the peers it would open sessions
//! with, the pools, the blocks it would announce and the data path per pool. It touches nothing:
//! no socket, no route, no device (only the file, its password files and the state file are
//! read).

use std::fmt::Write as _;

use crate::config::{Config, EncapMode, IpipDataPath};
use crate::error::DesiredPeerError;
use crate::filter::PrefixFilter;
use crate::reconcile::{PeerKind, desired_peers, exported};

/// What ternd would do with `config`, as an operator reads it; the saved API blocks come from
/// its state file.
pub fn describe(config: &Config) -> Result<String, DesiredPeerError> {
    let peers = desired_peers(config)?;
    let mut out = String::new();
    let router_id = config
        .router_id()
        .map_or_else(|| "none (set routerID)".to_owned(), |r| r.to_string());
    let _ = writeln!(
        out,
        "node {} address {} AS {} router id {router_id}",
        config.node_name, config.node_address, config.as_number
    );
    let _ = writeln!(
        out,
        "routes: table {} protocol {}{}",
        config.route_table,
        config.route_protocol.0,
        config
            .metric
            .map_or_else(String::new, |m| format!(" metric {m}"))
    );
    let _ = writeln!(out, "\npeers ({}):", peers.len());
    for (address, peer) in &peers {
        let kind = match peer.kind {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::Global => "global",
            PeerKind::NodeSpecific => "node specific",
        };
        let mut line = format!("  {address} AS {} {kind}", peer.config.asn);
        if peer.config.port != 179 {
            let _ = write!(line, " port {}", peer.config.port);
        }
        if peer.config.passive {
            line.push_str(" passive");
        }
        if peer.config.password.is_some() {
            line.push_str(" md5");
        }
        if peer.config.ttl_security {
            line.push_str(" gtsm");
        }
        if let Some(import) = &peer.config.import {
            let filters: Vec<String> = import
                .ranges
                .iter()
                .map(|r| PrefixFilter(*r).to_string())
                .collect();
            let _ = write!(line, " import {}", filters.join(","));
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "\npools ({}):", config.ip_pools.len());
    for pool in &config.ip_pools {
        let data_path = match (pool.ipip_mode, pool.vxlan_mode) {
            (EncapMode::Never, EncapMode::Never) => "routed".to_owned(),
            (ipip, EncapMode::Never) => format!(
                "IP-in-IP {ipip:?} ({})",
                match config.ipip_data_path {
                    IpipDataPath::Auto => "kernel tunl0, or userspace without an ipip module",
                    IpipDataPath::Kernel => "kernel tunl0",
                    IpipDataPath::Userspace => "userspace",
                }
            ),
            (_, vxlan) => format!("VXLAN {vxlan:?} (vxlan.tern, VNI {})", config.vxlan_vni),
        };
        let mut line = format!("  {} blocks /{} {data_path}", pool.cidr, pool.block_size());
        if pool.disabled {
            line.push_str(" disabled");
        }
        if pool.disable_bgp_export {
            line.push_str(" not exported");
        }
        let _ = writeln!(out, "{line}");
    }
    let state = crate::state::Saved::load(config);
    let saved = &state.blocks;
    let count = config.blocks.len() + saved.iter().filter(|b| !config.blocks.contains(b)).count();
    let _ = writeln!(out, "\nblocks ({count}):");
    let all = config.blocks.iter().map(|b| (b, "file")).chain(
        saved
            .iter()
            .filter(|b| !config.blocks.contains(b))
            .map(|b| (b, "API")),
    );
    for (block, source) in all {
        let announced = if exported(config, *block) {
            "announced"
        } else {
            "not announced"
        };
        let _ = writeln!(out, "  {block} from the {source}, blackholed, {announced}");
    }
    for (entry, why) in &state.held {
        let _ = writeln!(
            out,
            "  {entry} held in the state file, not announced: {why}"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_dry_run_names_peers_pools_blocks_and_the_data_path() {
        let text = "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
                    stateFile: /nonexistent/tern-check-state.yaml\n\
                    nodes:\n  - name: n2\n    address: 10.1.1.12\n\
                    peers:\n  - peerIP: 10.1.1.1:1179\n    asNumber: 65000\n    filters: [0.0.0.0/0]\n\
                    ipPools:\n  - cidr: 10.244.0.0/16\n    ipipMode: CrossSubnet\n\
                    \x20 - cidr: 10.245.0.0/16\n    vxlanMode: Always\n    disableBGPExport: true\n\
                    blocks: [10.244.1.0/26, 10.245.1.0/26]\n";
        let config = Config::parse(text, Path::new("t.yaml")).unwrap();
        let out = describe(&config).unwrap();
        for expected in [
            "node n1 address 10.1.1.11/24 AS 64512",
            "10.1.1.1 AS 65000 global port 1179 import 0.0.0.0/0",
            "10.1.1.12 AS 64512 node-to-node mesh",
            "10.244.0.0/16 blocks /26 IP-in-IP CrossSubnet",
            "10.245.0.0/16 blocks /26 VXLAN Always (vxlan.tern, VNI 4096) not exported",
            "10.244.1.0/26 from the file, blackholed, announced",
            "10.245.1.0/26 from the file, blackholed, not announced",
        ] {
            assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
        }
    }
}
