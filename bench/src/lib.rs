//! tern-bench's library: the helpers every benchmark program of this crate shares (the binaries
//! in `src/bin/`: `bgp_to_kernel`, `block_latency`, `encap_throughput`, `kernel_bench`,
//! `list_during_ingest`, `stalled_peer`, and the `tern-bench` harness itself).
//!
//! - [`harness::NamespaceGuard`]: the namespaces and processes of a run, removed when dropped,
//!   also when the run fails;
//! - [`harness::listen_routes`]: the one netlink route listener, inside a namespace;
//! - [`harness::median`]: the one median;
//! - [`harness::sibling`]: the programs built next to this one (`target/release/ternd`).

pub mod harness;
