//! Shared by the browser tests: Debian's headless `chromium` driven over WebDriver by
//! Debian's `chromedriver` (packages `chromium`, `chromium-driver`), screenshots, and
//! bounded waits.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// The chromium binary (Debian's package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server (Debian's package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for a page condition.
pub const WAIT_MAX: Duration = Duration::from_secs(30);
/// Pause before a screenshot (animations end); not a timing assertion.
pub const SCREENSHOT_SETTLE: Duration = Duration::from_millis(800);
/// Width and height of the browser window (and so of the screenshots), in pixels.
pub const WINDOW_PIXELS: (u32, u32) = (1360, 1000);

/// True if the browser is installed; otherwise prints why the test does nothing (and fails
/// under CI, where scripts/test.sh installs it).
pub fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message =
        format!("browser test skipped: install Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})");
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("{message}");
    false
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where screenshots go (CI keeps them as artifacts).
pub fn screenshot_directory() -> PathBuf {
    workspace_root().join("target/screenshots")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("port")
}

/// Waits until `condition` holds, polling; panics with `what` after `WAIT_MAX`.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless chromium session. The driver process and the profile directory go away on drop.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh headless chromium.
    pub async fn start() -> Browser {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = KillOnDrop(child);
        wait_until("chromedriver to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let profile = tempfile::tempdir().expect("profile directory");
        let arguments = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--window-size={},{}", WINDOW_PIXELS.0, WINDOW_PIXELS.1),
        ];
        let capabilities = json!({ "goog:chromeOptions": { "binary": CHROMIUM, "args": arguments } });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        Browser { client, _driver: driver, _profile: profile }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn evaluate(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// Clicks the first element matching `css` from inside the page, in one step: the page
    /// re-renders its lists (messages, node rows) as the simulation answers, so an element
    /// found by WebDriver and clicked in a second round trip can be gone in between (a
    /// stale element reference). Waits, at most `WAIT_MAX`, for such an element to exist.
    pub async fn click(&self, css: &str) {
        let script = "const element = document.querySelector(arguments[0]); \
                      if (!element) { return false; } element.click(); return true;";
        let deadline = Instant::now() + WAIT_MAX;
        while self.evaluate(script, vec![Value::String(css.to_string())]).await != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {css} to click");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `script` until it returns `true`; panics with `what` after `WAIT_MAX`.
    pub async fn wait_for_script(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            if self.client.execute(script, Vec::new()).await.ok() == Some(Value::Bool(true)) {
                return;
            }
            if Instant::now() >= deadline {
                let text = self
                    .evaluate("return document.body ? document.body.innerText.slice(0, 2000) : ''", Vec::new())
                    .await;
                panic!("timed out waiting for {what}; page text:\n{}", text.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `target/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        // Let the entry animations finish so that the picture shows the settled page.
        tokio::time::sleep(SCREENSHOT_SETTLE).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let directory = screenshot_directory();
        std::fs::create_dir_all(&directory).expect("screenshot directory");
        let path = directory.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the WebDriver session (the browser exits).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The rows the page draws, read from the DOM: per row its node id, role, commit index, state
/// machine (`x=2 y=1`, empty before anything applied) and entries as `[index, term, committed, summary]`.
pub const READ_ROWS_SCRIPT: &str = r#"
return [...document.querySelectorAll('#cluster .node-row')].map((row) => ({
  node: row.dataset.node,
  name: row.dataset.name,
  role: row.dataset.role,
  commit: Number(row.dataset.commit),
  state: (row.querySelector('.node-state') || { dataset: { state: '' } }).dataset.state,
  entries: [...row.querySelectorAll('.entry')].map((box) =>
    [Number(box.dataset.index), Number(box.dataset.term), box.dataset.committed === 'true', box.dataset.summary]),
}));
"#;
