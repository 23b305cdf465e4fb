//! The speaker: every peer, the Loc-RIB, import and export.
//!
//! - [`config`]: the speaker's and each peer's configuration;
//! - `policy`: import and export rules (AS-path loop detection, iBGP split horizon, route
//!   reflection per RFC 4456, well-known communities per RFC 1997, prefix filters) and the
//!   attributes a route is exported with;
//! - [`core`]: the sans-IO core that owns all of it and is driven by inputs with the time they
//!   happen at (how scenario tests and embedders drive it);
//! - [`runtime`]: the tokio runtime around the core (sockets, timers, subscriptions) and the
//!   [`Speaker`](runtime::Speaker) handle on it.

pub mod config;
pub mod core;
pub(crate) mod policy;
pub mod runtime;
