//! tern-proto: the `.proto` files of tern's gRPC control API and the code generated from them.
//!
//! Empty until the control API lands (issue 7).
