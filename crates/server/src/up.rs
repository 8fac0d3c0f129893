//! `raftkv up`: a local N-node cluster of real `raftkv serve` processes on loopback, for
//! trying raftkv out.
//!
//! A member that exits (killed, crashed) stays down while the others carry on: `up` says
//! so, then starts it again after `--restart-delay-seconds` (or, with 0, prints the command
//! that restarts it). Ctrl-C or SIGTERM stops every member.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// etcd's default client and peer ports, which node 1 takes when both are free (so a
/// bare `etcdctl put k v` reaches the cluster).
pub const ETCD_DEFAULT_PORTS: (u16, u16) = (2379, 2380);

/// Name of the file in `--data-dir` that keeps the chosen ports.
pub const PORTS_FILE: &str = "ports";

/// Flags of `raftkv up`.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where the nodes keep their data (one sub-directory per node) and the ports they use
    /// (`<data-dir>/ports`: a restart of `up` with the same directory reuses them).
    #[arg(long, default_value = "raftkv-data")]
    pub data_dir: PathBuf,
    /// Seconds a member that exited stays down before `up` starts it again; 0: never
    /// (`up` prints the command that restarts it).
    #[arg(long, default_value_t = 10)]
    pub restart_delay_seconds: u64,
}

/// Ports of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePorts {
    /// Client (gRPC) port.
    pub client: u16,
    /// Peer (Raft) port.
    pub peer: u16,
    /// Metrics, dashboard and `/api/state` port.
    pub metrics: u16,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Fresh ports for `nodes` nodes: node 1 takes `preferred` (client, peer) when both are
/// free, every other port is one the kernel hands out.
pub fn choose_ports(nodes: usize, preferred: (u16, u16)) -> std::io::Result<Vec<NodePorts>> {
    let mut ports = Vec::with_capacity(nodes);
    for position in 0..nodes {
        let (client, peer) = if position == 0 && is_free(preferred.0) && is_free(preferred.1) {
            preferred
        } else {
            (free_port()?, free_port()?)
        };
        ports.push(NodePorts { client, peer, metrics: free_port()? });
    }
    Ok(ports)
}

/// Ports are kept in `<data-dir>/ports` (one line per node: client, peer and metrics
/// port) so a restarted cluster keeps its addresses and member ids.
pub fn load_or_choose_ports(data_dir: &Path, nodes: usize, preferred: (u16, u16)) -> anyhow::Result<Vec<NodePorts>> {
    let path = data_dir.join(PORTS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let ports = parse_ports(&text).map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
        anyhow::ensure!(
            ports.len() == nodes,
            "{} holds a {}-node cluster; use --nodes {} or another --data-dir",
            path.display(),
            ports.len(),
            ports.len()
        );
        return Ok(ports);
    }
    let ports = choose_ports(nodes, preferred)?;
    std::fs::create_dir_all(data_dir)?;
    let text: String = ports.iter().map(|port| format!("{} {} {}\n", port.client, port.peer, port.metrics)).collect();
    std::fs::write(&path, text)?;
    Ok(ports)
}

fn parse_ports(text: &str) -> Result<Vec<NodePorts>, String> {
    let mut ports = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let numbers: Result<Vec<u16>, _> = line.split_whitespace().map(str::parse::<u16>).collect();
        match numbers.as_deref() {
            Ok([client, peer, metrics]) => ports.push(NodePorts { client: *client, peer: *peer, metrics: *metrics }),
            _ => {
                return Err(format!("line {}: want three port numbers (client peer metrics), got {line:?}", number + 1))
            }
        }
    }
    Ok(ports)
}

/// One member as `up` runs it.
struct Member {
    name: String,
    arguments: Vec<OsString>,
    child: Option<Child>,
    /// When a member that exited is started again (None: running, or never).
    restart_at: Option<Instant>,
}

impl Member {
    fn start(&mut self, executable: &Path) -> anyhow::Result<u32> {
        let child = Command::new(executable)
            .args(&self.arguments)
            .spawn()
            .map_err(|error| anyhow::anyhow!("cannot start {}: {error}", self.name))?;
        let pid = child.id();
        self.child = Some(child);
        self.restart_at = None;
        Ok(pid)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The shell command that starts this member by hand.
    fn command_line(&self, executable: &Path) -> String {
        let mut words = vec![executable.display().to_string()];
        words.extend(self.arguments.iter().map(|argument| argument.to_string_lossy().into_owned()));
        words.join(" ")
    }
}

fn members_for(args: &UpArgs, ports: &[NodePorts]) -> Vec<Member> {
    let initial_cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(position, port)| format!("node{}=http://127.0.0.1:{}", position + 1, port.peer))
        .collect();
    let initial_cluster = initial_cluster.join(",");
    ports
        .iter()
        .enumerate()
        .map(|(position, port)| {
            let name = format!("node{}", position + 1);
            let client_url = format!("http://127.0.0.1:{}", port.client);
            let peer_url = format!("http://127.0.0.1:{}", port.peer);
            let metrics_url = format!("http://127.0.0.1:{}", port.metrics);
            let mut arguments: Vec<OsString> = ["serve", "--name", &name, "--data-dir"].map(OsString::from).to_vec();
            arguments.push(args.data_dir.join(&name).into_os_string());
            for word in [
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-state",
                "new",
                "--listen-metrics-urls",
                &metrics_url,
            ] {
                arguments.push(word.into());
            }
            Member { name, arguments, child: None, restart_at: None }
        })
        .collect()
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be between 1 and 9");
    let ports = load_or_choose_ports(&args.data_dir, args.nodes, ETCD_DEFAULT_PORTS)?;
    let executable = std::env::current_exe()?;
    let mut members = members_for(&args, &ports);
    for position in 0..members.len() {
        if let Err(error) = members[position].start(&executable) {
            stop_all(&mut members);
            return Err(error);
        }
    }
    print_banner(&ports, &members, args.restart_delay_seconds);
    let restart_delay = (args.restart_delay_seconds > 0).then(|| Duration::from_secs(args.restart_delay_seconds));
    let result = supervise(&mut members, &executable, restart_delay);
    stop_all(&mut members);
    println!("raftkv: cluster stopped");
    result
}

fn print_banner(ports: &[NodePorts], members: &[Member], restart_delay_seconds: u64) {
    let endpoints: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{}", port.client)).collect();
    println!("raftkv: {}-node cluster started", ports.len());
    for ((position, port), member) in ports.iter().enumerate().zip(members) {
        println!(
            "  node{} (pid {}): client http://127.0.0.1:{}  peer http://127.0.0.1:{}  metrics http://127.0.0.1:{}/metrics",
            position + 1,
            member.pid().unwrap_or(0),
            port.client,
            port.peer,
            port.metrics
        );
    }
    println!("dashboard: http://127.0.0.1:{}/dashboard", ports[0].metrics);
    println!("endpoints: {}", endpoints.join(","));
    let endpoints_flag = if ports[0].client == ETCD_DEFAULT_PORTS.0 {
        String::new()
    } else {
        format!("--endpoints={} ", endpoints.join(","))
    };
    println!("try: ETCDCTL_API=3 etcdctl {endpoints_flag}put hello world");
    println!("     ETCDCTL_API=3 etcdctl --endpoints={} endpoint status -w table", endpoints.join(","));
    if restart_delay_seconds > 0 {
        println!("A member that exits (try `kill <pid>`) stays down for {restart_delay_seconds} s, then is restarted.");
    } else {
        println!("A member that exits (try `kill <pid>`) stays down; the command to restart it is printed.");
    }
    println!("Ctrl-C stops the cluster.");
}

/// Watches the members until Ctrl-C or SIGTERM: reports exits, restarts after the delay.
fn supervise(members: &mut [Member], executable: &Path, restart_delay: Option<Duration>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // SIGTERM too: a supervisor (or `kill`) stopping `raftkv up` must not leave its nodes running.
        let shutdown = crate::serve::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            for position in 0..members.len() {
                check_member(members, position, executable, restart_delay)?;
            }
        }
    })
}

fn check_member(
    members: &mut [Member],
    position: usize,
    executable: &Path,
    restart_delay: Option<Duration>,
) -> anyhow::Result<()> {
    let member = &mut members[position];
    if let Some(child) = member.child.as_mut() {
        let Some(status) = child.try_wait()? else { return Ok(()) };
        let pid = child.id();
        member.child = None;
        let name = member.name.clone();
        let others: Vec<&str> =
            members.iter().filter(|other| other.child.is_some()).map(|other| other.name.as_str()).collect();
        let carrying_on = if others.is_empty() {
            "no member is running".to_string()
        } else {
            format!("{} carry on", others.join(", "))
        };
        println!("raftkv up: {name} (pid {pid}) exited ({status}); it is down, {carrying_on}");
        let member = &mut members[position];
        match restart_delay {
            Some(delay) => {
                member.restart_at = Some(Instant::now() + delay);
                println!("raftkv up: restarting {name} in {} s", delay.as_secs());
            }
            None => println!("raftkv up: restart {name} with: {}", member.command_line(executable)),
        }
        return Ok(());
    }
    if member.restart_at.is_some_and(|at| Instant::now() >= at) {
        match member.start(executable) {
            Ok(pid) => println!("raftkv up: {} restarted (pid {pid})", member.name),
            Err(error) => {
                println!("raftkv up: {error}");
                member.restart_at = None;
            }
        }
    }
    Ok(())
}

fn stop_all(members: &mut [Member]) {
    for member in members.iter_mut() {
        let Some(child) = member.child.as_mut() else { continue };
        // Signal only a member still running (one that exited was reaped and its pid may be reused).
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).stderr(Stdio::null()).status();
        }
    }
    for member in members.iter_mut() {
        let Some(mut child) = member.child.take() else { continue };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_one_takes_the_preferred_ports_when_free_and_others_otherwise() {
        let client = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpListener::bind("127.0.0.1:0").unwrap();
        let preferred = (client.local_addr().unwrap().port(), peer.local_addr().unwrap().port());
        let taken = choose_ports(3, preferred).unwrap();
        assert_ne!((taken[0].client, taken[0].peer), preferred, "both preferred ports are in use");
        drop((client, peer));
        let ports = choose_ports(3, preferred).unwrap();
        assert_eq!((ports[0].client, ports[0].peer), preferred);
        assert_ne!((ports[1].client, ports[1].peer), preferred);
    }

    #[test]
    fn ports_are_kept_in_the_data_dir_and_reused() {
        let directory = tempfile::tempdir().unwrap();
        let preferred = (free_port().unwrap(), free_port().unwrap());
        let first = load_or_choose_ports(directory.path(), 3, preferred).unwrap();
        let again = load_or_choose_ports(directory.path(), 3, (1, 2)).unwrap();
        assert_eq!(first, again);
        let error = load_or_choose_ports(directory.path(), 5, preferred).unwrap_err().to_string();
        assert!(error.contains("holds a 3-node cluster; use --nodes 3"), "{error}");
        std::fs::write(directory.path().join(PORTS_FILE), "1 2\n").unwrap();
        let error = load_or_choose_ports(directory.path(), 3, preferred).unwrap_err().to_string();
        assert!(error.contains("line 1: want three port numbers"), "{error}");
    }
}
