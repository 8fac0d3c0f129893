//! A cluster of real `raftkv serve` processes on loopback, with a [`LinkProxy`] on every
//! directed peer link. Dropping a [`Cluster`] SIGKILLs every process it started (paused
//! ones are continued first), also when the runner panics.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::proxy::{LinkMode, LinkProxy};

/// Lowest and highest port handed out to nodes: below Linux's ephemeral range
/// (32768-60999), so client connections opened meanwhile cannot take a node's port while
/// the node is down.
const PORT_FIRST: u32 = 12_000;
const PORT_LAST: u32 = 32_000;

/// The most bytes read of an introspection answer.
const HTTP_RESPONSE_BYTES_MAX: u64 = 4 << 20;

/// Ports handed out by this process so far.
static PORTS_HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `raftkv` binary.
    pub binary: PathBuf,
    /// Number of members.
    pub nodes: usize,
    /// Directory for data directories and logs (created if missing).
    pub directory: PathBuf,
    /// Flags added to every `raftkv serve` (e.g. `--unsafe-local-reads`).
    pub extra_arguments: Vec<String>,
}

/// One member and its process.
struct Node {
    name: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    dial_overrides: String,
}

/// A running cluster (see the module documentation).
pub struct Cluster {
    nodes: Vec<Node>,
    /// `proxies[from][to]`: the link carrying `from`'s messages to `to` (`None` on the diagonal).
    proxies: Vec<Vec<Option<LinkProxy>>>,
    binary: PathBuf,
    initial_cluster: String,
    extra_arguments: Vec<String>,
}

/// A loopback port that is free now and distinct from every other one this process handed out.
fn free_port() -> anyhow::Result<u16> {
    let span = PORT_LAST - PORT_FIRST;
    for _ in 0..span {
        let turn = PORTS_HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let candidate = PORT_FIRST + std::process::id().wrapping_mul(7919).wrapping_add(turn.wrapping_mul(13)) % span;
        let port = u16::try_from(candidate)?;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port between {PORT_FIRST} and {PORT_LAST}")
}

impl Cluster {
    /// Starts every member with proxies on all peer links (all passing). Does not wait for
    /// a leader. Must be called inside a tokio runtime.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        anyhow::ensure!((1..=9).contains(&options.nodes), "clusters of 1 to 9 members");
        std::fs::create_dir_all(&options.directory)?;
        let mut nodes = Vec::with_capacity(options.nodes);
        for index in 0..options.nodes {
            let name = format!("n{}", index + 1);
            nodes.push(Node {
                client_port: free_port()?,
                peer_port: free_port()?,
                metrics_port: free_port()?,
                data_dir: options.directory.join(format!("{name}.data")),
                log_path: options.directory.join(format!("{name}.log")),
                name,
                child: None,
                paused: false,
                dial_overrides: String::new(),
            });
        }
        let mut proxies = Vec::with_capacity(options.nodes);
        for from in 0..options.nodes {
            let mut row = Vec::with_capacity(options.nodes);
            let mut overrides = Vec::new();
            for (to, target) in nodes.iter().enumerate() {
                if from == to {
                    row.push(None);
                    continue;
                }
                let proxy = LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], target.peer_port))).await?;
                overrides.push(format!("{}={}", target.name, proxy.listen_address()));
                row.push(Some(proxy));
            }
            nodes[from].dial_overrides = overrides.join(",");
            proxies.push(row);
        }
        let initial_cluster = nodes
            .iter()
            .map(|node| format!("{}=http://127.0.0.1:{}", node.name, node.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes,
            proxies,
            binary: options.binary,
            initial_cluster,
            extra_arguments: options.extra_arguments,
        };
        for index in 0..options.nodes {
            cluster.spawn(index)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        anyhow::ensure!(node.child.is_none(), "{} is already running", node.name);
        let log = File::options().create(true).append(true).open(&node.log_path)?;
        let client_url = format!("http://127.0.0.1:{}", node.client_port);
        let peer_url = format!("http://127.0.0.1:{}", node.peer_port);
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--name", &node.name])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "chaos"])
            .args(["--peer-dial-overrides", &node.dial_overrides])
            .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{}", node.metrics_port)])
            .args(&self.extra_arguments)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|error| anyhow::anyhow!("cannot start {}: {error}", self.binary.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Member `index`'s `--name`.
    pub fn name(&self, index: usize) -> &str {
        &self.nodes[index].name
    }

    /// Member `index`'s client URL (`http://127.0.0.1:port`).
    pub fn client_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[index].client_port)
    }

    /// Member `index`'s client address.
    pub fn client_address(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[index].client_port))
    }

    /// Member `index`'s own peer listener (not a proxy).
    pub fn peer_address(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[index].peer_port))
    }

    /// Member `index`'s metrics and introspection address (`/metrics`, `/api/state`).
    pub fn metrics_address(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[index].metrics_port))
    }

    /// Saves each member's `/api/state` (Raft role, indexes, followers' progress) next to its
    /// log, for diagnosing a failed run; members that do not answer are skipped.
    pub async fn save_states(&self) {
        for (index, node) in self.nodes.iter().enumerate() {
            if let Some(state) = http_get(self.metrics_address(index), "/api/state").await {
                let _ = std::fs::write(node.log_path.with_extension("state.json"), state);
            }
        }
    }

    /// Member `index`'s log file (stdout and stderr).
    pub fn log_path(&self, index: usize) -> &Path {
        &self.nodes[index].log_path
    }

    /// Whether member `index` has a process (running or paused).
    pub fn is_up(&self, index: usize) -> bool {
        self.nodes[index].child.is_some()
    }

    /// Whether member `index` is paused (SIGSTOP).
    pub fn is_paused(&self, index: usize) -> bool {
        self.nodes[index].paused
    }

    /// Members whose process exited although nobody killed it, with the exit status.
    pub fn unexpected_exits(&mut self) -> Vec<String> {
        let mut exits = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exits.push(format!("{} exited by itself: {status}", node.name));
                    node.child = None;
                }
            }
        }
        exits
    }

    /// SIGKILLs member `index` (paused or not) and reaps it. Does nothing if it is down.
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Restarts a killed member on its data directory. Does nothing if it is up.
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        if self.nodes[index].child.is_some() {
            return Ok(());
        }
        self.spawn(index)
    }

    /// Sends `signal` (`STOP`, `CONT`) to member `index` with `kill(1)`.
    fn signal(&self, index: usize, signal: &str) -> anyhow::Result<()> {
        let Some(child) = self.nodes[index].child.as_ref() else { return Ok(()) };
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed: {status}", child.id());
        Ok(())
    }

    /// SIGSTOPs member `index`.
    pub fn pause(&mut self, index: usize) -> anyhow::Result<()> {
        if self.nodes[index].child.is_some() && !self.nodes[index].paused {
            self.signal(index, "STOP")?;
            self.nodes[index].paused = true;
        }
        Ok(())
    }

    /// SIGCONTs member `index` if it is paused.
    pub fn resume(&mut self, index: usize) -> anyhow::Result<()> {
        if self.nodes[index].paused {
            self.signal(index, "CONT")?;
            self.nodes[index].paused = false;
        }
        Ok(())
    }

    /// Sets the link carrying `from`'s messages to `to`.
    pub fn set_link(&self, from: usize, to: usize, mode: LinkMode) {
        if let Some(proxy) = &self.proxies[from][to] {
            proxy.set_mode(mode);
        }
    }

    /// Cuts every link between a member of `side` and a member outside it, both directions.
    pub fn partition(&self, side: &[usize], mode: LinkMode) {
        for from in 0..self.len() {
            for to in 0..self.len() {
                if side.contains(&from) != side.contains(&to) {
                    self.set_link(from, to, mode);
                }
            }
        }
    }

    /// Lets every link pass.
    pub fn heal_network(&self) {
        for row in &self.proxies {
            for proxy in row.iter().flatten() {
                proxy.set_mode(LinkMode::Pass);
            }
        }
    }

    /// Heals everything: links pass, paused members continue, killed members restart.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        self.heal_network();
        for index in 0..self.len() {
            self.resume(index)?;
            self.restart(index)?;
        }
        Ok(())
    }

    /// Lines of member logs that report a panic, each prefixed with the member's name.
    pub fn panics_in_logs(&self) -> Vec<String> {
        let mut found = Vec::new();
        for node in &self.nodes {
            let text = std::fs::read(&node.log_path).unwrap_or_default();
            for line in String::from_utf8_lossy(&text).lines() {
                if line.contains("panicked") {
                    found.push(format!("{}: {line}", node.name));
                }
            }
        }
        found
    }

    /// The last `bytes` bytes of member `index`'s log.
    pub fn log_tail(&self, index: usize, bytes: usize) -> String {
        let text = std::fs::read(&self.nodes[index].log_path).unwrap_or_default();
        let start = text.len().saturating_sub(bytes);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }
}

/// The body of `GET path` from `address` (HTTP/1.0, bounded in time), if it answers.
async fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.take(HTTP_RESPONSE_BYTES_MAX).read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        text.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), request).await.ok().flatten()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            let _ = self.resume(index);
            self.kill(index);
        }
    }
}
