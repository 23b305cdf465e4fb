//! `Message::decode` on arbitrary bytes, under the context the first octet chooses. It must never
//! panic; what decodes must encode, and what decoded cleanly must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((context, bytes)) = tern_fuzz::split(data) else {
        return;
    };
    tern_fuzz::check_round_trip(bytes, &context);
});
