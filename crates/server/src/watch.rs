//! The watch hub: the Raft loop publishes the events of every applied revision here,
//! and each watcher (see [`crate::grpc`]'s `Watch` service) subscribes.
//!
//! The channel is bounded ([`WATCH_CHANNEL_CAPACITY`] revisions). A watcher that falls
//! behind (lagged receiver) or sees a gap in revisions (e.g. after the node installed a
//! snapshot) reads the missing revisions from `kv::Store::history`, so it never skips
//! nor repeats an event: it tracks the next revision it expects and ignores published
//! revisions below it.

use std::sync::Arc;

use proto::mvccpb::Event;
use tokio::sync::broadcast;

/// How often idle watchers created with `progress_notify` hear of progress, unless
/// `--experimental-watch-progress-notify-interval` says otherwise (etcd: 10 minutes).
pub const PROGRESS_NOTIFY_INTERVAL_DEFAULT: std::time::Duration = std::time::Duration::from_secs(600);

/// Revisions buffered for slow watchers before they fall back to reading history.
pub const WATCH_CHANNEL_CAPACITY: usize = 4096;

/// The events of one applied revision.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedEvents {
    /// The store revision these events created.
    pub revision: i64,
    /// The events, in sub-revision order, each with `prev_kv`; empty only for a marker of
    /// [`WatchHub::publish_restored`].
    pub events: Vec<Event>,
}

/// Where applied events are published (cheap to clone).
#[derive(Clone, Debug)]
pub struct WatchHub {
    sender: broadcast::Sender<Arc<AppliedEvents>>,
}

impl Default for WatchHub {
    fn default() -> WatchHub {
        WatchHub::new()
    }
}

impl WatchHub {
    /// A hub with no subscribers.
    pub fn new() -> WatchHub {
        let (sender, _) = broadcast::channel(WATCH_CHANNEL_CAPACITY);
        WatchHub { sender }
    }

    /// Publishes the events of `revision` (nothing if there are none).
    pub fn publish(&self, revision: i64, events: Vec<Event>) {
        // Without subscribers nobody is watching: nothing to allocate or send.
        if events.is_empty() || self.sender.receiver_count() == 0 {
            return;
        }
        let _ = self.sender.send(Arc::new(AppliedEvents { revision, events }));
    }

    /// Tells watchers the store jumped to `revision` without publishing the revisions in
    /// between (a snapshot was installed): they read those from history.
    pub fn publish_restored(&self, revision: i64) {
        let _ = self.sender.send(Arc::new(AppliedEvents { revision, events: Vec::new() }));
    }

    /// A receiver of every revision published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.sender.subscribe()
    }
}
