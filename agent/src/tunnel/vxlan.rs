//! The VXLAN device (RFC 7348): `vxlan.tern` (no learning), with a permanent neighbour entry per
//! remote tunnel address and an FDB entry per remote node address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::LinkVxlan;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{InfoKind, InfoVxlan};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use tracing::info;

use ipnetwork::Ipv4Network;

use super::{TunnelError, Tunnels, VXLAN_DEVICE, vtep_mac};
use crate::config::Config;

/// The VXLAN device in use.
#[derive(Debug)]
pub(super) struct Vxlan {
    pub(super) ifindex: u32,
    pub(super) vni: u32,
    pub(super) port: u16,
    /// Encapsulated routes: block -> node address.
    pub(super) routes: BTreeMap<Ipv4Network, Ipv4Addr>,
    /// `routes` changed since the neighbour and FDB entries were last brought in line.
    pub(super) dirty: bool,
    /// Neighbour entries in the kernel: tunnel address -> node address.
    pub(super) neighbours: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// FDB entries in the kernel, by node address.
    pub(super) fdb: BTreeSet<Ipv4Addr>,
}

impl Tunnels {
    pub(super) async fn ensure_vxlan(
        &mut self,
        config: &Config,
        node: Ipv4Addr,
        underlay: Option<u32>,
        mtu: u32,
    ) -> Result<(), TunnelError> {
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
            return Err(TunnelError::Vanished(VXLAN_DEVICE));
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
    pub(super) async fn existing_entries(
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
}
