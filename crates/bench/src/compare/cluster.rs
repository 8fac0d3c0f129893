//! A local 3-node cluster of etcd or raftkv processes, started with etcd's flags and killed on drop.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{RangeRequest, StatusRequest};

use super::process_stats::{cpu_ticks, peak_resident_bytes};
use crate::client::{connect, status_error};

/// Bytes of a node's log shown when it fails.
const LOG_TAIL_BYTES: usize = 2000;
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Deadline of one readiness probe request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How to start one cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The server binary (`/usr/bin/etcd`, or raftkv's).
    pub program: PathBuf,
    /// Arguments before the etcd flags (`["serve"]` for raftkv).
    pub leading_arguments: Vec<String>,
    /// Number of nodes.
    pub node_count: usize,
    /// Client port of node 1; node i listens on `client_port + i - 1`.
    pub client_port: u16,
    /// Peer port of node 1; node i listens on `peer_port + i - 1`.
    pub peer_port: u16,
    /// Parent of the nodes' data directories and logs (on a disk).
    pub directory: PathBuf,
}

/// A running node.
struct Node {
    child: Child,
    client_endpoint: String,
    log_path: PathBuf,
}

/// Running server processes, killed (SIGKILL) and reaped when stopped or dropped.
pub struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts every node of `spec` (it does not wait for them to serve; see [`Cluster::wait_ready`]).
    pub fn start(spec: &ClusterSpec) -> Result<Cluster> {
        std::fs::create_dir_all(&spec.directory).with_context(|| format!("creating {}", spec.directory.display()))?;
        for index in 0..spec.node_count {
            require_port_free(spec.client_port + index as u16)?;
            require_port_free(spec.peer_port + index as u16)?;
        }
        let mut cluster = Cluster { nodes: Vec::with_capacity(spec.node_count) };
        for index in 0..spec.node_count {
            let arguments = node_arguments(spec, index);
            let log_path = spec.directory.join(format!("n{}.log", index + 1));
            let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
            let child = Command::new(&spec.program)
                .args(&spec.leading_arguments)
                .args(&arguments)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", spec.program.display()))?;
            let client_endpoint = format!("127.0.0.1:{}", spec.client_port + index as u16);
            cluster.nodes.push(Node { child, client_endpoint, log_path });
        }
        Ok(cluster)
    }

    /// Client endpoints (`127.0.0.1:port`), one per node.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.client_endpoint.clone()).collect()
    }

    /// Process ids, one per node.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|node| node.child.id()).collect()
    }

    /// Waits until a linearizable range succeeds at every node (so a leader is elected and
    /// every node serves), failing if a node exits or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut ready = vec![false; self.nodes.len()];
        loop {
            self.require_running()?;
            for (index, node) in self.nodes.iter().enumerate() {
                if !ready[index] {
                    ready[index] = probe(&node.client_endpoint).await.is_ok();
                }
            }
            if ready.iter().all(|&node_ready| node_ready) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let waiting = self.nodes.iter().zip(&ready).find(|(_, &node_ready)| !node_ready).map(|(node, _)| node);
                let detail = waiting.map(|node| log_tail(&node.log_path)).unwrap_or_default();
                bail!("cluster not serving after {timeout:?}; log of a node still waiting:\n{detail}");
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The client endpoint of the node that reports itself leader (Maintenance.Status: its
    /// member id equals the leader id), or an error when no node does.
    pub async fn leader_endpoint(&self) -> Result<String> {
        self.endpoint_where(true).await
    }

    /// The client endpoint of a node that knows a leader and is not it (Maintenance.Status).
    pub async fn follower_endpoint(&self) -> Result<String> {
        self.endpoint_where(false).await
    }

    /// The first node that knows the leader and is (`leader`) or is not it.
    async fn endpoint_where(&self, leader: bool) -> Result<String> {
        for node in &self.nodes {
            let channel = connect(&node.client_endpoint, PROBE_TIMEOUT).await?;
            let status = MaintenanceClient::new(channel).status(StatusRequest {}).await.map_err(status_error)?;
            let status = status.into_inner();
            let member_id = status.header.map_or(0, |header| header.member_id);
            if status.leader != 0 && (status.leader == member_id) == leader {
                return Ok(node.client_endpoint.clone());
            }
        }
        let wanted = if leader { "leader" } else { "follower of a known leader" };
        bail!("no node reports itself {wanted} in Maintenance.Status")
    }

    /// Fails, with the log's tail, if any node has exited.
    pub fn require_running(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            if let Some(status) = node.child.try_wait()? {
                bail!("{} exited ({status}); its log ends:\n{}", node.client_endpoint, log_tail(&node.log_path));
            }
        }
        Ok(())
    }

    /// Total user + system CPU ticks of the nodes so far.
    pub fn cpu_ticks(&self) -> Result<u64> {
        self.pids().into_iter().map(cpu_ticks).sum()
    }

    /// Peak resident memory of each node, in bytes.
    pub fn peak_resident_bytes(&self) -> Result<Vec<u64>> {
        self.pids().into_iter().map(peak_resident_bytes).collect()
    }

    /// Kills every node and waits for it to exit.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
        }
        for node in &mut self.nodes {
            let _ = node.child.wait();
        }
        self.nodes.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The etcd flags of node `index` (0-based): the same for etcd and `raftkv serve`.
pub fn node_arguments(spec: &ClusterSpec, index: usize) -> Vec<String> {
    let name = |index: usize| format!("n{}", index + 1);
    let peer_url = |index: usize| format!("http://127.0.0.1:{}", spec.peer_port + index as u16);
    let client_url = format!("http://127.0.0.1:{}", spec.client_port + index as u16);
    let initial_cluster: Vec<String> =
        (0..spec.node_count).map(|member| format!("{}={}", name(member), peer_url(member))).collect();
    let data_directory = spec.directory.join(format!("{}.data", name(index)));
    [
        ("--name", name(index)),
        ("--data-dir", data_directory.display().to_string()),
        ("--listen-client-urls", client_url.clone()),
        ("--advertise-client-urls", client_url),
        ("--listen-peer-urls", peer_url(index)),
        ("--initial-advertise-peer-urls", peer_url(index)),
        ("--initial-cluster", initial_cluster.join(",")),
        ("--initial-cluster-state", "new".to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// One linearizable range at `endpoint`.
async fn probe(endpoint: &str) -> Result<()> {
    let channel = connect(endpoint, PROBE_TIMEOUT).await?;
    let request = RangeRequest { key: b"raftkv-bench-probe".to_vec(), ..Default::default() };
    KvClient::new(channel).range(request).await.map_err(status_error)?;
    Ok(())
}

fn require_port_free(port: u16) -> Result<()> {
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .with_context(|| format!("port {port} is in use (choose another --base-port)"))
}

/// The last bytes of a log file (lossy UTF-8), for error messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            format!("({})\n{}", path.display(), String::from_utf8_lossy(&bytes[start..]))
        }
        Err(error) => format!("({}: {error})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_etcds_flags() {
        let spec = ClusterSpec {
            program: PathBuf::from("/usr/bin/etcd"),
            leading_arguments: Vec::new(),
            node_count: 3,
            client_port: 2379,
            peer_port: 2380 + 100,
            directory: PathBuf::from("/data"),
        };
        let arguments = node_arguments(&spec, 1).join(" ");
        assert_eq!(
            arguments,
            "--name n2 --data-dir /data/n2.data \
             --listen-client-urls http://127.0.0.1:2380 --advertise-client-urls http://127.0.0.1:2380 \
             --listen-peer-urls http://127.0.0.1:2481 --initial-advertise-peer-urls http://127.0.0.1:2481 \
             --initial-cluster n1=http://127.0.0.1:2480,n2=http://127.0.0.1:2481,n3=http://127.0.0.1:2482 \
             --initial-cluster-state new"
        );
    }
}
