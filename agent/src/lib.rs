//! tern-agent: the node agent `ternd` and its client `ternctl`.
//!
//! The agent turns desired state (config file, gRPC API, later Kubernetes) into speaker commands
//! and kernel routes: `config` reads and checks the file, `agent` is the main loop that owns the
//! desired state, `routes` programs the kernel over rtnetlink, and `api` serves the gRPC control
//! API that `ternctl` talks to.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod handle;
pub mod reconcile;
pub mod routes;
pub mod sys;
pub mod tunnel;
