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

/// Settings of the client-facing gRPC services.
#[derive(Clone, Debug)]
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
        }
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
        KvService::new(handle.clone(), options.request_size_bytes_max).with_authorizer(authorizer.clone()),
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

/// [`serve`], with TLS on every connection when `tls` is set (an `https://` client URL).
pub async fn serve_with_tls(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handle: NodeHandle,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let concurrent_streams_max = options.concurrent_streams_max;
    let incoming = crate::limits::incoming(listener, tls, options.connections_max);
    let routes = client_router(handle, options);
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(concurrent_streams_max)
        .layer(tonic::service::InterceptorLayer::new(crate::limits::refuse_over_limit));
    server.add_routes(routes).serve_with_incoming_shutdown(incoming, shutdown).await
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
