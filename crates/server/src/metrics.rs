//! Prometheus metrics and the `/metrics` + `/health` HTTP endpoints.
//!
//! `/metrics` serves etcd 3.4's metrics ([`crate::etcd_metrics`], [`crate::grpc_metrics`],
//! the `process_*` metrics) beside raftkv's own `raftkv_*` ones; see [`Metrics::render_text`].

use std::sync::Arc;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric the node exports.
pub struct Metrics {
    /// Registry holding all of them.
    pub registry: Registry,
    /// Proposals submitted to Raft by this node.
    pub proposals: IntCounter,
    /// Proposals refused or failed.
    pub proposals_failed: IntCounter,
    /// Entries committed (commit index).
    pub commit_index: IntGauge,
    /// Entries applied (applied index).
    pub applied_index: IntGauge,
    /// commit index − applied index.
    pub apply_lag_entries: IntGauge,
    /// Current term.
    pub term: IntGauge,
    /// 1 when this node leads.
    pub is_leader: IntGauge,
    /// Leader changes seen.
    pub leader_changes: IntCounter,
    /// Duration of WAL write + fdatasync per Ready.
    pub fsync_duration_seconds: Histogram,
    /// ReadIndex latency (request to read state).
    pub read_index_duration_seconds: Histogram,
    /// Messages waiting in each peer's queue.
    pub peer_queue_length: IntGaugeVec,
    /// Messages dropped because a peer queue was full.
    pub peer_messages_dropped: IntCounterVec,
    /// Incoming peer messages dropped because the Raft loop was saturated.
    pub inbound_messages_dropped: IntCounter,
    /// Heartbeats the Raft loop received from a leader.
    pub heartbeats_received: IntCounter,
    /// Largest gap, in microseconds, between two heartbeats the Raft loop received from the
    /// same leader (a stalled loop or a flooded queue shows here first).
    pub heartbeat_gap_max_microseconds: IntGauge,
    /// Bytes written to peers.
    pub peer_bytes_sent: IntCounter,
    /// Bytes read from peers.
    pub peer_bytes_received: IntCounter,
    /// Snapshots taken locally.
    pub snapshots_taken: IntCounter,
    /// etcd's metrics of this member (registered in `etcd_registry`).
    pub etcd: crate::etcd_metrics::EtcdMetrics,
    /// Registry of etcd's metrics and the process metrics.
    pub etcd_registry: Registry,
}

impl Metrics {
    /// Creates and registers every metric (member id 0: for tests).
    pub fn new() -> Arc<Metrics> {
        Metrics::for_member(0)
    }

    /// Creates and registers every metric of member `member_id`.
    pub fn for_member(member_id: u64) -> Arc<Metrics> {
        let etcd_registry = Registry::new();
        let etcd = crate::etcd_metrics::EtcdMetrics::register(&etcd_registry, member_id);
        #[cfg(target_os = "linux")]
        etcd_registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("one process collector per registry");
        let registry = Registry::new_custom(Some("raftkv".into()), None).expect("valid prefix");
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("unique metric");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("unique metric");
            metric
        };
        let histogram = |name: &str, help: &str| {
            let buckets = prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets");
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("unique metric");
            metric
        };
        let peer_queue_length =
            IntGaugeVec::new(Opts::new("peer_queue_length", "Messages queued per peer"), &["peer"]).expect("valid");
        registry.register(Box::new(peer_queue_length.clone())).expect("unique metric");
        let peer_messages_dropped =
            IntCounterVec::new(Opts::new("peer_messages_dropped_total", "Messages dropped per peer"), &["peer"])
                .expect("valid");
        registry.register(Box::new(peer_messages_dropped.clone())).expect("unique metric");
        Arc::new(Metrics {
            proposals: counter("proposals_total", "Proposals submitted to Raft"),
            proposals_failed: counter("proposals_failed_total", "Proposals refused or failed"),
            commit_index: gauge("commit_index", "Raft commit index"),
            applied_index: gauge("applied_index", "Raft applied index"),
            apply_lag_entries: gauge("apply_lag_entries", "Committed but not yet applied entries"),
            term: gauge("term", "Raft term"),
            is_leader: gauge("is_leader", "1 if this node is the leader"),
            leader_changes: counter("leader_changes_total", "Leader changes seen"),
            fsync_duration_seconds: histogram("wal_fsync_duration_seconds", "WAL write and fdatasync per Ready"),
            read_index_duration_seconds: histogram("read_index_duration_seconds", "ReadIndex latency"),
            peer_queue_length,
            peer_messages_dropped,
            inbound_messages_dropped: counter("inbound_messages_dropped_total", "Peer messages dropped on arrival"),
            heartbeats_received: counter("heartbeats_received_total", "Heartbeats received from a leader"),
            heartbeat_gap_max_microseconds: gauge(
                "heartbeat_gap_max_microseconds",
                "Largest gap between two heartbeats received from the same leader",
            ),
            peer_bytes_sent: counter("peer_sent_bytes_total", "Bytes written to peers"),
            peer_bytes_received: counter("peer_received_bytes_total", "Bytes read from peers"),
            snapshots_taken: counter("snapshots_total", "Snapshots taken"),
            registry,
            etcd,
            etcd_registry,
        })
    }

    /// Every metric in Prometheus's text exposition format, sorted by name: etcd's
    /// (this member's, the process-wide gRPC ones, `process_*`) and raftkv's own. What
    /// `/metrics` serves.
    pub fn render_text(&self) -> String {
        let mut families = self.etcd_registry.gather();
        families.extend(crate::grpc_metrics::global().registry.gather());
        families.extend(self.registry.gather());
        families.sort_by(|left, right| left.get_name().cmp(right.get_name()));
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new().encode(&families, &mut buffer).expect("text encoding");
        String::from_utf8(buffer).expect("prometheus text is UTF-8")
    }

    /// The metrics in Prometheus text format (see [`Metrics::render_text`]).
    pub fn render(&self) -> String {
        self.render_text()
    }
}

/// Serves `/metrics`, `/health` (healthy when a leader is known) and the routes of
/// `extra` on `listener`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    healthy: Arc<dyn Fn() -> bool + Send + Sync>,
    extra: axum::Router,
) -> std::io::Result<()> {
    use axum::routing::get;
    let metrics_route = {
        let metrics = metrics.clone();
        move || {
            let metrics = metrics.clone();
            async move { metrics.render_text() }
        }
    };
    let health_route = move || {
        let healthy = healthy.clone();
        let metrics = metrics.clone();
        async move {
            let is_healthy = healthy();
            let counter = if is_healthy { &metrics.etcd.health_success } else { &metrics.etcd.health_failures };
            counter.inc();
            if is_healthy {
                (axum::http::StatusCode::OK, "{\"health\":\"true\"}")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\",\"reason\":\"no leader\"}")
            }
        }
    };
    let router =
        axum::Router::new().route("/metrics", get(metrics_route)).route("/health", get(health_route)).merge(extra);
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let metrics = Metrics::new();
        metrics.proposals.inc();
        metrics.fsync_duration_seconds.observe(0.001);
        let text = metrics.render();
        assert!(text.contains("raftkv_proposals_total 1"));
        assert!(text.contains("raftkv_wal_fsync_duration_seconds_bucket"));
        assert!(text.contains("etcd_server_has_leader 0"));
        assert!(text.contains("etcd_server_version{server_version=\"3.4.23\"} 1"));
        assert!(text.contains("grpc_server_started_total{"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
