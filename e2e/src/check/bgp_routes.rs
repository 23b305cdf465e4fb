//! Routes a daemon received from a peer, with their AS paths, per daemon.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::sessions::{bird_protocols, json_of, running, unsupported};
use super::wait_for;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::topology::DaemonKind;

// ---------------------------------------------------------------------------------------------
// Received routes.
// ---------------------------------------------------------------------------------------------

/// A BGP route as a daemon holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpRoute {
    /// The prefix.
    pub prefix: IpNetwork,
    /// The AS path, flattened (AS_SET members in order).
    pub as_path: Vec<u32>,
    /// The next hop.
    pub next_hop: Option<IpAddr>,
    /// Whether the daemon chose it as best.
    pub best: bool,
}

impl fmt::Display for BgpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as-path {:?}", self.prefix, self.as_path)?;
        if let Some(next_hop) = self.next_hop {
            write!(f, " via {next_hop}")?;
        }
        if self.best {
            write!(f, " best")?;
        }
        Ok(())
    }
}

/// The routes (IPv4 and IPv6 unicast) `node`'s daemon accepted from `peer`.
pub fn received_routes(lab: &Lab, node: &str, peer: IpAddr) -> Result<Vec<BgpRoute>> {
    match running(lab, node)? {
        DaemonKind::Frr => {
            let mut routes = Vec::new();
            for afi in ["ipv4", "ipv6"] {
                let command = format!("show bgp {afi} unicast neighbors {peer} routes json");
                let text = lab.exec(node, &["vtysh", "-c", &command])?;
                // A peer without this family answers with an error text, not JSON.
                if let Ok(json) = serde_json::from_str::<Value>(&text) {
                    routes.extend(frr_routes(&json));
                }
            }
            Ok(routes)
        }
        DaemonKind::Bird => {
            let text = lab.exec(node, &["birdc", "show", "protocols", "all"])?;
            let protocol = bird_protocols(&text)
                .into_iter()
                .find(|p| p.neighbor == Some(peer))
                .ok_or_else(|| {
                    Error::NotFound(format!("node {node}: no BIRD protocol has neighbor {peer}"))
                })?;
            let text = lab.exec(
                node,
                &["birdc", "show", "route", "all", "protocol", &protocol.name],
            )?;
            Ok(bird_routes(&text))
        }
        DaemonKind::Gobgp => {
            let mut routes = Vec::new();
            for afi in ["ipv4", "ipv6"] {
                let peer = peer.to_string();
                let json = json_of(
                    lab,
                    node,
                    &["gobgp", "neighbor", &peer, "adj-in", "-a", afi, "-j"],
                )?;
                routes.extend(gobgp_routes(&json));
            }
            Ok(routes)
        }
        other => Err(unsupported(node, other, "route checks")),
    }
}

/// Waits until `node` has accepted `prefix` from `peer`, and returns that route.
pub fn wait_received_route(
    lab: &Lab,
    node: &str,
    peer: IpAddr,
    prefix: IpNetwork,
    timeout: Duration,
) -> Result<BgpRoute> {
    wait_for(
        &format!("node {node}: {prefix} from {peer}"),
        timeout,
        || {
            let routes = received_routes(lab, node, peer)?;
            match routes.iter().find(|r| r.prefix == prefix) {
                Some(route) => Ok(Some(route.clone())),
                None => Err(Error::NotFound(format!(
                    "{node} has from {peer}: [{}]",
                    routes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        },
    )
}

/// Parses an AS path as the daemons print it: `65001 65002 {65003,65004}`.
pub(super) fn parse_as_path(text: &str) -> Vec<u32> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ',' | '(' | ')' | '[' | ']'))
        .filter_map(|asn| asn.parse().ok())
        .collect()
}

/// `show bgp ... json` (with or without `neighbors X routes`): `{ "routes": { "<prefix>":
/// [ { "path": "65002", "bestpath": true, "nexthops": [ { "ip": ... } ] } ] } }`.
pub(super) fn frr_routes(json: &Value) -> Vec<BgpRoute> {
    let Some(routes) = json.get("routes").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (prefix, paths) in routes {
        let Ok(prefix) = IpNetwork::from_str(prefix) else {
            continue;
        };
        for path in paths.as_array().into_iter().flatten() {
            out.push(BgpRoute {
                prefix,
                as_path: parse_as_path(path.get("path").and_then(Value::as_str).unwrap_or("")),
                next_hop: path
                    .pointer("/nexthops/0/ip")
                    .and_then(Value::as_str)
                    .and_then(|ip| ip.parse().ok()),
                best: path
                    .get("bestpath")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
    }
    out
}

/// `birdc show route all ...`: a head line per route (`<prefix> unicast [proto ...] * (100)`,
/// the prefix omitted on further routes of the same net), then indented attribute lines.
pub(super) fn bird_routes(text: &str) -> Vec<BgpRoute> {
    const ROUTE_TYPES: [&str; 5] = [
        "unicast",
        "blackhole",
        "unreachable",
        "prohibit",
        "multicast",
    ];
    let mut out: Vec<BgpRoute> = Vec::new();
    let mut current: Option<IpNetwork> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        let first = trimmed.split_whitespace().next().unwrap_or_default();
        if trimmed.contains('[') {
            if let Ok(prefix) = IpNetwork::from_str(first) {
                current = Some(prefix);
            } else if !ROUTE_TYPES.contains(&first) {
                continue;
            }
            if let Some(prefix) = current {
                out.push(BgpRoute {
                    prefix,
                    as_path: Vec::new(),
                    next_hop: None,
                    best: trimmed.split_whitespace().any(|w| w == "*"),
                });
            }
            continue;
        }
        let Some(route) = out.last_mut() else {
            continue;
        };
        if let Some(path) = trimmed.strip_prefix("BGP.as_path:") {
            route.as_path = parse_as_path(path);
        } else if let Some(next_hop) = trimmed.strip_prefix("BGP.next_hop:") {
            route.next_hop = next_hop
                .split_whitespace()
                .next()
                .and_then(|ip| ip.parse().ok());
        }
    }
    out
}

/// `gobgp ... -j` RIB dumps: `{ "<prefix>": [ { "best": true, "attrs": [ { "type": 2,
/// "as_paths": [ { "asns": [...] } ] }, { "type": 3, "nexthop": ... }, { "type": 14,
/// "nexthops": [...] } ] } ] }`.
pub(super) fn gobgp_routes(json: &Value) -> Vec<BgpRoute> {
    let Some(routes) = json.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (prefix, paths) in routes {
        let Ok(prefix) = IpNetwork::from_str(prefix) else {
            continue;
        };
        for path in paths.as_array().into_iter().flatten() {
            let mut route = BgpRoute {
                prefix,
                as_path: Vec::new(),
                next_hop: None,
                best: path.get("best").and_then(Value::as_bool).unwrap_or(false),
            };
            for attr in path
                .get("attrs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match attr.get("type").and_then(Value::as_u64) {
                    Some(2) => {
                        for segment in attr
                            .get("as_paths")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            route.as_path.extend(
                                segment
                                    .get("asns")
                                    .and_then(Value::as_array)
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|asn| asn.as_u64())
                                    .filter_map(|asn| u32::try_from(asn).ok()),
                            );
                        }
                    }
                    Some(3) => {
                        route.next_hop = attr
                            .get("nexthop")
                            .and_then(Value::as_str)
                            .and_then(|ip| ip.parse().ok());
                    }
                    Some(14) => {
                        route.next_hop = attr
                            .pointer("/nexthops/0")
                            .and_then(Value::as_str)
                            .and_then(|ip| ip.parse().ok());
                    }
                    _ => {}
                }
            }
            out.push(route);
        }
    }
    out
}
