//! tern-agent: the node agent `ternd` and its client `ternctl`.
//!
//! The agent turns desired state (config file, gRPC API, Kubernetes) into speaker commands and
//! kernel routes. It is not built yet: this crate holds the binaries' entry points so the
//! workspace has its final shape from the first commit.

/// The message both binaries print until the agent exists.
pub const NOT_BUILT_YET: &str =
    "ternd is not built yet: this release holds the BGP wire codec only (see README.md)";
