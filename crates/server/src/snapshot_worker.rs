//! The log snapshot written off the Raft thread (issue 17): the Raft loop takes a
//! [`wal::SnapshotWriter`] and a read view of the store (both cheap), this worker streams
//! the view into the snapshot file on its own thread, and the loop installs the prepared
//! file ([`wal::Wal::install_snapshot`]: a rename, a marker record, two syncs) once the
//! worker wakes it. Ticks and heartbeats go on while the file is written.
//!
//! Rules:
//! - At most one snapshot is in flight ([`SnapshotWorker::start`] panics otherwise).
//! - The worker never touches the WAL: its result is handed back to the loop, which alone
//!   decides to install it (or discards it).
//! - Dropping the worker cancels a snapshot in flight (its next write fails) and waits for
//!   its thread; a prepared file that is never installed is removed on the next open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use wal::{PreparedSnapshot, SnapshotWriter, WalError};

/// A snapshot the worker finished writing (or failed to).
pub struct FinishedSnapshot {
    /// The snapshot's index.
    pub index: u64,
    /// When the loop started it (for `backend_snapshot_duration_seconds`).
    pub started: Instant,
    /// The prepared file, or why it could not be written.
    pub result: Result<PreparedSnapshot, WalError>,
}

/// A snapshot being written.
struct InFlight {
    index: u64,
    started: Instant,
    cancelled: Arc<AtomicBool>,
    thread: JoinHandle<Result<PreparedSnapshot, WalError>>,
}

/// Writes at most one log snapshot at a time on its own thread.
pub struct SnapshotWorker {
    /// Wakes the Raft loop when a snapshot is written (sends it an input).
    wake: Arc<dyn Fn() + Send + Sync>,
    in_flight: Option<InFlight>,
}

impl SnapshotWorker {
    /// A worker that calls `wake` (on its thread) each time a snapshot is written.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> SnapshotWorker {
        SnapshotWorker { wake: Arc::new(wake), in_flight: None }
    }

    /// True while a snapshot is being written (or written and not yet taken).
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts writing the snapshot of `view` (at the writer's index) with `writer`.
    pub fn start(&mut self, writer: SnapshotWriter, view: Arc<kv::Store>) -> std::io::Result<()> {
        assert!(self.in_flight.is_none(), "one snapshot in flight at most");
        let index = writer.meta().index;
        assert_eq!(view.applied_index(), index, "the view is at the snapshot index");
        let cancelled = Arc::new(AtomicBool::new(false));
        let (wake, worker_cancelled) = (self.wake.clone(), cancelled.clone());
        let thread = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let result = write_snapshot(writer, &view, &worker_cancelled);
            wake();
            result
        })?;
        self.in_flight = Some(InFlight { index, started: Instant::now(), cancelled, thread });
        Ok(())
    }

    /// The snapshot in flight, once its thread finished (never blocks).
    pub fn take_finished(&mut self) -> Option<FinishedSnapshot> {
        if !self.in_flight.as_ref()?.thread.is_finished() {
            return None;
        }
        let InFlight { index, started, thread, .. } = self.in_flight.take().expect("checked above");
        let result = thread
            .join()
            .unwrap_or_else(|_| Err(WalError::InvalidWrite(format!("the snapshot thread for index {index} panicked"))));
        assert!(self.in_flight.is_none(), "the worker is free again");
        Some(FinishedSnapshot { index, started, result })
    }
}

impl Drop for SnapshotWorker {
    fn drop(&mut self) {
        let Some(in_flight) = self.in_flight.take() else { return };
        in_flight.cancelled.store(true, Ordering::Relaxed);
        if let Ok(Ok(prepared)) = in_flight.thread.join() {
            prepared.discard();
        }
    }
}

/// Streams `view` into the writer's file; stops early (an error) once `cancelled` is set.
fn write_snapshot(
    writer: SnapshotWriter,
    view: &kv::Store,
    cancelled: &AtomicBool,
) -> Result<PreparedSnapshot, WalError> {
    let length_bytes = view.snapshot_length_bytes();
    writer.write_with(length_bytes, &mut |out| {
        let mut out = CancellableWriter { out, cancelled };
        view.write_snapshot(&mut out)
    })
}

/// A writer that fails once `cancelled` is set (a stopping node does not finish a snapshot).
struct CancellableWriter<'a> {
    out: &'a mut dyn std::io::Write,
    cancelled: &'a AtomicBool,
}

impl std::io::Write for CancellableWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("snapshot cancelled: the node is stopping"));
        }
        self.out.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::etcdserverpb::PutRequest;
    use raft::{ConfState, Entry, EntryKind};
    use wal::{SnapshotInstall, Wal, WalOptions};

    fn store_at(index: u64) -> kv::Store {
        let mut store = kv::Store::default();
        for applied in 1..=index {
            let key = format!("key{applied}").into_bytes();
            let put = PutRequest { key: key.into(), value: b"value".to_vec().into(), ..Default::default() };
            store.apply(applied, &kv::Command::new(kv::Operation::Put(put)));
        }
        store
    }

    #[test]
    fn a_snapshot_written_on_the_worker_installs_and_reopens() {
        let directory = tempfile::tempdir().unwrap();
        let conf = ConfState { voters: vec![1], learners: vec![], voters_outgoing: vec![] };
        let mut wal = Wal::create(directory.path(), WalOptions::new(1, 1), conf.clone()).unwrap();
        let entries: Vec<Entry> =
            (1..=10).map(|index| Entry { term: 1, index, kind: EntryKind::Normal, data: "e".into() }).collect();
        wal.append(&entries).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut worker = SnapshotWorker::new(move || sender.send(()).unwrap());
        let writer = wal.snapshot_writer(8, conf).unwrap().expect("8 is above the snapshot");
        worker.start(writer, Arc::new(store_at(8))).unwrap();
        assert!(worker.is_busy());
        receiver.recv().unwrap();
        // The thread ends right after its wake-up; bounded wait (10 s at most).
        let finished = (0..10_000).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            worker.take_finished()
        });
        let finished = finished.expect("the thread ends after its wake-up");
        assert_eq!(finished.index, 8);
        let installed = wal.install_snapshot(finished.result.unwrap()).unwrap();
        assert_eq!(installed, SnapshotInstall::Installed);
        drop(wal);
        let wal = Wal::open(directory.path(), WalOptions::new(1, 1)).unwrap();
        assert_eq!(raft::Storage::first_index(&wal), 9);
        let mut restored = kv::Store::default();
        raft::Snapshottable::restore(&mut restored, &raft::Storage::snapshot(&wal).unwrap().data).unwrap();
        assert_eq!(restored.applied_index(), 8);
    }
}
