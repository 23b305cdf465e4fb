//! The route programmer against a real kernel, inside the node of a copy of the `kernel` lab
//! (e2e/topologies/kernel.clab.yml) that each test builds.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_agent::routes::{KernelRoute, NextHop, Programmer, RouteFailure, RouteKind, RouteTag};
use tern_e2e::{DaemonOptions, Lab, inside, require_root};

/// A lab of one node with a link `dummy0` at 192.0.2.1/24 (no dummy module here: a veth pair
/// inside the node gives us a link); torn down when dropped, even when the test fails.
struct Namespace {
    lab: Lab,
    /// The node's namespace, for [`inside`].
    name: String,
}

impl Namespace {
    /// A copy of the `kernel` lab called `lab`: tests of this file run in parallel.
    fn with_link(lab: &str) -> Namespace {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/topologies/kernel.clab.yml");
        let lab = Lab::up_as(file, lab, &DaemonOptions::from_env()).unwrap();
        let name = lab.netns("n").unwrap();
        Namespace { lab, name }
    }

    fn ip(&self, args: &str) -> String {
        let mut argv = vec!["ip"];
        argv.extend(args.split_whitespace());
        self.lab.exec("n", &argv).unwrap()
    }
}

/// Main table, protocol 12 (`bird`), no metric.
const TAG: RouteTag = RouteTag {
    table: 254,
    protocol: 12,
    metric: None,
};

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn via(hops: &[&str]) -> RouteKind {
    let mut list: Vec<NextHop> = hops
        .iter()
        .map(|h| NextHop {
            gateway: h.parse::<IpAddr>().unwrap(),
            interface: None,
            onlink: false,
        })
        .collect();
    list.sort();
    RouteKind::Via(list)
}

/// Strips interface indexes, which the kernel fills in, for comparison.
fn without_interfaces(routes: BTreeMap<IpNetwork, RouteKind>) -> BTreeMap<IpNetwork, RouteKind> {
    routes
        .into_iter()
        .map(|(prefix, kind)| {
            let kind = match kind {
                RouteKind::Via(hops) => {
                    let mut hops: Vec<NextHop> = hops
                        .into_iter()
                        .map(|h| NextHop {
                            interface: None,
                            ..h
                        })
                        .collect();
                    hops.sort();
                    RouteKind::Via(hops)
                }
                other => other,
            };
            (prefix, kind)
        })
        .collect()
}

#[test]
fn routes_are_installed_dumped_replaced_and_deleted_with_our_protocol_only() {
    if !require_root() {
        return;
    }
    let ns = Namespace::with_link("test-routes");
    ns.ip("-6 addr add 2001:db8::1/64 dev dummy0 nodad");
    // Someone else's route, which must never be touched.
    ns.ip("route add 198.51.100.0/24 via 192.0.2.9 proto static");

    let wanted = vec![
        KernelRoute {
            prefix: net("10.65.0.0/26"),
            kind: RouteKind::Blackhole,
        },
        KernelRoute {
            prefix: net("10.65.1.0/26"),
            kind: via(&["192.0.2.2"]),
        },
        KernelRoute {
            prefix: net("10.65.2.0/26"),
            kind: via(&["192.0.2.2", "192.0.2.3"]),
        },
        KernelRoute {
            prefix: net("fd65::/122"),
            kind: RouteKind::Blackhole,
        },
        KernelRoute {
            prefix: net("fd65::40/122"),
            kind: via(&["2001:db8::2"]),
        },
    ];
    let (dumped, after_delete) = inside(&ns.name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let programmer = Programmer::open(TAG).unwrap();
            assert!(programmer.replace(&wanted).await.is_empty());
            let dumped = programmer.dump().await.unwrap();
            // Replacing changes the next hop in place.
            let moved = [KernelRoute {
                prefix: net("10.65.1.0/26"),
                kind: via(&["192.0.2.4"]),
            }];
            assert!(programmer.replace(&moved).await.is_empty());
            let errors = programmer
                .delete(&[
                    net("10.65.0.0/26"),
                    net("fd65::40/122"),
                    net("10.99.0.0/26"),
                ])
                .await;
            assert!(errors.is_empty(), "{errors:?}");
            (dumped, programmer.dump().await.unwrap())
        })
    });
    let expected: BTreeMap<IpNetwork, RouteKind> = [
        (net("10.65.0.0/26"), RouteKind::Blackhole),
        (net("10.65.1.0/26"), via(&["192.0.2.2"])),
        (net("10.65.2.0/26"), via(&["192.0.2.2", "192.0.2.3"])),
        (net("fd65::/122"), RouteKind::Blackhole),
        (net("fd65::40/122"), via(&["2001:db8::2"])),
    ]
    .into();
    assert_eq!(without_interfaces(dumped), expected);
    let expected_after: BTreeMap<IpNetwork, RouteKind> = [
        (net("10.65.1.0/26"), via(&["192.0.2.4"])),
        (net("10.65.2.0/26"), via(&["192.0.2.2", "192.0.2.3"])),
        (net("fd65::/122"), RouteKind::Blackhole),
    ]
    .into();
    assert_eq!(without_interfaces(after_delete), expected_after);

    // The kernel agrees, as operators will see it; the static route is untouched.
    let shown = ns.ip("route show proto bird");
    assert!(
        shown.contains("10.65.1.0/26 via 192.0.2.4 dev dummy0"),
        "{shown}"
    );
    assert!(shown.contains("10.65.2.0/26"), "{shown}");
    assert!(
        ns.ip("route show proto static")
            .contains("198.51.100.0/24 via 192.0.2.9")
    );
    assert!(
        ns.ip("-6 route show proto bird")
            .contains("blackhole fd65::/122")
    );
}

#[test]
fn a_refused_install_is_retried_until_the_kernel_takes_it() {
    if !require_root() {
        return;
    }
    let ns = Namespace::with_link("test-retry");
    let name = ns.name.clone();
    let (first, last) = inside(&ns.name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let programmer = Programmer::open(TAG).unwrap();
            let queue =
                tern_agent::routes::spawn_writer(programmer.clone(), Duration::from_millis(100));
            // The second gateway is on no connected subnet yet: the kernel refuses it
            // (ENETUNREACH) and the writer keeps trying.
            let batch = vec![
                KernelRoute {
                    prefix: net("10.66.0.0/26"),
                    kind: via(&["192.0.2.2"]),
                },
                KernelRoute {
                    prefix: net("10.66.1.0/26"),
                    kind: via(&["198.18.0.2"]),
                },
            ];
            queue.push(batch.into_iter().map(|r| (r.prefix, Some(r.kind))));
            tokio::time::sleep(Duration::from_millis(50)).await;
            let first = without_interfaces(programmer.dump().await.unwrap());
            tern_e2e::netns::ip_in(&name, &["addr", "add", "198.18.0.1/24", "dev", "dummy0"])
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let now = without_interfaces(programmer.dump().await.unwrap());
                if now.len() == 2 || tokio::time::Instant::now() > deadline {
                    return (first, now);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let expected_first: BTreeMap<IpNetwork, RouteKind> =
        [(net("10.66.0.0/26"), via(&["192.0.2.2"]))].into();
    assert_eq!(
        first, expected_first,
        "the good route goes in at once, the refused one not"
    );
    let expected_last: BTreeMap<IpNetwork, RouteKind> = [
        (net("10.66.0.0/26"), via(&["192.0.2.2"])),
        (net("10.66.1.0/26"), via(&["198.18.0.2"])),
    ]
    .into();
    assert_eq!(last, expected_last, "the retry installed the refused route");
}

/// Runs `f` with a route programmer inside the namespace, on a current-thread runtime.
fn with_programmer<T: Send + 'static, F>(
    ns: &Namespace,
    f: impl FnOnce(Programmer) -> F + Send + 'static,
) -> T
where
    F: Future<Output = T>,
{
    inside(&ns.name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move { f(Programmer::open(TAG).unwrap()).await })
    })
}

/// The routes `ip -j route show` lists for `prefix` in the main table, as (protocol, dev,
/// gateway) triples.
fn shown(ns: &Namespace, prefix: &str) -> Vec<(String, String, String)> {
    let text = ns.ip(&format!("-j route show table main {prefix}"));
    let routes: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    routes
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap_or_default().to_string();
            // `ip` leaves out the default protocol, boot.
            let protocol = r["protocol"].as_str().unwrap_or("boot").to_string();
            (protocol, field("dev"), field("gateway"))
        })
        .collect()
}

#[test]
fn an_install_never_replaces_a_route_of_another_protocol() {
    if !require_root() {
        return;
    }
    let ns = Namespace::with_link("test-foreign");
    let name = ns.name.clone();
    // A CNI's pod route on a veth of its own, an operator's static route, and one with a
    // higher metric than ours (the kernel would let ours win the lookup beside it).
    ns.ip("link add calipod0 type veth peer name calipod1");
    ns.ip("link set calipod0 up");
    ns.ip("link set calipod1 up");
    ns.ip("route add 10.67.0.5/32 dev calipod0 scope link proto boot");
    ns.ip("route add 10.67.1.0/26 via 192.0.2.9 proto static");
    ns.ip("route add 10.67.4.0/26 via 192.0.2.9 proto static metric 500");
    let route = |prefix: &str, kind: RouteKind| KernelRoute {
        prefix: net(prefix),
        kind,
    };
    let first = vec![
        route("10.67.0.5/32", via(&["192.0.2.2"])),
        route("10.67.1.0/26", via(&["192.0.2.2"])),
        route("10.67.2.0/26", via(&["192.0.2.2"])),
        route("10.67.3.0/26", RouteKind::Blackhole),
        route("10.67.4.0/26", via(&["192.0.2.2"])),
    ];
    let (refused, later, count, ours) = with_programmer(&ns, move |programmer| async move {
        let refusals = |errors: Vec<tern_agent::routes::RouteError>| {
            let mut refused: Vec<(IpNetwork, Option<u8>)> = errors
                .iter()
                .map(|e| match e.reason {
                    RouteFailure::HeldByOtherProtocol { protocol } => (e.prefix, Some(protocol)),
                    _ => (e.prefix, None),
                })
                .collect();
            refused.sort();
            refused
        };
        let refused = refusals(programmer.replace(&first).await);
        // Routes that appear after the programmer's first look at the table, at our metric:
        // an operator's static route and a route of our protocol (an earlier ternd's).
        tern_e2e::netns::ip_in(
            &name,
            &[
                "route",
                "add",
                "10.67.5.0/26",
                "via",
                "192.0.2.9",
                "proto",
                "static",
            ],
        )
        .unwrap();
        tern_e2e::netns::ip_in(
            &name,
            &[
                "route",
                "add",
                "10.67.6.0/26",
                "via",
                "192.0.2.9",
                "proto",
                "bird",
            ],
        )
        .unwrap();
        let second = vec![
            route("10.67.0.5/32", via(&["192.0.2.3"])),
            route("10.67.2.0/26", via(&["192.0.2.3"])),
            route("10.67.5.0/26", via(&["192.0.2.3"])),
            route("10.67.6.0/26", via(&["192.0.2.3"])),
        ];
        let later = refusals(programmer.replace(&second).await);
        // A static route with a higher metric than ours appears beside ours: the next dump
        // (the agent's repair) gives the prefix up.
        tern_e2e::netns::ip_in(
            &name,
            &[
                "route",
                "add",
                "10.67.2.0/26",
                "via",
                "192.0.2.9",
                "proto",
                "static",
                "metric",
                "50",
            ],
        )
        .unwrap();
        let ours = programmer.dump().await.unwrap();
        (refused, later, programmer.refused(), ours)
    });
    assert_eq!(
        refused,
        vec![
            (net("10.67.0.5/32"), Some(3)),
            (net("10.67.1.0/26"), Some(4)),
            (net("10.67.4.0/26"), Some(4)),
        ],
        "refused, as held by boot and static"
    );
    assert_eq!(
        later,
        vec![
            (net("10.67.0.5/32"), Some(3)),
            (net("10.67.5.0/26"), Some(4))
        ]
    );
    assert_eq!(count, 6);
    assert_eq!(
        shown(&ns, "10.67.0.5/32"),
        vec![("boot".into(), "calipod0".into(), String::new())]
    );
    for prefix in ["10.67.1.0/26", "10.67.5.0/26"] {
        assert_eq!(
            shown(&ns, prefix),
            vec![("static".into(), "dummy0".into(), "192.0.2.9".into())],
            "{prefix}"
        );
    }
    assert_eq!(
        shown(&ns, "10.67.4.0/26"),
        vec![("static".into(), "dummy0".into(), "192.0.2.9".into())],
        "nothing of ours beside the route with the higher metric"
    );
    assert_eq!(
        shown(&ns, "10.67.2.0/26"),
        vec![("static".into(), "dummy0".into(), "192.0.2.9".into())],
        "ours, found beside a later static route, is gone"
    );
    let expected: BTreeMap<IpNetwork, RouteKind> = [
        (net("10.67.3.0/26"), RouteKind::Blackhole),
        (net("10.67.6.0/26"), via(&["192.0.2.3"])),
    ]
    .into();
    assert_eq!(
        without_interfaces(ours),
        expected,
        "the other prefixes installed, ours replaced"
    );
}

#[test]
fn a_delete_never_removes_a_route_of_another_protocol() {
    if !require_root() {
        return;
    }
    let ns = Namespace::with_link("test-foreign-delete");
    ns.ip("route add 10.68.0.5/32 dev dummy0 scope link proto boot");
    ns.ip("route add 10.68.1.0/26 via 192.0.2.9 proto static");
    ns.ip("route add 10.68.2.0/26 via 192.0.2.9 proto kernel metric 100");
    let errors = with_programmer(&ns, move |programmer| async move {
        programmer
            .delete(&[
                net("10.68.0.5/32"),
                net("10.68.1.0/26"),
                net("10.68.2.0/26"),
            ])
            .await
            .len()
    });
    assert_eq!(errors, 0, "a route that is not ours counts as already gone");
    assert_eq!(shown(&ns, "10.68.0.5/32").len(), 1);
    assert_eq!(shown(&ns, "10.68.1.0/26").len(), 1);
    assert_eq!(shown(&ns, "10.68.2.0/26").len(), 1);
}

/// `count` /24s from 10.128.0.0, every `bad`th via a gateway on no connected subnet (the kernel
/// answers ENETUNREACH), the others via 192.0.2.2.
fn large_batch(count: u32, bad: u32) -> (Vec<KernelRoute>, Vec<IpNetwork>) {
    let mut routes = Vec::new();
    let mut failing = Vec::new();
    for i in 0..count {
        let prefix = IpNetwork::new(IpAddr::V4((0x0a80_0000 + (i << 8)).into()), 24).unwrap();
        let gateway = if i % bad == bad / 2 {
            failing.push(prefix);
            "198.18.0.2"
        } else {
            "192.0.2.2"
        };
        routes.push(KernelRoute {
            prefix,
            kind: via(&[gateway]),
        });
    }
    (routes, failing)
}

#[test]
fn failures_in_a_large_batch_are_those_routes_exactly_and_the_next_batch_is_not_confused() {
    if !require_root() {
        return;
    }
    let ns = Namespace::with_link("test-large-batch");
    // 100,000 routes, one in 20 refused: 5,000 error replies, far more than a default receive
    // buffer holds.
    let (routes, failing) = large_batch(100_000, 20);
    let good = routes.len() - failing.len();
    let (failed, installed, second, third) = with_programmer(&ns, move |programmer| async move {
        let mut failed: Vec<IpNetwork> = programmer
            .replace(&routes)
            .await
            .iter()
            .map(|e| e.prefix)
            .collect();
        failed.sort();
        let installed = programmer.dump().await.unwrap().len();
        // A second batch of good routes, then a third with one bad route in the middle: late
        // replies of the first must not be taken for theirs.
        let second_batch: Vec<KernelRoute> = (0..10u32)
            .map(|i| KernelRoute {
                prefix: IpNetwork::new(IpAddr::V4((0x0b00_0000 + (i << 8)).into()), 24).unwrap(),
                kind: via(&["192.0.2.3"]),
            })
            .collect();
        let second = programmer.replace(&second_batch).await.len();
        let mut third_batch = second_batch.clone();
        for route in &mut third_batch {
            route.kind = via(&["192.0.2.4"]);
        }
        third_batch[4].kind = via(&["198.18.0.9"]);
        let third: Vec<IpNetwork> = programmer
            .replace(&third_batch)
            .await
            .iter()
            .map(|e| e.prefix)
            .collect();
        (failed, installed, second, third)
    });
    assert_eq!(
        failed.len(),
        failing.len(),
        "every refused route is reported"
    );
    assert_eq!(failed, failing, "and exactly those");
    assert_eq!(installed, good, "the others are installed");
    assert_eq!(
        second, 0,
        "a batch of good routes after a failed one has no failures"
    );
    assert_eq!(third, vec![net("11.0.4.0/24")]);
}
