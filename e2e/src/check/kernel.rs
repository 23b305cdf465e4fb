//! A node's kernel routes by protocol (`ip -j route`), route lines and waits on them.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::wait_for;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::netns;

// ---------------------------------------------------------------------------------------------
// Kernel routes.
// ---------------------------------------------------------------------------------------------

/// A route of a node's kernel (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// The destination (`default` becomes 0.0.0.0/0 or ::/0).
    pub dst: IpNetwork,
    /// `unicast`, `blackhole`, `unreachable`, ...
    pub kind: String,
    /// Its protocol as `ip` names it (`bird`, `bgp`, `static`, `kernel`, or a number).
    pub protocol: String,
    /// Next hops: gateway and device (one, or several for ECMP).
    pub nexthops: Vec<(Option<IpAddr>, Option<String>)>,
    /// Its metric.
    pub metric: Option<u32>,
}

impl KernelRoute {
    /// The gateways of its next hops.
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.nexthops.iter().filter_map(|(gw, _)| *gw).collect()
    }
}

/// The kernel routes (IPv4 and IPv6, main table) of `target` (a node or `node/pod`) with
/// protocol `protocol` (`bird`, `bgp`, `static`, `kernel`, a number, or `all`).
pub fn kernel_routes(lab: &Lab, target: &str, protocol: &str) -> Result<Vec<KernelRoute>> {
    let ns = lab.netns(target)?;
    let mut routes = Vec::new();
    for family in ["-4", "-6"] {
        let mut args = vec!["-j", family, "route", "show", "table", "main"];
        if protocol != "all" {
            args.extend(["proto", protocol]);
        }
        let text = netns::ip_in(&ns, &args)?;
        let json: Value = serde_json::from_str(if text.trim().is_empty() { "[]" } else { &text })
            .map_err(|error| Error::Parse {
            command: format!("ip -n {ns} {}", args.join(" ")),
            what: error.to_string(),
        })?;
        routes.extend(parse_ip_routes(&json, family == "-6"));
    }
    Ok(routes)
}

/// The IPv4 routes of `target`'s main table with protocol `protocol`, as `ip route show proto
/// PROTOCOL` prints them (`blackhole 10.244.1.0/26`, `10.244.2.0/26 via 10.0.9.2 dev eth1`): for
/// tests that match route lines as an operator reads them. `-6` in `protocol`'s place is not
/// supported; use [`kernel_routes`] for structured routes of both families.
pub fn route_lines(lab: &Lab, target: &str, protocol: &str) -> Result<String> {
    lab.exec(target, &["ip", "route", "show", "proto", protocol])
}

/// Waits until [`route_lines`] of `target` contain `wanted` (`10.244.2.0/26 via 10.0.9.2`).
pub fn wait_route_line(
    lab: &Lab,
    target: &str,
    protocol: &str,
    wanted: &str,
    timeout: Duration,
) -> Result<()> {
    wait_for(
        &format!("{target}: a proto {protocol} route {wanted:?}"),
        timeout,
        || {
            let lines = route_lines(lab, target, protocol)?;
            if lines.contains(wanted) {
                Ok(Some(()))
            } else {
                Err(Error::NotFound(format!("it has:\n{lines}")))
            }
        },
    )
}

/// Waits until `target`'s kernel holds `prefix` with protocol `protocol`, and returns it.
pub fn wait_kernel_route(
    lab: &Lab,
    target: &str,
    protocol: &str,
    prefix: IpNetwork,
    timeout: Duration,
) -> Result<KernelRoute> {
    wait_for(
        &format!("{target}: kernel route {prefix} proto {protocol}"),
        timeout,
        || {
            let routes = kernel_routes(lab, target, protocol)?;
            match routes.iter().find(|r| r.dst == prefix) {
                Some(route) => Ok(Some(route.clone())),
                None => Err(Error::NotFound(format!(
                    "{target} has proto {protocol}: [{}]",
                    routes
                        .iter()
                        .map(|r| r.dst.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        },
    )
}

/// `ip -j route`: `[{ "dst": "10.0.0.0/24" | "10.0.0.1" | "default", "gateway": ..., "dev": ...,
/// "protocol": ..., "type": ..., "nexthops": [...] }]`.
pub(super) fn parse_ip_routes(json: &Value, ipv6: bool) -> Vec<KernelRoute> {
    let mut out = Vec::new();
    for route in json.as_array().into_iter().flatten() {
        let Some(dst) = route.get("dst").and_then(Value::as_str) else {
            continue;
        };
        let dst = match dst {
            "default" if ipv6 => "::/0".to_string(),
            "default" => "0.0.0.0/0".to_string(),
            dst if dst.contains('/') => dst.to_string(),
            dst if ipv6 => format!("{dst}/128"),
            dst => format!("{dst}/32"),
        };
        let Ok(dst) = IpNetwork::from_str(&dst) else {
            continue;
        };
        let hop = |v: &Value| {
            (
                v.get("gateway")
                    .and_then(Value::as_str)
                    .and_then(|g| g.parse().ok()),
                v.get("dev").and_then(Value::as_str).map(str::to_string),
            )
        };
        let nexthops = match route.get("nexthops").and_then(Value::as_array) {
            Some(hops) => hops.iter().map(hop).collect(),
            None => {
                let single = hop(route);
                if single == (None, None) {
                    Vec::new()
                } else {
                    vec![single]
                }
            }
        };
        out.push(KernelRoute {
            dst,
            kind: route
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unicast")
                .to_string(),
            protocol: match route.get("protocol") {
                Some(Value::String(p)) => p.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "boot".to_string(),
            },
            nexthops,
            metric: route
                .get("metric")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok()),
        });
    }
    out
}
