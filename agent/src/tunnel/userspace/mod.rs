//! The userspace IP-in-IP data path (RFC 2003), for kernels without the `ipip` module.
//!
//! The kernel routes pod traffic for other nodes into a TUN device (`tunl0`, Calico's name, so
//! runbooks keep working). One thread reads those packets, picks the node behind the longest
//! matching prefix and sends each packet on a raw `IPPROTO_IPIP` socket, so the kernel prepends
//! the outer header (protocol 4): the packets on the wire are standard RFC 2003 and a kernel ipip
//! peer (Calico's `tunl0`) takes them. A second thread receives IP-in-IP from the wire, strips
//! the outer header and writes the inner packet into the TUN device, but only when the outer
//! source is a node in the table (as Calico does), the inner source lies in the blocks routed
//! through that node, and the inner destination is this node's (one of its blocks or
//! addresses, [`UserspaceIpip::set_local`]); anything else would let whoever can send IP
//! protocol 4 to the node inject packets into its pods or bounce them onward. Drops are
//! counted per reason ([`Counters`]), never logged per packet.
//!
//! RFC 2003 section 5.1: an inner packet with DF set leaves with DF set (a socket with
//! `IP_PMTUDISC_DO`); without DF the outer header may be fragmented (a second socket with
//! `IP_PMTUDISC_DONT`). When the underlay path MTU has shrunk below a DF packet, the sender gets
//! ICMP "fragmentation needed" (RFC 1191) with the path MTU less 20. The TUN device's MTU (the
//! underlay MTU less 20) makes the kernel answer that for packets too big for the tunnel itself.
//! The outer TOS copies the inner one (set per packet through an `IP_TOS` control message),
//! with the ECN field handled as RFC 6040's normal mode: an inner CE leaves as ECT(0), and on
//! arrival an outer CE mark is carried into an ECN-capable inner packet (one that is not
//! ECN-capable is dropped).
//!
//! The device is persistent (`TUNSETPERSIST`): the kernel routes through it survive a restart of
//! ternd; [`delete_device`] removes it when encapsulation is turned off.
//!
//! The device carries a `virtio_net_hdr` before every packet (`IFF_VNET_HDR`) and has TCP
//! segmentation and checksum offload turned on (`TUNSETOFFLOAD`), so the kernel hands over TCP
//! super-packets of up to 64 KiB with a partial checksum, as it would to a NIC with TSO. They
//! are cut into segments of the size the kernel asked for (RFC 2003 knows nothing of GSO: the
//! wire carries ordinary segments) and every segment read in one burst leaves with one
//! `sendmmsg`. The other way, a burst of packets comes in with one `recvmmsg`, and consecutive
//! in-order TCP segments of one flow go into the device as one GSO packet, the way GRO merges
//! them (only whole segments with ACK or PSH, a valid checksum and headers that segmentation
//! rebuilds exactly).
//!
//! Limits: packets are dropped while ternd is down; every packet is copied through userspace,
//! and every segment still crosses the raw socket and the underlay on its own (a raw socket
//! has no GSO), so throughput stays well below the kernel's; UDP is not offloaded (it comes
//! whole); the outer TTL is the kernel default.
//! Where the underlay NIC does GRO, it may merge IP-in-IP TCP segments into one large packet
//! before it reaches the raw socket; those are cut back into segments that fit the device MTU
//! (other merged packets, rare, go in whole).
//!
//! The packet logic (`outbound`, `inbound`, `fragmentation_needed`, `Segmentation`, `Mergeable`,
//! `VnetHeader`, and [`table`]'s `Table`) is pure; every system call is in [`sys`], the only
//! file allowed `unsafe`. `fuzzing` (hidden, not an API) runs that logic for the cargo-fuzz
//! targets in `fuzz/`.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, PipeReader, PipeWriter, Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use ipnetwork::Ipv4Network;
use tracing::{debug, warn};

#[doc(hidden)]
pub mod fuzzing;
mod icmp;
mod offload;
mod packet;
mod sys;
mod table;

use icmp::*;
use offload::*;
use packet::*;
use sys::*;
use table::{Routes, Table};

/// IP protocol number of IP-in-IP (RFC 2003 section 3).
const PROTOCOL_IPIP: u8 = 4;
/// Length of an IPv4 header without options.
const IPV4_HEADER: usize = 20;
/// The largest IPv4 packet.
const MAX_PACKET: usize = 65535;
/// The smallest MTU an IPv4 link may have (RFC 791).
const MIN_MTU: u32 = 68;
/// The receive buffer of the receiving socket (the kernel doubles it for its bookkeeping).
const RECEIVE_BUFFER: libc::c_int = 4 << 20;
/// The send buffer of the sending sockets, for a burst of segments from one read.
const SEND_BUFFER: libc::c_int = 4 << 20;
/// Packets sent with one `sendmmsg`.
const SEND_BATCH: usize = 64;
/// The buffer those packets wait in, back to back (room for the largest packet and more).
const SEND_ARENA: usize = 256 << 10;
/// Packets received with one `recvmmsg`, each in a slot of `RECEIVE_SLOT` octets (pages the
/// kernel never writes to stay unmapped).
const RECEIVE_BATCH: usize = 32;
const RECEIVE_SLOT: usize = 1 << 16;
/// The most TCP segments merged into one GSO packet for the device.
const MERGE_MAX: usize = 64;
/// How long a thread sleeps in `poll` before it looks at the stop flag again.
const POLL_MS: libc::c_int = 1000;
/// The ECN field of the TOS octet (RFC 3168 section 5).
const ECN_MASK: u8 = 0b11;
const ECN_NOT_ECT: u8 = 0b00;
const ECN_ECT_0: u8 = 0b10;
const ECN_CE: u8 = 0b11;
/// The `virtio_net_hdr` before every packet on the device, and its values used here.
const VNET_HEADER: usize = 10;
const VNET_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_ECN: u8 = 0x80;
/// The TCP flags the data path looks at (RFC 9293 section 3.1, RFC 3168 section 6.1).
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// What the data path has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets sent to another node (a TCP super-packet from the device counts once per
    /// segment sent).
    pub encapsulated_packets: u64,
    /// Inner octets of those.
    pub encapsulated_bytes: u64,
    /// Packets received from another node and written into the device (a packet merged by
    /// GRO counts once, though it goes in as several segments; segments merged here count
    /// one each).
    pub decapsulated_packets: u64,
    /// Inner octets of those.
    pub decapsulated_bytes: u64,
    /// Packets from the device whose destination no route covers, dropped.
    pub no_route: u64,
    /// IP-in-IP packets from an address that is no node in the table, dropped.
    pub unknown_source: u64,
    /// IP-in-IP packets from a node whose inner source is not in the blocks routed through
    /// that node (forged), dropped.
    pub foreign_source: u64,
    /// IP-in-IP packets whose inner destination is not this node's (they would be forwarded
    /// on), dropped.
    pub not_local: u64,
    /// DF packets too big for the underlay path, answered with "fragmentation needed".
    pub too_big: u64,
    /// Sending on the underlay or writing into the device failed.
    pub send_errors: u64,
    /// IP-in-IP packets whose inner packet is no sane IPv4 packet, or that RFC 6040 says to
    /// drop (an outer CE mark on an inner packet that is not ECN-capable).
    pub invalid: u64,
}

/// A running userspace IP-in-IP data path on one TUN device. Dropping it stops the threads;
/// the device stays.
pub struct UserspaceIpip {
    name: String,
    ifindex: u32,
    /// An `AF_INET` datagram socket opened in the device's namespace, for its ioctls.
    control: OwnedFd,
    shared: Arc<Shared>,
    /// Dropping it wakes the threads out of `poll`.
    wake: Option<PipeWriter>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for UserspaceIpip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserspaceIpip")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// What both threads use.
#[derive(Debug)]
struct Shared {
    tun: File,
    /// Sends inner packets with DF (`IP_PMTUDISC_DO`) and receives all IP-in-IP.
    strict: OwnedFd,
    /// Sends inner packets without DF (`IP_PMTUDISC_DONT`); a filter keeps its queue empty.
    fragmenting: OwnedFd,
    routes: Routes,
    /// What the table was last built from (routes, this node's prefixes): either setter
    /// builds it again with the other part kept.
    inputs: Mutex<TableInputs>,
    /// The device's MTU, which merged TCP packets are cut back to.
    mtu: AtomicU32,
    counters: CounterCells,
    stop: AtomicBool,
}

impl UserspaceIpip {
    /// Creates (or re-attaches to) the TUN device `name` (persistent, so kernel routes through it
    /// survive a restart of ternd), sets its MTU, brings it up, opens the raw sockets bound to
    /// `local` (the node's underlay address) and starts the two forwarding threads. Runs in the
    /// network namespace where the device lives; every socket stays there.
    pub fn start(name: &str, local: Ipv4Addr, mtu: u32) -> io::Result<UserspaceIpip> {
        let tun = open_tun(name).map_err(|e| context(e, format!("cannot attach TUN {name}")))?;
        set_persist(&tun, true)
            .map_err(|e| context(e, format!("cannot make {name} persistent")))?;
        let control = socket(libc::SOCK_DGRAM, 0)?;
        set_interface_mtu(&control, name, mtu)?;
        set_interface_up(&control, name)?;
        let ifindex = interface_index(&control, name)?;
        let strict = raw_ipip_socket(local, libc::IP_PMTUDISC_DO)
            .map_err(|e| context(e, format!("cannot open a raw IP-in-IP socket on {local}")))?;
        let fragmenting = raw_ipip_socket(local, libc::IP_PMTUDISC_DONT)
            .map_err(|e| context(e, format!("cannot open a raw IP-in-IP socket on {local}")))?;
        receive_nothing(&fragmenting)?;
        enlarge_buffer(
            &strict,
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            RECEIVE_BUFFER,
        );
        for socket in [&strict, &fragmenting] {
            enlarge_buffer(socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SEND_BUFFER);
        }
        // Connected to a node when a DF packet does not fit, to read the path MTU.
        let probe = UdpSocket::bind((local, 0))?;
        let (wake_reader, wake) = io::pipe()?;
        let wake_reader = Arc::new(wake_reader);

        let shared = Arc::new(Shared {
            tun,
            strict,
            fragmenting,
            routes: Routes::default(),
            inputs: Mutex::default(),
            mtu: AtomicU32::new(mtu),
            counters: CounterCells::default(),
            stop: AtomicBool::new(false),
        });
        let mut device = UserspaceIpip {
            name: name.to_owned(),
            ifindex,
            control,
            shared: Arc::clone(&shared),
            wake: Some(wake),
            threads: Vec::new(),
        };
        let (encap_shared, encap_wake) = (Arc::clone(&shared), Arc::clone(&wake_reader));
        device.threads.push(
            std::thread::Builder::new()
                .name("ipip-encap".into())
                .spawn(move || encapsulate(&encap_shared, &encap_wake, &probe))?,
        );
        device.threads.push(
            std::thread::Builder::new()
                .name("ipip-decap".into())
                .spawn(move || decapsulate(&shared, &wake_reader))?,
        );
        debug!(device = name, ifindex, %local, mtu, "userspace IP-in-IP started");
        Ok(device)
    }

    /// The device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the forwarding table: inner destination prefix -> the underlay addresses of the
    /// nodes behind it. With several, a flow (inner source, destination, protocol and ports)
    /// always takes the same one. The node addresses are also the outer sources accepted, and
    /// a node's prefixes the inner sources accepted from it.
    pub fn set_routes(&self, routes: Vec<(Ipv4Network, Vec<Ipv4Addr>)>) {
        self.rebuild(|inputs| inputs.routes = routes);
    }

    /// Replaces this node's own prefixes (its blocks, and its addresses as /32s): the only
    /// inner destinations delivered into the device. None until set, so nothing is delivered
    /// before the agent says what is local.
    pub fn set_local(&self, local: Vec<Ipv4Network>) {
        self.rebuild(|inputs| inputs.local = local);
    }

    /// Changes what the table is built from, and builds it again.
    fn rebuild(&self, change: impl FnOnce(&mut TableInputs)) {
        let mut inputs = self
            .shared
            .inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut inputs);
        self.shared.routes.replace(inputs.table());
    }

    /// What the data path has done since it started.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Sets the device's MTU (the underlay MTU less 20).
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        set_interface_mtu(&self.control, &self.name, mtu)?;
        self.shared.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }
}

/// What [`Table`] is built from.
#[derive(Debug, Default)]
struct TableInputs {
    routes: Vec<(Ipv4Network, Vec<Ipv4Addr>)>,
    local: Vec<Ipv4Network>,
}

impl TableInputs {
    fn table(&self) -> Table {
        Table::new(self.routes.clone(), self.local.clone())
    }
}

impl Drop for UserspaceIpip {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Closing the pipe's writing end wakes both threads out of `poll`.
        drop(self.wake.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                warn!(device = %self.name, "an IP-in-IP thread panicked");
            }
        }
    }
}

/// Removes the persistent TUN device `name` from the calling thread's network namespace (when
/// encapsulation is turned off): attaches to it and clears `TUNSETPERSIST`, so it goes when the
/// descriptor closes. A missing device is fine; one still attached elsewhere fails with `EBUSY`.
pub fn delete_device(name: &str) -> io::Result<()> {
    let control = socket(libc::SOCK_DGRAM, 0)?;
    match interface_index(&control, name) {
        Err(error) if error.raw_os_error() == Some(libc::ENODEV) => return Ok(()),
        Err(error) => return Err(error),
        Ok(_) => {}
    }
    let tun = open_tun(name).map_err(|e| context(e, format!("cannot attach TUN {name}")))?;
    set_persist(&tun, false)
}

// ---------------------------------------------------------------------------------------------
// The threads.
// ---------------------------------------------------------------------------------------------

/// Device -> wire: until stopped.
fn encapsulate(shared: &Shared, wake: &PipeReader, probe: &UdpSocket) {
    let mut input = vec![0_u8; VNET_HEADER + MAX_PACKET];
    let mut sender = Sender {
        shared,
        probe,
        table: shared.routes.snapshot(),
        batch: Batch::default(),
        icmp: [0; FRAGMENTATION_NEEDED_MAX],
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let read = match (&shared.tun).read(&mut input) {
            Ok(read) => read,
            Err(error) => {
                // The burst is over: out with it before sleeping.
                sender.flush();
                if !wait_after(
                    &error,
                    shared.tun.as_fd(),
                    wake.as_fd(),
                    "read from the device",
                ) {
                    return;
                }
                continue;
            }
        };
        let Some(vnet) = input.get(..read).and_then(VnetHeader::parse) else {
            continue;
        };
        if let Some(packet) = input.get_mut(VNET_HEADER..read) {
            sender.prepare(packet, vnet);
        }
    }
}

/// One packet waiting in a `Batch`.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    /// Where it lies in the batch's buffer.
    start: usize,
    length: usize,
    node: Ipv4Addr,
    /// The outer TOS.
    tos: u8,
    dont_fragment: bool,
    /// The same for the segments of one super-packet: after one is too big, the rest are not
    /// sent either.
    group: u64,
}

/// Packets ready to be sent, back to back in one buffer.
#[derive(Debug)]
struct Batch {
    buffer: Vec<u8>,
    used: usize,
    packets: Vec<Outgoing>,
    groups: u64,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            buffer: vec![0; SEND_ARENA],
            used: 0,
            packets: Vec::with_capacity(SEND_BATCH),
            groups: 0,
        }
    }
}

impl Batch {
    /// Whether a packet of `length` octets still fits.
    fn fits(&self, length: usize) -> bool {
        self.packets.len() < SEND_BATCH && self.buffer.len() - self.used >= length
    }
}

/// The encapsulating thread's state.
struct Sender<'a> {
    shared: &'a Shared,
    /// Connected to a node when a DF packet does not fit, to read the path MTU.
    probe: &'a UdpSocket,
    table: (u64, Arc<Table>),
    batch: Batch,
    icmp: [u8; FRAGMENTATION_NEEDED_MAX],
}

impl Sender<'_> {
    /// Routes a packet read from the device and adds it, or its segments, to the batch.
    fn prepare(&mut self, packet: &mut [u8], vnet: VnetHeader) {
        let counters = &self.shared.counters;
        let gso = vnet.gso_type & !VNET_GSO_ECN;
        if vnet.flags & VNET_NEEDS_CSUM != 0
            && gso == VNET_GSO_NONE
            && !finish_checksum(
                packet,
                usize::from(vnet.csum_start),
                usize::from(vnet.csum_offset),
            )
        {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (node, length, dont_fragment, tos) =
            match outbound(packet, self.shared.routes.current(&mut self.table)) {
                Outbound::Send {
                    node,
                    length,
                    dont_fragment,
                    tos,
                } => (node, length, dont_fragment, tos),
                Outbound::NotIpv4 => return,
                Outbound::NoRoute => {
                    counters.no_route.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
        let Some(packet) = packet.get(..length) else {
            return;
        };
        self.batch.groups += 1;
        let mut outgoing = Outgoing {
            start: 0,
            length,
            node,
            tos,
            dont_fragment,
            group: self.batch.groups,
        };
        if gso == VNET_GSO_NONE {
            if !self.batch.fits(length) {
                self.flush();
            }
            outgoing.start = self.batch.used;
            self.batch.buffer[outgoing.start..outgoing.start + length].copy_from_slice(packet);
            self.push(outgoing);
            return;
        }
        let size = usize::from(vnet.gso_size);
        let plan = Segmentation::plan(packet).filter(|_| gso == VNET_GSO_TCPV4 && size > 0);
        let Some(plan) = plan else {
            debug!(
                gso_type = vnet.gso_type,
                "IP-in-IP: a super-packet that cannot be cut"
            );
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        for index in 0..plan.count(size) {
            if !self.batch.fits(plan.length(size, index)) {
                self.flush();
            }
            let start = self.batch.used;
            let Some(length) = plan.write(packet, size, index, &mut self.batch.buffer[start..])
            else {
                return;
            };
            outgoing.start = start;
            outgoing.length = length;
            self.push(outgoing);
        }
    }

    fn push(&mut self, outgoing: Outgoing) {
        self.batch.used += outgoing.length;
        self.batch.packets.push(outgoing);
        if self.batch.packets.len() == SEND_BATCH {
            self.flush();
        }
    }

    /// Sends the batch: one `sendmmsg` per run of packets for the same socket.
    fn flush(&mut self) {
        let counters = &self.shared.counters;
        let mut index = 0;
        while let Some(first) = self.batch.packets.get(index).copied() {
            let run = self.batch.packets[index..]
                .iter()
                .take_while(|p| p.dont_fragment == first.dont_fragment)
                .count();
            let socket = if first.dont_fragment {
                self.shared.strict.as_fd()
            } else {
                self.shared.fragmenting.as_fd()
            };
            let run = &self.batch.packets[index..index + run];
            match send_many(socket, &self.batch.buffer, run) {
                Ok(sent) if sent > 0 => {
                    let octets: usize = run.iter().take(sent).map(|p| p.length).sum();
                    counters
                        .encapsulated_packets
                        .fetch_add(sent as u64, Ordering::Relaxed);
                    counters
                        .encapsulated_bytes
                        .fetch_add(octets as u64, Ordering::Relaxed);
                    index += sent;
                }
                Err(error) if error.raw_os_error() == Some(libc::EMSGSIZE) => {
                    // The rest of its super-packet is no smaller.
                    index += run.iter().take_while(|p| p.group == first.group).count();
                    if first.dont_fragment {
                        self.too_big(first);
                    } else {
                        counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) | Err(_) => {
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    index += 1;
                }
            }
        }
        self.batch.packets.clear();
        self.batch.used = 0;
    }

    /// Answers a DF packet too big for the underlay path with "fragmentation needed".
    fn too_big(&mut self, packet: Outgoing) {
        let counters = &self.shared.counters;
        counters.too_big.fetch_add(1, Ordering::Relaxed);
        let mtu = match path_mtu(self.probe, packet.node) {
            Ok(mtu) => mtu.saturating_sub(IPV4_HEADER as u32).max(MIN_MTU),
            Err(error) => {
                debug!(node = %packet.node, %error, "cannot read the path MTU");
                return;
            }
        };
        let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
        let bytes = &self.batch.buffer[packet.start..packet.start + packet.length];
        if let Some(length) = fragmentation_needed(bytes, mtu, &mut self.icmp)
            && let Some(message) = self.icmp.get(..length)
            && !write_packet(&self.shared.tun, &[IoSlice::new(message)])
        {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where the inner packet of a received IP-in-IP packet lies in the receive buffer.
#[derive(Debug, Clone, Copy)]
struct Found {
    start: usize,
    end: usize,
    /// Set when it may be merged with its neighbours.
    mergeable: Option<Mergeable>,
}

/// Wire -> device: until stopped.
fn decapsulate(shared: &Shared, wake: &PipeReader) {
    let mut buffer = vec![0_u8; RECEIVE_BATCH * RECEIVE_SLOT];
    let mut lengths = [0_usize; RECEIVE_BATCH];
    let mut found: Vec<Found> = Vec::with_capacity(RECEIVE_BATCH);
    let mut segments = vec![0_u8; MAX_PACKET];
    let mut table = shared.routes.snapshot();
    let counters = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        let count = match receive_many(shared.strict.as_fd(), &mut buffer, &mut lengths) {
            Ok(count) => count,
            Err(error) => {
                if !wait_after(&error, shared.strict.as_fd(), wake.as_fd(), "receive") {
                    return;
                }
                continue;
            }
        };
        let mtu = shared.mtu.load(Ordering::Relaxed) as usize;
        let current = shared.routes.current(&mut table);
        found.clear();
        let slots = buffer.chunks_exact_mut(RECEIVE_SLOT);
        for (slot, (bytes, length)) in slots.zip(lengths).take(count).enumerate() {
            let Some(packet) = bytes.get_mut(..length) else {
                counters.invalid.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match inbound(packet, current) {
                Inbound::Deliver { start, end } => {
                    let inner = &packet[start..end];
                    let mergeable = (inner.len() <= mtu)
                        .then(|| Mergeable::parse(inner))
                        .flatten();
                    let base = slot * RECEIVE_SLOT;
                    found.push(Found {
                        start: base + start,
                        end: base + end,
                        mergeable,
                    });
                }
                Inbound::UnknownSource => {
                    counters.unknown_source.fetch_add(1, Ordering::Relaxed);
                }
                Inbound::ForeignSource => {
                    counters.foreign_source.fetch_add(1, Ordering::Relaxed);
                }
                Inbound::NotLocal => {
                    counters.not_local.fetch_add(1, Ordering::Relaxed);
                }
                Inbound::Invalid => {
                    counters.invalid.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        deliver(shared, &buffer, &found, mtu, &mut segments);
    }
}

/// Writes the inner packets `found` in `buffer` into the device: runs of mergeable segments
/// as one GSO packet each, packets merged by GRO on the underlay cut to `mtu`, the rest one
/// by one.
fn deliver(shared: &Shared, buffer: &[u8], found: &[Found], mtu: usize, segments: &mut [u8]) {
    let counters = &shared.counters;
    let bytes = |f: &Found| buffer.get(f.start..f.end).unwrap_or_default();
    let mut index = 0;
    while let Some(first) = found.get(index) {
        let inner = bytes(first);
        // How many packets from `index` on go in with this write.
        let mut taken = 1;
        let written = if let Some(merged) = first.mergeable {
            let mut last = merged;
            let mut length = inner.len();
            for next in &found[index + 1..] {
                let Some(next_merged) = next.mergeable else {
                    break;
                };
                if taken == MERGE_MAX
                    || !continues((inner, &merged), &last, (bytes(next), &next_merged), length)
                {
                    break;
                }
                length += next_merged.payload;
                last = next_merged;
                taken += 1;
            }
            if taken == 1 {
                write_packet(&shared.tun, &[IoSlice::new(inner)])
            } else {
                let run = &found[index..index + taken];
                let last_flags = bytes(&run[taken - 1])
                    .get(IPV4_HEADER + 13)
                    .copied()
                    .unwrap_or(TCP_ACK);
                let mut headers = [0_u8; 120];
                match merged_headers(inner, &merged, last_flags, length, &mut headers) {
                    Some(vnet) => {
                        let vnet = vnet.encode();
                        let mut slices = [IoSlice::new(&[]); MERGE_MAX + 2];
                        slices[0] = IoSlice::new(&vnet);
                        slices[1] = IoSlice::new(&headers[..merged.headers]);
                        for (slice, f) in slices[2..].iter_mut().zip(run) {
                            *slice =
                                IoSlice::new(bytes(f).get(merged.headers..).unwrap_or_default());
                        }
                        write_vectored(&shared.tun, &slices[..taken + 2])
                    }
                    None => false,
                }
            }
        } else {
            // A TUN device takes one whole packet per write, or nothing.
            let mut written = true;
            let mut write = |packet: &[u8]| {
                written &= write_packet(&shared.tun, &[IoSlice::new(packet)]);
            };
            if !resegment(inner, mtu, segments, &mut write) {
                write(inner);
            }
            written
        };
        for f in &found[index..index + taken] {
            if written {
                counters
                    .decapsulated_packets
                    .fetch_add(1, Ordering::Relaxed);
                counters
                    .decapsulated_bytes
                    .fetch_add((f.end - f.start) as u64, Ordering::Relaxed);
            } else {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        index += taken;
    }
}

/// Writes one whole packet, `parts` concatenated, into the device after an all-zero
/// `virtio_net_hdr` (no GSO, checksums complete).
fn write_packet(tun: &File, parts: &[IoSlice<'_>]) -> bool {
    let vnet = [0_u8; VNET_HEADER];
    let mut slices = [IoSlice::new(&vnet); 4];
    let Some(to) = slices.get_mut(1..=parts.len()) else {
        return false;
    };
    to.copy_from_slice(parts);
    write_vectored(tun, &slices[..=parts.len()])
}

/// One `writev` into the device, which takes a whole packet or nothing.
fn write_vectored(tun: &File, slices: &[IoSlice<'_>]) -> bool {
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut tun = tun;
    tun.write_vectored(slices).is_ok_and(|n| n == total)
}

/// After a failed non-blocking read: waits until `fd` is readable again. False when the
/// thread should stop.
fn wait_after(error: &io::Error, fd: BorrowedFd<'_>, wake: BorrowedFd<'_>, what: &str) -> bool {
    match error.kind() {
        io::ErrorKind::WouldBlock => wait_readable(fd, wake, POLL_MS),
        io::ErrorKind::Interrupted => true,
        _ => {
            // Unexpected: say so, and do not spin on it.
            warn!(%error, "IP-in-IP: cannot {what}");
            wait_readable(wake, wake, POLL_MS / 10)
        }
    }
}

#[derive(Debug, Default)]
struct CounterCells {
    encapsulated_packets: AtomicU64,
    encapsulated_bytes: AtomicU64,
    decapsulated_packets: AtomicU64,
    decapsulated_bytes: AtomicU64,
    no_route: AtomicU64,
    unknown_source: AtomicU64,
    foreign_source: AtomicU64,
    not_local: AtomicU64,
    too_big: AtomicU64,
    send_errors: AtomicU64,
    invalid: AtomicU64,
}

impl CounterCells {
    fn snapshot(&self) -> Counters {
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        Counters {
            encapsulated_packets: get(&self.encapsulated_packets),
            encapsulated_bytes: get(&self.encapsulated_bytes),
            decapsulated_packets: get(&self.decapsulated_packets),
            decapsulated_bytes: get(&self.decapsulated_bytes),
            no_route: get(&self.no_route),
            unknown_source: get(&self.unknown_source),
            foreign_source: get(&self.foreign_source),
            not_local: get(&self.not_local),
            too_big: get(&self.too_big),
            send_errors: get(&self.send_errors),
            invalid: get(&self.invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn net(text: &str) -> Ipv4Network {
        text.parse().unwrap()
    }

    pub(super) fn addr(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    /// An IPv4 packet with a valid header checksum, `payload` after a 20-octet header.
    pub(super) fn packet(
        source: &str,
        destination: &str,
        protocol: u8,
        tos: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = u16::try_from(IPV4_HEADER + payload.len())
            .unwrap()
            .to_be_bytes();
        let mut p = vec![
            0x45, tos, total[0], total[1], 0x12, 0x34, 0x40, 0, 64, protocol, 0, 0,
        ];
        p.extend(addr(source).octets());
        p.extend(addr(destination).octets());
        let sum = checksum(&p).to_be_bytes();
        p[10] = sum[0];
        p[11] = sum[1];
        p.extend(payload);
        p
    }

    pub(super) fn tcp(
        source: &str,
        destination: &str,
        source_port: u16,
        destination_port: u16,
    ) -> Vec<u8> {
        let mut payload = source_port.to_be_bytes().to_vec();
        payload.extend(destination_port.to_be_bytes());
        payload.extend([0; 16]);
        packet(source, destination, 6, 0, &payload)
    }

    /// A table of `routes` for a node whose block is 10.244.1.0/26 and whose address is
    /// 192.168.0.9.
    pub(super) fn table(routes: &[(&str, &[&str])]) -> Table {
        Table::new(
            routes
                .iter()
                .map(|(prefix, nodes)| (net(prefix), nodes.iter().map(|n| addr(n)).collect()))
                .collect(),
            vec![net("10.244.1.0/26"), net("192.168.0.9/32")],
        )
    }

    pub(super) fn node_of(packet: &[u8], table: &Table) -> Option<Ipv4Addr> {
        match outbound(packet, table) {
            Outbound::Send { node, .. } => Some(node),
            _ => None,
        }
    }

    #[test]
    fn no_input_makes_the_data_path_panic() {
        let table = table(&[("0.0.0.0/0", &["192.168.77.2"])]);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut icmp = [0; FRAGMENTATION_NEEDED_MAX];
        let mut scratch = vec![0; MAX_PACKET];
        for _ in 0..20_000 {
            let length = (next() % 90) as usize;
            let mut bytes: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            // Often a plausible start, so the deeper checks run too.
            if length > 0 && next() % 2 == 0 {
                bytes[0] = 0x45;
            }
            if length > 40 && next() % 4 == 0 {
                bytes[2..4].copy_from_slice(&(length as u16).to_be_bytes());
                bytes[9] = 6;
            }
            if length > 40 && next() % 2 == 0 {
                bytes[12..16].copy_from_slice(&[192, 168, 77, 2]);
                bytes[9] = 4;
                bytes[20] = 0x45;
            }
            let _ = outbound(&bytes, &table);
            let _ = fragmentation_needed(&bytes, 1400, &mut icmp);
            let mtu = (next() % 100) as usize;
            let _ = resegment(&bytes, mtu, &mut scratch, |s| assert!(s.len() <= mtu));
            if let Some(plan) = Segmentation::plan(&bytes) {
                let size = (next() % 40) as usize;
                for index in 0..plan.count(size).min(64) {
                    let _ = plan.write(&bytes, size, index, &mut scratch);
                }
            }
            let _ = VnetHeader::parse(&bytes);
            let _ = Mergeable::parse(&bytes);
            let mut copy = bytes.clone();
            let _ = finish_checksum(&mut copy, mtu, (next() % 100) as usize);
            if let Inbound::Deliver { start, end } = inbound(&mut bytes, &table) {
                assert!(start <= end && end <= bytes.len());
            }
        }
    }

    /// A TCP packet from 10.244.2.1:1234 to 10.244.1.1:80 with `flags` and `payload`.
    pub(super) fn tcp_segment(sequence: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut tcp = vec![0x04, 0xd2, 0x00, 0x50];
        tcp.extend(sequence.to_be_bytes());
        tcp.extend([0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend(payload);
        packet("10.244.2.1", "10.244.1.1", 6, ECN_ECT_0, &tcp)
    }

    /// `segment` with both checksums made right.
    pub(super) fn valid(mut segment: Vec<u8>) -> Vec<u8> {
        segment[10..12].fill(0);
        let sum = checksum(&segment[..20]).to_be_bytes();
        segment[10..12].copy_from_slice(&sum);
        segment[36..38].fill(0);
        let pseudo = pseudo_header_sum(0x0af4_0201, 0x0af4_0101, 6, segment.len() - 20);
        let sum = fold(pseudo + word_sum(&segment[20..])).to_be_bytes();
        segment[36..38].copy_from_slice(&sum);
        segment
    }

    /// `segment` with its TCP checksum replaced by the pseudo-header sum, as the kernel hands
    /// over a packet with `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
    pub(super) fn partial(mut segment: Vec<u8>) -> Vec<u8> {
        let pseudo = pseudo_header_sum(0x0af4_0201, 0x0af4_0101, 6, segment.len() - 20);
        segment[36..38].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
        segment
    }

    /// A train of full segments of one flow, the last with PSH, with consecutive sequence
    /// numbers and identifications.
    pub(super) fn train(count: usize, size: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let data: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
                let flags = if i + 1 == count { 0x18 } else { 0x10 };
                let mut s = tcp_segment(1000 + (i * size) as u32, flags, &data);
                s[6] = 0x40; // DF
                s[4..6].copy_from_slice(&(0x1234_u16 + i as u16).to_be_bytes());
                valid(s)
            })
            .collect()
    }

    pub(super) fn merges(segments: &[Vec<u8>]) -> usize {
        let first = Mergeable::parse(&segments[0]).unwrap();
        let (mut last, mut length, mut taken) = (first, segments[0].len(), 1);
        for next in &segments[1..] {
            let Some(merged) = Mergeable::parse(next) else {
                break;
            };
            if !continues((&segments[0], &first), &last, (next, &merged), length) {
                break;
            }
            (last, length, taken) = (merged, length + merged.payload, taken + 1);
        }
        taken
    }
}
