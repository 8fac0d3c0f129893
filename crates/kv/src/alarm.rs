//! Alarms, as etcd keeps them: NOSPACE (the space quota was exceeded) and CORRUPT (members
//! hold different data), each raised for a member id (0 stands for the whole cluster).
//!
//! Alarms are part of the replicated state: they change only by applying an
//! [`Operation::Alarm`](crate::Operation::Alarm) command, travel in snapshots and so
//! survive restarts, and every member answers the same list. While one is raised, the
//! store refuses commands as etcd's appliers do:
//!
//! - NOSPACE (etcd's "capped" applier): puts, transactions that put (in any branch,
//!   nested ones included) and lease grants fail with [`Error::NoSpace`]; reads, deletes,
//!   compaction, lease revokes and auth changes still work, so space can be freed.
//! - CORRUPT: puts, deletes, transactions, compaction, lease grants and revokes fail with
//!   [`Error::Corrupt`]; reads (served locally) and alarm commands still work.
//!
//! CORRUPT takes precedence when both are raised.

use std::collections::BTreeSet;

use proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op::Request, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, TxnRequest,
};

use crate::command::Operation;
use crate::error::Error;
use crate::store::Store;

/// Most alarms kept: one per (alarm type, member); a cluster has few members, so this
/// only bounds what a misbehaving client could raise with made-up member ids.
pub const ALARMS_MAX: usize = 1024;

/// The raised alarms, as (alarm type, member id) pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Alarms {
    raised: BTreeSet<(i32, u64)>,
}

impl Alarms {
    /// Every raised alarm of type `alarm` (all types for [`AlarmType::None`]), ordered by
    /// type, then member id.
    pub(crate) fn list(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.raised
            .iter()
            .filter(|(raised, _)| alarm == AlarmType::None || *raised == alarm as i32)
            .map(|(raised, member_id)| AlarmMember { member_id: *member_id, alarm: *raised })
            .collect()
    }

    /// True if an alarm of this type is raised for any member.
    pub(crate) fn is_raised(&self, alarm: AlarmType) -> bool {
        self.raised.iter().any(|(raised, _)| *raised == alarm as i32)
    }

    /// Raises `alarm` for `member_id`; `false` if it is not a real alarm type or the
    /// table is full (a raised alarm is raised again without change).
    fn activate(&mut self, member_id: u64, alarm: i32) -> bool {
        if !is_alarm_type(alarm) {
            return false;
        }
        if self.raised.len() >= ALARMS_MAX && !self.raised.contains(&(alarm, member_id)) {
            return false;
        }
        self.raised.insert((alarm, member_id));
        assert!(self.raised.len() <= ALARMS_MAX, "the alarm table is bounded");
        true
    }

    /// Clears `alarm` for `member_id`; `false` if it was not raised.
    fn deactivate(&mut self, member_id: u64, alarm: i32) -> bool {
        self.raised.remove(&(alarm, member_id))
    }

    /// Rebuilds the table from a snapshot's list.
    pub(crate) fn restore(alarms: &[AlarmMember]) -> Result<Alarms, &'static str> {
        let mut restored = Alarms::default();
        for alarm in alarms {
            if !restored.activate(alarm.member_id, alarm.alarm) {
                return Err("bad alarm");
            }
        }
        Ok(restored)
    }

    /// The error a command gets while an alarm is raised, if any.
    pub(crate) fn refusal(&self, operation: &Operation) -> Result<(), Error> {
        if self.is_raised(AlarmType::Corrupt) {
            let refused = matches!(
                operation,
                Operation::Put(_)
                    | Operation::DeleteRange(_)
                    | Operation::Txn(_)
                    | Operation::Compaction(_)
                    | Operation::LeaseGrant(_)
                    | Operation::LeaseRevoke(_)
            );
            if refused {
                return Err(Error::Corrupt);
            }
        }
        if self.is_raised(AlarmType::Nospace) {
            let grows = match operation {
                Operation::Put(_) | Operation::LeaseGrant(_) => true,
                Operation::Txn(txn) => txn_puts(txn),
                _ => false,
            };
            if grows {
                return Err(Error::NoSpace);
            }
        }
        Ok(())
    }
}

fn is_alarm_type(alarm: i32) -> bool {
    alarm == AlarmType::Nospace as i32 || alarm == AlarmType::Corrupt as i32
}

/// True if the transaction has a put in either branch, nested transactions included.
pub fn txn_puts(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|operation| match &operation.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(nested)) => txn_puts(nested),
        _ => false,
    })
}

impl Store {
    /// Applies an alarm command as etcd does: GET lists the raised alarms of the requested
    /// type (all for NONE; the member id is ignored), ACTIVATE raises one and answers it,
    /// DEACTIVATE clears one and answers it (an empty list if it was not raised).
    pub(crate) fn apply_alarm(&mut self, request: &AlarmRequest) -> AlarmResponse {
        let requested = AlarmType::try_from(request.alarm).unwrap_or(AlarmType::None);
        let answered = AlarmMember { member_id: request.member_id, alarm: request.alarm };
        let alarms = match AlarmAction::try_from(request.action) {
            Ok(AlarmAction::Get) => self.alarms.list(requested),
            Ok(AlarmAction::Activate) if self.alarms.activate(request.member_id, request.alarm) => vec![answered],
            Ok(AlarmAction::Deactivate) if self.alarms.deactivate(request.member_id, request.alarm) => vec![answered],
            _ => Vec::new(),
        };
        // etcd's alarm answers carry no header.
        AlarmResponse { header: None, alarms }
    }

    /// Every raised alarm, ordered by type, then member id.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.list(AlarmType::None)
    }

    /// True if an alarm of type `alarm` is raised (for any member).
    pub fn is_alarm_raised(&self, alarm: AlarmType) -> bool {
        self.alarms.is_raised(alarm)
    }
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
        RequestOp,
    };

    use super::*;
    use crate::command::{Command, Response};

    fn alarm(action: AlarmAction, member_id: u64, alarm: AlarmType) -> Command {
        Command::new(Operation::Alarm(AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 }))
    }

    fn put(key: &str, value: &str) -> Command {
        let put = PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        };
        Command::new(Operation::Put(put))
    }

    fn answered(store: &mut Store, index: u64, command: &Command) -> Vec<AlarmMember> {
        match store.apply(index, command).result {
            Ok(Response::Alarm(response)) => {
                assert!(response.header.is_none(), "etcd's alarm answers carry no header");
                response.alarms
            }
            other => panic!("an alarm command answers with alarms: {other:?}"),
        }
    }

    fn txn_with(operation: RequestOp) -> Command {
        Command::new(Operation::Txn(TxnRequest { success: vec![operation], ..Default::default() }))
    }

    #[test]
    fn nospace_refuses_growing_writes_until_disarmed() {
        let mut store = Store::default();
        assert!(store.apply(1, &put("a", "1")).result.is_ok());
        let raised = answered(&mut store, 2, &alarm(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(raised, vec![AlarmMember { member_id: 7, alarm: AlarmType::Nospace as i32 }]);
        assert_eq!(answered(&mut store, 3, &alarm(AlarmAction::Get, 0, AlarmType::None)), raised);
        let revision = store.current_revision();
        assert_eq!(store.apply(4, &put("b", "2")).result, Err(Error::NoSpace));
        let grant = Command::new(Operation::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }));
        assert_eq!(store.apply(5, &grant).result, Err(Error::NoSpace));
        let nested_put = RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                failure: vec![RequestOp {
                    request: Some(Request::RequestPut(PutRequest { key: b"c".to_vec().into(), ..Default::default() })),
                }],
                ..Default::default()
            })),
        };
        assert_eq!(store.apply(6, &txn_with(nested_put)).result, Err(Error::NoSpace));
        assert_eq!(store.current_revision(), revision, "nothing refused was applied");
        // Reads, deletes and compaction still work.
        let read = RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key: b"a".to_vec(), ..Default::default() })),
        };
        assert!(store.apply(7, &txn_with(read)).result.is_ok());
        let delete = DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() };
        assert!(store.apply(8, &Command::new(Operation::DeleteRange(delete))).result.is_ok());
        let compact = CompactionRequest { revision: store.current_revision(), physical: false };
        assert!(store.apply(9, &Command::new(Operation::Compaction(compact))).result.is_ok());
        // Survives a snapshot and restart.
        let mut restored = Store::restore(store.config().clone(), &store.snapshot()).expect("restores");
        assert_eq!(restored.alarms(), raised);
        assert_eq!(restored.hash(), store.hash(), "alarms are part of the state");
        assert_eq!(restored.apply(10, &put("b", "2")).result, Err(Error::NoSpace));
        let cleared = answered(&mut restored, 11, &alarm(AlarmAction::Deactivate, 7, AlarmType::Nospace));
        assert_eq!(cleared, raised);
        assert!(restored.alarms().is_empty());
        assert!(answered(&mut restored, 12, &alarm(AlarmAction::Deactivate, 7, AlarmType::Nospace)).is_empty());
        assert!(restored.apply(13, &put("b", "2")).result.is_ok(), "writes work again once disarmed");
    }

    #[test]
    fn corrupt_refuses_every_write_and_lists_by_type() {
        let mut store = Store::default();
        let grant = Command::new(Operation::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }));
        assert!(store.apply(1, &grant).result.is_ok());
        answered(&mut store, 2, &alarm(AlarmAction::Activate, 9, AlarmType::Corrupt));
        answered(&mut store, 3, &alarm(AlarmAction::Activate, 3, AlarmType::Nospace));
        assert!(answered(&mut store, 4, &alarm(AlarmAction::Activate, 3, AlarmType::None)).is_empty());
        let all = answered(&mut store, 5, &alarm(AlarmAction::Get, 0, AlarmType::None));
        let expected = vec![
            AlarmMember { member_id: 3, alarm: AlarmType::Nospace as i32 },
            AlarmMember { member_id: 9, alarm: AlarmType::Corrupt as i32 },
        ];
        assert_eq!(all, expected);
        let corrupt_only = answered(&mut store, 6, &alarm(AlarmAction::Get, 0, AlarmType::Corrupt));
        assert_eq!(corrupt_only, expected[1..].to_vec());
        let delete =
            Command::new(Operation::DeleteRange(DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() }));
        let revoke = Command::new(Operation::LeaseRevoke(LeaseRevokeRequest { id: 5 }));
        let compact = Command::new(Operation::Compaction(CompactionRequest { revision: 1, physical: false }));
        for (index, command) in [put("a", "1"), delete, revoke, compact].iter().enumerate() {
            assert_eq!(store.apply(7 + index as u64, command).result, Err(Error::Corrupt), "{command:?}");
        }
        let range = RangeRequest { key: b"a".to_vec(), ..Default::default() };
        assert!(store.range(&range).is_ok(), "reads still work");
        answered(&mut store, 20, &alarm(AlarmAction::Deactivate, 9, AlarmType::Corrupt));
        assert_eq!(store.apply(21, &put("a", "1")).result, Err(Error::NoSpace), "NOSPACE is still raised");
    }

    #[test]
    fn size_counts_kept_records_as_the_snapshot_encodes_them() {
        let mut store = Store::default();
        assert_eq!(store.size_bytes(), 0);
        for index in 1..=20 {
            assert!(store.apply(index, &put(&format!("key{}", index % 4), &"v".repeat(index as usize))).result.is_ok());
        }
        let empty = Store::default().snapshot_length_bytes();
        let records_bytes = |store: &Store| {
            let head_and_tail = Store {
                current_revision: store.current_revision,
                compact_revision: store.compact_revision,
                applied_index: store.applied_index,
                ..Store::default()
            };
            store.snapshot_length_bytes() - head_and_tail.snapshot_length_bytes()
        };
        assert!(store.size_bytes() > empty);
        assert_eq!(store.size_bytes(), records_bytes(&store));
        let before = store.size_bytes();
        let compact = CompactionRequest { revision: store.current_revision(), physical: false };
        assert!(store.apply(21, &Command::new(Operation::Compaction(compact))).result.is_ok());
        assert!(store.size_bytes() < before, "compaction frees space");
        assert_eq!(store.size_bytes(), records_bytes(&store));
        let restored = Store::restore(store.config().clone(), &store.snapshot()).expect("restores");
        assert_eq!(restored.size_bytes(), store.size_bytes());
        let grant = Command::new(Operation::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }));
        let with_lease = store.size_bytes();
        assert!(store.apply(22, &grant).result.is_ok());
        assert_eq!(store.size_bytes(), with_lease + crate::LEASE_BYTES);
    }
}
