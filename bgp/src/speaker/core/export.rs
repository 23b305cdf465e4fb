//! What each peer is sent (RFC 4271 section 9.2): the export decision per path and target
//! (policy, iBGP split horizon and route reflection per RFC 4456, long-lived stale routes only to
//! peers that understand them per RFC 9494 section 4.5), the pending changes of each peer, and
//! their encoding. Peers that would be sent the same bytes form an update group and are encoded
//! for once; routes that share attributes are packed into one UPDATE, and End-of-RIB (RFC 4724)
//! and enhanced route refresh End markers (RFC 7313) follow the routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnetwork::IpNetwork;
use tracing::warn;

use super::{Core, LinkAddress, Outbox, Output, Peer, SpeakerEvent, append, family_of_prefix};
use crate::rib::table::{Attributes, Best, Change, Path, PeerId, RouteAttributes, path_flags};
use crate::speaker::config::{Filter, PeerConfig};
use crate::speaker::policy::{self, ExportSource, ExportTarget};
use crate::wire::{
    Community, Context, Family, Message, Nlri, RefreshSubtype, RouteRefresh, Update, UpdateBuilder,
};

/// What decides the bytes a peer is sent for the same changes: peers with equal keys form an
/// update group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    asn: u32,
    external: bool,
    route_reflector_client: bool,
    next_hop_self: bool,
    keep_original_next_hop: bool,
    ipv4_over_ipv6: bool,
    local: (
        Option<std::net::Ipv4Addr>,
        Option<std::net::Ipv6Addr>,
        Option<std::net::Ipv6Addr>,
    ),
    add_communities: Vec<Community>,
    filter: Option<Filter>,
    context: Context,
    families: Vec<Family>,
    long_lived: bool,
}

/// Encoded UPDATEs for a peer.
#[derive(Debug, Clone, Default)]
struct Encoded {
    bytes: Vec<u8>,
    messages: usize,
    advertised: u64,
    /// Messages that could not be built (see [`super::Counters::messages_not_encoded`]).
    not_encoded: u64,
}

/// Whether two outboxes hold the same changes (paths compared by identity).
fn same_outbox(a: &Outbox, b: &Outbox) -> bool {
    a.withdraw == b.withdraw
        && a.end_of_rib == b.end_of_rib
        && a.refresh_end == b.refresh_end
        && a.announce.len() == b.announce.len()
        && a.announce.iter().all(|(prefix, path)| {
            b.announce.get(prefix).is_some_and(|other| {
                Arc::ptr_eq(&path.attributes, &other.attributes)
                    && path.peer == other.peer
                    && path.flags == other.flags
            })
        })
}

/// What an export decision depends on when the target has no prefix filter.
#[derive(Debug, Clone)]
pub(super) struct ExportKey {
    attributes: Attributes,
    source: PeerId,
    flags: u8,
    family: Family,
    target: IpAddr,
}

impl ExportKey {
    fn matches(&self, path: &Path, family: Family, target: IpAddr) -> bool {
        Arc::ptr_eq(&self.attributes, &path.attributes)
            && self.source == path.peer
            && self.flags == path.flags
            && self.family == family
            && self.target == target
    }
}

impl Core {
    /// Queues every route the peer should have; with `old`, withdraws what the old policy sent
    /// and the new one does not.
    pub(super) fn reexport(&mut self, address: IpAddr, old: Option<&PeerConfig>) {
        if let Some(old) = old {
            let mut withdraw = Vec::new();
            let mut announce = Vec::new();
            let Some(peer) = self.peers.get(&address) else {
                return;
            };
            self.table.for_each_best(|prefix, paths| {
                let Some(best) = paths.first() else { return };
                let now_ok = self.exportable(prefix, best, peer, &peer.config);
                let was_ok = self.exportable(prefix, best, peer, old);
                if now_ok {
                    announce.push((prefix, best.clone()));
                } else if was_ok {
                    withdraw.push(prefix);
                }
            });
            let Some(peer) = self.peers.get_mut(&address) else {
                return;
            };
            for prefix in withdraw {
                peer.outbox.announce.remove(&prefix);
                peer.outbox.withdraw.insert(prefix);
            }
            for (prefix, path) in announce {
                peer.outbox.withdraw.remove(&prefix);
                peer.outbox.announce.insert(prefix, path);
            }
        } else {
            self.reexport_family(address, None);
        }
    }

    pub(super) fn reexport_family(&mut self, address: IpAddr, family: Option<Family>) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let mut announce = Vec::new();
        self.table.for_each_best(|prefix, paths| {
            if family.is_some_and(|f| family_of_prefix(prefix) != f) {
                return;
            }
            if let Some(best) = paths.first()
                && self.exportable(prefix, best, peer, &peer.config)
            {
                announce.push((prefix, best.clone()));
            }
        });
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        for (prefix, path) in announce {
            peer.outbox.withdraw.remove(&prefix);
            peer.outbox.announce.insert(prefix, path);
        }
    }

    fn source_of(&self, path: &Path) -> ExportSource {
        if path.peer == PeerId::LOCAL {
            return ExportSource {
                local: true,
                external: false,
                route_reflector_client: false,
                router_id: self.config.router_id,
            };
        }
        let peer = self.ids.get(&path.peer).and_then(|a| self.peers.get(a));
        ExportSource {
            local: false,
            external: peer.is_some_and(|p| p.config.is_external(self.config.asn)),
            route_reflector_client: peer.is_some_and(|p| p.config.route_reflector_client),
            router_id: peer
                .and_then(|p| p.negotiated.as_ref())
                .map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| {
                    n.peer_open.bgp_identifier
                }),
        }
    }

    fn target_of<'a>(&self, peer: &'a Peer, config: &'a PeerConfig) -> ExportTarget<'a> {
        let (mut local_ipv4, mut local_ipv6, mut local_link_local) = (None, None, None);
        let session = peer.local.map(|l| l.ip().to_canonical());
        match session {
            Some(IpAddr::V4(a)) => local_ipv4 = Some(a),
            Some(IpAddr::V6(a)) if a.is_unicast_link_local() => local_link_local = Some(a),
            Some(IpAddr::V6(a)) => local_ipv6 = Some(a),
            None => {}
        }
        // The other family's addresses come from the configuration, else from the interface the
        // session runs over; its link-local address goes beside them when the peer is on that
        // link (RFC 2545 section 2).
        let link = &peer.primary.link;
        let on_link = link.iter().any(|a| a.contains(config.address));
        let usable = |a: &&LinkAddress| {
            let ip = a.address;
            !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast())
        };
        let link_ipv4 = link.iter().filter(usable).find_map(|a| match a.address {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let link_ipv6 = |want_link_local: bool| {
            link.iter().filter(usable).find_map(|a| match a.address {
                IpAddr::V6(v6) if v6.is_unicast_link_local() == want_link_local => Some(v6),
                _ => None,
            })
        };
        local_ipv4 = local_ipv4.or(config.next_hop_ipv4).or(link_ipv4);
        local_ipv6 = local_ipv6.or(config.next_hop_ipv6).or(link_ipv6(false));
        if matches!(session, Some(IpAddr::V4(_))) && on_link {
            local_link_local = local_link_local.or(link_ipv6(true));
        }
        ExportTarget {
            asn: config.asn,
            external: config.is_external(self.config.asn),
            route_reflector_client: config.route_reflector_client,
            next_hop_self: config.next_hop_self,
            keep_original_next_hop: config.keep_original_next_hop,
            local_ipv4,
            local_ipv6,
            local_link_local,
            ipv4_over_ipv6: peer
                .negotiated
                .as_ref()
                .is_some_and(|n| n.ipv4_over_ipv6_next_hop),
            add_communities: &config.add_communities,
            filter: config.export.as_ref(),
        }
    }

    /// Says once per family, when a session comes up, that routes of the family needing our
    /// next hop will not be sent because we have no address of the family the peer can use.
    pub(super) fn warn_missing_next_hops(&self, address: IpAddr) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let Some(negotiated) = &peer.negotiated else {
            return;
        };
        let target = self.target_of(peer, &peer.config);
        for family in &negotiated.families {
            let ipv4 = *family == Family::IPV4_UNICAST;
            if policy::self_next_hop(ipv4, &target).is_none() {
                warn!(
                    peer = %address,
                    afi_safi = %family,
                    "no address of this family of ours the peer can use as next hop; routes that need one are not sent"
                );
            }
        }
    }

    fn exportable(&self, prefix: IpNetwork, path: &Path, peer: &Peer, config: &PeerConfig) -> bool {
        if path.peer == peer.id {
            return false;
        }
        let family = family_of_prefix(prefix);
        let negotiated = peer.negotiated.as_ref();
        if !negotiated.is_some_and(|n| n.families.contains(&family)) {
            return false;
        }
        // Long-lived stale routes only go to peers that understand them (RFC 9494 section 4.5).
        if path.flags & path_flags::LLGR_STALE != 0
            && negotiated.is_some_and(|n| n.long_lived_graceful_restart.is_empty())
        {
            return false;
        }
        policy::may_export(
            prefix,
            &path.attributes,
            &self.source_of(path),
            &self.target_of(peer, config),
        )
    }

    /// Sends every established peer the current best of `prefix` again, or withdraws it where
    /// it may no longer go (a path turned long-lived stale).
    pub(super) fn reannounce(&mut self, prefix: IpNetwork) {
        let best = self.table.paths(prefix).first().cloned();
        let targets: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_established())
            .map(|(a, _)| *a)
            .collect();
        for address in targets {
            let Some(peer) = self.peers.get(&address) else {
                continue;
            };
            let send = best
                .as_ref()
                .filter(|p| self.exportable(prefix, p, peer, &peer.config))
                .cloned();
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            match send {
                Some(path) => {
                    peer.outbox.withdraw.remove(&prefix);
                    peer.outbox.announce.insert(prefix, path);
                }
                None => {
                    peer.outbox.announce.remove(&prefix);
                    peer.outbox.withdraw.insert(prefix);
                }
            }
        }
    }

    pub(super) fn report_best(&mut self, prefix: IpNetwork, best: Option<Best>) {
        if !self.report_best_paths {
            return;
        }
        let sources = best
            .iter()
            .flat_map(|b| b.paths.iter())
            .map(|p| self.ids.get(&p.peer).copied())
            .collect();
        self.out.push(Output::Event(SpeakerEvent::BestPath {
            prefix,
            best,
            sources,
        }));
    }

    /// Tells subscribers and queues the change for every established peer.
    pub(super) fn propagate(&mut self, prefix: IpNetwork, change: Change) {
        let current = change
            .current
            .as_ref()
            .and_then(|b| b.paths.first())
            .cloned();
        for index in 0..self.established.len() {
            let Some(address) = self.established.get(index).copied() else {
                break;
            };
            let announce = current
                .as_ref()
                .filter(|p| self.exportable_cached(prefix, p, address))
                .cloned();
            let withdraw = announce.is_none()
                && change
                    .previous
                    .as_ref()
                    .is_some_and(|p| self.exportable_cached(prefix, p, address));
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            if let Some(path) = announce {
                peer.outbox.withdraw.remove(&prefix);
                peer.outbox.announce.insert(prefix, path);
            } else if withdraw {
                peer.outbox.announce.remove(&prefix);
                peer.outbox.withdraw.insert(prefix);
            }
        }
        self.report_best(prefix, change.current);
    }

    /// [`Core::exportable`], remembering the last answer per attributes, source and target when
    /// the target has no prefix filter (only then does the answer not depend on the prefix).
    fn exportable_cached(&mut self, prefix: IpNetwork, path: &Path, address: IpAddr) -> bool {
        let Some(peer) = self.peers.get(&address) else {
            return false;
        };
        if peer.config.export.is_some() {
            return self.exportable(prefix, path, peer, &peer.config);
        }
        let family = family_of_prefix(prefix);
        if let Some((key, answer)) = &self.export_cache
            && key.matches(path, family, address)
        {
            return *answer;
        }
        let answer = self.exportable(prefix, path, peer, &peer.config);
        let key = ExportKey {
            attributes: path.attributes.clone(),
            source: path.peer,
            flags: path.flags,
            family,
            target: address,
        };
        self.export_cache = Some((key, answer));
        answer
    }

    /// Turns every peer's outbox into packed UPDATEs.
    pub(super) fn flush(&mut self) {
        let ready: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                let o = &p.outbox;
                p.is_established()
                    && (!o.announce.is_empty()
                        || !o.withdraw.is_empty()
                        || !o.end_of_rib.is_empty()
                        || !o.refresh_end.is_empty())
            })
            .map(|(a, _)| *a)
            .collect();
        // Update groups: peers that would be sent the same bytes (same export policy, session
        // context and our address on the session) and have the same changes pending are
        // encoded for once.
        let mut groups: HashMap<GroupKey, Vec<IpAddr>> = HashMap::new();
        for address in ready {
            if let Some(key) = self.group_key(address) {
                groups.entry(key).or_default().push(address);
            }
        }
        for members in groups.into_values() {
            let mut encoded: Vec<(Outbox, Encoded)> = Vec::new();
            for address in members {
                let Some(peer) = self.peers.get_mut(&address) else {
                    continue;
                };
                let outbox = std::mem::take(&mut peer.outbox);
                let result = match encoded.iter().find(|(o, _)| same_outbox(o, &outbox)) {
                    Some((_, done)) => done.clone(),
                    None => {
                        let done = self.encode_outbox(address, &outbox);
                        encoded.push((outbox, done.clone()));
                        done
                    }
                };
                self.send_encoded(address, result);
            }
        }
    }

    fn group_key(&self, address: IpAddr) -> Option<GroupKey> {
        let peer = self.peers.get(&address)?;
        let negotiated = peer.negotiated.as_ref()?;
        let target = self.target_of(peer, &peer.config);
        Some(GroupKey {
            asn: target.asn,
            external: target.external,
            route_reflector_client: target.route_reflector_client,
            next_hop_self: target.next_hop_self,
            keep_original_next_hop: target.keep_original_next_hop,
            ipv4_over_ipv6: target.ipv4_over_ipv6,
            local: (
                target.local_ipv4,
                target.local_ipv6,
                target.local_link_local,
            ),
            add_communities: target.add_communities.to_vec(),
            filter: target.filter.cloned(),
            context: negotiated.context,
            families: negotiated.families.clone(),
            long_lived: !negotiated.long_lived_graceful_restart.is_empty(),
        })
    }

    fn send_encoded(&mut self, address: IpAddr, encoded: Encoded) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.counters.updates_sent += encoded.messages as u64;
        peer.counters.prefixes_advertised += encoded.advertised;
        peer.counters.messages_not_encoded += encoded.not_encoded;
        if let (Some(conn), false) = (peer.primary.conn, encoded.bytes.is_empty()) {
            self.out.push(Output::Send {
                conn,
                bytes: encoded.bytes,
            });
        }
    }

    /// Encodes a peer's pending changes into packed UPDATEs (and markers): withdrawals first,
    /// then announcements, then End-of-RIB and End-of-Route-Refresh markers. Routes whose
    /// UPDATE cannot be built (attributes too long for the session) are withdrawn instead, so
    /// the peer does not keep an older path for them; each failure is logged once and counted.
    fn encode_outbox(&self, address: IpAddr, outbox: &Outbox) -> Encoded {
        let Some(peer) = self.peers.get(&address) else {
            return Encoded::default();
        };
        let Some(negotiated) = peer.negotiated.as_ref() else {
            return Encoded::default();
        };
        let context = negotiated.context;
        let builder = UpdateBuilder::new(&context);
        let mut messages = 0usize;
        let mut not_encoded = 0u64;

        let mut withdrawals: HashMap<Family, Vec<Nlri>> = HashMap::new();
        for prefix in &outbox.withdraw {
            withdrawals
                .entry(family_of_prefix(*prefix))
                .or_default()
                .push(Nlri::new(*prefix));
        }

        // Group by source attributes, then export each group's attributes once.
        let mut groups: HashMap<(*const RouteAttributes, PeerId, Family), (Path, Vec<Nlri>)> =
            HashMap::new();
        for (prefix, path) in &outbox.announce {
            let key = (
                Arc::as_ptr(&path.attributes),
                path.peer,
                family_of_prefix(*prefix),
            );
            groups
                .entry(key)
                .or_insert_with(|| (path.clone(), Vec::new()))
                .1
                .push(Nlri {
                    path_id: context.add_path_send.contains(key.2).then_some(1),
                    prefix: *prefix,
                });
        }
        let target = self.target_of(peer, &peer.config);
        let mut advertised = 0u64;
        let mut announcements = Vec::new();
        for ((_, _, family), (path, routes)) in &groups {
            let source = self.source_of(path);
            let Some(first) = routes.first() else {
                continue;
            };
            let mut exported = policy::export_attributes(
                first.prefix,
                &path.attributes,
                &source,
                &target,
                &self.config,
            );
            if path.flags & path_flags::LLGR_STALE != 0
                && !exported
                    .attributes
                    .communities
                    .contains(&Community::LLGR_STALE)
            {
                exported.attributes.communities.push(Community::LLGR_STALE);
            }
            let start = announcements.len();
            match builder.announce(
                *family,
                &exported.attributes,
                exported.next_hop,
                routes,
                &mut announcements,
            ) {
                Ok(count) => {
                    messages += count;
                    advertised += routes.len() as u64;
                }
                Err(error) => {
                    // None of this group goes out, not even the UPDATEs that fitted.
                    announcements.truncate(start);
                    not_encoded += 1;
                    warn!(
                        peer = %address,
                        %error,
                        prefix = %first.prefix,
                        routes = routes.len(),
                        "cannot encode an UPDATE; withdrawing its routes instead"
                    );
                    let withdraw = withdrawals.entry(*family).or_default();
                    withdraw.extend(routes.iter().map(|n| Nlri::new(n.prefix)));
                }
            }
        }

        let mut bytes = Vec::new();
        for (family, routes) in &withdrawals {
            let start = bytes.len();
            match builder.withdraw(*family, routes, &mut bytes) {
                Ok(count) => messages += count,
                Err(error) => {
                    bytes.truncate(start);
                    not_encoded += 1;
                    warn!(peer = %address, %error, "cannot encode a withdrawal; not sent");
                }
            }
        }
        bytes.extend_from_slice(&announcements);
        let mut markers = outbox.end_of_rib.clone();
        markers.sort();
        for family in markers {
            if append(
                &Message::Update(Update::end_of_rib(family)),
                &context,
                &mut bytes,
                address,
            ) {
                messages += 1;
            } else {
                not_encoded += 1;
            }
        }
        for family in &outbox.refresh_end {
            let end = RouteRefresh {
                family: *family,
                subtype: RefreshSubtype::End,
            };
            if !append(&Message::RouteRefresh(end), &context, &mut bytes, address) {
                not_encoded += 1;
            }
        }
        Encoded {
            bytes,
            messages,
            advertised,
            not_encoded,
        }
    }
}
