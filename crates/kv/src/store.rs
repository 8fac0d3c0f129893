//! [`Store`]: the deterministic etcd-semantics state machine.

use proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::command::{result_from_message, result_to_message, Command, Operation, Response};
use crate::error::Error;
use crate::key_range::KeyRange;
use crate::lease::{Leases, MAXIMUM_LEASE_TTL_SECONDS};
use crate::mvcc::{Mvcc, Revision};
use crate::session::{Lookup, Sessions, DEFAULT_MAXIMUM_SESSIONS};
use crate::txn::{check_duplicate_keys, check_put, check_txn_request};

/// Bytes a lease counts for in [`Store::size_bytes`] (etcd's quota counts 64 per grant).
pub const LEASE_BYTES: u64 = 64;

/// Reads "the newest version", including changes of the write in progress.
pub(crate) const NEWEST: i64 = i64::MAX;

/// Settings every replica must share (they influence what commands do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most compares, or operations per branch, in one transaction (etcd: 128).
    pub max_txn_operations: usize,
    /// Most client sessions remembered for deduplication.
    pub maximum_sessions: usize,
    /// Granted lease TTLs are raised to at least this, in seconds (etcd: 2 by default).
    pub minimum_lease_ttl_seconds: i64,
    /// Bounds history: when set to `Some(n)`, the store compacts itself (as part of
    /// applying a write, so deterministically) once more than `2 * n` revisions are
    /// kept, keeping the last `n`. `None` (default, as etcd) keeps history until an
    /// explicit compaction.
    pub history_retention_revisions: Option<i64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_txn_operations: 128,
            maximum_sessions: DEFAULT_MAXIMUM_SESSIONS,
            minimum_lease_ttl_seconds: 2,
            history_retention_revisions: None,
        }
    }
}

/// The outcome of applying one command.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The answer for the client (headers carry the store revision; the server fills
    /// in cluster id, member id and Raft term).
    pub result: Result<Response, Error>,
    /// The changes made, in revision order, each with `prev_kv`: feed them to watchers.
    pub events: Vec<Event>,
    /// Store revision after the command.
    pub revision: i64,
    /// True if the command was a retry answered from the session table (not re-applied).
    pub duplicate: bool,
}

/// Events read from history by [`Store::history`].
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Events in revision order, whole revisions only, each with `prev_kv` when kept.
    pub events: Vec<Event>,
    /// The revision to continue from.
    pub next_revision: i64,
}

/// Changes of the command being applied: they all share main revision `main`.
pub(crate) struct Write {
    main: i64,
    next_sub: i64,
    events: Vec<Event>,
}

impl Write {
    fn next_revision(&mut self) -> Revision {
        let revision = Revision { main: self.main, sub: self.next_sub };
        self.next_sub += 1;
        revision
    }

    fn changed(&self) -> bool {
        self.next_sub > 0
    }

    /// The newest revision a read inside this command sees.
    pub(crate) fn latest(&self, current_revision: i64) -> i64 {
        if self.changed() {
            self.main
        } else {
            current_revision
        }
    }
}

/// An etcd-semantics multi-version key-value store; see the crate documentation.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) config: Config,
    pub(crate) mvcc: Mvcc,
    pub(crate) leases: Leases,
    pub(crate) sessions: Sessions,
    pub(crate) current_revision: i64,
    pub(crate) compact_revision: i64,
    pub(crate) applied_index: u64,
    pub(crate) members: crate::members::Members,
    pub(crate) auth: crate::auth::AuthStore,
    pub(crate) alarms: crate::alarm::Alarms,
}

impl Default for Store {
    fn default() -> Store {
        Store::new(Config::default())
    }
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..ResponseHeader::default() })
}

impl Store {
    /// An empty store at revision 1 (etcd's first write makes revision 2).
    pub fn new(config: Config) -> Store {
        assert!(config.max_txn_operations > 0, "transactions need operations");
        let sessions = Sessions::new(config.maximum_sessions);
        Store {
            config,
            mvcc: Mvcc::default(),
            leases: Leases::default(),
            sessions,
            current_revision: 1,
            compact_revision: 0,
            applied_index: 0,
            members: crate::members::Members::default(),
            auth: crate::auth::AuthStore::default(),
            alarms: crate::alarm::Alarms::default(),
        }
    }

    /// The settings this store was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Log index of the last applied command (or skipped entry).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The store revision (etcd's header revision).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The last compaction revision (0 if never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Number of stored key versions (all kept history), e.g. for metrics.
    pub fn record_count(&self) -> usize {
        self.mvcc.record_count()
    }

    /// The bytes the store holds, as the space quota measures them: every kept revision
    /// of every key as it is encoded in a snapshot (key, value, revisions, lease) plus
    /// [`LEASE_BYTES`] per lease. Kept up to date on every change (no scan); compaction
    /// lowers it.
    pub fn size_bytes(&self) -> u64 {
        self.mvcc.stored_bytes() + self.leases.len() as u64 * LEASE_BYTES
    }

    /// Number of client sessions remembered for deduplication.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Records that log entry `index` carried no command (e.g. a no-op or a
    /// membership change), so snapshots report the right applied index.
    pub fn advance_applied_index(&mut self, index: u64) {
        assert!(index > self.applied_index, "log entries apply in order, once");
        self.applied_index = index;
    }

    /// Checks a command as etcd's API layer does, so a server can refuse it before
    /// proposing. [`Store::apply`] repeats these checks.
    pub fn validate(&self, command: &Command) -> Result<(), Error> {
        validate_operation(&command.operation, &self.config)
    }

    /// Applies the command of log entry `index` (indexes strictly increase). A retry
    /// of an already applied request id is answered from the session table.
    pub fn apply(&mut self, index: u64, command: &Command) -> Applied {
        self.advance_applied_index(index);
        if let Some(id) = command.request_id {
            let answer = match self.sessions.lookup(id.client_id, id.sequence) {
                Lookup::Fresh => None,
                Lookup::Duplicate(recorded) => {
                    Some(result_from_message(recorded).expect("recorded responses are valid"))
                }
                Lookup::Stale => Some(Err(Error::StaleRequest)),
            };
            if let Some(result) = answer {
                return Applied { result, events: Vec::new(), revision: self.current_revision, duplicate: true };
            }
        }
        let mut write = Write { main: self.current_revision + 1, next_sub: 0, events: Vec::new() };
        let user = command.auth.as_ref().map(|context| context.user.as_str());
        let authorized = if command.auth.is_some() { self.authorize(user, &command.operation) } else { Ok(()) };
        let mut result = self
            .alarms
            .refusal(&command.operation)
            .and(authorized)
            .and_then(|()| validate_operation(&command.operation, &self.config))
            .and_then(|()| self.execute(index, &command.operation, &mut write));
        if write.changed() {
            self.current_revision = write.main;
            self.compact_by_retention();
        }
        if let Ok(response) = &mut result {
            set_header_revision(response, self.current_revision);
        }
        if let Some(id) = command.request_id {
            let recorded = result_to_message(&result);
            self.sessions.record(id.client_id, id.sequence, index, recorded);
        }
        assert!(write.events.len() as i64 == write.next_sub, "one event per change");
        Applied { result, events: write.events, revision: self.current_revision, duplicate: false }
    }

    fn compact_by_retention(&mut self) {
        let Some(keep) = self.config.history_retention_revisions else {
            return;
        };
        assert!(keep > 0, "retention keeps at least one revision");
        if self.current_revision - self.compact_revision > keep.saturating_mul(2) {
            let revision = self.current_revision - keep;
            self.mvcc.compact(revision);
            self.compact_revision = revision;
        }
    }

    fn execute(&mut self, index: u64, operation: &Operation, write: &mut Write) -> Result<Response, Error> {
        match operation {
            Operation::Range(request) => self.range(request).map(Response::Range),
            Operation::Put(request) => self.put(request, write).map(Response::Put),
            Operation::DeleteRange(request) => Ok(Response::DeleteRange(self.delete_range(request, write))),
            Operation::Txn(request) => self.txn(request, write).map(Response::Txn),
            Operation::Compaction(request) => self.compact(request).map(Response::Compaction),
            Operation::LeaseGrant(request) => self.lease_grant(index, request).map(Response::LeaseGrant),
            Operation::LeaseRevoke(request) => self.lease_revoke(request, write).map(Response::LeaseRevoke),
            Operation::LeaseCheckpoint(request) => Ok(Response::LeaseCheckpoint(self.lease_checkpoint(request))),
            Operation::MemberUpdate(request) => Ok(Response::MemberUpdate(self.member_update(request))),
            Operation::Auth(request) => self.auth.apply(index, request).map(Response::Auth),
            Operation::Alarm(request) => Ok(Response::Alarm(self.apply_alarm(request))),
        }
    }

    /// Serves a range read from applied state (the server decides linearizability).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        if request.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        self.read_range(request, self.current_revision)
    }

    /// Range at `latest` = the newest revision visible to the caller.
    pub(crate) fn read_range(&self, request: &RangeRequest, latest: i64) -> Result<RangeResponse, Error> {
        let revision = self.check_read_revision(request.revision, latest)?;
        let order = effective_sort_order(request);
        let has_filters = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let keep_at_most = if order == SortOrder::None && !has_filters && limit > 0 { limit + 1 } else { usize::MAX };
        let range = KeyRange::new(&request.key, &request.range_end);
        let mut count = 0_i64;
        let mut kvs = Vec::new();
        for kv in self.mvcc.range_at(&range, revision) {
            count += 1;
            if request.count_only || kvs.len() >= keep_at_most || !passes_filters(request, kv) {
                continue;
            }
            kvs.push(kv.clone());
        }
        sort_key_values(&mut kvs, order, request.sort_target());
        let more = limit > 0 && kvs.len() > limit;
        if more {
            kvs.truncate(limit);
        }
        if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        assert!(kvs.len() as i64 <= count, "never more keys than matched");
        Ok(RangeResponse { header: header(latest), kvs, more, count })
    }

    pub(crate) fn check_read_revision(&self, requested: i64, latest: i64) -> Result<i64, Error> {
        if requested <= 0 {
            return Ok(latest);
        }
        if requested > latest {
            return Err(Error::FutureRevision);
        }
        if requested < self.compact_revision {
            return Err(Error::Compacted);
        }
        Ok(requested)
    }

    pub(crate) fn put(&mut self, request: &PutRequest, write: &mut Write) -> Result<PutResponse, Error> {
        let existing = self.mvcc.get_at(&request.key, NEWEST).cloned();
        let (value, lease) = resolve_put(request, existing.as_ref())?;
        if lease != 0 && !self.leases.contains(lease) {
            return Err(Error::LeaseNotFound);
        }
        let revision = write.next_revision();
        let (create_revision, version) = match &existing {
            Some(old) => (old.create_revision, old.version + 1),
            None => (revision.main, 1),
        };
        let kv =
            KeyValue { key: request.key.clone(), create_revision, mod_revision: revision.main, version, value, lease };
        let old_lease = existing.as_ref().map_or(0, |old| old.lease);
        self.leases.reattach(&request.key, old_lease, lease);
        self.mvcc.insert(revision, kv.clone(), false);
        write.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: existing.clone() });
        Ok(PutResponse { header: header(revision.main), prev_kv: existing.filter(|_| request.prev_kv) })
    }

    pub(crate) fn delete_range(&mut self, request: &DeleteRangeRequest, write: &mut Write) -> DeleteRangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let victims: Vec<KeyValue> = self.mvcc.range_at(&range, NEWEST).cloned().collect();
        for old in &victims {
            self.delete_key(old, write);
        }
        let deleted = victims.len() as i64;
        let revision = write.latest(self.current_revision);
        DeleteRangeResponse {
            header: header(revision),
            deleted,
            prev_kvs: if request.prev_kv { victims } else { Vec::new() },
        }
    }

    pub(crate) fn delete_key(&mut self, old: &KeyValue, write: &mut Write) {
        let revision = write.next_revision();
        let tombstone = KeyValue { key: old.key.clone(), mod_revision: revision.main, ..KeyValue::default() };
        self.leases.reattach(&old.key, old.lease, 0);
        self.mvcc.insert(revision, tombstone.clone(), true);
        write.events.push(Event { r#type: EventType::Delete as i32, kv: Some(tombstone), prev_kv: Some(old.clone()) });
    }
}

/// The value and lease a put stores, honouring `ignore_value` / `ignore_lease`.
pub(crate) fn resolve_put(request: &PutRequest, existing: Option<&KeyValue>) -> Result<(bytes::Bytes, i64), Error> {
    if (request.ignore_value || request.ignore_lease) && existing.is_none() {
        return Err(Error::KeyNotFound);
    }
    let value = match existing {
        Some(old) if request.ignore_value => old.value.clone(),
        _ => request.value.clone(),
    };
    let lease = match existing {
        Some(old) if request.ignore_lease => old.lease,
        _ => request.lease,
    };
    Ok((value, lease))
}

fn validate_operation(operation: &Operation, config: &Config) -> Result<(), Error> {
    match operation {
        Operation::Range(request) if request.key.is_empty() => Err(Error::EmptyKey),
        Operation::Put(request) => check_put(request),
        Operation::DeleteRange(request) if request.key.is_empty() => Err(Error::EmptyKey),
        Operation::Txn(request) => {
            check_txn_request(request, config.max_txn_operations)?;
            check_duplicate_keys(request)
        }
        Operation::LeaseGrant(request) if request.ttl > MAXIMUM_LEASE_TTL_SECONDS => {
            Err(Error::LeaseTimeToLiveTooLarge)
        }
        _ => Ok(()),
    }
}

/// etcd sorts ascending when a non-key target has no order, and skips sorting
/// ascending by key (keys already come in that order).
fn effective_sort_order(request: &RangeRequest) -> SortOrder {
    match (request.sort_order(), request.sort_target()) {
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    }
}

fn sort_key_values(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    if order == SortOrder::None {
        return;
    }
    kvs.sort_by(|left, right| {
        let ordering = match target {
            SortTarget::Key => left.key.cmp(&right.key),
            SortTarget::Version => left.version.cmp(&right.version),
            SortTarget::Create => left.create_revision.cmp(&right.create_revision),
            SortTarget::Mod => left.mod_revision.cmp(&right.mod_revision),
            SortTarget::Value => left.value.cmp(&right.value),
        };
        if order == SortOrder::Descend {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

fn passes_filters(request: &RangeRequest, kv: &KeyValue) -> bool {
    let below = |bound: i64, value: i64| bound != 0 && value < bound;
    let above = |bound: i64, value: i64| bound != 0 && value > bound;
    !(below(request.min_mod_revision, kv.mod_revision)
        || above(request.max_mod_revision, kv.mod_revision)
        || below(request.min_create_revision, kv.create_revision)
        || above(request.max_create_revision, kv.create_revision))
}

fn set_header_revision(response: &mut Response, revision: i64) {
    let slot = match response {
        Response::Range(response) => &mut response.header,
        Response::Put(response) => &mut response.header,
        Response::DeleteRange(response) => &mut response.header,
        Response::Txn(response) => &mut response.header,
        Response::Compaction(response) => &mut response.header,
        Response::LeaseGrant(response) => &mut response.header,
        Response::LeaseRevoke(response) => &mut response.header,
        Response::LeaseCheckpoint(response) => &mut response.header,
        Response::MemberUpdate(response) => &mut response.header,
        Response::Auth(response) => {
            crate::auth::set_header_revision(response, revision);
            return;
        }
        Response::Alarm(_) => return, // etcd's alarm answers carry no header
    };
    *slot = header(revision);
}
