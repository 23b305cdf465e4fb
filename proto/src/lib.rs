//! tern-proto: the `.proto` files of tern's gRPC control API (`proto/tern/v1/`, package
//! `tern.v1`) and the prost messages and tonic clients and servers generated from them at build
//! time.
//!
//! The services: `BlockService` (this node's address blocks), `PeerService` (BGP sessions),
//! `RouteService` (the Loc-RIB), `WatchService` (a stream of peer and route changes) and
//! `StatusService`. The API is served by `ternd` on a unix socket and, when configured, over TCP
//! with mutual TLS; `ternctl` is its command-line client.

/// Version 1 of the API (package `tern.v1`).
#[allow(missing_docs, missing_debug_implementations, unused_qualifications)]
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("tern.v1");
}
