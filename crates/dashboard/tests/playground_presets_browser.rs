//! The question presets in a real browser (headless chromium over WebDriver): each preset is
//! run to its end through the page's "next step" button, and its final state is checked on
//! the DOM (every row shows the same log, committed, and the state machine the preset says).
//! A screenshot of each preset's key step and of its end goes to target/screenshots.

mod support;

use dashboard::playground::SessionStart;
use serde_json::Value;
use support::{Browser, READ_ROWS_SCRIPT};

/// Most clicks on "next step" before the test gives up (every preset has fewer steps).
const PRESET_CLICKS_MAX: usize = 64;

/// What one preset must show at its end.
struct Expected {
    name: &'static str,
    /// The step after which the key screenshot is taken.
    key_step: u64,
    /// Node count.
    rows: usize,
    /// The leader's name.
    leader: &'static str,
    /// Terms of every row's log, index 1 first.
    terms: &'static [u64],
    /// State machine shown on every row (empty: nothing but no-ops applied).
    state: &'static str,
}

const EXPECTED: [Expected; 4] = [
    Expected { name: "crash_after_commit", key_step: 6, rows: 3, leader: "S2", terms: &[2, 2, 4], state: "x=1" },
    Expected {
        name: "minority_entry",
        key_step: 9,
        rows: 5,
        leader: "S3",
        terms: &[2, 2, 3, 3, 3, 4, 4],
        state: "x=2 y=1",
    },
    Expected { name: "figure8", key_step: 3, rows: 5, leader: "S5", terms: &[1, 3, 5], state: "" },
    Expected { name: "election_restriction", key_step: 5, rows: 5, leader: "S3", terms: &[2, 3, 5], state: "" },
];

async fn start_playground() -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(dashboard::serve_playground(listener, SessionStart::default()));
    (format!("http://{address}"), server)
}

async fn step_number(browser: &Browser) -> u64 {
    let value = browser.evaluate("return Number(document.body.dataset.step)", Vec::new()).await;
    value.as_u64().expect("step number")
}

async fn finished(browser: &Browser) -> bool {
    browser.evaluate("return document.body.dataset.finished === 'true'", Vec::new()).await == Value::Bool(true)
}

/// Clicks "next step" until the preset is finished; screenshots the key step.
async fn run_to_the_end(browser: &Browser, expected: &Expected) {
    for _ in 0..PRESET_CLICKS_MAX {
        if finished(browser).await {
            return;
        }
        let before = step_number(browser).await;
        browser.click("#next").await;
        let condition = format!("return Number(document.body.dataset.step) > {before}");
        browser.wait_for_script("the next preset step", &condition).await;
        if before + 1 == expected.key_step {
            browser.screenshot(&format!("playground-{}-key", expected.name)).await;
        }
    }
    panic!("{} did not finish after {PRESET_CLICKS_MAX} clicks", expected.name);
}

fn check_final_rows(rows: &Value, expected: &Expected) {
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), expected.rows, "{}: one row per server", expected.name);
    let leaders: Vec<&Value> = rows.iter().filter(|row| row["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{}: one leader row: {rows:?}", expected.name);
    assert_eq!(leaders[0]["name"], expected.leader, "{}", expected.name);
    let last_index = expected.terms.len() as u64;
    for row in rows {
        let entries = row["entries"].as_array().expect("entries");
        let indexes_and_terms: Vec<(u64, u64)> =
            entries.iter().map(|entry| (entry[0].as_u64().unwrap_or(0), entry[1].as_u64().unwrap_or(0))).collect();
        let wanted: Vec<(u64, u64)> = (1..).zip(expected.terms.iter().copied()).collect();
        assert_eq!(indexes_and_terms, wanted, "{}: row {} shows the leader's log", expected.name, row["name"]);
        assert!(
            entries.iter().all(|entry| entry[2] == Value::Bool(true)),
            "{}: row {} committed",
            expected.name,
            row["name"]
        );
        assert_eq!(row["commit"], last_index, "{}: row {}", expected.name, row["name"]);
        assert_eq!(row["state"], expected.state, "{}: row {} state machine", expected.name, row["name"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_question_preset_ends_in_its_checked_state() {
    if !support::browser_available() {
        return;
    }
    let (base, server) = start_playground().await;
    let browser = Browser::start().await;
    for expected in &EXPECTED {
        let language = if expected.name == "minority_entry" { "zh" } else { "en" };
        let address = format!("{base}/playground?preset={}&lang={language}", expected.name);
        browser.client.goto(&address).await.expect("load the playground");
        browser.wait_for_script("the page to load the preset", "return document.body.dataset.ready === 'true'").await;
        run_to_the_end(&browser, expected).await;
        let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
        check_final_rows(&rows, expected);
        let narration = browser.evaluate("return document.getElementById('narration').textContent", Vec::new()).await;
        let narration = narration.as_str().unwrap_or_default().to_string();
        assert!(!narration.is_empty(), "{}: the last step is narrated", expected.name);
        if language == "zh" {
            assert!(narration.contains("节点"), "{}: the Chinese narration: {narration}", expected.name);
        }
        browser.screenshot(&format!("playground-{}-end", expected.name)).await;
    }
    browser.close().await;
    server.abort();
}
