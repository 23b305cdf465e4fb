//! The fuzz input is a steering octet, then an IP-in-IP packet from the wire: the
//! decapsulator's checks and what it delivers (the properties asserted are in
//! `tern_agent::tunnel::userspace::fuzzing::ipip_inbound`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tern_agent::tunnel::userspace::fuzzing::ipip_inbound(data);
});
