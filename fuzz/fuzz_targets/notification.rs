//! The fuzz input after its first octet (which chooses the context) is the body of a Notification
//! message: it is framed with a header of the right length, decoded, and round-tripped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_bgp::wire::MessageType;

fuzz_target!(|data: &[u8]| {
    let Some((context, body)) = tern_fuzz::split(data) else {
        return;
    };
    let bytes = tern_fuzz::wrap(MessageType::Notification as u8, body);
    tern_fuzz::check_round_trip(&bytes, &context);
});
