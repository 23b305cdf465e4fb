//! tern-e2e: the lab runner for containerlab-format topologies on network namespaces, and the
//! whole-system tests against FRR, BIRD and GoBGP. Empty until the lab lands (issue 3).
