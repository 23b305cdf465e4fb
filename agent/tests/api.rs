//! The control API and `ternctl` against real ternd nodes in copies of the `ternd-pair` lab
//! (e2e/topologies/ternd-pair.clab.yml): two nodes in an iBGP mesh, each serving the API on a
//! unix socket in its node's runtime folder (and one over TCP with mutual TLS). Every RPC is called for real; refused calls must carry the
//! precise gRPC code and change nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tern_e2e::check::{eventually, route_lines, wait_route_line};
use tern_e2e::{DaemonOptions, Lab, require_root};
use tern_proto::v1 as pb;
use tern_proto::v1::block_service_client::BlockServiceClient;
use tern_proto::v1::peer_service_client::PeerServiceClient;
use tern_proto::v1::route_service_client::RouteServiceClient;
use tern_proto::v1::status_service_client::StatusServiceClient;
use tern_proto::v1::watch_service_client::WatchServiceClient;
use tonic::Code;
use tonic::transport::Channel;

fn config(name: &str, address: &str, other: (&str, &str), blocks: &str) -> String {
    format!(
        r#"
nodeName: {name}
nodeAddress: {address}/24
asNumber: 64512
nodes:
  - name: {}
    address: {}
ipPools:
  - cidr: 10.244.0.0/16
  - cidr: 10.245.0.0/16
    disabled: true
blocks: [{blocks}]
gracefulRestartTime: 60s
"#,
        other.0, other.1
    )
}

fn ternd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ternd"))
}

/// A copy of the `ternd-pair` lab called `name`: tests of this file run in parallel.
fn lab(name: &str) -> Lab {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/ternd-pair.clab.yml");
    Lab::up_as(file, name, &DaemonOptions::from_env()).unwrap()
}

/// `node`'s routes tagged `proto bird`, as `ip route` prints them.
fn routes(lab: &Lab, node: &str) -> String {
    route_lines(lab, node, "bird").unwrap()
}

/// Waits up to 30 s for `node` to hold a `proto bird` route line containing `wanted`.
fn wait_for_route(lab: &Lab, node: &str, wanted: &str) {
    wait_route_line(lab, node, "bird", wanted, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", lab.log(node, "ternd.log")));
}

/// Runs a program on the host (openssl) and returns its stdout.
fn run(args: &[&str]) -> String {
    tern_e2e::netns::run(Command::new(args[0]).args(&args[1..])).unwrap()
}

/// Two nodes of a lab called `name`, a (10.0.9.1, block 10.244.1.0/26) and b (10.0.9.2, block
/// 10.244.2.0/26), on one veth pair; returns the lab, a's configuration and a's ternd PID, once
/// they exchanged their blocks.
fn two_nodes(name: &str) -> (Lab, String, u32) {
    let (a, b) = ("a", "b");
    let mut lab = lab(name);
    let config_a = config(
        "node-a",
        "10.0.9.1",
        ("node-b", "10.0.9.2"),
        "10.244.1.0/26",
    );
    // b, the passive side (the higher address), listens before a connects.
    lab.start_ternd(
        b,
        ternd(),
        &config(
            "node-b",
            "10.0.9.2",
            ("node-a", "10.0.9.1"),
            "10.244.2.0/26",
        ),
    )
    .unwrap();
    let node_a = lab.start_ternd(a, ternd(), &config_a).unwrap();
    wait_for_route(&lab, a, "10.244.2.0/26 via 10.0.9.2");
    wait_for_route(&lab, b, "10.244.1.0/26 via 10.0.9.1");
    (lab, config_a, node_a)
}

fn socket(lab: &Lab, node: &str) -> PathBuf {
    lab.ternd_socket(node)
}

/// A channel to the API on `path`, waiting up to 10 s for ternd to serve it.
async fn channel(path: &Path) -> Channel {
    tern_agent::api::connect_unix_within(path, Duration::from_secs(10))
        .await
        .unwrap_or_else(|error| panic!("nothing serves {}: {error}", path.display()))
}

async fn list_blocks(channel: &Channel) -> Vec<(String, i32)> {
    BlockServiceClient::new(channel.clone())
        .list_blocks(pb::ListBlocksRequest {})
        .await
        .unwrap()
        .into_inner()
        .blocks
        .into_iter()
        .map(|b| (b.prefix, b.source))
        .collect()
}

const CONFIG: i32 = pb::BlockSource::Config as i32;
const API: i32 = pb::BlockSource::Api as i32;

fn blocks(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter().map(|(p, s)| ((*p).to_owned(), *s)).collect()
}

/// Polls an async check every 100 ms for up to `seconds`.
async fn eventually_async<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => panic!("{what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn list_routes(channel: &Channel, request: pb::ListRoutesRequest) -> Vec<Vec<pb::Route>> {
    let mut stream = RouteServiceClient::new(channel.clone())
        .list_routes(request)
        .await
        .unwrap()
        .into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        pages.push(page.routes);
    }
    pages
}

fn prefixes(pages: &[Vec<pb::Route>]) -> Vec<String> {
    pages.iter().flatten().map(|r| r.prefix.clone()).collect()
}

async fn list_routes_error(channel: &Channel, request: pb::ListRoutesRequest) -> Code {
    let result = RouteServiceClient::new(channel.clone())
        .list_routes(request)
        .await;
    match result {
        Err(status) => status.code(),
        Ok(response) => {
            let mut stream = response.into_inner();
            stream.message().await.unwrap_err().code()
        }
    }
}

async fn peers(channel: &Channel) -> Vec<pb::Peer> {
    PeerServiceClient::new(channel.clone())
        .list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_validated_announced_and_kept_across_a_restart() {
    if !require_root() {
        return;
    }
    let (a, b) = ("a", "b");
    let (mut lab, config_a, node_a) = two_nodes("api-blk");
    let path = socket(&lab, a);
    let api = channel(&path).await;
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the socket is for its owner only");
    let mut client = BlockServiceClient::new(api.clone());
    assert_eq!(
        list_blocks(&api).await,
        blocks(&[("10.244.1.0/26", CONFIG)])
    );

    // Added once, then again: idempotent; the other node's kernel gets the route.
    let add = |prefix: &str| pb::AddBlockRequest {
        prefix: prefix.into(),
    };
    assert!(
        client
            .add_block(add("10.244.3.0/26"))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    assert!(
        !client
            .add_block(add("10.244.3.0/26"))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    wait_for_route(&lab, b, "10.244.3.0/26 via 10.0.9.1");
    assert!(
        routes(&lab, a).contains("blackhole 10.244.3.0/26"),
        "{}",
        routes(&lab, a)
    );
    let expected = blocks(&[("10.244.1.0/26", CONFIG), ("10.244.3.0/26", API)]);
    assert_eq!(list_blocks(&api).await, expected);

    // Refused with the precise code, and nothing changes.
    for (prefix, code) in [
        ("10.244.x.0/26", Code::InvalidArgument),
        ("10.244.4.1/26", Code::InvalidArgument),
        ("10.244.4.0/25", Code::InvalidArgument),
        ("10.99.0.0/26", Code::FailedPrecondition),
        ("10.245.0.0/26", Code::FailedPrecondition),
        ("fd00:10:244::/122", Code::FailedPrecondition),
        ("10.244.3.7/32", Code::AlreadyExists),
    ] {
        let status = client.add_block(add(prefix)).await.unwrap_err();
        assert_eq!(status.code(), code, "{prefix}: {}", status.message());
        assert!(!status.message().is_empty());
        assert_eq!(list_blocks(&api).await, expected, "after {prefix}");
    }
    let status = client
        .remove_block(pb::RemoveBlockRequest {
            prefix: "10.244.1.0/26".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    let status = client
        .remove_block(pb::RemoveBlockRequest {
            prefix: "bogus".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        !client
            .remove_block(pb::RemoveBlockRequest {
                prefix: "10.244.9.0/26".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    assert_eq!(list_blocks(&api).await, expected);

    // SetBlocks: a whole set; one bad block refuses all of it.
    let set = |prefixes: &[&str]| pb::SetBlocksRequest {
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
    };
    let status = client
        .set_blocks(set(&["10.244.6.0/26", "10.99.0.0/26"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = client
        .set_blocks(set(&["10.244.6.0/26", "10.244.6.0/27"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(list_blocks(&api).await, expected);
    let after = client
        .set_blocks(set(&[
            "10.244.1.0/26",
            "10.244.3.0/26",
            "10.244.4.0/26",
            "10.244.5.7/32",
        ]))
        .await
        .unwrap()
        .into_inner()
        .blocks;
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(
        list_blocks(&api).await,
        blocks(&[
            ("10.244.1.0/26", CONFIG),
            ("10.244.3.0/26", API),
            ("10.244.4.0/26", API),
            ("10.244.5.7/32", API),
        ])
    );
    wait_for_route(&lab, b, "10.244.4.0/26 via 10.0.9.1");
    wait_for_route(&lab, b, "10.244.5.7 via 10.0.9.1");
    client.set_blocks(set(&["10.244.3.0/26"])).await.unwrap();
    assert_eq!(list_blocks(&api).await, expected);
    eventually(
        Duration::from_secs(30),
        "b loses the blocks a gave back",
        || {
            let table = routes(&lab, b);
            if table.contains("10.244.4.0/26") || table.contains("10.244.5.7") {
                Err(table)
            } else {
                Ok(())
            }
        },
    );
    assert!(
        !routes(&lab, a).contains("10.244.4.0/26"),
        "{}",
        routes(&lab, a)
    );

    // A planned restart: the socket goes with the process; the API block comes back at once.
    drop(client);
    drop(api);
    lab.stop(node_a, "TERM", Duration::from_secs(10)).unwrap();
    assert!(!path.exists(), "the socket is removed on exit");
    lab.start_ternd(a, ternd(), &config_a).unwrap();
    let api = channel(&path).await;
    assert_eq!(list_blocks(&api).await, expected);
    assert!(
        routes(&lab, b).contains("10.244.3.0/26 via 10.0.9.1"),
        "{}",
        routes(&lab, b)
    );
    // b holds a's route fresh again (not as a stale one kept for the restart): a announced it.
    let b_api = channel(&socket(&lab, b)).await;
    eventually_async(30, "b learns 10.244.3.0/26 again from a", || {
        let b_api = b_api.clone();
        async move {
            let pages = list_routes(
                &b_api,
                pb::ListRoutesRequest {
                    prefix: "10.244.3.0/26".into(),
                    ..Default::default()
                },
            )
            .await;
            match pages.concat().as_slice() {
                [route] if route.paths.len() == 1 && !route.paths[0].stale => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert!(
        routes(&lab, a).contains("blackhole 10.244.3.0/26"),
        "{}",
        routes(&lab, a)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_routes_watch_and_status_answer_about_the_running_node() {
    if !require_root() {
        return;
    }
    let (a, b) = ("a", "b");
    let (lab, _, _) = two_nodes("api-rib");
    let api = channel(&socket(&lab, a)).await;
    let b_api = channel(&socket(&lab, b)).await;

    // Status.
    eventually_async(30, "a is ready", || {
        let api = api.clone();
        async move {
            let status = StatusServiceClient::new(api)
                .get_status(pb::GetStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            if status.ready {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        }
    })
    .await;
    let status = StatusServiceClient::new(api.clone())
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.node, "node-a");
    assert_eq!(status.router_id, "10.0.9.1");
    assert_eq!(status.asn, 64512);
    assert_eq!(status.data_path, pb::DataPath::Routed as i32);
    assert!(!status.data_path_detail.is_empty());
    assert_eq!((status.peers, status.peers_established), (1, 1));
    assert_eq!(status.blocks, 1);
    assert_eq!(status.kernel_routes, 1);
    assert!(status.started.is_some() && status.uptime.is_some());

    // ListPeers.
    let list = peers(&api).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let peer = &list[0];
    let config = peer.config.as_ref().unwrap();
    assert_eq!(config.address, "10.0.9.2");
    assert_eq!(config.asn, 64512);
    assert_eq!(peer.r#type, pb::PeerType::NodeMesh as i32);
    assert_eq!(peer.state, pb::SessionState::Established as i32);
    assert!(peer.since.as_ref().unwrap().seconds > 1_700_000_000);
    assert_eq!(peer.last_error, "");
    let negotiated = peer.negotiated.as_ref().unwrap();
    assert!(
        negotiated
            .families
            .contains(&(pb::AddressFamily::Ipv4Unicast as i32)),
        "{negotiated:?}"
    );
    assert_eq!(negotiated.hold_time, 90);
    assert_eq!(negotiated.peer_router_id, "10.0.9.2");
    assert_eq!(negotiated.peer_asn, 64512);
    assert!(negotiated.four_octet_as && negotiated.route_refresh && negotiated.graceful_restart);
    assert!(
        negotiated.capabilities.iter().any(|c| c == "route-refresh"),
        "{:?}",
        negotiated.capabilities
    );
    let counters = peer.counters.unwrap();
    assert_eq!(counters.prefixes_accepted, 1);
    assert!(
        counters.prefixes_received >= 1 && counters.prefixes_advertised >= 1,
        "{counters:?}"
    );

    // More routes from b, for paging and filters.
    let from_b = [
        "10.244.10.0/26",
        "10.244.10.64/26",
        "10.244.11.0/26",
        "10.244.12.0/26",
    ];
    let mut b_blocks = BlockServiceClient::new(b_api.clone());
    b_blocks
        .set_blocks(pb::SetBlocksRequest {
            prefixes: from_b.iter().map(|p| (*p).to_owned()).collect(),
        })
        .await
        .unwrap();
    for prefix in from_b {
        wait_for_route(&lab, a, &format!("{prefix} via 10.0.9.2"));
    }
    let all = [
        "10.244.1.0/26",
        "10.244.2.0/26",
        "10.244.10.0/26",
        "10.244.10.64/26",
        "10.244.11.0/26",
        "10.244.12.0/26",
    ];
    let pages = list_routes(&api, pb::ListRoutesRequest::default()).await;
    assert_eq!(prefixes(&pages), all);
    let routes_by_prefix = pages.concat();
    let own = &routes_by_prefix[0];
    assert_eq!(own.kernel, pb::KernelState::Blackhole as i32);
    assert_eq!(own.paths[0].peer, "");
    assert_eq!(own.reason, "only path");
    let learned = &routes_by_prefix[1];
    assert_eq!(learned.kernel, pb::KernelState::Installed as i32);
    assert_eq!(learned.family, pb::AddressFamily::Ipv4Unicast as i32);
    assert_eq!(learned.paths[0].peer, "10.0.9.2");
    assert_eq!(learned.paths[0].next_hop, "10.0.9.2");
    assert_eq!(learned.paths[0].local_pref, Some(100));
    assert_eq!(learned.paths[0].origin, pb::Origin::Igp as i32);

    // Pages of two: three messages, the same routes in the same order.
    let paged = list_routes(
        &api,
        pb::ListRoutesRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        paged.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    assert_eq!(prefixes(&paged), all);
    let request = |f: &dyn Fn(&mut pb::ListRoutesRequest)| {
        let mut request = pb::ListRoutesRequest::default();
        f(&mut request);
        request
    };
    let resumed = list_routes(&api, request(&|r| r.start_after = "10.244.10.0/26".into())).await;
    assert_eq!(prefixes(&resumed), all[3..]);
    let limited = list_routes(&api, request(&|r| r.limit = 3)).await;
    assert_eq!(prefixes(&limited), all[..3]);
    let inside = list_routes(&api, request(&|r| r.prefix = "10.244.10.0/24".into())).await;
    assert_eq!(prefixes(&inside), ["10.244.10.0/26", "10.244.10.64/26"]);
    let containing = list_routes(&api, request(&|r| r.prefix = "10.244.10.70".into())).await;
    assert_eq!(prefixes(&containing), ["10.244.10.64/26"]);
    let by_peer = list_routes(&api, request(&|r| r.peer = "10.0.9.2".into())).await;
    assert_eq!(prefixes(&by_peer), all[1..]);
    let unknown_peer = list_routes(&api, request(&|r| r.peer = "10.0.9.99".into())).await;
    assert!(prefixes(&unknown_peer).is_empty());
    let v6 = list_routes(
        &api,
        request(&|r| r.family = pb::AddressFamily::Ipv6Unicast as i32),
    )
    .await;
    assert!(prefixes(&v6).is_empty());
    let v4 = list_routes(
        &api,
        request(&|r| r.family = pb::AddressFamily::Ipv4Unicast as i32),
    )
    .await;
    assert_eq!(prefixes(&v4), all);
    for bad in [
        request(&|r| r.prefix = "10.244.0.0/99".into()),
        request(&|r| r.prefix = "nonsense".into()),
        request(&|r| r.peer = "10.0.9".into()),
        request(&|r| r.start_after = "x".into()),
        request(&|r| r.family = 42),
    ] {
        assert_eq!(
            list_routes_error(&api, bad.clone()).await,
            Code::InvalidArgument,
            "{bad:?}"
        );
    }

    // Watch: the current state first when asked, then route changes as they happen.
    let mut watch = WatchServiceClient::new(api.clone())
        .watch(pb::WatchRequest {
            initial_state: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    use pb::watch_response::Event;
    let next = |message: Option<pb::WatchResponse>| message.and_then(|m| m.event);
    match next(watch.message().await.unwrap()) {
        Some(Event::Resync(resync)) => {
            assert!(resync.first && resync.last);
            let got: Vec<&str> = resync.routes.iter().map(|r| r.prefix.as_str()).collect();
            assert_eq!(got, all);
        }
        other => panic!("expected a resync first, got {other:?}"),
    }
    match next(watch.message().await.unwrap()) {
        Some(Event::PeerState(state)) => {
            assert_eq!(state.address, "10.0.9.2");
            assert_eq!(state.state, pb::SessionState::Established as i32);
        }
        other => panic!("expected the peer's state, got {other:?}"),
    }
    b_blocks
        .add_block(pb::AddBlockRequest {
            prefix: "10.244.20.0/26".into(),
        })
        .await
        .unwrap();
    let mut seen = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.is_none() {
        let message = tokio::time::timeout_at(deadline.into(), watch.message())
            .await
            .expect("the watch shows the new route within 30 s")
            .unwrap();
        if let Some(Event::Route(change)) = next(message)
            && change.prefix == "10.244.20.0/26"
        {
            seen = change.route;
        }
    }
    let route = seen.unwrap();
    assert_eq!(route.paths[0].peer, "10.0.9.2");
    b_blocks
        .remove_block(pb::RemoveBlockRequest {
            prefix: "10.244.20.0/26".into(),
        })
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout_at(deadline.into(), watch.message())
            .await
            .expect("the watch shows the withdrawal")
            .unwrap();
        if let Some(Event::Route(change)) = next(message)
            && change.prefix == "10.244.20.0/26"
        {
            assert!(change.route.is_none(), "{change:?}");
            break;
        }
    }
    drop(watch);

    // Peers at runtime.
    let mut client = PeerServiceClient::new(api.clone());
    let peer_config = |address: &str| pb::PeerConfig {
        address: address.into(),
        asn: 65000,
        ..Default::default()
    };
    let status = client
        .add_peer(pb::AddPeerRequest {
            peer: Some(pb::PeerConfig {
                asn: 64512,
                ..peer_config("10.0.9.2")
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{}", status.message());
    let status = client
        .add_peer(pb::AddPeerRequest {
            peer: Some(peer_config("10.0.9.300")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    client
        .add_peer(pb::AddPeerRequest {
            peer: Some(peer_config("10.0.9.50")),
        })
        .await
        .unwrap();
    let list = peers(&api).await;
    let added = list
        .iter()
        .find(|p| p.config.as_ref().unwrap().address == "10.0.9.50")
        .expect("the new peer is listed");
    assert_eq!(added.r#type, pb::PeerType::NodeSpecific as i32);
    assert_ne!(added.state, pb::SessionState::Established as i32);
    assert_eq!(added.config.as_ref().unwrap().asn, 65000);
    client
        .update_peer(pb::UpdatePeerRequest {
            peer: Some(pb::PeerConfig {
                import_prefixes: vec!["0.0.0.0/0".into()],
                ..peer_config("10.0.9.50")
            }),
        })
        .await
        .unwrap();
    let list = peers(&api).await;
    let updated = list
        .iter()
        .find(|p| p.config.as_ref().unwrap().address == "10.0.9.50")
        .unwrap();
    assert_eq!(
        updated.config.as_ref().unwrap().import_prefixes,
        vec!["0.0.0.0/0"]
    );
    let status = client
        .update_peer(pb::UpdatePeerRequest {
            peer: Some(peer_config("10.0.9.51")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .remove_peer(pb::RemovePeerRequest {
            address: "10.0.9.51".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .reset_peer(pb::ResetPeerRequest {
            address: "10.0.9.51".into(),
            hard: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .reset_peer(pb::ResetPeerRequest {
            address: "not-an-address".into(),
            hard: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    client
        .remove_peer(pb::RemovePeerRequest {
            address: "10.0.9.50".into(),
        })
        .await
        .unwrap();
    assert_eq!(peers(&api).await.len(), 1);

    // Resets: soft keeps the session; hard closes it and it comes back.
    let since = |p: &pb::Peer| p.since.unwrap();
    let before = since(&peers(&api).await[0]);
    client
        .reset_peer(pb::ResetPeerRequest {
            address: "10.0.9.2".into(),
            hard: false,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = &peers(&api).await[0];
    assert_eq!(after.state, pb::SessionState::Established as i32);
    // `since` is sent as a wall-clock time worked out from a monotonic one: allow a little jitter.
    let millis = |t: &prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000;
    assert!(
        (millis(&since(after)) - millis(&before)).abs() < 100,
        "a soft reset keeps the session: {before:?} then {after:?}"
    );
    client
        .reset_peer(pb::ResetPeerRequest {
            address: "10.0.9.2".into(),
            hard: true,
        })
        .await
        .unwrap();
    eventually_async(60, "the session comes back after a hard reset", || {
        let api = api.clone();
        async move {
            let peer = &peers(&api).await[0];
            if peer.state == pb::SessionState::Established as i32
                && since(peer).seconds > before.seconds
            {
                Ok(())
            } else {
                Err(format!("{peer:?}"))
            }
        }
    })
    .await;
    wait_for_route(&lab, a, "10.244.12.0/26 via 10.0.9.2");

    // ternctl against the same node.
    let ternctl = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ternctl"))
            .arg("--socket")
            .arg(socket(&lab, a))
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = ternctl(&["node", "status"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Tern process is running.", "{out}");
    assert_eq!(lines[1], "");
    assert_eq!(lines[2], "IPv4 BGP status");
    assert!(
        lines[3].starts_with("+--------------+-------------------+-------+"),
        "{out}"
    );
    assert_eq!(
        lines[4].split('|').map(str::trim).collect::<Vec<_>>(),
        [
            "",
            "PEER ADDRESS",
            "PEER TYPE",
            "STATE",
            "SINCE",
            "INFO",
            ""
        ],
        "{out}"
    );
    let row: Vec<&str> = lines[6].split('|').map(str::trim).collect();
    assert_eq!(row[1..3], ["10.0.9.2", "node-to-node mesh"], "{out}");
    assert_eq!(row[3], "up", "{out}");
    assert_eq!(row[5], "Established", "{out}");
    assert_eq!(
        row[4].len(),
        8,
        "today's sessions show the time of day: {out}"
    );
    assert!(
        out.contains("\nIPv6 BGP status\nNo IPv6 peers found.\n"),
        "{out}"
    );

    let (code, out, err) = ternctl(&["node", "status", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["ipv4"][0]["peer_address"], "10.0.9.2");

    let (code, out, err) = ternctl(&["peers"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("| 10.0.9.2 ") && out.contains("Established"),
        "{out}"
    );
    let (code, out, _) = ternctl(&["peers", "-o", "yaml"]);
    assert_eq!(code, Some(0));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(yaml[0]["type"], "node-to-node mesh");

    let (code, out, err) = ternctl(&["routes", "10.244.10.0/24", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{out}");
    assert_eq!(json[0]["prefix"], "10.244.10.0/26");
    assert_eq!(json[0]["kernel"], "installed");
    let (code, out, _) = ternctl(&["routes", "--peer", "10.0.9.2"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("10.244.12.0/26") && !out.contains("10.244.1.0/26"),
        "{out}"
    );

    let (code, out, err) = ternctl(&["blocks", "add", "10.244.30.0/26"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "block 10.244.30.0/26 added\n");
    let (code, out, _) = ternctl(&["blocks", "list", "-o", "json"]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[1]["prefix"], "10.244.30.0/26");
    assert_eq!(json[1]["source"], "api");
    let (code, _, err) = ternctl(&["blocks", "add", "10.99.0.0/26"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "10.99.0.0/26 is inside no IP pool (failed precondition)\n"
    );
    let (code, out, _) = ternctl(&["blocks", "remove", "10.244.30.0/26"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "block 10.244.30.0/26 removed\n");
    let (code, out, _) = ternctl(&["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("ternd ") && out.contains("node node-a"),
        "{out}"
    );
}

#[test]
fn ternctl_says_ternd_is_not_running_when_its_socket_is_missing_or_dead() {
    let dir = std::env::temp_dir().join(format!("tern-ternctl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.sock");
    let dead = dir.join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    for (path, why) in [
        (&missing, "No such file or directory (os error 2)"),
        (&dead, "Connection refused (os error 111)"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_ternctl"))
            .arg("--socket")
            .arg(path)
            .args(["node", "status"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!(
                "ternd is not running: cannot connect to {}: {why}\n",
                path.display()
            )
        );
        assert!(output.stdout.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Makes a CA and a certificate signed by it for `name` (server and client use) with openssl.
fn certificate(dir: &Path, ca: &str, name: &str) {
    let d = |f: &str| dir.join(f).display().to_string();
    if !dir.join(format!("{ca}.crt")).exists() {
        run(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &d(&format!("{ca}.key")),
            "-out",
            &d(&format!("{ca}.crt")),
        ]);
    }
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{name},IP:127.0.0.1\n"
        ),
    )
    .unwrap();
    run(&[
        "openssl",
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &d(&format!("{name}.key")),
        "-out",
        &d(&format!("{name}.csr")),
    ]);
    run(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &d(&format!("{name}.csr")),
        "-CA",
        &d(&format!("{ca}.crt")),
        "-CAkey",
        &d(&format!("{ca}.key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &d(&format!("{name}.ext")),
        "-out",
        &d(&format!("{name}.crt")),
    ]);
}

#[test]
fn the_api_over_tcp_answers_only_clients_with_a_certificate_from_its_ca() {
    if !require_root() {
        return;
    }
    let mut lab = lab("api-tls");
    let node = "a";
    let ns = lab.netns(node).unwrap();
    let dir = lab.dir();
    certificate(&dir, "ca", "ternd");
    certificate(&dir, "ca", "operator");
    certificate(&dir, "other-ca", "intruder");
    let d = |f: &str| dir.join(f).display().to_string();
    let config = with_api_tcp(&dir, "");
    let pid = lab.start_ternd(node, ternd(), &config).unwrap();
    let ternctl = |client: &str| {
        let output = Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_ternctl")])
            .args([
                "--address",
                "https://127.0.0.1:7443",
                "--server-name",
                "ternd",
            ])
            .args([
                "--cert",
                &d(&format!("{client}.crt")),
                "--key",
                &d(&format!("{client}.key")),
            ])
            .args(["--ca", &d("ca.crt"), "blocks", "list", "-o", "json"])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let mut answer = ternctl("operator");
    let deadline = Instant::now() + Duration::from_secs(10);
    while answer.0 != Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        answer = ternctl("operator");
    }
    let (code, out, err) = answer;
    assert_eq!(code, Some(0), "{err}\nlog:\n{}", lab.log(node, "ternd.log"));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["prefix"], "10.244.1.0/26");
    let (code, out, err) = ternctl("intruder");
    assert_eq!(
        code,
        Some(1),
        "a certificate from another CA is refused: {out}"
    );
    assert!(!err.is_empty());

    // Killed outright, ternd leaves its socket behind; started again, it replaces it.
    let path = socket(&lab, node);
    lab.stop(pid, "KILL", Duration::from_secs(10)).unwrap();
    assert!(path.exists());
    lab.start_ternd(node, ternd(), &config).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let blocks = runtime.block_on(async { list_blocks(&channel(&path).await).await });
    assert_eq!(blocks, [("10.244.1.0/26".to_owned(), CONFIG)]);
}

/// A configuration for a lonely node (no peers) of the `ternd-pair` lab, with `extra` after it.
fn lonely(extra: &str) -> String {
    format!(
        "nodeName: lonely\nnodeAddress: 10.0.9.1/24\nasNumber: 64512\nipPools:\n  - cidr: 10.244.0.0/16\nblocks: [10.244.1.0/26]\n{extra}"
    )
}

/// [`lonely`] serving the API on 127.0.0.1:7443 with the certificate "ternd" and the client
/// CA "ca" from `dir`, with `extra` in `apiTcp`.
fn with_api_tcp(dir: &Path, extra: &str) -> String {
    let d = |f: &str| dir.join(f).display().to_string();
    lonely(&format!(
        "apiTcp:\n  address: 127.0.0.1:7443\n  certFile: {}\n  keyFile: {}\n  clientCaFile: {}\n{extra}",
        d("ternd.crt"),
        d("ternd.key"),
        d("ca.crt")
    ))
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::symlink_metadata(path).unwrap().permissions())
        & 0o7777
}

/// Runs ternd in `ns` with the configuration file `config` until it exits, within 10 s (else it
/// is killed, by its PID): its exit code and what it printed.
fn ternd_exits(ns: &str, config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(ternd())
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn the_socket_is_made_0600_in_a_0700_folder_and_a_folder_others_control_is_refused() {
    if !require_root() {
        return;
    }
    let mut lab = lab("api-sock");
    let node = "a";
    let ns = lab.netns(node).unwrap();
    let dir = lab.node_dir(node);
    std::fs::create_dir_all(&dir).unwrap();
    // A folder that does not exist yet, two levels down.
    let folder = dir.join("run").join("tern");
    let path = folder.join("tern.sock");
    let config = dir.join("private.yaml");
    std::fs::write(
        &config,
        lonely(&format!(
            "stateFile: {}\napiSocket: {}\n",
            dir.join("state.yaml").display(),
            path.display()
        )),
    )
    .unwrap();
    let argv = [
        ternd().display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    let pid = lab.spawn(node, &argv, "private.log").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(path.exists(), "log:\n{}", lab.log(node, "private.log"));
    assert_eq!(mode(&path), 0o600, "the socket is for its owner only");
    assert_eq!(mode(&folder), 0o700, "its folder too");
    assert_eq!(mode(&dir.join("run")), 0o700, "and the folders made for it");
    let left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["tern.sock"], "nothing but the socket is left there");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let blocks = runtime.block_on(async { list_blocks(&channel(&path).await).await });
    assert_eq!(blocks, [("10.244.1.0/26".to_owned(), CONFIG)]);
    lab.stop(pid, "TERM", Duration::from_secs(10)).unwrap();
    assert!(!path.exists(), "the socket goes with ternd");

    // A folder others may write to, or that belongs to someone else, is refused.
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&folder, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap()
    };
    set_mode(0o777);
    let (code, text) = ternd_exits(&ns, &config);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("(mode 0777) is writable by others"), "{text}");
    assert!(!path.exists());
    set_mode(0o775);
    let (code, text) = ternd_exits(&ns, &config);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("(mode 0775) is writable by others"), "{text}");
    set_mode(0o700);
    std::os::unix::fs::chown(&folder, Some(65534), Some(65534)).unwrap();
    let (code, text) = ternd_exits(&ns, &config);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("belongs to uid 65534"), "{text}");
    assert!(!path.exists());
}

/// What [`over_tcp`] got: the listed blocks (or why not), then the addition's outcome.
type TcpAnswers = (
    Result<Vec<(String, i32)>, String>,
    Result<(), tonic::Status>,
);

/// What a client gets over TCP inside `ns` (ternd at 127.0.0.1:7443, certificate "ternd"),
/// with `client`'s certificate from `dir` or none: the blocks it lists, then its attempt to add
/// 10.244.9.0/26.
fn over_tcp(ns: &str, dir: &Path, client: Option<&str>) -> TcpAnswers {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .domain_name("ternd");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(
            read(&format!("{client}.crt")),
            read(&format!("{client}.key")),
        ));
    }
    tern_e2e::inside(ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let endpoint = Endpoint::from_static("https://127.0.0.1:7443")
                .tls_config(tls)
                .unwrap()
                .timeout(Duration::from_secs(5));
            let channel = match endpoint.connect().await {
                Ok(channel) => channel,
                Err(error) => {
                    let refused = Err(tonic::Status::unavailable(error.to_string()));
                    return (Err(format!("connect: {error:?}")), refused);
                }
            };
            let listed = BlockServiceClient::new(channel.clone())
                .list_blocks(pb::ListBlocksRequest {})
                .await
                .map(|r| {
                    r.into_inner()
                        .blocks
                        .into_iter()
                        .map(|b| (b.prefix, b.source))
                        .collect()
                })
                .map_err(|status| format!("{status:?}"));
            let added = BlockServiceClient::new(channel)
                .add_block(pb::AddBlockRequest {
                    prefix: "10.244.9.0/26".into(),
                })
                .await
                .map(|_| ());
            (listed, added)
        })
    })
}

#[test]
fn over_tcp_a_certificate_from_the_ca_is_required_and_only_listed_names_change_state() {
    if !require_root() {
        return;
    }
    let mut lab = lab("api-names");
    let node = "a";
    let ns = lab.netns(node).unwrap();
    let dir = lab.dir();
    certificate(&dir, "ca", "ternd");
    certificate(&dir, "ca", "operator");
    certificate(&dir, "ca", "reader");
    certificate(&dir, "other-ca", "intruder");
    let config = with_api_tcp(&dir, "  allowedClientNames: [OPERATOR]\n");
    lab.start_ternd(node, ternd(), &config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reader = over_tcp(&ns, &dir, Some("reader"));
    while reader.0.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        reader = over_tcp(&ns, &dir, Some("reader"));
    }
    let only_config = vec![("10.244.1.0/26".to_owned(), CONFIG)];

    // A name the list does not hold: reads, but changes nothing.
    let (listed, added) = reader;
    assert_eq!(
        listed,
        Ok(only_config.clone()),
        "{}",
        lab.log(node, "ternd.log")
    );
    let refused = added.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("\"reader\""), "{refused:?}");
    let (listed, _) = over_tcp(&ns, &dir, Some("reader"));
    assert_eq!(
        listed,
        Ok(only_config.clone()),
        "the refused call changed nothing"
    );

    // No certificate, or one from another CA: not even a read.
    for client in [None, Some("intruder")] {
        let (listed, added) = over_tcp(&ns, &dir, client);
        assert!(listed.is_err(), "{client:?} listed {listed:?}");
        assert!(added.is_err(), "{client:?} added a block");
    }

    // The listed name (matched ignoring case) changes state.
    let (listed, added) = over_tcp(&ns, &dir, Some("operator"));
    assert_eq!(listed, Ok(only_config));
    assert_eq!(added.map_err(|s| s.code()), Ok(()));
    let (listed, _) = over_tcp(&ns, &dir, Some("reader"));
    assert_eq!(
        listed,
        Ok(vec![
            ("10.244.1.0/26".to_owned(), CONFIG),
            ("10.244.9.0/26".to_owned(), API)
        ])
    );
}
