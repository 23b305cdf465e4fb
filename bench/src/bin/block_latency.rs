//! Block-add latency: in the `mesh3` lab (three ternd nodes, iBGP full mesh), the time from an
//! AddBlock (or RemoveBlock) call on n1's control API to the route appearing (or going) in n2's
//! kernel, seen by a netlink listener inside n2's namespace. 100 adds and 100 removals; p50 and
//! p99.
//!
//! `cargo build --release -p tern-agent --bins && cargo build --release -p tern-bench --bin
//! block_latency` then, as root, `target/release/block_latency`. It uses the ternd next to it
//! (target/release/ternd).

use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use tern_bench::harness::{listen_routes, sibling};
use tern_e2e::daemon::DaemonOptions;
use tern_e2e::lab::Lab;
use tern_proto::v1::block_service_client::BlockServiceClient;
use tern_proto::v1::{AddBlockRequest, RemoveBlockRequest};
use tonic::transport::Channel;

/// Listens to route changes of protocol 12 inside `namespace` and sends (time, prefix, added).
fn listen(namespace: String, events: mpsc::Sender<(Instant, IpNetwork, bool)>) {
    listen_routes(&namespace, move |event| {
        let now = Instant::now();
        if event.protocol != 12 {
            return true;
        }
        let Ok(prefix) = IpNetwork::new(IpAddr::V4(event.destination), event.prefix_len) else {
            return true;
        };
        events.send((now, prefix, event.added)).is_ok()
    });
}

/// A channel to the API on `path`, waiting up to 20 s for ternd to serve it.
async fn channel(path: &Path) -> Channel {
    tern_agent::api::connect_unix_within(path, Duration::from_secs(20))
        .await
        .unwrap_or_else(|error| panic!("nothing serves {}: {error}", path.display()))
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
    let ternd = sibling("ternd").unwrap();
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
