//! `frame` on an arbitrary stream, under the context the first octet chooses: every header it
//! accepts lies within the buffer and the bounds of its type, and every framed message decodes
//! without a header error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_bgp::wire::{HEADER_LEN, MAX_MESSAGE_LEN, Message, MessageType, code, frame};

fuzz_target!(|data: &[u8]| {
    let Some((context, mut rest)) = tern_fuzz::split(data) else {
        return;
    };
    loop {
        match frame(rest, &context) {
            Ok(Some(header)) => {
                let max = match header.message_type {
                    MessageType::Open => MAX_MESSAGE_LEN,
                    MessageType::Keepalive => HEADER_LEN,
                    _ => context.max_message_len(),
                };
                assert!(header.length >= HEADER_LEN && header.length <= max);
                assert!(header.length <= rest.len());
                let length = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
                assert_eq!(header.length, length);
                let (message, tail) = rest.split_at(header.length);
                if let Err(error) = Message::decode(message, &context) {
                    assert!(
                        error.notification.code != code::MESSAGE_HEADER,
                        "framed message fails with a header error: {error:?}"
                    );
                }
                rest = tail;
            }
            Ok(None) => {
                // Only a short buffer or a message not yet wholly buffered.
                if rest.len() >= HEADER_LEN {
                    let length = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
                    assert!(length > rest.len(), "whole message not framed");
                }
                break;
            }
            Err(_) => break,
        }
    }
});
