//! What the two ends of a session negotiated, which decides how UPDATEs are laid out on the wire.
//! The codec never guesses any of this from the bytes themselves.

use super::family::Families;

/// The negotiated session context that decoding and encoding take.
///
/// `Context::default()` is a session with nothing negotiated: 2-octet AS numbers, no ADD-PATH,
/// 4096-octet messages, internal peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// Both ends advertised the 4-octet AS capability (RFC 6793): AS_PATH and AGGREGATOR carry
    /// 4-octet AS numbers, and AS4_PATH / AS4_AGGREGATOR are neither sent nor used.
    pub four_octet_as: bool,
    /// Both ends advertised the extended message capability (RFC 8654): messages other than OPEN
    /// and KEEPALIVE may be up to 65535 octets.
    pub extended_messages: bool,
    /// Families whose NLRI we receive with a path identifier: we advertised ADD-PATH receive and
    /// the peer advertised send (RFC 7911 section 4).
    pub add_path_receive: Families,
    /// Families whose NLRI we send with a path identifier: we advertised send and the peer
    /// advertised receive.
    pub add_path_send: Families,
    /// The peer is in another AS (eBGP). LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST from such a
    /// peer are discarded (RFC 7606 sections 7.5, 7.9 and 7.10).
    pub external: bool,
}

impl Context {
    /// The largest message allowed for UPDATE, NOTIFICATION and ROUTE-REFRESH on this session.
    pub fn max_message_len(&self) -> usize {
        if self.extended_messages {
            super::MAX_EXTENDED_MESSAGE_LEN
        } else {
            super::MAX_MESSAGE_LEN
        }
    }
}
