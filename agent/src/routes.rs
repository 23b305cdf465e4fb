//! The route programmer: installs, replaces and deletes kernel routes over rtnetlink, tagged with
//! our route protocol (12, `bird`, by default) so `ip route show proto bird` shows them and
//! nothing of any other protocol is ever touched.
//!
//! Writes are batched: requests are packed many per sendmsg on one netlink socket, and only
//! failures come back (sequential awaits are about three times slower, a future per request
//! about two). Dumps use a strict-check socket and ask for every route type,
//! since the kernel's default dump leaves blackholes out; the result is filtered by table and
//! protocol again here, so a kernel that ignores the filter changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags, RouteProtocol, RouteScope,
    RouteType, RouteVia,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

/// How many octets of requests go into one sendmsg.
const BATCH_OCTETS: usize = 64 * 1024;

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

/// Installs and removes routes. Writes go through [`Writer`]; dumps through rtnetlink.
#[derive(Debug, Clone)]
pub struct Programmer {
    handle: Handle,
    tag: RouteTag,
    writer: Arc<Mutex<Writer>>,
}

/// The write path: route requests packed many per sendmsg on one netlink socket, without an ACK
/// each. The kernel still answers every failure (with the request's sequence number), and one
/// ACK on the last request marks the end of a batch. rtnetlink's future-per-request path costs
/// about twice as much per route (measured with `examples/kernel_bench.rs`), so writes bypass it.
#[derive(Debug)]
struct Writer {
    socket: Socket,
    sequence: u32,
}

impl Writer {
    fn open() -> std::io::Result<Writer> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Writer {
            socket,
            sequence: 0,
        })
    }

    /// Sends every message and returns those the kernel refused, with its error.
    fn send(
        &mut self,
        messages: Vec<(IpNetwork, RouteNetlinkMessage)>,
        flags: u16,
    ) -> Vec<(IpNetwork, ErrorMessage)> {
        let first = self.sequence.wrapping_add(1);
        let count = messages.len();
        let mut prefixes = Vec::with_capacity(count);
        let mut buffer = Vec::with_capacity(BATCH_OCTETS + 1024);
        let mut failures = Vec::new();
        for (i, (prefix, payload)) in messages.into_iter().enumerate() {
            self.sequence = self.sequence.wrapping_add(1);
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            header.sequence_number = self.sequence;
            let last = i + 1 == count;
            if last {
                header.flags |= NLM_F_ACK;
            }
            let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
            message.finalize();
            let start = buffer.len();
            buffer.resize(start + message.buffer_len(), 0);
            message.serialize(&mut buffer[start..]);
            prefixes.push(prefix);
            if buffer.len() >= BATCH_OCTETS || last {
                if let Err(error) = self.socket.send(&buffer, 0) {
                    tracing::warn!(%error, "netlink send failed");
                }
                buffer.clear();
            }
        }
        // Read up to the ACK of the last request, collecting the failures before it.
        let last = self.sequence;
        'read: loop {
            let data = match self.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(error) => {
                    tracing::warn!(%error, "netlink receive failed");
                    break;
                }
            };
            let mut offset = 0;
            while offset < data.len() {
                let Ok(message) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                else {
                    break;
                };
                let length = message.header.length as usize;
                let sequence = message.header.sequence_number;
                if let NetlinkPayload::Error(error) = message.payload {
                    if error.code.is_some() {
                        let index = sequence.wrapping_sub(first) as usize;
                        if let Some(prefix) = prefixes.get(index) {
                            failures.push((*prefix, error));
                        }
                    }
                    if sequence == last {
                        break 'read;
                    }
                }
                offset += length.max(1);
            }
        }
        failures
    }
}

impl Programmer {
    /// Opens a strict-check netlink socket in the current network namespace and spawns its
    /// connection on the current tokio runtime.
    pub fn open(tag: RouteTag) -> std::io::Result<Programmer> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        tokio::spawn(connection);
        let writer = Arc::new(Mutex::new(Writer::open()?));
        Ok(Programmer {
            handle,
            tag,
            writer,
        })
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

    /// Installs or replaces every route. Returns the failures.
    pub async fn replace(&self, routes: &[KernelRoute]) -> Vec<RouteError> {
        let messages: Vec<(IpNetwork, RouteNetlinkMessage)> = routes
            .iter()
            .map(|route| {
                (
                    route.prefix,
                    RouteNetlinkMessage::NewRoute(self.message(route)),
                )
            })
            .collect();
        let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
        self.write("install", messages, flags, false).await
    }

    /// Deletes our routes to these prefixes; a route already gone is not an error.
    pub async fn delete(&self, prefixes: &[IpNetwork]) -> Vec<RouteError> {
        let messages: Vec<(IpNetwork, RouteNetlinkMessage)> = prefixes
            .iter()
            .map(|prefix| {
                let route = KernelRoute {
                    prefix: *prefix,
                    kind: RouteKind::Blackhole,
                };
                let mut message = self.message(&route);
                // Match any type: the route may be a blackhole or unicast.
                message.header.kind = RouteType::Unspec;
                (*prefix, RouteNetlinkMessage::DelRoute(message))
            })
            .collect();
        self.write("delete", messages, NLM_F_REQUEST, true).await
    }

    /// Sends the requests on the batch socket, off the async threads: the kernel handles each
    /// sendmsg before it returns, which for a million routes takes seconds.
    async fn write(
        &self,
        operation: &'static str,
        messages: Vec<(IpNetwork, RouteNetlinkMessage)>,
        flags: u16,
        ignore_missing: bool,
    ) -> Vec<RouteError> {
        if messages.is_empty() {
            return Vec::new();
        }
        let writer = self.writer.clone();
        let failures = tokio::task::spawn_blocking(move || {
            let mut writer = writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            writer.send(messages, flags)
        })
        .await
        .unwrap_or_default();
        failures
            .into_iter()
            .filter(|(_, error)| !(ignore_missing && error.raw_code() == -libc_esrch()))
            .map(|(prefix, error)| RouteError {
                operation,
                prefix,
                source: rtnetlink::Error::NetlinkError(error),
            })
            .collect()
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
