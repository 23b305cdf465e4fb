//! Block-add latency: in the `mesh3` lab (three ternd nodes, iBGP full mesh), the time from an
//! AddBlock (or RemoveBlock) call on n1's control API to the route appearing (or going) in n2's
//! kernel, seen by a netlink listener inside n2's namespace. 100 adds and 100 removals; p50 and
//! p99.
//!
//! `cargo build --release -p tern-agent --bins --example block_latency` then, as root,
//! `target/release/examples/block_latency`. It uses the ternd next to it (target/release/ternd).

use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tern_e2e::daemon::DaemonOptions;
use tern_e2e::lab::Lab;
use tern_proto::v1::block_service_client::BlockServiceClient;
use tern_proto::v1::{AddBlockRequest, RemoveBlockRequest};
use tonic::transport::Channel;

/// RTMGRP_IPV4_ROUTE.
const ROUTE_GROUP: u32 = 0x40;

fn prefix_of(message: &RouteMessage) -> Option<IpNetwork> {
    let destination = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        _ => None,
    })?;
    IpNetwork::new(destination, message.header.destination_prefix_length).ok()
}

/// Listens to route changes inside `namespace` and sends (time, prefix, added).
fn listen(namespace: String, events: mpsc::Sender<(Instant, IpNetwork, bool)>) {
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{namespace}")).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (mut connection, _handle, mut messages) = rtnetlink::new_connection().unwrap();
            connection
                .socket_mut()
                .socket_mut()
                .bind(&SocketAddr::new(0, ROUTE_GROUP))
                .unwrap();
            tokio::spawn(connection);
            while let Some((message, _)) = messages.next().await {
                let now = Instant::now();
                let (route, added) = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => (r, true),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => (r, false),
                    _ => continue,
                };
                if u8::from(route.header.protocol) != 12 {
                    continue;
                }
                if let Some(prefix) = prefix_of(&route)
                    && events.send((now, prefix, added)).is_err()
                {
                    return;
                }
            }
        });
    });
}

async fn channel(path: &Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::UnixStream::connect(path).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing serves {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tern_agent::api::connect_unix(path).await.unwrap()
}

fn wait(
    events: &mpsc::Receiver<(Instant, IpNetwork, bool)>,
    prefix: IpNetwork,
    added: bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, seen, was_added) = events
            .recv_timeout(left)
            .expect("the route change never came");
        if seen == prefix && was_added == added {
            return at;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let ternd = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("ternd");
    assert!(
        ternd.exists(),
        "build ternd first: cargo build --release -p tern-agent --bins"
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/mesh3.clab.yml");
    let lab = Lab::up_with(
        &file,
        &DaemonOptions {
            start_ternd: true,
            ternd,
        },
    )
    .unwrap();
    let (sender, events) = mpsc::channel();
    listen(lab.netns("n2").unwrap(), sender);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (adds, removes) = runtime.block_on(async {
        let api = channel(Path::new("/run/tern-lab/mesh3/n1/tern.sock")).await;
        let mut client = BlockServiceClient::new(api);
        // Wait until the mesh is up: n1's own block reaches n2.
        let warm: IpNetwork = "10.244.200.0/26".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            client
                .add_block(AddBlockRequest {
                    prefix: warm.to_string(),
                })
                .await
                .unwrap();
            if events
                .recv_timeout(Duration::from_secs(1))
                .is_ok_and(|(_, p, a)| p == warm && a)
            {
                break;
            }
            assert!(Instant::now() < deadline, "the mesh never carried a block");
            client
                .remove_block(RemoveBlockRequest {
                    prefix: warm.to_string(),
                })
                .await
                .unwrap();
        }
        client
            .remove_block(RemoveBlockRequest {
                prefix: warm.to_string(),
            })
            .await
            .unwrap();
        wait(&events, warm, false);
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for i in 0..100u32 {
            let block: IpNetwork = format!("10.244.{}.{}/26", 100 + i / 4, (i % 4) * 64)
                .parse()
                .unwrap();
            let start = Instant::now();
            client
                .add_block(AddBlockRequest {
                    prefix: block.to_string(),
                })
                .await
                .unwrap();
            adds.push(wait(&events, block, true) - start);
            let start = Instant::now();
            client
                .remove_block(RemoveBlockRequest {
                    prefix: block.to_string(),
                })
                .await
                .unwrap();
            removes.push(wait(&events, block, false) - start);
        }
        (adds, removes)
    });
    lab.down().unwrap();
    for (what, mut times) in [("add", adds), ("remove", removes)] {
        times.sort();
        println!(
            "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} changes",
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
            times.last().unwrap().as_secs_f64() * 1000.0,
            times.len()
        );
    }
}
