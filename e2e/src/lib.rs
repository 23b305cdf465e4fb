//! tern-e2e: the lab runner for containerlab-format topologies on network namespaces, and the
//! whole-system tests against FRR, BIRD and GoBGP.
//!
//! A topology file (`e2e/topologies/*.clab.yml`, containerlab's format) becomes one network
//! namespace per node, veth pairs for its links, Linux bridges for its multi-access segments, and
//! the node's daemons (FRR, BIRD, GoBGP or ternd) started from the configs its `binds` name, each
//! isolated in a runtime directory of its own. [`lab::Lab`] is the handle tests hold: dropping it
//! tears everything down, even when the test panics. [`check`] holds the helpers tests assert
//! with: sessions Established, kernel routes, received routes, pings from pods, packet captures.
//!
//! Modules, from the file to the running lab:
//! - [`topology`]: the file's serde types and validation;
//! - [`netns`]: namespaces, veths, bridges and addresses, through the `ip` command;
//! - [`daemon`]: starting and stopping FRR, BIRD, GoBGP and ternd per node;
//! - [`state`]: what a running lab owns, on disk, so another process can tear it down;
//! - [`lab`]: `up`, `down` and `status`;
//! - [`check`]: test helpers (and [`check::eventually`], the panicking poll tests use);
//! - [`inside`]: run a closure on a thread inside a lab namespace (an in-process speaker).
//!
//! Everything the lab creates lives inside namespaces named `tern-<lab>-...`; nothing is ever
//! created in, or changed on, the host's own namespace.

pub mod check;
pub mod daemon;
pub mod error;
pub mod lab;
pub mod netns;
pub mod state;
pub mod topology;

pub use daemon::DaemonOptions;
pub use error::{Error, Result};
pub use lab::Lab;
pub use netns::inside;
pub use topology::{Topology, TopologyError};

/// Whether this process may build a lab (it needs root).
///
/// Without root: when `TERN_REQUIRE_ROOT=1` (CI and the README's test command) this panics with
/// a clear message; otherwise it prints `skipping: needs root` and returns `false`, so the test
/// can return early.
pub fn require_root() -> bool {
    if netns::is_root() {
        return true;
    }
    if std::env::var("TERN_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!(
            "this test needs root (network namespaces) and TERN_REQUIRE_ROOT=1 forbids skipping: \
             run it as root, or unset TERN_REQUIRE_ROOT to skip"
        );
    }
    eprintln!("skipping: needs root");
    false
}
