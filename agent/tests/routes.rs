//! The route programmer against a real kernel, inside the node of a copy of the `kernel` lab
//! (e2e/topologies/kernel.clab.yml) that each test builds.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_agent::routes::{KernelRoute, NextHop, Programmer, RouteKind, RouteTag};
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
