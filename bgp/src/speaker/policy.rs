//! Import and export rules: what a speaker accepts from a peer and what it sends each peer, with
//! which attributes (RFC 4271 sections 5 and 9, RFC 4456 route reflection, RFC 1997 well-known
//! communities).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::config::{Filter, SpeakerConfig};
use crate::rib::table::RouteAttributes;
use crate::wire::{AsPath, AsSegment, Community, NextHop, SegmentType};

/// Why a received route was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Our AS is in the path (more often than allowas-in permits).
    AsPathLoop,
    /// ORIGINATOR_ID is our router id (RFC 4456 section 8).
    OriginatorLoop,
    /// Our cluster id is in CLUSTER_LIST (RFC 4456 section 8).
    ClusterLoop,
    /// The import filter refused the prefix.
    Filtered,
    /// The first AS is not the external peer's (RFC 4271 section 6.3).
    FirstAsMismatch,
}

/// The receiving side of an import decision.
#[derive(Debug, Clone, Copy)]
pub struct ImportRules<'a> {
    /// The speaker.
    pub speaker: &'a SpeakerConfig,
    /// The peer's AS.
    pub peer_asn: u32,
    /// The peer is external.
    pub external: bool,
    /// How often our AS may appear.
    pub allowas_in: u8,
    /// The peer's import filter.
    pub filter: Option<&'a Filter>,
}

/// Checks a received route.
pub fn import(
    prefix: IpNetwork,
    route: &RouteAttributes,
    rules: &ImportRules<'_>,
) -> Result<(), Rejection> {
    let attributes = &route.attributes;
    if let Some(path) = &attributes.as_path {
        let ours = path.asns().filter(|&asn| asn == rules.speaker.asn).count();
        if ours > usize::from(rules.allowas_in) {
            return Err(Rejection::AsPathLoop);
        }
        if rules.external {
            let first = path
                .segments
                .first()
                .filter(|s| s.segment_type == SegmentType::Sequence)
                .and_then(|s| s.asns.first());
            if first.is_some_and(|&asn| asn != rules.peer_asn) {
                return Err(Rejection::FirstAsMismatch);
            }
        }
    }
    if attributes.originator_id == Some(rules.speaker.router_id) {
        return Err(Rejection::OriginatorLoop);
    }
    if attributes
        .cluster_list
        .contains(&rules.speaker.cluster_id())
    {
        return Err(Rejection::ClusterLoop);
    }
    if rules.filter.is_some_and(|f| !f.accepts(prefix)) {
        return Err(Rejection::Filtered);
    }
    Ok(())
}

/// Where a path came from, as export cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSource {
    /// We originated it.
    pub local: bool,
    /// Learned from an external peer.
    pub external: bool,
    /// Learned from one of our route reflection clients.
    pub route_reflector_client: bool,
    /// The BGP identifier of the peer it came from (ORIGINATOR_ID when reflecting).
    pub router_id: Ipv4Addr,
}

/// The peer a route would be sent to.
#[derive(Debug, Clone, Copy)]
pub struct ExportTarget<'a> {
    /// The peer's AS.
    pub asn: u32,
    /// The peer is external.
    pub external: bool,
    /// The peer is one of our route reflection clients.
    pub route_reflector_client: bool,
    /// Always send our own address as next hop.
    pub next_hop_self: bool,
    /// Never replace the next hop, even toward an external peer.
    pub keep_original_next_hop: bool,
    /// Our IPv4 address for next-hop-self: the session's own, else the configured one, else
    /// one of the interface the session runs over.
    pub local_ipv4: Option<Ipv4Addr>,
    /// Our global IPv6 address for next-hop-self: the session's own, else the configured one,
    /// else one of the interface the session runs over.
    pub local_ipv6: Option<Ipv6Addr>,
    /// Our link-local address when the peer shares our link: the session's own, or the
    /// interface's when the session runs over IPv4 (RFC 2545: sent beside the global next hop).
    pub local_link_local: Option<Ipv6Addr>,
    /// The peer accepts IPv4 routes with IPv6 next hops (RFC 8950).
    pub ipv4_over_ipv6: bool,
    /// Communities added to everything sent.
    pub add_communities: &'a [Community],
    /// The peer's export filter.
    pub filter: Option<&'a Filter>,
}

/// Whether the route may be sent to the target at all.
pub fn may_export(
    prefix: IpNetwork,
    route: &RouteAttributes,
    source: &ExportSource,
    target: &ExportTarget<'_>,
) -> bool {
    let communities = &route.attributes.communities;
    if communities.contains(&Community::NO_ADVERTISE) {
        return false;
    }
    if target.external
        && (communities.contains(&Community::NO_EXPORT)
            || communities.contains(&Community::NO_EXPORT_SUBCONFED))
    {
        return false;
    }
    // iBGP split horizon, relaxed by route reflection (RFC 4456 section 6).
    if !source.local && !source.external && !target.external {
        let reflect = source.route_reflector_client || target.route_reflector_client;
        if !reflect {
            return false;
        }
    }
    // Sender-side loop check: the peer would reject a path holding its own AS.
    if target.external
        && route
            .attributes
            .as_path
            .as_ref()
            .is_some_and(|p| p.asns().any(|a| a == target.asn))
    {
        return false;
    }
    // A route needs a next hop the target can use (see [`export_next_hop`]).
    if export_next_hop(prefix, route, source, target).is_none() {
        return false;
    }
    target.filter.is_none_or(|f| f.accepts(prefix))
}

/// Our own next hop for routes of one family toward the target, if we have one it can use:
/// an IPv4 address for IPv4 routes (or an IPv6 one where RFC 8950 allows), IPv6 global with
/// link-local beside it for IPv6 routes (RFC 2545).
pub fn self_next_hop(ipv4: bool, target: &ExportTarget<'_>) -> Option<NextHop> {
    let v6 = match (target.local_ipv6, target.local_link_local) {
        (Some(global), link_local) => Some(NextHop::V6 { global, link_local }),
        // An unnumbered session: the link-local address stands in for the global one.
        (None, Some(link_local)) => Some(NextHop::V6 {
            global: link_local,
            link_local: Some(link_local),
        }),
        (None, None) => None,
    };
    if ipv4 {
        target
            .local_ipv4
            .map(NextHop::V4)
            .or(v6.filter(|_| target.ipv4_over_ipv6))
    } else {
        v6
    }
}

/// The next hop the target receives for a route, or `None` when there is none it could use:
/// our own is due (the route is ours, next-hop-self is set, or the target is external without
/// keep-original-next-hop) and we have no address of the route's family toward the target, or
/// an IPv4 route would carry an IPv6 next hop to a peer that did not ask for RFC 8950. Such a
/// route is not sent, rather than sent with a next hop the peer cannot reach.
pub fn export_next_hop(
    prefix: IpNetwork,
    route: &RouteAttributes,
    source: &ExportSource,
    target: &ExportTarget<'_>,
) -> Option<NextHop> {
    let use_self =
        source.local || target.next_hop_self || (target.external && !target.keep_original_next_hop);
    let next_hop = if use_self {
        self_next_hop(prefix.is_ipv4(), target)?
    } else {
        // A link-local next hop means nothing beyond the link it was learned on.
        match route.next_hop {
            NextHop::V6 { global, .. } => NextHop::V6 {
                global,
                link_local: None,
            },
            other => other,
        }
    };
    match (prefix, next_hop) {
        (IpNetwork::V4(_), NextHop::V6 { .. }) if !target.ipv4_over_ipv6 => None,
        _ => Some(next_hop),
    }
}

/// The attributes and next hop the target receives.
pub fn export_attributes(
    prefix: IpNetwork,
    route: &RouteAttributes,
    source: &ExportSource,
    target: &ExportTarget<'_>,
    speaker: &SpeakerConfig,
) -> RouteAttributes {
    let mut attributes = route.attributes.clone();
    attributes.next_hop = None;
    if target.external {
        let mut path = attributes.as_path.take().unwrap_or_default();
        match path.segments.first_mut() {
            Some(first)
                if first.segment_type == SegmentType::Sequence && first.asns.len() < 255 =>
            {
                first.asns.insert(0, speaker.asn);
            }
            _ => path.segments.insert(
                0,
                AsSegment {
                    segment_type: SegmentType::Sequence,
                    asns: vec![speaker.asn],
                },
            ),
        }
        attributes.as_path = Some(path);
        attributes.local_pref = None;
        attributes.originator_id = None;
        attributes.cluster_list.clear();
        // MED describes our AS's exits to a neighbour; one learned from another AS stays here.
        if !source.local {
            attributes.med = None;
        }
    } else {
        attributes.as_path.get_or_insert_with(AsPath::default);
        attributes
            .local_pref
            .get_or_insert(crate::rib::decision::DEFAULT_LOCAL_PREF);
        let reflecting = !source.local && !source.external;
        if reflecting {
            attributes.originator_id.get_or_insert(source.router_id);
            attributes.cluster_list.insert(0, speaker.cluster_id());
        }
    }
    for community in target.add_communities {
        if !attributes.communities.contains(community) {
            attributes.communities.push(*community);
        }
    }

    // `may_export` has refused routes without a usable next hop; should one come here anyway,
    // it keeps its own.
    let next_hop = export_next_hop(prefix, route, source, target).unwrap_or(route.next_hop);
    RouteAttributes {
        attributes,
        next_hop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Origin, PathAttributes};

    fn speaker() -> SpeakerConfig {
        SpeakerConfig::new(65001, Ipv4Addr::new(10, 0, 0, 1))
    }

    fn route(path: &[u32]) -> RouteAttributes {
        RouteAttributes {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence(path.to_vec())),
                med: Some(5),
                local_pref: Some(200),
                ..PathAttributes::default()
            },
            next_hop: NextHop::V4(Ipv4Addr::new(192, 0, 2, 9)),
        }
    }

    fn prefix() -> IpNetwork {
        "10.1.0.0/24".parse().unwrap()
    }

    fn learned(external: bool) -> ExportSource {
        ExportSource {
            local: false,
            external,
            route_reflector_client: false,
            router_id: Ipv4Addr::new(10, 0, 0, 7),
        }
    }

    fn target(external: bool) -> ExportTarget<'static> {
        ExportTarget {
            asn: if external { 65009 } else { 65001 },
            external,
            route_reflector_client: false,
            next_hop_self: false,
            keep_original_next_hop: false,
            local_ipv4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            local_ipv6: None,
            local_link_local: None,
            ipv4_over_ipv6: false,
            add_communities: &[],
            filter: None,
        }
    }

    fn rules(speaker: &SpeakerConfig, external: bool) -> ImportRules<'_> {
        ImportRules {
            speaker,
            peer_asn: 65002,
            external,
            allowas_in: 0,
            filter: None,
        }
    }

    #[test]
    fn a_path_holding_our_as_is_rejected_unless_allowas_in_permits() {
        let speaker = speaker();
        let looped = route(&[65002, 65001]);
        assert_eq!(
            import(prefix(), &looped, &rules(&speaker, true)),
            Err(Rejection::AsPathLoop)
        );
        let relaxed = ImportRules {
            allowas_in: 1,
            ..rules(&speaker, true)
        };
        assert_eq!(import(prefix(), &looped, &relaxed), Ok(()));
    }

    #[test]
    fn an_external_peer_must_put_its_own_as_first() {
        let speaker = speaker();
        assert_eq!(
            import(prefix(), &route(&[65003]), &rules(&speaker, true)),
            Err(Rejection::FirstAsMismatch)
        );
    }

    #[test]
    fn reflected_routes_that_looped_back_are_rejected() {
        let speaker = speaker();
        let mut ours = route(&[]);
        ours.attributes.originator_id = Some(speaker.router_id);
        assert_eq!(
            import(prefix(), &ours, &rules(&speaker, false)),
            Err(Rejection::OriginatorLoop)
        );
        let mut cluster = route(&[]);
        cluster.attributes.cluster_list = vec![speaker.cluster_id()];
        assert_eq!(
            import(prefix(), &cluster, &rules(&speaker, false)),
            Err(Rejection::ClusterLoop)
        );
    }

    #[test]
    fn an_import_filter_accepts_only_prefixes_in_its_ranges() {
        let speaker = speaker();
        let filter = Filter {
            ranges: vec![super::super::config::PrefixRange {
                prefix: "10.0.0.0/8".parse().unwrap(),
                min_length: 16,
                max_length: 26,
            }],
        };
        let rules = ImportRules {
            filter: Some(&filter),
            ..rules(&speaker, false)
        };
        assert_eq!(import(prefix(), &route(&[]), &rules), Ok(()));
        let outside: IpNetwork = "11.0.0.0/24".parse().unwrap();
        assert_eq!(
            import(outside, &route(&[]), &rules),
            Err(Rejection::Filtered)
        );
        let too_long: IpNetwork = "10.1.1.1/32".parse().unwrap();
        assert_eq!(
            import(too_long, &route(&[]), &rules),
            Err(Rejection::Filtered)
        );
    }

    #[test]
    fn internal_routes_are_not_passed_between_internal_peers_without_reflection() {
        assert!(!may_export(
            prefix(),
            &route(&[]),
            &learned(false),
            &target(false)
        ));
        let client = ExportTarget {
            route_reflector_client: true,
            ..target(false)
        };
        assert!(may_export(prefix(), &route(&[]), &learned(false), &client));
        let from_client = ExportSource {
            route_reflector_client: true,
            ..learned(false)
        };
        assert!(may_export(
            prefix(),
            &route(&[]),
            &from_client,
            &target(false)
        ));
    }

    #[test]
    fn well_known_communities_stop_export() {
        let mut no_export = route(&[65002]);
        no_export.attributes.communities = vec![Community::NO_EXPORT];
        assert!(!may_export(
            prefix(),
            &no_export,
            &learned(true),
            &target(true)
        ));
        let client = ExportTarget {
            route_reflector_client: true,
            ..target(false)
        };
        assert!(may_export(prefix(), &no_export, &learned(true), &client));
        let mut no_advertise = route(&[65002]);
        no_advertise.attributes.communities = vec![Community::NO_ADVERTISE];
        assert!(!may_export(
            prefix(),
            &no_advertise,
            &learned(true),
            &client
        ));
    }

    #[test]
    fn a_path_through_the_target_as_is_not_sent_to_it() {
        assert!(!may_export(
            prefix(),
            &route(&[65009, 65002]),
            &learned(true),
            &target(true)
        ));
    }

    #[test]
    fn export_to_an_external_peer_prepends_our_as_sets_next_hop_self_and_strips_internal_attributes()
     {
        let mut reflected = route(&[65002]);
        reflected.attributes.originator_id = Some(Ipv4Addr::new(1, 1, 1, 1));
        reflected.attributes.cluster_list = vec![Ipv4Addr::new(2, 2, 2, 2)];
        let out = export_attributes(
            prefix(),
            &reflected,
            &learned(true),
            &target(true),
            &speaker(),
        );
        assert_eq!(
            out.attributes.as_path,
            Some(AsPath::sequence([65001, 65002]))
        );
        assert_eq!(out.attributes.local_pref, None);
        assert_eq!(out.attributes.med, None);
        assert_eq!(out.attributes.originator_id, None);
        assert!(out.attributes.cluster_list.is_empty());
        assert_eq!(out.next_hop, NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn keep_original_next_hop_is_honoured_toward_external_peers() {
        let keep = ExportTarget {
            keep_original_next_hop: true,
            ..target(true)
        };
        let out = export_attributes(
            prefix(),
            &route(&[65002]),
            &learned(true),
            &keep,
            &speaker(),
        );
        assert_eq!(out.next_hop, NextHop::V4(Ipv4Addr::new(192, 0, 2, 9)));
    }

    #[test]
    fn export_to_an_internal_peer_keeps_the_next_hop_and_sets_local_pref() {
        let mut external = route(&[65002]);
        external.attributes.local_pref = None;
        let out = export_attributes(
            prefix(),
            &external,
            &learned(true),
            &target(false),
            &speaker(),
        );
        assert_eq!(out.next_hop, NextHop::V4(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(out.attributes.local_pref, Some(100));
        assert_eq!(out.attributes.as_path, Some(AsPath::sequence([65002])));
        let nhs = ExportTarget {
            next_hop_self: true,
            ..target(false)
        };
        let out = export_attributes(prefix(), &external, &learned(true), &nhs, &speaker());
        assert_eq!(out.next_hop, NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn reflection_sets_originator_id_and_prepends_the_cluster_id() {
        let from_client = ExportSource {
            route_reflector_client: true,
            ..learned(false)
        };
        let out = export_attributes(
            prefix(),
            &route(&[]),
            &from_client,
            &target(false),
            &speaker(),
        );
        assert_eq!(
            out.attributes.originator_id,
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
        assert_eq!(
            out.attributes.cluster_list,
            vec![Ipv4Addr::new(10, 0, 0, 1)]
        );
    }

    #[test]
    fn locally_originated_routes_go_out_with_our_next_hop_and_an_empty_internal_path() {
        let local = ExportSource {
            local: true,
            ..learned(false)
        };
        let mut own = route(&[]);
        own.attributes.as_path = None;
        let out = export_attributes(prefix(), &own, &local, &target(false), &speaker());
        assert_eq!(out.next_hop, NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(out.attributes.as_path, Some(AsPath::default()));
        let out = export_attributes(prefix(), &own, &local, &target(true), &speaker());
        assert_eq!(out.attributes.med, Some(5), "our own MED is sent");
    }

    #[test]
    fn configured_communities_are_added_once() {
        let add = [Community::new(65001, 1)];
        let tagging = ExportTarget {
            add_communities: &add,
            ..target(true)
        };
        let mut tagged = route(&[65002]);
        tagged.attributes.communities = vec![Community::new(65001, 1)];
        let out = export_attributes(prefix(), &tagged, &learned(true), &tagging, &speaker());
        assert_eq!(out.attributes.communities, vec![Community::new(65001, 1)]);
    }

    #[test]
    fn ipv6_next_hops_drop_the_link_local_address_beyond_its_link() {
        let mut v6 = route(&[65002]);
        v6.next_hop = NextHop::V6 {
            global: "2001:db8::9".parse().unwrap(),
            link_local: Some("fe80::9".parse().unwrap()),
        };
        let v6_prefix: IpNetwork = "2001:db8:1::/48".parse().unwrap();
        let out = export_attributes(v6_prefix, &v6, &learned(true), &target(false), &speaker());
        assert_eq!(
            out.next_hop,
            NextHop::V6 {
                global: "2001:db8::9".parse().unwrap(),
                link_local: None
            }
        );
    }

    #[test]
    fn next_hop_self_on_a_link_local_session_sends_global_and_link_local() {
        let local = ExportSource {
            local: true,
            ..learned(false)
        };
        let v6_prefix: IpNetwork = "2001:db8:1::/48".parse().unwrap();
        let numbered = ExportTarget {
            local_ipv6: Some("2001:db8::1".parse().unwrap()),
            local_link_local: Some("fe80::1".parse().unwrap()),
            ..target(true)
        };
        let out = export_attributes(v6_prefix, &route(&[]), &local, &numbered, &speaker());
        assert_eq!(
            out.next_hop,
            NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap())
            }
        );
        let unnumbered = ExportTarget {
            local_ipv6: None,
            ..numbered
        };
        let out = export_attributes(v6_prefix, &route(&[]), &local, &unnumbered, &speaker());
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(
            out.next_hop,
            NextHop::V6 {
                global: ll,
                link_local: Some(ll)
            }
        );
    }

    #[test]
    fn an_ipv4_route_gets_an_ipv6_next_hop_only_where_the_peer_asked_for_rfc_8950() {
        let over_ipv6 = ExportTarget {
            local_ipv4: None,
            local_ipv6: Some("2001:db8::1".parse().unwrap()),
            ..target(true)
        };
        let from = learned(true);
        assert!(!may_export(prefix(), &route(&[65002]), &from, &over_ipv6));
        let extended = ExportTarget {
            ipv4_over_ipv6: true,
            ..over_ipv6
        };
        assert!(may_export(prefix(), &route(&[65002]), &from, &extended));
        assert_eq!(
            export_next_hop(prefix(), &route(&[65002]), &from, &extended),
            Some(NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None
            })
        );
    }

    #[test]
    fn a_route_needing_our_next_hop_is_not_exported_without_an_address_of_its_family() {
        let v6_prefix: IpNetwork = "2001:db8:1::/48".parse().unwrap();
        let mut v6 = route(&[65002]);
        v6.next_hop = NextHop::V6 {
            global: "2001:db8::9".parse().unwrap(),
            link_local: None,
        };
        assert!(!may_export(v6_prefix, &v6, &learned(true), &target(true)));
        // Toward an internal peer the original next hop goes, so the route may.
        let client = ExportTarget {
            route_reflector_client: true,
            ..target(false)
        };
        assert!(may_export(v6_prefix, &v6, &learned(false), &client));
    }
}
