//! The fuzz input is two octets of path MTU, then a packet from the TUN device: the choice of
//! node and the ICMP "fragmentation needed" built about it (the properties asserted are in
//! `tern_agent::tunnel::userspace::fuzzing::ipip_outbound`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tern_agent::tunnel::userspace::fuzzing::ipip_outbound(data);
});
