//! Test helpers: what tests wait for and assert on in a running lab.
//!
//! - BGP sessions on FRR (`vtysh ... json`), BIRD (`birdc`) and GoBGP (`gobgp -j`):
//!   [`sessions`], [`wait_established`];
//! - routes a daemon received from a peer, with their AS paths: [`received_routes`];
//! - a node's kernel routes by protocol (`ip -j route`): [`kernel_routes`];
//! - pings from a node or pod with a deadline, counting lost packets: [`ping`], or in the
//!   background while the test acts: [`Pinger`];
//! - packet captures on a link, counted by IP protocol: [`Capture`];
//! - polling with a deadline instead of fixed sleeps: [`wait_for`], and [`eventually`], its
//!   panicking sibling for a test's own condition;
//! - asking a node's daemon anything, its output as text: [`vtysh`], [`birdc`], [`gobgp`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::daemon;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::netns;
use crate::topology::DaemonKind;

/// Polls `probe` every 200 ms until it gives `Some`, or fails with [`Error::Timeout`] after
/// `timeout`. The probe's `Err` is kept as the last observation, not returned at once (a daemon
/// may not answer yet).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = error.to_string(),
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                waited: timeout,
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `check` every 100 ms until it returns `Ok`; after `timeout` panics with `what` and the
/// last reason `check` gave. For a test's own condition, where [`wait_for`]'s `Result` is only
/// unwrapped.
pub fn eventually(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if start.elapsed() >= timeout => panic!("{what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Asking a daemon.
// ---------------------------------------------------------------------------------------------

/// Runs a command in `node` and returns its stdout whatever its exit status (the daemons'
/// clients print their complaints there, and a test matches on them).
fn output_of<S: AsRef<str>>(lab: &Lab, node: &str, argv: &[S]) -> Result<(String, String)> {
    let out = netns::output(&mut lab.command(node, argv)?)?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `vtysh -c COMMAND` against `node`'s FRR: its output.
pub fn vtysh(lab: &Lab, node: &str, command: &str) -> Result<String> {
    Ok(output_of(lab, node, &["vtysh", "-c", command])?.0)
}

/// `birdc COMMAND` against `node`'s BIRD (the command's words as birdc's arguments): its output.
pub fn birdc(lab: &Lab, node: &str, command: &str) -> Result<String> {
    let mut argv = vec!["birdc"];
    argv.extend(command.split_whitespace());
    Ok(output_of(lab, node, &argv)?.0)
}

/// `gobgp ARGS` against `node`'s GoBGP (its API listens on the node's own loopback): stdout and
/// stderr together.
pub fn gobgp(lab: &Lab, node: &str, args: &str) -> Result<String> {
    let mut argv = vec!["gobgp"];
    argv.extend(args.split_whitespace());
    let (stdout, stderr) = output_of(lab, node, &argv)?;
    Ok(stdout + &stderr)
}

// ---------------------------------------------------------------------------------------------
// Sessions.
// ---------------------------------------------------------------------------------------------

/// The BGP state a node's daemon reports for each of its peers, by peer address, spelled as
/// RFC 4271 does (`Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`, `Established`).
pub fn sessions(lab: &Lab, node: &str) -> Result<BTreeMap<IpAddr, String>> {
    match running(lab, node)? {
        DaemonKind::Frr => {
            let json = json_of(lab, node, &["vtysh", "-c", "show bgp neighbors json"])?;
            Ok(frr_sessions(&json))
        }
        DaemonKind::Bird => {
            let text = lab.exec(node, &["birdc", "show", "protocols", "all"])?;
            Ok(bird_protocols(&text)
                .into_iter()
                .filter_map(|p| Some((p.neighbor?, p.state)))
                .collect())
        }
        DaemonKind::Gobgp => {
            let json = json_of(lab, node, &["gobgp", "neighbor", "-j"])?;
            Ok(gobgp_sessions(&json))
        }
        other => Err(unsupported(node, other, "session checks")),
    }
}

/// Waits until `node`'s daemon has its session with `peer` Established.
pub fn wait_established(lab: &Lab, node: &str, peer: IpAddr, timeout: Duration) -> Result<()> {
    wait_for(
        &format!("node {node}: session with {peer} Established"),
        timeout,
        || {
            let all = sessions(lab, node)?;
            match all.get(&peer) {
                Some(state) if state == "Established" => Ok(Some(())),
                Some(state) => Err(Error::NotFound(format!("{peer} is {state}"))),
                None => Err(Error::NotFound(format!(
                    "{node} has no session with {peer} (it has {all:?})"
                ))),
            }
        },
    )
}

fn running(lab: &Lab, node: &str) -> Result<DaemonKind> {
    lab.running_daemon(node)?
        .ok_or_else(|| Error::NotFound(format!("node {node} runs no daemon")))
}

fn unsupported(node: &str, daemon: DaemonKind, what: &str) -> Error {
    Error::NotFound(format!(
        "node {node} runs {daemon}: {what} are not available for it"
    ))
}

fn json_of<S: AsRef<str>>(lab: &Lab, node: &str, argv: &[S]) -> Result<Value> {
    let text = lab.exec(node, argv)?;
    serde_json::from_str(&text).map_err(|error| Error::Parse {
        command: argv.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "),
        what: format!("{error}: {}", text.chars().take(300).collect::<String>()),
    })
}

/// Normalizes a state name to RFC 4271's spelling.
fn rfc_state(state: &str) -> String {
    match state.to_ascii_lowercase().as_str() {
        "idle" => "Idle",
        "connect" => "Connect",
        "active" => "Active",
        "opensent" => "OpenSent",
        "openconfirm" => "OpenConfirm",
        "established" => "Established",
        _ => return state.to_string(),
    }
    .to_string()
}

/// `show bgp neighbors json`: `{ "<peer>": { "bgpState": "Established", ... }, ... }`.
fn frr_sessions(json: &Value) -> BTreeMap<IpAddr, String> {
    let Some(peers) = json.as_object() else {
        return BTreeMap::new();
    };
    peers
        .iter()
        .filter_map(|(peer, info)| {
            let addr = peer.parse().ok()?;
            Some((addr, rfc_state(info.get("bgpState")?.as_str()?)))
        })
        .collect()
}

/// `gobgp neighbor -j`: `[{ "state": { "neighbor_address": ..., "session_state": 6 } }]`.
fn gobgp_sessions(json: &Value) -> BTreeMap<IpAddr, String> {
    const STATES: [&str; 7] = [
        "Unknown",
        "Idle",
        "Connect",
        "Active",
        "OpenSent",
        "OpenConfirm",
        "Established",
    ];
    let Some(peers) = json.as_array() else {
        return BTreeMap::new();
    };
    peers
        .iter()
        .filter_map(|peer| {
            let state = peer.get("state")?;
            let addr = state
                .get("neighbor_address")
                .or_else(|| peer.pointer("/conf/neighbor_address"))?
                .as_str()?
                .parse()
                .ok()?;
            let session = match state.get("session_state") {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| STATES.get(n as usize))
                    .map_or_else(|| n.to_string(), |s| (*s).to_string()),
                Some(Value::String(s)) => rfc_state(s),
                _ => "Unknown".to_string(),
            };
            Some((addr, session))
        })
        .collect()
}

/// A BGP protocol in `birdc show protocols all`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BirdProtocol {
    name: String,
    neighbor: Option<IpAddr>,
    state: String,
}

/// The BGP protocols of `birdc show protocols all`, with their neighbor and BGP state.
fn bird_protocols(text: &str) -> Vec<BirdProtocol> {
    let mut protocols: Vec<BirdProtocol> = Vec::new();
    let mut in_bgp = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            in_bgp = fields.get(1) == Some(&"BGP");
            if in_bgp {
                protocols.push(BirdProtocol {
                    name: fields[0].to_string(),
                    neighbor: None,
                    state: fields.get(5).map_or("Idle", |s| s).to_string(),
                });
            }
            continue;
        }
        let Some(protocol) = protocols.last_mut().filter(|_| in_bgp) else {
            continue;
        };
        let line = line.trim();
        if let Some(state) = line.strip_prefix("BGP state:") {
            protocol.state = rfc_state(state.trim());
        } else if let Some(addr) = line.strip_prefix("Neighbor address:") {
            // "10.0.0.1" or "fe80::1%eth1".
            let addr = addr.trim().split('%').next().unwrap_or_default();
            protocol.neighbor = addr.parse().ok();
        }
    }
    protocols
}

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
fn parse_as_path(text: &str) -> Vec<u32> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ',' | '(' | ')' | '[' | ']'))
        .filter_map(|asn| asn.parse().ok())
        .collect()
}

/// `show bgp ... json` (with or without `neighbors X routes`): `{ "routes": { "<prefix>":
/// [ { "path": "65002", "bestpath": true, "nexthops": [ { "ip": ... } ] } ] } }`.
fn frr_routes(json: &Value) -> Vec<BgpRoute> {
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
fn bird_routes(text: &str) -> Vec<BgpRoute> {
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
fn gobgp_routes(json: &Value) -> Vec<BgpRoute> {
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
fn parse_ip_routes(json: &Value, ipv6: bool) -> Vec<KernelRoute> {
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

// ---------------------------------------------------------------------------------------------
// Ping.
// ---------------------------------------------------------------------------------------------

/// What a ping run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReport {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
}

impl PingReport {
    /// Requests that got no reply.
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// Pings `destination` from `target` (a node or `node/pod`): `count` echo requests 200 ms apart,
/// stopping at `deadline` whatever happened; returns how many were answered.
pub fn ping(
    lab: &Lab,
    target: &str,
    destination: IpAddr,
    count: u32,
    deadline: Duration,
) -> Result<PingReport> {
    if daemon::find_program("ping").is_none() {
        return Err(Error::Missing {
            program: "ping".into(),
            why: "ping checks need it".into(),
            package: "iputils-ping".into(),
        });
    }
    let ns = lab.netns(target)?;
    let family = if destination.is_ipv6() { "-6" } else { "-4" };
    let argv = [
        "ping".to_string(),
        family.to_string(),
        "-n".into(),
        "-q".into(),
        "-c".into(),
        count.to_string(),
        "-i".into(),
        "0.2".into(),
        "-W".into(),
        "1".into(),
        "-w".into(),
        deadline.as_secs().max(1).to_string(),
        destination.to_string(),
    ];
    let mut command = netns::exec_command(&ns, &argv);
    let out = netns::output(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_ping(&text).ok_or_else(|| netns::failure(&command, &out))
}

/// A ping running in the background: an echo request every `interval` for `seconds` seconds,
/// from a node or pod, while the test does something else (restarts a daemon). Dropping it
/// unfinished kills the ping.
#[derive(Debug)]
pub struct Pinger {
    child: Option<Child>,
    command: String,
}

impl Pinger {
    /// Starts `ping -n -q -i INTERVAL -w SECONDS DESTINATION` in `target`.
    pub fn start(
        lab: &Lab,
        target: &str,
        destination: IpAddr,
        interval: Duration,
        seconds: u32,
    ) -> Result<Pinger> {
        let ns = lab.netns(target)?;
        let argv = [
            "ping".to_string(),
            "-n".into(),
            "-q".into(),
            "-i".into(),
            interval.as_secs_f64().to_string(),
            "-w".into(),
            seconds.to_string(),
            destination.to_string(),
        ];
        let mut command = netns::exec_command(&ns, &argv);
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let line = netns::command_line(&command);
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: line.clone(),
            source,
        })?;
        Ok(Pinger {
            child: Some(child),
            command: line,
        })
    }

    /// Waits for the ping to end and returns how many echo requests were sent and answered.
    pub fn finish(mut self) -> Result<PingReport> {
        let child = self.child.take().expect("finished once");
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            command: self.command.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping(&text).ok_or_else(|| Error::Parse {
            command: self.command.clone(),
            what: format!("no ping summary in {text:?}"),
        })
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `N packets transmitted, M received` from ping's summary.
fn parse_ping(text: &str) -> Option<PingReport> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
    Some(PingReport {
        transmitted: numbers.next()?,
        received: numbers.next()?,
    })
}

// ---------------------------------------------------------------------------------------------
// Captures.
// ---------------------------------------------------------------------------------------------

/// IP protocol numbers worth counting.
pub mod ip_protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IP-in-IP (RFC 2003).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP (VXLAN rides on it).
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// Packets of a capture, counted by IP protocol (IPv4's protocol, IPv6's next header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// Packets per IP protocol number.
    pub by_protocol: BTreeMap<u8, u64>,
    /// Frames that are not IP (ARP, ...).
    pub not_ip: u64,
}

impl PacketCounts {
    /// Packets of IP protocol `protocol` (see [`ip_protocol`]).
    pub fn count(&self, protocol: u8) -> u64 {
        self.by_protocol.get(&protocol).copied().unwrap_or(0)
    }

    /// All IP packets.
    pub fn ip_total(&self) -> u64 {
        self.by_protocol.values().sum()
    }
}

static CAPTURES: AtomicU32 = AtomicU32::new(0);

/// A tcpdump running on one interface of a node or pod; [`Capture::stop`] ends it and counts.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    what: String,
}

impl Capture {
    /// Starts capturing on `iface` of `target` (a node or `node/pod`) and returns once tcpdump
    /// listens.
    pub fn start(lab: &Lab, target: &str, iface: &str) -> Result<Capture> {
        if daemon::find_program("tcpdump").is_none() {
            return Err(Error::Missing {
                program: "tcpdump".into(),
                why: "captures need it".into(),
                package: "tcpdump".into(),
            });
        }
        let ns = lab.netns(target)?;
        let dir = lab.dir().join("captures");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let n = CAPTURES.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{}-{iface}-{n}", target.replace('/', "-"));
        let file = dir.join(format!("{stem}.pcap"));
        let log = dir.join(format!("{stem}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
        let argv = [
            "tcpdump".to_string(),
            "-i".into(),
            iface.into(),
            "-n".into(),
            "-U".into(),
            "--immediate-mode".into(),
            "-s".into(),
            "128".into(),
            "-Z".into(),
            "root".into(),
            "-w".into(),
            file.display().to_string(),
        ];
        let mut command = netns::exec_command(&ns, &argv);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: netns::command_line(&command),
            source,
        })?;
        let mut capture = Capture {
            child: Some(child),
            file,
            what: format!("{target}:{iface}"),
        };
        wait_for(
            &format!("tcpdump listening on {}", capture.what),
            Duration::from_secs(10),
            || {
                if let Some(child) = capture.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(Error::Command {
                        command: netns::command_line(&command),
                        status: status.to_string(),
                        stderr: daemon::tail(&log, 5),
                    });
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(text.contains("listening on").then_some(()))
            },
        )?;
        Ok(capture)
    }

    /// Stops tcpdump and counts what it captured.
    pub fn stop(mut self) -> Result<PacketCounts> {
        self.end();
        let bytes = std::fs::read(&self.file).map_err(|e| Error::io(&self.file, e))?;
        count_protocols(&bytes).map_err(|what| Error::Parse {
            command: format!("tcpdump on {}", self.what),
            what,
        })
    }

    fn end(&mut self) {
        if let Some(mut child) = self.child.take() {
            // tcpdump drops what it has not written yet when interrupted: let the file settle
            // (no growth for 150 ms, at most 2 s) first.
            let size = |file: &PathBuf| std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let start = Instant::now();
            let (mut last, mut quiet) = (size(&self.file), 0);
            while quiet < 3 && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(50));
                let now = size(&self.file);
                quiet = if now == last { quiet + 1 } else { 0 };
                last = now;
            }
            daemon::signal(child.id(), "INT");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.end();
    }
}

/// Counts the packets of a pcap file (Ethernet, Linux cooked v1/v2 or raw IP) by IP protocol.
pub fn count_protocols(pcap: &[u8]) -> std::result::Result<PacketCounts, String> {
    if pcap.len() < 24 {
        return Err(format!("{} bytes is too short for a pcap file", pcap.len()));
    }
    let magic = [pcap[0], pcap[1], pcap[2], pcap[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
    };
    let u32_at = |bytes: &[u8], at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link_type = u32_at(pcap, 20);
    let mut counts = PacketCounts::default();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let captured = u32_at(pcap, at + 8) as usize;
        let start = at + 16;
        let end = (start + captured).min(pcap.len());
        let frame = &pcap[start..end];
        at = start + captured;
        let (ethertype, payload) = match link_type {
            1 => {
                let mut offset = 12;
                let mut ethertype = read_u16(frame, offset);
                while matches!(ethertype, Some(0x8100 | 0x88a8)) {
                    offset += 4;
                    ethertype = read_u16(frame, offset);
                }
                (ethertype, offset + 2)
            }
            113 => (read_u16(frame, 14), 16),
            276 => (read_u16(frame, 0), 20),
            101 | 12 | 14 => match frame.first().map(|b| b >> 4) {
                Some(4) => (Some(0x0800), 0),
                Some(6) => (Some(0x86dd), 0),
                _ => (None, 0),
            },
            other => return Err(format!("link type {other} is not supported")),
        };
        let protocol = match ethertype {
            Some(0x0800) => frame.get(payload + 9).copied(),
            Some(0x86dd) => frame.get(payload + 6).copied(),
            _ => None,
        };
        match protocol {
            Some(protocol) => *counts.by_protocol.entry(protocol).or_default() += 1,
            None => counts.not_ip += 1,
        }
    }
    Ok(counts)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frr_neighbors_json_gives_states_by_peer() {
        let json: Value = serde_json::from_str(
            r#"{"10.0.0.2":{"bgpState":"Established"},"fd00::3":{"bgpState":"Active"},"eth1":{"bgpState":"Idle"}}"#,
        )
        .expect("json");
        let sessions = frr_sessions(&json);
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions[&"10.0.0.2".parse::<IpAddr>().expect("ip")],
            "Established"
        );
        assert_eq!(
            sessions[&"fd00::3".parse::<IpAddr>().expect("ip")],
            "Active"
        );
    }

    #[test]
    fn gobgp_session_state_numbers_become_rfc_names() {
        let json: Value = serde_json::from_str(
            r#"[{"state":{"neighbor_address":"10.9.0.2","session_state":6}},
                {"state":{"neighbor_address":"10.9.0.4","session_state":3}}]"#,
        )
        .expect("json");
        let sessions = gobgp_sessions(&json);
        assert_eq!(
            sessions[&"10.9.0.2".parse::<IpAddr>().expect("ip")],
            "Established"
        );
        assert_eq!(
            sessions[&"10.9.0.4".parse::<IpAddr>().expect("ip")],
            "Active"
        );
    }

    const BIRD_PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     03:39:51.277
gobgp      BGP        ---        up     03:39:55.219  Established
  BGP state:          Established
    Neighbor address: 10.9.0.3
    Neighbor AS:      65003
  Channel ipv4
    State:          UP
frr        BGP        ---        start  03:39:51.277  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 10.9.0.1
    Neighbor AS:      65001
";

    #[test]
    fn bird_protocols_give_neighbor_and_state() {
        let protocols = bird_protocols(BIRD_PROTOCOLS);
        assert_eq!(
            protocols,
            [
                BirdProtocol {
                    name: "gobgp".into(),
                    neighbor: Some("10.9.0.3".parse().expect("ip")),
                    state: "Established".into()
                },
                BirdProtocol {
                    name: "frr".into(),
                    neighbor: Some("10.9.0.1".parse().expect("ip")),
                    state: "Active".into()
                },
            ]
        );
    }

    #[test]
    fn bird_routes_give_as_path_next_hop_and_best() {
        let text = "BIRD 2.0.12 ready.
Table master4:
192.0.2.0/24         unicast [gobgp 03:39:55.220] * (100) [AS65003?]
\tvia 10.9.0.3 on eth1
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65003
\tBGP.next_hop: 10.9.0.3
\tBGP.local_pref: 100
                     unicast [frr 03:39:56.000] (100) [AS65002i]
\tvia 10.9.0.1 on eth1
\tBGP.as_path: 65001 65002
\tBGP.next_hop: 10.9.0.1
Table master6:
2001:db8::/48        unicast [gobgp 03:39:55.220] * (100) [AS65003i]
\tvia fd00::3 on eth1
\tBGP.as_path: 65003
\tBGP.next_hop: fd00::3 fe80::1
";
        let routes = bird_routes(text);
        assert_eq!(routes.len(), 3, "{routes:?}");
        assert_eq!(routes[0].prefix.to_string(), "192.0.2.0/24");
        assert_eq!(routes[0].as_path, [65003]);
        assert!(routes[0].best);
        assert_eq!(routes[1].prefix.to_string(), "192.0.2.0/24");
        assert_eq!(routes[1].as_path, [65001, 65002]);
        assert!(!routes[1].best);
        assert_eq!(routes[2].next_hop, Some("fd00::3".parse().expect("ip")));
    }

    #[test]
    fn frr_and_gobgp_route_json_give_as_paths() {
        let frr: Value = serde_json::from_str(
            r#"{"routes":{"203.0.113.0/24":[{"valid":true,"bestpath":true,"path":"65002 {65010,65011}",
                "nexthops":[{"ip":"10.0.0.2","afi":"ipv4","used":true}]}]}}"#,
        )
        .expect("json");
        let routes = frr_routes(&frr);
        assert_eq!(routes[0].as_path, [65002, 65010, 65011]);
        assert_eq!(routes[0].next_hop, Some("10.0.0.2".parse().expect("ip")));
        assert!(routes[0].best);

        let gobgp: Value = serde_json::from_str(
            r#"{"203.0.113.0/24":[{"nlri":{"prefix":"203.0.113.0/24"},"best":true,"attrs":[
                {"type":1,"value":0},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[65002]}]},
                {"type":3,"nexthop":"10.9.0.2"}]}]}"#,
        )
        .expect("json");
        let routes = gobgp_routes(&gobgp);
        assert_eq!(routes[0].as_path, [65002]);
        assert_eq!(routes[0].next_hop, Some("10.9.0.2".parse().expect("ip")));
    }

    #[test]
    fn ip_route_json_gives_prefixes_next_hops_and_protocols() {
        let json: Value = serde_json::from_str(
            r#"[{"dst":"default","gateway":"10.0.1.1","dev":"eth1","flags":[]},
                {"dst":"10.244.1.2","dev":"cali0","protocol":"static","scope":"link","flags":[]},
                {"type":"blackhole","dst":"203.0.113.0/24","protocol":"bird","metric":32,"flags":[]},
                {"dst":"198.51.100.0/24","protocol":"bgp","metric":20,"nexthops":[
                    {"gateway":"10.0.0.1","dev":"eth1","weight":1},{"gateway":"10.0.0.3","dev":"eth1","weight":1}]}]"#,
        )
        .expect("json");
        let routes = parse_ip_routes(&json, false);
        assert_eq!(routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(routes[1].dst.to_string(), "10.244.1.2/32");
        assert_eq!(routes[1].protocol, "static");
        assert_eq!(routes[2].kind, "blackhole");
        assert!(routes[2].nexthops.is_empty());
        assert_eq!(routes[3].gateways().len(), 2);
    }

    #[test]
    fn ping_summaries_give_sent_and_received() {
        let text = "PING 10.0.1.11 (10.0.1.11) 56(84) bytes of data.\n\n--- 10.0.1.11 ping statistics ---\n\
                    5 packets transmitted, 3 received, 40% packet loss, time 801ms\n";
        let report = parse_ping(text).expect("summary");
        assert_eq!(
            report,
            PingReport {
                transmitted: 5,
                received: 3
            }
        );
        assert_eq!(report.lost(), 2);
        let text = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4ms\n";
        assert_eq!(parse_ping(text).map(|r| r.lost()), Some(5));
    }

    fn pcap(link_type: u32, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(0xa1b2_c3d4_u32.to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend([0; 8]);
        out.extend(65535u32.to_le_bytes());
        out.extend(link_type.to_le_bytes());
        for frame in frames {
            out.extend([0; 8]);
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend(frame);
        }
        out
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0; 12];
        frame.extend(ethertype.to_be_bytes());
        frame.extend(payload);
        frame
    }

    #[test]
    fn captures_count_packets_by_ip_protocol() {
        let mut ipv4 = vec![0x45; 20];
        ipv4[9] = ip_protocol::IPIP;
        let mut ipv6 = vec![0x60; 40];
        ipv6[6] = ip_protocol::ICMPV6;
        let mut icmp = ipv4.clone();
        icmp[9] = ip_protocol::ICMP;
        let bytes = pcap(
            1,
            &[
                ethernet(0x0800, &ipv4),
                ethernet(0x0800, &ipv4),
                ethernet(0x86dd, &ipv6),
                ethernet(0x0806, &[0; 28]),
                {
                    let mut vlan = vec![0; 12];
                    vlan.extend([0x81, 0x00, 0, 1, 0x08, 0x00]);
                    vlan.extend(&icmp);
                    vlan
                },
            ],
        );
        let counts = count_protocols(&bytes).expect("pcap");
        assert_eq!(counts.count(ip_protocol::IPIP), 2);
        assert_eq!(counts.count(ip_protocol::ICMPV6), 1);
        assert_eq!(counts.count(ip_protocol::ICMP), 1);
        assert_eq!(counts.not_ip, 1);
        assert_eq!(counts.ip_total(), 4);
        assert!(count_protocols(b"not a pcap file at all, no").is_err());
    }
}
