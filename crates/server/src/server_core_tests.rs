//! The server core on a one-member cluster over a real WAL: read views are published
//! before answers and read releases.

use super::*;

/// Membership without a member table beyond the store's.
struct StoreOnlyMembership;

impl MembershipApply for StoreOnlyMembership {
    fn apply_config(&mut self, store: &mut kv::Store, entry: &raft::Entry) {
        store.advance_applied_index(entry.index);
    }
    fn member_updated(&mut self, _store: &kv::Store, _id: u64) {}
    fn restored(&mut self, _store: &kv::Store) {}
}

/// Most ticks a one-member cluster takes to elect itself.
const ELECTION_TICKS_MAX: usize = 100;

fn one_member_core(directory: &std::path::Path) -> (ServerCore, Arc<StoreViews>) {
    let conf = ConfState { voters: vec![1], ..ConfState::default() };
    let wal = Wal::create(directory, wal::WalOptions::new(7, 1), conf).expect("create the WAL");
    let node = RawNode::new(raft::Config::new(1), wal).expect("a Raft node");
    let store = kv::Store::default();
    let views = Arc::new(StoreViews::new(&store));
    let parts = CoreParts {
        store,
        views: views.clone(),
        metrics: Metrics::new(),
        lessor: Arc::new(Lessor::new()),
        watch_hub: WatchHub::new(),
        clock: wall_clock(),
    };
    let compaction = raft::CompactionPolicy { entries_max: 1 << 20, bytes_max: 1 << 30 };
    let options = CoreOptions { request_timeout_ticks: 1000, compaction, warning_apply_duration: Duration::ZERO };
    (ServerCore::new(node, parts, options, 1), views)
}

/// One shell turn: every `Ready` made durable (synchronously) and finished.
fn run_turn(core: &mut ServerCore) {
    core.issue_reads();
    for _ in 0..READIES_PER_TURN_MAX {
        let Some(io) = core.next_ready() else { return };
        if let Some((batch, sequence)) = io.persist {
            core.wal_mut().write(&batch).expect("write the batch");
            core.on_persisted(sequence);
        }
        core.finish_ready(io.applying, &mut StoreOnlyMembership);
    }
}

fn elect(core: &mut ServerCore) {
    for _ in 0..ELECTION_TICKS_MAX {
        core.tick();
        run_turn(core);
        if core.soft_state().role == Role::Leader {
            return;
        }
    }
    panic!("a one-member cluster elects itself");
}

fn put(key: &str) -> BytesMut {
    let request = proto::etcdserverpb::PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    proposal_data(&kv::Command::new(kv::Operation::Put(request)))
}

#[test]
fn every_apply_batch_is_published_before_its_answers() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (mut core, views) = one_member_core(directory.path());
    elect(&mut core);
    run_turn(&mut core);
    for (request, key) in [(None, "nobody-waits"), (Some(1), "client-waits")] {
        let before = views.latest().current_revision();
        core.propose(request, put(key));
        run_turn(&mut core);
        assert!(core.revision() > before, "the put applied");
        assert_eq!(views.latest().current_revision(), core.revision(), "the view holds the batch: {key}");
    }
    let answers = core.take_answers();
    assert!(matches!(answers.as_slice(), [(1, Answer::Write(Ok(_)))]), "only the waiting put is answered: {answers:?}");
    assert_eq!(core.read_view().current_revision(), core.revision(), "read_view is the newest state");
}

#[test]
fn a_linearizable_read_is_released_on_a_view_holding_its_index() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (mut core, views) = one_member_core(directory.path());
    elect(&mut core);
    core.propose(None, put("written-before-the-read"));
    core.read(9);
    run_turn(&mut core);
    let answers = core.take_answers();
    assert!(matches!(answers.as_slice(), [(9, Answer::Read(Ok(())))]), "the read is released: {answers:?}");
    let view = views.latest();
    assert_eq!(view.current_revision(), core.revision(), "its view holds the put proposed before it");
    assert_eq!(view.applied_index(), core.node().applied_index(), "and everything applied");
}
