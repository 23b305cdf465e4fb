//! The route programmer: installs, replaces and deletes kernel routes over rtnetlink, tagged with
//! our route protocol (12, `bird`, by default) so `ip route show proto bird` shows them and
//! nothing of any other protocol is ever touched.
//!
//! Writes are batched ([`batch`]): requests are packed many per sendmsg on one netlink socket,
//! and only failures come back (sequential awaits are about three times slower, a future per
//! request about two). Dumps use a strict-check socket and ask for every route type, since the
//! kernel's default dump leaves blackholes out; the result is filtered by table and protocol
//! again here, so a kernel that ignores the filter changes nothing.
//!
//! Ownership. A prefix in our table held by a route of another protocol (a CNI's pod `/32 dev
//! cali…`, an operator's static route, the kernel's connected subnets) is never taken over: a
//! route is created exclusively (NLM_F_EXCL) and replaced only where the programmer knows the
//! route there is ours (it created it, or a dump showed it). When an exclusive create meets a
//! route (EEXIST) that is not known to be ours, the table is dumped and the route is replaced
//! only if it is ours; otherwise ours is refused, counted, logged once per prefix and reported
//! ([`RouteFailure::HeldByOtherProtocol`]). The kernel's identity of a route includes its metric,
//! so a route of another protocol with a different metric would not stop an exclusive create, and
//! with a higher metric ours would win the lookup: a prefix that any dump (at start, and every
//! repair) showed held by another protocol at any metric is refused without asking the kernel,
//! until a dump shows it free. Deletes carry our protocol, and the kernel deletes only a route
//! with that protocol.

mod batch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags, RouteProtocol, RouteScope,
    RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use batch::{Answers, Encoded, Mode, Request, Writer};

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

/// Why a route request failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteFailure {
    /// The kernel refused the request.
    #[error(transparent)]
    Kernel(rtnetlink::Error),
    /// A route of another protocol holds the prefix in our table: it is left alone and ours is
    /// not installed. Counted ([`Programmer::refused`]) and logged once per prefix by the
    /// programmer; not tried again until the next repair.
    #[error("a route of protocol {protocol} holds the prefix; it is left alone")]
    HeldByOtherProtocol {
        /// The other route's protocol.
        protocol: u8,
    },
    /// The kernel's answer to the request was lost, so whether it was applied is unknown.
    #[error("the kernel's answer was lost")]
    NoAnswer,
}

/// A failed route request.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {prefix}: {reason}")]
pub struct RouteError {
    /// What was attempted.
    pub operation: RouteOperation,
    /// The route.
    pub prefix: IpNetwork,
    /// What went wrong.
    #[source]
    pub reason: RouteFailure,
}

impl RouteError {
    /// Whether another protocol holds the prefix (already counted and logged by the
    /// programmer, so callers need not log it again).
    pub fn is_refusal(&self) -> bool {
        matches!(self.reason, RouteFailure::HeldByOtherProtocol { .. })
    }

    fn kernel(operation: RouteOperation, prefix: IpNetwork, code: i32) -> RouteError {
        let mut message = ErrorMessage::default();
        message.code = std::num::NonZeroI32::new(code.saturating_neg());
        RouteError {
            operation,
            prefix,
            reason: RouteFailure::Kernel(rtnetlink::Error::NetlinkError(message)),
        }
    }
}

/// How many prefixes held by another protocol are logged one by one; past it they are counted
/// only, and that is logged once.
const LOGGED_REFUSALS: usize = 10_000;

/// How many idle batch sockets are kept (the writer task, repairs and block changes can write
/// at the same time; more are opened when needed and closed after).
const IDLE_SOCKETS: usize = 4;

/// Installs and removes routes. Writes go through [`batch`]; dumps through rtnetlink.
#[derive(Debug, Clone)]
pub struct Programmer {
    handle: Handle,
    tag: RouteTag,
    shared: Arc<ProgrammerState>,
}

/// What the clones of a programmer share. Every lock here is held for bookkeeping only, never
/// across a send, a receive or an await.
#[derive(Debug)]
struct ProgrammerState {
    /// Idle batch sockets. A batch takes one for itself; one whose batch lost answers is closed
    /// rather than given back, so no late answer can reach another batch.
    idle: Mutex<Vec<Writer>>,
    /// The next sequence number: unique across batches (wrapping after 2^32 requests).
    sequence: AtomicU32,
    /// Who holds which prefix in our table.
    owners: Mutex<Owners>,
    /// Installs refused because another protocol holds the prefix.
    refused: AtomicU64,
    /// Whether the table was dumped once (the first write does it if no dump came first).
    scanned: AtomicBool,
}

/// Who holds prefixes in our table, as far as this programmer knows.
#[derive(Debug, Default)]
struct Owners {
    /// Prefixes where a route of ours is (as created here, or dumped); only these are replaced.
    /// A route of ours someone else deletes stays here until written again, which is harmless:
    /// a replace with nothing there creates.
    ours: HashSet<IpNetwork>,
    /// Prefixes held by another protocol, with its number, as the last dump (or an exclusive
    /// create's EEXIST) showed. Bounded by the kernel's table.
    foreign: HashMap<IpNetwork, u8>,
    /// Prefixes whose refusal was logged (at most [`LOGGED_REFUSALS`]).
    logged: HashSet<IpNetwork>,
}

/// One dump of our table.
struct Table {
    ours: BTreeMap<IpNetwork, RouteKind>,
    foreign: HashMap<IpNetwork, u8>,
}

/// ESRCH: what the kernel answers to a delete of a route that is not there (or not ours).
const ESRCH: i32 = libc::ESRCH;
/// EEXIST: an exclusive create found a route with the same table and metric.
const EEXIST: i32 = libc::EEXIST;

impl Programmer {
    /// Opens a strict-check netlink socket in the current network namespace and spawns its
    /// connection on the current tokio runtime.
    pub fn open(tag: RouteTag) -> std::io::Result<Programmer> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        tokio::spawn(connection);
        let writer = Writer::open()?;
        Ok(Programmer {
            handle,
            tag,
            shared: Arc::new(ProgrammerState {
                idle: Mutex::new(vec![writer]),
                sequence: AtomicU32::new(1),
                owners: Mutex::new(Owners::default()),
                refused: AtomicU64::new(0),
                scanned: AtomicBool::new(false),
            }),
        })
    }

    /// How routes are tagged.
    pub fn tag(&self) -> RouteTag {
        self.tag
    }

    /// How many installs were refused because another protocol holds the prefix.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Installs or replaces every route. Returns the failures, one per route that failed.
    pub async fn replace(&self, routes: &[KernelRoute]) -> Vec<RouteError> {
        let changes: Vec<(IpNetwork, Option<&RouteKind>)> =
            routes.iter().map(|r| (r.prefix, Some(&r.kind))).collect();
        self.write(&changes).await
    }

    /// Deletes our routes to these prefixes; a route already gone is not an error.
    pub async fn delete(&self, prefixes: &[IpNetwork]) -> Vec<RouteError> {
        let changes: Vec<(IpNetwork, Option<&RouteKind>)> =
            prefixes.iter().map(|p| (*p, None)).collect();
        self.write(&changes).await
    }

    /// Applies changes in order: `Some(kind)` installs or replaces the route, `None` deletes it
    /// (a route already gone is not an error). Returns the failures.
    pub async fn apply(&self, changes: &[Change]) -> Vec<RouteError> {
        let changes: Vec<(IpNetwork, Option<&RouteKind>)> =
            changes.iter().map(|(p, k)| (*p, k.as_ref())).collect();
        self.write(&changes).await
    }

    fn owners(&self) -> MutexGuard<'_, Owners> {
        self.shared
            .owners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the changes: exclusive creates where the prefix is not known to be ours, replaces
    /// where it is, deletes; then settles what the kernel answered (see the module's note).
    async fn write(&self, changes: &[(IpNetwork, Option<&RouteKind>)]) -> Vec<RouteError> {
        if !self.shared.scanned.load(Ordering::Acquire) {
            // Never write before having seen the table once.
            match self.scan().await {
                Ok(table) => {
                    self.owners().learn(table.ours.into_keys(), table.foreign);
                    self.shared.scanned.store(true, Ordering::Release);
                }
                Err(error) => tracing::warn!(%error, "cannot dump the route table"),
            }
        }
        let mut errors = Vec::new();
        let mut refused = Vec::new();
        let writer = match self.writer() {
            Ok(writer) => writer,
            Err(error) => {
                tracing::warn!(%error, "cannot open a netlink socket");
                return changes
                    .iter()
                    .map(|(prefix, kind)| RouteError {
                        operation: operation(*kind),
                        prefix: *prefix,
                        reason: RouteFailure::NoAnswer,
                    })
                    .collect();
            }
        };
        let per_chunk = writer.per_chunk;
        let batch = {
            let owners = self.owners();
            let requests = changes
                .iter()
                .enumerate()
                .filter_map(|(change, (prefix, kind))| {
                    let mode = match kind {
                        None => Mode::Delete,
                        Some(_) => {
                            if let Some(protocol) = owners.foreign.get(prefix) {
                                refused.push((*prefix, *protocol));
                                return None;
                            }
                            if owners.ours.contains(prefix) {
                                Mode::Replace
                            } else {
                                Mode::Create
                            }
                        }
                    };
                    let request = Request {
                        prefix: *prefix,
                        mode,
                        change,
                    };
                    Some((request, *kind))
                });
            self.encode(per_chunk, requests, changes.len())
        };
        let (answers, batch, mut writer) = self.send(Some(writer), batch).await;
        // Exclusive creates that met a route not known to be ours.
        let mut unresolved = Vec::new();
        let mut again = Vec::new();
        {
            let mut owners = self.owners();
            settle(&batch, &answers, |request, outcome| {
                match (request.mode, outcome) {
                    (Mode::Delete, Outcome::Done | Outcome::Refused(ESRCH)) => {
                        owners.ours.remove(&request.prefix);
                    }
                    (Mode::Create, Outcome::Done) => {
                        owners.ours.insert(request.prefix);
                    }
                    (Mode::Replace, Outcome::Done) => {}
                    (Mode::Create, Outcome::Refused(EEXIST)) => {
                        if owners.ours.contains(&request.prefix) {
                            // Created earlier in this batch.
                            again.push(Request {
                                mode: Mode::Replace,
                                ..*request
                            });
                        } else {
                            unresolved.push(*request);
                        }
                    }
                    (mode, Outcome::Refused(code)) => {
                        errors.push(RouteError::kernel(operation_of(mode), request.prefix, code));
                    }
                    (mode, Outcome::Unknown) => errors.push(RouteError {
                        operation: operation_of(mode),
                        prefix: request.prefix,
                        reason: RouteFailure::NoAnswer,
                    }),
                }
            });
        }
        if !unresolved.is_empty() {
            match self.scan().await {
                Ok(table) => {
                    let mut owners = self.owners();
                    owners.learn(table.ours.into_keys(), table.foreign);
                    for request in unresolved {
                        if let Some(protocol) = owners.foreign.get(&request.prefix) {
                            refused.push((request.prefix, *protocol));
                        } else {
                            // Ours, or gone since: either way it may be written now.
                            let mode = if owners.ours.contains(&request.prefix) {
                                Mode::Replace
                            } else {
                                Mode::Create
                            };
                            again.push(Request { mode, ..request });
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot dump the route table");
                    for request in unresolved {
                        errors.push(RouteError::kernel(
                            RouteOperation::Install,
                            request.prefix,
                            EEXIST,
                        ));
                    }
                }
            }
        }
        if !again.is_empty() {
            let requests = again
                .into_iter()
                .map(|request| (request, changes.get(request.change).and_then(|c| c.1)));
            let batch = self.encode(per_chunk, requests, changes.len());
            let (answers, batch, back) = self.send(writer, batch).await;
            writer = back;
            let mut owners = self.owners();
            settle(&batch, &answers, |request, outcome| match outcome {
                Outcome::Done => {
                    owners.ours.insert(request.prefix);
                }
                Outcome::Refused(code) => errors.push(RouteError::kernel(
                    RouteOperation::Install,
                    request.prefix,
                    code,
                )),
                Outcome::Unknown => errors.push(RouteError {
                    operation: RouteOperation::Install,
                    prefix: request.prefix,
                    reason: RouteFailure::NoAnswer,
                }),
            });
        }
        self.give_back(writer);
        if !refused.is_empty() {
            self.refuse(&refused);
            errors.extend(refused.into_iter().map(|(prefix, protocol)| RouteError {
                operation: RouteOperation::Install,
                prefix,
                reason: RouteFailure::HeldByOtherProtocol { protocol },
            }));
        }
        errors
    }

    /// Encodes requests with fresh sequence numbers (`most` bounds how many).
    fn encode<'a>(
        &self,
        per_chunk: usize,
        requests: impl IntoIterator<Item = (Request, Option<&'a RouteKind>)>,
        most: usize,
    ) -> Encoded {
        let base = self
            .shared
            .sequence
            .fetch_add(most as u32, Ordering::Relaxed);
        Encoded::new(self.tag, base, per_chunk, requests)
    }

    /// An idle batch socket, or a new one (in the calling thread's namespace).
    fn writer(&self) -> std::io::Result<Writer> {
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(writer) => Ok(writer),
            None => Writer::open(),
        }
    }

    /// Keeps a socket for the next batch, unless enough are idle.
    fn give_back(&self, writer: Option<Writer>) {
        let Some(writer) = writer else { return };
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_SOCKETS {
            idle.push(writer);
        }
    }

    /// Sends a batch off the async threads (the kernel handles each sendmsg before it returns,
    /// which for a million routes takes seconds). The socket comes back unless it lost answers;
    /// then a new one is opened for what follows.
    async fn send(
        &self,
        writer: Option<Writer>,
        batch: Encoded,
    ) -> (Answers, Arc<Encoded>, Option<Writer>) {
        let batch = Arc::new(batch);
        let all_unknown = |batch: &Encoded| Answers {
            refused: Vec::new(),
            unknown: std::iter::once(0..batch.requests.len()).collect(),
        };
        if batch.requests.is_empty() {
            return (Answers::default(), batch, writer);
        }
        let mut writer = match writer.map_or_else(Writer::open, Ok) {
            Ok(writer) => writer,
            Err(error) => {
                tracing::warn!(%error, "cannot open a netlink socket");
                return (all_unknown(&batch), batch, None);
            }
        };
        let sent = batch.clone();
        let done = tokio::task::spawn_blocking(move || {
            crate::sys::raise_thread_priority();
            let answers = writer.send(&sent);
            let writer = answers.complete().then_some(writer);
            (answers, writer)
        })
        .await;
        match done {
            Ok((answers, writer)) => (answers, batch, writer),
            Err(_) => (all_unknown(&batch), batch, None),
        }
    }

    /// Counts refused installs and logs each prefix once (up to [`LOGGED_REFUSALS`]).
    fn refuse(&self, refused: &[(IpNetwork, u8)]) {
        self.shared
            .refused
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        let mut owners = self.owners();
        for (prefix, protocol) in refused {
            if owners.logged.contains(prefix) {
                continue;
            }
            if owners.logged.len() == LOGGED_REFUSALS {
                tracing::warn!(
                    limit = LOGGED_REFUSALS,
                    "more prefixes held by other protocols: counted, no longer logged one by one"
                );
                owners.logged.insert(*prefix);
                continue;
            }
            if owners.logged.len() > LOGGED_REFUSALS {
                continue;
            }
            owners.logged.insert(*prefix);
            tracing::warn!(
                prefix = %prefix,
                protocol = *protocol,
                "a route of another protocol holds the prefix; ours is not installed"
            );
        }
    }

    /// Every route of ours (our table and protocol), IPv4 and IPv6, blackholes included. It
    /// also refreshes what the programmer knows of the prefixes other protocols hold, and
    /// deletes a route of ours found beside one of another protocol (which appeared after ours,
    /// with another metric): that prefix is theirs.
    pub async fn dump(&self) -> Result<BTreeMap<IpNetwork, RouteKind>, rtnetlink::Error> {
        let Table { mut ours, foreign } = self.scan().await?;
        let contested: Vec<(IpNetwork, u8)> = foreign
            .iter()
            .filter(|(prefix, _)| ours.contains_key(prefix))
            .map(|(prefix, protocol)| (*prefix, *protocol))
            .collect();
        self.owners().learn(ours.keys().copied(), foreign);
        self.shared.scanned.store(true, Ordering::Release);
        if !contested.is_empty() {
            let prefixes: Vec<IpNetwork> = contested.iter().map(|(prefix, _)| *prefix).collect();
            for error in self.delete(&prefixes).await {
                tracing::warn!(%error, "cannot delete a route of ours beside another protocol's");
            }
            for prefix in &prefixes {
                ours.remove(prefix);
            }
            self.refuse(&contested);
        }
        Ok(ours)
    }

    /// Dumps our table, every protocol.
    async fn scan(&self) -> Result<Table, rtnetlink::Error> {
        let mut table = Table {
            ours: BTreeMap::new(),
            foreign: HashMap::new(),
        };
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = RouteMessageBuilder::<IpAddr>::new()
                .table_id(self.tag.table)
                .protocol(RouteProtocol::Unspec)
                .kind(RouteType::Unspec)
                .build();
            filter.header.address_family = family;
            filter.header.scope = RouteScope::Universe;
            let mut stream = self.handle.route().get(filter).execute();
            while let Some(message) = stream.try_next().await? {
                let Some(prefix) = self.prefix_in_table(&message) else {
                    continue;
                };
                let protocol = u8::from(message.header.protocol);
                if protocol != self.tag.protocol {
                    table.foreign.insert(prefix, protocol);
                } else if let Some(kind) = self.parse(&message) {
                    table.ours.insert(prefix, kind);
                }
            }
        }
        Ok(table)
    }

    /// A dumped route's prefix; `None` for routes of another table.
    fn prefix_in_table(&self, message: &RouteMessage) -> Option<IpNetwork> {
        let header = &message.header;
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
        IpNetwork::new(destination, header.destination_prefix_length).ok()
    }

    /// Reads one dumped route; `None` for routes that are not ours.
    fn parse(&self, message: &RouteMessage) -> Option<RouteKind> {
        let header = &message.header;
        if u8::from(header.protocol) != self.tag.protocol {
            return None;
        }
        self.prefix_in_table(message)?;
        if header.kind == RouteType::BlackHole {
            return Some(RouteKind::Blackhole);
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
        Some(RouteKind::Via(hops))
    }
}

impl Owners {
    /// Takes in a dump: its foreign prefixes replace those known (a route of another protocol
    /// that is gone frees its prefix), its routes of ours are added.
    fn learn(
        &mut self,
        ours: impl IntoIterator<Item = IpNetwork>,
        foreign: HashMap<IpNetwork, u8>,
    ) {
        self.ours.extend(ours);
        self.foreign = foreign;
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// The kernel refused it, with this error number.
    Refused(i32),
    /// Its answer may have been lost.
    Unknown,
}

/// Calls `each` with every request of a batch, in order, and what happened to it.
fn settle(batch: &Encoded, answers: &Answers, mut each: impl FnMut(&Request, Outcome)) {
    let mut refused = answers.refused.iter().peekable();
    for (index, request) in batch.requests.iter().enumerate() {
        let mut outcome = Outcome::Done;
        while let Some((at, code)) = refused.peek() {
            if *at > index {
                break;
            }
            if *at == index {
                outcome = Outcome::Refused(*code);
            }
            refused.next();
        }
        if outcome == Outcome::Done && answers.unknown.iter().any(|r| r.contains(&index)) {
            outcome = Outcome::Unknown;
        }
        each(request, outcome);
    }
}

fn operation(kind: Option<&RouteKind>) -> RouteOperation {
    match kind {
        Some(_) => RouteOperation::Install,
        None => RouteOperation::Delete,
    }
}

fn operation_of(mode: Mode) -> RouteOperation {
    match mode {
        Mode::Delete => RouteOperation::Delete,
        Mode::Create | Mode::Replace => RouteOperation::Install,
    }
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
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
                .load(Ordering::Relaxed)
                .max(COALESCE_AT);
            if pending.len() > at {
                coalesce(&mut pending);
                self.shared
                    .coalesce_at
                    .store(pending.len() * 2, Ordering::Relaxed);
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
        queued + self.shared.in_flight.load(Ordering::Acquire)
    }
}

/// Queue length past which changes to one prefix are folded together.
pub const COALESCE_AT: usize = 4_000_000;

/// Keeps only the last change of each prefix (the order between prefixes does not matter to
/// the kernel; the order within one does, and the last one is what must hold).
fn coalesce(pending: &mut Vec<Change>) {
    let mut last: HashMap<IpNetwork, usize> = HashMap::with_capacity(pending.len());
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
                shared.in_flight.store(pending.len(), Ordering::Release);
                shared.coalesce_at.store(0, Ordering::Relaxed);
                std::mem::take(&mut *pending)
            };
            if changes.is_empty() {
                continue;
            }
            let failed = programmer.apply(&changes).await;
            shared.in_flight.store(0, Ordering::Release);
            let mut again = Vec::new();
            for error in failed {
                if error.is_refusal() {
                    // Logged once by the programmer; the agent's repair asks again.
                } else if error.operation == RouteOperation::Install {
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
            let prefixes: std::collections::BTreeSet<IpNetwork> = failed
                .iter()
                .filter(|e| !e.is_refusal())
                .map(|e| e.prefix)
                .collect();
            if prefixes.is_empty() {
                return;
            }
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
}
