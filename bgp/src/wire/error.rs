//! Decode errors, shaped by RFC 4271 section 6 and RFC 7606.
//!
//! Every error names what was wrong ([`Reason`]), the NOTIFICATION that RFC 4271 section 6 asks
//! for (code, subcode, data), and the RFC 7606 [`Outcome`]: what the receiver must do. Outcomes are
//! ordered from weakest to strongest, so the strongest of several errors is simply the maximum.

use super::family::Family;
use super::notification::Notification;

/// NOTIFICATION error codes (RFC 4271 section 4.5, RFC 7313).
pub mod code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease (subcodes in RFC 4486).
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Message Header Error subcodes (RFC 4271 section 6.1).
pub mod header_subcode {
    /// The marker is not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// The length field is out of bounds; the data is the length field.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// The type is unknown; the data is the type octet.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 section 6.2, RFC 5492).
pub mod open_subcode {
    /// A recognised optional parameter is malformed.
    pub const UNSPECIFIC: u8 = 0;
    /// The version is not 4; the data is the largest version we support.
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    /// The peer's AS is not the one configured.
    pub const BAD_PEER_AS: u8 = 2;
    /// The BGP identifier is not acceptable.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// An optional parameter type is not recognised.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// The hold time is 1 or 2 seconds, or unacceptable by local policy.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// A capability we require is missing (RFC 5492).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 section 6.3).
pub mod update_subcode {
    /// The attribute list or the field lengths are inconsistent.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// A well-known attribute is not recognised.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// A well-known mandatory attribute is missing; the data is its type code.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// The flags conflict with the attribute's type.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// The length is wrong for the attribute's type.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// ORIGIN has an undefined value.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// NEXT_HOP is syntactically or semantically invalid.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// An optional attribute is malformed.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// The NLRI or withdrawn routes field cannot be parsed.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// AS_PATH is malformed.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Cease subcodes (RFC 4486, RFC 8538).
pub mod cease_subcode {
    /// Maximum number of prefixes reached.
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    /// Administrative shutdown (may carry an RFC 8203 message).
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// Peer de-configured.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Administrative reset (may carry an RFC 8203 message).
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    /// Connection rejected.
    pub const CONNECTION_REJECTED: u8 = 5;
    /// Other configuration change.
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    /// Connection collision resolution.
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    /// Out of resources.
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// Hard reset (RFC 8538).
    pub const HARD_RESET: u8 = 9;
}

/// ROUTE-REFRESH Message Error subcodes (RFC 7313 section 5).
pub mod route_refresh_subcode {
    /// The message length is wrong for its subtype.
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// What the receiver of a malformed message must do (RFC 7606 section 2), weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Drop the malformed attribute and process the rest of the UPDATE.
    AttributeDiscard,
    /// Treat every prefix the UPDATE announces as withdrawn.
    TreatAsWithdraw,
    /// Drop the family's routes from this peer and stop using the family on the session.
    AfiSafiDisable(Family),
    /// Send the NOTIFICATION and close the session.
    SessionReset,
}

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The header marker is not sixteen 0xff octets.
    #[error("the message header marker is not all ones")]
    BadMarker,
    /// The length field is out of bounds for the message type.
    #[error("length {length} is out of bounds for message type {message_type}")]
    BadLength {
        /// The length field.
        length: u16,
        /// The type octet.
        message_type: u8,
    },
    /// The type octet is not a message type we know.
    #[error("unknown message type {0}")]
    BadType(u8),
    /// A field runs past the end of its enclosing field or message.
    #[error("{0} is truncated")]
    Truncated(&'static str),
    /// Octets are left over after the last field.
    #[error("{0} has trailing octets")]
    Trailing(&'static str),
    /// The OPEN carries a version other than 4.
    #[error("unsupported BGP version {0}, only 4 is supported")]
    UnsupportedVersion(u8),
    /// The OPEN carries a hold time of 1 or 2 seconds.
    #[error("unacceptable hold time {0}: it must be 0 or at least 3 seconds")]
    UnacceptableHoldTime(u16),
    /// The OPEN carries a reserved AS (0, RFC 7607).
    #[error("peer AS {0} is reserved (RFC 7607)")]
    BadPeerAs(u32),
    /// The OPEN carries BGP identifier 0.0.0.0.
    #[error("BGP identifier 0.0.0.0 is not valid")]
    BadBgpIdentifier,
    /// The OPEN carries an optional parameter other than capabilities.
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    /// A capability's value does not fit its definition.
    #[error("malformed capability {0}")]
    MalformedCapability(u8),
    /// The withdrawn routes length or total path attribute length runs past the message.
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// An attribute appears more than once.
    #[error("attribute {0} appears more than once")]
    DuplicateAttribute(u8),
    /// An attribute with the well-known flag pattern has a type code we do not know.
    #[error("unrecognized well-known attribute {0}")]
    UnrecognizedWellKnownAttribute(u8),
    /// A well-known mandatory attribute is missing from an UPDATE that announces routes.
    #[error("missing well-known attribute {0}")]
    MissingWellKnownAttribute(u8),
    /// The optional and transitive flags do not match the attribute's type.
    #[error("attribute {type_code} has flags {flags:#04x} that do not match its type")]
    AttributeFlags {
        /// The attribute type code.
        type_code: u8,
        /// The flags octet received.
        flags: u8,
    },
    /// The attribute's length is wrong for its type.
    #[error("attribute {type_code} has invalid length {length}")]
    AttributeLength {
        /// The attribute type code.
        type_code: u8,
        /// The length received.
        length: usize,
    },
    /// ORIGIN holds an undefined value.
    #[error("invalid ORIGIN {0}")]
    InvalidOrigin(u8),
    /// NEXT_HOP or the MP_REACH_NLRI next hop is invalid.
    #[error("invalid next hop: {0}")]
    InvalidNextHop(&'static str),
    /// AS_PATH or AS4_PATH does not parse.
    #[error("malformed AS path: {0}")]
    MalformedAsPath(&'static str),
    /// A prefix in the NLRI, withdrawn routes or MP attributes does not parse.
    #[error("invalid network field in {0}")]
    InvalidNetworkField(&'static str),
    /// An MP attribute is for a family tern does not speak; it is ignored.
    #[error("address family {0} is not supported")]
    UnsupportedFamily(Family),
    /// LOCAL_PREF, ORIGINATOR_ID or CLUSTER_LIST arrived from an external peer.
    #[error("attribute {0} is not accepted from an external peer")]
    NotFromExternalPeer(u8),
    /// A ROUTE-REFRESH message has the wrong length.
    #[error("ROUTE-REFRESH message of invalid length {0}")]
    RouteRefreshLength(usize),
}

/// A decode failure: what was wrong, the NOTIFICATION that reports it, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({outcome:?}, NOTIFICATION {}/{})", notification.code, notification.subcode)]
pub struct Error {
    /// What was wrong.
    pub reason: Reason,
    /// The NOTIFICATION for this error (RFC 4271 section 6). For outcomes other than
    /// [`Outcome::SessionReset`] it is only logged, not sent.
    pub notification: Notification,
    /// What the receiver must do (RFC 7606).
    pub outcome: Outcome,
}

impl Error {
    pub(crate) fn new(
        reason: Reason,
        outcome: Outcome,
        code: u8,
        subcode: u8,
        data: impl Into<Vec<u8>>,
    ) -> Error {
        Error {
            reason,
            notification: Notification::new(code, subcode, data),
            outcome,
        }
    }

    /// An error that resets the session.
    pub(crate) fn reset(reason: Reason, code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Error {
        Error::new(reason, Outcome::SessionReset, code, subcode, data)
    }

    /// An UPDATE Message Error.
    pub(crate) fn update(
        reason: Reason,
        outcome: Outcome,
        subcode: u8,
        data: impl Into<Vec<u8>>,
    ) -> Error {
        Error::new(reason, outcome, code::UPDATE_MESSAGE, subcode, data)
    }

    /// An OPEN Message Error (always a session reset).
    pub(crate) fn open(reason: Reason, subcode: u8, data: impl Into<Vec<u8>>) -> Error {
        Error::reset(reason, code::OPEN_MESSAGE, subcode, data)
    }
}

/// An encode failure: the message would not fit, or a value cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message is longer than the session allows.
    #[error("message of {length} octets exceeds the maximum of {max}")]
    TooLong {
        /// The encoded length.
        length: usize,
        /// The session's maximum.
        max: usize,
    },
    /// A field cannot hold the value.
    #[error("{0} does not fit its field")]
    FieldOverflow(&'static str),
}
