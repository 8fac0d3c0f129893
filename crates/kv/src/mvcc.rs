//! The multi-version record store: every stored revision of every key, indexed by
//! revision (for history and watch replay) and by key (for reads).

use imbl::OrdMap;

use proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::key_range::KeyRange;

/// A point in the store's history: `main` is etcd's revision (one per write
/// command), `sub` orders the changes made by one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The store revision (etcd's `mod_revision`).
    pub main: i64,
    /// Position of the change inside its main revision, from 0.
    pub sub: i64,
}

/// One stored change: a put (full key-value) or a deletion marker.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    /// For a deletion: only `key` and `mod_revision` are set.
    pub kv: KeyValue,
    /// True for a deletion marker.
    pub tombstone: bool,
}

/// A key in the key index: keys up to [`INLINE_KEY_BYTES`] live inside the B-tree node
/// itself, so a lookup compares keys without following a pointer per comparison (with
/// heap-allocated keys, those cache misses were most of a put's time in the store).
pub(crate) type IndexKey = smallvec::SmallVec<[u8; INLINE_KEY_BYTES]>;

/// A key's kept revisions, oldest first. Inline up to two: a key index node is copied
/// whenever the apply loop changes it after a read view was published, and a copy of an
/// inline list allocates nothing (most keys keep one or two revisions between compactions).
pub(crate) type Revisions = smallvec::SmallVec<[Revision; 2]>;

/// Keys of at most this many bytes are stored inline in the key index.
pub(crate) const INLINE_KEY_BYTES: usize = 24;

/// All kept revisions of all keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mvcc {
    records: OrdMap<Revision, Record>,
    key_index: OrdMap<IndexKey, Revisions>,
    /// Sum of the snapshot encoding sizes of all records (see [`Mvcc::stored_bytes`]).
    stored_bytes: u64,
}

impl Mvcc {
    /// The key's value as of `revision` (`i64::MAX` for the newest, including
    /// changes of the write in progress), or `None` if absent then.
    pub fn get_at(&self, key: &[u8], revision: i64) -> Option<&KeyValue> {
        let revisions = self.key_index.get(key)?;
        self.visible(revisions, revision)
    }

    fn visible(&self, revisions: &[Revision], revision: i64) -> Option<&KeyValue> {
        let count = revisions.partition_point(|stored| stored.main <= revision);
        let last = revisions.get(count.checked_sub(1)?)?;
        let record = self.records.get(last).expect("key index points at records");
        (!record.tombstone).then_some(&record.kv)
    }

    /// Every key of `range` present at `revision`, in key order.
    pub fn range_at<'a>(&'a self, range: &'a KeyRange, revision: i64) -> impl Iterator<Item = &'a KeyValue> + 'a {
        let entries = range.bounds().map(|bounds| self.key_index.range::<_, [u8]>(bounds));
        entries.into_iter().flatten().filter_map(move |(_, revisions)| self.visible(revisions, revision))
    }

    /// Stores a new version of `kv.key` at `revision`.
    pub fn insert(&mut self, revision: Revision, kv: KeyValue, tombstone: bool) {
        // The index owns a copy of the key (not a slice of the log entry the key was
        // decoded from), made only when the key is new.
        match self.key_index.get_mut(kv.key.as_ref()) {
            Some(revisions) => {
                assert!(revisions.last().is_none_or(|last| *last < revision), "revisions of a key only grow");
                revisions.push(revision);
            }
            None => {
                self.key_index.insert(IndexKey::from_slice(&kv.key), smallvec::smallvec![revision]);
            }
        }
        let record = Record { kv, tombstone };
        self.stored_bytes += crate::snapshot::record_field_bytes(&revision, &record);
        let previous = self.records.insert(revision, record);
        assert!(previous.is_none(), "a revision is written once");
    }

    /// Drops every version older than `revision` that is not the newest version at
    /// `revision`; deletion markers at or below `revision` are dropped too.
    pub fn compact(&mut self, revision: i64) {
        // The persistent map has no `retain`: visit a copy of the key list (compaction
        // is a full pass over the index either way).
        let keys: Vec<IndexKey> = self.key_index.keys().cloned().collect();
        for key in keys {
            let revisions = self.key_index.get_mut(&key).expect("listed keys are indexed");
            let count = revisions.partition_point(|stored| stored.main <= revision);
            let Some(newest_index) = count.checked_sub(1) else {
                continue;
            };
            let newest_is_tombstone = self.records[&revisions[newest_index]].tombstone;
            let drop_count = if newest_is_tombstone { count } else { newest_index };
            for dropped in revisions.drain(..drop_count) {
                let record = self.records.remove(&dropped).expect("key index points at records");
                let record_bytes = crate::snapshot::record_field_bytes(&dropped, &record);
                self.stored_bytes = self.stored_bytes.checked_sub(record_bytes).expect("removed bytes were counted");
            }
            if revisions.is_empty() {
                self.key_index.remove(&key);
            }
        }
        assert!(self.records.len() >= self.key_index.len(), "every indexed key has a record");
    }

    /// Events of main revisions `>= start`, whole revisions only, stopping once at
    /// least `max_events` were collected. Returns the events and the next main
    /// revision to read from.
    pub fn events_from(&self, start: i64, max_events: usize) -> (Vec<Event>, i64) {
        let mut events = Vec::new();
        let mut next = start;
        let from = Revision { main: start, sub: 0 };
        for (revision, record) in self.records.range(from..) {
            if revision.main != next && events.len() >= max_events {
                break;
            }
            next = revision.main;
            events.push(self.event_for(*revision, record));
        }
        if !events.is_empty() {
            next += 1;
        }
        (events, next)
    }

    fn event_for(&self, revision: Revision, record: &Record) -> Event {
        let previous = self.get_at(&record.kv.key, revision.main - 1).cloned();
        let kind = if record.tombstone { EventType::Delete } else { EventType::Put };
        Event { r#type: kind as i32, kv: Some(record.kv.clone()), prev_kv: previous }
    }

    /// All records in revision order.
    pub fn records(&self) -> impl Iterator<Item = (&Revision, &Record)> {
        self.records.iter()
    }

    /// Bytes all kept records take in a snapshot (the `records` field of
    /// `StoreSnapshot`), maintained on insert and compaction.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// Number of stored records (all versions of all keys).
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}
