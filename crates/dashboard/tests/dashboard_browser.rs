//! The live dashboard in a real browser against a real 3-node cluster of `raftkv serve`
//! processes: a key written with etcdctl appears, committed, on every node's row; when
//! the leader is killed the page shows the election of a new one. Under a write load the
//! charts draw points, a leader kill is marked on them, and rewinding to before the kill
//! shows the old leader's row as the leader again.
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
/// Keys written by the charts test's write load (one etcdctl put each).
const WRITE_LOAD_PUTS: usize = 40;
/// Samples the page holds before the charts' screenshot is taken (one a second).
const CHART_SAMPLES_MIN: usize = 12;

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

impl Node {
    /// The same node's name and ports, without its process (for etcdctl's endpoint list).
    fn endpoint_only(&self) -> Node {
        Node { name: self.name.clone(), client_port: self.client_port, http_port: self.http_port, process: None }
    }
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

/// True if the browser and etcdctl are installed (else says why the test does nothing).
fn tools_available() -> bool {
    if !support::browser_available() {
        return false;
    }
    if !Path::new(ETCDCTL).exists() {
        assert!(std::env::var_os("CI").is_none(), "install Debian's etcd-client for {ETCDCTL}");
        eprintln!("live dashboard test skipped: {ETCDCTL} missing (package etcd-client)");
        return false;
    }
    true
}

/// A page condition: a row per node, every one leader or follower, exactly one leader.
fn all_rows_live() -> String {
    format!(
        "const rows = [...document.querySelectorAll('#cluster .node-row')];
         return rows.length === {NODES} && rows.filter((row) => row.dataset.role === 'leader').length === 1
           && rows.every((row) => ['leader', 'follower'].includes(row.dataset.role));"
    )
}

/// A page condition: chart `chart` has a line with at least `points_min` points, the
/// largest above zero if `above_zero`.
fn chart_drawn(chart: &str, points_min: usize, above_zero: bool) -> String {
    format!(
        "return [...document.querySelectorAll('svg[data-chart={chart:?}] polyline.series')].some((line) =>
           Number(line.dataset.points) >= {points_min} && (!{above_zero} || Number(line.dataset.max) > 0));"
    )
}

/// The points of every line of every chart: `{chart: {series: points}}`.
const READ_CHARTS_SCRIPT: &str = r#"
const charts = {};
for (const chart of document.querySelectorAll('svg[data-chart]')) {
  charts[chart.dataset.chart] = Object.fromEntries([...chart.querySelectorAll('polyline.series')]
    .map((line) => [line.dataset.series, Number(line.dataset.points)]));
}
return charts;
"#;

/// A started cluster watched by a browser on its dashboard.
struct Watched {
    nodes: Vec<Node>,
    browser: Browser,
    page_server: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

/// Starts a 3-node cluster, waits for a leader, opens the dashboard and waits for a row per node.
async fn watch_new_cluster() -> Watched {
    let binary = raftkv_binary();
    let data = tempfile::tempdir().expect("data directory");
    let nodes = start_cluster(&binary, data.path());
    wait_until("the cluster to elect a leader", || leader_elected(&nodes));
    let (url, page_server) = dashboard_url(&nodes[0]).await;
    let browser = Browser::start().await;
    browser.client.goto(&url).await.expect("load the dashboard");
    browser.wait_for_script("a row per node, one leader", &all_rows_live()).await;
    Watched { nodes, browser, page_server, _data: data }
}

/// The name of the row the page draws as the leader.
async fn leader_row_name(browser: &Browser) -> String {
    let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
    let rows = rows.as_array().expect("rows").clone();
    let leader = rows.iter().find(|row| row["role"] == "leader").and_then(|row| row["name"].as_str());
    leader.expect("a leader row").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_key_appears_committed_on_every_row_and_elections_show() {
    if !tools_available() {
        return;
    }
    let Watched { mut nodes, browser, page_server, _data } = watch_new_cluster().await;

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
    drop(nodes);
}

/// Kills the process of node `name` (one this test started, by its pid) and returns its pid.
fn kill_node(nodes: &mut [Node], name: &str) -> u32 {
    let node = nodes.iter_mut().find(|node| node.name == name).expect("node process");
    let process = node.process.take().expect("node running");
    let pid = process.0.id();
    drop(process); // kill and wait
    pid
}

/// A page condition: a leader other than `old_leader` is drawn, and a leader change is
/// marked on the commit-rate chart.
fn new_leader_marked(old_leader: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#cluster .node-row')].some((row) =>
           row.dataset.role === 'leader' && row.dataset.name !== {old_leader:?})
         && document.querySelectorAll('svg[data-chart=\"commit-rate\"] g.leader-change').length >= 1;"
    )
}

/// A page condition: the page shows a recorded moment (not live) in which `old_leader`'s
/// row is the leader and every other row a follower.
fn rewound_to_leader(old_leader: &str) -> String {
    format!(
        "const rows = [...document.querySelectorAll('#cluster .node-row')];
         return document.getElementById('rewind').dataset.mode === 'past' && rows.length === {NODES}
           && rows.every((row) => row.dataset.role === (row.dataset.name === {old_leader:?} ? 'leader' : 'follower'));"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_follow_a_write_load_and_rewinding_shows_the_old_leader() {
    if !tools_available() {
        return;
    }
    let Watched { mut nodes, browser, page_server, _data } = watch_new_cluster().await;
    for position in 0..WRITE_LOAD_PUTS {
        etcdctl_put(&nodes, &format!("load-{position}"), &format!("value-{position}"));
    }
    browser.wait_for_script("commit-rate points above zero", &chart_drawn("commit-rate", 2, true)).await;
    browser.wait_for_script("apply-lag points", &chart_drawn("apply-lag", 2, false)).await;
    browser.wait_for_script("follower-lag points", &chart_drawn("follower-lag", 2, false)).await;
    browser.wait_for_script("WAL fsync p99 points", &chart_drawn("wal-fsync-p99", 1, true)).await;
    eprintln!("charts before the kill: {}", browser.evaluate(READ_CHARTS_SCRIPT, Vec::new()).await);

    let old_leader = leader_row_name(&browser).await;
    let pid = kill_node(&mut nodes, &old_leader);
    eprintln!("killed the leader {old_leader} (pid {pid})");
    browser.wait_for_script("a new leader, marked on the charts", &new_leader_marked(&old_leader)).await;
    let survivors: Vec<Node> = nodes.iter().filter(|node| node.process.is_some()).map(Node::endpoint_only).collect();
    for position in 0..WRITE_LOAD_PUTS / 2 {
        etcdctl_put(&survivors, &format!("after-{position}"), &format!("value-{position}"));
    }
    browser.wait_for_script("commit-rate points after the kill", &chart_drawn("commit-rate", 3, true)).await;
    let history_filled =
        format!("return Number(document.getElementById('rewind').dataset.samples) >= {CHART_SAMPLES_MIN};");
    browser.wait_for_script("samples for the screenshot", &history_filled).await;
    eprintln!("charts after the kill: {}", browser.evaluate(READ_CHARTS_SCRIPT, Vec::new()).await);
    browser.evaluate("document.getElementById('charts').scrollIntoView(); return true;", Vec::new()).await;
    browser.screenshot("dashboard-charts").await;

    browser.click("#rewind-previous-change").await;
    browser.wait_for_script("rewound to the old leader's term", &rewound_to_leader(&old_leader)).await;
    let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
    eprintln!("rewound rows: {rows}");
    browser.evaluate("window.scrollTo(0, 0); return true;", Vec::new()).await;
    browser.screenshot("dashboard-rewound").await;

    browser.click("#rewind-live").await;
    let live_again = format!(
        "return document.getElementById('rewind').dataset.mode === 'live'
           && [...document.querySelectorAll('#cluster .node-row')].some((row) =>
                row.dataset.name === {old_leader:?} && row.dataset.role === 'unreachable');"
    );
    browser.wait_for_script("live again, the old leader unreachable", &live_again).await;
    browser.close().await;
    if let Some(server) = page_server {
        server.abort();
    }
    drop(nodes);
}
