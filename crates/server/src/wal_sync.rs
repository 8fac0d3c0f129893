//! The WAL's fsync on its own thread, so the Raft loop keeps working while the disk
//! syncs (docs/design.md, "Performance method": the leader's fsync in parallel with replication).
//!
//! The loop appends each `Ready` to the WAL (a `write` into the page cache, cheap) and
//! hands the [`wal::DetachedSync`] to this worker with the `Ready`'s persist sequence.
//! The worker syncs, then publishes the highest sequence that is durable; the loop then
//! calls `RawNode::on_persisted` with it. Requests that arrive while a sync runs are
//! served together by the next sync (group commit): the number of fsyncs adapts to the
//! disk's speed, not to the request rate.
//!
//! Invariants:
//! - The published durable sequence only grows, and a sequence is published only after
//!   a sync taken *after* its append returned (so its bytes are covered).
//! - At most one sync runs at a time, and pending handles are at most
//!   [`PENDING_HANDLES_MAX`] (one per segment a burst of appends touched; consecutive
//!   handles on the same segment are coalesced by keeping only the newest).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use wal::{DetachedSync, WalError};

/// Most sync handles waiting at once; appends beyond it wait for the worker (back-pressure).
pub const PENDING_HANDLES_MAX: usize = 64;

#[derive(Default)]
struct Pending {
    /// (persist sequence, handle), oldest first; sequences strictly increase.
    handles: Vec<(u64, DetachedSync)>,
    failure: Option<WalError>,
    stopping: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a request arrives, when the worker takes requests, and on stop.
    changed: Condvar,
    durable_sequence: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sync worker: a thread and the queue the Raft loop feeds it through.
pub struct SyncWorker {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyncWorker {
    /// Starts the worker. `on_durable(sequence, sync_seconds)` runs on the worker thread
    /// after each sync (to wake the Raft loop and record the fsync duration).
    pub fn start(on_durable: impl Fn(u64, f64) + Send + 'static) -> std::io::Result<SyncWorker> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
            durable_sequence: AtomicU64::new(0),
        });
        let worker_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || run_worker(&worker_shared, &on_durable))?;
        Ok(SyncWorker { shared, thread: Some(thread) })
    }

    /// Asks for everything appended up to persist sequence `sequence` to be made durable
    /// through `handle`. Blocks while [`PENDING_HANDLES_MAX`] handles wait.
    pub fn request(&self, sequence: u64, handle: DetachedSync) {
        let mut pending = self.shared.lock();
        assert!(pending.handles.last().is_none_or(|(last, _)| *last < sequence), "persist sequences increase");
        assert!(sequence > self.durable_sequence(), "a sequence is synced once");
        // A newer handle on the same segment covers the older one.
        if pending.handles.last().is_some_and(|(_, last)| last.path() == handle.path()) {
            pending.handles.pop();
        }
        while pending.handles.len() >= PENDING_HANDLES_MAX && pending.failure.is_none() {
            pending = self.shared.changed.wait(pending).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        pending.handles.push((sequence, handle));
        drop(pending);
        self.shared.changed.notify_all();
    }

    /// The highest persist sequence known durable.
    pub fn durable_sequence(&self) -> u64 {
        self.shared.durable_sequence.load(Ordering::Acquire)
    }

    /// The error of a failed sync, if any: the node must stop (durability is unknown).
    pub fn take_failure(&self) -> Option<WalError> {
        self.shared.lock().failure.take()
    }
}

impl Drop for SyncWorker {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_worker(shared: &Shared, on_durable: &dyn Fn(u64, f64)) {
    loop {
        let batch = {
            let mut pending = shared.lock();
            while pending.handles.is_empty() && !pending.stopping {
                pending = shared.changed.wait(pending).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if pending.handles.is_empty() {
                return; // stopping, nothing left to sync
            }
            std::mem::take(&mut pending.handles)
        };
        shared.changed.notify_all();
        let started = Instant::now();
        let highest = batch.last().map(|(sequence, _)| *sequence).expect("a batch is never empty");
        for (_, handle) in batch {
            if let Err(error) = handle.sync() {
                tracing::error!(%error, "WAL sync failed; the node must stop");
                shared.lock().failure = Some(error);
                shared.changed.notify_all();
                on_durable(shared.durable_sequence.load(Ordering::Acquire), 0.0);
                return;
            }
        }
        let previous = shared.durable_sequence.swap(highest, Ordering::AcqRel);
        assert!(previous < highest, "the durable sequence only grows");
        on_durable(highest, started.elapsed().as_secs_f64());
    }
}
