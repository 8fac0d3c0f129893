//! Prints how many puts per second a [`kv::Store`] applies: 1,000,000 puts of 16-byte
//! keys (100,000 distinct keys, so each is overwritten ten times) with 64-byte values
//! without read views; the time one clone of that store takes; and puts per second with
//! a view (a clone of the store) taken after every batch of 64 puts, as a server
//! publishing a read view after each apply batch would (over [`VIEW_PUT_COUNT`] puts:
//! while a clone copies the whole store, that rate falls with the store's size).
//!
//! Run with `cargo run --release -p raftkv-kv --example put_rate`.

use std::time::Instant;

use kv::{Command, Operation, Store};
use proto::etcdserverpb::PutRequest;

/// Puts applied per measurement.
const PUT_COUNT: u64 = 1_000_000;
/// Distinct keys written.
const KEY_COUNT: u64 = 100_000;
/// Puts applied in the measurement with read views.
const VIEW_PUT_COUNT: u64 = 50_000;
/// Puts between two read views in the second measurement.
const BATCH_PUTS: u64 = 64;

fn put_command(sequence: u64) -> Command {
    let key = format!("key-{:012}", sequence % KEY_COUNT);
    let put = PutRequest { key: key.into_bytes().into(), value: vec![b'v'; 64].into(), ..Default::default() };
    Command::new(Operation::Put(put))
}

/// Applies [`PUT_COUNT`] puts; with `view_every` set, clones the store that often and
/// keeps the newest clone alive (as a reader holding the latest view would).
fn measure(put_count: u64, view_every: Option<u64>) -> (f64, Store) {
    let commands: Vec<Command> = (0..put_count).map(put_command).collect();
    let mut store = Store::default();
    let mut view = None;
    let started = Instant::now();
    for (offset, command) in commands.iter().enumerate() {
        let index = offset as u64 + 1;
        let applied = store.apply(index, command);
        assert!(applied.result.is_ok(), "every put succeeds");
        if view_every.is_some_and(|every| index.is_multiple_of(every)) {
            view = Some(store.clone());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(store.current_revision(), put_count as i64 + 1, "one revision per put");
    if let Some(view) = &view {
        assert!(view.current_revision() <= store.current_revision(), "a view never runs ahead");
    }
    (put_count as f64 / seconds, store)
}

fn main() {
    let (without_views, store) = measure(PUT_COUNT, None);
    println!("puts/s without read views ({PUT_COUNT} puts): {without_views:.0}");
    let started = Instant::now();
    let view = store.clone();
    let clone_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(view.current_revision(), store.current_revision(), "a clone is the same state");
    println!("one clone of a store of {} records: {clone_ms:.3} ms", store.record_count());
    for every in [1, 4, BATCH_PUTS] {
        let (with_views, _) = measure(VIEW_PUT_COUNT, Some(every));
        println!("puts/s with a read view every {every} puts ({VIEW_PUT_COUNT} puts): {with_views:.0}");
    }
}
