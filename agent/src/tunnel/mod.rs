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

pub mod userspace;

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
use rtnetlink::{Handle, LinkIpIp, LinkUnspec, LinkVxlan};
use tracing::{info, warn};

use crate::config::{Config, EncapMode, IpipDataPath};
use crate::reconcile::{TunnelDevices, TunnelUse};

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

/// How a route to another node's block leaves this node.
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
fn wanted(config: &Config) -> (bool, bool) {
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
fn own_tunnel_address(config: &Config, blocks: &[IpNetwork]) -> Option<Ipv4Addr> {
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

/// The IP-in-IP device in use.
#[derive(Debug)]
struct Ipip {
    ifindex: u32,
    /// The userspace encapsulator, when the kernel has no ipip device.
    userspace: Option<userspace::UserspaceIpip>,
    /// Encapsulated routes: block -> node addresses (the userspace encapsulator's table).
    routes: BTreeMap<Ipv4Network, Vec<Ipv4Addr>>,
    /// `routes` changed since the userspace table was last replaced.
    dirty: bool,
}

/// The VXLAN device in use.
#[derive(Debug)]
struct Vxlan {
    ifindex: u32,
    vni: u32,
    port: u16,
    /// Encapsulated routes: block -> node address.
    routes: BTreeMap<Ipv4Network, Ipv4Addr>,
    /// `routes` changed since the neighbour and FDB entries were last brought in line.
    dirty: bool,
    /// Neighbour entries in the kernel: tunnel address -> node address.
    neighbours: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// FDB entries in the kernel, by node address.
    fdb: BTreeSet<Ipv4Addr>,
}

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
    pub async fn update_address(&mut self, config: &Config, blocks: &[IpNetwork]) {
        if !self.active() {
            return;
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

    async fn ensure_ipip(
        &mut self,
        choice: IpipDataPath,
        node: Ipv4Addr,
        mtu: u32,
    ) -> anyhow::Result<()> {
        if let Some(ipip) = &self.ipip {
            let kernel = ipip.userspace.is_none();
            let fits = match choice {
                IpipDataPath::Auto => true,
                IpipDataPath::Kernel => kernel,
                IpipDataPath::Userspace => !kernel,
            };
            if fits {
                match &ipip.userspace {
                    Some(device) => device.set_mtu(mtu)?,
                    None => self.set_mtu_up(ipip.ifindex, mtu).await?,
                }
                return Ok(());
            }
            if let Some(ipip) = self.ipip.take() {
                self.drop_ipip(ipip).await;
            }
        }
        let existing = self.link(IPIP_DEVICE).await;
        let kernel_device = match (&existing, choice) {
            (_, IpipDataPath::Userspace) => None,
            (Some((index, Some(InfoKind::IpIp), _)), _) => Some(*index),
            (Some((_, Some(InfoKind::Tun), _)), IpipDataPath::Auto) => None,
            (Some((_, kind, _)), _) => {
                anyhow::bail!("{IPIP_DEVICE} exists and is not an ipip device ({kind:?})")
            }
            (None, _) => {
                let message = LinkIpIp::new(IPIP_DEVICE).build();
                let added = self.handle.link().add(message).execute().await;
                // Loading the ipip module creates its own tunl0 (the fallback device), which
                // can make our request fail with EEXIST: what counts is what is there now.
                let now = match self.link(IPIP_DEVICE).await {
                    Some((index, Some(InfoKind::IpIp), _)) => Some(index),
                    _ => None,
                };
                match (now, added) {
                    (Some(index), _) => Some(index),
                    (None, Err(error)) if choice == IpipDataPath::Kernel => {
                        anyhow::bail!("the kernel cannot create an ipip device: {error}")
                    }
                    (None, Err(error)) => {
                        info!(%error, "the kernel has no ipip device; using the userspace encapsulator");
                        None
                    }
                    (None, Ok(())) => {
                        anyhow::bail!("{IPIP_DEVICE} was created but is not an ipip device")
                    }
                }
            }
        };
        let ipip = match kernel_device {
            Some(ifindex) => {
                self.set_mtu_up(ifindex, mtu).await?;
                Ipip {
                    ifindex,
                    userspace: None,
                    routes: BTreeMap::new(),
                    dirty: false,
                }
            }
            None => {
                let device = tokio::task::spawn_blocking(move || {
                    userspace::UserspaceIpip::start(IPIP_DEVICE, node, mtu)
                })
                .await??;
                Ipip {
                    ifindex: device.ifindex(),
                    userspace: Some(device),
                    routes: BTreeMap::new(),
                    dirty: true,
                }
            }
        };
        self.ipip = Some(ipip);
        Ok(())
    }

    async fn drop_ipip(&self, ipip: Ipip) {
        match ipip.userspace {
            Some(device) => {
                drop(device);
                if let Err(error) = userspace::delete_device(IPIP_DEVICE) {
                    warn!(%error, "cannot delete the userspace {IPIP_DEVICE}");
                }
                info!("IP-in-IP off: the userspace {IPIP_DEVICE} removed");
            }
            // The kernel's tunl0 is the ipip module's fallback device and cannot be deleted;
            // without routes it carries nothing.
            None => info!("IP-in-IP off"),
        }
    }

    async fn ensure_vxlan(
        &mut self,
        config: &Config,
        node: Ipv4Addr,
        underlay: Option<u32>,
        mtu: u32,
    ) -> anyhow::Result<()> {
        let (vni, port) = (config.vxlan_vni, config.vxlan_port);
        if let Some(vxlan) = &self.vxlan
            && (vxlan.vni, vxlan.port) == (vni, port)
        {
            self.set_mtu_up(vxlan.ifindex, mtu).await?;
            return Ok(());
        }
        let mut fresh = true;
        if let Some((index, kind, data)) = self.link(VXLAN_DEVICE).await {
            let same = kind == Some(InfoKind::Vxlan)
                && data.contains(&InfoVxlan::Id(vni))
                && data.contains(&InfoVxlan::Port(port))
                && data.contains(&InfoVxlan::Local(node));
            if same {
                fresh = false;
            } else {
                info!("{VXLAN_DEVICE} has other settings; creating it again");
                self.handle.link().del(index).execute().await?;
            }
        }
        if fresh {
            let mut builder = LinkVxlan::new(VXLAN_DEVICE, vni)
                .port(port)
                .local(node)
                .learning(false)
                .address(vtep_mac(node).to_vec());
            if let Some(underlay) = underlay {
                builder = builder.dev(underlay);
            }
            self.handle.link().add(builder.build()).execute().await?;
        }
        let Some((ifindex, _, _)) = self.link(VXLAN_DEVICE).await else {
            anyhow::bail!("{VXLAN_DEVICE} vanished after it was created");
        };
        self.set_mtu_up(ifindex, mtu).await?;
        let (neighbours, fdb) = if fresh {
            (BTreeMap::new(), BTreeSet::new())
        } else {
            self.existing_entries(ifindex).await
        };
        let routes = self.vxlan.take().map(|v| v.routes).unwrap_or_default();
        self.vxlan = Some(Vxlan {
            ifindex,
            vni,
            port,
            routes,
            dirty: true,
            neighbours,
            fdb,
        });
        Ok(())
    }

    /// The neighbour and FDB entries an earlier run left on the VXLAN device.
    async fn existing_entries(
        &self,
        ifindex: u32,
    ) -> (BTreeMap<Ipv4Addr, Ipv4Addr>, BTreeSet<Ipv4Addr>) {
        let mut neighbours = BTreeMap::new();
        let mut fdb = BTreeSet::new();
        let mut dump = self.handle.neighbours().get().execute();
        while let Ok(Some(message)) = dump.try_next().await {
            if message.header.ifindex != ifindex {
                continue;
            }
            let mut destination = None;
            let mut lladdr = None;
            for attribute in &message.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        destination = Some(*a)
                    }
                    NeighbourAttribute::LinkLayerAddress(mac) => lladdr = Some(mac.clone()),
                    _ => {}
                }
            }
            if let (Some(gateway), Some(mac)) = (destination, lladdr)
                && let [0x0e, 0x74, a, b, c, d] = mac[..]
            {
                neighbours.insert(gateway, Ipv4Addr::new(a, b, c, d));
            }
        }
        let mut bridge = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        while let Ok(Some(message)) = bridge.try_next().await {
            if message.header.ifindex != ifindex {
                continue;
            }
            for attribute in &message.attributes {
                if let NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) = attribute {
                    fdb.insert(*a);
                }
            }
        }
        (neighbours, fdb)
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
