//! Encapsulation for fabrics that do not route pod addresses, with Calico's meaning of a pool's
//! `ipipMode` and `vxlanMode` (`Never`, `Always`, `CrossSubnet`: only toward next hops outside
//! the node's own subnet, `nodeAddress` with its prefix length).
//!
//! - IP-in-IP (RFC 2003): routes `<block> via <node address> dev tunl0 onlink`, ECMP where the set
//!   has several next hops. The kernel's `tunl0` when the kernel has an ipip module; otherwise
//!   (creating the link fails, EOPNOTSUPP where the module is missing) the userspace encapsulator
//!   in [`userspace`], a TUN device of the same name carrying the same routes, so runbooks that
//!   look at `tunl0` keep working and the packets on the wire are the same.
//! - VXLAN (RFC 7348): a `vxlan.tern` device (VNI 4096, UDP 4789, no learning); for each remote
//!   block a route `<block> via <its tunnel address> dev vxlan.tern onlink`, a permanent neighbour
//!   entry for that address and an FDB entry to the node's underlay address. Nothing has to be
//!   distributed beyond BGP: the VTEP MAC is derived from the node address ([`vtep_mac`]) and a
//!   block's tunnel address is its first address ([`tunnel_address`]), which is where Calico's
//!   IPAM puts a node's tunnel address too.
//!
//! MTUs default to the underlay interface's (the one holding `nodeAddress`) minus 20 for IP-in-IP
//! and minus 50 for VXLAN; path MTU discovery stays on, so a packet that does not fit gets
//! "fragmentation needed" instead of vanishing. IPv4 pools only (the configuration refuses the
//! rest).
//!
//! Layout: [`policy`] chooses the encapsulation per pool, [`ipip`] manages `tunl0` (kernel or
//! userspace), [`vxlan`] the `vxlan.tern` device with its neighbour and FDB entries, and
//! [`Tunnels`] here orchestrates them.

mod ipip;
mod policy;
pub mod userspace;
mod vxlan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnetwork::{IpNetwork, Ipv4Network};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{Handle, LinkUnspec};
use tracing::{info, warn};

use crate::config::Config;

use ipip::Ipip;
pub use policy::{Encapsulation, encapsulation, tunnel_address, vtep_mac};
use policy::{own_tunnel_address, wanted};
use vxlan::Vxlan;

/// The tunnel devices that are up, by interface index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelDevices {
    /// `tunl0` (kernel or userspace), when some pool asks for IP-in-IP.
    pub ipip: Option<u32>,
    /// `vxlan.tern`, when some pool asks for VXLAN.
    pub vxlan: Option<u32>,
}

impl TunnelDevices {
    /// Whether any route may be encapsulated.
    pub fn any(&self) -> bool {
        self.ipip.is_some() || self.vxlan.is_some()
    }
}

/// What the tunnels must know of one route: the nodes its IP-in-IP hops lead to (for the
/// userspace encapsulator's table) and the node behind its VXLAN hop (for the neighbour and
/// FDB entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelUse {
    /// Nodes reached through `tunl0`, sorted.
    pub ipip_nodes: Vec<Ipv4Addr>,
    /// The node reached through `vxlan.tern`.
    pub vxlan_node: Option<Ipv4Addr>,
}

impl TunnelUse {
    /// Whether the route uses no tunnel.
    pub fn is_empty(&self) -> bool {
        self.ipip_nodes.is_empty() && self.vxlan_node.is_none()
    }
}

/// Why a tunnel device cannot be brought up (the data path then stays routed, and says why).
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// A system call of the userspace encapsulator failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The userspace encapsulator's start-up task did not finish.
    #[error("the userspace encapsulator did not start: {0}")]
    Start(#[from] tokio::task::JoinError),
    /// `tunl0` exists but is another kind of device.
    #[error("{IPIP_DEVICE} exists and is not an ipip device ({0})")]
    NotIpip(String),
    /// `ipipDataPath: Kernel` and the kernel has no ipip module.
    #[error("the kernel cannot create an ipip device: {0}")]
    NoKernelIpip(rtnetlink::Error),
    /// A device was created and is gone.
    #[error("{0} vanished after it was created")]
    Vanished(&'static str),
}

/// How packets to other nodes' pods leave this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// Plain routes via the other nodes.
    Routed,
    /// IP-in-IP through the kernel's tunl0.
    Ipip,
    /// IP-in-IP through the userspace encapsulator (no ipip module in the kernel).
    IpipUserspace,
    /// VXLAN through the kernel's vxlan device.
    Vxlan,
}

/// Calico's IP-in-IP device name, kept for the userspace device too.
pub const IPIP_DEVICE: &str = "tunl0";
/// The VXLAN device.
pub const VXLAN_DEVICE: &str = "vxlan.tern";
/// The underlay MTU assumed when the interface holding the node address cannot be found.
const FALLBACK_MTU: u32 = 1500;

/// The encapsulation devices and the state that goes with their routes.
#[derive(Debug)]
pub struct Tunnels {
    handle: Handle,
    ipip: Option<Ipip>,
    vxlan: Option<Vxlan>,
    /// Entries found from an earlier run are kept until the first sweep, so a restart drops
    /// nothing.
    swept: bool,
    /// The node's tunnel address on the devices.
    address: Option<Ipv4Addr>,
    status: (DataPath, String),
}

/// This node's own IPv4 prefixes, the inner destinations the userspace decapsulator delivers:
/// its blocks (which hold its pods and its tunnel address) and its node address. Traffic
/// through the tunnel is routed to blocks, so nothing else is addressed to this node that way.
pub fn local_prefixes(config: &Config, blocks: &[IpNetwork]) -> Vec<Ipv4Network> {
    let mut local: Vec<Ipv4Network> = blocks
        .iter()
        .filter_map(|block| match block {
            IpNetwork::V4(block) => Some(*block),
            IpNetwork::V6(_) => None,
        })
        .collect();
    if let IpAddr::V4(node) = config.node_address.ip() {
        local.push(Ipv4Network::from(node));
    }
    local
}

impl Tunnels {
    /// No devices yet; [`Tunnels::configure`] sets them up.
    pub fn new(handle: Handle) -> Tunnels {
        Tunnels {
            handle,
            ipip: None,
            vxlan: None,
            swept: false,
            address: None,
            status: (DataPath::Routed, "no pool asks for encapsulation".into()),
        }
    }

    /// The data path in use, with a sentence saying why.
    pub fn status(&self) -> (DataPath, String) {
        self.status.clone()
    }

    /// The userspace IP-in-IP data path's counters, when it runs.
    pub fn userspace_counters(&self) -> Option<userspace::Counters> {
        self.ipip
            .as_ref()
            .and_then(|ipip| ipip.userspace.as_ref())
            .map(userspace::UserspaceIpip::counters)
    }

    /// Sets up the devices the configuration asks for and removes those it no longer does.
    /// Failures are logged and reported in the status; routes then stay plain.
    pub async fn configure(&mut self, config: &Config, blocks: &[IpNetwork]) {
        let (want_ipip, want_vxlan) = wanted(config);
        let IpAddr::V4(node) = config.node_address.ip() else {
            self.status = (DataPath::Routed, "no IPv4 node address".into());
            return;
        };
        let (underlay, underlay_mtu) = if want_ipip || want_vxlan {
            self.underlay(node).await
        } else {
            (None, FALLBACK_MTU)
        };
        let address = own_tunnel_address(config, blocks);
        let mut words = Vec::new();
        let mut path = DataPath::Routed;

        if want_ipip {
            let mtu = config.ipip_mtu.unwrap_or(underlay_mtu.saturating_sub(20));
            match self.ensure_ipip(config.ipip_data_path, node, mtu).await {
                Ok(()) => {
                    let userspace = self.ipip.as_ref().is_some_and(|i| i.userspace.is_some());
                    path = if userspace {
                        DataPath::IpipUserspace
                    } else {
                        DataPath::Ipip
                    };
                    words.push(if userspace {
                        format!("IP-in-IP through the userspace encapsulator on {IPIP_DEVICE} (the kernel has no ipip device), MTU {mtu}")
                    } else {
                        format!("IP-in-IP through the kernel's {IPIP_DEVICE}, MTU {mtu}")
                    });
                }
                Err(error) => {
                    warn!(%error, "IP-in-IP unavailable; routes stay plain");
                    words.push(format!("IP-in-IP unavailable ({error}); routes stay plain"));
                }
            }
        } else if let Some(ipip) = self.ipip.take() {
            self.drop_ipip(ipip).await;
        }

        if want_vxlan {
            let mtu = config.vxlan_mtu.unwrap_or(underlay_mtu.saturating_sub(50));
            match self.ensure_vxlan(config, node, underlay, mtu).await {
                Ok(()) => {
                    if path == DataPath::Routed {
                        path = DataPath::Vxlan;
                    }
                    words.push(format!(
                        "VXLAN through {VXLAN_DEVICE} (VNI {}, UDP {}), MTU {mtu}",
                        config.vxlan_vni, config.vxlan_port
                    ));
                }
                Err(error) => {
                    warn!(%error, "VXLAN unavailable; routes stay plain");
                    words.push(format!("VXLAN unavailable ({error}); routes stay plain"));
                }
            }
        } else if let Some(vxlan) = self.vxlan.take() {
            if let Err(error) = self.handle.link().del(vxlan.ifindex).execute().await {
                warn!(%error, "cannot delete {VXLAN_DEVICE}");
            }
            info!("VXLAN off: {VXLAN_DEVICE} removed");
        }

        self.address = None;
        self.update_address(config, blocks).await;
        let detail = if words.is_empty() {
            "no pool asks for encapsulation".to_owned()
        } else {
            let address = address.map_or("none (no encapsulated block yet)".to_owned(), |a| {
                a.to_string()
            });
            format!("{}; tunnel address {address}", words.join("; "))
        };
        if self.status != (path, detail.clone()) {
            info!(data_path = ?path, "{detail}");
        }
        self.status = (path, detail);
    }

    /// Puts the node's tunnel address (the first address of its first encapsulated block) on the
    /// tunnel devices when it changed.
    /// Also tells the userspace encapsulator what is local (see [`local_prefixes`]).
    pub async fn update_address(&mut self, config: &Config, blocks: &[IpNetwork]) {
        if !self.active() {
            return;
        }
        if let Some(device) = self.ipip.as_ref().and_then(|i| i.userspace.as_ref()) {
            device.set_local(local_prefixes(config, blocks));
        }
        let address = own_tunnel_address(config, blocks);
        if address == self.address && address.is_some() {
            return;
        }
        let devices: Vec<u32> = [
            self.ipip.as_ref().map(|i| i.ifindex),
            self.vxlan.as_ref().map(|v| v.ifindex),
        ]
        .into_iter()
        .flatten()
        .collect();
        for ifindex in devices {
            if let Err(error) = self.set_address(ifindex, address).await {
                warn!(%error, "cannot set the tunnel address");
            }
        }
        self.address = address;
    }

    /// The interface holding the node address and its MTU.
    async fn underlay(&self, node: Ipv4Addr) -> (Option<u32>, u32) {
        let mut addresses = self.handle.address().get().execute();
        let mut index = None;
        while let Ok(Some(message)) = addresses.try_next().await {
            let holds = message.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(IpAddr::V4(x)) | AddressAttribute::Address(IpAddr::V4(x)) if *x == node)
            });
            if holds {
                index = Some(message.header.index);
                break;
            }
        }
        let Some(index) = index else {
            warn!(%node, "no interface holds the node address; assuming an underlay MTU of {FALLBACK_MTU}");
            return (None, FALLBACK_MTU);
        };
        let mut links = self.handle.link().get().match_index(index).execute();
        let mtu = match links.try_next().await {
            Ok(Some(link)) => link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            }),
            _ => None,
        };
        (Some(index), mtu.unwrap_or(FALLBACK_MTU))
    }

    /// The index and kind of a link, by name.
    async fn link(&self, name: &str) -> Option<(u32, Option<InfoKind>, Vec<InfoVxlan>)> {
        let mut links = self.handle.link().get().match_name(name).execute();
        let link = links.try_next().await.ok().flatten()?;
        let mut kind = None;
        let mut vxlan = Vec::new();
        for attribute in &link.attributes {
            if let LinkAttribute::LinkInfo(infos) = attribute {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => kind = Some(k.clone()),
                        LinkInfo::Data(InfoData::Vxlan(data)) => vxlan = data.clone(),
                        _ => {}
                    }
                }
            }
        }
        Some((link.header.index, kind, vxlan))
    }

    async fn set_mtu_up(&self, ifindex: u32, mtu: u32) -> Result<(), rtnetlink::Error> {
        let message = LinkUnspec::new_with_index(ifindex).mtu(mtu).up().build();
        self.handle.link().set(message).execute().await
    }

    /// Puts `address` (a /32) on a tunnel device and removes any other address there.
    async fn set_address(
        &self,
        ifindex: u32,
        address: Option<Ipv4Addr>,
    ) -> Result<(), rtnetlink::Error> {
        let mut present = Vec::new();
        let mut dump = self.handle.address().get().execute();
        while let Some(message) = dump.try_next().await? {
            if message.header.index == ifindex {
                present.push(message);
            }
        }
        let mut have = false;
        for message in present {
            let ours = message.header.prefix_len == 32
                && message.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Local(IpAddr::V4(x)) | AddressAttribute::Address(IpAddr::V4(x)) if Some(*x) == address)
                });
            if ours {
                have = true;
            } else if message.header.family == AddressFamily::Inet {
                self.handle.address().del(message).execute().await?;
            }
        }
        if let (Some(address), false) = (address, have) {
            self.handle
                .address()
                .add(ifindex, IpAddr::V4(address), 32)
                .execute()
                .await?;
        }
        Ok(())
    }

    /// The devices that are up, for the reconciler's choice of next hops.
    pub fn devices(&self) -> TunnelDevices {
        TunnelDevices {
            ipip: self.ipip.as_ref().map(|i| i.ifindex),
            vxlan: self.vxlan.as_ref().map(|v| v.ifindex),
        }
    }

    /// Notes which tunnels a route to `prefix` uses now (an empty use: none, or the route is
    /// gone), for [`Tunnels::sync`].
    pub fn note(&mut self, prefix: IpNetwork, used: &TunnelUse) {
        let IpNetwork::V4(block) = prefix else {
            return;
        };
        if let Some(ipip) = &mut self.ipip {
            let changed = if used.ipip_nodes.is_empty() {
                ipip.routes.remove(&block).is_some()
            } else {
                ipip.routes.insert(block, used.ipip_nodes.clone()).as_ref()
                    != Some(&used.ipip_nodes)
            };
            ipip.dirty |= changed;
        }
        if let Some(vxlan) = &mut self.vxlan {
            let changed = match used.vxlan_node {
                None => vxlan.routes.remove(&block).is_some(),
                Some(node) => vxlan.routes.insert(block, node) != Some(node),
            };
            vxlan.dirty |= changed;
        }
    }

    /// Whether any route is encapsulated (so [`Tunnels::sync`] has work).
    pub fn active(&self) -> bool {
        self.ipip.is_some() || self.vxlan.is_some()
    }

    /// Brings the userspace encapsulator's table and the VXLAN neighbour and FDB entries in line
    /// with the routes. Entries found from an earlier run stay until [`Tunnels::sweep`].
    pub async fn sync(&mut self) {
        if let Some(ipip) = &mut self.ipip
            && ipip.dirty
        {
            ipip.dirty = false;
            if let Some(device) = &ipip.userspace {
                let table: Vec<(Ipv4Network, Vec<Ipv4Addr>)> = ipip
                    .routes
                    .iter()
                    .map(|(block, nodes)| (*block, nodes.clone()))
                    .collect();
                device.set_routes(table);
            }
        }
        let Some(vxlan) = &mut self.vxlan else {
            return;
        };
        if !vxlan.dirty {
            return;
        }
        vxlan.dirty = false;
        let wanted_neighbours: BTreeMap<Ipv4Addr, Ipv4Addr> = vxlan
            .routes
            .iter()
            .map(|(block, node)| (tunnel_address(*block), *node))
            .collect();
        let wanted_fdb: BTreeSet<Ipv4Addr> = vxlan.routes.values().copied().collect();
        let handle = &self.handle;
        let ifindex = vxlan.ifindex;
        for node in wanted_fdb.difference(&vxlan.fdb.clone()) {
            let result = handle
                .neighbours()
                .add_bridge(ifindex, &vtep_mac(*node))
                .destination(IpAddr::V4(*node))
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await;
            match result {
                Ok(()) => {
                    vxlan.fdb.insert(*node);
                }
                Err(error) => {
                    // Tried again with the next batch.
                    vxlan.dirty = true;
                    warn!(%node, %error, "cannot add the VXLAN FDB entry");
                }
            }
        }
        for (gateway, node) in &wanted_neighbours {
            if vxlan.neighbours.get(gateway) == Some(node) {
                continue;
            }
            let result = handle
                .neighbours()
                .add(ifindex, IpAddr::V4(*gateway))
                .link_layer_address(&vtep_mac(*node))
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await;
            match result {
                Ok(()) => {
                    vxlan.neighbours.insert(*gateway, *node);
                }
                Err(error) => {
                    // Tried again with the next batch.
                    vxlan.dirty = true;
                    warn!(%gateway, %error, "cannot add the VXLAN neighbour entry");
                }
            }
        }
        if !self.swept {
            return;
        }
        let gone: Vec<Ipv4Addr> = vxlan
            .neighbours
            .keys()
            .filter(|g| !wanted_neighbours.contains_key(g))
            .copied()
            .collect();
        for gateway in gone {
            let mut message = NeighbourMessage::default();
            message.header.family = AddressFamily::Inet;
            message.header.ifindex = ifindex;
            message
                .attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                    gateway,
                )));
            match handle.neighbours().del(message).execute().await {
                Ok(()) => {
                    vxlan.neighbours.remove(&gateway);
                }
                Err(error) => {
                    // Tried again with the next batch.
                    vxlan.dirty = true;
                    warn!(%gateway, %error, "cannot delete a VXLAN neighbour entry");
                }
            }
        }
        let gone: Vec<Ipv4Addr> = vxlan.fdb.difference(&wanted_fdb).copied().collect();
        for node in gone {
            let mut message = NeighbourMessage::default();
            message.header.family = AddressFamily::Bridge;
            message.header.ifindex = ifindex;
            message.header.flags = NeighbourFlags::Own;
            message
                .attributes
                .push(NeighbourAttribute::LinkLayerAddress(
                    vtep_mac(node).to_vec(),
                ));
            message
                .attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                    node,
                )));
            match handle.neighbours().del(message).execute().await {
                Ok(()) => {
                    vxlan.fdb.remove(&node);
                }
                Err(error) => {
                    // Tried again with the next batch.
                    vxlan.dirty = true;
                    warn!(%node, %error, "cannot delete a VXLAN FDB entry");
                }
            }
        }
    }

    /// After the agent's sweep: entries left from an earlier run that no route needs go too.
    pub async fn sweep(&mut self) {
        self.swept = true;
        if let Some(vxlan) = &mut self.vxlan {
            vxlan.dirty = true;
        }
        self.sync().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn what_is_local_is_the_nodes_ipv4_blocks_and_its_address() {
        let text = "nodeName: n1\nnodeAddress: 10.1.1.11/24\nasNumber: 64512\n\
                    ipPools:\n  - cidr: 10.244.0.0/16\nblocks: [10.244.1.0/26]\n";
        let config = Config::parse(text, Path::new("test.yaml")).unwrap();
        let blocks: Vec<IpNetwork> = ["10.244.1.0/26", "10.244.7.9/32", "fd00:244::/80"]
            .iter()
            .map(|b| b.parse().unwrap())
            .collect();
        let local: Vec<String> = local_prefixes(&config, &blocks)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(local, ["10.244.1.0/26", "10.244.7.9/32", "10.1.1.11/32"]);
    }
}
