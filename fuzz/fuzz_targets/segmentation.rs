//! The fuzz input is two octets of segment size (or MTU), then a packet: TSO segmentation and
//! the cutting of merged packets back to the MTU (the properties asserted are in
//! `tern_agent::tunnel::userspace::fuzzing::segmentation`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tern_agent::tunnel::userspace::fuzzing::segmentation(data);
});
