//! The route programmer: installs, replaces and deletes kernel routes over rtnetlink, tagged with
//! our route protocol (12, `bird`, by default) so `ip route show proto bird` shows them and
//! nothing of any other protocol is ever touched.
//!
//! Requests are pipelined: many are in flight on one netlink socket at once (sequential awaits
//! are about three times slower). Dumps use a strict-check socket and ask for every route type,
//! since the kernel's default dump leaves blackholes out; the result is filtered by table and
//! protocol again here, so a kernel that ignores the filter changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags, RouteProtocol, RouteScope,
    RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

/// How many netlink requests are in flight at once.
const IN_FLIGHT: usize = 256;

/// One next hop of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHop {
    /// The gateway.
    pub gateway: IpAddr,
    /// The outgoing interface, when it must be given (tunnels, link-local gateways).
    pub interface: Option<u32>,
    /// The gateway need not be on a connected subnet (`onlink`, used with tunnels).
    pub onlink: bool,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// `blackhole`: our own blocks, so traffic to unallocated addresses is dropped here.
    Blackhole,
    /// `via` one or more next hops (ECMP when several), sorted.
    Via(Vec<NextHop>),
}

/// A kernel route of ours.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelRoute {
    /// The destination.
    pub prefix: IpNetwork,
    /// What it does.
    pub kind: RouteKind,
}

/// Where our routes live and how they are tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTag {
    /// The routing table (254, main, by default).
    pub table: u32,
    /// The route protocol.
    pub protocol: u8,
    /// The metric (priority), if any.
    pub metric: Option<u32>,
}

/// A failed netlink request.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {prefix}: {source}")]
pub struct RouteError {
    /// What was attempted.
    pub operation: &'static str,
    /// The route.
    pub prefix: IpNetwork,
    /// What the kernel said.
    #[source]
    pub source: rtnetlink::Error,
}

/// Installs and removes routes on one netlink socket.
#[derive(Debug, Clone)]
pub struct Programmer {
    handle: Handle,
    tag: RouteTag,
}

impl Programmer {
    /// Opens a strict-check netlink socket in the current network namespace and spawns its
    /// connection on the current tokio runtime.
    pub fn open(tag: RouteTag) -> std::io::Result<Programmer> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        tokio::spawn(connection);
        Ok(Programmer { handle, tag })
    }

    /// How routes are tagged.
    pub fn tag(&self) -> RouteTag {
        self.tag
    }

    fn message(&self, route: &KernelRoute) -> RouteMessage {
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.prefix.ip(), route.prefix.prefix())
            .unwrap_or_else(|_| RouteMessageBuilder::<IpAddr>::new())
            .table_id(self.tag.table)
            .protocol(RouteProtocol::from(self.tag.protocol));
        if let Some(metric) = self.tag.metric {
            builder = builder.priority(metric);
        }
        match &route.kind {
            RouteKind::Blackhole => builder
                .kind(RouteType::BlackHole)
                .scope(RouteScope::Universe)
                .build(),
            RouteKind::Via(hops) if hops.len() == 1 => {
                let hop = hops[0];
                let mut builder = builder.kind(RouteType::Unicast);
                builder = match builder.clone().gateway(hop.gateway) {
                    Ok(b) => b,
                    Err(_) => builder,
                };
                if let Some(index) = hop.interface {
                    builder = builder.output_interface(index);
                }
                if hop.onlink {
                    builder = builder.onlink();
                }
                builder.build()
            }
            RouteKind::Via(hops) => {
                let family = if route.prefix.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                let nexthops = hops
                    .iter()
                    .filter_map(|hop| {
                        let mut b = RouteNextHopBuilder::new(family).via(hop.gateway).ok()?;
                        if let Some(index) = hop.interface {
                            b = b.interface(index);
                        }
                        if hop.onlink {
                            b = b.onlink();
                        }
                        Some(b.build())
                    })
                    .collect();
                builder.kind(RouteType::Unicast).multipath(nexthops).build()
            }
        }
    }

    /// Installs or replaces every route, many requests at a time. Returns the failures.
    pub async fn replace(&self, routes: &[KernelRoute]) -> Vec<RouteError> {
        futures::stream::iter(routes)
            .map(|route| {
                let request = self.handle.route().add(self.message(route)).replace();
                async move {
                    request.execute().await.map_err(|source| RouteError {
                        operation: "install",
                        prefix: route.prefix,
                        source,
                    })
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|result| async move { result.err() })
            .collect()
            .await
    }

    /// Deletes our routes to these prefixes; a route already gone is not an error.
    pub async fn delete(&self, prefixes: &[IpNetwork]) -> Vec<RouteError> {
        futures::stream::iter(prefixes)
            .map(|prefix| {
                let route = KernelRoute {
                    prefix: *prefix,
                    kind: RouteKind::Blackhole,
                };
                let mut message = self.message(&route);
                // Match any type: the route may be a blackhole or unicast.
                message.header.kind = RouteType::Unspec;
                let request = self.handle.route().del(message);
                async move {
                    match request.execute().await {
                        Ok(()) => Ok(()),
                        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_esrch() => {
                            Ok(())
                        }
                        Err(source) => Err(RouteError {
                            operation: "delete",
                            prefix: *prefix,
                            source,
                        }),
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|result| async move { result.err() })
            .collect()
            .await
    }

    /// Every route of ours (our table and protocol), IPv4 and IPv6, blackholes included.
    pub async fn dump(&self) -> Result<BTreeMap<IpNetwork, RouteKind>, rtnetlink::Error> {
        let mut routes = BTreeMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = RouteMessageBuilder::<IpAddr>::new()
                .table_id(self.tag.table)
                .protocol(RouteProtocol::from(self.tag.protocol))
                .kind(RouteType::Unspec)
                .build();
            filter.header.address_family = family;
            filter.header.scope = RouteScope::Universe;
            let mut stream = self.handle.route().get(filter).execute();
            while let Some(message) = stream.try_next().await? {
                if let Some((prefix, kind)) = self.parse(&message) {
                    routes.insert(prefix, kind);
                }
            }
        }
        Ok(routes)
    }

    /// Reads one dumped route; `None` for routes that are not ours.
    fn parse(&self, message: &RouteMessage) -> Option<(IpNetwork, RouteKind)> {
        let header = &message.header;
        if u8::from(header.protocol) != self.tag.protocol {
            return None;
        }
        let table = message
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(header.table));
        if table != self.tag.table {
            return None;
        }
        let destination = message.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
            _ => None,
        });
        let destination = destination.unwrap_or(if header.address_family == AddressFamily::Inet6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        });
        let prefix = IpNetwork::new(destination, header.destination_prefix_length).ok()?;
        if header.kind == RouteType::BlackHole {
            return Some((prefix, RouteKind::Blackhole));
        }
        let onlink = header
            .flags
            .contains(rtnetlink::packet_route::route::RouteFlags::Onlink);
        let interface = message.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let mut hops = Vec::new();
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Gateway(address) => {
                    if let Some(gateway) = route_address(address) {
                        hops.push(NextHop {
                            gateway,
                            interface,
                            onlink,
                        });
                    }
                }
                RouteAttribute::Via(RouteVia::Inet6(a)) => {
                    hops.push(NextHop {
                        gateway: IpAddr::V6(*a),
                        interface,
                        onlink,
                    });
                }
                RouteAttribute::MultiPath(list) => {
                    for hop in list {
                        let gateway = hop.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(address) => route_address(address),
                            RouteAttribute::Via(RouteVia::Inet6(a)) => Some(IpAddr::V6(*a)),
                            _ => None,
                        });
                        if let Some(gateway) = gateway {
                            hops.push(NextHop {
                                gateway,
                                interface: Some(hop.interface_index),
                                onlink: hop.flags.contains(RouteNextHopFlags::Onlink),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        hops.sort();
        Some((prefix, RouteKind::Via(hops)))
    }
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// ESRCH: "No such process", what the kernel answers for a route that is not there.
fn libc_esrch() -> i32 {
    3
}
