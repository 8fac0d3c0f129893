//! Thin helpers over etcd's v3 gRPC API (raftkv's client port): the operations the
//! workload and the checks issue, each under a deadline.

use std::time::Duration;

use proto::etcdserverpb::{
    compare, kv_client::KvClient, maintenance_client::MaintenanceClient, request_op, Compare, HashKvRequest,
    PutRequest, RangeRequest, RequestOp, StatusRequest, StatusResponse, TxnRequest,
};
use tonic::transport::{Channel, Endpoint};

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A channel to `url` that connects on first use and reconnects after failures.
pub fn channel(url: &str, deadline: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_string())?.connect_timeout(CONNECT_TIMEOUT).timeout(deadline).connect_lazy())
}

/// Why a request produced no answer.
#[derive(Debug)]
pub enum RequestError {
    /// The deadline passed.
    Deadline,
    /// The server or the transport answered with an error.
    Status(tonic::Status),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Deadline => write!(formatter, "deadline exceeded"),
            RequestError::Status(status) => write!(formatter, "{:?}: {}", status.code(), status.message()),
        }
    }
}

impl RequestError {
    /// Whether the request certainly never reached a server: the connection to it was
    /// refused, so nothing was written. Anything else (a deadline, a reset, a server error)
    /// may have happened after the request was sent.
    pub fn never_sent(&self) -> bool {
        let RequestError::Status(status) = self else { return false };
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
        while let Some(error) = source {
            if let Some(io_error) = error.downcast_ref::<std::io::Error>() {
                if io_error.kind() == std::io::ErrorKind::ConnectionRefused {
                    return true;
                }
            }
            source = error.source();
        }
        false
    }
}

async fn within<T>(
    deadline: Duration,
    request: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RequestError> {
    match tokio::time::timeout(deadline, request).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(RequestError::Status(status)),
        Err(_) => Err(RequestError::Deadline),
    }
}

/// A read of `key`: its value (`None`: absent) and the store revision of the answer.
/// `revision` 0 reads the latest; `serializable` skips the ReadIndex barrier.
pub async fn get(
    channel: &Channel,
    key: &[u8],
    revision: i64,
    serializable: bool,
    deadline: Duration,
) -> Result<(Option<Vec<u8>>, i64), RequestError> {
    let request = RangeRequest { key: key.to_vec(), revision, serializable, ..RangeRequest::default() };
    let response = within(deadline, KvClient::new(channel.clone()).range(request)).await?;
    let revision = response.header.map_or(0, |header| header.revision);
    Ok((response.kvs.into_iter().next().map(|pair| pair.value.to_vec()), revision))
}

/// Puts `value` under `key`; returns the revision the put created.
pub async fn put(channel: &Channel, key: &[u8], value: &[u8], deadline: Duration) -> Result<i64, RequestError> {
    let request = PutRequest { key: key.to_vec().into(), value: value.to_vec().into(), ..PutRequest::default() };
    let response = within(deadline, KvClient::new(channel.clone()).put(request)).await?;
    Ok(response.header.map_or(0, |header| header.revision))
}

/// Sets `key` to `new` if it holds `expected` (a Txn: compare value, then put). Returns
/// whether it did, and the store revision after the transaction.
pub async fn compare_and_set(
    channel: &Channel,
    key: &[u8],
    expected: &[u8],
    new: &[u8],
    deadline: Duration,
) -> Result<(bool, i64), RequestError> {
    let comparison = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::Value(expected.to_vec())),
        ..Compare::default()
    };
    let put = PutRequest { key: key.to_vec().into(), value: new.to_vec().into(), ..PutRequest::default() };
    let request = TxnRequest {
        compare: vec![comparison],
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put)) }],
        failure: Vec::new(),
    };
    let response = within(deadline, KvClient::new(channel.clone()).txn(request)).await?;
    Ok((response.succeeded, response.header.map_or(0, |header| header.revision)))
}

/// `Maintenance.Status` of the member behind `channel`.
pub async fn status(channel: &Channel, deadline: Duration) -> Result<StatusResponse, RequestError> {
    within(deadline, MaintenanceClient::new(channel.clone()).status(StatusRequest {})).await
}

/// `Maintenance.HashKV` at `revision`: the hash of the store's contents up to it.
pub async fn hash_kv(channel: &Channel, revision: i64, deadline: Duration) -> Result<u32, RequestError> {
    let response =
        within(deadline, MaintenanceClient::new(channel.clone()).hash_kv(HashKvRequest { revision })).await?;
    Ok(response.hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connections_are_never_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let channel = channel(&format!("http://{address}"), Duration::from_secs(2)).unwrap();
        let error = put(&channel, b"k", b"v", Duration::from_secs(2)).await.unwrap_err();
        assert!(error.never_sent(), "{error:?}");
        assert!(!RequestError::Deadline.never_sent());
        assert!(!RequestError::Status(tonic::Status::unavailable("etcdserver: leader changed")).never_sent());
    }
}
