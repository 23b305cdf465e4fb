//! tern-ipam: IP pools, blocks, block affinities and address allocation, as pure logic over a
//! store trait. Empty until the IPAM work lands.
