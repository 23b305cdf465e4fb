//! tern-agent: the node agent `ternd` and its client `ternctl`.
//!
//! The agent turns desired state (the config file, the gRPC API, later Kubernetes) into speaker
//! commands and kernel routes:
//! - `config` reads and checks the file; `check` describes it for `ternd check-config`;
//! - `reconcile` decides, purely: desired peers, the speaker config, what may enter the kernel,
//!   the kernel route for each best path per data path, and what program, repair and reload
//!   change;
//! - `agent` is the select loop that applies those decisions; `handle` holds what the loop and
//!   the API share (commands, status); `error` the typed refusals;
//! - `routes` programs the kernel over rtnetlink; `tunnel` runs IP-in-IP and VXLAN;
//! - `api` serves the gRPC control API and `cli` is `ternctl`, its client;
//! - `logs` and `sys` are small helpers of the binaries.

pub mod agent;
pub mod api;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod filter;
pub mod handle;
pub mod logs;
pub mod protocols;
pub mod reconcile;
pub mod routes;
pub mod state;
pub mod sys;
pub mod tunnel;
