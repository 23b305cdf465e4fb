//! The gRPC control API (package `tern.v1`, see `proto/tern/v1/`): blocks, peers, routes, a
//! watch stream and status, served over the agent's [`AgentHandle`](crate::handle::AgentHandle).
//!
//! Calls that change state go to the agent's loop as [`Command`](crate::handle::Command)s, which
//! owns the desired state and answers one at a time, so every call is atomic and a refused one
//! changes nothing. Reads of the speaker (peers, route pages, events) go straight to the speaker,
//! which answers them between batches of UPDATEs. Protobuf types are made and taken apart in
//! `convert` only.
//!
//! The API listens on a unix socket (mode 0600, removed on exit) and, when configured, on TCP
//! with mutual TLS (rustls): the client must present a certificate signed by the configured CA,
//! and only the certificates `apiTcp.allowedClientNames` lists (when set) may change state
//! (`authorize`, with the names read by `certificate`). There is no plain TCP listener.
//!
//! One file per service: `block`, `peer`, `route`, `watch` and `status`; `server` holds the
//! state they share ([`Api`]) and the listeners ([`Server`]).

mod authorize;
mod block;
mod certificate;
mod convert;
mod peer;
mod route;
mod server;
mod status;
mod watch;

pub use server::{Api, ServeError, Server, connect_unix, connect_unix_within};
