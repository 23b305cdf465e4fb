//! OPEN (RFC 4271 section 4.2), with the extended optional parameters length of RFC 9072.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! RFC 9072: when Opt Parm Len is 255 and the first parameter type is 255, a two-octet length
//! follows, and every parameter's length is two octets too.

use std::net::Ipv4Addr;

use super::capability::Capability;
use super::error::{EncodeError, Error, Reason, open_subcode};
use super::reader::Reader;
use super::{AS_TRANS, BGP_VERSION};

/// Optional parameter type of capabilities (RFC 5492).
const PARAMETER_CAPABILITIES: u8 = 2;
/// Marks the extended optional parameters length format (RFC 9072).
const EXTENDED_PARAMETERS: u8 = 255;

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Open {
    /// The "My Autonomous System" field: the AS, or AS_TRANS when it needs four octets.
    pub my_as: u16,
    /// Proposed hold time in seconds: 0, or at least 3.
    pub hold_time: u16,
    /// The BGP identifier (router id), never 0.0.0.0.
    pub bgp_identifier: Ipv4Addr,
    /// The capabilities, in the order they were sent.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`, setting the 2-octet field (AS_TRANS above 65535) and the 4-octet AS
    /// capability, followed by `capabilities`.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Open {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS as u16);
        let mut all = Vec::with_capacity(capabilities.len() + 1);
        all.push(Capability::FourOctetAs(asn));
        all.extend(
            capabilities
                .into_iter()
                .filter(|c| !matches!(c, Capability::FourOctetAs(_))),
        );
        Open {
            my_as,
            hold_time,
            bgp_identifier,
            capabilities: all,
        }
    }

    /// The sender's AS: from the 4-octet AS capability when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, Error> {
        let mut r = Reader::new(body);
        let truncated = || {
            Error::open(
                Reason::Truncated("OPEN"),
                open_subcode::UNSPECIFIC,
                Vec::new(),
            )
        };
        let version = r.u8().ok_or_else(truncated)?;
        if version != BGP_VERSION {
            return Err(Error::open(
                Reason::UnsupportedVersion(version),
                open_subcode::UNSUPPORTED_VERSION_NUMBER,
                u16::from(BGP_VERSION).to_be_bytes(),
            ));
        }
        let my_as = r.u16().ok_or_else(truncated)?;
        let hold_time = r.u16().ok_or_else(truncated)?;
        if hold_time == 1 || hold_time == 2 {
            return Err(Error::open(
                Reason::UnacceptableHoldTime(hold_time),
                open_subcode::UNACCEPTABLE_HOLD_TIME,
                Vec::new(),
            ));
        }
        let bgp_identifier = Ipv4Addr::from(r.u32().ok_or_else(truncated)?);
        if bgp_identifier.is_unspecified() {
            return Err(Error::open(
                Reason::BadBgpIdentifier,
                open_subcode::BAD_BGP_IDENTIFIER,
                Vec::new(),
            ));
        }
        let short_length = r.u8().ok_or_else(truncated)?;
        // RFC 9072 section 2: 255 followed by a parameter type of 255 means extended lengths.
        let mut peek = r;
        let extended =
            short_length == EXTENDED_PARAMETERS && peek.u8() == Some(EXTENDED_PARAMETERS);
        let parameters_len = if extended {
            r = peek;
            usize::from(r.u16().ok_or_else(truncated)?)
        } else {
            usize::from(short_length)
        };
        let parameters = r.take(parameters_len).ok_or_else(truncated)?;
        if !r.is_empty() {
            return Err(Error::open(
                Reason::Trailing("OPEN"),
                open_subcode::UNSPECIFIC,
                Vec::new(),
            ));
        }

        let mut capabilities = Vec::new();
        let mut p = Reader::new(parameters);
        while !p.is_empty() {
            let parameter_type = p.u8().ok_or_else(truncated)?;
            let length = if extended {
                p.u16()
            } else {
                p.u8().map(u16::from)
            };
            let value = length.and_then(|l| p.take(usize::from(l))).ok_or_else(|| {
                Error::open(
                    Reason::Truncated("OPEN optional parameter"),
                    open_subcode::UNSPECIFIC,
                    Vec::new(),
                )
            })?;
            if parameter_type != PARAMETER_CAPABILITIES {
                return Err(Error::open(
                    Reason::UnsupportedOptionalParameter(parameter_type),
                    open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                    Vec::new(),
                ));
            }
            Capability::decode_all(value, &mut capabilities)?;
        }
        let open = Open {
            my_as,
            hold_time,
            bgp_identifier,
            capabilities,
        };
        // RFC 7607: AS 0 is never a peer's AS.
        if open.asn() == 0 {
            return Err(Error::open(
                Reason::BadPeerAs(0),
                open_subcode::BAD_PEER_AS,
                my_as.to_be_bytes(),
            ));
        }
        Ok(open)
    }

    /// Encodes the body. All capabilities go into one optional parameter; the RFC 9072 format is
    /// used only when they do not fit the classic one-octet lengths.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(BGP_VERSION);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_identifier.octets());

        let mut value = Vec::new();
        for capability in &self.capabilities {
            capability.encode(&mut value);
        }
        if value.is_empty() {
            out.push(0);
        } else if value.len() + 2 < usize::from(EXTENDED_PARAMETERS) {
            out.push((value.len() + 2) as u8);
            out.push(PARAMETER_CAPABILITIES);
            out.push(value.len() as u8);
            out.extend_from_slice(&value);
        } else {
            let length = u16::try_from(value.len() + 3)
                .map_err(|_| EncodeError::FieldOverflow("OPEN optional parameters"))?;
            out.push(EXTENDED_PARAMETERS);
            out.push(EXTENDED_PARAMETERS);
            out.extend_from_slice(&length.to_be_bytes());
            out.push(PARAMETER_CAPABILITIES);
            out.extend_from_slice(&((value.len()) as u16).to_be_bytes());
            out.extend_from_slice(&value);
        }
        Ok(())
    }
}
