//! `Watch` and `Lease` services whose methods all answer `Unimplemented` (the generated
//! default bodies), so clients get a clear gRPC status instead of an unknown route.

use proto::etcdserverpb::{lease_server::Lease, watch_server::Watch};

/// `etcdserverpb.Watch` answering `Unimplemented`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnimplementedWatch;

#[tonic::async_trait]
impl Watch for UnimplementedWatch {}

/// `etcdserverpb.Lease` answering `Unimplemented`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnimplementedLease;

#[tonic::async_trait]
impl Lease for UnimplementedLease {}
