//! Kernel install benchmark: N learned routes (`/24 via a gateway`, tagged proto 12) written into
//! a fresh network namespace by
//! - the floor: a bare program that packs RTM_NEWROUTE messages many per sendmsg on one netlink
//!   socket, with no library in between;
//! - tern's route programmer (rtnetlink, requests pipelined), as ternd uses it.
//!
//! `cargo run --release -p tern-bench --bin kernel_bench -- [COUNTS] [RUNS]`, as root; COUNTS
//! is a comma list (default 100000,1000000), RUNS the runs per figure (default 3; medians).
//! Everything happens in namespace `tern-kbench`, created here and removed at the end.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use ipnetwork::{IpNetwork, Ipv4Network};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tern_agent::routes::{KernelRoute, NextHop, Programmer, RouteKind, RouteTag};
use tern_bench::harness::{NamespaceGuard, median};

const NS: &str = "tern-kbench";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .unwrap();
    assert!(status.success(), "ip {args}");
}

fn prefix(i: u32) -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::from(0x1000_0000 + (i << 8)), 24).unwrap()
}

/// The floor: RTM_NEWROUTE packed into 64 KiB sendmsg calls; the last asks for an ACK, and since
/// the kernel handles a socket's requests in order, that ACK means all are in.
fn floor_install(count: u32) -> usize {
    let mut socket = Socket::new(NETLINK_ROUTE).unwrap();
    socket.bind_auto().unwrap();
    socket.connect(&SocketAddr::new(0, 0)).unwrap();
    let mut buffer = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    for i in 0..count {
        let net = prefix(i);
        let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.ip(), net.prefix())
            .gateway(GATEWAY)
            .protocol(RouteProtocol::from(12))
            .build();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
        header.sequence_number = i + 1;
        let last = i + 1 == count;
        if last {
            header.flags |= NLM_F_ACK;
        }
        let mut message = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)),
        );
        message.finalize();
        let start = buffer.len();
        buffer.resize(start + message.buffer_len(), 0);
        message.serialize(&mut buffer[start..]);
        if buffer.len() > 60_000 || last {
            socket.send(&buffer, 0).unwrap();
            buffer.clear();
        }
    }
    // Read up to the final ACK, counting errors on the way.
    loop {
        let (data, _) = socket.recv_from_full().unwrap();
        let mut offset = 0;
        let mut done = false;
        while offset < data.len() {
            let message =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..]).unwrap();
            offset += message.header.length as usize;
            if let NetlinkPayload::Error(error) = &message.payload {
                if error.code.is_some() {
                    errors += 1;
                }
                if message.header.sequence_number == count {
                    done = true;
                }
            }
        }
        if done {
            return errors;
        }
    }
}

fn flush() {
    ip(&format!("-n {NS} route flush proto 12"));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let counts: Vec<u32> = args
        .next()
        .unwrap_or_else(|| "100000,1000000".into())
        .split(',')
        .map(|c| c.parse().expect("COUNTS is a comma list of numbers"))
        .collect();
    let runs: usize = args
        .next()
        .map_or(3, |r| r.parse().expect("RUNS is a number"));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        eprintln!("kernel_bench needs root: it creates the network namespace {NS}");
        std::process::exit(1);
    }
    let _guard = NamespaceGuard::create(&[NS]).unwrap();
    ip(&format!("-n {NS} link add k0 type veth peer name k1"));
    ip(&format!("-n {NS} link set k0 up"));
    ip(&format!("-n {NS} link set k1 up"));
    ip(&format!("-n {NS} addr add 10.9.0.1/24 dev k0"));

    let results = tern_e2e::inside(NS, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut results = Vec::new();
        for &count in &counts {
            let routes: Vec<KernelRoute> = (0..count)
                .map(|i| KernelRoute {
                    prefix: IpNetwork::V4(prefix(i)),
                    kind: RouteKind::Via(vec![NextHop {
                        gateway: IpAddr::V4(GATEWAY),
                        interface: None,
                        onlink: false,
                    }]),
                })
                .collect();
            let (mut floor, mut tern) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                flush();
                let start = Instant::now();
                let errors = floor_install(count);
                floor.push(start.elapsed());
                assert_eq!(errors, 0, "the floor's routes were refused");
                flush();
                let start = Instant::now();
                let failed = runtime.block_on(async {
                    let programmer = Programmer::open(RouteTag {
                        table: 254,
                        protocol: 12,
                        metric: None,
                    })
                    .unwrap();
                    programmer.replace(&routes).await.len()
                });
                tern.push(start.elapsed());
                assert_eq!(failed, 0, "tern's routes were refused");
            }
            flush();
            results.push((count, median(&floor).unwrap(), median(&tern).unwrap()));
        }
        results
    });

    println!("| routes | floor (raw netlink, batched) | tern's route programmer | ratio |");
    println!("|---|---|---|---|");
    for (count, floor, tern) in results {
        println!(
            "| {count} | {:.2} s | {:.2} s | {:.2}x |",
            floor.as_secs_f64(),
            tern.as_secs_f64(),
            tern.as_secs_f64() / floor.as_secs_f64()
        );
    }
}
