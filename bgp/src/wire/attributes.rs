//! Path attributes (RFC 4271 section 4.3 and 5) and their RFC 7606 error handling.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|  then a 1-octet length, or 2 octets when Extended Length is set
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! Flags: Optional (0x80), Transitive (0x40), Partial (0x20), Extended Length (0x10)
//! ```
//! Every known attribute is checked for flags and length; a malformed one is handled as RFC 7606
//! section 7 says for its type (treat-as-withdraw or attribute discard). AS_PATH and AGGREGATOR use
//! 2- or 4-octet AS numbers as the session negotiated; toward and from 2-octet speakers, AS4_PATH
//! and AS4_AGGREGATOR carry the real numbers and are merged back on receipt (RFC 6793 section 4.2.3).
//! Unknown optional transitive attributes are kept with the Partial bit set; unknown optional
//! non-transitive ones are dropped (RFC 4271 section 5).

use std::net::Ipv4Addr;

use super::AS_TRANS;
use super::context::Context;
use super::error::{Error, Outcome, Reason, update_subcode};
use super::reader::Reader;
use super::update::{MpReach, MpUnreach};

pub use super::as_path::{Aggregator, AsPath, AsSegment, SegmentType};
pub use super::community::{Community, ExtendedCommunity, LargeCommunity};

/// Path attribute type codes (IANA "BGP Path Attributes").
pub mod attribute_type {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED_COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Attribute flag bits (RFC 4271 section 4.3).
pub mod attribute_flags {
    /// The attribute is optional.
    pub const OPTIONAL: u8 = 0x80;
    /// The attribute is transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// An optional transitive attribute passed on by a speaker that did not recognise it.
    pub const PARTIAL: u8 = 0x20;
    /// The length field is two octets.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

use attribute_flags::{EXTENDED_LENGTH, OPTIONAL, PARTIAL, TRANSITIVE};
use attribute_type as at;

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// 0: learned from an interior protocol.
    Igp,
    /// 1: learned from EGP.
    Egp,
    /// 2: learned some other way.
    Incomplete,
}

/// An attribute tern does not interpret, passed on as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    /// The flags, without Extended Length (chosen again on encode).
    pub flags: u8,
    /// The type code.
    pub type_code: u8,
    /// The value octets.
    pub value: Vec<u8>,
}

/// The path attributes of a route, except MP_REACH_NLRI and MP_UNREACH_NLRI, which describe the
/// UPDATE's routes rather than the path (see [`super::Update`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    /// ORIGIN (well-known mandatory).
    pub origin: Option<Origin>,
    /// AS_PATH (well-known mandatory), with 4-octet AS numbers.
    pub as_path: Option<AsPath>,
    /// NEXT_HOP for IPv4 NLRI in the UPDATE's own NLRI field.
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (internal peers only).
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE.
    pub atomic_aggregate: bool,
    /// AGGREGATOR, with a 4-octet AS number.
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES, in received order.
    pub communities: Vec<Community>,
    /// ORIGINATOR_ID (route reflection).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (route reflection).
    pub cluster_list: Vec<Ipv4Addr>,
    /// EXTENDED_COMMUNITIES.
    pub extended_communities: Vec<ExtendedCommunity>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<LargeCommunity>,
    /// Unknown optional transitive attributes, Partial bit set, in received order.
    pub unknown: Vec<RawAttribute>,
}

/// What the attribute list decodes to.
#[derive(Debug, Default)]
pub(crate) struct DecodedAttributes {
    pub(crate) attributes: PathAttributes,
    pub(crate) mp_reach: Option<MpReach>,
    pub(crate) mp_unreach: Option<MpUnreach>,
}

/// The flags a known attribute must carry (optional and transitive bits) and what RFC 7606
/// section 7 says to do when it is malformed. `None` for unknown type codes.
fn rules(type_code: u8) -> Option<(u8, Outcome)> {
    use Outcome::{AttributeDiscard as Discard, TreatAsWithdraw as Withdraw};
    Some(match type_code {
        at::ORIGIN | at::AS_PATH | at::NEXT_HOP | at::LOCAL_PREF => (TRANSITIVE, Withdraw),
        at::ATOMIC_AGGREGATE => (TRANSITIVE, Discard),
        at::MULTI_EXIT_DISC | at::ORIGINATOR_ID | at::CLUSTER_LIST => (OPTIONAL, Withdraw),
        at::MP_REACH_NLRI | at::MP_UNREACH_NLRI => (OPTIONAL, Outcome::SessionReset),
        at::AGGREGATOR | at::AS4_PATH | at::AS4_AGGREGATOR => (OPTIONAL | TRANSITIVE, Discard),
        at::COMMUNITIES | at::EXTENDED_COMMUNITIES | at::LARGE_COMMUNITIES => {
            (OPTIONAL | TRANSITIVE, Withdraw)
        }
        _ => return None,
    })
}

/// Decodes the path attributes field of an UPDATE.
///
/// Malformed attributes that do not reset the session are pushed onto `errors`; an error that
/// does is returned.
pub(crate) fn decode(
    field: &[u8],
    context: &Context,
    errors: &mut Vec<Error>,
) -> Result<DecodedAttributes, Error> {
    let mut out = DecodedAttributes::default();
    let attrs = &mut out.attributes;
    let mut seen = [0u64; 4];
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let mut r = Reader::new(field);

    while !r.is_empty() {
        let start = field.len() - r.remaining();
        // RFC 7606 section 4: an attribute header or value that overruns the field is handled by
        // treat-as-withdraw; the NLRI is still found from the total attribute length.
        let header = match (r.u8(), r.u8()) {
            (Some(flags), Some(type_code)) => {
                let length = if flags & EXTENDED_LENGTH != 0 {
                    r.u16().map(usize::from)
                } else {
                    r.u8().map(usize::from)
                };
                length.and_then(|length| Some((flags, type_code, r.take(length)?)))
            }
            _ => None,
        };
        let Some((flags, type_code, value)) = header else {
            errors.push(Error::update(
                Reason::MalformedAttributeList("an attribute overruns the attribute field"),
                Outcome::TreatAsWithdraw,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                field.get(start..).unwrap_or_default(),
            ));
            break;
        };
        let raw = field
            .get(start..field.len() - r.remaining())
            .unwrap_or_default();

        let slot = usize::from(type_code / 64);
        let bit = 1u64 << (type_code % 64);
        let already = seen.get(slot).is_some_and(|word| word & bit != 0);
        if let Some(word) = seen.get_mut(slot) {
            *word |= bit;
        }
        if already {
            // RFC 7606 section 3 (g).
            if type_code == at::MP_REACH_NLRI || type_code == at::MP_UNREACH_NLRI {
                return Err(Error::update(
                    Reason::DuplicateAttribute(type_code),
                    Outcome::SessionReset,
                    update_subcode::MALFORMED_ATTRIBUTE_LIST,
                    Vec::new(),
                ));
            }
            errors.push(Error::update(
                Reason::DuplicateAttribute(type_code),
                Outcome::AttributeDiscard,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                raw,
            ));
            continue;
        }

        let Some((expected_flags, malformed_outcome)) = rules(type_code) else {
            if flags & OPTIONAL == 0 {
                return Err(Error::update(
                    Reason::UnrecognizedWellKnownAttribute(type_code),
                    Outcome::SessionReset,
                    update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    raw,
                ));
            }
            if flags & TRANSITIVE != 0 {
                attrs.unknown.push(RawAttribute {
                    flags: (flags & !EXTENDED_LENGTH) | PARTIAL,
                    type_code,
                    value: value.to_vec(),
                });
            }
            continue;
        };

        // What to do with a malformed MP attribute depends on whether its family can be read.
        let malformed_outcome = if malformed_outcome == Outcome::SessionReset {
            super::update::mp_error_outcome(value)
        } else {
            malformed_outcome
        };
        let fail =
            |reason: Reason, subcode: u8| Error::update(reason, malformed_outcome, subcode, raw);
        if flags & (OPTIONAL | TRANSITIVE) != expected_flags {
            let error = fail(
                Reason::AttributeFlags { type_code, flags },
                update_subcode::ATTRIBUTE_FLAGS_ERROR,
            );
            if error.outcome >= Outcome::AfiSafiDisable(super::Family::IPV4_UNICAST) {
                return Err(error);
            }
            errors.push(error);
            continue;
        }
        let bad_length = || {
            fail(
                Reason::AttributeLength {
                    type_code,
                    length: value.len(),
                },
                update_subcode::ATTRIBUTE_LENGTH_ERROR,
            )
        };
        let ipv4 = |value: &[u8]| -> Option<Ipv4Addr> {
            <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from)
        };
        let u32_value = |value: &[u8]| -> Option<u32> {
            <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
        };

        let result: Result<(), Error> = match type_code {
            at::ORIGIN => match value {
                [0] => {
                    attrs.origin = Some(Origin::Igp);
                    Ok(())
                }
                [1] => {
                    attrs.origin = Some(Origin::Egp);
                    Ok(())
                }
                [2] => {
                    attrs.origin = Some(Origin::Incomplete);
                    Ok(())
                }
                [other] => Err(fail(
                    Reason::InvalidOrigin(*other),
                    update_subcode::INVALID_ORIGIN_ATTRIBUTE,
                )),
                _ => Err(bad_length()),
            },
            at::AS_PATH => match AsPath::decode(value, context.four_octet_as) {
                // RFC 5065 section 5 with RFC 7606 section 7.2: confederation segments from a peer
                // outside our confederation make the AS_PATH malformed. tern forms no
                // confederation, so every external peer is outside it.
                Ok(path)
                    if context.external
                        && path.segments.iter().any(|s| s.segment_type.is_confed()) =>
                {
                    Err(fail(
                        Reason::MalformedAsPath(
                            "confederation segment from a peer outside the confederation",
                        ),
                        update_subcode::MALFORMED_AS_PATH,
                    ))
                }
                Ok(path) => {
                    attrs.as_path = Some(path);
                    Ok(())
                }
                Err(what) => Err(fail(
                    Reason::MalformedAsPath(what),
                    update_subcode::MALFORMED_AS_PATH,
                )),
            },
            at::NEXT_HOP => match ipv4(value) {
                Some(address) if is_valid_next_hop(address) => {
                    attrs.next_hop = Some(address);
                    Ok(())
                }
                Some(_) => Err(fail(
                    Reason::InvalidNextHop("not a unicast address"),
                    update_subcode::INVALID_NEXT_HOP_ATTRIBUTE,
                )),
                None => Err(bad_length()),
            },
            at::MULTI_EXIT_DISC => u32_value(value)
                .map(|med| attrs.med = Some(med))
                .ok_or_else(bad_length),
            at::LOCAL_PREF if context.external => Err(Error::update(
                Reason::NotFromExternalPeer(type_code),
                Outcome::AttributeDiscard,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                raw,
            )),
            at::LOCAL_PREF => u32_value(value)
                .map(|pref| attrs.local_pref = Some(pref))
                .ok_or_else(bad_length),
            at::ATOMIC_AGGREGATE if value.is_empty() => {
                attrs.atomic_aggregate = true;
                Ok(())
            }
            at::ATOMIC_AGGREGATE => Err(bad_length()),
            at::AGGREGATOR => match decode_aggregator(value, context.four_octet_as) {
                // RFC 7607: AS 0 in AGGREGATOR means attribute discard.
                Some(aggregator) if aggregator.asn == 0 => Err(fail(
                    Reason::MalformedAsPath("AS 0 in AGGREGATOR (RFC 7607)"),
                    update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
                )),
                Some(aggregator) => {
                    attrs.aggregator = Some(aggregator);
                    Ok(())
                }
                None => Err(bad_length()),
            },
            at::COMMUNITIES => decode_list(value, |c| Community(u32::from_be_bytes(c)))
                .map(|list| attrs.communities = list)
                .ok_or_else(bad_length),
            at::ORIGINATOR_ID | at::CLUSTER_LIST if context.external => Err(Error::update(
                Reason::NotFromExternalPeer(type_code),
                Outcome::AttributeDiscard,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                raw,
            )),
            at::ORIGINATOR_ID => ipv4(value)
                .map(|id| attrs.originator_id = Some(id))
                .ok_or_else(bad_length),
            at::CLUSTER_LIST => decode_list(value, Ipv4Addr::from)
                .map(|list| attrs.cluster_list = list)
                .ok_or_else(bad_length),
            at::MP_REACH_NLRI => match MpReach::decode(value, context, raw) {
                Ok(Some(reach)) => {
                    out.mp_reach = Some(reach);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            },
            at::MP_UNREACH_NLRI => match MpUnreach::decode(value, context, raw) {
                Ok(Some(unreach)) => {
                    out.mp_unreach = Some(unreach);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            },
            at::EXTENDED_COMMUNITIES => decode_list(value, ExtendedCommunity)
                .map(|list| attrs.extended_communities = list)
                .ok_or_else(bad_length),
            // RFC 6793 section 4.1: between 4-octet speakers these are discarded, silently.
            at::AS4_PATH | at::AS4_AGGREGATOR if context.four_octet_as => Ok(()),
            at::AS4_PATH => match AsPath::decode(value, true) {
                Ok(path) if path.segments.iter().any(|s| s.segment_type.is_confed()) => Err(fail(
                    Reason::MalformedAsPath("AS4_PATH carries a confederation segment"),
                    update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
                )),
                Ok(path) => {
                    as4_path = Some(path);
                    Ok(())
                }
                Err(what) => Err(fail(
                    Reason::MalformedAsPath(what),
                    update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
                )),
            },
            at::AS4_AGGREGATOR => match decode_aggregator(value, true) {
                Some(aggregator) if aggregator.asn == 0 => Err(fail(
                    Reason::MalformedAsPath("AS 0 in AS4_AGGREGATOR (RFC 7607)"),
                    update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
                )),
                Some(aggregator) => {
                    as4_aggregator = Some(aggregator);
                    Ok(())
                }
                None => Err(bad_length()),
            },
            at::LARGE_COMMUNITIES => decode_list(value, |c: [u8; 12]| {
                let [a, b, c, d, e, f, g, h, i, j, k, l] = c;
                LargeCommunity {
                    global_admin: u32::from_be_bytes([a, b, c, d]),
                    local_data_1: u32::from_be_bytes([e, f, g, h]),
                    local_data_2: u32::from_be_bytes([i, j, k, l]),
                }
            })
            .map(|list| attrs.large_communities = list)
            .ok_or_else(bad_length),
            _ => Ok(()),
        };
        if let Err(error) = result {
            if error.outcome >= Outcome::AfiSafiDisable(super::Family::IPV4_UNICAST) {
                return Err(error);
            }
            errors.push(error);
        }
    }

    // RFC 6793 section 4.2.3: an AGGREGATOR that is not AS_TRANS means the aggregate was formed by
    // a 2-octet speaker after the 4-octet information was added: AS4_AGGREGATOR and AS4_PATH are
    // then ignored.
    if let Some(as4_aggregator) = as4_aggregator {
        match attrs.aggregator {
            Some(aggregator) if aggregator.asn != AS_TRANS => as4_path = None,
            _ => attrs.aggregator = Some(as4_aggregator),
        }
    }
    if let Some(as4) = as4_path
        && let Some(path) = attrs.as_path.take()
    {
        attrs.as_path = Some(path.merge_as4(as4));
    }
    Ok(out)
}

/// RFC 4271 section 6.3: a NEXT_HOP must be a unicast address.
fn is_valid_next_hop(address: Ipv4Addr) -> bool {
    !(address.is_unspecified() || address.is_multicast() || address.is_broadcast())
}

fn decode_aggregator(value: &[u8], four_octet: bool) -> Option<Aggregator> {
    let mut r = Reader::new(value);
    let asn = if four_octet {
        r.u32()?
    } else {
        u32::from(r.u16()?)
    };
    let address = Ipv4Addr::from(r.u32()?);
    r.is_empty().then_some(Aggregator { asn, address })
}

/// Decodes a non-empty list of `N`-octet items; `None` unless the length is a non-zero multiple
/// of `N` (RFC 7606 sections 7.8, 7.10, 7.14; RFC 8092 section 6).
fn decode_list<const N: usize, T>(value: &[u8], item: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
    if value.is_empty() || !value.len().is_multiple_of(N) {
        return None;
    }
    let (chunks, _) = value.as_chunks::<N>();
    Some(chunks.iter().map(|chunk| item(*chunk)).collect())
}

/// Writes an attribute header and the value `write` produces, choosing the length form.
pub(crate) fn put(out: &mut Vec<u8>, flags: u8, type_code: u8, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[flags & !EXTENDED_LENGTH, type_code, 0]);
    write(out);
    let length = out.len() - start - 3;
    if length > 255 {
        out.insert(start + 3, 0);
        if let Some(f) = out.get_mut(start) {
            *f |= EXTENDED_LENGTH;
        }
        super::patch_u16(out, start + 2, length);
    } else if let Some(l) = out.get_mut(start + 2) {
        *l = length as u8;
    }
}

impl PathAttributes {
    /// Appends every attribute in type-code order, AS numbers in the session's width, with
    /// AS4_PATH and AS4_AGGREGATOR toward 2-octet speakers when needed.
    pub(crate) fn encode(&self, context: &Context, out: &mut Vec<u8>) {
        let four = context.four_octet_as;
        if let Some(origin) = self.origin {
            put(out, TRANSITIVE, at::ORIGIN, |o| o.push(origin as u8));
        }
        if let Some(path) = &self.as_path {
            put(out, TRANSITIVE, at::AS_PATH, |o| {
                path.encode(four, false, o)
            });
        }
        if let Some(next_hop) = self.next_hop {
            put(out, TRANSITIVE, at::NEXT_HOP, |o| {
                o.extend_from_slice(&next_hop.octets())
            });
        }
        if let Some(med) = self.med {
            put(out, OPTIONAL, at::MULTI_EXIT_DISC, |o| {
                o.extend_from_slice(&med.to_be_bytes())
            });
        }
        if let Some(pref) = self.local_pref {
            put(out, TRANSITIVE, at::LOCAL_PREF, |o| {
                o.extend_from_slice(&pref.to_be_bytes())
            });
        }
        if self.atomic_aggregate {
            put(out, TRANSITIVE, at::ATOMIC_AGGREGATE, |_| {});
        }
        if let Some(aggregator) = self.aggregator {
            put(out, OPTIONAL | TRANSITIVE, at::AGGREGATOR, |o| {
                if four {
                    o.extend_from_slice(&aggregator.asn.to_be_bytes());
                } else {
                    let asn = u16::try_from(aggregator.asn).unwrap_or(AS_TRANS as u16);
                    o.extend_from_slice(&asn.to_be_bytes());
                }
                o.extend_from_slice(&aggregator.address.octets());
            });
        }
        if !self.communities.is_empty() {
            put(out, OPTIONAL | TRANSITIVE, at::COMMUNITIES, |o| {
                for c in &self.communities {
                    o.extend_from_slice(&c.0.to_be_bytes());
                }
            });
        }
        if let Some(id) = self.originator_id {
            put(out, OPTIONAL, at::ORIGINATOR_ID, |o| {
                o.extend_from_slice(&id.octets())
            });
        }
        if !self.cluster_list.is_empty() {
            put(out, OPTIONAL, at::CLUSTER_LIST, |o| {
                for id in &self.cluster_list {
                    o.extend_from_slice(&id.octets());
                }
            });
        }
        if !self.extended_communities.is_empty() {
            put(out, OPTIONAL | TRANSITIVE, at::EXTENDED_COMMUNITIES, |o| {
                for c in &self.extended_communities {
                    o.extend_from_slice(&c.0);
                }
            });
        }
        if !four {
            if let Some(path) = self.as_path.as_ref().filter(|p| p.needs_as4_path()) {
                put(out, OPTIONAL | TRANSITIVE, at::AS4_PATH, |o| {
                    path.encode(true, true, o)
                });
            }
            if let Some(aggregator) = self.aggregator.filter(|a| a.asn > 0xffff) {
                put(out, OPTIONAL | TRANSITIVE, at::AS4_AGGREGATOR, |o| {
                    o.extend_from_slice(&aggregator.asn.to_be_bytes());
                    o.extend_from_slice(&aggregator.address.octets());
                });
            }
        }
        if !self.large_communities.is_empty() {
            put(out, OPTIONAL | TRANSITIVE, at::LARGE_COMMUNITIES, |o| {
                for c in &self.large_communities {
                    o.extend_from_slice(&c.global_admin.to_be_bytes());
                    o.extend_from_slice(&c.local_data_1.to_be_bytes());
                    o.extend_from_slice(&c.local_data_2.to_be_bytes());
                }
            });
        }
        for raw in &self.unknown {
            put(out, raw.flags, raw.type_code, |o| {
                o.extend_from_slice(&raw.value)
            });
        }
    }
}
