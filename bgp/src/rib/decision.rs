//! The BGP decision process (RFC 4271 section 9.1.2.2, with RFC 4456 for route reflection):
//! which of several paths to one prefix is best, which are equal enough to share traffic (ECMP),
//! and the criterion that decided.
//!
//! Steps, each keeping only the candidates that are best by it:
//! 1. locally originated paths;
//! 2. highest LOCAL_PREF (100 when absent);
//! 3. shortest AS_PATH (a set counts one, confederation segments nothing);
//! 4. lowest ORIGIN;
//! 5. lowest MED among paths from the same neighbouring AS (or among all, with always-compare);
//!    a missing MED counts as 0;
//! 6. paths from external peers over internal ones;
//! 7. (IGP cost to the next hop: tern has no IGP, all equal) — ECMP candidates are what is left;
//! 8. lowest ORIGINATOR_ID or, without one, peer BGP identifier;
//! 9. shortest CLUSTER_LIST;
//! 10. lowest peer address.
//!
//! Candidates are tracked as a bit set, so a decision allocates nothing; at most 64 paths per
//! prefix take part (more would be a configuration mistake; the rest are ignored).

use std::net::{IpAddr, Ipv4Addr};

use crate::wire::{Origin, PathAttributes, SegmentType};

/// LOCAL_PREF assumed when a path has none (RFC 4271 leaves it to policy; FRR and BIRD use 100).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Where a candidate path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Originated by this speaker (not learned from a peer).
    pub local: bool,
    /// Learned from an external (eBGP) peer.
    pub external: bool,
    /// The peer's BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// The peer's address.
    pub peer_address: IpAddr,
}

/// One path to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The path's attributes.
    pub attributes: &'a PathAttributes,
    /// Where it came from.
    pub source: Source,
}

/// Options of the decision process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Compare MED between paths from different neighbouring ASes too.
    pub always_compare_med: bool,
    /// The largest ECMP set (1 disables multipath).
    pub maximum_paths: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            always_compare_med: false,
            maximum_paths: 1,
        }
    }
}

/// The step that picked the best path over the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// There was only one path.
    OnlyPath,
    /// Locally originated.
    LocallyOriginated,
    /// Highest LOCAL_PREF.
    LocalPref,
    /// Shortest AS_PATH.
    AsPathLength,
    /// Lowest ORIGIN.
    Origin,
    /// Lowest MED.
    Med,
    /// External over internal.
    ExternalOverInternal,
    /// Lowest ORIGINATOR_ID or router id.
    RouterId,
    /// Shortest CLUSTER_LIST.
    ClusterListLength,
    /// Lowest peer address.
    PeerAddress,
}

impl Reason {
    /// A short text for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OnlyPath => "only path",
            Reason::LocallyOriginated => "locally originated",
            Reason::LocalPref => "local preference",
            Reason::AsPathLength => "AS path length",
            Reason::Origin => "origin",
            Reason::Med => "MED",
            Reason::ExternalOverInternal => "external over internal",
            Reason::RouterId => "router id",
            Reason::ClusterListLength => "cluster list length",
            Reason::PeerAddress => "peer address",
        }
    }
}

/// The outcome for one prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index of the best path in the candidates.
    pub best: usize,
    /// Indices of the ECMP set (bit i set: candidate i), best included.
    pub multipath: u64,
    /// What decided.
    pub reason: Reason,
}

impl Decision {
    /// The ECMP set's indices, best first then in candidate order.
    pub fn multipath_indices(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.best)
            .chain((0..64).filter(move |&i| i != self.best && self.multipath & (1 << i) != 0))
    }
}

fn local_pref(c: &Candidate<'_>) -> u32 {
    c.attributes.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn as_path_len(c: &Candidate<'_>) -> usize {
    c.attributes.as_path.as_ref().map_or(0, |p| p.len())
}

fn origin_rank(c: &Candidate<'_>) -> u8 {
    match c.attributes.origin {
        Some(Origin::Igp) => 0,
        Some(Origin::Egp) => 1,
        Some(Origin::Incomplete) | None => 2,
    }
}

/// The neighbouring AS for MED comparison: the first AS of the path's first AS_SEQUENCE; paths
/// with an empty path (internal routes) share the "local" neighbour 0.
fn neighbour_as(c: &Candidate<'_>) -> u32 {
    c.attributes
        .as_path
        .as_ref()
        .and_then(|p| p.segments.iter().find(|s| !s.segment_type.is_confed()))
        .filter(|s| s.segment_type == SegmentType::Sequence)
        .and_then(|s| s.asns.first().copied())
        .unwrap_or(0)
}

fn tie_break_id(c: &Candidate<'_>) -> Ipv4Addr {
    c.attributes
        .originator_id
        .unwrap_or(c.source.peer_router_id)
}

/// Keeps the candidates in `set` with the smallest `key`; returns the new set.
fn keep_min<K: Ord>(
    set: u64,
    candidates: &[Candidate<'_>],
    key: impl Fn(&Candidate<'_>) -> K,
) -> u64 {
    let members = || (0..candidates.len().min(64)).filter(move |&i| set & (1 << i) != 0);
    let Some(best) = members().filter_map(|i| candidates.get(i)).map(&key).min() else {
        return set;
    };
    members()
        .filter(|&i| candidates.get(i).is_some_and(|c| key(c) == best))
        .fold(0, |acc, i| acc | 1 << i)
}

/// Runs the decision process; `None` when there are no candidates.
pub fn decide(candidates: &[Candidate<'_>], options: &Options) -> Option<Decision> {
    let count = candidates.len().min(64);
    if count == 0 {
        return None;
    }
    if count == 1 {
        return Some(Decision {
            best: 0,
            multipath: 1,
            reason: Reason::OnlyPath,
        });
    }
    let all = if count == 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    let mut set = all;
    let mut reason = None;
    let mut step = |set: u64, next: u64, why: Reason| -> u64 {
        if next != set && reason.is_none() && next.count_ones() == 1 {
            reason = Some(why);
        }
        next
    };

    set = step(
        set,
        keep_min(set, candidates, |c| !c.source.local),
        Reason::LocallyOriginated,
    );
    set = step(
        set,
        keep_min(set, candidates, |c| std::cmp::Reverse(local_pref(c))),
        Reason::LocalPref,
    );
    set = step(
        set,
        keep_min(set, candidates, as_path_len),
        Reason::AsPathLength,
    );
    set = step(set, keep_min(set, candidates, origin_rank), Reason::Origin);
    // MED: within each neighbouring AS, only the lowest MED survives (RFC 4271 9.1.2.2 c).
    let med = |c: &Candidate<'_>| c.attributes.med.unwrap_or(0);
    let after_med = if options.always_compare_med {
        keep_min(set, candidates, med)
    } else {
        let mut kept = 0;
        for i in 0..count {
            if set & (1 << i) == 0 {
                continue;
            }
            let Some(c) = candidates.get(i) else { continue };
            let group = (0..count)
                .filter(|&j| set & (1 << j) != 0)
                .filter(|&j| {
                    candidates
                        .get(j)
                        .is_some_and(|o| neighbour_as(o) == neighbour_as(c))
                })
                .fold(0u64, |acc, j| acc | 1 << j);
            kept |= keep_min(group, candidates, med) & (1 << i);
        }
        kept
    };
    set = step(set, after_med, Reason::Med);
    set = step(
        set,
        keep_min(set, candidates, |c| !c.source.external),
        Reason::ExternalOverInternal,
    );
    let multipath_pool = set;
    set = step(
        set,
        keep_min(set, candidates, tie_break_id),
        Reason::RouterId,
    );
    set = step(
        set,
        keep_min(set, candidates, |c| c.attributes.cluster_list.len()),
        Reason::ClusterListLength,
    );
    set = step(
        set,
        keep_min(set, candidates, |c| c.source.peer_address),
        Reason::PeerAddress,
    );

    let best = set.trailing_zeros() as usize;
    // ECMP: the best plus the next equal paths in tie-break order, up to the maximum.
    let mut multipath = 1u64 << best;
    let mut rest = multipath_pool & !multipath;
    while multipath.count_ones() < options.maximum_paths.max(1) as u32 && rest != 0 {
        let mut pick = keep_min(rest, candidates, tie_break_id);
        pick = keep_min(pick, candidates, |c| c.attributes.cluster_list.len());
        pick = keep_min(pick, candidates, |c| c.source.peer_address);
        let next = pick & pick.wrapping_neg();
        multipath |= next;
        rest &= !next;
    }
    Some(Decision {
        best,
        multipath,
        reason: reason.unwrap_or(Reason::PeerAddress),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AsPath;

    fn source(n: u8, external: bool) -> Source {
        Source {
            local: false,
            external,
            peer_router_id: Ipv4Addr::new(10, 0, 0, n),
            peer_address: IpAddr::V4(Ipv4Addr::new(192, 168, 0, n)),
        }
    }

    fn attrs(path: &[u32]) -> PathAttributes {
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(path.to_vec())),
            ..PathAttributes::default()
        }
    }

    fn decide_on(list: &[(PathAttributes, Source)], options: Options) -> Decision {
        let candidates: Vec<Candidate<'_>> = list
            .iter()
            .map(|(a, s)| Candidate {
                attributes: a,
                source: *s,
            })
            .collect();
        decide(&candidates, &options).unwrap()
    }

    #[test]
    fn a_single_path_is_best_because_it_is_the_only_one() {
        let d = decide_on(&[(attrs(&[1]), source(1, true))], Options::default());
        assert_eq!((d.best, d.reason), (0, Reason::OnlyPath));
    }

    #[test]
    fn no_candidates_means_no_decision() {
        assert_eq!(decide(&[], &Options::default()), None);
    }

    #[test]
    fn a_locally_originated_path_beats_everything() {
        let mut local = source(9, false);
        local.local = true;
        let mut high = attrs(&[1]);
        high.local_pref = Some(500);
        let d = decide_on(
            &[(high, source(1, true)), (attrs(&[1, 2, 3]), local)],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::LocallyOriginated));
    }

    #[test]
    fn higher_local_pref_wins_over_a_shorter_as_path() {
        let mut preferred = attrs(&[1, 2, 3]);
        preferred.local_pref = Some(200);
        let d = decide_on(
            &[
                (attrs(&[1]), source(1, false)),
                (preferred, source(2, false)),
            ],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::LocalPref));
    }

    #[test]
    fn a_missing_local_pref_counts_as_100() {
        let mut low = attrs(&[1]);
        low.local_pref = Some(99);
        let d = decide_on(
            &[(low, source(1, false)), (attrs(&[1, 2]), source(2, false))],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::LocalPref));
    }

    #[test]
    fn the_shorter_as_path_wins_and_a_set_counts_as_one() {
        let mut with_set = attrs(&[1]);
        with_set
            .as_path
            .as_mut()
            .unwrap()
            .segments
            .push(crate::wire::AsSegment {
                segment_type: SegmentType::Set,
                asns: vec![7, 8, 9],
            });
        let d = decide_on(
            &[
                (attrs(&[1, 2, 3]), source(1, true)),
                (with_set, source(2, true)),
            ],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::AsPathLength));
    }

    #[test]
    fn igp_origin_beats_incomplete() {
        let mut incomplete = attrs(&[1]);
        incomplete.origin = Some(Origin::Incomplete);
        let d = decide_on(
            &[
                (incomplete, source(1, true)),
                (attrs(&[2]), source(2, true)),
            ],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::Origin));
    }

    #[test]
    fn lower_med_wins_between_paths_from_the_same_neighbour_as() {
        let mut a = attrs(&[1, 5]);
        a.med = Some(20);
        let mut b = attrs(&[1, 6]);
        b.med = Some(10);
        let d = decide_on(
            &[(a, source(1, true)), (b, source(2, true))],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::Med));
    }

    #[test]
    fn med_is_not_compared_across_neighbour_ases_unless_asked() {
        let mut a = attrs(&[1]);
        a.med = Some(20);
        let mut b = attrs(&[2]);
        b.med = Some(10);
        let list = [(a, source(1, true)), (b, source(2, true))];
        let d = decide_on(&list, Options::default());
        assert_eq!(
            (d.best, d.reason),
            (0, Reason::RouterId),
            "MED ignored; lower router id wins"
        );
        let d = decide_on(
            &list,
            Options {
                always_compare_med: true,
                ..Options::default()
            },
        );
        assert_eq!((d.best, d.reason), (1, Reason::Med));
    }

    #[test]
    fn a_missing_med_counts_as_zero() {
        let mut a = attrs(&[1]);
        a.med = Some(5);
        let d = decide_on(
            &[(a, source(1, true)), (attrs(&[1]), source(2, true))],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::Med));
    }

    #[test]
    fn external_paths_win_over_internal_ones() {
        let d = decide_on(
            &[
                (attrs(&[1]), source(1, false)),
                (attrs(&[1]), source(2, true)),
            ],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::ExternalOverInternal));
    }

    #[test]
    fn originator_id_stands_in_for_the_router_id_of_reflected_paths() {
        let mut reflected = attrs(&[1]);
        reflected.originator_id = Some(Ipv4Addr::new(10, 0, 0, 50));
        // The reflected path arrives from peer 1 (lower id) but originates at .50.
        let d = decide_on(
            &[
                (reflected, source(1, false)),
                (attrs(&[1]), source(9, false)),
            ],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::RouterId));
    }

    #[test]
    fn a_shorter_cluster_list_breaks_a_router_id_tie() {
        let mut long = attrs(&[1]);
        long.originator_id = Some(Ipv4Addr::new(10, 0, 0, 50));
        long.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)];
        let mut short = long.clone();
        short.cluster_list.truncate(1);
        let d = decide_on(
            &[(long, source(1, false)), (short, source(2, false))],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::ClusterListLength));
    }

    #[test]
    fn the_lowest_peer_address_is_the_last_tie_break() {
        let same_id = |n| Source {
            peer_router_id: Ipv4Addr::new(10, 0, 0, 1),
            ..source(n, true)
        };
        let d = decide_on(
            &[(attrs(&[1]), same_id(3)), (attrs(&[1]), same_id(2))],
            Options::default(),
        );
        assert_eq!((d.best, d.reason), (1, Reason::PeerAddress));
    }

    #[test]
    fn equal_paths_form_an_ecmp_set_up_to_the_maximum() {
        let list = [
            (attrs(&[1]), source(3, true)),
            (attrs(&[2]), source(1, true)),
            (attrs(&[3]), source(2, true)),
            (attrs(&[4, 5]), source(4, true)),
        ];
        let d = decide_on(
            &list,
            Options {
                maximum_paths: 8,
                ..Options::default()
            },
        );
        assert_eq!(d.best, 1);
        assert_eq!(
            d.multipath_indices().collect::<Vec<_>>(),
            vec![1, 0, 2],
            "longer path excluded"
        );
        let d = decide_on(
            &list,
            Options {
                maximum_paths: 2,
                ..Options::default()
            },
        );
        assert_eq!(
            d.multipath_indices().collect::<Vec<_>>(),
            vec![1, 2],
            "next best by router id"
        );
        let d = decide_on(&list, Options::default());
        assert_eq!(d.multipath, 1 << 1);
    }

    #[test]
    fn internal_and_external_paths_never_share_an_ecmp_set() {
        let list = [
            (attrs(&[1]), source(1, false)),
            (attrs(&[1]), source(2, true)),
        ];
        let d = decide_on(
            &list,
            Options {
                maximum_paths: 8,
                ..Options::default()
            },
        );
        assert_eq!(d.multipath, 1 << 1);
    }
}
