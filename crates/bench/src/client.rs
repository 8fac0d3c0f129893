//! gRPC connections and the operations of each workload.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse};
use proto::tonic::transport::{Channel, Endpoint};

use crate::args::Workload;
use crate::keys::{encode_key, KeyRandom};

/// How long to wait for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Swap attempts of one compare-and-swap operation before it counts as an error.
const COMPARE_AND_SWAP_ATTEMPTS: usize = 16;

/// Adds `http://` to an endpoint given as `host:port`.
pub fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Opens one gRPC connection (an HTTP/2 connection) to `endpoint`.
pub async fn connect(endpoint: &str, request_timeout: Duration) -> Result<Channel> {
    let uri = endpoint_uri(endpoint);
    let channel = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("invalid endpoint {endpoint:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {uri}"))?;
    Ok(channel)
}

/// Opens `count` connections, connection i to endpoint i modulo the number of endpoints.
pub async fn connect_all(endpoints: &[String], count: usize, request_timeout: Duration) -> Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for index in 0..count {
        channels.push(connect(&endpoints[index % endpoints.len()], request_timeout).await?);
    }
    Ok(channels)
}

/// One benchmark client: a KV stub, its own key generator, and the workload's parameters.
pub struct Worker {
    kv: KvClient<Channel>,
    workload: Workload,
    random: KeyRandom,
    key_size_bytes: usize,
    write_key_count: u64,
    read_key_count: u64,
    read_percent: u8,
    value: proto::prost::bytes::Bytes,
}

/// Parameters shared by every worker of a run.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// What each operation does.
    pub workload: Workload,
    /// Key length in bytes.
    pub key_size_bytes: usize,
    /// Puts choose among keys `0..write_key_count`.
    pub write_key_count: u64,
    /// Ranges and swaps choose among keys `0..read_key_count` (the preloaded ones).
    pub read_key_count: u64,
    /// Percentage of ranges in the mixed workload.
    pub read_percent: u8,
    /// The value every put writes.
    pub value: Vec<u8>,
}

impl Worker {
    /// A worker issuing requests on `channel`, choosing keys with `random`.
    pub fn new(channel: Channel, random: KeyRandom, settings: &WorkerSettings) -> Self {
        Worker {
            kv: KvClient::new(channel),
            workload: settings.workload,
            random,
            key_size_bytes: settings.key_size_bytes,
            write_key_count: settings.write_key_count.max(1),
            read_key_count: settings.read_key_count.max(1),
            read_percent: settings.read_percent,
            value: settings.value.clone().into(),
        }
    }

    /// Issues one operation of the workload and waits for its answer.
    pub async fn execute_one(&mut self) -> Result<()> {
        match self.workload {
            Workload::Put => self.put().await,
            Workload::Range => self.range(false).await,
            Workload::RangeSerializable => self.range(true).await,
            Workload::TxnCas => self.compare_and_swap().await,
            Workload::Mixed => {
                if self.random.below(100) < u64::from(self.read_percent) {
                    self.range(false).await
                } else {
                    self.put().await
                }
            }
        }
    }

    fn choose_key(&mut self, key_count: u64) -> Vec<u8> {
        encode_key(self.random.below(key_count), self.key_size_bytes)
    }

    async fn put(&mut self) -> Result<()> {
        let key = self.choose_key(self.write_key_count);
        let request = PutRequest { key: key.into(), value: self.value.clone(), ..Default::default() };
        self.kv.put(request).await.map_err(status_error)?;
        Ok(())
    }

    async fn range(&mut self, serializable: bool) -> Result<()> {
        let key = self.choose_key(self.read_key_count);
        let request = RangeRequest { key, serializable, ..Default::default() };
        self.kv.range(request).await.map_err(status_error)?;
        Ok(())
    }

    /// Reads the key's mod revision, then swaps in the value only if the revision is
    /// unchanged; on a conflict the failure branch returns the new revision and it retries.
    async fn compare_and_swap(&mut self) -> Result<()> {
        let key = self.choose_key(self.read_key_count);
        let read = RangeRequest { key: key.clone(), ..Default::default() };
        let response = self.kv.range(read).await.map_err(status_error)?.into_inner();
        let mut expected_revision = response.kvs.first().map_or(0, |kv| kv.mod_revision);
        for _ in 0..COMPARE_AND_SWAP_ATTEMPTS {
            let request = swap_request(&key, &self.value, expected_revision);
            let response = self.kv.txn(request).await.map_err(status_error)?.into_inner();
            if response.succeeded {
                return Ok(());
            }
            expected_revision = failed_swap_revision(&response)?;
        }
        bail!("compare-and-swap lost to concurrent writers {COMPARE_AND_SWAP_ATTEMPTS} times")
    }
}

/// A txn that puts `value` at `key` if the key's mod revision is `expected_revision` (0: absent),
/// and otherwise reads the key.
fn swap_request(key: &[u8], value: &[u8], expected_revision: i64) -> TxnRequest {
    let compare = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::ModRevision(expected_revision)),
        ..Default::default()
    };
    let put = PutRequest { key: key.to_vec().into(), value: value.to_vec().into(), ..Default::default() };
    let read = RangeRequest { key: key.to_vec(), ..Default::default() };
    TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
        failure: vec![RequestOp { request: Some(Request::RequestRange(read)) }],
    }
}

/// The current mod revision from the failure branch of a swap txn.
fn failed_swap_revision(response: &TxnResponse) -> Result<i64> {
    match response.responses.first().and_then(|operation| operation.response.as_ref()) {
        Some(Response::ResponseRange(range)) => Ok(range.kvs.first().map_or(0, |kv| kv.mod_revision)),
        other => Err(anyhow!("swap txn failed without a range response: {other:?}")),
    }
}

/// A txn that puts `value` at every key in `indexes` (no comparison).
pub fn batch_put_request(indexes: std::ops::Range<u64>, key_size_bytes: usize, value: &[u8]) -> TxnRequest {
    let success = indexes
        .map(|index| {
            let put = PutRequest {
                key: encode_key(index, key_size_bytes).into(),
                value: value.to_vec().into(),
                ..Default::default()
            };
            RequestOp { request: Some(Request::RequestPut(put)) }
        })
        .collect();
    TxnRequest { compare: Vec::new(), success, failure: Vec::new() }
}

/// Turns a gRPC status into an error naming its code and message.
pub fn status_error(status: proto::tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_when_missing() {
        assert_eq!(endpoint_uri("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_uri("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
    }

    #[test]
    fn swap_request_compares_the_mod_revision() {
        let request = swap_request(b"00000001", b"value", 42);
        assert_eq!(request.compare.len(), 1);
        assert_eq!(request.compare[0].target_union, Some(TargetUnion::ModRevision(42)));
        assert!(matches!(request.success[0].request, Some(Request::RequestPut(_))));
        assert!(matches!(request.failure[0].request, Some(Request::RequestRange(_))));
    }

    #[test]
    fn batch_put_covers_the_index_range() {
        let request = batch_put_request(10..13, 8, b"v");
        let keys: Vec<Vec<u8>> = request
            .success
            .iter()
            .map(|operation| match &operation.request {
                Some(Request::RequestPut(put)) => put.key.to_vec(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(keys, vec![b"00000010".to_vec(), b"00000011".to_vec(), b"00000012".to_vec()]);
    }
}
