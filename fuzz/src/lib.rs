//! Helpers shared by the fuzz targets: the session context chosen by the first input octet,
//! framing a body as a whole message, and the decode, encode, decode round-trip check.

use tern_bgp::wire::{
    Context, EncodeError, Families, Family, HEADER_LEN, MAX_EXTENDED_MESSAGE_LEN, Message, Update,
};

/// The context one octet chooses: bit 0 four-octet AS, bit 1 extended messages, bit 2 ADD-PATH
/// for IPv4 unicast, bit 3 ADD-PATH for IPv6 unicast, bit 4 external peer. ADD-PATH is set for
/// sending as well as receiving, so that what was decoded is encoded back in the same layout.
pub fn context(octet: u8) -> Context {
    let mut add_path = Families::NONE;
    if octet & 0x04 != 0 {
        add_path.insert(Family::IPV4_UNICAST);
    }
    if octet & 0x08 != 0 {
        add_path.insert(Family::IPV6_UNICAST);
    }
    Context {
        four_octet_as: octet & 0x01 != 0,
        extended_messages: octet & 0x02 != 0,
        add_path_receive: add_path,
        add_path_send: add_path,
        external: octet & 0x10 != 0,
    }
}

/// Splits a fuzz input into the context its first octet chooses and the rest.
pub fn split(data: &[u8]) -> Option<(Context, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((context(first), rest))
}

/// A whole message of `message_type` around `body`, cut so that the length fits its field.
pub fn wrap(message_type: u8, body: &[u8]) -> Vec<u8> {
    let body = &body[..body.len().min(MAX_EXTENDED_MESSAGE_LEN - HEADER_LEN)];
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(body);
    out
}

/// Decodes `bytes`; a message that decodes must encode (or fail with an [`EncodeError`]), and
/// one that decoded without errors must decode from its encoding to an equal value.
pub fn check_round_trip(bytes: &[u8], context: &Context) {
    let Ok(message) = Message::decode(bytes, context) else {
        return;
    };
    let encoded = match message.to_bytes(context) {
        Ok(encoded) => encoded,
        Err(EncodeError::TooLong { length, max }) => {
            assert!(length > max, "TooLong with {length} <= {max}");
            return;
        }
        Err(EncodeError::FieldOverflow(_)) => return,
    };
    if let Message::Update(update) = &message
        && (!update.errors.is_empty() || lossy_as4_path(update, context))
    {
        return;
    }
    let again = match Message::decode(&encoded, context) {
        Ok(again) => again,
        Err(error) => panic!(
            "re-encoded message does not decode: {error:?}\ninput:   {}\nencoded: {}\nvalue: {message:?}",
            hex(bytes),
            hex(&encoded)
        ),
    };
    assert!(
        again == message,
        "round trip changed the value\ninput:   {}\nencoded: {}\nfirst:  {message:?}\nsecond: {again:?}",
        hex(bytes),
        hex(&encoded)
    );
}

/// Whether the AS path cannot survive a 2-octet session: it has an AS number above 65535 outside
/// the confederation segments, so AS4_PATH is sent, and a confederation segment after a
/// non-confederation one. AS4_PATH must not carry confederation segments, and on receipt only the
/// leading ones are kept beside it (RFC 6793 sections 4.2.2 and 4.2.3), so such a segment is lost.
/// A 2-octet peer can send such a path (AS_PATH with the segment, AS4_PATH without it).
pub fn lossy_as4_path(update: &Update, context: &Context) -> bool {
    let Some(path) = &update.attributes.as_path else {
        return false;
    };
    let needs_as4_path = path
        .segments
        .iter()
        .any(|s| !s.segment_type.is_confed() && s.asns.iter().any(|&asn| asn > 0xffff));
    let inner_confed = path
        .segments
        .iter()
        .skip_while(|s| s.segment_type.is_confed())
        .any(|s| s.segment_type.is_confed());
    !context.four_octet_as && needs_as4_path && inner_confed
}

/// Lowercase hex, for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
