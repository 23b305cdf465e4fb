//! The routing information bases.
//!
//! - [`table`]: the Loc-RIB, which also holds each peer's Adj-RIB-In after import policy (the
//!   paths are kept per peer and prefix, so nothing is stored twice), with interned attribute
//!   sets and the ECMP set of every prefix;
//! - [`decision`]: the decision process that orders a prefix's paths.
//!
//! There is no stored Adj-RIB-Out: what a peer is sent is decided again from the Loc-RIB on
//! each change, and only the pending changes are queued per peer, encoded once per update
//! group (see `speaker::core`).

pub mod decision;
pub mod table;
