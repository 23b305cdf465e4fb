//! ternd's configuration file: YAML with the fields Calico operators know from BGPConfiguration,
//! BGPPeer, IPPool and Node. Unknown fields and invalid values are refused with the file, the
//! line and what to fix; nothing is half-applied.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde::Deserialize;

pub use crate::error::{BadPeerIp, BlockError};
use crate::filter::PrefixFilter;
use crate::protocols;

/// The longest TCP MD5 key (RFC 2385) the kernel takes: Linux's `TCP_MD5SIG_MAXKEYLEN`. A longer
/// one is refused where it is given, instead of a session that silently runs without MD5.
pub const MAX_MD5_KEY: usize = 80;

/// A configuration error: where, and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse or a field is unknown or of the wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde said.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, as a path (`peers[1].asNumber`).
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Calico's encapsulation modes for a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum EncapMode {
    /// No encapsulation: the fabric routes pod addresses.
    #[default]
    Never,
    /// Always encapsulate between nodes.
    Always,
    /// Encapsulate only toward nodes outside our subnet.
    CrossSubnet,
}

/// The route protocol number, given as a number or a name of `/etc/iproute2/rt_protos`
/// (see [`crate::protocols`] for the numbers tern refuses to take over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteProtocol(pub u8);

impl<'de> Deserialize<'de> for RouteProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u8),
            Name(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(RouteProtocol(n)),
            Raw::Name(name) => protocols::number(&name).map(RouteProtocol).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown route protocol {name:?}: use a number (1-255) or a name of /etc/iproute2/rt_protos such as bird"
                ))
            }),
        }
    }
}

impl Default for RouteProtocol {
    fn default() -> Self {
        RouteProtocol(protocols::BIRD)
    }
}

/// A duration written as `90s`, `2m`, `1h` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let seconds = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n,
            Raw::Text(text) => {
                let (number, unit) = text.split_at(
                    text.find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(text.len()),
                );
                let n: u64 = number.parse().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "invalid duration {text:?}: write e.g. 90s, 2m or 1h"
                    ))
                })?;
                match unit {
                    "" | "s" => n,
                    "m" => n * 60,
                    "h" => n * 3600,
                    _ => {
                        return Err(serde::de::Error::custom(format!(
                            "invalid duration {text:?}: the unit must be s, m or h"
                        )));
                    }
                }
            }
        };
        Ok(Seconds(Duration::from_secs(seconds)))
    }
}

/// A standard BGP community written `asn:value`, or a large one `a:b:c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunityValue {
    /// RFC 1997.
    Standard(u16, u16),
    /// RFC 8092.
    Large(u32, u32, u32),
}

impl<'de> Deserialize<'de> for CommunityValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parts: Vec<&str> = text.split(':').collect();
        let bad = || {
            serde::de::Error::custom(format!(
                "invalid community {text:?}: write asn:value (each 0-65535) or a:b:c for a large community"
            ))
        };
        match parts[..] {
            [a, b] => Ok(CommunityValue::Standard(
                a.parse().map_err(|_| bad())?,
                b.parse().map_err(|_| bad())?,
            )),
            [a, b, c] => Ok(CommunityValue::Large(
                a.parse().map_err(|_| bad())?,
                b.parse().map_err(|_| bad())?,
                c.parse().map_err(|_| bad())?,
            )),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard(a, b) => write!(f, "{a}:{b}"),
            CommunityValue::Large(a, b, c) => write!(f, "{a}:{b}:{c}"),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// This node's name (Calico's node name).
    pub node_name: String,
    /// This node's address on the fabric, with its prefix length (used for CrossSubnet).
    pub node_address: IpNetwork,
    /// The BGP router id; the node's IPv4 address when unset.
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    /// Our AS.
    pub as_number: u32,
    /// Where to listen for BGP.
    #[serde(default = "default_listen_address")]
    pub listen_address: IpAddr,
    /// The BGP port.
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
    /// Peer with every other node in `nodes` (iBGP full mesh), as Calico does by default.
    #[serde(default = "yes")]
    pub node_to_node_mesh_enabled: bool,
    /// The other nodes of the cluster.
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
    /// BGP peers (Calico's BGPPeer): global ones, or for one node with `node`.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// IP pools.
    #[serde(default)]
    pub ip_pools: Vec<IpPool>,
    /// Blocks this node owns (from IPAM).
    #[serde(default)]
    pub blocks: Vec<IpNetwork>,
    /// The kernel routing table for learned routes.
    #[serde(default = "default_route_table")]
    pub route_table: u32,
    /// The route protocol routes are tagged with (default 12, `bird`, as Calico). tern owns the
    /// routes of this protocol in `routeTable`: it replaces and deletes them, so the numbers of
    /// other route sources (kernel, boot, static, ra, dhcp, and the daemons of
    /// `/etc/iproute2/rt_protos`) are refused unless `forceRouteProtocol` is set.
    #[serde(default)]
    pub route_protocol: RouteProtocol,
    /// Take `routeProtocol` even when it is the number of another route source: only when
    /// nothing else on the node writes routes of that protocol into `routeTable`.
    #[serde(default)]
    pub force_route_protocol: bool,
    /// The metric of installed routes.
    #[serde(default)]
    pub metric: Option<u32>,
    /// Named communities (Calico's BGPConfiguration.communities).
    #[serde(default)]
    pub communities: Vec<NamedCommunity>,
    /// Communities per advertised CIDR (Calico's prefixAdvertisements).
    #[serde(default)]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// The graceful restart time we advertise.
    #[serde(default = "default_restart_time")]
    pub graceful_restart_time: Seconds,
    /// Where blocks added through the API are kept across restarts.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// The control API's unix socket (mode 0600).
    #[serde(default = "default_api_socket")]
    pub api_socket: PathBuf,
    /// The control API over TCP with mutual TLS, for remote clients; off when unset. There is
    /// no plain TCP listener.
    #[serde(default)]
    pub api_tcp: Option<ApiTcp>,
    /// The IP-in-IP device's MTU (Felix's ipipMTU); the underlay interface's MTU minus 20 when
    /// unset.
    #[serde(rename = "ipipMTU", default)]
    pub ipip_mtu: Option<u32>,
    /// The VXLAN device's MTU (Felix's vxlanMTU); the underlay interface's MTU minus 50 when
    /// unset.
    #[serde(rename = "vxlanMTU", default)]
    pub vxlan_mtu: Option<u32>,
    /// The VXLAN network identifier (Felix's vxlanVNI; Calico's default, 4096).
    #[serde(rename = "vxlanVNI", default = "default_vni")]
    pub vxlan_vni: u32,
    /// The VXLAN UDP port (IANA's, 4789).
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// How IP-in-IP is carried: `Auto` (the kernel's ipip device, else userspace), `Kernel` or
    /// `Userspace`.
    #[serde(default)]
    pub ipip_data_path: IpipDataPath,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The prefix limit of every peer that sets none of its own, mesh peers included.
    #[serde(default)]
    pub max_prefixes: MaxPrefixes,
}

/// How IP-in-IP packets are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum IpipDataPath {
    /// The kernel's ipip device when the kernel has one, else the userspace encapsulator.
    #[default]
    Auto,
    /// Only the kernel's ipip device (encapsulation fails, and says so, without it).
    Kernel,
    /// Always the userspace encapsulator (a TUN device and a raw socket).
    Userspace,
}

/// The control API's TCP listener. Clients must present a certificate signed by `clientCaFile`
/// (a client without one, or with one from another CA, fails the TLS handshake).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiTcp {
    /// Where to listen, e.g. `10.0.5.11:7443`.
    pub address: SocketAddr,
    /// The server's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM).
    pub key_file: PathBuf,
    /// The CA that signs client certificates (PEM).
    pub client_ca_file: PathBuf,
    /// The client certificates that may change state (add or remove blocks and peers, reset
    /// sessions), by a subject common name or a DNS subject alternative name, compared ignoring
    /// ASCII case. Reads (list, watch, status) stay open to every client the CA vouches for.
    /// Unset: every such client may change state; empty: none may (read-only over TCP).
    #[serde(default)]
    pub allowed_client_names: Option<Vec<String>>,
}

/// Another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeEntry {
    /// Its name.
    pub name: String,
    /// Its BGP address.
    pub address: IpAddr,
    /// Its AS, when it differs from ours.
    #[serde(default)]
    pub as_number: Option<u32>,
}

/// Calico's BGPPeer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerEntry {
    /// Only on this node (a node-specific peer); on every node when unset (global).
    #[serde(default)]
    pub node: Option<String>,
    /// The peer's address, optionally with a port (`10.0.0.1:1179`, `[fd00::1]:1179`).
    #[serde(rename = "peerIP")]
    pub peer_ip: String,
    /// The peer's AS.
    pub as_number: u32,
    /// A file holding the TCP MD5 password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// GTSM: how many hops away the peer may be (0 disables).
    #[serde(default)]
    pub ttl_security: u8,
    /// How long the peer may take to restart before its routes go.
    #[serde(default)]
    pub max_restart_time: Option<Seconds>,
    /// Keep the original next hop toward this (external) peer.
    #[serde(default)]
    pub keep_original_next_hop: bool,
    /// `UseNodeIP` binds to the node address; `None` lets the kernel choose.
    #[serde(default)]
    pub source_address: SourceAddress,
    /// Import filters (Calico's BGPFilter rules): only routes these match are accepted from
    /// the peer, and they may be installed even outside the IP pools (a top-of-rack router's
    /// default route). A CIDR matches exactly; `{cidr, prefixLength: {min, max}}` matches the
    /// prefixes inside it of those lengths. Everything is accepted when empty.
    #[serde(default)]
    pub filters: Vec<PrefixFilter>,
    /// Peer over eBGP multihop with this TTL.
    #[serde(default)]
    pub multihop: Option<u8>,
    /// Shut the session down (with this RFC 8203 text) without removing the peer.
    #[serde(default)]
    pub passive: bool,
    /// This peer's prefix limit; the file's `maxPrefixes` when unset.
    #[serde(default)]
    pub max_prefixes: Option<MaxPrefixes>,
}

/// A limit on the prefixes a peer may have accepted at once (FRR's `maximum-prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxPrefixes {
    /// The most prefixes accepted from the peer.
    pub limit: u32,
    /// Warn (once per crossing) when the accepted prefixes pass this percentage of the limit;
    /// 0 turns the warning off.
    #[serde(default = "default_warning_threshold")]
    pub warning_threshold: u8,
    /// What happens above the limit.
    #[serde(default)]
    pub action: MaxPrefixesAction,
    /// With `Restart`, how long the session stays down before it is tried again.
    #[serde(default = "default_restart_delay")]
    pub restart_delay: Seconds,
}

/// What happens when a peer goes over its prefix limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum MaxPrefixesAction {
    /// Close the session (Cease, maximum number of prefixes reached, RFC 4486), dropping the
    /// peer's routes, and try again after `restartDelay`.
    #[default]
    Restart,
    /// Log a warning and tell API watchers, keep the session and every route.
    Warn,
}

impl Default for MaxPrefixes {
    /// Every peer's limit unless configured: far above a cluster's blocks (a 5,000-node mesh
    /// with a few blocks each, or a route reflector reflecting them, stays well under it), low
    /// enough that a peer sending a full Internet table by mistake is cut off before it costs
    /// the node hundreds of megabytes.
    fn default() -> MaxPrefixes {
        MaxPrefixes {
            limit: 250_000,
            warning_threshold: default_warning_threshold(),
            action: MaxPrefixesAction::Restart,
            restart_delay: default_restart_delay(),
        }
    }
}

impl MaxPrefixes {
    /// What is wrong with the values, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.limit == 0 {
            return Err("limit 0 would refuse every route: give at least 1".into());
        }
        if self.warning_threshold > 100 {
            return Err(format!(
                "warningThreshold {} is a percentage of the limit: give 0 (off) to 100",
                self.warning_threshold
            ));
        }
        Ok(())
    }

    /// The speaker's form.
    pub fn speaker(&self) -> tern_bgp::MaxPrefix {
        let warning = (self.warning_threshold > 0)
            .then(|| (u64::from(self.limit) * u64::from(self.warning_threshold) / 100) as u32);
        tern_bgp::MaxPrefix {
            limit: self.limit,
            warning,
            action: match self.action {
                MaxPrefixesAction::Warn => tern_bgp::MaxPrefixAction::Warn,
                MaxPrefixesAction::Restart => {
                    tern_bgp::MaxPrefixAction::Restart(self.restart_delay.0)
                }
            },
        }
    }
}

fn default_warning_threshold() -> u8 {
    75
}
fn default_restart_delay() -> Seconds {
    Seconds(Duration::from_secs(60))
}

/// Calico's BGPPeer.sourceAddress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SourceAddress {
    /// Bind to the node address.
    #[default]
    UseNodeIP,
    /// Let the kernel pick.
    None,
}

/// Calico's IPPool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpPool {
    /// The pool.
    pub cidr: IpNetwork,
    /// The block size (26 for IPv4, 122 for IPv6 by default).
    #[serde(default)]
    pub block_size: Option<u8>,
    /// IP-in-IP mode.
    #[serde(default)]
    pub ipip_mode: EncapMode,
    /// VXLAN mode.
    #[serde(default)]
    pub vxlan_mode: EncapMode,
    /// A disabled pool hands out no addresses and its routes are not installed.
    #[serde(default)]
    pub disabled: bool,
    /// Do not announce this pool's blocks over BGP.
    #[serde(rename = "disableBGPExport", default)]
    pub disable_bgp_export: bool,
}

impl IpPool {
    /// The block size, with Calico's defaults.
    pub fn block_size(&self) -> u8 {
        self.block_size
            .unwrap_or(if self.cidr.is_ipv4() { 26 } else { 122 })
    }
}

/// A named community.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedCommunity {
    /// The name used in prefix advertisements.
    pub name: String,
    /// The value.
    pub value: CommunityValue,
}

/// Communities for a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    /// Routes inside this CIDR get the communities.
    pub cidr: IpNetwork,
    /// Community names or literal values.
    pub communities: Vec<String>,
}

/// Logging options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    #[serde(default)]
    pub level: Option<String>,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: Option<String>,
}

fn default_listen_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
fn default_listen_port() -> u16 {
    179
}
fn yes() -> bool {
    true
}
fn default_route_table() -> u32 {
    254
}
fn default_state_file() -> PathBuf {
    PathBuf::from("/var/lib/tern/state.yaml")
}
fn default_api_socket() -> PathBuf {
    PathBuf::from("/var/run/tern/tern.sock")
}
fn default_vni() -> u32 {
    4096
}
fn default_vxlan_port() -> u16 {
    4789
}
fn default_restart_time() -> Seconds {
    Seconds(Duration::from_secs(120))
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = serde_yaml::from_str(text).map_err(|error| {
            let location = error.location();
            ConfigError::Syntax {
                path: path.to_owned(),
                line: location.as_ref().map_or(0, |l| l.line()),
                column: location.as_ref().map_or(0, |l| l.column()),
                message: error
                    .to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// The router id: configured, or the node's IPv4 address.
    pub fn router_id(&self) -> Option<Ipv4Addr> {
        self.router_id.or(match self.node_address.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        if self.node_name.trim().is_empty() {
            return Err(invalid("nodeName".into(), "must not be empty".into()));
        }
        if self.as_number == 0 {
            return Err(invalid(
                "asNumber".into(),
                "AS 0 is reserved (RFC 7607): use your cluster's AS, e.g. 64512".into(),
            ));
        }
        if self.router_id().is_none() {
            return Err(invalid(
                "routerId".into(),
                "required when nodeAddress is IPv6: set an IPv4 router id".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !names.insert(&node.name) || node.name == self.node_name {
                return Err(invalid(
                    format!("nodes[{i}].name"),
                    format!("{:?} appears twice (or is this node)", node.name),
                ));
            }
            if node.as_number == Some(0) {
                return Err(invalid(
                    format!("nodes[{i}].asNumber"),
                    "AS 0 is reserved".into(),
                ));
            }
        }
        for (i, peer) in self.peers.iter().enumerate() {
            parse_peer_ip(&peer.peer_ip)
                .map_err(|e| invalid(format!("peers[{i}].peerIP"), e.to_string()))?;
            if peer.as_number == 0 {
                return Err(invalid(
                    format!("peers[{i}].asNumber"),
                    "AS 0 is reserved".into(),
                ));
            }
            if let Some(max) = &peer.max_prefixes {
                max.check()
                    .map_err(|e| invalid(format!("peers[{i}].maxPrefixes"), e))?;
            }
            if let Some(node) = &peer.node
                && node != &self.node_name
                && !self.nodes.iter().any(|n| &n.name == node)
            {
                return Err(invalid(
                    format!("peers[{i}].node"),
                    format!("no node named {node:?}"),
                ));
            }
        }
        self.max_prefixes
            .check()
            .map_err(|e| invalid("maxPrefixes".into(), e))?;
        for (i, pool) in self.ip_pools.iter().enumerate() {
            let size = pool.block_size();
            let max = if pool.cidr.is_ipv4() { 32 } else { 128 };
            if size < pool.cidr.prefix() || size > max {
                return Err(invalid(
                    format!("ipPools[{i}].blockSize"),
                    format!(
                        "{size} must be between the pool's prefix length {} and {max}",
                        pool.cidr.prefix()
                    ),
                ));
            }
            if pool.ipip_mode != EncapMode::Never && pool.vxlan_mode != EncapMode::Never {
                return Err(invalid(
                    format!("ipPools[{i}]"),
                    "ipipMode and vxlanMode cannot both be enabled: set one to Never".into(),
                ));
            }
            if pool.ipip_mode != EncapMode::Never && !pool.cidr.is_ipv4() {
                return Err(invalid(
                    format!("ipPools[{i}].ipipMode"),
                    "IP-in-IP carries IPv4 pools only".into(),
                ));
            }
            if pool.vxlan_mode != EncapMode::Never && !pool.cidr.is_ipv4() {
                return Err(invalid(
                    format!("ipPools[{i}].vxlanMode"),
                    "VXLAN for IPv6 pools is not supported yet: set vxlanMode: Never".into(),
                ));
            }
            if (pool.ipip_mode != EncapMode::Never || pool.vxlan_mode != EncapMode::Never)
                && !self.node_address.is_ipv4()
            {
                return Err(invalid(
                    format!("ipPools[{i}]"),
                    "encapsulation needs an IPv4 nodeAddress (the tunnel's outer address)".into(),
                ));
            }
            for (j, other) in self.ip_pools.iter().enumerate().skip(i + 1) {
                if overlaps(pool.cidr, other.cidr) {
                    return Err(invalid(
                        format!("ipPools[{j}].cidr"),
                        format!("{} overlaps {}", other.cidr, pool.cidr),
                    ));
                }
            }
        }
        if let Some(owner) = protocols::owner(self.route_protocol.0)
            && !(self.force_route_protocol && self.route_protocol.0 != protocols::UNSPEC)
        {
            return Err(invalid(
                "routeProtocol".into(),
                format!(
                    "{} is the protocol of {owner}: tern replaces and deletes the routes of its protocol, so it would take those over. Use 12 (bird, Calico's) or a number no route source uses{}",
                    self.route_protocol.0,
                    if self.route_protocol.0 == protocols::UNSPEC {
                        ""
                    } else {
                        ", or set forceRouteProtocol: true if nothing else writes that protocol's routes into this table"
                    }
                ),
            ));
        }
        for (field, mtu) in [("ipipMTU", self.ipip_mtu), ("vxlanMTU", self.vxlan_mtu)] {
            if let Some(mtu) = mtu
                && !(576..=65_535).contains(&mtu)
            {
                return Err(invalid(
                    field.into(),
                    format!(
                        "{mtu} is not a usable MTU: give 576 to 65535, or leave it out to derive it from the underlay interface"
                    ),
                ));
            }
        }
        if self.vxlan_vni == 0 || self.vxlan_vni > 0xff_ffff {
            return Err(invalid(
                "vxlanVNI".into(),
                format!(
                    "{} does not fit VXLAN's 24 bits: give 1 to 16777215",
                    self.vxlan_vni
                ),
            ));
        }
        if self.vxlan_port == 0 {
            return Err(invalid(
                "vxlanPort".into(),
                "must not be 0 (IANA's is 4789)".into(),
            ));
        }
        for (i, block) in self.blocks.iter().enumerate() {
            if let Err(error) = self.check_block(*block, &self.blocks[..i]) {
                return Err(invalid(format!("blocks[{i}]"), error.to_string()));
            }
        }
        for (i, advertisement) in self.prefix_advertisements.iter().enumerate() {
            for community in &advertisement.communities {
                let named = self.communities.iter().any(|c| &c.name == community);
                let literal: Result<CommunityValue, _> =
                    serde_yaml::from_str(&format!("{community:?}"));
                if !named && literal.is_err() {
                    return Err(invalid(
                        format!("prefixAdvertisements[{i}].communities"),
                        format!("{community:?} is neither a named community nor asn:value"),
                    ));
                }
            }
        }
        if let Some(level) = &self.log.level
            && !["error", "warn", "info", "debug", "trace"].contains(&level.as_str())
        {
            return Err(invalid(
                "log.level".into(),
                format!("{level:?}: use error, warn, info, debug or trace"),
            ));
        }
        if let Some(format) = &self.log.format
            && !["text", "json"].contains(&format.as_str())
        {
            return Err(invalid(
                "log.format".into(),
                format!("{format:?}: use text or json"),
            ));
        }
        Ok(())
    }

    /// Checks that `block` may be one of this node's blocks beside `others`: aligned, inside an
    /// enabled pool, of the pool's block size or a single borrowed address, overlapping none.
    pub fn check_block(&self, block: IpNetwork, others: &[IpNetwork]) -> Result<(), BlockError> {
        if block.ip() != block.network() {
            return Err(BlockError::HostBits { block });
        }
        let Some(pool) = self
            .ip_pools
            .iter()
            .find(|p| p.cidr.contains(block.network()) && block.prefix() >= p.cidr.prefix())
        else {
            return Err(BlockError::OutsidePools { block });
        };
        if pool.disabled {
            return Err(BlockError::PoolDisabled { pool: pool.cidr });
        }
        let single = if block.is_ipv4() { 32 } else { 128 };
        if block.prefix() != pool.block_size() && block.prefix() != single {
            return Err(BlockError::WrongSize {
                block,
                pool: pool.cidr,
                block_size: pool.block_size(),
            });
        }
        if let Some(other) = others.iter().find(|o| **o != block && overlaps(block, **o)) {
            return Err(BlockError::Overlaps {
                block,
                other: *other,
            });
        }
        Ok(())
    }

    /// The communities to attach to an advertised prefix (Calico's prefixAdvertisements).
    pub fn communities_for(&self, prefix: IpNetwork) -> Vec<CommunityValue> {
        let mut out = Vec::new();
        for advertisement in &self.prefix_advertisements {
            if advertisement.cidr.contains(prefix.network())
                && prefix.prefix() >= advertisement.cidr.prefix()
            {
                for name in &advertisement.communities {
                    let value = self
                        .communities
                        .iter()
                        .find(|c| &c.name == name)
                        .map(|c| c.value)
                        .or_else(|| serde_yaml::from_str(&format!("{name:?}")).ok());
                    if let Some(value) = value.filter(|v| !out.contains(v)) {
                        out.push(value);
                    }
                }
            }
        }
        out
    }
}

/// Parses Calico's peerIP: an address, optionally with a port.
pub fn parse_peer_ip(text: &str) -> Result<(IpAddr, u16), BadPeerIp> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok((address, 179));
    }
    text.parse::<SocketAddr>()
        .map(|s| (s.ip(), s.port()))
        .map_err(|_| BadPeerIp(text.to_owned()))
}

fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
nodeName: node1
nodeAddress: 10.0.1.11/24
asNumber: 64512
nodes:
  - name: node2
    address: 10.0.1.12
peers:
  - peerIP: 10.0.1.1:179
    asNumber: 65000
    maxRestartTime: 2m
ipPools:
  - cidr: 10.244.0.0/16
    ipipMode: CrossSubnet
blocks: [10.244.1.0/26]
routeProtocol: bird
communities:
  - name: pods
    value: "64512:100"
prefixAdvertisements:
  - cidr: 10.244.0.0/16
    communities: [pods, "64512:200"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("ternd.yaml"))
    }

    #[test]
    fn a_calico_style_file_parses_with_defaults_filled_in() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.router_id(), Some(Ipv4Addr::new(10, 0, 1, 11)));
        assert_eq!(config.route_protocol, RouteProtocol(12));
        assert_eq!(config.route_table, 254);
        assert_eq!(config.listen_port, 179);
        assert!(config.node_to_node_mesh_enabled);
        assert_eq!(config.ip_pools[0].block_size(), 26);
        assert_eq!(
            config.peers[0].max_restart_time,
            Some(Seconds(Duration::from_secs(120)))
        );
        assert_eq!(
            config.communities_for("10.244.1.0/26".parse().unwrap()),
            vec![
                CommunityValue::Standard(64512, 100),
                CommunityValue::Standard(64512, 200)
            ]
        );
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_line() {
        let text = GOOD.replace("routeProtocol: bird", "routeProtocl: bird");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("ternd.yaml:16:"), "{error}");
        assert!(error.contains("unknown field `routeProtocl`"), "{error}");
    }

    #[test]
    fn a_wrong_type_is_refused_with_its_line() {
        let text = GOOD.replace("asNumber: 64512", "asNumber: many");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.starts_with("ternd.yaml:4:"), "{error}");
    }

    #[test]
    fn a_block_outside_every_pool_is_refused_saying_so() {
        let text = GOOD.replace("blocks: [10.244.1.0/26]", "blocks: [10.99.1.0/26]");
        let error = parse(&text).unwrap_err().to_string();
        assert_eq!(
            error,
            "ternd.yaml: blocks[0]: 10.99.1.0/26 is inside no IP pool"
        );
    }

    #[test]
    fn a_block_of_the_wrong_size_names_the_right_one() {
        let text = GOOD.replace("blocks: [10.244.1.0/26]", "blocks: [10.244.1.0/25]");
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("must be a /26 block of pool 10.244.0.0/16"),
            "{error}"
        );
    }

    #[test]
    fn ipip_and_vxlan_together_are_refused() {
        let text = GOOD.replace(
            "ipipMode: CrossSubnet",
            "ipipMode: CrossSubnet\n    vxlanMode: Always",
        );
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("cannot both be enabled"), "{error}");
    }

    #[test]
    fn a_bad_peer_address_says_how_to_write_one() {
        let text = GOOD.replace("peerIP: 10.0.1.1:179", "peerIP: fd00::1::179");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("[fd00::1]:179"), "{error}");
        assert_eq!(
            parse_peer_ip("[fd00::1]:1179"),
            Ok(("fd00::1".parse().unwrap(), 1179))
        );
    }

    #[test]
    fn an_unknown_community_name_is_refused() {
        let text = GOOD.replace("communities: [pods, \"64512:200\"]", "communities: [pod]");
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("\"pod\" is neither a named community"),
            "{error}"
        );
    }

    #[test]
    fn the_documented_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ternd.yaml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.metric, Some(1024));
        assert_eq!(config.peers[0].ttl_security, 1);
    }

    #[test]
    fn the_api_over_tcp_needs_its_address_and_every_tls_file() {
        let text = format!(
            "{GOOD}apiTcp:\n  address: 10.0.1.11:7443\n  certFile: /s.crt\n  keyFile: /s.key\n  clientCaFile: /ca.crt\n"
        );
        let tcp = parse(&text).unwrap().api_tcp.unwrap();
        assert_eq!(tcp.address, "10.0.1.11:7443".parse().unwrap());
        assert_eq!(tcp.client_ca_file, PathBuf::from("/ca.crt"));
        assert!(
            parse(GOOD).unwrap().api_tcp.is_none(),
            "off unless configured"
        );
        assert_eq!(
            tcp.allowed_client_names, None,
            "every client may change state"
        );
        let listed = format!("{text}  allowedClientNames: [operator, ops.example.net]\n");
        let tcp = parse(&listed).unwrap().api_tcp.unwrap();
        assert_eq!(
            tcp.allowed_client_names,
            Some(vec!["operator".to_owned(), "ops.example.net".to_owned()])
        );
        let without_ca = text.replace("  clientCaFile: /ca.crt\n", "");
        let error = parse(&without_ca).unwrap_err().to_string();
        assert!(error.contains("missing field `clientCaFile`"), "{error}");
    }

    #[test]
    fn a_route_protocol_name_must_be_known() {
        let text = GOOD.replace("routeProtocol: bird", "routeProtocol: no-such-daemon");
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("unknown route protocol \"no-such-daemon\""),
            "{error}"
        );
        let numeric = GOOD.replace("routeProtocol: bird", "routeProtocol: 80");
        assert_eq!(parse(&numeric).unwrap().route_protocol, RouteProtocol(80));
    }

    #[test]
    fn another_route_sources_protocol_is_refused_unless_forced() {
        for (protocol, owner) in [
            ("2", "kernel"),
            ("boot", "boot"),
            ("static", "static"),
            ("9", "ra"),
            ("dhcp", "dhcp"),
            ("186", "bgp"),
            ("ospf", "ospf"),
        ] {
            let text = GOOD.replace("routeProtocol: bird", &format!("routeProtocol: {protocol}"));
            let error = parse(&text).unwrap_err().to_string();
            assert!(
                error.contains("routeProtocol: ")
                    && error.contains(&format!("protocol of {owner} routes")),
                "{protocol}: {error}"
            );
            assert!(error.contains("forceRouteProtocol: true"), "{error}");
            let forced = format!("{text}forceRouteProtocol: true\n");
            assert!(parse(&forced).is_ok(), "{protocol} forced");
        }
        let unspec = GOOD.replace("routeProtocol: bird", "routeProtocol: 0");
        let forced = format!("{unspec}forceRouteProtocol: true\n");
        let error = parse(&forced).unwrap_err().to_string();
        assert!(error.contains("protocol of unspec"), "{error}");
    }

    #[test]
    fn every_peer_has_a_prefix_limit_and_a_peer_may_set_its_own() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.max_prefixes, MaxPrefixes::default());
        let speaker = config.max_prefixes.speaker();
        assert_eq!(speaker.limit, 250_000);
        assert_eq!(speaker.warning, Some(187_500), "75% of the limit");
        assert_eq!(
            speaker.action,
            tern_bgp::MaxPrefixAction::Restart(Duration::from_secs(60))
        );
        let text = GOOD.replace(
            "    maxRestartTime: 2m\n",
            "    maxRestartTime: 2m\n    maxPrefixes: {limit: 100, warningThreshold: 0, action: Warn}\n",
        );
        let text = format!("{text}maxPrefixes: {{limit: 5000, restartDelay: 5m}}\n");
        let config = parse(&text).unwrap();
        let own = config.peers[0].max_prefixes.unwrap().speaker();
        assert_eq!((own.limit, own.warning), (100, None));
        assert_eq!(own.action, tern_bgp::MaxPrefixAction::Warn);
        assert_eq!(
            config.max_prefixes.speaker().action,
            tern_bgp::MaxPrefixAction::Restart(Duration::from_secs(300))
        );
        for (bad, says) in [
            ("maxPrefixes: {limit: 0}", "maxPrefixes: limit 0"),
            (
                "maxPrefixes: {limit: 10, warningThreshold: 150}",
                "percentage",
            ),
            (
                "maxPrefixes: {limit: 10, action: Drop}",
                "unknown variant `Drop`",
            ),
        ] {
            let error = parse(&format!("{GOOD}{bad}\n")).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn peer_filters_take_a_cidr_exactly_or_calicos_prefix_length_range() {
        let text = GOOD.replace(
            "    maxRestartTime: 2m\n",
            "    maxRestartTime: 2m\n    filters:\n      - 0.0.0.0/0\n      - cidr: 10.0.0.0/8\n        prefixLength: {min: 16, max: 24}\n",
        );
        let config = parse(&text).unwrap();
        let shown: Vec<String> = config.peers[0]
            .filters
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["0.0.0.0/0", "10.0.0.0/8{16,24}"]);
        let bad = text.replace("min: 16", "min: 4");
        let error = parse(&bad).unwrap_err().to_string();
        assert!(error.contains("do not fit 10.0.0.0/8"), "{error}");
    }
}
