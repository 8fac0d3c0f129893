//! The same 3-member cluster started three ways — etcd's flags, `ETCD_*` environment
//! variables, `--config-file` (etcd's YAML) — on the same ports: each serves etcdctl's put
//! and get and lists the same members. A flag given both on the command line and in the
//! environment is refused with etcd's message, an unknown `ETCD_*` variable is a warning,
//! and with `--config-file` the command line is ignored.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl_program, free_port, run_bounded, CommandOutput, WAIT_MAX};

/// How the members get their settings.
#[derive(Clone, Copy, Debug)]
enum Source {
    Flags,
    Environment,
    ConfigFile,
}

/// The settings of member `index` of a cluster on `ports` (client, peer per member).
fn settings(ports: &[(u16, u16)], index: usize, data_dir: &Path) -> Vec<(&'static str, String)> {
    let initial_cluster: Vec<String> =
        ports.iter().enumerate().map(|(member, (_, peer))| format!("m{member}=http://127.0.0.1:{peer}")).collect();
    let (client, peer) = ports[index];
    vec![
        ("name", format!("m{index}")),
        ("data-dir", data_dir.display().to_string()),
        ("listen-client-urls", format!("http://127.0.0.1:{client}")),
        ("advertise-client-urls", format!("http://127.0.0.1:{client}")),
        ("listen-peer-urls", format!("http://127.0.0.1:{peer}")),
        ("initial-advertise-peer-urls", format!("http://127.0.0.1:{peer}")),
        ("initial-cluster", initial_cluster.join(",")),
        ("initial-cluster-token", "sources-test".into()),
        ("initial-cluster-state", "new".into()),
        ("heartbeat-interval", "50".into()),
        ("election-timeout", "500".into()),
        ("pre-vote", "true".into()),
    ]
}

/// `raftkv serve` with no inherited `ETCD_*` variables.
fn raftkv() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raftkv"));
    command.arg("serve");
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("ETCD_")) {
        command.env_remove(key);
    }
    command
}

/// The YAML of `settings` (booleans and integers unquoted, as etcd's sample file writes them).
fn yaml(settings: &[(&str, String)]) -> String {
    settings
        .iter()
        .map(|(key, value)| {
            let plain = value.parse::<u64>().is_ok() || value == "true" || value == "false";
            if plain {
                format!("{key}: {value}\n")
            } else {
                format!("{key}: '{value}'\n")
            }
        })
        .collect()
}

/// Starts member `index` with its settings given the `source` way.
fn start_member(source: Source, ports: &[(u16, u16)], index: usize, directory: &Path) -> Child {
    let data_dir = directory.join(format!("m{index}"));
    let settings = settings(ports, index, &data_dir);
    let mut command = raftkv();
    match source {
        Source::Flags => {
            command.args(settings.iter().map(|(flag, value)| format!("--{flag}={value}")));
        }
        Source::Environment => {
            for (flag, value) in &settings {
                command.env(format!("ETCD_{}", flag.to_uppercase().replace('-', "_")), value);
            }
            command.env("ETCD_NOT_A_FLAG", "1");
        }
        Source::ConfigFile => {
            let path = directory.join(format!("m{index}.yml"));
            std::fs::write(&path, yaml(&settings)).unwrap();
            // Ignored with --config-file, as etcd does.
            command.arg(format!("--config-file={}", path.display())).arg("--name=ignored");
            command.env("ETCD_NAME", "ignored-too");
        }
    }
    let log = std::fs::File::create(log_path(directory, index)).unwrap();
    command.stdout(Stdio::null()).stderr(log).spawn().expect("start raftkv serve")
}

fn log_path(directory: &Path, index: usize) -> PathBuf {
    directory.join(format!("m{index}.log"))
}

async fn etcdctl(endpoints: &str, arguments: &[&str]) -> CommandOutput {
    let mut all = vec!["--endpoints".to_string(), endpoints.to_string()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await
}

/// Starts the cluster, writes through member 0, reads through member 2; returns the
/// `member list -w json` members (sorted, without the header) and the cluster's logs.
async fn run_cluster(source: Source, ports: &[(u16, u16)]) -> (serde_json::Value, String) {
    let directory = tempfile::tempdir().unwrap();
    let mut children: Vec<Child> =
        (0..ports.len()).map(|index| start_member(source, ports, index, directory.path())).collect();
    let endpoint = |index: usize| format!("http://127.0.0.1:{}", ports[index].0);
    let started = Instant::now();
    loop {
        let put = etcdctl(&endpoint(0), &["put", "source", &format!("{source:?}")]).await;
        if put.code == 0 {
            break;
        }
        for (index, child) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(log_path(directory.path(), index)).unwrap_or_default();
                panic!("{source:?}: member {index} exited with {status}: {log}");
            }
        }
        assert!(started.elapsed() < WAIT_MAX, "{source:?}: no put within {WAIT_MAX:?}: {}", put.stderr);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let get = etcdctl(&endpoint(2), &["get", "source", "--print-value-only", "--consistency=l"]).await;
    assert_eq!(get.stdout.trim(), format!("{source:?}"), "{source:?}: {}", get.stderr);
    let list = etcdctl(&endpoint(1), &["member", "list", "-w", "json"]).await;
    let value: serde_json::Value = serde_json::from_str(&list.stdout).expect("member list -w json");
    let mut members = value["members"].as_array().cloned().unwrap_or_default();
    members.sort_by_key(|member| member["name"].as_str().unwrap_or_default().to_string());
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let logs = (0..ports.len())
        .map(|index| std::fs::read_to_string(log_path(directory.path(), index)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    (serde_json::Value::Array(members), logs)
}

#[tokio::test]
async fn flags_variables_and_config_file_start_the_same_cluster() {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let (by_flags, _) = run_cluster(Source::Flags, &ports).await;
    assert_eq!(by_flags.as_array().map(Vec::len), Some(3), "{by_flags}");
    let (by_environment, environment_logs) = run_cluster(Source::Environment, &ports).await;
    assert_eq!(by_environment, by_flags, "ETCD_* variables start the same members");
    assert!(
        environment_logs.contains("unrecognized environment variable ETCD_NOT_A_FLAG=1"),
        "an unknown ETCD_* variable is a warning: {environment_logs}"
    );
    let (by_file, file_logs) = run_cluster(Source::ConfigFile, &ports).await;
    assert_eq!(by_file, by_flags, "--config-file starts the same members (and ignores --name and ETCD_NAME)");
    assert!(file_logs.contains("other command-line flags and environment variables are ignored"), "{file_logs}");
}

#[test]
fn a_flag_also_given_as_a_variable_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let output = raftkv()
        .arg("--name=n1")
        .arg(format!("--data-dir={}", data_dir.display()))
        .env("ETCD_NAME", "n2")
        .output()
        .expect("run raftkv serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag \
             (either unset environment variable or disable flag)"
        ),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "nothing starts");
    let output = raftkv()
        .env("ETCD_DATA_DIR", data_dir.display().to_string())
        .env("ETCD_HEARTBEAT_INTERVAL", "100ms")
        .output()
        .expect("run raftkv serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("invalid value \"100ms\" for ETCD_HEARTBEAT_INTERVAL"),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "nothing starts");
}

#[test]
fn a_bad_config_file_is_refused_naming_the_key() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let cases = [
        ("name: n1\nnmae: n2\n", "unknown key \"nmae\""),
        ("pre-vote: sometimes\n", "key \"pre-vote\": expected true or false"),
        ("snapshot-count: '1e5'\n", "key \"snapshot-count\": expected an integer"),
        ("grpc-keepalive-timeout: 20 s\n", "key \"grpc-keepalive-timeout\""),
        ("name: [unclosed\n", "not valid YAML"),
        ("client-transport-security:\n  cert: /x.pem\n", "unknown key \"client-transport-security.cert\""),
        ("enable-v2: true\n", "--enable-v2 is not supported"),
    ];
    for (text, expected) in cases {
        let path = directory.path().join("bad.yml");
        std::fs::write(&path, format!("data-dir: '{}'\n{text}", data_dir.display())).unwrap();
        let output = raftkv().arg(format!("--config-file={}", path.display())).output().expect("run raftkv serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{text:?}: expected {expected:?} in {stderr}");
        assert!(!data_dir.exists(), "{text:?}: nothing starts");
    }
}
