//! NOTIFICATION (RFC 4271 section 4.5) with the shutdown communication of RFC 8203 / RFC 9003.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! For Cease subcodes 2 (administrative shutdown) and 4 (administrative reset) the data may be a
//! length octet followed by that many octets of UTF-8 text, at most 255 (RFC 9003).

use super::error::{Error, Reason, cease_subcode, code};
use super::reader::Reader;

/// The longest shutdown communication, in octets (RFC 9003 section 2).
pub const MAX_SHUTDOWN_MESSAGE_LEN: usize = 255;

/// A NOTIFICATION message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Notification {
    /// The error code ([`code`]).
    pub code: u8,
    /// The error subcode; its meaning depends on the code.
    pub subcode: u8,
    /// Diagnostic data, whose layout depends on the code and subcode.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with the given code, subcode and data.
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Notification {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// A Cease with the given subcode and no data.
    pub fn cease(subcode: u8) -> Notification {
        Notification::new(code::CEASE, subcode, Vec::new())
    }

    /// A Cease administrative shutdown or reset carrying an RFC 8203 message. The text is cut at
    /// a character boundary to fit 255 octets.
    pub fn shutdown(subcode: u8, message: &str) -> Notification {
        let mut end = message.len().min(MAX_SHUTDOWN_MESSAGE_LEN);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = message.get(..end).unwrap_or_default();
        let mut data = Vec::with_capacity(text.len() + 1);
        data.push(text.len() as u8);
        data.extend_from_slice(text.as_bytes());
        Notification::new(code::CEASE, subcode, data)
    }

    /// The RFC 8203 shutdown communication, if this is an administrative shutdown or reset
    /// carrying a well-formed one. A malformed one is ignored, as RFC 8203 section 3 asks.
    pub fn shutdown_message(&self) -> Option<&str> {
        let is_admin = self.subcode == cease_subcode::ADMINISTRATIVE_SHUTDOWN
            || self.subcode == cease_subcode::ADMINISTRATIVE_RESET;
        if self.code != code::CEASE || !is_admin {
            return None;
        }
        let mut reader = Reader::new(&self.data);
        let length = usize::from(reader.u8()?);
        let text = reader.take(length)?;
        if length == 0 || !reader.is_empty() {
            return None;
        }
        std::str::from_utf8(text).ok()
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Notification, Error> {
        let mut reader = Reader::new(body);
        let (Some(code), Some(subcode)) = (reader.u8(), reader.u8()) else {
            let length = (body.len() + super::HEADER_LEN) as u16;
            return Err(Error::reset(
                Reason::BadLength {
                    length,
                    message_type: super::MessageType::Notification as u8,
                },
                code::MESSAGE_HEADER,
                super::error::header_subcode::BAD_MESSAGE_LENGTH,
                length.to_be_bytes(),
            ));
        };
        Ok(Notification::new(code, subcode, reader.rest()))
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.push(self.subcode);
        out.extend_from_slice(&self.data);
    }
}
