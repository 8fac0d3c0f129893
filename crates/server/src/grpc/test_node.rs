//! A single in-process node for unit tests of the gRPC mapping: applies each write
//! directly to a real `kv::Store` (no Raft, no disk).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Mutex;

use crate::read_view::StoreViews;

use crate::handle::{Member, NodeApi, NodeHandle, NodeStatus, ServerError};
use crate::watch::{AppliedEvents, WatchHub};

pub(crate) const MEMBER_ID: u64 = 0x10;
pub(crate) const CLUSTER_ID: u64 = 0x77;
pub(crate) const TERM: u64 = 3;

/// Applies writes in call order; `read_barrier` fails while `leaderless` is set.
pub(crate) struct TestNode {
    store: Arc<Mutex<kv::Store>>,
    views: Arc<StoreViews>,
    next_client_sequence: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) barriers: AtomicU64,
    pub(crate) leaderless: AtomicBool,
    watch_hub: WatchHub,
    lessor: Arc<crate::lessor::Lessor>,
}

impl TestNode {
    pub(crate) fn start() -> (Arc<TestNode>, NodeHandle) {
        let node = Arc::new(TestNode {
            store: Arc::new(Mutex::new(kv::Store::default())),
            views: Arc::new(StoreViews::default()),
            next_client_sequence: AtomicU64::new(1),
            writes: AtomicU64::new(0),
            barriers: AtomicU64::new(0),
            leaderless: AtomicBool::new(false),
            watch_hub: WatchHub::new(),
            lessor: Arc::new(crate::lessor::Lessor::new()),
        });
        let handle = NodeHandle::new(node.clone());
        (node, handle)
    }
}

impl NodeApi for TestNode {
    fn write(&self, mut command: kv::Command) -> BoxFuture<'static, Result<kv::Response, ServerError>> {
        if self.leaderless.load(Ordering::SeqCst) {
            return async { Err(ServerError::NoLeader) }.boxed();
        }
        if command.request_id.is_none() {
            // As the real node: writes without an id get one of the node's own.
            let sequence = self.next_client_sequence.fetch_add(1, Ordering::SeqCst);
            command.request_id = Some(kv::RequestId { client_id: u64::MAX, sequence });
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        // As the real apply loop: apply, publish the view, then tell watchers and the client.
        let mut store = self.store.lock().expect("a test store lock is never poisoned");
        let index = store.applied_index() + 1;
        let applied = store.apply(index, &command);
        self.views.publish(&store);
        drop(store);
        self.watch_hub.publish(applied.revision, applied.events);
        let result = applied.result.map_err(ServerError::Kv);
        async move { result }.boxed()
    }

    fn read_barrier(&self) -> BoxFuture<'static, Result<(), ServerError>> {
        self.barriers.fetch_add(1, Ordering::SeqCst);
        let result = if self.leaderless.load(Ordering::SeqCst) { Err(ServerError::NoLeader) } else { Ok(()) };
        async move { result }.boxed()
    }

    fn read_view(&self) -> Arc<kv::Store> {
        self.views.latest()
    }

    fn status(&self) -> NodeStatus {
        let view = self.views.latest();
        let (revision, applied_index) = (view.current_revision(), view.applied_index());
        NodeStatus {
            member_id: MEMBER_ID,
            cluster_id: CLUSTER_ID,
            leader: if self.leaderless.load(Ordering::SeqCst) { 0 } else { MEMBER_ID },
            term: TERM,
            commit_index: applied_index,
            applied_index,
            revision,
            db_size_bytes: 4096,
            is_learner: false,
        }
    }

    fn watch_events(&self) -> tokio::sync::broadcast::Receiver<Arc<AppliedEvents>> {
        self.watch_hub.subscribe()
    }

    fn lessor(&self) -> Arc<crate::lessor::Lessor> {
        self.lessor.clone()
    }

    fn members(&self) -> Vec<Member> {
        vec![Member {
            id: MEMBER_ID,
            name: "solo".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            is_learner: false,
        }]
    }
}
