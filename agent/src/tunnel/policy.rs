//! Which encapsulation a route takes, with Calico's meaning of a pool's `ipipMode` and
//! `vxlanMode` (`Never`, `Always`, `CrossSubnet`), and the addresses derived for VXLAN: the VTEP
//! MAC from the node address and a block's tunnel address (its first address). Pure functions of
//! the configuration; IP-in-IP is RFC 2003, VXLAN RFC 7348.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::config::{Config, EncapMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    /// A plain route via the next hop.
    None,
    /// IP-in-IP to the next hop.
    Ipip,
    /// VXLAN to the next hop.
    Vxlan,
}

/// The encapsulation a route to `prefix` via `next_hop` takes: the mode of the enabled IPv4 pool
/// holding the prefix; `CrossSubnet` encapsulates only when the next hop is outside the node's
/// subnet. Routes outside every pool (a default route from a top-of-rack router) are never
/// encapsulated.
pub fn encapsulation(config: &Config, prefix: IpNetwork, next_hop: IpAddr) -> Encapsulation {
    let (IpNetwork::V4(prefix), IpAddr::V4(next_hop)) = (prefix, next_hop) else {
        return Encapsulation::None;
    };
    let Some(pool) = config.ip_pools.iter().find(|p| {
        !p.disabled
            && p.cidr.contains(IpAddr::V4(prefix.network()))
            && prefix.prefix() >= p.cidr.prefix()
    }) else {
        return Encapsulation::None;
    };
    let applies = |mode: EncapMode| match mode {
        EncapMode::Never => false,
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !config.node_address.contains(IpAddr::V4(next_hop)),
    };
    if applies(pool.ipip_mode) {
        Encapsulation::Ipip
    } else if applies(pool.vxlan_mode) {
        Encapsulation::Vxlan
    } else {
        Encapsulation::None
    }
}

/// The VTEP MAC of a node, derived from its underlay address: `0e:74` (locally administered,
/// unicast) and the four octets of the address.
pub fn vtep_mac(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x0e, 0x74, a, b, c, d]
}

/// The tunnel address that goes with a block: its first address.
pub fn tunnel_address(block: Ipv4Network) -> Ipv4Addr {
    block.network()
}

/// Which encapsulations the enabled pools ask for.
pub(super) fn wanted(config: &Config) -> (bool, bool) {
    let pools = config
        .ip_pools
        .iter()
        .filter(|p| !p.disabled && p.cidr.is_ipv4());
    let mut ipip = false;
    let mut vxlan = false;
    for pool in pools {
        ipip |= pool.ipip_mode != EncapMode::Never;
        vxlan |= pool.vxlan_mode != EncapMode::Never;
    }
    (ipip, vxlan)
}

/// The node's own tunnel address: the first address of its first block in an encapsulated pool.
pub(super) fn own_tunnel_address(config: &Config, blocks: &[IpNetwork]) -> Option<Ipv4Addr> {
    let mut candidates: Vec<Ipv4Network> = blocks
        .iter()
        .filter_map(|b| match b {
            IpNetwork::V4(b) => Some(*b),
            IpNetwork::V6(_) => None,
        })
        .filter(|b| {
            config.ip_pools.iter().any(|p| {
                !p.disabled
                    && (p.ipip_mode != EncapMode::Never || p.vxlan_mode != EncapMode::Never)
                    && p.cidr.contains(IpAddr::V4(b.network()))
            })
        })
        .collect();
    candidates.sort();
    candidates.first().map(|b| tunnel_address(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(ipip: &str, vxlan: &str) -> Config {
        let text = format!(
            "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
             ipPools:\n  - cidr: 10.244.0.0/16\n    ipipMode: {ipip}\n    vxlanMode: {vxlan}\n\
             blocks: [10.244.1.0/26]\n"
        );
        Config::parse(&text, Path::new("test.yaml")).unwrap()
    }

    /// Checks (prefix, next hop, expected encapsulation) cases against one configuration.
    fn check(config: &Config, cases: &[(&str, &str, Encapsulation)]) {
        for (prefix, next_hop, expected) in cases {
            let got = encapsulation(config, prefix.parse().unwrap(), next_hop.parse().unwrap());
            assert_eq!(got, *expected, "{prefix} via {next_hop}");
        }
    }

    #[test]
    fn always_encapsulates_toward_every_node() {
        check(
            &config("Always", "Never"),
            &[
                ("10.244.2.0/26", "10.1.1.12", Encapsulation::Ipip),
                ("10.244.3.0/26", "10.1.2.13", Encapsulation::Ipip),
            ],
        );
    }

    #[test]
    fn cross_subnet_encapsulates_only_outside_the_node_subnet() {
        check(
            &config("CrossSubnet", "Never"),
            &[
                ("10.244.2.0/26", "10.1.1.12", Encapsulation::None),
                ("10.244.3.0/26", "10.1.2.13", Encapsulation::Ipip),
            ],
        );
        check(
            &config("Never", "CrossSubnet"),
            &[
                ("10.244.2.0/26", "10.1.1.12", Encapsulation::None),
                ("10.244.3.0/26", "10.1.2.13", Encapsulation::Vxlan),
            ],
        );
    }

    #[test]
    fn routes_outside_the_pools_are_never_encapsulated() {
        check(
            &config("Always", "Never"),
            &[
                ("0.0.0.0/0", "10.1.1.1", Encapsulation::None),
                ("10.0.0.0/8", "10.1.2.13", Encapsulation::None),
            ],
        );
    }

    #[test]
    fn never_leaves_routes_plain() {
        check(
            &config("Never", "Never"),
            &[("10.244.3.0/26", "10.1.2.13", Encapsulation::None)],
        );
    }

    #[test]
    fn the_vtep_mac_is_local_unicast_and_carries_the_address() {
        let mac = vtep_mac(Ipv4Addr::new(10, 1, 2, 13));
        assert_eq!(mac, [0x0e, 0x74, 10, 1, 2, 13]);
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
    }

    #[test]
    fn the_tunnel_address_is_the_first_block_first_address() {
        let config = config("Always", "Never");
        let blocks: Vec<IpNetwork> = vec![
            "10.244.9.0/26".parse().unwrap(),
            "10.244.1.64/26".parse().unwrap(),
        ];
        assert_eq!(
            own_tunnel_address(&config, &blocks),
            Some(Ipv4Addr::new(10, 244, 1, 64))
        );
        let plain = self::config("Never", "Never");
        assert_eq!(own_tunnel_address(&plain, &blocks), None);
    }
}
