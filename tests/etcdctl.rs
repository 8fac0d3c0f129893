//! etcdctl (Debian's `etcd-client` package, etcdctl 3.4) against a 3-member raftkv
//! cluster of real processes, compared with the same commands against a 3-member real
//! etcd 3.4 (Debian's `etcd-server`): outputs must be equal apart from ids, ports, Raft
//! terms and indexes, sizes, versions and timings.
//!
//! Needs `etcdctl` on PATH and `/usr/bin/etcd`; fails with a message if either is missing.

mod common;

use common::{etcdctl_program, run_bounded, Cluster, CommandOutput};
use regex::Regex;

/// Runs `etcdctl --endpoints=<endpoints> <arguments>` with `stdin`.
async fn etcdctl(endpoints: &str, arguments: &[&str], stdin: &str) -> CommandOutput {
    let mut all = vec![format!("--endpoints={endpoints}"), "--dial-timeout=5s".into(), "--command-timeout=10s".into()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], stdin).await
}

/// Ids, terms, indexes, sizes and timings differ between any two clusters: replace them.
struct Normalizer {
    ids: Vec<(String, &'static str)>,
    patterns: Vec<(Regex, &'static str)>,
}

impl Normalizer {
    async fn new(cluster: &Cluster) -> Normalizer {
        let mut ids = Vec::new();
        let mut client = etcd_client::Client::connect(cluster.client_urls(), None).await.expect("connect");
        let members = client.member_list().await.expect("member list");
        let cluster_id = members.header().expect("header").cluster_id();
        ids.push((cluster_id.to_string(), "<CLUSTER>"));
        ids.push((format!("{cluster_id:x}"), "<CLUSTER>"));
        for member in members.members() {
            ids.push((member.id().to_string(), "<MEMBER>"));
            ids.push((format!("{:x}", member.id()), "<MEMBER>"));
        }
        let pattern = |text: &str| Regex::new(text).expect("valid pattern");
        let patterns = vec![
            (pattern(r"127\.0\.0\.1:\d+"), "127.0.0.1:<PORT>"),
            (pattern(r#""raft_term":\d+"#), r#""raft_term":<TERM>"#),
            (pattern(r#""(dbSize|dbSizeInUse|raftIndex|raftTerm|raftAppliedIndex)":\d+"#), r#""$1":<N>"#),
            (pattern(r#""version":"[^"]*""#), r#""version":"<VERSION>""#),
            (pattern(r#","isLearner":false"#), ""),
            (pattern(r"took = \S+"), "took = <DURATION>"),
            // `endpoint hashkv`: the hash functions differ.
            (pattern(r"(?m)^(http://\S+), \d+$"), "$1, <HASH>"),
            (
                // The same row in `-w table`.
                pattern(
                    r"(?m)^\| (\S+) +\| (<MEMBER>) +\| +\S+ +\| +[\d.]+ [kMG]?B +\| +(true|false) +\| +(true|false) +\| +\d+ +\| +\d+ +\| +\d+ +\| (.*)$",
                ),
                "| $1 | $2 | <VERSION> | <SIZE> | <LEADER?> | $4 | <TERM> | <INDEX> | <APPLIED> | $5",
            ),
            // Table cells are padded to the widest value, and ids differ in width.
            (pattern(r" {2,}"), " "),
            (pattern(r"-{2,}"), "-"),
            (
                // `endpoint status` table row: version, size, leader?, learner?, term, index, applied.
                pattern(
                    r"(?m)^(\S+), (<MEMBER>), \S+, [\d.]+ [kMG]?B, (true|false), (true|false), \d+, \d+, \d+, (.*)$",
                ),
                "$1, $2, <VERSION>, <SIZE>, <LEADER?>, $4, <TERM>, <INDEX>, <APPLIED>, $5",
            ),
        ];
        Normalizer { ids, patterns }
    }

    fn apply(&self, output: &CommandOutput) -> String {
        // etcdctl's client library logs retries as JSON on stderr, with timestamps.
        let stderr: Vec<&str> = output.stderr.lines().filter(|line| !line.starts_with("{\"level\"")).collect();
        let mut text =
            format!("exit {}\n--- stdout\n{}--- stderr\n{}\n", output.code, output.stdout, stderr.join("\n"));
        // Longest ids first, so a decimal id is not cut by a shorter one inside it.
        let mut ids = self.ids.clone();
        ids.sort_by_key(|(id, _)| std::cmp::Reverse(id.len()));
        for (id, placeholder) in ids {
            let pattern = Regex::new(&format!(r"\b{id}\b")).expect("valid pattern");
            text = pattern.replace_all(&text, placeholder).into_owned();
        }
        for (pattern, replacement) in &self.patterns {
            text = pattern.replace_all(&text, *replacement).into_owned();
        }
        text
    }
}

/// One etcdctl invocation of the comparison.
struct Step {
    arguments: Vec<String>,
    stdin: String,
    /// Compare lines as a set (member order follows member ids, which differ).
    unordered: bool,
}

fn step(arguments: &[&str]) -> Step {
    Step {
        arguments: arguments.iter().map(|argument| argument.to_string()).collect(),
        stdin: String::new(),
        unordered: false,
    }
}

fn step_with_input(arguments: &[&str], stdin: &str) -> Step {
    Step { stdin: stdin.to_string(), ..step(arguments) }
}

fn key_value_steps() -> Vec<Step> {
    vec![
        step(&["put", "foo", "bar"]),
        step(&["put", "foo/a", "1"]),
        step(&["put", "foo/b", "3"]),
        step(&["put", "foo/c", "2"]),
        step(&["put", "zoo", "z"]),
        step(&["get", "foo"]),
        step(&["get", "foo", "--prefix"]),
        step(&["get", "foo", "--prefix", "--limit", "2"]),
        step(&["get", "foo/", "--prefix", "--sort-by=VALUE", "--order=DESCEND"]),
        step(&["get", "foo/", "--prefix", "--sort-by=MODIFY", "--order=ASCEND", "-w", "json"]),
        step(&["get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--keys-only"]),
        step(&["get", "foo", "--prefix", "--print-value-only"]),
        step(&["get", "foo/a", "foo/c"]),
        step(&["get", "--from-key", "foo/b"]),
        step(&["get", "foo", "-w", "json"]),
        step(&["get", "foo", "--prefix", "--limit", "1", "-w", "json"]),
        step(&["get", "missing", "-w", "json"]),
        step(&["get", "foo", "--consistency=s"]),
        step(&["put", "foo", "baz", "--prev-kv"]),
        step(&["get", "foo", "--rev=2"]),
        step(&["get", "foo", "--rev=2", "-w", "json"]),
        step(&["get", "foo", "--rev=1000"]),
        step(&["put", "foo/a", "--ignore-value"]),
        step(&["put", "nokey", "--ignore-value"]),
        step(&["put", "", "v"]),
        step(&["del", "foo/a", "--prev-kv"]),
        step(&["del", "foo/", "--prefix"]),
        step(&["del", "nothing"]),
        step(&["del", "zoo", "-w", "json"]),
        step(&["get", "", "--prefix", "-w", "json"]),
        step_with_input(&["put", "big"], &"x".repeat(1_000_000)),
        step_with_input(&["put", "big"], &"x".repeat(1_600_000)),
        step(&["get", "big", "--keys-only"]),
        step(&["del", "big"]),
    ]
}

fn txn_steps() -> Vec<Step> {
    let succeeding =
        "value(\"foo\") = \"baz\"\nversion(\"foo\") = \"2\"\ncreate(\"foo\") > \"1\"\nmod(\"foo\") < \"100\"\n\n\
                      put tx1 one\nget foo\ndel zoo\n\nput never happens\n\n";
    let failing = "value(\"foo\") = \"nope\"\n\nput never happens\n\nput tx2 two\nget tx1\n\n";
    let nested_revision = "mod(\"tx1\") = \"0\"\n\nput never happens\n\nget tx1 --rev=3\nget foo --prefix\n\n";
    let duplicate = "\nput d 1\nput d 2\n\n\n";
    let too_many: String = format!("\n{}\n\n", (0..129).map(|index| format!("put k{index} v\n")).collect::<String>());
    vec![
        step(&["put", "zoo", "z2"]),
        step_with_input(&["txn"], succeeding),
        step_with_input(&["txn"], failing),
        step_with_input(&["txn", "-w", "json"], succeeding),
        step_with_input(&["txn", "-w", "json"], nested_revision),
        step_with_input(&["txn", "--interactive"], failing),
        step_with_input(&["txn"], duplicate),
        step_with_input(&["txn"], &too_many),
        step(&["get", "tx", "--prefix", "-w", "json"]),
    ]
}

fn compaction_steps() -> Vec<Step> {
    vec![
        step(&["compaction", "3"]),
        step(&["get", "foo", "--rev=2"]),
        step(&["get", "foo", "--rev=3"]),
        step(&["compaction", "3"]),
        step(&["compaction", "100000"]),
        step(&["get", "foo", "--rev=4", "-w", "json"]),
    ]
}

fn member_and_endpoint_steps() -> Vec<Step> {
    let unordered = |arguments: &[&str]| Step { unordered: true, ..step(arguments) };
    vec![
        step(&["put", "through", "a-follower"]),
        step(&["get", "through", "-w", "json"]),
        step(&["get", "through", "--consistency=s"]),
        unordered(&["member", "list"]),
        unordered(&["member", "list", "-w", "table"]),
        step(&["endpoint", "health"]),
        step(&["endpoint", "status"]),
        step(&["endpoint", "status", "-w", "json"]),
        step(&["endpoint", "status", "-w", "table"]),
        step(&["endpoint", "hashkv"]),
        step(&["alarm", "list"]),
        step(&["defrag"]),
    ]
}

/// Runs every step against both clusters and reports all differences at once.
async fn compare_with_etcd(steps: Vec<Step>, single_endpoint_steps: Vec<Step>) {
    let mut etcd = Cluster::start_etcd(3).await;
    let mut raftkv = Cluster::start_raftkv(3).await;
    // Single-endpoint steps talk to a follower, so writes among them are forwarded.
    let etcd_follower = etcd.client_urls()[(etcd.wait_for_leader().await + 1) % 3].clone();
    let raftkv_follower = raftkv.client_urls()[(raftkv.wait_for_leader().await + 1) % 3].clone();
    let (etcd_normalizer, raftkv_normalizer) = (Normalizer::new(&etcd).await, Normalizer::new(&raftkv).await);
    let mut differences = Vec::new();
    let runs = steps
        .iter()
        .map(|step| (step, etcd.endpoints(), raftkv.endpoints()))
        .chain(single_endpoint_steps.iter().map(|step| (step, etcd_follower.clone(), raftkv_follower.clone())));
    for (step, etcd_endpoints, raftkv_endpoints) in runs {
        let arguments: Vec<&str> = step.arguments.iter().map(String::as_str).collect();
        let expected = etcd_normalizer.apply(&etcdctl(&etcd_endpoints, &arguments, &step.stdin).await);
        let actual = raftkv_normalizer.apply(&etcdctl(&raftkv_endpoints, &arguments, &step.stdin).await);
        let (expected, actual) =
            if step.unordered { (sorted_lines(&expected), sorted_lines(&actual)) } else { (expected, actual) };
        if expected != actual {
            differences.push(format!("etcdctl {arguments:?}\n=== etcd 3.4:\n{expected}=== raftkv:\n{actual}"));
        }
    }
    raftkv.assert_running();
    assert!(differences.is_empty(), "{} differences from etcd:\n\n{}", differences.len(), differences.join("\n"));
}

fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_txn_and_compaction_output_matches_etcd() {
    let mut steps = key_value_steps();
    steps.extend(txn_steps());
    steps.extend(compaction_steps());
    compare_with_etcd(steps, Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_and_endpoint_output_matches_etcd() {
    compare_with_etcd(Vec::new(), member_and_endpoint_steps()).await;
}
