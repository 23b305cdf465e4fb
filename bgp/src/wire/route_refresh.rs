//! ROUTE-REFRESH (RFC 2918) with the enhanced route refresh subtypes of RFC 7313.
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtype| SAFI |
//! +-------+-------+-------+-------+
//! ```

use super::error::{Error, Reason, code, route_refresh_subcode};
use super::family::{Afi, Family, Safi};
use super::reader::Reader;

/// The "Message Subtype" octet (RFC 7313 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// 0: a normal route refresh request.
    Request,
    /// 1: Beginning of Route Refresh (BoRR).
    Begin,
    /// 2: End of Route Refresh (EoRR).
    End,
    /// Any other value; RFC 7313 says such a message is ignored.
    Reserved(u8),
}

impl RefreshSubtype {
    fn from_wire(value: u8) -> RefreshSubtype {
        match value {
            0 => RefreshSubtype::Request,
            1 => RefreshSubtype::Begin,
            2 => RefreshSubtype::End,
            other => RefreshSubtype::Reserved(other),
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            RefreshSubtype::Request => 0,
            RefreshSubtype::Begin => 1,
            RefreshSubtype::End => 2,
            RefreshSubtype::Reserved(other) => other,
        }
    }
}

/// A ROUTE-REFRESH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// The family to refresh.
    pub family: Family,
    /// Request, or the start or end of a refresh (enhanced route refresh).
    pub subtype: RefreshSubtype,
}

impl RouteRefresh {
    /// A request to re-advertise `family`.
    pub fn request(family: Family) -> RouteRefresh {
        RouteRefresh {
            family,
            subtype: RefreshSubtype::Request,
        }
    }

    pub(crate) fn decode(body: &[u8]) -> Result<RouteRefresh, Error> {
        let mut reader = Reader::new(body);
        let (Some(afi), Some(subtype), Some(safi)) = (reader.u16(), reader.u8(), reader.u8())
        else {
            return Err(invalid_length(body));
        };
        // We never advertise ORF (RFC 5291), so every subtype must be exactly four octets.
        if !reader.is_empty() {
            return Err(invalid_length(body));
        }
        Ok(RouteRefresh {
            family: Family {
                afi: Afi(afi),
                safi: Safi(safi),
            },
            subtype: RefreshSubtype::from_wire(subtype),
        })
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.0.to_be_bytes());
        out.push(self.subtype.to_wire());
        out.push(self.family.safi.0);
    }
}

/// RFC 7313 section 5: the data of this error is the whole message.
fn invalid_length(body: &[u8]) -> Error {
    let mut data = Vec::with_capacity(super::HEADER_LEN + body.len());
    super::write_header(
        &mut data,
        super::MessageType::RouteRefresh,
        super::HEADER_LEN + body.len(),
    );
    data.extend_from_slice(body);
    Error::reset(
        Reason::RouteRefreshLength(super::HEADER_LEN + body.len()),
        code::ROUTE_REFRESH,
        route_refresh_subcode::INVALID_MESSAGE_LENGTH,
        data,
    )
}
