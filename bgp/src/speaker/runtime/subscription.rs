//! Subscriptions to speaker events. Most subscribers share one bounded broadcast queue and are
//! resynchronised with the whole table when they fall too far behind; the one consumer that must
//! apply every change (the node agent programming the kernel) takes a lossless subscription, a
//! queue of its own that holds memory only while it is behind.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tracing::warn;

use super::{RouteEntry, Speaker};
use crate::speaker::core::SpeakerEvent;

/// The senders of lossless subscriptions, shared between the handle and the runtime.
pub(super) type LosslessSenders =
    Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<Vec<SpeakerEvent>>>>>;

impl Speaker {
    /// Subscribes to peer and route events. A subscriber that falls more than the event queue
    /// behind gets a resync (the whole table) instead of the events it missed.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            speaker: self.clone(),
            receiver: Receiver::Broadcast(self.events.subscribe()),
            lagged: false,
        }
    }

    /// Subscribes to every event, however far behind the reader falls: for the one consumer
    /// that must apply each change (the node agent programming the kernel). Its queue holds
    /// memory only while the reader is behind; a resync never happens.
    pub fn subscribe_lossless(&self) -> Subscription {
        let (sender, receiver) = mpsc::unbounded_channel();
        if let Ok(mut senders) = self.lossless.lock() {
            senders.push(sender);
        }
        Subscription {
            speaker: self.clone(),
            receiver: Receiver::Lossless(receiver, Vec::new().into_iter()),
            lagged: false,
        }
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The next event.
    Event(SpeakerEvent),
    /// The subscriber fell behind and events were lost: here is the whole table to start again
    /// from (every prefix and its ECMP set).
    Resync(Vec<RouteEntry>),
}

/// A stream of speaker events that never loses one silently.
#[derive(Debug)]
pub struct Subscription {
    speaker: Speaker,
    receiver: Receiver,
    /// [`Subscription::try_next`] saw the subscriber fall behind; the next call to
    /// [`Subscription::next`] resynchronises.
    lagged: bool,
}

/// Where a subscription's events come from.
#[derive(Debug)]
enum Receiver {
    /// The shared, bounded queue: a reader that falls behind is resynchronised.
    Broadcast(broadcast::Receiver<SpeakerEvent>),
    /// A queue of its own that loses nothing: the events of one input per message, and those
    /// of the last message not handed out yet.
    Lossless(
        mpsc::UnboundedReceiver<Vec<SpeakerEvent>>,
        std::vec::IntoIter<SpeakerEvent>,
    ),
}

impl Subscription {
    /// The next event if one is ready, without waiting (for taking a batch); `None` when none
    /// is, or when the subscriber fell behind, which the next [`Subscription::next`] answers
    /// with a resync.
    pub fn try_next(&mut self) -> Option<Notice> {
        if self.lagged {
            return None;
        }
        let receiver = match &mut self.receiver {
            Receiver::Broadcast(receiver) => receiver,
            Receiver::Lossless(receiver, pending) => loop {
                if let Some(event) = pending.next() {
                    return Some(Notice::Event(event));
                }
                *pending = receiver.try_recv().ok()?.into_iter();
            },
        };
        match receiver.try_recv() {
            Ok(event) => Some(Notice::Event(event)),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                warn!(missed, "subscriber fell behind; resynchronising");
                self.lagged = true;
                None
            }
            Err(_) => None,
        }
    }

    /// The next notice; `None` once the speaker stopped.
    pub async fn next(&mut self) -> Option<Notice> {
        let receiver = match &mut self.receiver {
            Receiver::Broadcast(receiver) => receiver,
            Receiver::Lossless(receiver, pending) => loop {
                if let Some(event) = pending.next() {
                    return Some(Notice::Event(event));
                }
                *pending = receiver.recv().await?.into_iter();
            },
        };
        let received = if self.lagged {
            self.lagged = false;
            Err(broadcast::error::RecvError::Lagged(0))
        } else {
            receiver.recv().await
        };
        match received {
            Ok(event) => Some(Notice::Event(event)),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                if missed > 0 {
                    warn!(missed, "subscriber fell behind; resynchronising");
                }
                // Take a fresh receiver first, so nothing after the snapshot is missed.
                *receiver = receiver.resubscribe();
                self.speaker.all_routes().await.ok().map(Notice::Resync)
            }
        }
    }
}
