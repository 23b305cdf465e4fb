//! tern-agent: the node agent `ternd` and its client `ternctl`.
//!
//! The agent turns desired state (config file, gRPC API, Kubernetes) into speaker commands and
//! kernel routes. It is being built: the configuration file is read and checked today; the route
//! programmer, the gRPC API and the binaries' main loops come next.

pub mod agent;
pub mod config;
pub mod routes;

/// The message both binaries print until the agent exists.
pub const NOT_BUILT_YET: &str = "ternd is not built yet: this release holds the BGP speaker and the configuration checker (see README.md)";
