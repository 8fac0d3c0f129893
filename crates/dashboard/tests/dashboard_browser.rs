//! The live dashboard in a real browser against a real 3-node cluster of `raftkv serve`
//! processes: a key written with etcdctl appears, committed, on every node's row; when
//! the leader is killed the page shows the election of a new one.
//!
//! The `raftkv` binary is taken from the target directory this test was built into
//! (`cargo test --workspace` builds it); if it is missing it is built with `cargo build`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, wait_until, Browser, KillOnDrop, READ_ROWS_SCRIPT};

/// Debian's etcdctl (package `etcd-client`).
const ETCDCTL: &str = "/usr/bin/etcdctl";
/// Longest wait for `cargo build --bin raftkv`.
const BUILD_WAIT_MAX: Duration = Duration::from_secs(1200);
/// Cluster size.
const NODES: usize = 3;

/// The `raftkv` binary next to this test's own target directory, built if missing.
fn raftkv_binary() -> PathBuf {
    let test_executable = std::env::current_exe().expect("test executable");
    let profile_directory = test_executable.parent().and_then(Path::parent).expect("target/<profile>");
    let binary = profile_directory.join("raftkv");
    if binary.exists() {
        return binary;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command.args(["build", "--bin", "raftkv"]).current_dir(support::workspace_root());
    if profile_directory.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    if let Some(target) = profile_directory.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let mut child = KillOnDrop(command.spawn().expect("cargo build"));
    let deadline = Instant::now() + BUILD_WAIT_MAX;
    loop {
        if let Some(status) = child.0.try_wait().expect("cargo build status") {
            assert!(status.success(), "cargo build --bin raftkv failed");
            break;
        }
        assert!(Instant::now() < deadline, "cargo build --bin raftkv took too long");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(binary.exists(), "{} not built", binary.display());
    binary
}

/// A minimal HTTP/1.0 GET on loopback: (status, body), or None if the server does not answer.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Some((status, body))
}

/// One `raftkv serve` process and its ports.
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    process: Option<KillOnDrop>,
}

fn start_cluster(binary: &Path, data: &Path) -> Vec<Node> {
    let ports: Vec<(u16, u16, u16)> = (0..NODES).map(|_| (free_port(), free_port(), free_port())).collect();
    let initial_cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(position, (_, peer, _))| format!("node{}=http://127.0.0.1:{peer}", position + 1))
        .collect();
    let initial_cluster = initial_cluster.join(",");
    let mut nodes = Vec::new();
    for (position, (client, peer, http)) in ports.into_iter().enumerate() {
        let name = format!("node{}", position + 1);
        let (client_url, peer_url) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
        let child = Command::new(binary)
            .arg("serve")
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(data.join(&name))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
            .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{http}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start raftkv serve");
        nodes.push(Node { name, client_port: client, http_port: http, process: Some(KillOnDrop(child)) });
    }
    nodes
}

fn leader_elected(nodes: &[Node]) -> bool {
    nodes.iter().any(|node| {
        let state = http_get(node.http_port, "/api/state").filter(|(status, _)| *status == 200);
        let state: Option<Value> = state.and_then(|(_, body)| serde_json::from_str(&body).ok());
        state.is_some_and(|state| state["role"] == "leader")
    })
}

/// The dashboard URL: the node's own `/dashboard` if it serves one, else the page served
/// from this test process and pointed at the node with `?node=`.
async fn dashboard_url(node: &Node) -> (String, Option<tokio::task::JoinHandle<()>>) {
    if http_get(node.http_port, "/dashboard").is_some_and(|(status, _)| status == 200) {
        return (format!("http://127.0.0.1:{}/dashboard", node.http_port), None);
    }
    eprintln!("the node does not serve /dashboard yet: serving the page from the test");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, dashboard::dashboard_router()).await;
    });
    (format!("http://{address}/dashboard?node=http://127.0.0.1:{}", node.http_port), Some(server))
}

fn etcdctl_put(nodes: &[Node], key: &str, value: &str) {
    let endpoints: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.client_port)).collect();
    let output = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--command-timeout=10s", "put", key, value])
        .output()
        .expect("run etcdctl");
    assert!(output.status.success(), "etcdctl put failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A page condition: every row shows a committed entry whose command mentions `key`.
fn key_committed_on_every_row(key: &str) -> String {
    format!(
        "const rows = [...document.querySelectorAll('#cluster .node-row')];
         return rows.length === {NODES} && rows.every((row) => [...row.querySelectorAll('.entry')]
           .some((box) => box.dataset.committed === 'true' && box.dataset.summary.includes({key:?})));"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_key_appears_committed_on_every_row_and_elections_show() {
    if !support::browser_available() {
        return;
    }
    if !Path::new(ETCDCTL).exists() {
        assert!(std::env::var_os("CI").is_none(), "install Debian's etcd-client for {ETCDCTL}");
        eprintln!("live dashboard test skipped: {ETCDCTL} missing (package etcd-client)");
        return;
    }
    let binary = raftkv_binary();
    let data = tempfile::tempdir().expect("data directory");
    let mut nodes = start_cluster(&binary, data.path());
    wait_until("the cluster to elect a leader", || leader_elected(&nodes));
    let (url, page_server) = dashboard_url(&nodes[0]).await;

    let browser = Browser::start().await;
    browser.client.goto(&url).await.expect("load the dashboard");
    let all_rows_live = format!(
        "const rows = [...document.querySelectorAll('#cluster .node-row')];
         return rows.length === {NODES} && rows.filter((row) => row.dataset.role === 'leader').length === 1
           && rows.every((row) => ['leader', 'follower'].includes(row.dataset.role));"
    );
    browser.wait_for_script("a row per node, one leader", &all_rows_live).await;

    for (key, value) in [("greeting", "hello"), ("colour", "blue"), ("answer", "42")] {
        etcdctl_put(&nodes, key, value);
    }
    etcdctl_put(&nodes, "dashboard-key", "hello");
    browser.wait_for_script("the new entry committed on every row", &key_committed_on_every_row("dashboard-key")).await;
    let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
    eprintln!("rows: {rows}");
    browser.screenshot("dashboard-live").await;

    let rows = rows.as_array().expect("rows").clone();
    let leader_name =
        rows.iter().find(|row| row["role"] == "leader").and_then(|row| row["name"].as_str()).expect("leader");
    let leader = nodes.iter_mut().find(|node| node.name == leader_name).expect("leader process");
    leader.process = None; // killed
    let new_leader = format!(
        "return [...document.querySelectorAll('#cluster .node-row')].some((row) =>
           row.dataset.role === 'leader' && row.dataset.name !== {leader_name:?})
         && /new leader/.test(document.getElementById('events').textContent);"
    );
    browser.wait_for_script("a new leader after the old one was killed", &new_leader).await;
    browser.screenshot("dashboard-leader-change").await;
    browser.close().await;
    if let Some(server) = page_server {
        server.abort();
    }
}
