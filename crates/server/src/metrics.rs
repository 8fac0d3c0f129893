//! Prometheus metrics and the `/metrics` + `/health` HTTP endpoints.

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
    /// Bytes written to peers.
    pub peer_bytes_sent: IntCounter,
    /// Bytes read from peers.
    pub peer_bytes_received: IntCounter,
    /// Snapshots taken locally.
    pub snapshots_taken: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Metrics> {
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
            peer_bytes_sent: counter("peer_sent_bytes_total", "Bytes written to peers"),
            peer_bytes_received: counter("peer_received_bytes_total", "Bytes read from peers"),
            snapshots_taken: counter("snapshots_total", "Snapshots taken"),
            registry,
        })
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding");
        String::from_utf8(buffer).expect("prometheus text is UTF-8")
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
            async move { metrics.render() }
        }
    };
    let health_route = move || {
        let healthy = healthy.clone();
        async move {
            if healthy() {
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
    }
}
