//! Simulated etcd clients: each has at most one request outstanding, sends it to a member
//! that is up, and records it in the history the checks read. Requests are etcd's, as
//! `kv::Command`s: put, txn (compare a value, then put), range (linearizable: the core's
//! ReadIndex barrier, then the member's read view; serializable: the read view at once),
//! lease grant, and puts attached to a granted lease, which expire through the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use linearizability::{ClientId, History, OpId, Operation, OperationRecord, Outcome, Output};
use proto::etcdserverpb::{
    compare, request_op, Compare, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use raft::SplitMix64;
use server::server_core::{proposal_data, Answer, RequestId};

use crate::member::Request;
use crate::options::{CLIENT_TIMEOUT_MS, LEASE_TTL_SECONDS_MAX};

/// Plain keys clients write and read (few, so operations contend).
pub const KEYS: usize = 4;
/// Simulated milliseconds a client waits between two requests, at most.
const THINK_MS_MAX: u64 = 6;

/// A request on its way to a member.
pub struct Submission {
    /// The member it goes to.
    pub member: u64,
    /// Its id (unique in the run).
    pub request: RequestId,
    /// What the core is asked.
    pub input: Request,
}

/// A write the cluster acknowledged: at `revision`, `key` held `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcknowledgedWrite {
    /// The key.
    pub key: Vec<u8>,
    /// The value written.
    pub value: Vec<u8>,
    /// The revision the write created.
    pub revision: i64,
}

/// A serializable read: member `member`'s view at `revision` held `value` under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerializableRead {
    /// The member read.
    pub member: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The value seen (`None`: absent).
    pub value: Option<Vec<u8>>,
    /// The view's revision.
    pub revision: i64,
}

enum Pending {
    Put { key: Vec<u8>, value: Vec<u8> },
    CompareAndSet { key: Vec<u8>, new: Vec<u8> },
    Read { key: Vec<u8> },
    LeaseGrant { id: i64 },
}

struct Outstanding {
    request: RequestId,
    member: u64,
    operation: Option<OpId>,
    pending: Pending,
    deadline_ms: u64,
}

struct Client {
    id: u64,
    outstanding: Option<Outstanding>,
    next_action_ms: u64,
    sequence: u64,
    /// A lease this client was granted and has not attached a key to yet.
    lease_to_use: Option<i64>,
    /// The member this client talks to (as an etcd client keeps its connection); it
    /// switches after a failure, and now and then.
    member: u64,
}

/// All clients and what they observed.
///
/// Invariant: `waiting` maps the request id of every outstanding request to its client.
pub struct Clients {
    clients: Vec<Client>,
    waiting: BTreeMap<RequestId, usize>,
    next_request: RequestId,
    stopped: bool,
    /// The last value written per key (the value a compare-and-set expects).
    last_written: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every operation with its outcome, for the linearizability check.
    pub history: Recorder,
    /// Writes acknowledged (they must survive).
    pub acknowledged_writes: Vec<AcknowledgedWrite>,
    /// Serializable reads served.
    pub serializable_reads: Vec<SerializableRead>,
    /// Leases granted (acknowledged).
    pub leases_granted: Vec<i64>,
    /// Requests answered with success.
    pub acknowledged: u64,
    /// Requests answered with an error, by error.
    pub failures: BTreeMap<String, u64>,
}

impl Clients {
    /// `count` clients.
    pub fn new(count: usize) -> Clients {
        assert!(count > 0, "a run has clients");
        let clients = (0..count)
            .map(|index| Client {
                id: index as u64 + 1,
                outstanding: None,
                next_action_ms: 0,
                sequence: 0,
                lease_to_use: None,
                member: 0,
            })
            .collect();
        Clients {
            clients,
            waiting: BTreeMap::new(),
            next_request: 1,
            stopped: false,
            last_written: BTreeMap::new(),
            history: Recorder::default(),
            acknowledged_writes: Vec::new(),
            serializable_reads: Vec::new(),
            leases_granted: Vec::new(),
            acknowledged: 0,
            failures: BTreeMap::new(),
        }
    }

    /// No new requests from now on.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// True when no request is outstanding.
    pub fn all_idle(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The requests idle clients send at `now_ms` to members in `up` (serializable reads are
    /// served at once from `view_of`'s read view).
    pub fn issue(
        &mut self,
        now_ms: u64,
        up: &[u64],
        view_of: &dyn Fn(u64) -> Arc<kv::Store>,
        random: &mut SplitMix64,
    ) -> Vec<Submission> {
        let mut submissions = Vec::new();
        if self.stopped || up.is_empty() {
            return submissions;
        }
        for index in 0..self.clients.len() {
            let client = &self.clients[index];
            if client.outstanding.is_some() || client.next_action_ms > now_ms {
                continue;
            }
            if !up.contains(&self.clients[index].member) || random.chance(1, 20) {
                self.clients[index].member = up[random.range(0, up.len() as u64) as usize];
            }
            let member = self.clients[index].member;
            if random.chance(1, 8) && self.clients[index].lease_to_use.is_none() {
                self.serve_serializable(index, member, &view_of(member), now_ms, random);
                continue;
            }
            submissions.push(self.start_request(index, member, now_ms, random));
        }
        submissions
    }

    fn serve_serializable(
        &mut self,
        index: usize,
        member: u64,
        view: &kv::Store,
        now_ms: u64,
        random: &mut SplitMix64,
    ) {
        let key = plain_key(random);
        let value = read_value(view, &key);
        self.serializable_reads.push(SerializableRead { member, key, value, revision: view.current_revision() });
        self.acknowledged += 1;
        self.clients[index].next_action_ms = now_ms + random.range(0, THINK_MS_MAX + 1);
    }

    fn start_request(&mut self, index: usize, member: u64, now_ms: u64, random: &mut SplitMix64) -> Submission {
        let request = self.next_request;
        self.next_request += 1;
        let client_id = self.clients[index].id;
        self.clients[index].sequence += 1;
        let sequence = self.clients[index].sequence;
        let value = format!("c{client_id}-{sequence}").into_bytes();
        let (pending, operation, input) = match self.clients[index].lease_to_use.take() {
            Some(lease) => lease_put(lease, value),
            None => self.draw_operation(client_id, sequence, value, now_ms, random),
        };
        let operation = operation.map(|operation| self.history.invoke_at(now_ms, ClientId(client_id), operation));
        let deadline_ms = now_ms + CLIENT_TIMEOUT_MS;
        self.clients[index].outstanding = Some(Outstanding { request, member, operation, pending, deadline_ms });
        let previous = self.waiting.insert(request, index);
        assert!(previous.is_none(), "request ids are unique");
        Submission { member, request, input }
    }

    fn draw_operation(
        &mut self,
        client_id: u64,
        sequence: u64,
        value: Vec<u8>,
        now_ms: u64,
        random: &mut SplitMix64,
    ) -> (Pending, Option<Operation>, Request) {
        let key = plain_key(random);
        match random.range(0, 100) {
            0..=39 => {
                let operation = Operation::write(key.clone(), value.clone());
                (Pending::Put { key: key.clone(), value: value.clone() }, Some(operation), write(put(key, value, 0)))
            }
            40..=54 if self.last_written.contains_key(&key) => {
                let expected = self.last_written[&key].clone();
                let operation = Operation::compare_and_set(key.clone(), expected.clone(), value.clone());
                let txn = compare_and_put(key.clone(), expected, value.clone());
                (Pending::CompareAndSet { key, new: value }, Some(operation), write(kv::Operation::Txn(txn)))
            }
            40..=89 => (Pending::Read { key: key.clone() }, Some(Operation::read(key)), Request::Read),
            _ => {
                let id = i64::try_from((client_id << 32) | sequence).expect("small ids");
                let ttl = random.range(2, LEASE_TTL_SECONDS_MAX as u64 + 1) as i64;
                // The lease's key may be deleted by the lease's expiry at any time from now.
                let revoke = self.history.invoke_at(now_ms, ClientId(0), Operation::delete(lease_key(id)));
                self.history.time_out(revoke);
                let grant = kv::Operation::LeaseGrant(LeaseGrantRequest { ttl, id });
                (Pending::LeaseGrant { id }, None, write(grant))
            }
        }
    }

    /// The answer to `request` from a member whose read view is `view`, at `now_ms`.
    pub fn on_answer(
        &mut self,
        request: RequestId,
        answer: Answer,
        view: &kv::Store,
        now_ms: u64,
        random: &mut SplitMix64,
    ) {
        let Some(index) = self.waiting.remove(&request) else { return }; // gave up already
        let outstanding = self.clients[index].outstanding.take().expect("a waiting client has a request");
        assert_eq!(outstanding.request, request, "one request per client");
        self.clients[index].next_action_ms = now_ms + random.range(0, THINK_MS_MAX + 1);
        let output = match (&outstanding.pending, answer) {
            (Pending::Put { key, value }, Answer::Write(Ok(kv::Response::Put(response)))) => {
                self.acknowledge_write(key, value, revision_of(response.header.as_ref()));
                Some(Output::write_acknowledged())
            }
            (Pending::CompareAndSet { key, new }, Answer::Write(Ok(kv::Response::Txn(response)))) => {
                if response.succeeded {
                    self.acknowledge_write(key, new, revision_of(response.header.as_ref()));
                }
                Some(Output::compare_and_set(response.succeeded))
            }
            (Pending::LeaseGrant { id }, Answer::Write(Ok(kv::Response::LeaseGrant(_)))) => {
                self.leases_granted.push(*id);
                self.clients[index].lease_to_use = Some(*id);
                self.acknowledged += 1;
                None
            }
            (Pending::Read { key }, Answer::Read(Ok(()))) => {
                self.acknowledged += 1;
                Some(read_value(view, key).map_or_else(Output::read_absent, Output::read_value))
            }
            (_, answer) => {
                self.note_failure(index, &outstanding, answer, now_ms, random);
                return;
            }
        };
        if let Some(operation) = outstanding.operation {
            match output {
                Some(output) => self.history.complete_at(now_ms, operation, output),
                None => self.history.time_out(operation),
            }
        }
    }

    /// A failed request: a write the core refused before proposing it (no leader, too
    /// many requests) had no effect and leaves the history; any other failure (a timeout,
    /// a leader change) has an unknown outcome. The client waits a little before its next.
    fn note_failure(
        &mut self,
        index: usize,
        outstanding: &Outstanding,
        answer: Answer,
        now_ms: u64,
        random: &mut SplitMix64,
    ) {
        use server::handle::ServerError;
        let (reason, never_proposed) = match &answer {
            Answer::Write(Err(error @ (ServerError::NoLeader | ServerError::TooManyRequests))) => {
                (format!("{error:?}"), true)
            }
            Answer::Write(Err(error)) | Answer::Read(Err(error)) => (format!("{error:?}"), false),
            other => (format!("unexpected {other:?}"), false),
        };
        *self.failures.entry(reason).or_default() += 1;
        self.clients[index].next_action_ms = now_ms + random.range(10, 50);
        self.clients[index].member = 0; // reconnect elsewhere
        if let Some(operation) = outstanding.operation {
            if never_proposed {
                self.history.leave_out(operation);
            } else {
                self.history.time_out(operation);
            }
        }
    }

    fn acknowledge_write(&mut self, key: &[u8], value: &[u8], revision: i64) {
        self.acknowledged += 1;
        self.last_written.insert(key.to_vec(), value.to_vec());
        self.acknowledged_writes.push(AcknowledgedWrite { key: key.to_vec(), value: value.to_vec(), revision });
    }

    /// Clients waiting past their deadline, or on a member that went down (`down`), give up.
    pub fn give_up(&mut self, now_ms: u64, down: Option<u64>) {
        let given_up: Vec<RequestId> = self
            .waiting
            .iter()
            .filter(|(_, index)| {
                let outstanding = self.clients[**index].outstanding.as_ref().expect("waiting");
                outstanding.deadline_ms <= now_ms || Some(outstanding.member) == down
            })
            .map(|(request, _)| *request)
            .collect();
        for request in given_up {
            let index = self.waiting.remove(&request).expect("listed above");
            let outstanding = self.clients[index].outstanding.take().expect("waiting");
            if let Some(operation) = outstanding.operation {
                self.history.time_out(operation);
            }
            self.clients[index].next_action_ms = now_ms;
            self.clients[index].member = 0;
        }
    }
}

/// The client history as it is recorded. Operations known to have had no effect are left
/// out when the history is built.
///
/// Invariant: `records[i].id == OpId(i)`; `left_out` has one flag per record.
#[derive(Default)]
pub struct Recorder {
    records: Vec<OperationRecord>,
    left_out: Vec<bool>,
}

impl Recorder {
    fn invoke_at(&mut self, time: u64, client: ClientId, operation: Operation) -> OpId {
        let id = OpId(self.records.len());
        let record =
            OperationRecord { id, client, operation, invoke_time: time, return_time: None, outcome: Outcome::Pending };
        self.records.push(record);
        self.left_out.push(false);
        id
    }

    fn complete_at(&mut self, time: u64, id: OpId, output: Output) {
        let record = &mut self.records[id.0];
        assert!(
            record.outcome == Outcome::Pending && record.invoke_time <= time,
            "{id} completes once, after it began"
        );
        record.return_time = Some(time);
        record.outcome = Outcome::Returned(output);
    }

    fn time_out(&mut self, id: OpId) {
        let record = &mut self.records[id.0];
        assert!(record.outcome == Outcome::Pending, "{id} ends once");
        record.outcome = Outcome::Unknown;
    }

    fn leave_out(&mut self, id: OpId) {
        self.time_out(id);
        self.left_out[id.0] = true;
    }

    /// Operations recorded (left out ones included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The history to check: every operation not left out, renumbered.
    pub fn build(&self) -> History {
        let kept = self.records.iter().zip(&self.left_out).filter(|(_, left_out)| !**left_out);
        let records: Vec<OperationRecord> = kept
            .enumerate()
            .map(|(position, (record, _))| OperationRecord { id: OpId(position), ..record.clone() })
            .collect();
        History::from_records(records).expect("the simulator records well-formed histories")
    }
}

fn plain_key(random: &mut SplitMix64) -> Vec<u8> {
    format!("k{}", random.range(0, KEYS as u64)).into_bytes()
}

/// The key a client attaches to lease `id`.
pub fn lease_key(id: i64) -> Vec<u8> {
    format!("lease-{id:x}").into_bytes()
}

fn lease_put(lease: i64, value: Vec<u8>) -> (Pending, Option<Operation>, Request) {
    let key = lease_key(lease);
    let operation = Operation::write(key.clone(), value.clone());
    (Pending::Put { key: key.clone(), value: value.clone() }, Some(operation), write(put(key, value, lease)))
}

fn put(key: Vec<u8>, value: Vec<u8>, lease: i64) -> kv::Operation {
    kv::Operation::Put(PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() })
}

fn compare_and_put(key: Vec<u8>, expected: Vec<u8>, new: Vec<u8>) -> TxnRequest {
    let compare = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        key: key.clone(),
        target_union: Some(compare::TargetUnion::Value(expected)),
        ..Default::default()
    };
    let kv::Operation::Put(put_request) = put(key, new, 0) else { unreachable!("a put") };
    let success = vec![RequestOp { request: Some(request_op::Request::RequestPut(put_request)) }];
    TxnRequest { compare: vec![compare], success, failure: vec![] }
}

fn write(operation: kv::Operation) -> Request {
    Request::Write(proposal_data(&kv::Command::new(operation)))
}

fn revision_of(header: Option<&proto::etcdserverpb::ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision)
}

/// The value of `key` in `store`'s current state.
pub fn read_value(store: &kv::Store, key: &[u8]) -> Option<Vec<u8>> {
    let request = RangeRequest { key: key.to_vec(), ..Default::default() };
    let response = store.range(&request).ok()?;
    response.kvs.first().map(|found| found.value.to_vec())
}

/// The value of `key` in `store` at `revision` (`None`: absent, or unreadable there).
pub fn read_value_at(store: &kv::Store, key: &[u8], revision: i64) -> Result<Option<(Vec<u8>, i64)>, kv::Error> {
    let request = RangeRequest { key: key.to_vec(), revision, ..Default::default() };
    let response = store.range(&request)?;
    Ok(response.kvs.first().map(|found| (found.value.to_vec(), found.mod_revision)))
}
