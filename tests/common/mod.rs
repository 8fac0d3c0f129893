//! Test harness: clusters of real server processes on loopback, started with etcd's
//! flags, so the same code starts `raftkv serve` or a real `etcd` 3.4 for comparison.
//!
//! Every wait is bounded ([`WAIT_MAX`]) and fails with a message and the servers' logs;
//! dropping a [`Cluster`] SIGKILLs its processes (also when a test panics).

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longest any wait in the harness may take.
pub const WAIT_MAX: Duration = Duration::from_secs(30);

/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes of each server log shown when a wait fails.
const LOG_TAIL_BYTES: usize = 3000;

/// Which server a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// This repository's `raftkv serve`.
    Raftkv,
    /// Debian's `etcd` (package `etcd-server`), for output comparisons.
    Etcd,
}

/// One member: its URLs, data directory and (while running) its process.
pub struct Node {
    /// `--name`.
    pub name: String,
    /// Client URL (`http://127.0.0.1:port`).
    pub client_url: String,
    /// Peer URL.
    pub peer_url: String,
    /// `--listen-metrics-urls` (`http://127.0.0.1:port`: `/metrics`, `/health`).
    pub metrics_url: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// `--initial-cluster` of a member added after bootstrap (None: the cluster's).
    initial_cluster: Option<String>,
}

/// Runs before a member first starts (see [`Cluster::start_prepared`]): gets the member
/// and the cluster's `--initial-cluster`.
pub type PrepareNode<'a> = &'a dyn Fn(&Node, &str);

/// A cluster of real processes on loopback ports, in a temporary directory.
pub struct Cluster {
    /// The members, in `--initial-cluster` order.
    pub nodes: Vec<Node>,
    kind: ServerKind,
    binary: PathBuf,
    initial_cluster: String,
    extra_arguments: Vec<String>,
    directory: tempfile::TempDir,
    client_tls: Option<ClientTls>,
}

/// PEM files a client uses against `https://` client URLs (etcdctl's `--cacert`,
/// `--cert`, `--key`); the harness uses them for its own status polls.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// CA that signed the servers' certificates.
    pub ca_file: PathBuf,
    /// Client certificate.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
}

impl ClientTls {
    /// etcdctl's flags for these files.
    pub fn etcdctl_arguments(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca_file.display()),
            format!("--cert={}", self.cert_file.display()),
            format!("--key={}", self.key_file.display()),
        ]
    }
}

/// Lowest and highest port handed out: below Linux's ephemeral range (32768-60999), so
/// client connections opened meanwhile cannot take a port between the check and the bind.
const PORT_FIRST: u32 = 12_000;
const PORT_LAST: u32 = 32_000;

/// Ports handed out by this process so far.
static PORTS_HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// A loopback port that is free now, distinct from every other one this process handed out
/// (test binaries run one at a time; the process id spreads them apart anyway).
pub fn free_port() -> u16 {
    let span = PORT_LAST - PORT_FIRST;
    for _ in 0..span {
        let turn = PORTS_HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let candidate = PORT_FIRST + (std::process::id().wrapping_mul(7919).wrapping_add(turn)) % span;
        let port = u16::try_from(candidate).expect("ports fit in u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {PORT_FIRST} and {PORT_LAST}");
}

/// The `etcd` binary, or a panic telling how to install it.
fn etcd_binary() -> PathBuf {
    let candidates = [PathBuf::from("/usr/bin/etcd"), PathBuf::from("/usr/local/bin/etcd")];
    candidates.into_iter().find(|path| path.is_file()).unwrap_or_else(|| {
        panic!("this test compares with a real etcd 3.4: install Debian's `etcd-server` (apt-get install etcd-server)")
    })
}

impl Cluster {
    /// Starts `size` raftkv members and waits until they agree on a leader.
    pub async fn start_raftkv(size: usize) -> Cluster {
        Cluster::start(ServerKind::Raftkv, size).await
    }

    /// Starts `size` etcd members and waits until they agree on a leader.
    pub async fn start_etcd(size: usize) -> Cluster {
        Cluster::start(ServerKind::Etcd, size).await
    }

    /// Starts a cluster of `kind` and waits for a leader.
    pub async fn start(kind: ServerKind, size: usize) -> Cluster {
        Cluster::start_with_arguments(kind, size, &[]).await
    }

    /// Starts a cluster of `kind` whose members also get `extra_arguments`, and waits for a leader.
    pub async fn start_with_arguments(kind: ServerKind, size: usize, extra_arguments: &[&str]) -> Cluster {
        Cluster::start_configured(kind, size, extra_arguments, None, None).await
    }

    /// Starts a cluster of `kind` after `prepare(node, initial_cluster)` ran for each member
    /// (e.g. restoring a snapshot into its data dir; the cluster token is `harness`), and
    /// waits for a leader.
    pub async fn start_prepared(kind: ServerKind, size: usize, prepare: PrepareNode<'_>) -> Cluster {
        Cluster::start_configured(kind, size, &[], None, Some(prepare)).await
    }

    /// Starts a cluster with `https://` client and peer URLs (the TLS flags go in
    /// `extra_arguments`); the harness reaches members with `client_tls`.
    pub async fn start_tls(kind: ServerKind, size: usize, extra_arguments: &[&str], client_tls: ClientTls) -> Cluster {
        Cluster::start_configured(kind, size, extra_arguments, Some(client_tls), None).await
    }

    async fn start_configured(
        kind: ServerKind,
        size: usize,
        extra_arguments: &[&str],
        client_tls: Option<ClientTls>,
        prepare: Option<PrepareNode<'_>>,
    ) -> Cluster {
        assert!((1..=7).contains(&size), "clusters of 1 to 7 members");
        let scheme = if client_tls.is_some() { "https" } else { "http" };
        let binary = match kind {
            ServerKind::Raftkv => raftkv_binary(),
            ServerKind::Etcd => etcd_binary(),
        };
        let directory = tempfile::Builder::new().prefix("raftkv-cluster-").tempdir().expect("temporary directory");
        let nodes: Vec<Node> = (0..size)
            .map(|index| {
                let name = format!("n{index}");
                Node {
                    client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                    peer_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                    metrics_url: format!("http://127.0.0.1:{}", free_port()),
                    data_dir: directory.path().join(format!("{name}.data")),
                    log_path: directory.path().join(format!("{name}.log")),
                    name,
                    child: None,
                    starts: 0,
                    initial_cluster: None,
                }
            })
            .collect();
        let initial_cluster =
            nodes.iter().map(|node| format!("{}={}", node.name, node.peer_url)).collect::<Vec<_>>().join(",");
        let extra_arguments = extra_arguments.iter().map(|argument| argument.to_string()).collect();
        let mut cluster = Cluster { nodes, kind, binary, initial_cluster, extra_arguments, directory, client_tls };
        if let Some(prepare) = prepare {
            for node in &cluster.nodes {
                prepare(node, &cluster.initial_cluster);
            }
        }
        for index in 0..size {
            cluster.spawn(index, "new");
        }
        cluster.wait_for_leader().await;
        cluster
    }

    /// Which server this cluster runs.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Starts member `index` with `--initial-cluster-state state`.
    fn spawn(&mut self, index: usize, state: &str) {
        let initial_cluster = self.nodes[index].initial_cluster.clone().unwrap_or_else(|| self.initial_cluster.clone());
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log_path).expect("open the log");
        let mut command = Command::new(&self.binary);
        if self.kind == ServerKind::Raftkv {
            command.arg("serve");
        }
        command
            .args(["--name", &node.name])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen-client-urls", &node.client_url, "--advertise-client-urls", &node.client_url])
            .args(["--listen-peer-urls", &node.peer_url, "--initial-advertise-peer-urls", &node.peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "harness"])
            .args(["--listen-metrics-urls", &node.metrics_url])
            .args(&self.extra_arguments)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        let child = command.spawn().unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        node.child = Some(child);
        node.starts += 1;
    }

    /// All client URLs, comma-separated (etcdctl's `--endpoints`).
    pub fn endpoints(&self) -> String {
        self.client_urls().join(",")
    }

    /// Client URLs of all members.
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.client_url.clone()).collect()
    }

    /// Client URLs of running members.
    pub fn running_client_urls(&self) -> Vec<String> {
        self.nodes.iter().filter(|node| node.child.is_some()).map(|node| node.client_url.clone()).collect()
    }

    /// SIGKILLs member `index` and reaps it.
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let mut child = node.child.take().unwrap_or_else(|| panic!("{} is not running", node.name));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restarts a killed member on its data directory.
    pub fn restart(&mut self, index: usize) {
        self.spawn(index, "new");
    }

    /// Restarts a killed member on its data directory with `arguments` added to the
    /// cluster's (for this start only).
    pub fn restart_with_arguments(&mut self, index: usize, arguments: &[&str]) {
        let saved = self.extra_arguments.clone();
        self.extra_arguments.extend(arguments.iter().map(|argument| argument.to_string()));
        self.spawn(index, "new");
        self.extra_arguments = saved;
    }

    /// A new member's URLs and data directory (not started): its index.
    pub fn add_node(&mut self, name: &str) -> usize {
        let scheme = if self.client_tls.is_some() { "https" } else { "http" };
        self.nodes.push(Node {
            name: name.to_string(),
            client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
            peer_url: format!("{scheme}://127.0.0.1:{}", free_port()),
            metrics_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: self.directory.path().join(format!("{name}.data")),
            log_path: self.directory.path().join(format!("{name}.log")),
            child: None,
            starts: 0,
            initial_cluster: None,
        });
        self.nodes.len() - 1
    }

    /// Starts member `index`, added with `etcdctl member add`, with
    /// `--initial-cluster-state existing` and `initial_cluster` (as `member add` printed it).
    pub fn start_joining(&mut self, index: usize, initial_cluster: &str) {
        self.nodes[index].initial_cluster = Some(initial_cluster.to_string());
        self.spawn(index, "existing");
    }

    /// Waits (bounded) until member `index` exits by itself; returns its exit code.
    pub async fn wait_for_exit(&mut self, index: usize) -> i32 {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let node = &mut self.nodes[index];
            let child = node.child.as_mut().unwrap_or_else(|| panic!("{} is not running", node.name));
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                return status.code().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                panic!("{} did not exit within {WAIT_MAX:?}{}", self.nodes[index].name, self.logs());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// True while member `index`'s process runs.
    pub fn is_running(&self, index: usize) -> bool {
        self.nodes[index].child.is_some()
    }

    /// Deletes a stopped member's data directory and starts it with
    /// `--initial-cluster-state existing`, so it must catch up from the others.
    pub fn wipe_and_restart_existing(&mut self, index: usize) {
        let node = &self.nodes[index];
        assert!(node.child.is_none(), "stop {} before wiping it", node.name);
        if node.data_dir.exists() {
            std::fs::remove_dir_all(&node.data_dir).expect("remove the data directory");
        }
        self.spawn(index, "existing");
    }

    /// Fails the test (with every server's log) unless each running member is still alive.
    pub fn assert_running(&mut self) {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push(format!("{} exited with {status}", node.name));
                }
            }
        }
        if !exited.is_empty() {
            panic!("{}\n{}", exited.join("; "), self.logs());
        }
    }

    /// The tail of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let log = std::fs::read(&node.log_path).unwrap_or_default();
            let tail = &log[log.len().saturating_sub(LOG_TAIL_BYTES)..];
            let _ = write!(
                text,
                "\n----- {} ({}) log tail -----\n{}",
                node.name,
                node.log_path.display(),
                String::from_utf8_lossy(tail)
            );
        }
        text
    }

    /// Everything member `index` logged so far (all its runs).
    pub fn log(&self, index: usize) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.nodes[index].log_path).unwrap_or_default()).into_owned()
    }

    /// The temporary directory holding data directories and logs.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Waits until every running member reports the same leader, itself a running member;
    /// returns that member's index.
    pub async fn wait_for_leader(&mut self) -> usize {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            self.assert_running();
            let reason = match self.agreed_leader().await {
                Ok(index) => return index,
                Err(reason) => reason,
            };
            if Instant::now() >= deadline {
                panic!("no agreed leader within {WAIT_MAX:?}: {reason}{}", self.logs());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The index of the leader all running members agree on, or why there is none.
    async fn agreed_leader(&self) -> Result<usize, String> {
        let mut leaders = Vec::new();
        let mut member_ids = Vec::new();
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            let status = member_status_with_tls(&node.client_url, self.client_tls.as_ref())
                .await
                .map_err(|error| format!("{}: {error}", node.name))?;
            leaders.push(status.0);
            member_ids.push(status.1);
        }
        let leader = leaders[0];
        if leader == 0 || leaders.iter().any(|other| *other != leader) {
            return Err(format!("leaders seen: {leaders:x?}"));
        }
        let running: Vec<usize> =
            self.nodes.iter().enumerate().filter(|(_, node)| node.child.is_some()).map(|(index, _)| index).collect();
        let position = member_ids
            .iter()
            .position(|id| *id == leader)
            .ok_or_else(|| format!("leader {leader:x} is not running"))?;
        Ok(running[position])
    }
}

/// (leader id, own member id) as `Maintenance.Status` on `url` reports them.
pub async fn member_status(url: &str) -> Result<(u64, u64), String> {
    member_status_with_tls(url, None).await
}

/// [`member_status`] over TLS with `tls`'s files when set.
pub async fn member_status_with_tls(url: &str, tls: Option<&ClientTls>) -> Result<(u64, u64), String> {
    let mut options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()));
        let identity = etcd_client::Identity::from_pem(read(&tls.cert_file)?, read(&tls.key_file)?);
        let config = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca_file)?))
            .identity(identity);
        options = options.with_tls(config);
    }
    let mut client =
        etcd_client::Client::connect([url], Some(options)).await.map_err(|error| format!("connect: {error}"))?;
    let status = client.status().await.map_err(|error| format!("status: {error}"))?;
    let member_id = status.header().map_or(0, |header| header.member_id());
    Ok((status.leader(), member_id))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `raftkv serve` for a one-member cluster on free ports in `data_dir` with `extra`
/// flags placed first, until it exits (for flags that must be refused before anything starts).
pub async fn serve_one_member_until_exit(data_dir: &Path, extra: &[&str]) -> CommandOutput {
    let client_url = format!("http://127.0.0.1:{}", free_port());
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let initial_cluster = format!("default={peer_url}");
    let data_dir = data_dir.display().to_string();
    let mut arguments: Vec<String> = std::iter::once("serve").chain(extra.iter().copied()).map(String::from).collect();
    for (flag, value) in [
        ("--listen-client-urls", &client_url),
        ("--advertise-client-urls", &client_url),
        ("--listen-peer-urls", &peer_url),
        ("--initial-advertise-peer-urls", &peer_url),
        ("--initial-cluster", &initial_cluster),
        ("--data-dir", &data_dir),
    ] {
        arguments.extend([flag.to_string(), value.clone()]);
    }
    run_bounded(env!("CARGO_BIN_EXE_raftkv"), &arguments, &[], "").await
}

/// Output of a finished client command.
#[derive(Debug)]
pub struct CommandOutput {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The etcdctl binary on PATH, or a panic telling how to install it.
pub fn etcdctl_program() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|directory| directory.join("etcdctl")).find(|file| file.is_file());
    match found {
        Some(file) => file.display().to_string(),
        None => panic!("these tests drive etcdctl 3.4: install Debian's `etcd-client` (apt-get install etcd-client)"),
    }
}

/// Runs `etcdctl --endpoints=<endpoints> <arguments>` (API v3, 5 s dial and 20 s command
/// timeouts), bounded by [`run_bounded`].
pub async fn etcdctl(endpoints: &str, arguments: &[&str]) -> CommandOutput {
    let mut all = vec![format!("--endpoints={endpoints}"), "--dial-timeout=5s".into(), "--command-timeout=20s".into()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await
}

/// As [`etcdctl`], failing the test unless it succeeds; returns stdout.
pub async fn etcdctl_ok(endpoints: &str, arguments: &[&str]) -> String {
    let output = etcdctl(endpoints, arguments).await;
    assert_eq!(output.code, 0, "etcdctl {arguments:?} failed: {}{}", output.stdout, output.stderr);
    output.stdout
}

/// Runs a program with `stdin` as input, killing it if it runs longer than [`WAIT_MAX`].
pub async fn run_bounded(
    program: &str,
    arguments: &[String],
    environment: &[(&str, &str)],
    stdin: &str,
) -> CommandOutput {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(program);
    command
        .args(arguments)
        .envs(environment.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).await.expect("write the command's input");
    drop(input);
    let output = tokio::time::timeout(WAIT_MAX, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {arguments:?} did not finish within {WAIT_MAX:?}"))
        .expect("collect the command's output");
    CommandOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `member add` output: the new member's id and the `ETCD_INITIAL_CLUSTER` to start it with.
pub fn parse_member_add(output: &str) -> (u64, String) {
    let id = output
        .split_whitespace()
        .skip_while(|word| *word != "Member")
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no member id in: {output}"));
    let initial_cluster = output
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .map(|value| value.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in: {output}"));
    (id, initial_cluster)
}

/// (term, leader) as each member's `Maintenance.Status` reports them.
pub async fn terms_and_leaders(cluster: &Cluster) -> Vec<(u64, u64)> {
    let mut seen = Vec::new();
    for url in cluster.client_urls() {
        let mut client = etcd_client::Client::connect([url.as_str()], None).await.expect("connect");
        let status = client.status().await.expect("status");
        seen.push((status.raft_term(), status.leader()));
    }
    seen
}

/// The value of the metric family `name` (a plain counter or gauge) on `metrics_url`.
pub async fn metric(metrics_url: &str, name: &str) -> u64 {
    let address = metrics_url.trim_start_matches("http://");
    let body = get_metrics(address).await;
    let line = body
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in /metrics of {metrics_url}"));
    let value: f64 = line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).expect("a number");
    value as u64
}

/// `GET /metrics` over a plain TCP connection (HTTP/1.0, bounded).
pub async fn get_metrics(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect to /metrics");
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8_lossy(&response).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("/metrics answers within 10 s")
}

/// The raftkv binary cluster tests start: this build's, or the one `RAFTKV_TEST_BINARY`
/// names (to measure an older build with the same test, e.g. before/after figures).
pub fn raftkv_binary() -> PathBuf {
    std::env::var_os("RAFTKV_TEST_BINARY").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_raftkv")), PathBuf::from)
}
