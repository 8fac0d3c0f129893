//! The command blocks of README.md and docs/*.md cannot drift: every ```sh or ```bash
//! block carries, on the line right before its opening fence, a marker naming the test
//! that exercises what it shows:
//!
//! ```text
//! <!-- tested-by: tests/FILE.rs::TEST_NAME -->
//! ```
//!
//! ([`every_command_block_names_a_test_that_exists`] checks the marker and that the test
//! function exists). Blocks marked `tests/docs.rs::marked_blocks_run_against_a_cluster`
//! are run here, by bash, against a 3-node raftkv cluster this test starts (the block's
//! ports 2379/2479/2579 become the cluster's); the README's `raftkv serve` example is
//! started as written, on free ports, by [`readme_serve_example_starts_a_cluster`].

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, member_status, Cluster, WAIT_MAX};

/// The marker's opening text.
const MARKER_PREFIX: &str = "<!-- tested-by: ";

/// One fenced command block of a Markdown file.
#[derive(Clone, Debug)]
struct Block {
    /// Path relative to the repository root.
    file: String,
    /// Line number (1-based) of the opening fence.
    line: usize,
    /// The block's text (without the fences).
    text: String,
    /// The line right before the opening fence.
    line_before: String,
}

impl Block {
    /// `(path, test name)` of the marker, if the line before is one.
    fn marker(&self) -> Option<(String, String)> {
        let inner = self.line_before.trim().strip_prefix(MARKER_PREFIX)?.strip_suffix("-->")?.trim();
        let (path, test) = inner.split_once("::")?;
        Some((path.trim().to_string(), test.trim().to_string()))
    }

    fn describe(&self) -> String {
        let first = self.text.lines().next().unwrap_or("").trim();
        format!("{}:{} (the block starting `{first}`)", self.file, self.line)
    }
}

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, in a fixed order.
fn documents() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(repository_root().join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every ```sh / ```bash block of `file`.
fn command_blocks(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repository_root().join(file)).unwrap_or_else(|error| panic!("{file}: {error}"));
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut position = 0;
    while position < lines.len() {
        let fence = lines[position].trim_start();
        let Some(info) = fence.strip_prefix("```") else {
            position += 1;
            continue;
        };
        let language = info.split_whitespace().next().unwrap_or("");
        let end = (position + 1..lines.len()).find(|&index| lines[index].trim_start().starts_with("```"));
        let end = end.unwrap_or_else(|| panic!("{file}:{}: a code block is never closed", position + 1));
        if language == "sh" || language == "bash" {
            blocks.push(Block {
                file: file.to_string(),
                line: position + 1,
                text: lines[position + 1..end].join("\n"),
                line_before: if position == 0 { String::new() } else { lines[position - 1].to_string() },
            });
        }
        position = end + 1;
    }
    blocks
}

fn all_blocks() -> Vec<Block> {
    documents().iter().flat_map(|file| command_blocks(file)).collect()
}

/// Blocks whose marker names `test` in tests/docs.rs.
fn blocks_marked_for(test: &str) -> Vec<Block> {
    all_blocks().into_iter().filter(|block| block.marker() == Some(("tests/docs.rs".into(), test.into()))).collect()
}

/// Why `block`'s marker is missing or wrong, if it is.
fn marker_problem(block: &Block) -> Option<String> {
    let how = format!(
        "put the line `{MARKER_PREFIX}tests/FILE.rs::TEST_NAME -->` right before its opening ``` (no blank line \
         between), naming the test that runs what the block shows; or `{MARKER_PREFIX}tests/docs.rs::\
         marked_blocks_run_against_a_cluster -->` to have tests/docs.rs run it against a 3-node cluster \
         (ports 2379/2479/2579 are replaced by the cluster's)"
    );
    let Some((path, test)) = block.marker() else {
        return Some(format!("{} has no tested-by marker: {how}", block.describe()));
    };
    let source = match std::fs::read_to_string(repository_root().join(&path)) {
        Ok(source) => source,
        Err(error) => {
            return Some(format!("{}: its marker names {path}, which cannot be read ({error})", block.describe()))
        }
    };
    let defines = |prefix: &str| source.contains(&format!("{prefix}{test}("));
    if !(defines("fn ") || defines("async fn ")) {
        return Some(format!("{}: its marker names {path}::{test}, but {path} has no fn {test}", block.describe()));
    }
    None
}

#[test]
fn every_command_block_names_a_test_that_exists() {
    let blocks = all_blocks();
    assert!(blocks.len() >= 10, "found only {} command blocks: is the extraction broken?", blocks.len());
    let problems: Vec<String> = blocks.iter().filter_map(marker_problem).collect();
    assert!(problems.is_empty(), "{} of {} command blocks:\n- {}", problems.len(), blocks.len(), problems.join("\n- "));
}

#[test]
fn markers_are_recognised_and_checked() {
    let block = |line_before: &str| Block {
        file: "README.md".into(),
        line: 7,
        text: "etcdctl put k v".into(),
        line_before: line_before.into(),
    };
    let missing = marker_problem(&block("")).expect("a block without a marker is reported");
    assert!(missing.contains("README.md:7") && missing.contains("etcdctl put k v") && missing.contains(MARKER_PREFIX));
    let unknown = marker_problem(&block("<!-- tested-by: tests/docs.rs::no_such_test -->")).expect("reported");
    assert!(unknown.contains("has no fn no_such_test"), "{unknown}");
    assert!(marker_problem(&block("<!-- tested-by: tests/docs.rs::markers_are_recognised_and_checked -->")).is_none());
}

/// The text of `block` with etcd's example ports replaced by `cluster`'s and
/// `cargo run --release --` by `raftkv`.
fn localise(text: &str, client_ports: &[u16], peer_ports: &[u16]) -> String {
    let mut text = text.replace("cargo run --release -- ", "raftkv ");
    for (position, (client, peer)) in client_ports.iter().zip(peer_ports).enumerate() {
        let documented = 2379 + 100 * position;
        text = text.replace(&format!("127.0.0.1:{documented}"), &format!("127.0.0.1:{client}"));
        text = text.replace(&format!("127.0.0.1:{}", documented + 1), &format!("127.0.0.1:{peer}"));
    }
    text
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|port| port.trim_end_matches('/').parse().ok()).expect("a URL with a port")
}

/// PATH with the raftkv binary under test first.
fn path_with_raftkv() -> String {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_raftkv"));
    let directory = binary.parent().expect("the binary's directory").display().to_string();
    format!("{directory}:{}", std::env::var("PATH").unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_blocks_run_against_a_cluster() {
    let blocks = blocks_marked_for("marked_blocks_run_against_a_cluster");
    assert!(!blocks.is_empty(), "no block is marked to run here");
    for block in blocks {
        let cluster = Cluster::start_raftkv(3).await;
        let client_ports: Vec<u16> = cluster.client_urls().iter().map(|url| port_of(url)).collect();
        let peer_ports: Vec<u16> = cluster.nodes.iter().map(|node| port_of(&node.peer_url)).collect();
        let script = localise(&block.text, &client_ports, &peer_ports);
        let directory = tempfile::tempdir().unwrap();
        let output = tokio::time::timeout(
            WAIT_MAX,
            tokio::process::Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .current_dir(directory.path())
                .env("PATH", path_with_raftkv())
                .env("ETCDCTL_API", "3")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within {WAIT_MAX:?}", block.describe()))
        .expect("run bash");
        assert!(
            output.status.success(),
            "{} failed ({}):\n--- script:\n{script}\n--- stdout:\n{}\n--- stderr:\n{}",
            block.describe(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The shell commands of `text`: lines joined at a trailing `\`, comments dropped.
fn commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// Stops the started members when the test ends (also on a panic).
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_serve_example_starts_a_cluster() {
    let blocks = blocks_marked_for("readme_serve_example_starts_a_cluster");
    assert_eq!(blocks.len(), 1, "exactly one block (the README's serve example) is marked for this test");
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let text = localise(&blocks[0].text, &client_ports, &peer_ports);
    let serve_commands: Vec<String> =
        commands(&text).into_iter().filter(|command| command.starts_with("raftkv serve ")).collect();
    assert_eq!(serve_commands.len(), 3, "the example starts all three members:\n{text}");
    let directory = tempfile::tempdir().unwrap();
    let mut members = Members(Vec::new());
    for command in &serve_commands {
        let words: Vec<&str> = command.split_whitespace().skip(1).collect();
        let log = std::fs::File::create(directory.path().join(format!("member{}.log", members.0.len()))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(&words)
            .current_dir(directory.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command}: {error}"));
        members.0.push(child);
    }
    let urls: Vec<String> = client_ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let mut leaders = Vec::new();
        for url in &urls {
            leaders.push(member_status(url).await.map(|(leader, _)| leader));
        }
        if let Ok(leaders) = leaders.iter().cloned().collect::<Result<Vec<u64>, String>>() {
            if leaders[0] != 0 && leaders.iter().all(|leader| *leader == leaders[0]) {
                break;
            }
        }
        if Instant::now() >= deadline {
            let logs: String = (0..3)
                .map(|index| {
                    std::fs::read_to_string(directory.path().join(format!("member{index}.log"))).unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("\n---\n");
            panic!("the README's three members never agreed on a leader: {leaders:?}\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (index, data_dir) in ["n1.raftkv", "n2.raftkv", "n3.raftkv"].iter().enumerate() {
        assert!(Path::new(&directory.path().join(data_dir)).is_dir(), "member {index} keeps its data in {data_dir}");
    }
}
