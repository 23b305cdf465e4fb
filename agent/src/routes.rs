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
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags, RouteProtocol, RouteScope,
    RouteType, RouteVia,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, RouteMessageBuilder};

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

/// What a route request asked of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOperation {
    /// Install or replace a route.
    Install,
    /// Delete a route.
    Delete,
}

impl std::fmt::Display for RouteOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RouteOperation::Install => "install",
            RouteOperation::Delete => "delete",
        })
    }
}

/// A failed netlink request.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {prefix}: {source}")]
pub struct RouteError {
    /// What was attempted.
    pub operation: RouteOperation,
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
/// about twice as much per route (measured with `bench/src/bin/kernel_bench.rs`), and its message
/// builder allocates for every attribute, so requests are encoded here by hand ([`encode`]).
#[derive(Debug)]
struct Writer {
    socket: Socket,
}

/// A batch of encoded requests: sendmsg-sized chunks, and each request's prefix and whether it
/// installs (`true`) or deletes. Request `i` carries sequence number `i + 1`; the last one asks
/// for an ACK.
#[derive(Debug, Default)]
struct Encoded {
    chunks: Vec<Vec<u8>>,
    requests: Vec<(IpNetwork, bool)>,
}

impl Encoded {
    /// Encodes changes in order: `Some(kind)` installs or replaces, `None` deletes.
    fn new<'a>(
        tag: RouteTag,
        changes: impl IntoIterator<Item = (IpNetwork, Option<&'a RouteKind>)>,
    ) -> Encoded {
        let mut batch = Encoded::default();
        let mut last = 0;
        for (prefix, kind) in changes {
            if batch
                .chunks
                .last()
                .is_none_or(|chunk| chunk.len() >= BATCH_OCTETS)
            {
                batch.chunks.push(Vec::with_capacity(BATCH_OCTETS + 512));
            }
            let flags = match kind {
                Some(_) => NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                None => NLM_F_REQUEST,
            };
            batch.requests.push((prefix, kind.is_some()));
            let sequence = batch.requests.len() as u32;
            if let Some(chunk) = batch.chunks.last_mut() {
                last = encode(chunk, sequence, flags, tag, prefix, kind);
            }
        }
        // NLM_F_ACK on the last request marks the end of the batch.
        if let Some(flags) = batch
            .chunks
            .last_mut()
            .and_then(|chunk| chunk.get_mut(last + 6..last + 8))
        {
            let value = u16::from_ne_bytes([flags[0], flags[1]]) | NLM_F_ACK;
            flags.copy_from_slice(&value.to_ne_bytes());
        }
        batch
    }
}

// rtnetlink constants (linux/rtnetlink.h).
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTN_UNSPEC: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTN_BLACKHOLE: u8 = 6;
const RTNH_F_ONLINK: u8 = 4;
const RT_TABLE_COMPAT: u8 = 252;

fn put_attribute(buffer: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let length = 4 + payload.len();
    buffer.extend_from_slice(&(length as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(payload);
    buffer.resize(buffer.len() + (4 - length % 4) % 4, 0);
}

fn address_octets(address: IpAddr) -> ([u8; 16], usize) {
    let mut octets = [0; 16];
    match address {
        IpAddr::V4(a) => {
            octets[..4].copy_from_slice(&a.octets());
            (octets, 4)
        }
        IpAddr::V6(a) => {
            octets.copy_from_slice(&a.octets());
            (octets, 16)
        }
    }
}

/// Encodes one RTM_NEWROUTE (`route`) or RTM_DELROUTE (`route.kind` ignored: any type of ours
/// matches) with our table, protocol and metric, and returns where it starts in `buffer`.
fn encode(
    buffer: &mut Vec<u8>,
    sequence: u32,
    flags: u16,
    tag: RouteTag,
    prefix: IpNetwork,
    kind: Option<&RouteKind>,
) -> usize {
    let start = buffer.len();
    let message_type = if kind.is_some() {
        RTM_NEWROUTE
    } else {
        RTM_DELROUTE
    };
    // nlmsghdr: length (patched below), type, flags, sequence, port id.
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.extend_from_slice(&message_type.to_ne_bytes());
    buffer.extend_from_slice(&flags.to_ne_bytes());
    buffer.extend_from_slice(&sequence.to_ne_bytes());
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let family = if prefix.is_ipv4() {
        libc_af_inet()
    } else {
        libc_af_inet6()
    };
    let route_type = match kind {
        None => RTN_UNSPEC,
        Some(RouteKind::Blackhole) => RTN_BLACKHOLE,
        Some(RouteKind::Via(_)) => RTN_UNICAST,
    };
    let onlink = match kind {
        Some(RouteKind::Via(hops)) if hops.len() == 1 => hops.first().is_some_and(|h| h.onlink),
        _ => false,
    };
    let table = u8::try_from(tag.table).unwrap_or(RT_TABLE_COMPAT);
    buffer.extend_from_slice(&[
        family,
        prefix.prefix(),
        0,
        0,
        table,
        tag.protocol,
        0, // RT_SCOPE_UNIVERSE
        route_type,
    ]);
    let route_flags: u32 = if onlink { u32::from(RTNH_F_ONLINK) } else { 0 };
    buffer.extend_from_slice(&route_flags.to_ne_bytes());
    let (octets, length) = address_octets(prefix.network());
    put_attribute(buffer, RTA_DST, &octets[..length]);
    if tag.table > 255 {
        put_attribute(buffer, RTA_TABLE, &tag.table.to_ne_bytes());
    }
    if let Some(metric) = tag.metric {
        put_attribute(buffer, RTA_PRIORITY, &metric.to_ne_bytes());
    }
    match kind {
        Some(RouteKind::Via(hops)) if hops.len() == 1 => {
            if let Some(hop) = hops.first() {
                let (octets, length) = address_octets(hop.gateway);
                put_attribute(buffer, RTA_GATEWAY, &octets[..length]);
                if let Some(index) = hop.interface {
                    put_attribute(buffer, RTA_OIF, &index.to_ne_bytes());
                }
            }
        }
        Some(RouteKind::Via(hops)) => {
            // RTA_MULTIPATH: an rtnexthop (length, flags, hops, ifindex) per hop, each followed
            // by its RTA_GATEWAY.
            let mut nested = Vec::with_capacity(hops.len() * 28);
            for hop in hops {
                let (octets, length) = address_octets(hop.gateway);
                let size = 8 + 4 + length;
                nested.extend_from_slice(&(size as u16).to_ne_bytes());
                nested.push(if hop.onlink { RTNH_F_ONLINK } else { 0 });
                nested.push(0);
                nested.extend_from_slice(&hop.interface.unwrap_or(0).to_ne_bytes());
                put_attribute(&mut nested, RTA_GATEWAY, &octets[..length]);
            }
            put_attribute(buffer, RTA_MULTIPATH, &nested);
        }
        _ => {}
    }
    let length = (buffer.len() - start) as u32;
    if let Some(field) = buffer.get_mut(start..start + 4) {
        field.copy_from_slice(&length.to_ne_bytes());
    }
    start
}

fn libc_af_inet() -> u8 {
    2
}

fn libc_af_inet6() -> u8 {
    10
}

impl Writer {
    fn open() -> std::io::Result<Writer> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Writer { socket })
    }

    /// Sends every request and returns those the kernel refused (by index), with its error.
    fn send(&mut self, batch: &Encoded) -> Vec<(usize, ErrorMessage)> {
        let mut failures = Vec::new();
        for chunk in &batch.chunks {
            if let Err(error) = self.socket.send(chunk, 0) {
                tracing::warn!(%error, "netlink send failed");
            }
        }
        // Read up to the ACK of the last request, collecting the failures before it.
        let last = batch.requests.len() as u32;
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
                        let index = sequence.wrapping_sub(1) as usize;
                        if index < batch.requests.len() {
                            failures.push((index, error));
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

    /// Installs or replaces every route. Returns the failures.
    pub async fn replace(&self, routes: &[KernelRoute]) -> Vec<RouteError> {
        self.write(routes.iter().map(|r| (r.prefix, Some(&r.kind))))
            .await
    }

    /// Deletes our routes to these prefixes; a route already gone is not an error.
    pub async fn delete(&self, prefixes: &[IpNetwork]) -> Vec<RouteError> {
        self.write(prefixes.iter().map(|p| (*p, None))).await
    }

    /// Applies changes in order: `Some(kind)` installs or replaces the route, `None` deletes it
    /// (a route already gone is not an error). Returns the failures.
    pub async fn apply(&self, changes: &[Change]) -> Vec<RouteError> {
        self.write(changes.iter().map(|(p, k)| (*p, k.as_ref())))
            .await
    }

    /// Encodes the changes and sends them on the batch socket, off the async threads: the
    /// kernel handles each sendmsg before it returns, which for a million routes takes seconds.
    async fn write<'a>(
        &self,
        changes: impl IntoIterator<Item = (IpNetwork, Option<&'a RouteKind>)>,
    ) -> Vec<RouteError> {
        let batch = Encoded::new(self.tag, changes);
        if batch.requests.is_empty() {
            return Vec::new();
        }
        let writer = self.writer.clone();
        let failures = tokio::task::spawn_blocking(move || {
            crate::sys::raise_thread_priority();
            let mut writer = writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            writer
                .send(&batch)
                .into_iter()
                .filter_map(|(index, error)| {
                    let (prefix, install) = *batch.requests.get(index)?;
                    Some((prefix, install, error))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        failures
            .into_iter()
            // Deleting a route that is already gone is what was wanted.
            .filter(|(_, install, error)| *install || error.raw_code() != -libc_esrch())
            .map(|(prefix, install, error)| RouteError {
                operation: if install {
                    RouteOperation::Install
                } else {
                    RouteOperation::Delete
                },
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

/// One route change: `Some(kind)` installs or replaces, `None` deletes.
pub type Change = (IpNetwork, Option<RouteKind>);

/// Route changes waiting for the kernel writer, in order: `Some(kind)` installs or replaces,
/// `None` deletes. The agent appends; the writer takes everything pending each time it is ready,
/// so its batches grow while the kernel is busy instead of the agent waiting on it.
#[derive(Debug, Clone)]
pub struct WriterQueue {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Vec<Change>>,
    /// The queue length at which the next coalescing happens (doubles when coalescing leaves
    /// the queue long, so a huge table does not coalesce on every push).
    coalesce_at: std::sync::atomic::AtomicUsize,
    wake: tokio::sync::Notify,
    /// Changes the writer has taken and not finished.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl WriterQueue {
    /// Queues changes for the kernel; never waits. When the kernel falls far behind, changes
    /// to the same prefix are folded into the last one, so the queue never holds more than one
    /// change per prefix beyond [`COALESCE_AT`].
    pub fn push(&self, changes: impl IntoIterator<Item = (IpNetwork, Option<RouteKind>)>) {
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            pending.extend(changes);
            let at = self
                .shared
                .coalesce_at
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(COALESCE_AT);
            if pending.len() > at {
                coalesce(&mut pending);
                self.shared
                    .coalesce_at
                    .store(pending.len() * 2, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.shared.wake.notify_one();
    }

    /// How many changes wait for the kernel, queued or being written.
    pub fn pending(&self) -> usize {
        let queued = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        queued
            + self
                .shared
                .in_flight
                .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Queue length past which changes to one prefix are folded together.
pub const COALESCE_AT: usize = 4_000_000;

/// Keeps only the last change of each prefix (the order between prefixes does not matter to
/// the kernel; the order within one does, and the last one is what must hold).
fn coalesce(pending: &mut Vec<Change>) {
    let mut last: std::collections::HashMap<IpNetwork, usize> =
        std::collections::HashMap::with_capacity(pending.len());
    for (index, (prefix, _)) in pending.iter().enumerate() {
        last.insert(*prefix, index);
    }
    let mut index = 0;
    pending.retain(|(prefix, _)| {
        let keep = last.get(prefix) == Some(&index);
        index += 1;
        keep
    });
}

/// How many times a failed install is tried again before it is reported.
const RETRIES: u32 = 5;

/// Spawns the task that writes queued route changes to the kernel in order, so the caller goes
/// on taking the next changes while the kernel works. Failed installs are tried again off the
/// writer's path, `first_delay` then doubling, five times; what still fails is logged (the
/// agent's periodic repair keeps trying after that).
pub fn spawn_writer(programmer: Programmer, first_delay: std::time::Duration) -> WriterQueue {
    let queue = WriterQueue {
        shared: Arc::new(Shared::default()),
    };
    let shared = queue.shared.clone();
    tokio::spawn(async move {
        loop {
            shared.wake.notified().await;
            let changes = {
                let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
                shared
                    .in_flight
                    .store(pending.len(), std::sync::atomic::Ordering::Release);
                shared
                    .coalesce_at
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                std::mem::take(&mut *pending)
            };
            if changes.is_empty() {
                continue;
            }
            let failed = programmer.apply(&changes).await;
            shared
                .in_flight
                .store(0, std::sync::atomic::Ordering::Release);
            let mut again = Vec::new();
            for error in failed {
                if error.operation == RouteOperation::Install {
                    again.push(error.prefix);
                } else {
                    tracing::warn!(%error, "kernel route delete failed");
                }
            }
            if !again.is_empty() {
                // The last change of each failed prefix, unless a later one deleted it.
                let wanted: std::collections::BTreeSet<IpNetwork> = again.into_iter().collect();
                let mut last: BTreeMap<IpNetwork, Option<RouteKind>> = BTreeMap::new();
                for (prefix, kind) in changes {
                    if wanted.contains(&prefix) {
                        last.insert(prefix, kind);
                    }
                }
                let routes: Vec<KernelRoute> = last
                    .into_iter()
                    .filter_map(|(prefix, kind)| {
                        Some(KernelRoute {
                            prefix,
                            kind: kind?,
                        })
                    })
                    .collect();
                retry(programmer.clone(), routes, first_delay);
            }
        }
    });
    queue
}

/// Tries failed installs again with a doubling delay.
fn retry(programmer: Programmer, mut routes: Vec<KernelRoute>, first_delay: std::time::Duration) {
    tokio::spawn(async move {
        let mut delay = first_delay;
        for attempt in 1..=RETRIES {
            tokio::time::sleep(delay).await;
            let failed = programmer.replace(&routes).await;
            if failed.is_empty() {
                tracing::info!(
                    routes = routes.len(),
                    attempt,
                    "kernel routes installed on retry"
                );
                return;
            }
            let prefixes: std::collections::BTreeSet<IpNetwork> =
                failed.iter().map(|e| e.prefix).collect();
            routes.retain(|r| prefixes.contains(&r.prefix));
            if attempt == RETRIES {
                for error in failed {
                    tracing::warn!(%error, "kernel route install failed after retries");
                }
            }
            delay *= 2;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::RouteNextHopBuilder;

    const TAG: RouteTag = RouteTag {
        table: 254,
        protocol: 12,
        metric: Some(1024),
    };

    /// The same request built with rtnetlink's builder, the reference for [`encode`].
    fn reference(prefix: IpNetwork, kind: &RouteKind) -> RouteMessage {
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(prefix.ip(), prefix.prefix())
            .unwrap()
            .table_id(TAG.table)
            .protocol(RouteProtocol::from(TAG.protocol))
            .priority(1024);
        match kind {
            RouteKind::Blackhole => builder.kind(RouteType::BlackHole).build(),
            RouteKind::Via(hops) if hops.len() == 1 => {
                let hop = hops[0];
                builder = builder
                    .kind(RouteType::Unicast)
                    .gateway(hop.gateway)
                    .unwrap();
                if let Some(index) = hop.interface {
                    builder = builder.output_interface(index);
                }
                if hop.onlink {
                    builder = builder.onlink();
                }
                builder.build()
            }
            RouteKind::Via(hops) => {
                let family = if prefix.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                let nexthops = hops
                    .iter()
                    .map(|hop| {
                        let mut b = RouteNextHopBuilder::new(family).via(hop.gateway).unwrap();
                        if let Some(index) = hop.interface {
                            b = b.interface(index);
                        }
                        if hop.onlink {
                            b = b.onlink();
                        }
                        b.build()
                    })
                    .collect();
                builder.kind(RouteType::Unicast).multipath(nexthops).build()
            }
        }
    }

    fn decoded(prefix: IpNetwork, kind: &RouteKind) -> RouteMessage {
        let mut buffer = Vec::new();
        encode(&mut buffer, 7, NLM_F_REQUEST, TAG, prefix, Some(kind));
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer).unwrap();
        assert_eq!(message.header.length as usize, buffer.len());
        assert_eq!(message.header.sequence_number, 7);
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => route,
            other => panic!("not a new route: {other:?}"),
        }
    }

    fn sorted(message: &RouteMessage) -> Vec<String> {
        let mut attributes: Vec<String> = message
            .attributes
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        attributes.sort();
        attributes
    }

    #[test]
    fn hand_encoded_routes_read_back_as_rtnetlink_builds_them() {
        let hop = |gateway: &str, interface: Option<u32>, onlink: bool| NextHop {
            gateway: gateway.parse().unwrap(),
            interface,
            onlink,
        };
        let cases: Vec<(&str, RouteKind)> = vec![
            ("10.244.1.0/26", RouteKind::Blackhole),
            (
                "10.244.2.0/26",
                RouteKind::Via(vec![hop("10.0.0.12", None, false)]),
            ),
            (
                "10.244.3.0/26",
                RouteKind::Via(vec![hop("10.1.2.13", Some(9), true)]),
            ),
            (
                "10.244.4.0/26",
                RouteKind::Via(vec![
                    hop("10.0.0.12", None, false),
                    hop("10.0.0.13", None, false),
                ]),
            ),
            (
                "10.244.5.0/26",
                RouteKind::Via(vec![
                    hop("10.1.2.13", Some(9), true),
                    hop("10.1.2.14", Some(9), true),
                ]),
            ),
            (
                "fd00:244::/64",
                RouteKind::Via(vec![hop("fd00::12", None, false)]),
            ),
            (
                "fd00:245::/64",
                RouteKind::Via(vec![
                    hop("fd00::12", None, false),
                    hop("fd00::13", None, false),
                ]),
            ),
        ];
        for (prefix, kind) in cases {
            let prefix: IpNetwork = prefix.parse().unwrap();
            let ours = decoded(prefix, &kind);
            let theirs = reference(prefix, &kind);
            assert_eq!(ours.header, theirs.header, "{prefix}");
            assert_eq!(sorted(&ours), sorted(&theirs), "{prefix}");
        }
    }

    #[test]
    fn coalescing_keeps_the_last_change_of_each_prefix_in_order() {
        let a: IpNetwork = "10.0.0.0/24".parse().unwrap();
        let b: IpNetwork = "10.0.1.0/24".parse().unwrap();
        let c: IpNetwork = "10.0.2.0/24".parse().unwrap();
        let hop = |g: &str| {
            RouteKind::Via(vec![NextHop {
                gateway: g.parse().unwrap(),
                interface: None,
                onlink: false,
            }])
        };
        let mut pending = vec![
            (a, Some(hop("192.0.2.1"))),
            (b, Some(hop("192.0.2.1"))),
            (a, None),
            (c, Some(hop("192.0.2.3"))),
            (b, Some(hop("192.0.2.2"))),
            (a, Some(hop("192.0.2.9"))),
        ];
        coalesce(&mut pending);
        assert_eq!(
            pending,
            vec![
                (c, Some(hop("192.0.2.3"))),
                (b, Some(hop("192.0.2.2"))),
                (a, Some(hop("192.0.2.9"))),
            ]
        );
    }

    #[test]
    fn a_delete_matches_any_type_of_our_protocol() {
        let mut buffer = Vec::new();
        let prefix: IpNetwork = "10.244.1.0/26".parse().unwrap();
        encode(&mut buffer, 1, NLM_F_REQUEST, TAG, prefix, None);
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(route)) = message.payload
        else {
            panic!("not a delete");
        };
        assert_eq!(route.header.kind, RouteType::Unspec);
        assert_eq!(u8::from(route.header.protocol), 12);
        assert_eq!(route.header.destination_prefix_length, 26);
    }

    #[test]
    fn only_the_last_request_of_a_batch_asks_for_an_ack() {
        let prefixes: Vec<IpNetwork> = (0..5000u32)
            .map(|i| IpNetwork::new(IpAddr::V4((0x0a00_0000 + (i << 8)).into()), 24).unwrap())
            .collect();
        let batch = Encoded::new(
            TAG,
            prefixes.iter().map(|p| (*p, Some(&RouteKind::Blackhole))),
        );
        assert!(
            batch.chunks.len() > 1,
            "5000 requests span several sendmsgs"
        );
        let mut seen = 0;
        for chunk in &batch.chunks {
            assert!(chunk.len() <= BATCH_OCTETS + 512);
            let mut offset = 0;
            while offset < chunk.len() {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&chunk[offset..]).unwrap();
                seen += 1;
                assert_eq!(message.header.sequence_number, seen);
                assert_eq!(message.header.flags & NLM_F_ACK != 0, seen == 5000);
                offset += message.header.length as usize;
            }
        }
        assert_eq!(seen, 5000);
    }
}
