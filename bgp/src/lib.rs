//! tern-bgp: the BGP-4 speaker of tern.
//!
//! Today this crate holds [`wire`], the message codec (RFC 4271 with the extensions listed in
//! `shared/RFCS.md`). The session state machine, the RIB and the speaker land next, in their own
//! modules, without touching the kernel, gRPC or Kubernetes types.

pub mod fasthash;
pub mod fsm;
pub mod rib;
pub mod sockopt;
pub mod speaker;
pub mod wire;
