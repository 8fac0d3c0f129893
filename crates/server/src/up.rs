//! `raftkv up`: a local N-node cluster of real `raftkv serve` processes on loopback, for
//! trying raftkv out. Ctrl-C stops them all.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// Flags of `raftkv up`.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where the nodes keep their data (one sub-directory per node).
    #[arg(long, default_value = "raftkv-data")]
    pub data_dir: PathBuf,
}

/// Ports of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodePorts {
    client: u16,
    peer: u16,
    metrics: u16,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ports are kept in `<data-dir>/ports` so a restarted cluster keeps its member ids.
fn load_or_choose_ports(data_dir: &Path, nodes: usize) -> anyhow::Result<Vec<NodePorts>> {
    let path = data_dir.join("ports");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let ports: Vec<NodePorts> = text
            .lines()
            .filter_map(|line| {
                let numbers: Vec<u16> = line.split_whitespace().filter_map(|word| word.parse().ok()).collect();
                (numbers.len() == 3).then(|| NodePorts { client: numbers[0], peer: numbers[1], metrics: numbers[2] })
            })
            .collect();
        if ports.len() == nodes {
            return Ok(ports);
        }
        anyhow::bail!(
            "{} holds a {}-node cluster; use --nodes {} or another --data-dir",
            path.display(),
            ports.len(),
            ports.len()
        );
    }
    let mut ports = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        ports.push(NodePorts { client: free_port()?, peer: free_port()?, metrics: free_port()? });
    }
    std::fs::create_dir_all(data_dir)?;
    let text: String = ports.iter().map(|port| format!("{} {} {}\n", port.client, port.peer, port.metrics)).collect();
    std::fs::write(&path, text)?;
    Ok(ports)
}

/// Runs the cluster until Ctrl-C.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be between 1 and 9");
    let ports = load_or_choose_ports(&args.data_dir, args.nodes)?;
    let initial_cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(position, port)| format!("node{}=http://127.0.0.1:{}", position + 1, port.peer))
        .collect();
    let initial_cluster = initial_cluster.join(",");
    let executable = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::new();
    for (position, port) in ports.iter().enumerate() {
        let name = format!("node{}", position + 1);
        let client_url = format!("http://127.0.0.1:{}", port.client);
        let peer_url = format!("http://127.0.0.1:{}", port.peer);
        let child = Command::new(&executable)
            .arg("serve")
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(args.data_dir.join(&name))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
            .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{}", port.metrics)])
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(error) => {
                stop_all(&mut children);
                anyhow::bail!("cannot start {name}: {error}");
            }
        }
    }
    print_banner(&ports);
    wait_for_ctrl_c_or_exit(&mut children)
}

fn print_banner(ports: &[NodePorts]) {
    let endpoints: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{}", port.client)).collect();
    println!("raftkv: {}-node cluster started", ports.len());
    for (position, port) in ports.iter().enumerate() {
        println!(
            "  node{}: client http://127.0.0.1:{}  peer http://127.0.0.1:{}  metrics http://127.0.0.1:{}/metrics",
            position + 1,
            port.client,
            port.peer,
            port.metrics
        );
    }
    println!("dashboard: http://127.0.0.1:{}/dashboard", ports[0].metrics);
    println!("endpoints: {}", endpoints.join(","));
    println!("try: ETCDCTL_API=3 etcdctl --endpoints={} put hello world", endpoints.join(","));
    println!("     ETCDCTL_API=3 etcdctl --endpoints={} endpoint status -w table", endpoints.join(","));
    println!("Ctrl-C stops the cluster.");
}

fn wait_for_ctrl_c_or_exit(children: &mut [Child]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        // SIGTERM too: a supervisor (or `kill`) stopping `raftkv up` must not leave its nodes running.
        let shutdown = crate::serve::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            for (position, child) in children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait()? {
                    return Err(anyhow::anyhow!("node{} exited: {status}", position + 1));
                }
            }
        }
    });
    stop_all(children);
    println!("raftkv: cluster stopped");
    result
}

fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    for child in children.iter_mut() {
        for _ in 0..50 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
