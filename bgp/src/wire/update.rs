//! UPDATE (RFC 4271 section 4.3) with MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760), IPv6 next
//! hops (RFC 2545), IPv4 NLRI over IPv6 next hops (RFC 8950) and End-of-RIB (RFC 4724).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//!
//! MP_REACH_NLRI value:                     MP_UNREACH_NLRI value:
//! +---------------------------------+      +---------------------------------+
//! | AFI (2) | SAFI (1)              |      | AFI (2) | SAFI (1)              |
//! | Next Hop Length (1)             |      | Withdrawn Routes (variable)     |
//! | Next Hop (variable)             |      +---------------------------------+
//! | Reserved (1)                    |
//! | NLRI (variable)                 |
//! +---------------------------------+
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use super::attributes::{self, PathAttributes, attribute_flags, attribute_type};
use super::context::Context;
use super::error::{EncodeError, Error, Outcome, Reason, update_subcode};
use super::family::{Afi, Family, Safi};
use super::nlri::{self, Nlri};
use super::reader::Reader;

/// The next hop in MP_REACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// An IPv4 next hop (4 octets).
    V4(Ipv4Addr),
    /// An IPv6 next hop: global, and link-local when the peer shares a link (RFC 2545: 16 or 32
    /// octets). Also used for IPv4 NLRI under RFC 8950.
    V6 {
        /// The global (or unique local) address.
        global: Ipv6Addr,
        /// The link-local address, if sent.
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    fn encoded_len(&self) -> usize {
        match self {
            NextHop::V4(_) => 4,
            NextHop::V6 {
                link_local: None, ..
            } => 16,
            NextHop::V6 {
                link_local: Some(_),
                ..
            } => 32,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.encoded_len() as u8);
        match self {
            NextHop::V4(address) => out.extend_from_slice(&address.octets()),
            NextHop::V6 { global, link_local } => {
                out.extend_from_slice(&global.octets());
                if let Some(link_local) = link_local {
                    out.extend_from_slice(&link_local.octets());
                }
            }
        }
    }
}

/// MP_REACH_NLRI: routes of one family announced with their next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    /// The family of the routes.
    pub family: Family,
    /// Their next hop.
    pub next_hop: NextHop,
    /// The routes.
    pub nlri: Vec<Nlri>,
}

/// MP_UNREACH_NLRI: routes of one family withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    /// The family of the routes.
    pub family: Family,
    /// The withdrawn routes; none at all makes the UPDATE this family's End-of-RIB.
    pub withdrawn: Vec<Nlri>,
}

/// RFC 7606 section 7.11: a malformed MP attribute disables its family when the family can be
/// read, and resets the session when it cannot. Families we do not speak are just ignored.
pub(crate) fn mp_error_outcome(value: &[u8]) -> Outcome {
    let mut r = Reader::new(value);
    match (r.u16(), r.u8()) {
        (Some(afi), Some(safi)) => {
            let family = Family {
                afi: Afi(afi),
                safi: Safi(safi),
            };
            if family.is_supported() {
                Outcome::AfiSafiDisable(family)
            } else {
                Outcome::AttributeDiscard
            }
        }
        _ => Outcome::SessionReset,
    }
}

fn mp_error(value: &[u8], raw: &[u8], reason: Reason) -> Error {
    Error::update(
        reason,
        mp_error_outcome(value),
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
        raw,
    )
}

/// Reads AFI and SAFI; an unsupported family is an attribute-discard error.
fn read_family(r: &mut Reader<'_>, value: &[u8], raw: &[u8]) -> Result<Family, Error> {
    let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
        return Err(mp_error(value, raw, Reason::Truncated("MP attribute")));
    };
    let family = Family {
        afi: Afi(afi),
        safi: Safi(safi),
    };
    if !family.is_supported() {
        return Err(mp_error(value, raw, Reason::UnsupportedFamily(family)));
    }
    Ok(family)
}

impl MpReach {
    pub(crate) fn decode(
        value: &[u8],
        context: &Context,
        raw: &[u8],
    ) -> Result<Option<MpReach>, Error> {
        let mut r = Reader::new(value);
        let family = read_family(&mut r, value, raw)?;
        let next_hop_bytes = r
            .u8()
            .and_then(|length| r.take(usize::from(length)))
            .ok_or_else(|| mp_error(value, raw, Reason::Truncated("MP_REACH_NLRI next hop")))?;
        let mut n = Reader::new(next_hop_bytes);
        let next_hop = match (family.afi, next_hop_bytes.len()) {
            (Afi::IPV4, 4) => n.u32().map(|a| NextHop::V4(Ipv4Addr::from(a))),
            (_, 16) => n.array::<16>().map(|g| NextHop::V6 {
                global: Ipv6Addr::from(g),
                link_local: None,
            }),
            (_, 32) => match (n.array::<16>(), n.array::<16>()) {
                (Some(g), Some(l)) => Some(NextHop::V6 {
                    global: Ipv6Addr::from(g),
                    link_local: Some(Ipv6Addr::from(l)),
                }),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| {
            mp_error(
                value,
                raw,
                Reason::InvalidNextHop("bad MP_REACH_NLRI length"),
            )
        })?;
        // RFC 4760: the reserved octet (once the SNPA count) is ignored.
        r.u8()
            .ok_or_else(|| mp_error(value, raw, Reason::Truncated("MP_REACH_NLRI")))?;
        let mut routes = Vec::new();
        let add_path = context.add_path_receive.contains(family);
        nlri::decode_field(r.rest(), family.afi, add_path, &mut routes)
            .map_err(|_| mp_error(value, raw, Reason::InvalidNetworkField("MP_REACH_NLRI")))?;
        Ok(Some(MpReach {
            family,
            next_hop,
            nlri: routes,
        }))
    }

    fn encode_value(&self, context: &Context, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.0.to_be_bytes());
        out.push(self.family.safi.0);
        self.next_hop.encode(out);
        out.push(0);
        let add_path = context.add_path_send.contains(self.family);
        for route in &self.nlri {
            route.encode(add_path, out);
        }
    }
}

impl MpUnreach {
    pub(crate) fn decode(
        value: &[u8],
        context: &Context,
        raw: &[u8],
    ) -> Result<Option<MpUnreach>, Error> {
        let mut r = Reader::new(value);
        let family = read_family(&mut r, value, raw)?;
        let mut withdrawn = Vec::new();
        let add_path = context.add_path_receive.contains(family);
        nlri::decode_field(r.rest(), family.afi, add_path, &mut withdrawn)
            .map_err(|_| mp_error(value, raw, Reason::InvalidNetworkField("MP_UNREACH_NLRI")))?;
        Ok(Some(MpUnreach { family, withdrawn }))
    }

    fn encode_value(&self, context: &Context, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.0.to_be_bytes());
        out.push(self.family.safi.0);
        let add_path = context.add_path_send.contains(self.family);
        for route in &self.withdrawn {
            route.encode(add_path, out);
        }
    }
}

/// An UPDATE message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 unicast routes withdrawn in the Withdrawn Routes field.
    pub withdrawn: Vec<Nlri>,
    /// The path attributes of the announced routes.
    pub attributes: PathAttributes,
    /// Routes of another family (or IPv4 with an IPv6 next hop) announced in MP_REACH_NLRI.
    pub mp_reach: Option<MpReach>,
    /// Routes of another family withdrawn in MP_UNREACH_NLRI.
    pub mp_unreach: Option<MpUnreach>,
    /// IPv4 unicast routes announced in the NLRI field, with `attributes.next_hop`.
    pub nlri: Vec<Nlri>,
    /// Errors found in decoding that did not reset the session (RFC 7606 attribute discard and
    /// treat-as-withdraw). When [`Update::treat_as_withdraw`] holds, every announced route must
    /// be handled as withdrawn. Never encoded.
    pub errors: Vec<Error>,
}

impl Update {
    /// The End-of-RIB marker of `family` (RFC 4724 section 2).
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    withdrawn: Vec::new(),
                }),
                ..Update::default()
            }
        }
    }

    /// The family whose End-of-RIB this UPDATE is, if it is one.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        let bare = self.withdrawn.is_empty()
            && self.nlri.is_empty()
            && self.mp_reach.is_none()
            && self.attributes == PathAttributes::default();
        match &self.mp_unreach {
            _ if !bare => None,
            None => Some(Family::IPV4_UNICAST),
            Some(unreach) if unreach.withdrawn.is_empty() => Some(unreach.family),
            Some(_) => None,
        }
    }

    /// Whether RFC 7606 treat-as-withdraw applies: the announced routes must be withdrawn.
    pub fn treat_as_withdraw(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.outcome == Outcome::TreatAsWithdraw)
    }

    /// The strongest outcome among the non-fatal errors, if any.
    pub fn outcome(&self) -> Option<Outcome> {
        self.errors.iter().map(|e| e.outcome).max()
    }

    /// Whether the UPDATE announces any route.
    pub fn announces(&self) -> bool {
        !self.nlri.is_empty() || self.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty())
    }

    pub(crate) fn decode(body: &[u8], context: &Context) -> Result<Update, Error> {
        let list_error = |what| {
            Error::update(
                Reason::MalformedAttributeList(what),
                Outcome::SessionReset,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                Vec::new(),
            )
        };
        let mut r = Reader::new(body);
        let withdrawn_field = r
            .u16()
            .and_then(|length| r.take(usize::from(length)))
            .ok_or_else(|| list_error("withdrawn routes length runs past the message"))?;
        let attribute_field = r
            .u16()
            .and_then(|length| r.take(usize::from(length)))
            .ok_or_else(|| list_error("total path attribute length runs past the message"))?;
        let nlri_field = r.rest();

        // RFC 7606 section 5.3: a field of routes that cannot be parsed resets the session.
        let network_error = |what| {
            Error::update(
                Reason::InvalidNetworkField(what),
                Outcome::SessionReset,
                update_subcode::INVALID_NETWORK_FIELD,
                Vec::new(),
            )
        };
        let ipv4 = Family::IPV4_UNICAST;
        let mut withdrawn = Vec::new();
        nlri::decode_field(
            withdrawn_field,
            Afi::IPV4,
            context.add_path_receive.contains(ipv4),
            &mut withdrawn,
        )
        .map_err(|_| network_error("withdrawn routes"))?;
        let mut routes = Vec::new();
        nlri::decode_field(
            nlri_field,
            Afi::IPV4,
            context.add_path_receive.contains(ipv4),
            &mut routes,
        )
        .map_err(|_| network_error("NLRI"))?;

        let mut errors = Vec::new();
        let decoded = attributes::decode(attribute_field, context, &mut errors)?;
        let mut update = Update {
            withdrawn,
            attributes: decoded.attributes,
            mp_reach: decoded.mp_reach,
            mp_unreach: decoded.mp_unreach,
            nlri: routes,
            errors,
        };

        // RFC 7606 section 3 (d): a missing well-known mandatory attribute means treat-as-withdraw.
        if update.announces() && !update.treat_as_withdraw() {
            let attrs = &update.attributes;
            let missing = if attrs.origin.is_none() {
                Some(attribute_type::ORIGIN)
            } else if attrs.as_path.is_none() {
                Some(attribute_type::AS_PATH)
            } else if !update.nlri.is_empty() && attrs.next_hop.is_none() {
                Some(attribute_type::NEXT_HOP)
            } else {
                None
            };
            if let Some(type_code) = missing {
                update.errors.push(Error::update(
                    Reason::MissingWellKnownAttribute(type_code),
                    Outcome::TreatAsWithdraw,
                    update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE,
                    [type_code],
                ));
            }
        }

        // RFC 7606 section 5.2: when an UPDATE carries path attributes but encodes no reachable
        // NLRI, the receiver cannot be sure its routes were parsed, and treat-as-withdraw would
        // withdraw nothing: an error calling for more than attribute discard resets the session.
        if !update.announces()
            && let Some(error) = update
                .errors
                .iter()
                .find(|e| e.outcome != Outcome::AttributeDiscard)
        {
            return Err(Error {
                outcome: Outcome::SessionReset,
                ..error.clone()
            });
        }
        Ok(update)
    }

    pub(crate) fn encode_body(
        &self,
        context: &Context,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let ipv4_add_path = context.add_path_send.contains(Family::IPV4_UNICAST);
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        for route in &self.withdrawn {
            route.encode(ipv4_add_path, out);
        }
        let withdrawn_len = out.len() - start - 2;
        let attributes_at = out.len();
        out.extend_from_slice(&[0, 0]);
        // RFC 7606 section 5.1: MP_REACH_NLRI and MP_UNREACH_NLRI come first.
        if let Some(reach) = &self.mp_reach {
            attributes::put(
                out,
                attribute_flags::OPTIONAL,
                attribute_type::MP_REACH_NLRI,
                |o| reach.encode_value(context, o),
            );
        }
        if let Some(unreach) = &self.mp_unreach {
            attributes::put(
                out,
                attribute_flags::OPTIONAL,
                attribute_type::MP_UNREACH_NLRI,
                |o| unreach.encode_value(context, o),
            );
        }
        self.attributes.encode(context, out);
        let attributes_len = out.len() - attributes_at - 2;
        for route in &self.nlri {
            route.encode(ipv4_add_path, out);
        }
        if withdrawn_len > 0xffff || attributes_len > 0xffff {
            return Err(EncodeError::FieldOverflow("UPDATE field length"));
        }
        super::patch_u16(out, start, withdrawn_len);
        super::patch_u16(out, attributes_at, attributes_len);
        Ok(())
    }
}
