//! etcd's JSON/HTTP gateway on the client URLs: `POST /v3/kv/put`, `/v3/kv/range`,
//! `/v3/watch`, `/v3/lease/grant`, … (every path etcd 3.4's grpc-gateway serves, also
//! under `/v3beta/`), plus `/health`, `/metrics` and `/version` as etcd serves them there.
//!
//! A gateway call decodes its JSON body into the gRPC request ([`json`]: etcd's JSON
//! mapping), calls the member's gRPC services in process — the same services, with the
//! same middleware, that gRPC clients reach — and answers in etcd's JSON: the response,
//! or etcd's error body `{"error":…,"message":…,"code":…}` with the HTTP status
//! grpc-gateway maps the gRPC code to. Streaming calls (`/v3/watch`, `/v3/lease/keepalive`,
//! `/v3/maintenance/snapshot`) answer one `{"result":…}` object per line.
//!
//! The client listener tells the two apart as etcd does: an HTTP/2 request with a
//! `application/grpc` content type goes to the gRPC services, any other request here.
//! `--cors` and `--host-whitelist` apply to these HTTP requests (see [`rules`]).

mod calls;
pub mod json;
pub mod rules;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use calls::{error_response, http_status, GatewayLimits, GatewayMethod, METADATA_HEADER_PREFIX};
pub use rules::HttpRules;

/// The node's gRPC services with their middleware, as one cloneable service: what a
/// gateway call calls.
pub type GrpcService = tower::util::BoxCloneSyncService<
    axum::http::Request<tonic::body::Body>,
    axum::http::Response<tonic::body::Body>,
    std::convert::Infallible,
>;

/// The cluster version `/version` reports (etcd 3.4's).
pub const CLUSTER_VERSION: &str = "3.4.0";

/// etcd 3.4's gateway paths (after `/v3/` or `/v3beta/`) and the gRPC methods they call.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("kv/range", "etcdserverpb.KV", "Range"),
    ("kv/put", "etcdserverpb.KV", "Put"),
    ("kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("kv/txn", "etcdserverpb.KV", "Txn"),
    ("kv/compaction", "etcdserverpb.KV", "Compact"),
    ("watch", "etcdserverpb.Watch", "Watch"),
    ("lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"),
    ("lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"),
    ("cluster/member/remove", "etcdserverpb.Cluster", "MemberRemove"),
    ("cluster/member/update", "etcdserverpb.Cluster", "MemberUpdate"),
    ("cluster/member/list", "etcdserverpb.Cluster", "MemberList"),
    ("cluster/member/promote", "etcdserverpb.Cluster", "MemberPromote"),
    ("maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    ("maintenance/status", "etcdserverpb.Maintenance", "Status"),
    ("maintenance/defragment", "etcdserverpb.Maintenance", "Defragment"),
    // etcd binds Hash and HashKV to this path; its gateway answers with Hash.
    ("maintenance/hash", "etcdserverpb.Maintenance", "Hash"),
    ("maintenance/snapshot", "etcdserverpb.Maintenance", "Snapshot"),
    ("maintenance/transfer-leadership", "etcdserverpb.Maintenance", "MoveLeader"),
    ("auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    ("auth/user/changepw", "etcdserverpb.Auth", "UserChangePassword"),
    ("auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    ("auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"),
    ("auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    ("auth/role/grant", "etcdserverpb.Auth", "RoleGrantPermission"),
    ("auth/role/revoke", "etcdserverpb.Auth", "RoleRevokePermission"),
];

/// API versions the gateway answers under (`/v3/kv/put`, `/v3beta/kv/put`).
pub const PREFIXES: &[&str] = &["/v3/", "/v3beta/"];

/// What the gateway of one client listener needs besides the gRPC services.
#[derive(Clone)]
pub struct GatewaySettings {
    /// `--cors` and `--host-whitelist`, and whether the listener is TLS.
    pub rules: HttpRules,
    /// Largest JSON body and request message.
    pub limits: GatewayLimits,
    /// `/metrics` (Prometheus text); absent without metrics.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// `--enable-pprof`: mount [`crate::pprof::pprof_router`] at `/debug/pprof/`.
    pub profiling_enabled: bool,
}

/// The HTTP side of a client listener: the gateway's routes, `/health`, `/metrics` and
/// `/version`, behind `--host-whitelist` and `--cors`.
pub fn router(grpc: GrpcService, handle: crate::handle::NodeHandle, settings: GatewaySettings) -> axum::Router {
    use axum::routing::{get, post};
    let mut router = axum::Router::new();
    for (suffix, service, method) in ROUTES {
        let method = Arc::new(GatewayMethod::new(service, method));
        for prefix in PREFIXES {
            let grpc = grpc.clone();
            let method = method.clone();
            let limits = settings.limits;
            let handler =
                move |request: axum::extract::Request| calls::call(grpc.clone(), method.clone(), limits, request);
            router = router.route(&format!("{prefix}{suffix}"), post(handler));
        }
    }
    let health_handle = handle.clone();
    let metrics = settings.metrics.clone();
    router = router
        .route("/version", get(|| async { version_response() }))
        .route("/health", get(move || health_response(health_handle.clone())))
        .route("/metrics", get(move || std::future::ready(metrics_response(metrics.as_deref()))));
    if settings.profiling_enabled {
        router = router.merge(crate::pprof::pprof_router());
    }
    router = router.fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") });
    let rules = Arc::new(settings.rules);
    router.layer(axum::middleware::from_fn(move |request, next| rules::apply(rules.clone(), request, next)))
}

fn version_response() -> Response {
    let body = serde_json::json!({"etcdserver": crate::grpc::SERVER_VERSION, "etcdcluster": CLUSTER_VERSION});
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// How long `/health` waits for the cluster to confirm a read.
pub const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// etcd's `/health`: healthy when a leader is known and a linearizable read completes.
async fn health_response(handle: crate::handle::NodeHandle) -> Response {
    let reason = if handle.status().leader == 0 {
        Some("no leader".to_string())
    } else {
        match tokio::time::timeout(HEALTH_TIMEOUT, handle.read_barrier()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("read timed out".to_string()),
        }
    };
    match reason {
        None => (StatusCode::OK, "{\"health\":\"true\"}").into_response(),
        Some(reason) => {
            let body = serde_json::json!({"health": "false", "reason": reason});
            (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response()
        }
    }
}

fn metrics_response(metrics: Option<&crate::metrics::Metrics>) -> Response {
    match metrics {
        Some(metrics) => {
            ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], metrics.render()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}
