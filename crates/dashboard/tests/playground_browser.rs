//! The playground in a real browser (headless chromium over WebDriver): run the figure-7
//! preset to the end through the page's own buttons and check, on the DOM, that every
//! node row shows the leader's log, committed.

mod support;

use dashboard::playground::SessionStart;
use serde_json::Value;
use support::{Browser, READ_ROWS_SCRIPT};

/// Most clicks on "next step" before the test gives up (the preset has fewer steps).
const PRESET_CLICKS_MAX: usize = 64;
/// The preset step whose screenshot shows messages in flight (the probes after the election).
const SCREENSHOT_STEP: u64 = 3;

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

/// Clicks "next step" until the preset is finished; screenshots the step `SCREENSHOT_STEP`.
async fn run_preset_to_the_end(browser: &Browser) {
    for _ in 0..PRESET_CLICKS_MAX {
        if finished(browser).await {
            return;
        }
        let before = step_number(browser).await;
        browser.click("#next").await;
        let condition = format!("return Number(document.body.dataset.step) > {before}");
        browser.wait_for_script("the next preset step", &condition).await;
        if before + 1 == SCREENSHOT_STEP {
            browser.screenshot("playground-figure7-probes").await;
        }
    }
    panic!("the preset did not finish after {PRESET_CLICKS_MAX} clicks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figure7_preset_ends_with_every_row_showing_the_leaders_log() {
    if !support::browser_available() {
        return;
    }
    let (base, server) = start_playground().await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("{base}/playground?preset=figure7&lang=en")).await.expect("load the playground");
    browser.wait_for_script("the page to load the preset", "return document.body.dataset.ready === 'true'").await;
    let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
    assert_eq!(rows.as_array().map(Vec::len), Some(7), "seven rows: the leader and (a)-(f)");

    run_preset_to_the_end(&browser).await;
    let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
    let rows = rows.as_array().expect("rows");
    let leaders: Vec<&Value> = rows.iter().filter(|row| row["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "one leader row: {rows:?}");
    let index_and_term = |row: &Value| -> Vec<(u64, u64)> {
        let entries = row["entries"].as_array().expect("entries");
        entries.iter().map(|entry| (entry[0].as_u64().unwrap_or(0), entry[1].as_u64().unwrap_or(0))).collect()
    };
    let leader_log = index_and_term(leaders[0]);
    let expected_terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8];
    assert_eq!(leader_log.iter().map(|(_, term)| *term).collect::<Vec<_>>(), expected_terms, "the term-8 leader's log");
    for row in rows {
        assert_eq!(index_and_term(row), leader_log, "row {} shows the leader's log", row["name"]);
        let entries = row["entries"].as_array().expect("entries");
        assert!(entries.iter().all(|entry| entry[2] == Value::Bool(true)), "row {} is all committed", row["name"]);
        assert_eq!(row["commit"], 11, "row {}", row["name"]);
    }
    browser.screenshot("playground-figure7-end").await;

    browser.click("#lang-zh").await;
    browser
        .wait_for_script(
            "the Chinese narration",
            "return /日志/.test(document.getElementById('narration').textContent)",
        )
        .await;
    browser.close().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_play_elects_a_leader_delivers_a_message_and_rewinds() {
    if !support::browser_available() {
        return;
    }
    let (base, server) = start_playground().await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("{base}/playground?nodes=3&seed=5")).await.expect("load the playground");
    browser.wait_for_script("the page", "return document.body.dataset.ready === 'true'").await;
    browser.click("#run").await;
    let has_leader = "return document.querySelectorAll('#cluster .node-row[data-role=leader]').length === 1";
    browser.wait_for_script("a leader elected in real time", has_leader).await;
    browser.click("#run").await;
    browser
        .wait_for_script("the run to pause", "return document.getElementById('run').textContent === 'run in real time'")
        .await;

    let leader_row = "#cluster .node-row[data-role=leader] [data-action=request]";
    browser.click(leader_row).await;
    browser
        .wait_for_script(
            "the request's messages",
            "return document.querySelectorAll('#messages li[data-message]').length > 0",
        )
        .await;
    let step = step_number(&browser).await;
    let first_message = "#messages li[data-message] button";
    browser.click(first_message).await;
    browser
        .wait_for_script("the delivery", &format!("return Number(document.body.dataset.step) === {}", step + 1))
        .await;

    let uncommitted = "return document.querySelectorAll('#cluster .entry.uncommitted').length > 0";
    browser.wait_for_script("an uncommitted entry", uncommitted).await;
    browser.click("#rewind-one").await;
    browser.wait_for_script("the rewind", &format!("return Number(document.body.dataset.step) === {step}")).await;
    browser.close().await;
    server.abort();
}
