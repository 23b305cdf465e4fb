//! The core's timers: one deadline per key, kept in a heap; restarting or stopping a timer
//! leaves its old heap entry behind, skipped when it comes up. Deadlines are on tokio's clock, so
//! tests with paused time run them at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::speaker::core::TimerKey;

#[derive(Default)]
pub(super) struct Timers {
    deadlines: HashMap<TimerKey, Instant>,
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKey)>>,
    sequence: u64,
}

impl Timers {
    pub(super) fn start(&mut self, key: TimerKey, after: Duration) {
        let at = Instant::now() + after;
        self.sequence += 1;
        self.deadlines.insert(key, at);
        self.heap.push(Reverse((at, self.sequence, key)));
    }

    pub(super) fn stop(&mut self, key: TimerKey) {
        self.deadlines.remove(&key);
    }

    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, _, key))) = self.heap.peek() {
            if self.deadlines.get(key) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    pub(super) fn expired(&mut self, now: Instant) -> Vec<TimerKey> {
        let mut fired = Vec::new();
        while let Some(Reverse((at, _, key))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.deadlines.get(&key) == Some(&at) {
                self.deadlines.remove(&key);
                fired.push(key);
            }
        }
        fired
    }
}
