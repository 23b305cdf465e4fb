//! Packs routes that share one attribute set into as few UPDATEs as the session allows (4096
//! octets, or 65535 with extended messages), writing them back to back into one buffer ready for
//! the socket.
//!
//! IPv4 unicast routes with an IPv4 next hop go in the UPDATE's own NLRI and withdrawn routes
//! fields; every other case (IPv6, or IPv4 with an IPv6 next hop under RFC 8950) in
//! MP_REACH_NLRI / MP_UNREACH_NLRI, which is written first as RFC 7606 section 5.1 asks, always
//! with a two-octet length since it is not known before the routes are packed.

use std::borrow::Cow;

use super::attributes::{PathAttributes, attribute_flags, attribute_type};
use super::context::Context;
use super::error::EncodeError;
use super::family::Family;
use super::nlri::Nlri;
use super::update::NextHop;
use super::{HEADER_LEN, MessageType, patch_u16, write_header};

/// Builds packed UPDATEs for one session.
#[derive(Debug, Clone, Copy)]
pub struct UpdateBuilder<'a> {
    context: &'a Context,
}

impl<'a> UpdateBuilder<'a> {
    /// A builder for a session with the given negotiated context.
    pub fn new(context: &'a Context) -> Self {
        UpdateBuilder { context }
    }

    /// Appends UPDATEs announcing `routes` of `family` with `attributes` and `next_hop` to `out`,
    /// and returns how many messages were written. `attributes.next_hop` is ignored: the next hop
    /// is `next_hop`.
    pub fn announce(
        &self,
        family: Family,
        attributes: &PathAttributes,
        next_hop: NextHop,
        routes: &[Nlri],
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        if routes.is_empty() {
            return Ok(0);
        }
        let add_path = self.context.add_path_send.contains(family);
        let max = self.context.max_message_len();
        let classic = match next_hop {
            NextHop::V4(address) if family == Family::IPV4_UNICAST => Some(address),
            _ => None,
        };
        // The NEXT_HOP attribute carries IPv4 next hops of the NLRI field and is absent otherwise.
        let attributes = if attributes.next_hop == classic {
            Cow::Borrowed(attributes)
        } else {
            let mut owned = attributes.clone();
            owned.next_hop = classic;
            Cow::Owned(owned)
        };
        let mut encoded_attributes = Vec::with_capacity(64);
        attributes.encode(self.context, &mut encoded_attributes);

        let mut messages = 0;
        let mut rest = routes;
        while !rest.is_empty() {
            let start = out.len();
            write_header(out, MessageType::Update, 0);
            out.extend_from_slice(&[0, 0]);
            let attributes_at = out.len();
            out.extend_from_slice(&[0, 0]);
            let (mp_length_at, trailer) = if classic.is_some() {
                out.extend_from_slice(&encoded_attributes);
                (None, 0)
            } else {
                out.extend_from_slice(&[
                    attribute_flags::OPTIONAL | attribute_flags::EXTENDED_LENGTH,
                    attribute_type::MP_REACH_NLRI,
                    0,
                    0,
                ]);
                let at = out.len() - 2;
                out.extend_from_slice(&family.afi.0.to_be_bytes());
                out.push(family.safi.0);
                next_hop_bytes(&next_hop, out);
                out.push(0);
                (Some(at), encoded_attributes.len())
            };
            let before = rest.len();
            rest = pack(rest, add_path, out, start, max.saturating_sub(trailer));
            if rest.len() == before {
                // Not even one route fits beside these attributes.
                let length = out.len() - start + trailer;
                out.truncate(start);
                return Err(EncodeError::TooLong { length, max });
            }
            if let Some(at) = mp_length_at {
                let length = out.len() - at - 2;
                patch_u16(out, at, length);
                out.extend_from_slice(&encoded_attributes);
            }
            let length = out.len() - attributes_at - 2;
            patch_u16(out, attributes_at, length);
            if classic.is_some() {
                // The NLRI field follows the attributes: the attribute length covers only them.
                patch_u16(out, attributes_at, encoded_attributes.len());
            }
            let length = out.len() - start;
            patch_u16(out, start + 16, length);
            messages += 1;
        }
        Ok(messages)
    }

    /// Appends UPDATEs withdrawing `routes` of `family` to `out`, and returns how many messages
    /// were written.
    pub fn withdraw(
        &self,
        family: Family,
        routes: &[Nlri],
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let add_path = self.context.add_path_send.contains(family);
        let max = self.context.max_message_len();
        let mut messages = 0;
        let mut rest = routes;
        while !rest.is_empty() {
            let start = out.len();
            write_header(out, MessageType::Update, 0);
            if family == Family::IPV4_UNICAST {
                out.extend_from_slice(&[0, 0]);
                rest = pack(rest, add_path, out, start, max - 2);
                let length = out.len() - start - HEADER_LEN - 2;
                patch_u16(out, start + HEADER_LEN, length);
                out.extend_from_slice(&[0, 0]);
            } else {
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.extend_from_slice(&[
                    attribute_flags::OPTIONAL | attribute_flags::EXTENDED_LENGTH,
                    attribute_type::MP_UNREACH_NLRI,
                    0,
                    0,
                ]);
                out.extend_from_slice(&family.afi.0.to_be_bytes());
                out.push(family.safi.0);
                rest = pack(rest, add_path, out, start, max);
                let length = out.len() - start - HEADER_LEN - 4;
                patch_u16(out, start + HEADER_LEN + 2, length);
                let length = out.len() - start - HEADER_LEN - 8;
                patch_u16(out, start + HEADER_LEN + 6, length);
            }
            let length = out.len() - start;
            patch_u16(out, start + 16, length);
            messages += 1;
        }
        Ok(messages)
    }
}

/// Appends routes while the message starting at `start` stays within `limit`; returns the rest.
fn pack<'r>(
    routes: &'r [Nlri],
    add_path: bool,
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> &'r [Nlri] {
    let mut taken = 0;
    for route in routes {
        if out.len() - start + route.encoded_len(add_path) > limit {
            break;
        }
        route.encode(add_path, out);
        taken += 1;
    }
    routes.get(taken..).unwrap_or_default()
}

fn next_hop_bytes(next_hop: &NextHop, out: &mut Vec<u8>) {
    match next_hop {
        NextHop::V4(address) => {
            out.push(4);
            out.extend_from_slice(&address.octets());
        }
        NextHop::V6 { global, link_local } => {
            out.push(if link_local.is_some() { 32 } else { 16 });
            out.extend_from_slice(&global.octets());
            if let Some(link_local) = link_local {
                out.extend_from_slice(&link_local.octets());
            }
        }
    }
}
