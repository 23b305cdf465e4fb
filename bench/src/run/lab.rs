//! The lab: three network namespaces in a line, joined by two veth pairs created directly between
//! them, so nothing of the host's own network is touched.
//!
//! ```text
//!  tern-bench-inj            tern-bench-dut                 tern-bench-mon
//!  inj0 10.254.1.1/30 --- dut-inj 10.254.1.2/30
//!                             dut-mon 10.254.2.1/30 --- mon0 10.254.2.2/30
//! ```
//! Dropping the [`Lab`] deletes the namespaces, and with them the veth pairs. The namespaces and
//! links are made with tern-e2e's netns helpers, through the crate's one namespace guard.

use std::net::Ipv4Addr;

use tern_bench::harness::NamespaceGuard;
use tern_e2e::netns;

/// The injector's namespace.
pub const INJECTOR_NS: &str = "tern-bench-inj";
/// The device under test's namespace.
pub const DEVICE_NS: &str = "tern-bench-dut";
/// The monitor's namespace.
pub const MONITOR_NS: &str = "tern-bench-mon";

/// The injector's address.
pub const INJECTOR: Ipv4Addr = Ipv4Addr::new(10, 254, 1, 1);
/// The device's address toward the injector.
pub const DEVICE_INJECTOR_SIDE: Ipv4Addr = Ipv4Addr::new(10, 254, 1, 2);
/// The device's address toward the monitor.
pub const DEVICE_MONITOR_SIDE: Ipv4Addr = Ipv4Addr::new(10, 254, 2, 1);
/// The monitor's address.
pub const MONITOR: Ipv4Addr = Ipv4Addr::new(10, 254, 2, 2);

/// The injector's AS.
pub const INJECTOR_AS: u32 = 65001;
/// The device's AS.
pub const DEVICE_AS: u32 = 65000;
/// The monitor's AS.
pub const MONITOR_AS: u32 = 65002;

/// The namespaces; deleted when dropped.
#[derive(Debug)]
pub struct Lab {
    _namespaces: NamespaceGuard,
}

impl Lab {
    /// Builds the lab. Namespaces left by a run that was killed outright are ours by name and
    /// are deleted first.
    pub fn create() -> anyhow::Result<Lab> {
        let namespaces = NamespaceGuard::create(&[INJECTOR_NS, DEVICE_NS, MONITOR_NS])?;
        let links = [
            (INJECTOR_NS, "inj0", DEVICE_NS, "dut-inj"),
            (DEVICE_NS, "dut-mon", MONITOR_NS, "mon0"),
        ];
        for (ns, name, peer_ns, peer) in links {
            netns::veth(ns, name, peer_ns, peer)?;
        }
        let addresses = [
            (INJECTOR_NS, "inj0", INJECTOR),
            (DEVICE_NS, "dut-inj", DEVICE_INJECTOR_SIDE),
            (DEVICE_NS, "dut-mon", DEVICE_MONITOR_SIDE),
            (MONITOR_NS, "mon0", MONITOR),
        ];
        for (ns, device, address) in addresses {
            let cidr = format!("{address}/30");
            netns::ip_in(ns, &["addr", "add", &cidr, "dev", device])?;
        }
        Ok(Lab {
            _namespaces: namespaces,
        })
    }

    /// A command that runs `program` inside namespace `ns`. `ip netns exec` execs the program, so
    /// the child's PID is the program's.
    pub fn command(&self, ns: &str, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }
}
