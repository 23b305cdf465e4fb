//! tern-bgp: the BGP-4 speaker of tern.
//!
//! - [`wire`]: the message codec (RFC 4271 and the extensions listed in `shared/RFCS.md`), which
//!   decodes with the negotiated session context and gives every error its RFC 7606 outcome.
//! - [`fsm`]: one connection's session state machine (RFC 4271 section 8), sans-IO.
//! - `rib`: the decision process and the Loc-RIB with its ECMP sets and interned attributes.
//! - [`speaker`]: the sans-IO core that owns every peer and the RIB, its config and policy, and
//!   the tokio runtime around it.
//!
//! The crate never touches the kernel, gRPC or Kubernetes types. Users of the speaker (the agent,
//! the benchmarks) need only the names re-exported here.

pub(crate) mod fasthash;
pub mod fsm;
pub(crate) mod ifaddrs;
pub(crate) mod rib;
pub(crate) mod sockopt;
pub mod speaker;
pub mod wire;

pub use fsm::{Negotiated, State};
pub use rib::decision::Reason;
pub use rib::table::{Best, Path, PeerId, RouteAttributes, path_flags};
pub use speaker::config::{
    ConnectionLimits, Filter, MaxPrefix, MaxPrefixAction, PeerConfig, PrefixRange, SpeakerConfig,
};
pub use speaker::core::{Counters, LinkAddress, PeerStatus, SpeakerEvent};
pub use speaker::runtime::{ConnectionStats, Notice, RouteEntry, Speaker, Stopped, Subscription};
