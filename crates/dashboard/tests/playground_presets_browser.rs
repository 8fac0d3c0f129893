//! The question presets in a real browser (headless chromium over WebDriver): each preset is
//! run to its end through the page's "next step" button, and its final state is checked on
//! the DOM (every row shows the same log, committed, and the state machine the preset says;
//! presets 5-9 also check their key step and end on the page: round-trip counters, the
//! snapshot, the forwarded proposal and the redirect, the reads, the configuration).
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
    /// First index every row's log shows (above a snapshot: the index after it).
    first_index: u64,
    /// Terms of every row's log, `first_index` first.
    terms: &'static [u64],
    /// State machine shown on every row (empty: nothing but no-ops applied).
    state: &'static str,
    /// A script (a function body returning true or false) checked on the DOM at the key step.
    key_check: &'static str,
    /// A script checked on the DOM at the end.
    end_check: &'static str,
}

/// No check beyond the rows.
const NO_CHECK: &str = "return true";

/// A link's AppendEntries and rejection counters as the round-trip table shows them.
macro_rules! round_trips_are {
    ($link:literal, $appends:literal, $rejects:literal) => {
        concat!(
            "const row = document.querySelector('#round-trips:not([hidden]) tr[data-link=\"",
            $link,
            "\"]'); return !!row && row.dataset.appends === '",
            $appends,
            "' && row.dataset.rejects === '",
            $rejects,
            "'"
        )
    };
}

const EXPECTED: [Expected; 9] = [
    Expected {
        name: "crash_after_commit",
        key_step: 6,
        rows: 3,
        leader: "S2",
        first_index: 1,
        terms: &[2, 2, 4],
        state: "x=1",
        key_check: NO_CHECK,
        end_check: NO_CHECK,
    },
    Expected {
        name: "minority_entry",
        key_step: 9,
        rows: 5,
        leader: "S3",
        first_index: 1,
        terms: &[2, 2, 3, 3, 3, 4, 4],
        state: "x=2 y=1",
        key_check: NO_CHECK,
        end_check: NO_CHECK,
    },
    Expected {
        name: "figure8",
        key_step: 3,
        rows: 5,
        leader: "S5",
        first_index: 1,
        terms: &[1, 3, 5],
        state: "",
        key_check: NO_CHECK,
        end_check: NO_CHECK,
    },
    Expected {
        name: "election_restriction",
        key_step: 5,
        rows: 5,
        leader: "S3",
        first_index: 1,
        terms: &[2, 3, 5],
        state: "",
        key_check: NO_CHECK,
        end_check: NO_CHECK,
    },
    Expected {
        name: "conflict_hint",
        key_step: 5,
        rows: 5,
        leader: "S1",
        first_index: 1,
        terms: &[1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 5],
        state: "",
        key_check: round_trips_are!("1-2", "4", "3"),
        end_check: concat!(
            "return [(() => { ",
            round_trips_are!("1-2", "8", "7"),
            " })(), (() => { ",
            round_trips_are!("1-3", "2", "1"),
            " })()].every((holds) => holds)"
        ),
    },
    Expected {
        name: "snapshot_catch_up",
        key_step: 5,
        rows: 3,
        leader: "S1",
        first_index: 6,
        terms: &[2],
        state: "a=1 b=2 c=3 d=4 e=5",
        key_check: "return [...document.querySelectorAll('#messages li')].some((item) => \
                    item.textContent.includes('S1→S3 installsnapshot'))",
        end_check: "return [...document.querySelectorAll('#cluster .node-row')].every((row) => \
                    (row.querySelector('.node-snapshot') || { dataset: {} }).dataset.snapshot === '5')",
    },
    Expected {
        name: "follower_forwarding",
        key_step: 2,
        rows: 3,
        leader: "S1",
        first_index: 1,
        terms: &[2, 2, 2],
        state: "x=1 y=2",
        key_check: "return [...document.querySelectorAll('#messages li')].some((item) => \
                    item.textContent.includes('S2→S1 propose'))",
        end_check: "return document.getElementById('events').textContent.includes('not the leader, send it to S1')",
    },
    Expected {
        name: "follower_reads",
        key_step: 4,
        rows: 3,
        leader: "S1",
        first_index: 1,
        terms: &[2, 2, 2],
        state: "x=2",
        key_check: "return [...document.querySelectorAll('#cluster .node-row[data-node=\"2\"] .node-read.waiting')] \
                    .some((line) => line.dataset.read.includes('read index 3'))",
        end_check: "const reads = [...document.querySelectorAll('#cluster .node-row[data-node=\"2\"] .node-read')] \
                    .map((line) => line.dataset.read); \
                    return reads.includes('local read x = 1 (applied 2)') \
                    && reads[reads.length - 1] === 'linearizable read x = 2 (read index 3)'",
    },
    Expected {
        name: "joint_consensus",
        key_step: 5,
        rows: 5,
        leader: "S2",
        first_index: 1,
        terms: &[2, 2, 2, 2, 2, 3, 3],
        state: "x=1",
        key_check: "const row = document.querySelector('#cluster .node-row[data-node=\"2\"] .node-membership'); \
                    return !!row && row.dataset.outgoing === '1,2,3' && row.dataset.voters === '1,2,3,4,5'",
        end_check: "const rows = [...document.querySelectorAll('#cluster .node-row .node-membership')]; \
                    return rows.length === 5 && rows.every((row) => row.dataset.voters === '1,2,3,4,5' \
                    && row.dataset.outgoing === '' && row.dataset.learners === '')",
    },
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
            let what = format!("{} at its key step {}", expected.name, expected.key_step);
            assert_eq!(browser.evaluate(expected.key_check, Vec::new()).await, Value::Bool(true), "{what}");
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
    let last_index = expected.first_index + expected.terms.len() as u64 - 1;
    for row in rows {
        let entries = row["entries"].as_array().expect("entries");
        let indexes_and_terms: Vec<(u64, u64)> =
            entries.iter().map(|entry| (entry[0].as_u64().unwrap_or(0), entry[1].as_u64().unwrap_or(0))).collect();
        let wanted: Vec<(u64, u64)> = (expected.first_index..).zip(expected.terms.iter().copied()).collect();
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
        let chinese = ["minority_entry", "snapshot_catch_up", "joint_consensus"].contains(&expected.name);
        let language = if chinese { "zh" } else { "en" };
        let address = format!("{base}/playground?preset={}&lang={language}", expected.name);
        browser.client.goto(&address).await.expect("load the playground");
        browser.wait_for_script("the page to load the preset", "return document.body.dataset.ready === 'true'").await;
        run_to_the_end(&browser, expected).await;
        let rows = browser.evaluate(READ_ROWS_SCRIPT, Vec::new()).await;
        check_final_rows(&rows, expected);
        let end_check = browser.evaluate(expected.end_check, Vec::new()).await;
        assert_eq!(end_check, Value::Bool(true), "{}: the end check {}", expected.name, expected.end_check);
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
