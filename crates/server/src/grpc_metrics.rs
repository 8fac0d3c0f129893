//! go-grpc-prometheus's server metrics, as etcd 3.4 exports them, recorded by a tower
//! layer on the client gRPC server ([`GrpcMetricsLayer`]):
//!
//! - `grpc_server_started_total`, `grpc_server_msg_received_total`,
//!   `grpc_server_msg_sent_total` (labels `grpc_type`, `grpc_service`, `grpc_method`);
//! - `grpc_server_handled_total` (the same labels and `grpc_code`, Go's code names);
//! - with `--metrics extensive`, `grpc_server_handling_seconds` (go-grpc-prometheus's
//!   default buckets, 5 ms to 10 s);
//! - etcd's `etcd_network_client_grpc_received_bytes_total` and `..._sent_bytes_total`:
//!   bytes of the gRPC messages (without their 5-byte frame prefix) read from and written
//!   to clients.
//!
//! As in etcd (whose go-grpc-prometheus metrics are process-wide), the metrics are one
//! set per process ([`global`]), and every method of the served services starts at zero
//! with every code, so dashboards see the series before the first call. Paths that name
//! no served method are not counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// gRPC status code names as Go prints them (go-grpc-prometheus's `grpc_code` label), by code number.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Code numbers used here.
const CODE_OK: u8 = 0;
const CODE_CANCELED: u8 = 1;
const CODE_UNKNOWN: u8 = 2;
/// Not yet known.
const CODE_PENDING: u8 = u8::MAX;

/// Every method served on the client URLs: (service, method, go-grpc-prometheus type).
pub const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", "unary"),
    ("etcdserverpb.KV", "Put", "unary"),
    ("etcdserverpb.KV", "DeleteRange", "unary"),
    ("etcdserverpb.KV", "Txn", "unary"),
    ("etcdserverpb.KV", "Compact", "unary"),
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseGrant", "unary"),
    ("etcdserverpb.Lease", "LeaseRevoke", "unary"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseTimeToLive", "unary"),
    ("etcdserverpb.Lease", "LeaseLeases", "unary"),
    ("etcdserverpb.Cluster", "MemberAdd", "unary"),
    ("etcdserverpb.Cluster", "MemberRemove", "unary"),
    ("etcdserverpb.Cluster", "MemberUpdate", "unary"),
    ("etcdserverpb.Cluster", "MemberList", "unary"),
    ("etcdserverpb.Cluster", "MemberPromote", "unary"),
    ("etcdserverpb.Maintenance", "Alarm", "unary"),
    ("etcdserverpb.Maintenance", "Status", "unary"),
    ("etcdserverpb.Maintenance", "Defragment", "unary"),
    ("etcdserverpb.Maintenance", "Hash", "unary"),
    ("etcdserverpb.Maintenance", "HashKV", "unary"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("etcdserverpb.Maintenance", "MoveLeader", "unary"),
    ("etcdserverpb.Auth", "AuthEnable", "unary"),
    ("etcdserverpb.Auth", "AuthDisable", "unary"),
    ("etcdserverpb.Auth", "Authenticate", "unary"),
    ("etcdserverpb.Auth", "UserAdd", "unary"),
    ("etcdserverpb.Auth", "UserGet", "unary"),
    ("etcdserverpb.Auth", "UserList", "unary"),
    ("etcdserverpb.Auth", "UserDelete", "unary"),
    ("etcdserverpb.Auth", "UserChangePassword", "unary"),
    ("etcdserverpb.Auth", "UserGrantRole", "unary"),
    ("etcdserverpb.Auth", "UserRevokeRole", "unary"),
    ("etcdserverpb.Auth", "RoleAdd", "unary"),
    ("etcdserverpb.Auth", "RoleGet", "unary"),
    ("etcdserverpb.Auth", "RoleList", "unary"),
    ("etcdserverpb.Auth", "RoleDelete", "unary"),
    ("etcdserverpb.Auth", "RoleGrantPermission", "unary"),
    ("etcdserverpb.Auth", "RoleRevokePermission", "unary"),
];

/// The process-wide gRPC metrics.
pub struct GrpcMetrics {
    /// Where they are registered (rendered with every member's metrics).
    pub registry: Registry,
    started: IntCounterVec,
    handled: IntCounterVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    handling_seconds: HistogramVec,
    extensive: AtomicBool,
    /// `etcd_network_client_grpc_received_bytes_total`.
    pub client_received_bytes: IntCounter,
    /// `etcd_network_client_grpc_sent_bytes_total`.
    pub client_sent_bytes: IntCounter,
}

static GRPC_METRICS: LazyLock<GrpcMetrics> = LazyLock::new(GrpcMetrics::new);

/// The process's gRPC metrics.
pub fn global() -> &'static GrpcMetrics {
    &GRPC_METRICS
}

const LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];

impl GrpcMetrics {
    fn new() -> GrpcMetrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("unique metric name");
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("unique metric name");
            metric
        };
        let handled_labels = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"];
        let metrics = GrpcMetrics {
            started: counter_vec("grpc_server_started_total", "Total number of RPCs started on the server.", &LABELS),
            handled: counter_vec(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &handled_labels,
            ),
            received: counter_vec(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                &LABELS,
            ),
            sent: counter_vec(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                &LABELS,
            ),
            handling_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                )
                .buckets(prometheus::DEFAULT_BUCKETS.to_vec()),
                &LABELS,
            )
            .expect("valid metric"),
            extensive: AtomicBool::new(false),
            client_received_bytes: counter(
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            client_sent_bytes: counter(
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            registry,
        };
        for (service, method, kind) in METHODS {
            let labels = [*kind, *service, *method];
            metrics.started.with_label_values(&labels);
            metrics.received.with_label_values(&labels);
            metrics.sent.with_label_values(&labels);
            for code in CODE_NAMES {
                metrics.handled.with_label_values(&[kind, service, method, code]);
            }
        }
        metrics
    }

    /// `--metrics extensive`: also record `grpc_server_handling_seconds` (idempotent).
    pub fn enable_handling_time_histogram(&self) {
        if self.extensive.swap(true, Ordering::SeqCst) {
            return;
        }
        self.registry.register(Box::new(self.handling_seconds.clone())).expect("registered once");
        for (service, method, kind) in METHODS {
            self.handling_seconds.with_label_values(&[kind, service, method]);
        }
    }

    fn finish(&self, call: &CallLabels, code: u8, started: Instant) {
        let code_name = CODE_NAMES.get(usize::from(code)).copied().unwrap_or("Unknown");
        let [kind, service, method] = call.labels;
        self.handled.with_label_values(&[kind, service, method, code_name]).inc();
        if self.extensive.load(Ordering::Relaxed) {
            self.handling_seconds.with_label_values(&call.labels).observe(started.elapsed().as_secs_f64());
        }
    }
}

/// The labels of a served method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CallLabels {
    labels: [&'static str; 3],
}

/// The method a request path (`/service/method`) names, if it is served.
fn call_labels(path: &str) -> Option<CallLabels> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    METHODS
        .iter()
        .find(|(known_service, known_method, _)| *known_service == service && *known_method == method)
        .map(|(service, method, kind)| CallLabels { labels: [kind, service, method] })
}

/// One call being counted: finished once, with the first code learned.
struct CallRecord {
    labels: CallLabels,
    started: Instant,
    code: AtomicU8,
    finished: AtomicBool,
}

impl CallRecord {
    fn set_code(&self, code: u8) {
        let _ = self.code.compare_exchange(CODE_PENDING, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn finish(&self, fallback: u8) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        self.set_code(fallback);
        global().finish(&self.labels, self.code.load(Ordering::SeqCst), self.started);
    }
}

/// The tower layer that records the metrics of every call (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService { inner }
    }
}

/// [`GrpcMetricsLayer`]'s service.
#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ResponseBody> tower::Service<http::Request<tonic::body::Body>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: http_body::Body<Data = Bytes>,
{
    type Response = http::Response<CountedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let record = call_labels(request.uri().path()).map(|labels| {
            global().started.with_label_values(&labels.labels).inc();
            Arc::new(CallRecord {
                labels,
                started: Instant::now(),
                code: AtomicU8::new(CODE_PENDING),
                finished: AtomicBool::new(false),
            })
        });
        let request = match &record {
            Some(record) => request
                .map(|body| tonic::body::Body::new(CountedBody::new(body, Direction::Received, Some(record.clone())))),
            None => request,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(error) => {
                    if let Some(record) = &record {
                        record.finish(CODE_UNKNOWN);
                    }
                    return Err(error);
                }
            };
            if let (Some(record), Some(code)) = (&record, status_code(response.headers())) {
                record.set_code(code); // a trailers-only answer: the status is in the headers
            }
            Ok(response.map(|body| CountedBody::new(body, Direction::Sent, record)))
        })
    }
}

/// The `grpc-status` of a header or trailer map.
fn status_code(headers: &http::HeaderMap) -> Option<u8> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.trim().parse::<u8>().ok()
}

/// Which way a counted body's messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Received,
    Sent,
}

/// Counts the gRPC messages of a byte stream (1 flag byte, 4 length bytes, the message).
#[derive(Debug, Default)]
struct MessageCounter {
    header: [u8; 5],
    header_filled: usize,
    payload_remaining: u64,
}

impl MessageCounter {
    /// Feeds `data`; returns (messages completed, message bytes seen).
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut payload_bytes) = (0, 0);
        while !data.is_empty() {
            if self.payload_remaining > 0 {
                let take = self.payload_remaining.min(data.len() as u64);
                payload_bytes += take;
                self.payload_remaining -= take;
                data = &data[take as usize..];
                if self.payload_remaining == 0 {
                    messages += 1;
                }
                continue;
            }
            let take = (5 - self.header_filled).min(data.len());
            self.header[self.header_filled..self.header_filled + take].copy_from_slice(&data[..take]);
            self.header_filled += take;
            data = &data[take..];
            if self.header_filled == 5 {
                self.header_filled = 0;
                let length = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                self.payload_remaining = u64::from(length);
                if length == 0 {
                    messages += 1;
                }
            }
        }
        (messages, payload_bytes)
    }
}

pin_project_lite::pin_project! {
    /// A body whose gRPC messages are counted; a response body also records the call's
    /// outcome when its trailers pass, when it ends, or (as canceled) when it is dropped early.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        direction: Direction,
        record: Option<Arc<CallRecord>>,
        counter: MessageCounter,
    }

    impl<B> PinnedDrop for CountedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.direction == Direction::Sent {
                if let Some(record) = this.record.as_ref() {
                    record.finish(CODE_CANCELED);
                }
            }
        }
    }
}

impl<B> CountedBody<B> {
    fn new(inner: B, direction: Direction, record: Option<Arc<CallRecord>>) -> CountedBody<B> {
        CountedBody { inner, direction, record, counter: MessageCounter::default() }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(context);
        let Some(record) = this.record.as_ref() else { return polled };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let (messages, payload_bytes) = this.counter.feed(data.chunk());
                    let metrics = global();
                    let (messages_counter, bytes_counter) = match this.direction {
                        Direction::Received => (&metrics.received, &metrics.client_received_bytes),
                        Direction::Sent => (&metrics.sent, &metrics.client_sent_bytes),
                    };
                    if messages > 0 {
                        messages_counter.with_label_values(&record.labels.labels).inc_by(messages);
                    }
                    bytes_counter.inc_by(payload_bytes);
                } else if let (Some(trailers), Direction::Sent) = (frame.trailers_ref(), *this.direction) {
                    record.finish(status_code(trailers).unwrap_or(CODE_UNKNOWN));
                }
            }
            Poll::Ready(None) if *this.direction == Direction::Sent => record.finish(CODE_OK),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_split_across_chunks() {
        let mut counter = MessageCounter::default();
        // Two messages of 3 and 0 bytes, then one of 2 bytes cut inside its header.
        let stream = [0u8, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 9, 9];
        let (first, first_bytes) = counter.feed(&stream[..3]);
        assert_eq!((first, first_bytes), (0, 0));
        let (second, second_bytes) = counter.feed(&stream[3..15]);
        assert_eq!((second, second_bytes), (2, 3));
        let (third, third_bytes) = counter.feed(&stream[15..]);
        assert_eq!((third, third_bytes), (1, 2));
    }

    #[test]
    fn paths_name_served_methods_only() {
        let put = call_labels("/etcdserverpb.KV/Put").expect("served");
        assert_eq!(put.labels, ["unary", "etcdserverpb.KV", "Put"]);
        let watch = call_labels("/etcdserverpb.Watch/Watch").expect("served");
        assert_eq!(watch.labels[0], "bidi_stream");
        assert!(call_labels("/etcdserverpb.KV/Nope").is_none());
        assert!(call_labels("/metrics").is_none());
    }

    #[test]
    fn handling_time_is_exported_with_extensive_only() {
        // A registry of its own: the process-wide one may be switched on by another test.
        let metrics = GrpcMetrics::new();
        let has_histogram = |metrics: &GrpcMetrics| {
            metrics.registry.gather().iter().any(|family| family.get_name() == "grpc_server_handling_seconds")
        };
        assert!(!has_histogram(&metrics), "--metrics basic serves no handling time (as etcd)");
        metrics.enable_handling_time_histogram();
        metrics.enable_handling_time_histogram();
        assert!(has_histogram(&metrics), "--metrics extensive serves it");
    }

    #[test]
    fn every_method_starts_with_every_code() {
        let families = global().registry.gather();
        let handled = families.iter().find(|family| family.get_name() == "grpc_server_handled_total").expect("handled");
        assert_eq!(handled.get_metric().len(), METHODS.len() * CODE_NAMES.len());
    }
}
