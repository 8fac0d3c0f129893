//! `raftkv up` as a user runs it: a member killed by its pid stays down while the others
//! keep serving (etcdctl put/get), the state API shows it unreachable, `up` prints the
//! command that restarts it (or restarts it itself after `--restart-delay-seconds`), the
//! ports survive a restart of `up` with the same data dir, and SIGTERM stops everything.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{etcdctl_program, free_port, member_status, run_bounded, WAIT_MAX};

/// A running `raftkv up` with its output collected as it arrives.
struct Up {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

/// One node as `up`'s banner describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BannerNode {
    name: String,
    pid: u32,
    client_url: String,
    metrics_url: String,
}

impl Up {
    fn start(data_dir: &Path, extra: &[&str]) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start raftkv up");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let text = stderr.clone();
        let mut err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = err.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                text.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        Up { child, stdout, stderr }
    }

    fn output(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    fn context(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        let tail = &stderr[stderr.len().saturating_sub(3000)..];
        format!("\n--- up's stdout:\n{}\n--- up's stderr (tail):\n{tail}", self.output())
    }

    /// Waits until a line of stdout satisfies `wanted`; returns it.
    fn wait_for_line(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            if let Some(line) = self.stdout.lock().unwrap().iter().find(|line| wanted(line)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no line with {what} within {WAIT_MAX:?}{}", self.context());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The banner's node lines, once all `nodes` are printed.
    fn banner(&self, nodes: usize) -> Vec<BannerNode> {
        self.wait_for_line("Ctrl-C", |line| line.contains("Ctrl-C stops the cluster"));
        let output = self.output();
        let parsed: Vec<BannerNode> = output.lines().filter_map(parse_banner_line).collect();
        assert_eq!(parsed.len(), nodes, "banner:{}", self.context());
        parsed
    }

    /// SIGTERM, then waits for `up` to exit; returns its stdout and stderr.
    fn terminate(mut self) -> (String, String) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + WAIT_MAX;
        while self.child.try_wait().expect("wait for up").is_none() {
            assert!(Instant::now() < deadline, "raftkv up did not stop on SIGTERM{}", self.context());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(200)); // the reader threads drain the pipes
        let stderr = self.stderr.lock().unwrap().clone();
        (self.output(), stderr)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "TERM");
            std::thread::sleep(Duration::from_secs(2));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process the test started itself, SIGKILLed when the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `  node2 (pid 123): client http://127.0.0.1:P  peer http://… metrics http://127.0.0.1:M/metrics`.
fn parse_banner_line(line: &str) -> Option<BannerNode> {
    let line = line.trim();
    let (name, rest) = line.split_once(" (pid ")?;
    let (pid, rest) = rest.split_once("): ")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let client_url = words.get(1)?.to_string();
    let metrics_url = words.get(5)?.trim_end_matches("/metrics").to_string();
    Some(BannerNode { name: name.to_string(), pid: pid.parse().ok()?, client_url, metrics_url })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat.contains(") Z "))
}

/// Writes `<data-dir>/ports` with free ports from the test harness, so the test never
/// needs 2379 (which `up` would take when free).
fn fix_ports(data_dir: &Path, nodes: usize) {
    std::fs::create_dir_all(data_dir).unwrap();
    let text: String = (0..nodes).map(|_| format!("{} {} {}\n", free_port(), free_port(), free_port())).collect();
    std::fs::write(data_dir.join("ports"), text).unwrap();
}

/// Waits until the running members agree on a leader; returns its position in `nodes`.
async fn wait_for_leader(up: &Up, nodes: &[BannerNode]) -> usize {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let mut statuses = Vec::new();
        for node in nodes {
            statuses.push(member_status(&node.client_url).await);
        }
        if let Ok(pairs) = statuses.iter().cloned().collect::<Result<Vec<_>, _>>() {
            let leader = pairs[0].0;
            if leader != 0 && pairs.iter().all(|(other, _)| *other == leader) {
                if let Some(position) = pairs.iter().position(|(_, id)| *id == leader) {
                    return position;
                }
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {statuses:?}{}", up.context());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// etcdctl with `arguments` against `endpoints`, retried until it succeeds (an election
/// may be under way); returns its stdout.
async fn etcdctl_until_ok(up: &Up, endpoints: &str, arguments: &[&str]) -> String {
    let mut full = vec![format!("--endpoints={endpoints}"), "--command-timeout=3s".to_string()];
    full.extend(arguments.iter().map(|argument| argument.to_string()));
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let output = run_bounded(&etcdctl_program(), &full, &[("ETCDCTL_API", "3")], "").await;
        if output.code == 0 {
            return output.stdout;
        }
        assert!(Instant::now() < deadline, "etcdctl {full:?} kept failing: {}{}", output.stderr, up.context());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until a serializable read of `key` on `endpoint` answers `value` (the member
/// catches up).
async fn wait_for_value(up: &Up, endpoint: &str, key: &str, value: &str) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let got = etcdctl_until_ok(up, endpoint, &["get", key, "--print-value-only", "--consistency=s"]).await;
        if got.trim() == value {
            return;
        }
        assert!(Instant::now() < deadline, "{endpoint} never answered {key}={value} (last: {got:?}){}", up.context());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `GET {base}/api/state` as JSON.
fn api_state(base: &str) -> Result<serde_json::Value, String> {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).map_err(|error| error.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|error| error.to_string())?;
    write!(stream, "GET /api/state HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(|error| error.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|error| error.to_string())?;
    let (_, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    serde_json::from_str(body).map_err(|error| format!("{error}: {body}"))
}

/// Waits until `observer`'s `/api/state` lists member `name` with `reachable` = `wanted`.
fn wait_for_reachable(up: &Up, observer: &BannerNode, name: &str, wanted: bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let state = api_state(&observer.metrics_url);
        if let Ok(state) = &state {
            let members = state["members"].as_array().cloned().unwrap_or_default();
            if members.iter().any(|member| member["name"] == name && member["reachable"] == wanted) {
                return state.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}'s /api/state never showed {name} with reachable={wanted}: {state:?}{}",
            observer.name,
            up.context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_stays_down_while_the_others_serve_and_the_printed_command_restarts_it() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("cluster");
    fix_ports(&data_dir, 3);
    let mut up = Up::start(&data_dir, &["--restart-delay-seconds", "0"]);
    let nodes = up.banner(3);
    let leader = wait_for_leader(&up, &nodes).await;
    let all_endpoints: Vec<&str> = nodes.iter().map(|node| node.client_url.as_str()).collect();
    etcdctl_until_ok(&up, &all_endpoints.join(","), &["put", "before", "1"]).await;

    // Kill the leader by the pid `up` printed.
    let victim = nodes[leader].clone();
    signal(victim.pid, "KILL");
    let exited =
        up.wait_for_line("the exit", |line| line.contains(&format!("{} (pid {}) exited", victim.name, victim.pid)));
    assert!(exited.contains("it is down") && exited.contains("carry on"), "{exited}");
    let restart_line = up.wait_for_line("the restart command", |line| {
        line.starts_with(&format!("raftkv up: restart {} with: ", victim.name))
    });

    // The other two elect a leader and serve reads and writes.
    let survivors: Vec<&BannerNode> = nodes.iter().filter(|node| node.name != victim.name).collect();
    let endpoints: Vec<&str> = survivors.iter().map(|node| node.client_url.as_str()).collect();
    etcdctl_until_ok(&up, &endpoints.join(","), &["put", "during", "2"]).await;
    for endpoint in &endpoints {
        let got = etcdctl_until_ok(&up, endpoint, &["get", "during", "--print-value-only"]).await;
        assert_eq!(got.trim(), "2", "{endpoint}");
    }
    // The dashboard's state API of a live member shows the dead one as down, the others up.
    for survivor in &survivors {
        let state = wait_for_reachable(&up, survivor, &victim.name, false);
        let members = state["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{state}");
        for other in survivors.iter().filter(|other| other.name != survivor.name) {
            assert!(
                members.iter().any(|member| member["name"] == other.name.as_str() && member["reachable"] == true),
                "{state}"
            );
        }
    }
    assert!(up.child.try_wait().unwrap().is_none(), "up must keep running{}", up.context());
    assert!(survivors.iter().all(|node| is_alive(node.pid)));

    // The printed command brings the member back; it catches up.
    let command = restart_line.split_once(" with: ").unwrap().1;
    let words: Vec<&str> = command.split_whitespace().collect();
    let restarted =
        Command::new(words[0]).args(&words[1..]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut restarted = KillOnDrop(restarted);
    wait_for_value(&up, &victim.client_url, "during", "2").await;
    wait_for_reachable(&up, survivors[0], &victim.name, true);
    let _ = restarted.0.kill();
    let _ = restarted.0.wait();

    let survivor_pids: Vec<u32> = survivors.iter().map(|node| node.pid).collect();
    let (stdout, stderr) = up.terminate();
    assert!(stdout.contains("raftkv: cluster stopped"), "{stdout}");
    assert!(!stderr.contains("No such process"), "a stray kill error:\n{stderr}");
    for pid in survivor_pids {
        assert!(!is_alive(pid), "member pid {pid} still runs after up stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_restarts_a_killed_member_after_the_delay_and_keeps_its_ports_across_restarts() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("cluster");
    fix_ports(&data_dir, 3);
    let ports_before = std::fs::read_to_string(data_dir.join("ports")).unwrap();
    let up = Up::start(&data_dir, &["--restart-delay-seconds", "1"]);
    let nodes = up.banner(3);
    let leader = wait_for_leader(&up, &nodes).await;
    let follower = nodes[(leader + 1) % 3].clone();
    signal(follower.pid, "KILL");
    let exited =
        up.wait_for_line("the exit", |line| line.contains(&format!("{} (pid {}) exited", follower.name, follower.pid)));
    assert!(exited.contains("it is down"), "{exited}");
    up.wait_for_line("the restart notice", |line| line == format!("raftkv up: restarting {} in 1 s", follower.name));
    let others: Vec<&str> =
        nodes.iter().filter(|node| node.name != follower.name).map(|node| node.client_url.as_str()).collect();
    etcdctl_until_ok(&up, &others.join(","), &["put", "while-down", "3"]).await;
    let restarted = up.wait_for_line("the restart", |line| {
        line.starts_with(&format!("raftkv up: {} restarted (pid ", follower.name))
    });
    assert!(!restarted.contains(&format!("(pid {})", follower.pid)), "{restarted}");
    wait_for_value(&up, &follower.client_url, "while-down", "3").await;
    let (stdout, stderr) = up.terminate();
    assert!(stdout.contains("raftkv: cluster stopped"), "{stdout}");
    assert!(!stderr.contains("No such process"), "a stray kill error:\n{stderr}");

    // Same data dir again: same ports, same data.
    let again = Up::start(&data_dir, &[]);
    let nodes_again = again.banner(3);
    let urls = |nodes: &[BannerNode]| {
        nodes.iter().map(|node| (node.client_url.clone(), node.metrics_url.clone())).collect::<Vec<_>>()
    };
    assert_eq!(urls(&nodes_again), urls(&nodes));
    assert_eq!(std::fs::read_to_string(data_dir.join("ports")).unwrap(), ports_before);
    let all: Vec<&str> = nodes_again.iter().map(|node| node.client_url.as_str()).collect();
    let got = etcdctl_until_ok(&again, &all.join(","), &["get", "while-down", "--print-value-only"]).await;
    assert_eq!(got.trim(), "3");
    again.terminate();
}
