//! Unit tests of the live dashboard's chart maths (`assets/charts.js`), run in the same
//! headless Chromium as the other browser tests: the page `/dashboard/metrics-relay`,
//! opened outside a frame, loads `charts.js` and does nothing else, so each test calls
//! the `LiveCharts` functions on hand-made samples and checks the figures they derive.

mod support;

use serde_json::{json, Value};
use support::Browser;

/// Serves the dashboard's routes on a free loopback port; returns the page's address.
async fn start_dashboard_routes() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        axum::serve(listener, dashboard::dashboard_router()).await.expect("serve the dashboard routes");
    });
    (format!("http://{address}/dashboard/metrics-relay"), server)
}

/// A member as the page's samples hold it.
fn member(id: u64, role: &str, term: u64, commit: u64, applied: u64) -> Value {
    json!({
        "id": id, "name": format!("node-{id}"), "live": true,
        "state": { "role": role, "term": term, "commit": commit, "applied": applied, "last_index": commit, "progress": [] },
    })
}

fn number(value: &Value, what: &str) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {value}"))
}

async fn check_histogram_quantile(browser: &Browser) {
    let before = json!({ "buckets": [[0.001, 0], [0.002, 0], [0.004, 0], ["Infinity", 0]] });
    let after = json!({ "buckets": [[0.001, 50], [0.002, 90], [0.004, 100], ["Infinity", 100]] });
    let script = "const fix = (h) => h && { buckets: h.buckets.map(([b, c]) => [Number(b), c]) }; \
                  return LiveCharts.histogramQuantile(fix(arguments[0]), fix(arguments[1]), arguments[2]);";
    // Rank 99 of 100 falls in (2 ms, 4 ms], 9 of its 10 observations in: 2 + 2 × 0.9 ms.
    let p99 = number(&browser.evaluate(script, vec![before.clone(), after.clone(), json!(0.99)]).await, "p99");
    assert!((p99 - 0.0038).abs() < 1e-9, "p99 interpolated in its bucket: {p99}");
    let p50 = number(&browser.evaluate(script, vec![before.clone(), after.clone(), json!(0.5)]).await, "p50");
    assert!((p50 - 0.001).abs() < 1e-9, "p50 at the first bucket's bound: {p50}");
    let nothing = browser.evaluate(script, vec![after.clone(), after.clone(), json!(0.99)]).await;
    assert_eq!(nothing, Value::Null, "no observation between two equal histograms: no point");
    let beyond = json!({ "buckets": [[0.001, 50], [0.002, 90], [0.004, 90], ["Infinity", 100]] });
    let overflow = number(&browser.evaluate(script, vec![before, beyond, json!(0.99)]).await, "overflow");
    assert!((overflow - 0.004).abs() < 1e-9, "a quantile in the +Inf bucket is its lower bound: {overflow}");
}

async fn check_prometheus_parsing(browser: &Browser) {
    let text = "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
                etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 7\n\
                etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 5\n\
                etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 3\n\
                etcd_disk_wal_fsync_duration_seconds_sum 0.01\n";
    let script = "const h = LiveCharts.parseFsyncHistogram(arguments[0]); \
                  return h.buckets.map(([bound, count]) => [String(bound), count]);";
    let buckets = browser.evaluate(script, vec![json!(text)]).await;
    assert_eq!(buckets, json!([["0.001", 3], ["0.002", 5], ["Infinity", 7]]), "sorted by bound, +Inf last");
    let absent = browser.evaluate("return LiveCharts.parseFsyncHistogram('up 1\\n');", Vec::new()).await;
    assert_eq!(absent, Value::Null, "no histogram in the text: null");
}

async fn check_ring_buffer(browser: &Browser) {
    let script = "const ring = new LiveCharts.RingBuffer(3); for (let i = 1; i <= 5; i++) ring.push(i); \
                  return [ring.length, ring.at(0), ring.at(2), ring.at(3) === undefined, ring.toArray()];";
    let value = browser.evaluate(script, Vec::new()).await;
    assert_eq!(value, json!([3, 3, 5, true, [3, 4, 5]]), "the oldest items are overwritten first");
}

/// Three samples a second apart: node-1 leads term 2, then node-2 leads term 3.
fn leader_change_samples() -> Value {
    json!([
        { "time": 0, "members": [member(1, "leader", 2, 10, 10), member(2, "follower", 2, 10, 8)] },
        { "time": 1000, "members": [member(1, "leader", 2, 20, 20), member(2, "follower", 2, 20, 20)] },
        { "time": 2000, "members": [member(1, "follower", 3, 40, 40), member(2, "leader", 3, 40, 35)] },
    ])
}

async fn check_leader_changes(browser: &Browser) {
    let script = "return LiveCharts.leaderChanges(arguments[0]);";
    let changes = browser.evaluate(script, vec![leader_change_samples()]).await;
    let expected = json!([{ "position": 2, "time": 2000, "name": "node-2", "term": 3, "previousPosition": 1 }]);
    assert_eq!(changes, expected, "one change, to node-2 in term 3, after sample 1");
}

async fn check_rendered_charts(browser: &Browser) {
    let script = "const box = document.createElement('div'); document.body.append(box); \
                  LiveCharts.render(box, arguments[0], [1, 2], 1500); \
                  const series = (chart) => [...box.querySelectorAll(`[data-chart=\"${chart}\"] polyline.series`)] \
                      .map((line) => [line.dataset.series, Number(line.dataset.points), Number(line.dataset.max)]); \
                  return { charts: box.querySelectorAll('svg.chart').length, \
                           commit: series('commit-rate'), lag: series('apply-lag'), \
                           changes: box.querySelectorAll('[data-chart=\"commit-rate\"] .leader-change').length, \
                           cursors: box.querySelectorAll('.rewind-cursor').length };";
    let drawn = browser.evaluate(script, vec![leader_change_samples()]).await;
    assert_eq!(drawn["charts"], json!(4), "commit rate, apply lag, fsync p99, follower lag");
    // Commits 10 → 20 → 40 one second apart: 10 and 20 entries per second.
    assert_eq!(drawn["commit"], json!([["cluster", 2, 20]]), "commit rate between samples");
    // node-2's commit − applied: 2, 0, 5.
    assert_eq!(drawn["lag"], json!([["node-1", 3, 0], ["node-2", 3, 5]]), "apply lag per member");
    assert_eq!(drawn["changes"], json!(1), "the leader change is marked");
    assert_eq!(drawn["cursors"], json!(4), "the rewind cursor is drawn on every chart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_maths_derive_the_expected_figures() {
    if !support::browser_available() {
        return;
    }
    let (page, server) = start_dashboard_routes().await;
    let browser = Browser::start().await;
    browser.client.goto(&page).await.expect("load the page with charts.js");
    browser.wait_for_script("charts.js to load", "return typeof LiveCharts === 'object'").await;
    check_histogram_quantile(&browser).await;
    check_prometheus_parsing(&browser).await;
    check_ring_buffer(&browser).await;
    check_leader_changes(&browser).await;
    check_rendered_charts(&browser).await;
    browser.close().await;
    server.abort();
}
