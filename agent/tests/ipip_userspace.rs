//! The userspace IP-in-IP data path (RFC 2003) between the two nodes of a copy of the `uipip` lab
//! (e2e/topologies/uipip.clab.yml) that each test builds, with real packets: pods ping each other, the wire carries IP protocol 4 with the
//! pods' packets inside, DF packets that do not fit get "fragmentation needed", IP-in-IP from an
//! unknown node is dropped, so is IP-in-IP from a node with a forged inner source or an inner
//! destination that is not the receiving node's, the device outlives the data path until deleted, and a bulk TCP
//! transfer (TSO super-packets cut into segments, segments merged again) arrives intact.
//!
//! Every address lives inside the labs' `tern-uipip-*` namespaces, deleted even when a test fails.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipnetwork::Ipv4Network;
use tern_agent::tunnel::userspace::{self, Counters, UserspaceIpip};
use tern_e2e::{DaemonOptions, Lab, inside};

const DEVICE: &str = "tunl0";
/// The underlay (veth) MTU less the 20 octets of the outer header.
const MTU: u32 = 1480;

/// `ip -n ns ARGS`.
fn ip(ns: &str, args: &str) -> String {
    let args: Vec<&str> = args.split_whitespace().collect();
    tern_e2e::netns::ip_in(ns, &args).unwrap()
}

fn addr(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// One namespace standing for a node: an underlay address on its veth, a pod address on `lo`,
/// and its block of pod addresses.
struct Node {
    ns: String,
    underlay: Ipv4Addr,
    pod: Ipv4Addr,
    block: Ipv4Network,
    ipip: Option<UserspaceIpip>,
}

impl Node {
    fn start(&mut self) {
        let underlay = self.underlay;
        let ipip = inside(&self.ns, move || {
            UserspaceIpip::start(DEVICE, underlay, MTU)
        });
        self.ipip = Some(ipip.unwrap());
    }

    fn ipip(&self) -> &UserspaceIpip {
        self.ipip.as_ref().unwrap()
    }

    fn counters(&self) -> Counters {
        self.ipip().counters()
    }

    /// `ping` from this node's pod address to `to`, three echoes 200 ms apart, with `options`.
    fn ping(&self, to: Ipv4Addr, options: &str) -> Ping {
        let mut args = vec![
            "netns", "exec", &self.ns, "ping", "-n", "-c", "3", "-i", "0.2",
        ];
        args.extend(["-W", "1", "-w", "5"]);
        args.extend(options.split_whitespace());
        let (from, to) = (self.pod.to_string(), to.to_string());
        args.extend(["-I", &from, &to]);
        Ping(Command::new("ip").args(&args).output().unwrap())
    }
}

/// What a ping run printed.
struct Ping(Output);

impl Ping {
    fn received(&self) -> u32 {
        let text = String::from_utf8_lossy(&self.0.stdout);
        let line = text.lines().find(|l| l.contains("received")).unwrap_or("");
        line.split(',')
            .find(|part| part.contains("received"))
            .and_then(|part| part.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.0.stdout),
            String::from_utf8_lossy(&self.0.stderr)
        )
    }
}

/// Two nodes joined by a veth (`veth-a` 192.168.77.1/24, `veth-b` 192.168.77.2/24), pods
/// 10.244.1.1 and 10.244.2.1 (the `uipip` lab), each running the data path on `tunl0` with a table and a kernel
/// route for the other's block.
struct Pair {
    a: Node,
    b: Node,
    /// Dropped last: the data paths stop before their namespaces go.
    lab: Lab,
}

impl Pair {
    fn new(name: &str) -> Pair {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/uipip.clab.yml");
        let lab = Lab::up_as(file, &format!("uipip-{name}"), &DaemonOptions::from_env()).unwrap();
        let (ns_a, ns_b) = (lab.netns("a").unwrap(), lab.netns("b").unwrap());
        let node = |ns: &str, underlay: &str, pod: &str, block: &str| Node {
            ns: ns.to_owned(),
            underlay: addr(underlay),
            pod: addr(pod),
            block: block.parse().unwrap(),
            ipip: None,
        };
        let mut a = node(&ns_a, "192.168.77.1", "10.244.1.1", "10.244.1.0/26");
        let mut b = node(&ns_b, "192.168.77.2", "10.244.2.1", "10.244.2.0/26");
        a.start();
        b.start();
        let pair = Pair { a, b, lab };
        pair.set_routes();
        for (node, other) in [(&pair.a, &pair.b), (&pair.b, &pair.a)] {
            let route = format!("route add {} dev {DEVICE} src {}", other.block, node.pod);
            ip(&node.ns, &route);
        }
        pair
    }

    /// Each node's table: the other's block behind its underlay address; its own block and
    /// underlay address are local.
    fn set_routes(&self) {
        for (node, other) in [(&self.a, &self.b), (&self.b, &self.a)] {
            node.ipip()
                .set_routes(vec![(other.block, vec![other.underlay])]);
            node.ipip()
                .set_local(vec![node.block, Ipv4Network::from(node.underlay)]);
        }
    }
}

/// Runs `what` until it returns true or 5 s have passed.
fn eventually(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    what()
}

#[test]
fn pods_on_two_nodes_ping_each_other_through_the_tunnel() {
    if !tern_e2e::require_root() {
        return;
    }
    let pair = Pair::new("ping");
    let ping = pair.a.ping(pair.b.pod, "");
    assert_eq!(ping.received(), 3, "{}", ping.text());
    for node in [&pair.a, &pair.b] {
        let counters = node.counters();
        assert!(counters.encapsulated_packets >= 3, "{counters:?}");
        assert!(counters.decapsulated_packets >= 3, "{counters:?}");
        assert_eq!(
            counters.no_route + counters.unknown_source,
            0,
            "{counters:?}"
        );
    }
    // 3 echo requests of 84 octets (20 + 8 + 56), each way.
    assert_eq!(pair.a.counters().encapsulated_bytes, 3 * 84);
    assert_eq!(pair.b.counters().decapsulated_bytes, 3 * 84);
    // And back the other way.
    let ping = pair.b.ping(pair.a.pod, "");
    assert_eq!(ping.received(), 3, "{}", ping.text());
    // No route: a destination in no block.
    let ping = pair.a.ping(addr("10.244.3.1"), "-c 1");
    assert_eq!(ping.received(), 0);
    ip(&pair.a.ns, &format!("route add 10.244.3.0/26 dev {DEVICE}"));
    let ping = pair.a.ping(addr("10.244.3.1"), "-c 1");
    assert_eq!(ping.received(), 0);
    assert!(pair.a.counters().no_route >= 1, "{:?}", pair.a.counters());
}

/// One packet seen by tcpdump on the underlay.
#[derive(Debug)]
struct Frame {
    outer_protocol: u8,
    outer_source: Ipv4Addr,
    outer_destination: Ipv4Addr,
    outer_tos: u8,
    inner_source: Ipv4Addr,
    inner_destination: Ipv4Addr,
    inner_protocol: u8,
    inner_tos: u8,
    icmp_type: u8,
}

/// The IPv4-in-IPv4 frames of a pcap file of Ethernet frames.
fn ipip_frames(pcap: &[u8]) -> Vec<Frame> {
    assert!(pcap.len() >= 24, "a pcap file of {} octets", pcap.len());
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    assert_eq!(pcap[20], 1, "Ethernet");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let captured = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..(at + 16 + captured).min(pcap.len())];
        at += 16 + captured;
        if frame.len() < 14 + 20 + 20 + 1 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let outer = &frame[14..];
        let inner = &outer[usize::from(outer[0] & 0x0f) * 4..];
        let address = |bytes: &[u8]| Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        frames.push(Frame {
            outer_protocol: outer[9],
            outer_source: address(&outer[12..16]),
            outer_destination: address(&outer[16..20]),
            outer_tos: outer[1],
            inner_source: address(&inner[12..16]),
            inner_destination: address(&inner[16..20]),
            inner_protocol: inner[9],
            inner_tos: inner[1],
            icmp_type: inner[usize::from(inner[0] & 0x0f) * 4],
        });
    }
    frames
}

#[test]
fn the_wire_carries_rfc_2003_packets_with_the_pod_packets_inside() {
    if !tern_e2e::require_root() {
        return;
    }
    let pair = Pair::new("wire");
    let file = std::env::temp_dir().join(format!("tern-uipip-{}.pcap", std::process::id()));
    let log = file.with_extension("log");
    let capture = Capture::start(&pair.a.ns, "veth-a", &file, &log);
    // TOS 0x28 (DSCP AF11), which the outer header copies.
    let ping = pair.a.ping(pair.b.pod, "-Q 0x28");
    assert_eq!(ping.received(), 3, "{}", ping.text());
    capture.finish();
    let frames = ipip_frames(&std::fs::read(&file).unwrap());
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        frames.len(),
        6,
        "three requests and three replies: {frames:#?}"
    );
    let (a, b) = (&pair.a, &pair.b);
    for (from, to, icmp_type) in [(a, b, 8), (b, a, 0)] {
        let matching = frames.iter().filter(|f| {
            f.outer_protocol == 4
                && (f.outer_source, f.outer_destination) == (from.underlay, to.underlay)
                && (f.inner_source, f.inner_destination) == (from.pod, to.pod)
                && f.inner_protocol == 1
                && f.icmp_type == icmp_type
        });
        assert_eq!(matching.count(), 3, "{frames:#?}");
    }
    for frame in frames.iter().filter(|f| f.icmp_type == 8) {
        assert_eq!(
            (frame.inner_tos, frame.outer_tos),
            (0x28, 0x28),
            "{frame:?}"
        );
    }
}

/// A tcpdump of IP protocol 4 on one interface of a namespace, which stops by itself after six
/// packets (or is killed, by its PID, after 10 s).
struct Capture {
    child: std::process::Child,
}

impl Capture {
    fn start(ns: &str, interface: &str, file: &Path, log: &Path) -> Capture {
        let stderr = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", interface, "-n", "-U"])
            .args(["--immediate-mode", "-c", "6", "-Z", "root", "-w"])
            .arg(file)
            .args(["ip", "proto", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut capture = Capture { child };
        let listening = eventually(|| {
            std::fs::read_to_string(log).is_ok_and(|text| text.contains("listening on"))
        });
        if !listening {
            capture.kill();
            panic!(
                "tcpdump never listened: {}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        capture
    }

    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

#[test]
fn df_packets_that_do_not_fit_get_fragmentation_needed() {
    if !tern_e2e::require_root() {
        return;
    }
    let pair = Pair::new("mtu");
    let (a, b) = (&pair.a, &pair.b);
    // 1452 + 8 (ICMP) + 20 (IP) = 1480, the device's MTU.
    let ping = a.ping(b.pod, "-M do -s 1452");
    assert_eq!(ping.received(), 3, "{}", ping.text());
    let ping = a.ping(b.pod, "-M do -s 1453 -c 1");
    assert_eq!(ping.received(), 0);
    let text = ping.text().to_lowercase();
    assert!(
        text.contains("message too long") && text.contains("1480"),
        "{text}"
    );
    assert_eq!(a.counters().too_big, 0);

    // The underlay shrinks to 1400: packets without DF go out in outer fragments.
    ip(&a.ns, "link set veth-a mtu 1400");
    ip(&b.ns, "link set veth-b mtu 1400");
    let ping = a.ping(b.pod, "-M dont -s 1452");
    assert_eq!(ping.received(), 3, "{}", ping.text());
    // With DF the sender learns the tunnel's path MTU: 1400 - 20.
    let ping = a.ping(b.pod, "-M do -s 1452");
    assert_eq!(ping.received(), 0);
    let text = ping.text().to_lowercase();
    assert!(text.contains("1380"), "{text}");
    assert!(a.counters().too_big >= 1, "{:?}", a.counters());
    let ping = a.ping(b.pod, "-M do -s 1352");
    assert_eq!(ping.received(), 3, "{}", ping.text());
}

#[test]
fn ipip_from_an_address_that_is_no_node_is_dropped() {
    if !tern_e2e::require_root() {
        return;
    }
    let pair = Pair::new("unknown");
    let (a, b) = (&pair.a, &pair.b);
    let ping = b.ping(a.pod, "-c 1");
    assert_eq!(ping.received(), 1, "{}", ping.text());

    // A second data path in b, sending from 192.168.77.3, an address in no table of a's.
    ip(&b.ns, "addr add 192.168.77.3/24 dev veth-b");
    let stranger = inside(&b.ns, || {
        UserspaceIpip::start("tunl1", addr("192.168.77.3"), MTU)
    });
    let stranger = stranger.unwrap();
    let to_a = format!("{}/32", a.pod).parse().unwrap();
    stranger.set_routes(vec![(to_a, vec![a.underlay])]);
    ip(&b.ns, &format!("route add {to_a} dev tunl1 src {}", b.pod));
    let before = a.counters();
    let ping = b.ping(a.pod, "-c 1");
    assert_eq!(ping.received(), 0, "{}", ping.text());
    assert!(stranger.counters().encapsulated_packets >= 1);
    let after = a.counters();
    assert!(after.unknown_source > before.unknown_source, "{after:?}");
    assert_eq!(after.decapsulated_packets, before.decapsulated_packets);
    drop(stranger);
    inside(&b.ns, || userspace::delete_device("tunl1")).unwrap();

    // A table without b: b's packets are refused too, until b is back.
    a.ipip().set_routes(Vec::new());
    let ping = b.ping(a.pod, "-c 1");
    assert_eq!(ping.received(), 0, "{}", ping.text());
    assert!(a.counters().unknown_source > after.unknown_source);
    pair.set_routes();
    let ping = b.ping(a.pod, "");
    assert_eq!(ping.received(), 3, "{}", ping.text());
}

#[test]
fn the_device_and_its_routes_outlive_the_data_path_until_deleted() {
    if !tern_e2e::require_root() {
        return;
    }
    let mut pair = Pair::new("persist");
    let ifindex = pair.a.ipip().ifindex();
    assert_eq!(pair.a.ipip().name(), DEVICE);
    let link = ip(&pair.a.ns, &format!("-o link show {DEVICE}"));
    assert!(link.starts_with(&format!("{ifindex}: {DEVICE}:")), "{link}");
    assert!(link.contains(&format!("mtu {MTU}")), "{link}");

    // ternd stops: the device and the route through it stay (packets are dropped meanwhile).
    drop(pair.a.ipip.take());
    let link = ip(&pair.a.ns, &format!("-o link show {DEVICE}"));
    assert!(link.starts_with(&format!("{ifindex}: {DEVICE}:")), "{link}");
    let route = format!("{} dev {DEVICE}", pair.b.block);
    assert!(ip(&pair.a.ns, "route show").contains(&route));

    // ternd starts again: same device, and traffic flows once the table is back.
    pair.a.start();
    assert_eq!(pair.a.ipip().ifindex(), ifindex);
    pair.a.ipip().set_mtu(1400).unwrap();
    assert!(ip(&pair.a.ns, &format!("link show {DEVICE}")).contains("mtu 1400"));
    pair.set_routes();
    let ping = pair.a.ping(pair.b.pod, "");
    assert_eq!(ping.received(), 3, "{}", ping.text());

    // Encapsulation turned off: the device goes, and with it the route.
    drop(pair.a.ipip.take());
    inside(&pair.a.ns, || userspace::delete_device(DEVICE)).unwrap();
    assert!(!ip(&pair.a.ns, "-o link show").contains(DEVICE));
    assert!(!ip(&pair.a.ns, "route show").contains(&route));
    // Deleting a missing device is fine.
    inside(&pair.a.ns, || userspace::delete_device(DEVICE)).unwrap();
}

#[test]
fn a_bulk_tcp_transfer_arrives_intact_through_segmentation_and_merging() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    if !tern_e2e::require_root() {
        return;
    }
    let pair = Pair::new("bulk");
    let (a, b) = (&pair.a, &pair.b);
    // 16 MiB in 1 MiB writes: the kernel hands the device TSO super-packets, the other side
    // merges segments again.
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i * 7 + i / 4093) as u8)
        .collect();
    let rounds = 16;
    let pod = b.pod;
    let listener = inside(&b.ns, move || TcpListener::bind((pod, 5201)).unwrap());
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        received
    });
    let mut stream = inside(&a.ns, move || TcpStream::connect((pod, 5201)).unwrap());
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for _ in 0..rounds {
        stream.write_all(&chunk).unwrap();
    }
    drop(stream);
    let received = reader.join().unwrap();
    assert_eq!(received.len(), rounds * chunk.len());
    for (i, piece) in received.chunks(chunk.len()).enumerate() {
        assert!(piece == &chunk[..], "round {i} differs");
    }
    let (sent, got) = (a.counters(), b.counters());
    // At most 1480 octets a packet, so at least this many.
    let least = (rounds * chunk.len() / 1480) as u64;
    assert!(sent.encapsulated_packets >= least, "{sent:?}");
    assert!(got.decapsulated_packets >= least, "{got:?}");
    assert_eq!(
        sent.send_errors + got.send_errors + got.invalid,
        0,
        "{sent:?} {got:?}"
    );
}

/// What `socket` receives within a second, if anything.
fn receive(socket: &UdpSocket) -> Option<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buffer = [0; 64];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    Some(buffer[..length].to_vec())
}

#[test]
fn ipip_from_a_node_with_a_forged_inner_source_or_a_destination_elsewhere_is_dropped() {
    if !tern_e2e::require_root() {
        return;
    }
    let pair = Pair::new("forged");
    let (a, b) = (&pair.a, &pair.b);
    let c = pair.lab.netns("c").unwrap();
    // The kernel's reverse-path filter would hide what the data path lets through.
    let settings = [
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.tunl0.rp_filter", "0"),
    ];
    tern_e2e::netns::sysctls(&a.ns, &settings).unwrap();
    let pod = a.pod;
    let in_a = inside(&a.ns, move || UdpSocket::bind((pod, 7000)).unwrap());
    let in_c = inside(&c, || UdpSocket::bind(("10.99.0.1", 7000)).unwrap());
    // b plays a node that forges: an address outside its block, and c's subnet sent to a as
    // if a led there.
    ip(&b.ns, "addr add 10.244.3.1/32 dev lo");
    let beyond: Ipv4Network = "10.99.0.0/24".parse().unwrap();
    b.ipip().set_routes(vec![
        (a.block, vec![a.underlay]),
        (beyond, vec![a.underlay]),
    ]);
    ip(
        &b.ns,
        &format!("route add {beyond} dev {DEVICE} src {}", b.pod),
    );
    let send = |from: Ipv4Addr, to: Ipv4Addr, what: &'static [u8]| {
        inside(&b.ns, move || {
            let socket = UdpSocket::bind((from, 0)).unwrap();
            socket.send_to(what, (to, 7000)).unwrap();
        });
    };

    send(b.pod, a.pod, b"real");
    assert_eq!(receive(&in_a).as_deref(), Some(&b"real"[..]));
    // The data path counts a packet just after writing it into the device, so the socket may
    // have it first.
    assert!(eventually(|| a.counters().decapsulated_packets == 1));
    let before = a.counters();
    send(addr("10.244.3.1"), a.pod, b"forged source");
    send(b.pod, addr("10.99.0.1"), b"bounced");
    assert_eq!(
        receive(&in_a),
        None,
        "a forged inner source reached a's pod"
    );
    assert_eq!(
        receive(&in_c),
        None,
        "a forwarded a packet not addressed to it"
    );
    let after = a.counters();
    assert_eq!(after.foreign_source, before.foreign_source + 1, "{after:?}");
    assert_eq!(after.not_local, before.not_local + 1, "{after:?}");
    assert_eq!(after.decapsulated_packets, before.decapsulated_packets);

    // Real traffic still flows, both ways.
    send(b.pod, a.pod, b"real again");
    assert_eq!(receive(&in_a).as_deref(), Some(&b"real again"[..]));
    let ping = a.ping(b.pod, "");
    assert_eq!(ping.received(), 3, "{}", ping.text());
}
