//! Capabilities advertised in OPEN (RFC 5492).
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```
//! Known capabilities are decoded into typed values; any other is kept as raw bytes, because
//! RFC 5492 says an unknown capability is ignored, not refused.

use super::error::{Error, Reason, open_subcode};
use super::family::{Afi, Family, Safi};
use super::reader::Reader;

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    /// Multiprotocol extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Extended next hop encoding (RFC 8950).
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    /// Extended message (RFC 8654).
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// Graceful restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS numbers (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
    /// ADD-PATH (RFC 7911).
    pub const ADD_PATH: u8 = 69;
    /// Enhanced route refresh (RFC 7313).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// Long-lived graceful restart (RFC 9494).
    pub const LONG_LIVED_GRACEFUL_RESTART: u8 = 71;
    /// FQDN, the host and domain name FRR sends (draft-walton-bgp-hostname-capability).
    pub const FQDN: u8 = 73;
}

use capability_code as cc;

/// One capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// We can exchange routes of this family (RFC 4760 section 8).
    Multiprotocol(Family),
    /// We accept ROUTE-REFRESH (RFC 2918).
    RouteRefresh,
    /// We send BoRR and EoRR around a refresh (RFC 7313).
    EnhancedRouteRefresh,
    /// We accept messages up to 65535 octets (RFC 8654).
    ExtendedMessage,
    /// Our AS number, in four octets (RFC 6793).
    FourOctetAs(u32),
    /// Graceful restart (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// Long-lived graceful restart, per family (RFC 9494).
    LongLivedGracefulRestart(Vec<LongLivedGracefulRestartFamily>),
    /// ADD-PATH, per family (RFC 7911).
    AddPath(Vec<AddPathFamily>),
    /// Next hops of another address family, per NLRI family (RFC 8950).
    ExtendedNextHop(Vec<ExtendedNextHop>),
    /// Host and domain name (draft-walton-bgp-hostname-capability), sent by FRR.
    Fqdn {
        /// The host name.
        hostname: String,
        /// The domain name, often empty.
        domain: String,
    },
    /// A capability we do not know, or a known one we could not read as text, kept as sent.
    Unknown {
        /// The capability code.
        code: u8,
        /// The value octets.
        value: Vec<u8>,
    },
}

/// The graceful restart capability (RFC 4724 section 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted and is holding routes for us.
    pub restart_state: bool,
    /// N bit: the sender handles NOTIFICATIONs gracefully (RFC 8538).
    pub notification: bool,
    /// Seconds the sender needs to come back after a restart (12 bits).
    pub restart_time: u16,
    /// Families whose routes the sender keeps across a restart.
    pub families: Vec<GracefulRestartFamily>,
}

/// A family in the graceful restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// F bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// A family in the long-lived graceful restart capability (RFC 9494 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LongLivedGracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// F bit: forwarding state was preserved.
    pub forwarding_preserved: bool,
    /// Seconds stale routes are kept (24 bits).
    pub long_lived_stale_time: u32,
}

/// Whether a family's paths are sent, received or both with path identifiers (RFC 7911).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    /// 1: the sender can receive multiple paths.
    Receive,
    /// 2: the sender can send multiple paths.
    Send,
    /// 3: both.
    Both,
}

impl AddPathMode {
    /// Whether the sender of the capability will receive path identifiers.
    pub fn receives(self) -> bool {
        matches!(self, AddPathMode::Receive | AddPathMode::Both)
    }

    /// Whether the sender of the capability will send path identifiers.
    pub fn sends(self) -> bool {
        matches!(self, AddPathMode::Send | AddPathMode::Both)
    }
}

/// A family in the ADD-PATH capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathFamily {
    /// The family.
    pub family: Family,
    /// Send, receive or both.
    pub mode: AddPathMode,
}

/// An entry of the extended next hop capability (RFC 8950 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedNextHop {
    /// The NLRI's AFI.
    pub nlri_afi: Afi,
    /// The NLRI's SAFI, two octets wide in this capability.
    pub nlri_safi: u16,
    /// The AFI of the next hops the sender accepts for it.
    pub next_hop_afi: Afi,
}

impl Capability {
    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => cc::MULTIPROTOCOL,
            Capability::RouteRefresh => cc::ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => cc::ENHANCED_ROUTE_REFRESH,
            Capability::ExtendedMessage => cc::EXTENDED_MESSAGE,
            Capability::FourOctetAs(_) => cc::FOUR_OCTET_AS,
            Capability::GracefulRestart(_) => cc::GRACEFUL_RESTART,
            Capability::LongLivedGracefulRestart(_) => cc::LONG_LIVED_GRACEFUL_RESTART,
            Capability::AddPath(_) => cc::ADD_PATH,
            Capability::ExtendedNextHop(_) => cc::EXTENDED_NEXT_HOP,
            Capability::Fqdn { .. } => cc::FQDN,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Decodes the capabilities in one capabilities optional parameter.
    pub(crate) fn decode_all(value: &[u8], out: &mut Vec<Capability>) -> Result<(), Error> {
        let mut reader = Reader::new(value);
        while !reader.is_empty() {
            let (Some(code), Some(length)) = (reader.u8(), reader.u8()) else {
                return Err(malformed(0, value));
            };
            let Some(body) = reader.take(usize::from(length)) else {
                return Err(malformed(code, value));
            };
            let capability =
                Capability::decode_one(code, body).ok_or_else(|| malformed(code, value))?;
            out.push(capability);
        }
        Ok(())
    }

    /// Decodes one capability value; `None` when a known capability is malformed.
    fn decode_one(code: u8, body: &[u8]) -> Option<Capability> {
        let mut r = Reader::new(body);
        let capability = match code {
            cc::MULTIPROTOCOL => {
                let afi = r.u16()?;
                let _reserved = r.u8()?;
                Capability::Multiprotocol(Family {
                    afi: Afi(afi),
                    safi: Safi(r.u8()?),
                })
            }
            cc::ROUTE_REFRESH => Capability::RouteRefresh,
            cc::ENHANCED_ROUTE_REFRESH => Capability::EnhancedRouteRefresh,
            cc::EXTENDED_MESSAGE => Capability::ExtendedMessage,
            cc::FOUR_OCTET_AS => Capability::FourOctetAs(r.u32()?),
            cc::GRACEFUL_RESTART => {
                let head = r.u16()?;
                if !r.remaining().is_multiple_of(4) {
                    return None;
                }
                let mut families = Vec::with_capacity(r.remaining() / 4);
                while !r.is_empty() {
                    let family = Family {
                        afi: Afi(r.u16()?),
                        safi: Safi(r.u8()?),
                    };
                    let flags = r.u8()?;
                    families.push(GracefulRestartFamily {
                        family,
                        forwarding_preserved: flags & 0x80 != 0,
                    });
                }
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                })
            }
            cc::LONG_LIVED_GRACEFUL_RESTART => {
                if !r.remaining().is_multiple_of(7) {
                    return None;
                }
                let mut families = Vec::with_capacity(r.remaining() / 7);
                while !r.is_empty() {
                    let family = Family {
                        afi: Afi(r.u16()?),
                        safi: Safi(r.u8()?),
                    };
                    let flags = r.u8()?;
                    let [a, b, c] = r.array::<3>()?;
                    families.push(LongLivedGracefulRestartFamily {
                        family,
                        forwarding_preserved: flags & 0x80 != 0,
                        long_lived_stale_time: u32::from_be_bytes([0, a, b, c]),
                    });
                }
                Capability::LongLivedGracefulRestart(families)
            }
            cc::ADD_PATH => {
                if !r.remaining().is_multiple_of(4) {
                    return None;
                }
                let mut families = Vec::with_capacity(r.remaining() / 4);
                while !r.is_empty() {
                    let family = Family {
                        afi: Afi(r.u16()?),
                        safi: Safi(r.u8()?),
                    };
                    // RFC 7911 section 4 defines 1 to 3; a tuple with any other value is ignored.
                    let mode = match r.u8()? {
                        1 => AddPathMode::Receive,
                        2 => AddPathMode::Send,
                        3 => AddPathMode::Both,
                        _ => continue,
                    };
                    families.push(AddPathFamily { family, mode });
                }
                Capability::AddPath(families)
            }
            cc::EXTENDED_NEXT_HOP => {
                if !r.remaining().is_multiple_of(6) {
                    return None;
                }
                let mut entries = Vec::with_capacity(r.remaining() / 6);
                while !r.is_empty() {
                    entries.push(ExtendedNextHop {
                        nlri_afi: Afi(r.u16()?),
                        nlri_safi: r.u16()?,
                        next_hop_afi: Afi(r.u16()?),
                    });
                }
                Capability::ExtendedNextHop(entries)
            }
            cc::FQDN => {
                let hostname_len = usize::from(r.u8()?);
                let hostname = r.take(hostname_len)?;
                let domain_len = usize::from(r.u8()?);
                let domain = r.take(domain_len)?;
                match (std::str::from_utf8(hostname), std::str::from_utf8(domain)) {
                    (Ok(hostname), Ok(domain)) if r.is_empty() => Capability::Fqdn {
                        hostname: hostname.to_owned(),
                        domain: domain.to_owned(),
                    },
                    // Not text: keep the octets rather than refuse the session over a name.
                    _ => {
                        return Some(Capability::Unknown {
                            code,
                            value: body.to_vec(),
                        });
                    }
                }
            }
            _ => {
                return Some(Capability::Unknown {
                    code,
                    value: body.to_vec(),
                });
            }
        };
        // Fixed-size capabilities must not carry extra octets.
        r.is_empty().then_some(capability)
    }

    /// Appends code, length and value.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code());
        let length_at = out.len();
        out.push(0);
        match self {
            Capability::Multiprotocol(family) => {
                out.extend_from_slice(&family.afi.0.to_be_bytes());
                out.push(0);
                out.push(family.safi.0);
            }
            Capability::RouteRefresh
            | Capability::EnhancedRouteRefresh
            | Capability::ExtendedMessage => {}
            Capability::FourOctetAs(asn) => out.extend_from_slice(&asn.to_be_bytes()),
            Capability::GracefulRestart(gr) => {
                let mut head = gr.restart_time & 0x0fff;
                if gr.restart_state {
                    head |= 0x8000;
                }
                if gr.notification {
                    head |= 0x4000;
                }
                out.extend_from_slice(&head.to_be_bytes());
                for f in &gr.families {
                    out.extend_from_slice(&f.family.afi.0.to_be_bytes());
                    out.push(f.family.safi.0);
                    out.push(if f.forwarding_preserved { 0x80 } else { 0 });
                }
            }
            Capability::LongLivedGracefulRestart(families) => {
                for f in families {
                    out.extend_from_slice(&f.family.afi.0.to_be_bytes());
                    out.push(f.family.safi.0);
                    out.push(if f.forwarding_preserved { 0x80 } else { 0 });
                    let [_, a, b, c] = f.long_lived_stale_time.min(0x00ff_ffff).to_be_bytes();
                    out.extend_from_slice(&[a, b, c]);
                }
            }
            Capability::AddPath(families) => {
                for f in families {
                    out.extend_from_slice(&f.family.afi.0.to_be_bytes());
                    out.push(f.family.safi.0);
                    out.push(match f.mode {
                        AddPathMode::Receive => 1,
                        AddPathMode::Send => 2,
                        AddPathMode::Both => 3,
                    });
                }
            }
            Capability::ExtendedNextHop(entries) => {
                for e in entries {
                    out.extend_from_slice(&e.nlri_afi.0.to_be_bytes());
                    out.extend_from_slice(&e.nlri_safi.to_be_bytes());
                    out.extend_from_slice(&e.next_hop_afi.0.to_be_bytes());
                }
            }
            Capability::Fqdn { hostname, domain } => {
                for name in [hostname, domain] {
                    let name = name
                        .as_bytes()
                        .get(..name.len().min(255))
                        .unwrap_or_default();
                    out.push(name.len() as u8);
                    out.extend_from_slice(name);
                }
            }
            Capability::Unknown { value, .. } => out.extend_from_slice(value),
        }
        let length = out.len() - length_at - 1;
        if let Some(slot) = out.get_mut(length_at) {
            *slot = length.min(255) as u8;
        }
    }
}

/// RFC 4271 section 6.2: a recognised but malformed optional parameter gets subcode 0.
fn malformed(code: u8, parameter: &[u8]) -> Error {
    Error::open(
        Reason::MalformedCapability(code),
        open_subcode::UNSPECIFIC,
        parameter,
    )
}
