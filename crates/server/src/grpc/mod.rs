//! etcd's v3 gRPC API on the client URLs: `KV`, `Watch`, `Lease`, `Maintenance`, `Cluster`
//! and `Auth` (users, roles and permissions; see [`AuthService`] and [`Authorizer`]).
//!
//! Every service reaches the node through [`NodeHandle`]:
//!
//! - writes (`Put`, `DeleteRange`, `Txn` with writes, `Compact`) are checked against the
//!   local store (`kv::Store::validate`) and the request size limit, then replicated with
//!   [`NodeHandle::write`];
//! - `Range` and read-only `Txn` are served from the local store: as they are when every
//!   range is `serializable`, otherwise after [`NodeHandle::read_barrier`] (ReadIndex), so
//!   they are linearizable;
//! - errors carry etcd's gRPC codes and messages (see [`status_from_server_error`]), so
//!   etcd's clients recognise them.
//!
//! # Exactly-once retries (requirement R8)
//!
//! A client may send the gRPC metadata entry
//!
//! ```text
//! x-raftkv-request-id: <client_id>:<sequence>
//! ```
//!
//! (two decimal `u64`s, both at least 1) with `Put`, `DeleteRange`, `Txn` or `Compact`.
//! The command is then replicated with that [`kv::RequestId`]: a client numbers its
//! writes 1, 2, 3, ... under a `client_id` unique to it and reuses the number when it
//! retries after a timeout or a lost connection. A retry of a write that was already
//! applied is not applied again; it gets the answer the first attempt got. A retry older
//! than the client's newest answered sequence fails with `FailedPrecondition`. Without
//! the entry, the node assigns a fresh id and a retry is a new write (as in etcd). A
//! malformed entry fails with `InvalidArgument`.

mod auth;
mod cluster;
mod kv_service;
mod lease;
mod maintenance;
mod read_txn;
pub mod snapshot;
mod status;
mod unimplemented;
mod watch;

#[cfg(test)]
mod test_node;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use tokio::net::TcpListener;

use crate::handle::NodeHandle;

pub use auth::{with_token, AuthService, Authorizer, TOKEN_METADATA_KEY};
pub use cluster::ClusterService;
pub use kv_service::KvService;
pub use lease::LeaseService;
pub use maintenance::{MaintenanceService, SERVER_VERSION};
pub use status::{status_from_kv_error, status_from_server_error};
pub use unimplemented::{UnimplementedLease, UnimplementedWatch};
pub use watch::WatchService;

/// A channel to the leader's first client URL when another member leads (with `tls` for an
/// `https://` URL, as the member's own clients would need), connected within `timeout`;
/// `None` if this member leads, no leader is known, or it cannot be reached.
pub(crate) async fn leader_channel(
    handle: &NodeHandle,
    tls: Option<&tonic::transport::ClientTlsConfig>,
    timeout: std::time::Duration,
) -> Option<tonic::transport::Channel> {
    let status = handle.status();
    if status.leader == 0 || status.leader == status.member_id {
        return None;
    }
    let members = handle.members();
    let leader = members.iter().find(|member| member.id == status.leader)?;
    let url = leader.client_urls.first()?.clone();
    let mut endpoint = tonic::transport::Channel::from_shared(url).ok()?.connect_timeout(timeout).timeout(timeout);
    if let (Some(tls), true) = (tls, endpoint.uri().scheme_str() == Some("https")) {
        endpoint = endpoint.tls_config(tls.clone()).ok()?;
    }
    tokio::time::timeout(timeout, endpoint.connect()).await.ok()?.ok()
}

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const REQUEST_SIZE_BYTES_MAX_DEFAULT: usize = 1_572_864;

/// What etcd allows a gRPC message above the request limit (`grpcOverheadBytes`), so a
/// request slightly over the limit gets etcd's "request is too large" rather than a
/// transport error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Largest response message sent (etcd: `math.MaxInt32`).
pub const RESPONSE_SIZE_BYTES_MAX: usize = i32::MAX as usize;

/// The metadata key of a client-chosen request id; see the module documentation.
pub const REQUEST_ID_METADATA_KEY: &str = "x-raftkv-request-id";

/// etcd's default `--grpc-keepalive-min-time`.
pub const KEEPALIVE_MIN_TIME_DEFAULT: Duration = Duration::from_secs(5);
/// etcd's default `--grpc-keepalive-interval`.
pub const KEEPALIVE_INTERVAL_DEFAULT: Duration = Duration::from_secs(2 * 60 * 60);
/// etcd's default `--grpc-keepalive-timeout`.
pub const KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);

/// Settings of the client-facing services (gRPC and the JSON gateway).
#[derive(Clone)]
pub struct GrpcOptions {
    /// Largest write request accepted, in encoded bytes (etcd's `--max-request-bytes`).
    pub request_size_bytes_max: usize,
    /// Largest message the gRPC layer decodes; larger ones fail with `ResourceExhausted`
    /// before reaching a service. At least `request_size_bytes_max`.
    pub message_size_bytes_max: usize,
    /// Most concurrent HTTP/2 streams per client connection.
    pub concurrent_streams_max: u32,
    /// Most client connections at once per listener (see [`crate::limits`]).
    pub connections_max: usize,
    /// TLS for this member's calls to another member's `https://` client URL.
    pub forward_tls: Option<tonic::transport::ClientTlsConfig>,
    /// etcd's `--grpc-keepalive-min-time`: how often clients may ping at most (zero: no
    /// limit). Enforced as grpc-go does: a client that pings sooner three times (or at
    /// all while it has no stream open) gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
    pub keepalive_min_time: Duration,
    /// etcd's `--grpc-keepalive-interval`: how long a connection may stay silent before
    /// the server pings it (zero: never).
    pub keepalive_interval: Duration,
    /// etcd's `--grpc-keepalive-timeout`: how long the server waits for a ping's answer
    /// before closing the connection.
    pub keepalive_timeout: Duration,
    /// etcd's `--cors` and `--host-whitelist` for the HTTP requests of the client URLs
    /// (the JSON gateway, `/health`, `/metrics`, `/version`).
    pub http_rules: crate::gateway::HttpRules,
    /// The metrics `/metrics` serves on the client URLs (none: `/metrics` answers 404).
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// `--enable-pprof`: serve raftkv's profiling pages at `/debug/pprof/` on the client URLs.
    pub profiling_enabled: bool,
    /// `--quota-backend-bytes`: the space quota puts, transactions and lease grants must fit in.
    pub quota: crate::quota::Quota,
}

impl std::fmt::Debug for GrpcOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GrpcOptions")
            .field("request_size_bytes_max", &self.request_size_bytes_max)
            .field("message_size_bytes_max", &self.message_size_bytes_max)
            .field("concurrent_streams_max", &self.concurrent_streams_max)
            .field("connections_max", &self.connections_max)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("http_rules", &self.http_rules)
            .finish_non_exhaustive()
    }
}

impl GrpcOptions {
    /// Options for a request limit of `request_size_bytes_max` (etcd's `--max-request-bytes`),
    /// decoding messages up to that plus [`GRPC_OVERHEAD_BYTES`] as etcd does.
    pub fn with_request_size_bytes_max(request_size_bytes_max: usize) -> GrpcOptions {
        assert!(request_size_bytes_max > 0, "requests must be allowed some bytes");
        GrpcOptions {
            request_size_bytes_max,
            message_size_bytes_max: request_size_bytes_max.saturating_add(GRPC_OVERHEAD_BYTES),
            concurrent_streams_max: 1024,
            connections_max: 4096,
            forward_tls: None,
            keepalive_min_time: KEEPALIVE_MIN_TIME_DEFAULT,
            keepalive_interval: KEEPALIVE_INTERVAL_DEFAULT,
            keepalive_timeout: KEEPALIVE_TIMEOUT_DEFAULT,
            http_rules: crate::gateway::HttpRules::default(),
            profiling_enabled: false,
            metrics: None,
            quota: crate::quota::Quota::default(),
        }
    }

    /// Largest JSON body the gateway reads: room for a request of
    /// `message_size_bytes_max` in base64 and JSON, so the gRPC limits decide.
    pub fn gateway_body_bytes_max(&self) -> usize {
        self.message_size_bytes_max.saturating_mul(2).saturating_add(64 * 1024)
    }
}

impl Default for GrpcOptions {
    fn default() -> GrpcOptions {
        GrpcOptions::with_request_size_bytes_max(REQUEST_SIZE_BYTES_MAX_DEFAULT)
    }
}

/// Routes of every etcd v3 service for one node, to mount on a tonic server (see [`serve`]).
pub fn client_router(handle: NodeHandle, options: GrpcOptions) -> tonic::service::Routes {
    assert!(options.message_size_bytes_max >= options.request_size_bytes_max, "decoding limit below request limit");
    let message_size_bytes_max = options.message_size_bytes_max;
    // One token tracker per member, shared by every service.
    let authorizer = Authorizer::new(handle.clone());
    let auth = AuthServer::new(AuthService::new(handle.clone(), authorizer.clone()))
        .max_decoding_message_size(message_size_bytes_max)
        .max_encoding_message_size(RESPONSE_SIZE_BYTES_MAX);
    let kv = KvServer::new(
        KvService::new(handle.clone(), options.request_size_bytes_max)
            .with_authorizer(authorizer.clone())
            .with_quota(options.quota),
    )
    .max_decoding_message_size(message_size_bytes_max)
    .max_encoding_message_size(RESPONSE_SIZE_BYTES_MAX);
    let maintenance =
        MaintenanceServer::new(MaintenanceService::new(handle.clone()).with_authorizer(authorizer.clone()))
            .max_decoding_message_size(message_size_bytes_max)
            .max_encoding_message_size(RESPONSE_SIZE_BYTES_MAX);
    let watch = WatchServer::new(
        WatchService::new(handle.clone(), options.request_size_bytes_max).with_authorizer(authorizer.clone()),
    )
    .max_decoding_message_size(message_size_bytes_max)
    .max_encoding_message_size(RESPONSE_SIZE_BYTES_MAX);
    let lease_service = LeaseService::new(handle.clone())
        .with_authorizer(authorizer.clone())
        .with_quota(options.quota)
        .with_forward_tls(options.forward_tls.clone());
    let lease = LeaseServer::new(lease_service)
        .max_decoding_message_size(message_size_bytes_max)
        .max_encoding_message_size(RESPONSE_SIZE_BYTES_MAX);
    let cluster_service =
        ClusterService::new(handle).with_authorizer(authorizer).with_forward_tls(options.forward_tls.clone());
    let cluster = ClusterServer::new(cluster_service)
        .max_decoding_message_size(message_size_bytes_max)
        .max_encoding_message_size(RESPONSE_SIZE_BYTES_MAX);
    tonic::service::Routes::new(kv)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(watch)
        .add_service(lease)
        .add_service(auth)
}

/// Serves etcd's v3 gRPC API for `handle` on `listener` until `shutdown` completes, then
/// stops accepting and lets running calls finish.
pub async fn serve(
    listener: TcpListener,
    handle: NodeHandle,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with_tls(listener, None, handle, options, shutdown).await
}

/// The gRPC services of one node behind their middleware (the connection limit's
/// refusal, metrics): what gRPC clients reach on a client listener and what the JSON
/// gateway calls in process.
pub fn grpc_service(handle: NodeHandle, options: GrpcOptions) -> crate::gateway::GrpcService {
    let routes = client_router(handle, options);
    let service = tower::ServiceBuilder::new()
        .map_response(|response: axum::http::Response<_>| response.map(tonic::body::Body::new))
        // gRPC middleware, outermost first.
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
        .map_response(crate::limits::decoder_refusal_as_grpc_go)
        .layer(tonic::service::InterceptorLayer::new(crate::limits::refuse_over_limit))
        .service(routes);
    tower::util::BoxCloneSyncService::new(service)
}

/// [`serve`], with TLS on every connection when `tls` is set (an `https://` client URL).
///
/// Each connection speaks HTTP/2 or HTTP/1.1. An HTTP/2 request with an
/// `application/grpc` content type goes to the gRPC services; every other request to
/// the JSON gateway and the HTTP endpoints ([`crate::gateway`]), as on etcd's client URLs.
pub async fn serve_with_tls(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handle: NodeHandle,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = crate::limits::incoming(listener, tls.clone(), options.connections_max);
    let grpc = grpc_service(handle.clone(), options.clone());
    let settings = crate::gateway::GatewaySettings {
        rules: crate::gateway::HttpRules { tls: tls.is_some(), ..options.http_rules.clone() },
        limits: crate::gateway::GatewayLimits {
            body_bytes_max: options.gateway_body_bytes_max(),
            message_size_bytes_max: options.message_size_bytes_max,
        },
        metrics: options.metrics.clone(),
        profiling_enabled: options.profiling_enabled,
    };
    let gateway = crate::gateway::router(grpc.clone(), handle, settings);
    let service = tower::service_fn(move |request: axum::http::Request<tonic::body::Body>| {
        let grpc = grpc.clone();
        let gateway = gateway.clone();
        async move {
            use tower::ServiceExt as _;
            if is_grpc_request(&request) {
                grpc.oneshot(request).await
            } else {
                let response = gateway.oneshot(request.map(axum::body::Body::new)).await;
                let response = match response {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok(response.map(tonic::body::Body::new))
            }
        }
    });
    // etcd's --grpc-keepalive-min-time: clients pinging more often are sent away (the
    // patched h2 enforces grpc-go's policy; process-wide, every client listener shares it).
    h2::server::set_server_ping_min_interval(
        (!options.keepalive_min_time.is_zero()).then_some(options.keepalive_min_time),
    );
    let keepalive_interval = (!options.keepalive_interval.is_zero()).then_some(options.keepalive_interval);
    let keepalive_timeout = (!options.keepalive_timeout.is_zero()).then_some(options.keepalive_timeout);
    tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(options.concurrent_streams_max)
        .http2_keepalive_interval(keepalive_interval)
        .http2_keepalive_timeout(keepalive_timeout)
        .serve_with_incoming_shutdown(service, incoming, shutdown)
        .await
}

/// Whether a client listener's request is a gRPC call (HTTP/2, `application/grpc…`).
pub fn is_grpc_request<B>(request: &axum::http::Request<B>) -> bool {
    request.version() == axum::http::Version::HTTP_2
        && request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|content_type| content_type.starts_with("application/grpc"))
}

/// The request id a client chose with [`REQUEST_ID_METADATA_KEY`], if any.
pub fn request_id_from_metadata(
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Option<kv::RequestId>, tonic::Status> {
    let Some(value) = metadata.get(REQUEST_ID_METADATA_KEY) else {
        return Ok(None);
    };
    let malformed = || {
        tonic::Status::invalid_argument(format!(
            "raftkv: malformed {REQUEST_ID_METADATA_KEY}: expected <client_id>:<sequence>, two decimal integers of at least 1"
        ))
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (client, sequence) = text.trim().split_once(':').ok_or_else(malformed)?;
    let client_id: u64 = client.parse().map_err(|_| malformed())?;
    let sequence: u64 = sequence.parse().map_err(|_| malformed())?;
    if client_id == 0 || sequence == 0 {
        return Err(malformed());
    }
    Ok(Some(kv::RequestId { client_id, sequence }))
}
