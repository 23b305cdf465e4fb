//! Routes into the Loc-RIB: UPDATEs from peers (RFC 4271 section 9.1, with RFC 4760 for IPv6 and
//! RFC 7606 treat-as-withdraw, and RFC 4271 section 6.3: a next hop that is our own address on the
//! session withdraws too), import policy, our own originated prefixes, the max-prefix limit
//! (Cease subcode 1, RFC 4486 section 4), and route refresh requests from peers (RFC 2918, with
//! the Begin and End markers of enhanced route refresh, RFC 7313).

use std::net::IpAddr;

use tokio::time::Instant;
use tracing::{debug, warn};

use ipnetwork::IpNetwork;

use super::{Core, Output, SpeakerEvent, TimerKey, append, family_of_prefix};
use crate::fsm::{Event, Timer};
use crate::rib::table::{Attributes, Path, PeerId, RouteAttributes};
use crate::speaker::config::MaxPrefixAction;
use crate::speaker::policy::{self, ImportRules};
use crate::wire::{
    Community, Family, Message, NextHop, Nlri, Notification, Origin, PathAttributes,
    RefreshSubtype, RouteRefresh, Update, cease_subcode, code,
};

impl Core {
    /// Originates a prefix of our own (empty AS_PATH, origin IGP).
    pub(super) fn originate(&mut self, prefix: IpNetwork, communities: Vec<Community>) {
        let next_hop = match prefix {
            IpNetwork::V4(_) => NextHop::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpNetwork::V6(_) => NextHop::V6 {
                global: std::net::Ipv6Addr::UNSPECIFIED,
                link_local: None,
            },
        };
        let attributes = self.interner.intern(RouteAttributes {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(Default::default()),
                communities,
                ..PathAttributes::default()
            },
            next_hop,
        });
        let path = Path {
            attributes,
            peer: PeerId::LOCAL,
            path_id: 0,
            flags: 0,
        };
        let edit = self.table.insert(prefix, path);
        if let Some(change) = edit.change {
            self.propagate(prefix, change);
        }
    }

    /// Stops originating a prefix.
    pub(super) fn withdraw_local(&mut self, prefix: IpNetwork) {
        let edit = self.table.remove(prefix, PeerId::LOCAL, 0);
        if let Some(change) = edit.change {
            self.propagate(prefix, change);
        }
    }

    /// One UPDATE from an established peer.
    pub(super) fn update(&mut self, address: IpAddr, update: Update, now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.counters.updates_received += 1;
        if let Some(family) = update.end_of_rib_family() {
            self.end_of_rib(address, family);
            return;
        }
        let id = peer.id;
        let own_next_hop = peer.local.map(|l| l.ip()).and_then(|local| {
            let local = local.to_canonical();
            let classic = update
                .attributes
                .next_hop
                .filter(|_| !update.nlri.is_empty());
            let mp = update.mp_reach.as_ref().filter(|m| !m.nlri.is_empty());
            let ours = classic.is_some_and(|a| IpAddr::V4(a) == local)
                || mp.is_some_and(|m| next_hop_is(m.next_hop, local));
            ours.then_some(local)
        });
        let withdraw_all = update.treat_as_withdraw() || own_next_hop.is_some();
        if withdraw_all {
            peer.counters.updates_treated_as_withdraw += 1;
            match own_next_hop {
                Some(local) => debug!(
                    peer = %address,
                    next_hop = %local,
                    "UPDATE names our own address as next hop (RFC 4271 section 6.3); treated as withdraw"
                ),
                None => debug!(
                    peer = %address,
                    error = ?update.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "malformed UPDATE; treated as withdraw (RFC 7606)"
                ),
            }
        }
        let rules_peer = peer.config.clone();
        let external = rules_peer.is_external(self.config.asn);

        let mut withdrawn: Vec<Nlri> = update.withdrawn;
        if let Some(unreach) = update.mp_unreach {
            withdrawn.extend(unreach.withdrawn);
        }
        let mut announced: Vec<(Nlri, NextHop)> = Vec::new();
        let mut attributes = update.attributes;
        if let Some(next_hop) = attributes.next_hop.take() {
            announced.extend(update.nlri.iter().map(|n| (*n, NextHop::V4(next_hop))));
        } else {
            withdrawn.extend(update.nlri.iter().copied());
        }
        if let Some(reach) = update.mp_reach {
            announced.extend(reach.nlri.iter().map(|n| (*n, reach.next_hop)));
        }
        if withdraw_all {
            withdrawn.extend(announced.drain(..).map(|(n, _)| n));
        }
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.counters.prefixes_received += announced.len() as u64;
        }

        let mut accepted_delta: isize = 0;
        for nlri in withdrawn {
            let edit = self
                .table
                .remove(nlri.prefix, id, nlri.path_id.unwrap_or(0));
            accepted_delta -= edit.count as isize;
            if let Some(change) = edit.change {
                self.propagate(nlri.prefix, change);
            }
        }
        // The family of the last route that added to the count: the one that overflows.
        let mut grown = Family::IPV4_UNICAST;
        let mut interned: Option<(NextHop, Attributes)> = None;
        for (nlri, next_hop) in announced {
            let shared = match &interned {
                Some((hop, shared)) if *hop == next_hop => shared.clone(),
                _ => {
                    let shared = self.interner.intern(RouteAttributes {
                        attributes: attributes.clone(),
                        next_hop,
                    });
                    interned = Some((next_hop, shared.clone()));
                    shared
                }
            };
            let rules = ImportRules {
                speaker: &self.config,
                peer_asn: rules_peer.asn,
                external,
                allowas_in: rules_peer.allowas_in,
                filter: rules_peer.import.as_ref(),
            };
            let path_id = nlri.path_id.unwrap_or(0);
            let edit = if policy::import(nlri.prefix, &shared, &rules).is_ok() {
                let edit = self.table.insert(
                    nlri.prefix,
                    Path {
                        attributes: shared,
                        peer: id,
                        path_id,
                        flags: 0,
                    },
                );
                accepted_delta += edit.count as isize;
                if edit.count > 0 {
                    grown = family_of_prefix(nlri.prefix);
                }
                edit
            } else {
                let edit = self.table.remove(nlri.prefix, id, path_id);
                accepted_delta -= edit.count as isize;
                edit
            };
            if let Some(change) = edit.change {
                self.churn += 1;
                self.propagate(nlri.prefix, change);
            }
        }
        attributes = PathAttributes::default();
        drop(attributes);

        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.counters.prefixes_accepted = peer
            .counters
            .prefixes_accepted
            .saturating_add_signed(accepted_delta);
        self.check_max_prefix(address, grown, now);
    }

    /// Past the peer's limit: tell subscribers once, and with the restart action close the
    /// session with Cease, maximum number of prefixes reached (RFC 4486 section 4), naming
    /// `family`, the family whose routes went over.
    fn check_max_prefix(&mut self, address: IpAddr, family: Family, now: Instant) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let count = peer.counters.prefixes_accepted;
        if let Some(max) = peer.config.max_prefix
            && let Some(threshold) = max.warning
        {
            let above = count > threshold as usize;
            if above && !peer.max_prefix_threshold_warned {
                warn!(
                    peer = %address,
                    count,
                    threshold,
                    limit = max.limit,
                    "the peer's accepted prefixes passed the max-prefix warning threshold"
                );
            }
            peer.max_prefix_threshold_warned = above;
        }
        if let Some(max) = peer.config.max_prefix.filter(|m| count > m.limit as usize) {
            let warned = std::mem::replace(&mut peer.max_prefix_warned, true);
            let session = peer.primary.id;
            if !warned {
                self.emit(Output::Event(SpeakerEvent::MaxPrefixExceeded {
                    address,
                    count,
                    limit: max.limit,
                }));
            }
            if let MaxPrefixAction::Restart(delay) = max.action {
                // RFC 4486 section 4: AFI (2 octets), SAFI (1 octet), prefix upper bound (4).
                let mut data = Vec::with_capacity(7);
                data.extend_from_slice(&family.afi.0.to_be_bytes());
                data.push(family.safi.0);
                data.extend_from_slice(&max.limit.to_be_bytes());
                let notification =
                    Notification::new(code::CEASE, cease_subcode::MAXIMUM_PREFIXES_REACHED, data);
                self.fsm_event(address, session, Event::MessageError(notification), now);
                // The next attempt waits for the configured delay, not the damping time.
                let key = TimerKey::Fsm(session, Timer::IdleHold);
                if self.timers.contains(&key) {
                    self.emit(Output::StartTimer(key, delay));
                }
            }
        }
    }

    /// A route refresh request: send the family again, between Begin and End markers when
    /// enhanced route refresh was negotiated.
    pub(super) fn route_refresh(&mut self, address: IpAddr, refresh: RouteRefresh) {
        if refresh.subtype != RefreshSubtype::Request {
            return;
        }
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(negotiated) = &peer.negotiated else {
            return;
        };
        if !negotiated.families.contains(&refresh.family) {
            return;
        }
        let enhanced = negotiated.enhanced_route_refresh;
        let context = negotiated.context;
        if let (true, Some(conn)) = (enhanced, peer.primary.conn) {
            let begin = RouteRefresh {
                family: refresh.family,
                subtype: RefreshSubtype::Begin,
            };
            // The End marker goes only where the Begin marker went.
            let mut bytes = Vec::new();
            if append(&Message::RouteRefresh(begin), &context, &mut bytes, address) {
                self.out.push(Output::Send { conn, bytes });
                peer.outbox.refresh_end.push(refresh.family);
            } else {
                peer.counters.messages_not_encoded += 1;
            }
        }
        self.reexport_family(address, Some(refresh.family));
    }
}

/// Whether an MP_REACH_NLRI next hop is `address` (either of an IPv6 pair).
fn next_hop_is(next_hop: NextHop, address: IpAddr) -> bool {
    match (next_hop, address) {
        (NextHop::V4(hop), IpAddr::V4(a)) => hop == a,
        (NextHop::V6 { global, link_local }, IpAddr::V6(a)) => global == a || link_local == Some(a),
        _ => false,
    }
}
