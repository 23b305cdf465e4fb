//! Graceful restart, the helper side (RFC 4724) and long-lived graceful restart (RFC 9494).
//!
//! When a peer that advertised graceful restart loses its session without a NOTIFICATION (or
//! its hold timer expires, which is how a silent restart shows), its routes stay, marked stale,
//! and the restart timer runs. When it comes back, the stale routes of families whose
//! forwarding state it did not keep go at once; the rest go family by family as its
//! End-of-RIB markers arrive, or all together when the stale-routes timer runs out. When the
//! restart time runs out first, families with a long-lived stale time are kept as least
//! preferred (flagged LLGR_STALE, sent only to peers that understand it) for that time.

use std::net::IpAddr;
use std::time::Duration;

use super::{Core, Output, SpeakerEvent, TimerKey, family_of};
use crate::fsm::DownReason;
use crate::rib::table::{PeerId, path_flags};
use crate::wire::{Family, code};

impl Core {
    /// The session went down: keep the routes of a peer that can restart, unless it told us to
    /// drop them (a NOTIFICATION) or we are tearing the session down on purpose.
    pub(super) fn keep_or_drop_routes(&mut self, address: IpAddr, reason: &DownReason) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let restart_time = peer
            .graceful_restart
            .as_ref()
            .map_or(0, |gr| gr.restart_time);
        let restart_time = peer
            .config
            .max_restart_time
            .map_or(restart_time, |max| restart_time.min(max));
        let graceful = peer.enabled
            && (restart_time > 0 || peer.long_lived.iter().any(|(_, t)| *t > 0))
            && match reason {
                DownReason::ConnectionLost => true,
                DownReason::NotificationSent(n) => n.code == code::HOLD_TIMER_EXPIRED,
                DownReason::NotificationReceived(_) => false,
            };
        let id = peer.id;
        if graceful {
            peer.stale = true;
            self.table.flag_peer_paths(id, path_flags::STALE);
            self.emit(Output::StopTimer(TimerKey::StaleRoutes(address)));
            self.emit(Output::StartTimer(
                TimerKey::Restart(address),
                Duration::from_secs(u64::from(restart_time.max(1))),
            ));
        } else {
            peer.stale = false;
            self.drop_routes(id, |_| true);
        }
    }

    /// A restarting peer is back: its stale routes of families whose forwarding state it did
    /// not keep (`preserved` lists those it kept) go now, the others wait for End-of-RIB.
    pub(super) fn restarted(&mut self, address: IpAddr, id: PeerId, preserved: Vec<Family>) {
        self.emit(Output::StopTimer(TimerKey::Restart(address)));
        self.emit(Output::StopTimer(TimerKey::LongLivedStale(address)));
        self.drop_routes(id, move |p| {
            p.flags & path_flags::STALE != 0 && !preserved.contains(&family_of(p))
        });
        let stale_time = self.config.stale_routes_time;
        self.emit(Output::StartTimer(
            TimerKey::StaleRoutes(address),
            stale_time,
        ));
    }

    /// The peer finished sending a family (RFC 4724 section 2): its stale routes of that family
    /// that it did not send again go.
    pub(super) fn end_of_rib(&mut self, address: IpAddr, family: Family) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.eor_received.insert(family);
        let stale = peer.stale;
        self.emit(Output::Event(SpeakerEvent::EndOfRib { address, family }));
        if stale {
            self.sweep_stale(address, Some(family));
        }
    }

    /// The restart time ran out before the peer came back (RFC 4724 section 4.2); families with
    /// a long-lived stale time are kept, least preferred (RFC 9494 section 4.2).
    pub(super) fn restart_time_expired(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if peer.is_established() {
            return;
        }
        let long_lived = peer.long_lived.clone();
        let id = peer.id;
        let Some(longest) = long_lived.iter().map(|(_, t)| *t).max().filter(|t| *t > 0) else {
            self.sweep_stale(address, None);
            return;
        };
        let keep: Vec<Family> = long_lived
            .iter()
            .filter(|(_, t)| *t > 0)
            .map(|(f, _)| *f)
            .collect();
        self.drop_routes(id, move |p| {
            p.flags & path_flags::STALE != 0 && !keep.contains(&family_of(p))
        });
        self.emit(Output::StartTimer(
            TimerKey::LongLivedStale(address),
            Duration::from_secs(u64::from(longest)),
        ));
        for (prefix, change) in self.table.flag_peer_paths(id, path_flags::LLGR_STALE) {
            if let Some(change) = change {
                self.report_best(prefix, change.current);
            }
            self.reannounce(prefix);
        }
    }

    /// Drops stale paths of `family` (all families when `None`) after End-of-RIB or a timer.
    pub(super) fn sweep_stale(&mut self, address: IpAddr, family: Option<Family>) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let id = peer.id;
        if family.is_none() {
            peer.stale = false;
        }
        self.drop_routes(id, |p| {
            p.flags & (path_flags::STALE | path_flags::LLGR_STALE) != 0
                && family.is_none_or(|f| family_of(p) == f)
        });
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if let Some(negotiated) = &peer.negotiated
            && negotiated
                .families
                .iter()
                .all(|f| peer.eor_received.contains(f))
        {
            peer.stale = false;
            self.emit(Output::StopTimer(TimerKey::StaleRoutes(address)));
        }
    }
}
