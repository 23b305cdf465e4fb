//! The BGP-4 wire codec: framing, decoding and encoding of every message tern exchanges.
//!
//! Implements RFC 4271 (messages and error handling), RFC 5492 (capabilities), RFC 4760
//! (multiprotocol), RFC 2545 and RFC 8950 (IPv6 next hops), RFC 6793 (4-octet AS), RFC 2918 and
//! RFC 7313 (route refresh), RFC 4724 and RFC 9494 (graceful restart capabilities), RFC 7911
//! (ADD-PATH), RFC 8654 (extended messages), RFC 9072 (extended optional parameters length),
//! RFC 1997, RFC 4360 and RFC 8092 (communities), RFC 4456 (route reflection attributes), RFC 8203
//! (shutdown communication) and RFC 7606 (revised error handling).
//!
//! Design:
//! - Framing ([`frame`]) is apart from decoding: it checks the header and says whether a whole
//!   message is buffered; [`Message::decode`] then decodes one whole message.
//! - Decoding takes an explicit [`Context`] with what the session negotiated; it never guesses.
//! - Every failure is an [`Error`] carrying its NOTIFICATION and RFC 7606 [`Outcome`]. Errors that
//!   do not reset the session are kept in [`Update::errors`] beside what could be decoded.
//! - No decoder indexes a slice: all reads go through a bounds-checked cursor, and no buffer is
//!   reserved beyond what the message length implies.

// Decoders must never panic on input a peer sends.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod as_path;
mod attributes;
mod builder;
mod capability;
mod community;
mod context;
mod error;
mod family;
mod nlri;
mod notification;
mod open;
mod reader;
mod route_refresh;
mod update;

pub use attributes::{
    Aggregator, AsPath, AsSegment, Community, ExtendedCommunity, LargeCommunity, Origin,
    PathAttributes, RawAttribute, SegmentType, attribute_flags, attribute_type,
};
pub use builder::UpdateBuilder;
pub use capability::{
    AddPathFamily, AddPathMode, Capability, ExtendedNextHop, GracefulRestart,
    GracefulRestartFamily, LongLivedGracefulRestartFamily,
};
pub use context::Context;
pub use error::{
    EncodeError, Error, Outcome, Reason, cease_subcode, code, header_subcode, open_subcode,
    route_refresh_subcode, update_subcode,
};
pub use family::{Afi, Families, Family, Safi};
pub use nlri::Nlri;
pub use notification::{MAX_SHUTDOWN_MESSAGE_LEN, Notification};
pub use open::Open;
pub use route_refresh::{RefreshSubtype, RouteRefresh};
pub use update::{MpReach, MpUnreach, NextHop, Update};

use reader::Reader;

/// Octets in the message header: marker, length and type.
pub const HEADER_LEN: usize = 19;
/// The largest message without extended messages (RFC 4271 section 4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The largest message with extended messages (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
/// AS_TRANS, the 2-octet stand-in for a 4-octet AS number (RFC 6793).
pub const AS_TRANS: u32 = 23456;
/// The only BGP version.
pub const BGP_VERSION: u8 = 4;

const MARKER: [u8; 16] = [0xff; 16];

/// The message type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// OPEN.
    Open = 1,
    /// UPDATE.
    Update = 2,
    /// NOTIFICATION.
    Notification = 3,
    /// KEEPALIVE.
    Keepalive = 4,
    /// ROUTE-REFRESH (RFC 2918).
    RouteRefresh = 5,
}

impl MessageType {
    fn from_wire(value: u8) -> Option<MessageType> {
        Some(match value {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// The shortest and longest legal message of this type (RFC 4271 section 4, RFC 8654).
    fn length_bounds(self, context: &Context) -> (usize, usize) {
        match self {
            MessageType::Open => (29, MAX_MESSAGE_LEN),
            MessageType::Update => (23, context.max_message_len()),
            MessageType::Notification => (21, context.max_message_len()),
            MessageType::Keepalive => (HEADER_LEN, HEADER_LEN),
            MessageType::RouteRefresh => (23, context.max_message_len()),
        }
    }
}

/// A checked message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The whole message's length, header included.
    pub length: usize,
    /// The message type.
    pub message_type: MessageType,
}

/// Looks at the start of `buf` for one message.
///
/// Returns `Ok(None)` while fewer octets than the message needs are buffered, `Ok(Some(header))`
/// once `buf` holds the whole message (`buf[..header.length]`), and an error when the header is
/// bad (RFC 4271 section 6.1). Reading stops at the first error: the session must be reset.
pub fn frame(buf: &[u8], context: &Context) -> Result<Option<Header>, Error> {
    let mut reader = Reader::new(buf);
    let (Some(marker), Some(length), Some(type_octet)) =
        (reader.array::<16>(), reader.u16(), reader.u8())
    else {
        return Ok(None);
    };
    if marker != MARKER {
        return Err(Error::reset(
            Reason::BadMarker,
            code::MESSAGE_HEADER,
            header_subcode::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let bad_length = || {
        Error::reset(
            Reason::BadLength {
                length,
                message_type: type_octet,
            },
            code::MESSAGE_HEADER,
            header_subcode::BAD_MESSAGE_LENGTH,
            length.to_be_bytes(),
        )
    };
    let total = usize::from(length);
    if !(HEADER_LEN..=MAX_EXTENDED_MESSAGE_LEN).contains(&total) {
        return Err(bad_length());
    }
    let Some(message_type) = MessageType::from_wire(type_octet) else {
        return Err(Error::reset(
            Reason::BadType(type_octet),
            code::MESSAGE_HEADER,
            header_subcode::BAD_MESSAGE_TYPE,
            [type_octet],
        ));
    };
    let (min, max) = message_type.length_bounds(context);
    if total < min || total > max {
        return Err(bad_length());
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Header {
        length: total,
        message_type,
    }))
}

/// One BGP message.
// UPDATE dominates the traffic; boxing it would add an allocation to every one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (RFC 4271 section 4.2).
    Open(Open),
    /// UPDATE (RFC 4271 section 4.3).
    Update(Update),
    /// NOTIFICATION (RFC 4271 section 4.5).
    Notification(Notification),
    /// KEEPALIVE (RFC 4271 section 4.4).
    Keepalive,
    /// ROUTE-REFRESH (RFC 2918, RFC 7313).
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// Decodes one whole message, header included. `bytes` must hold exactly one message, as
    /// [`frame`] delimits it.
    pub fn decode(bytes: &[u8], context: &Context) -> Result<Message, Error> {
        let header = match frame(bytes, context)? {
            Some(header) if header.length == bytes.len() => header,
            _ => {
                // Incomplete, or more than one message: the length field does not match.
                let length: [u8; 2] = bytes
                    .get(16..18)
                    .and_then(|f| f.try_into().ok())
                    .unwrap_or([0, 0]);
                let type_octet = bytes.get(18).copied().unwrap_or(0);
                return Err(Error::reset(
                    Reason::BadLength {
                        length: u16::from_be_bytes(length),
                        message_type: type_octet,
                    },
                    code::MESSAGE_HEADER,
                    header_subcode::BAD_MESSAGE_LENGTH,
                    length,
                ));
            }
        };
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        Ok(match header.message_type {
            MessageType::Open => Message::Open(Open::decode(body)?),
            MessageType::Update => Message::Update(Update::decode(body, context)?),
            MessageType::Notification => Message::Notification(Notification::decode(body)?),
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => Message::RouteRefresh(RouteRefresh::decode(body)?),
        })
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, context: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let (message_type, max) = match self {
            Message::Open(_) => (MessageType::Open, MAX_MESSAGE_LEN),
            Message::Update(_) => (MessageType::Update, context.max_message_len()),
            Message::Notification(_) => (MessageType::Notification, context.max_message_len()),
            Message::Keepalive => (MessageType::Keepalive, HEADER_LEN),
            Message::RouteRefresh(_) => (MessageType::RouteRefresh, context.max_message_len()),
        };
        write_header(out, message_type, 0);
        match self {
            Message::Open(open) => open.encode_body(out)?,
            Message::Update(update) => update.encode_body(context, out)?,
            Message::Notification(notification) => notification.encode_body(out),
            Message::Keepalive => {}
            Message::RouteRefresh(refresh) => refresh.encode_body(out),
        }
        let length = out.len() - start;
        if length > max {
            out.truncate(start);
            return Err(EncodeError::TooLong { length, max });
        }
        patch_u16(out, start + 16, length);
        Ok(())
    }

    /// Encodes the message into a new buffer.
    pub fn to_bytes(&self, context: &Context) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(context, &mut out)?;
        Ok(out)
    }
}

/// Writes a message header with the given length (patched later when not yet known).
pub(crate) fn write_header(out: &mut Vec<u8>, message_type: MessageType, length: usize) {
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&(length as u16).to_be_bytes());
    out.push(message_type as u8);
}

/// Overwrites the two octets at `at` with `value`, which the caller has bounded to 65535.
pub(crate) fn patch_u16(out: &mut [u8], at: usize, value: usize) {
    if let Some(field) = out.get_mut(at..at + 2) {
        field.copy_from_slice(&(value as u16).to_be_bytes());
    }
}
