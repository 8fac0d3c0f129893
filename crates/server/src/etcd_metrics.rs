//! etcd 3.4's own metrics, with etcd's names, help texts, labels, units and buckets, so
//! etcd's alerts and dashboards (etcd's `contrib/mixin`, Grafana's etcd dashboards) work
//! on raftkv unchanged. The gRPC metrics (`grpc_server_*`, the client byte counters) live
//! in [`crate::grpc_metrics`]; everything is rendered by
//! [`Metrics::render_text`](crate::metrics::Metrics::render_text).
//!
//! What each metric measures on raftkv, where raftkv's design differs from etcd's:
//!
//! - `etcd_disk_wal_fsync_duration_seconds`: the write and fdatasync of the WAL, as etcd.
//! - `etcd_disk_backend_commit_duration_seconds`: raftkv keeps the key-value state in
//!   memory (no bbolt backend); this is the time to apply one batch of committed entries
//!   to the store, the step that plays the backend commit's part.
//! - `etcd_disk_backend_snapshot_duration_seconds`: the time to write a snapshot of the
//!   store to disk (raftkv's snapshot file), one observation per snapshot.
//! - `etcd_mvcc_db_total_size_in_bytes`: bytes of the data directory (WAL and snapshots);
//!   `..._in_use_in_bytes`: the store's size as the space quota measures it
//!   (`kv::Store::size_bytes`: every kept revision as a snapshot encodes it, plus leases).
//! - `etcd_network_peer_round_trip_time_seconds`: a probe request on the peer port
//!   (`GET /raft/probing`, etcd's probe path) answered by each peer, every few seconds.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The version raftkv reports as `etcd_server_version` (the etcd API it serves).
pub const SERVER_VERSION: &str = "3.4.23";
/// The cluster version reported as `etcd_cluster_version`.
pub const CLUSTER_VERSION: &str = "3.4";

/// etcd's server, disk, mvcc and network metrics of one member.
pub struct EtcdMetrics {
    /// `etcd_server_has_leader`: 1 while a leader is known.
    pub has_leader: IntGauge,
    /// `etcd_server_is_leader`: 1 while this member leads.
    pub is_leader: IntGauge,
    /// `etcd_server_is_learner`: 1 while this member is a learner.
    pub is_learner: IntGauge,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: IntCounter,
    /// `etcd_server_proposals_committed_total` (a gauge in etcd: the commit index).
    pub proposals_committed: IntGauge,
    /// `etcd_server_proposals_applied_total` (a gauge in etcd: the applied index).
    pub proposals_applied: IntGauge,
    /// `etcd_server_proposals_pending`: proposals waiting to be applied.
    pub proposals_pending: IntGauge,
    /// `etcd_server_proposals_failed_total`.
    pub proposals_failed: IntCounter,
    /// `etcd_server_health_success`: `/health` answered healthy.
    pub health_success: IntCounter,
    /// `etcd_server_health_failures`: `/health` answered unhealthy.
    pub health_failures: IntCounter,
    /// `etcd_server_id{server_id}`.
    pub server_id: IntGaugeVec,
    /// `etcd_server_quota_backend_bytes`.
    pub quota_backend_bytes: Gauge,
    /// `etcd_disk_wal_fsync_duration_seconds`.
    pub wal_fsync_duration_seconds: Histogram,
    /// `etcd_disk_backend_commit_duration_seconds`.
    pub backend_commit_duration_seconds: Histogram,
    /// `etcd_disk_backend_snapshot_duration_seconds`.
    pub backend_snapshot_duration_seconds: Histogram,
    /// `etcd_mvcc_db_total_size_in_bytes`.
    pub db_total_size_bytes: IntGauge,
    /// `etcd_mvcc_db_total_size_in_use_in_bytes`.
    pub db_total_size_in_use_bytes: IntGauge,
    /// `etcd_debugging_mvcc_keys_total`: live keys.
    pub keys_total: IntGauge,
    /// `etcd_debugging_mvcc_current_revision`.
    pub current_revision: IntGauge,
    /// `etcd_debugging_mvcc_compact_revision`.
    pub compact_revision: IntGauge,
    /// `etcd_debugging_mvcc_db_compaction_keys_total`: key versions removed by compactions.
    pub compaction_keys_total: IntCounter,
    /// `etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds`.
    pub compaction_pause_duration_milliseconds: Histogram,
    /// `etcd_debugging_mvcc_db_compaction_total_duration_milliseconds`.
    pub compaction_total_duration_milliseconds: Histogram,
    /// `etcd_mvcc_put_total`.
    pub put_total: IntCounter,
    /// `etcd_mvcc_delete_total`.
    pub delete_total: IntCounter,
    /// `etcd_mvcc_range_total`.
    pub range_total: IntCounter,
    /// `etcd_mvcc_txn_total`.
    pub txn_total: IntCounter,
    /// `etcd_network_peer_round_trip_time_seconds{To}`.
    pub peer_round_trip_time_seconds: HistogramVec,
    /// `etcd_network_peer_sent_bytes_total{To}`.
    pub peer_sent_bytes: IntCounterVec,
    /// `etcd_network_peer_received_bytes_total{From}`.
    pub peer_received_bytes: IntCounterVec,
    /// `etcd_network_peer_sent_failures_total{To}`.
    pub peer_sent_failures: IntCounterVec,
    /// `etcd_network_active_peers{Local,Remote}`.
    pub active_peers: IntGaugeVec,
}

/// etcd's buckets: `count` buckets from `start`, each `factor` times the previous.
fn buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect("valid buckets")
}

/// Registers metrics in one registry; every name is fixed here, so a failure is a bug.
struct Registrar<'a> {
    registry: &'a Registry,
}

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.registry.register(Box::new(metric.clone())).expect("unique metric name");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric"))
    }

    fn counter_vec(&self, name: &str, help: &str, label: &str) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }
}

impl EtcdMetrics {
    /// Registers every etcd metric of member `member_id` in `registry`.
    pub fn register(registry: &Registry, member_id: u64) -> EtcdMetrics {
        let add = Registrar { registry };
        let server_id = add.gauge_vec(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            &["server_id"],
        );
        server_id.with_label_values(&[&format!("{member_id:x}")]).set(1);
        add.gauge_vec(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            &["server_version"],
        )
        .with_label_values(&[SERVER_VERSION])
        .set(1);
        add.gauge_vec(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            &["cluster_version"],
        )
        .with_label_values(&[CLUSTER_VERSION])
        .set(1);
        let quota_backend_bytes = add.register(
            Gauge::new("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")
                .expect("valid metric"),
        );
        // etcd's default quota (--quota-backend-bytes 0): 2 GiB.
        quota_backend_bytes.set(2_147_483_648.0);
        let (server, disk) = (ServerMetrics::register(&add), DiskMetrics::register(&add));
        let (mvcc, network) = (MvccMetrics::register(&add), NetworkMetrics::register(&add));
        EtcdMetrics {
            has_leader: server.has_leader,
            is_leader: server.is_leader,
            is_learner: server.is_learner,
            leader_changes: server.leader_changes,
            proposals_committed: server.proposals_committed,
            proposals_applied: server.proposals_applied,
            proposals_pending: server.proposals_pending,
            proposals_failed: server.proposals_failed,
            health_success: server.health_success,
            health_failures: server.health_failures,
            server_id,
            quota_backend_bytes,
            wal_fsync_duration_seconds: disk.wal_fsync,
            backend_commit_duration_seconds: disk.backend_commit,
            backend_snapshot_duration_seconds: disk.backend_snapshot,
            db_total_size_bytes: mvcc.db_total_size,
            db_total_size_in_use_bytes: mvcc.db_total_size_in_use,
            keys_total: mvcc.keys_total,
            current_revision: mvcc.current_revision,
            compact_revision: mvcc.compact_revision,
            compaction_keys_total: mvcc.compaction_keys,
            compaction_pause_duration_milliseconds: mvcc.compaction_pause,
            compaction_total_duration_milliseconds: mvcc.compaction_total,
            put_total: mvcc.put_total,
            delete_total: mvcc.delete_total,
            range_total: mvcc.range_total,
            txn_total: mvcc.txn_total,
            peer_round_trip_time_seconds: network.round_trip_time,
            peer_sent_bytes: network.sent_bytes,
            peer_received_bytes: network.received_bytes,
            peer_sent_failures: network.sent_failures,
            active_peers: network.active_peers,
        }
    }

    /// Sets the gauges that follow this member's Raft state.
    pub fn set_raft_state(&self, leader: u64, is_leader: bool, commit_index: u64, applied_index: u64) {
        self.has_leader.set(i64::from(leader != 0));
        self.is_leader.set(i64::from(is_leader));
        self.proposals_committed.set(commit_index as i64);
        self.proposals_applied.set(applied_index as i64);
    }
}

struct ServerMetrics {
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    leader_changes: IntCounter,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    proposals_pending: IntGauge,
    proposals_failed: IntCounter,
    health_success: IntCounter,
    health_failures: IntCounter,
}

impl ServerMetrics {
    fn register(add: &Registrar<'_>) -> ServerMetrics {
        ServerMetrics {
            has_leader: add
                .gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
            is_leader: add
                .gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
            is_learner: add
                .gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise."),
            leader_changes: add.counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            proposals_committed: add
                .gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed."),
            proposals_applied: add
                .gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied."),
            proposals_pending: add
                .gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit."),
            proposals_failed: add
                .counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen."),
            health_success: add.counter("etcd_server_health_success", "The total number of successful health checks"),
            health_failures: add.counter("etcd_server_health_failures", "The total number of failed health checks"),
        }
    }
}

struct DiskMetrics {
    wal_fsync: Histogram,
    backend_commit: Histogram,
    backend_snapshot: Histogram,
}

impl DiskMetrics {
    fn register(add: &Registrar<'_>) -> DiskMetrics {
        DiskMetrics {
            // etcd: 1 ms to 8.192 s.
            wal_fsync: add.histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                buckets(0.001, 2.0, 14),
            ),
            backend_commit: add.histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                buckets(0.001, 2.0, 14),
            ),
            // etcd: 10 ms to 655.36 s.
            backend_snapshot: add.histogram(
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                buckets(0.01, 2.0, 17),
            ),
        }
    }
}

struct MvccMetrics {
    db_total_size: IntGauge,
    db_total_size_in_use: IntGauge,
    keys_total: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    compaction_keys: IntCounter,
    compaction_pause: Histogram,
    compaction_total: Histogram,
    put_total: IntCounter,
    delete_total: IntCounter,
    range_total: IntCounter,
    txn_total: IntCounter,
}

impl MvccMetrics {
    fn register(add: &Registrar<'_>) -> MvccMetrics {
        MvccMetrics {
            db_total_size: add.gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_total_size_in_use: add.gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys_total: add.gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            current_revision: add.gauge("etcd_debugging_mvcc_current_revision", "The current revision of store."),
            compact_revision: add
                .gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store."),
            compaction_keys: add
                .counter("etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted."),
            // etcd: 1 ms to 4.096 s.
            compaction_pause: add.histogram(
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                buckets(1.0, 2.0, 13),
            ),
            // etcd: 100 ms to 819.2 s.
            compaction_total: add.histogram(
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                buckets(100.0, 2.0, 14),
            ),
            put_total: add.counter("etcd_mvcc_put_total", "Total number of puts seen by this member."),
            delete_total: add.counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            range_total: add.counter("etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            txn_total: add.counter("etcd_mvcc_txn_total", "Total number of txns seen by this member."),
        }
    }
}

struct NetworkMetrics {
    round_trip_time: HistogramVec,
    sent_bytes: IntCounterVec,
    received_bytes: IntCounterVec,
    sent_failures: IntCounterVec,
    active_peers: IntGaugeVec,
}

impl NetworkMetrics {
    fn register(add: &Registrar<'_>) -> NetworkMetrics {
        // etcd: 0.1 ms to 3.2768 s.
        let round_trip_options =
            HistogramOpts::new("etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers")
                .buckets(buckets(0.0001, 2.0, 16));
        NetworkMetrics {
            round_trip_time: add.register(HistogramVec::new(round_trip_options, &["To"]).expect("valid metric")),
            sent_bytes: add.counter_vec(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
            ),
            received_bytes: add.counter_vec(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            ),
            sent_failures: add.counter_vec(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
            ),
            active_peers: add.gauge_vec(
                "etcd_network_active_peers",
                "The current number of active peer connections.",
                &["Local", "Remote"],
            ),
        }
    }
}

/// Applies `command` to `store` and counts it in etcd's mvcc metrics: puts, deletes and
/// ranges (also those of the transaction branch that ran), transactions of more than one
/// operation, live keys, and compactions (keys removed, duration).
pub fn apply_counted(metrics: &EtcdMetrics, store: &mut kv::Store, index: u64, command: &kv::Command) -> kv::Applied {
    let compaction = matches!(command.operation, kv::Operation::Compaction(_));
    let records_before = if compaction { store.record_count() } else { 0 };
    let started = std::time::Instant::now();
    let applied = store.apply(index, command);
    if compaction && applied.result.is_ok() {
        let milliseconds = started.elapsed().as_secs_f64() * 1000.0;
        metrics.compaction_pause_duration_milliseconds.observe(milliseconds);
        metrics.compaction_total_duration_milliseconds.observe(milliseconds);
        metrics.compaction_keys_total.inc_by(records_before.saturating_sub(store.record_count()) as u64);
    }
    if applied.duplicate {
        return applied;
    }
    let mut counts = OperationCounts::default();
    match (&command.operation, &applied.result) {
        (kv::Operation::Put(_), Ok(_)) => counts.puts += 1,
        (kv::Operation::DeleteRange(_), Ok(_)) => counts.deletes += 1,
        (kv::Operation::Range(_), Ok(_)) => counts.ranges += 1,
        (kv::Operation::Txn(request), Ok(kv::Response::Txn(response))) => counts.add_txn(request, response),
        _ => {}
    }
    counts.record(metrics);
    metrics.current_revision.set(store.current_revision());
    metrics.compact_revision.set(store.compact_revision());
    for event in &applied.events {
        let is_put = event.r#type == proto::mvccpb::event::EventType::Put as i32;
        match (is_put, event.prev_kv.is_some()) {
            (true, false) => metrics.keys_total.inc(),
            (false, _) => metrics.keys_total.dec(),
            (true, true) => {}
        }
    }
    applied
}

/// Counts a read served from the local store (not through the log): a range, or a
/// read-only transaction (counted as one transaction).
pub fn count_local_read(metrics: &EtcdMetrics, operation: &kv::Operation) {
    match operation {
        kv::Operation::Range(_) => metrics.range_total.inc(),
        kv::Operation::Txn(_) => metrics.txn_total.inc(),
        _ => {}
    }
}

/// Sets `etcd_debugging_mvcc_keys_total` to the number of live keys of `store` (at start
/// and after a snapshot was installed; [`apply_counted`] keeps it current in between).
pub fn count_keys(metrics: &EtcdMetrics, store: &kv::Store) {
    let every_key =
        proto::etcdserverpb::RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
    let count = store.range(&every_key).map_or(0, |response| response.count);
    metrics.keys_total.set(count);
}

/// Sets the size and revision gauges: `directory_size_bytes` is the data directory's size.
pub fn set_store_sizes(metrics: &EtcdMetrics, directory_size_bytes: u64, store: &kv::Store) {
    metrics.db_total_size_bytes.set(directory_size_bytes as i64);
    metrics.db_total_size_in_use_bytes.set(store.size_bytes() as i64);
    metrics.current_revision.set(store.current_revision());
    metrics.compact_revision.set(store.compact_revision());
}

/// Operations of one applied command, counted as etcd's mvcc layer counts them.
#[derive(Default)]
struct OperationCounts {
    puts: u64,
    deletes: u64,
    ranges: u64,
    transactions: u64,
}

impl OperationCounts {
    /// Counts the operations of the branch that ran (nested transactions too).
    fn add_txn(&mut self, request: &proto::etcdserverpb::TxnRequest, response: &proto::etcdserverpb::TxnResponse) {
        use proto::etcdserverpb::{request_op::Request, response_op::Response};
        let branch = if response.succeeded { &request.success } else { &request.failure };
        let before = self.puts + self.deletes + self.ranges;
        for (operation, answer) in branch.iter().zip(&response.responses) {
            match (&operation.request, &answer.response) {
                (Some(Request::RequestRange(_)), _) => self.ranges += 1,
                (Some(Request::RequestPut(_)), _) => self.puts += 1,
                (Some(Request::RequestDeleteRange(_)), _) => self.deletes += 1,
                (Some(Request::RequestTxn(nested)), Some(Response::ResponseTxn(answer))) => {
                    self.add_txn(nested, answer)
                }
                _ => {}
            }
        }
        // etcd counts a transaction when it ran more than one operation.
        if self.puts + self.deletes + self.ranges - before > 1 {
            self.transactions += 1;
        }
    }

    fn record(&self, metrics: &EtcdMetrics) {
        metrics.put_total.inc_by(self.puts);
        metrics.delete_total.inc_by(self.deletes);
        metrics.range_total.inc_by(self.ranges);
        metrics.txn_total.inc_by(self.transactions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> kv::Command {
        let request = proto::etcdserverpb::PutRequest { key: key.as_bytes().to_vec().into(), ..Default::default() };
        kv::Command::new(kv::Operation::Put(request))
    }

    #[test]
    fn applied_commands_are_counted_as_etcd_counts_them() {
        use proto::etcdserverpb::{request_op::Request, DeleteRangeRequest, RequestOp, TxnRequest};
        let metrics = EtcdMetrics::register(&Registry::new(), 1);
        let mut store = kv::Store::default();
        for (index, key) in ["a", "a", "b"].iter().enumerate() {
            apply_counted(&metrics, &mut store, index as u64 + 1, &put(key));
        }
        assert_eq!(metrics.keys_total.get(), 2);
        let delete = DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() };
        let operation = |request| RequestOp { request: Some(request) };
        let txn = TxnRequest {
            success: vec![
                operation(Request::RequestDeleteRange(delete)),
                operation(Request::RequestPut(match put("c").operation {
                    kv::Operation::Put(request) => request,
                    _ => unreachable!("a put"),
                })),
            ],
            ..Default::default()
        };
        apply_counted(&metrics, &mut store, 4, &kv::Command::new(kv::Operation::Txn(txn)));
        assert_eq!(metrics.keys_total.get(), 2, "a deleted, c added");
        assert_eq!((metrics.put_total.get(), metrics.delete_total.get(), metrics.txn_total.get()), (4, 1, 1));
        count_keys(&metrics, &store);
        assert_eq!(metrics.keys_total.get(), 2, "a recount agrees");
    }

    #[test]
    fn buckets_are_etcds() {
        let registry = Registry::new();
        let metrics = EtcdMetrics::register(&registry, 0xabc);
        let upper_bounds = |histogram: &Histogram| {
            histogram.observe(0.0);
            let family = histogram.collect_family();
            family.get_histogram().get_bucket().iter().map(|bucket| bucket.get_upper_bound()).collect::<Vec<f64>>()
        };
        let fsync = upper_bounds(&metrics.wal_fsync_duration_seconds);
        assert_eq!(fsync.len(), 14);
        assert!((fsync[0] - 0.001).abs() < 1e-12 && (fsync[13] - 8.192).abs() < 1e-9, "{fsync:?}");
        let snapshot = upper_bounds(&metrics.backend_snapshot_duration_seconds);
        assert!((snapshot[16] - 655.36).abs() < 1e-6, "{snapshot:?}");
        let pause = upper_bounds(&metrics.compaction_pause_duration_milliseconds);
        assert_eq!(pause.last().copied(), Some(4096.0));
        let total = upper_bounds(&metrics.compaction_total_duration_milliseconds);
        assert_eq!(total.last().copied(), Some(819_200.0));
        let names: Vec<String> = registry.gather().iter().map(|family| family.get_name().to_string()).collect();
        assert!(names.contains(&"etcd_server_id".to_string()), "{names:?}");
    }

    trait CollectFamily {
        fn collect_family(&self) -> prometheus::proto::Metric;
    }

    impl CollectFamily for Histogram {
        fn collect_family(&self) -> prometheus::proto::Metric {
            use prometheus::core::Collector;
            self.collect()[0].get_metric()[0].clone()
        }
    }
}
