//! etcd's JSON/HTTP gateway on the client URLs, driven with curl (as the scripts that use
//! it do) against raftkv and a real etcd 3.4, comparing the answers.
//!
//! Each test sends the same requests, in the same order, to a fresh one-member raftkv and
//! a fresh one-member etcd, and compares status codes and JSON bodies after replacing
//! values that differ by design (cluster and member ids, terms, raft indexes, sizes,
//! versions, tokens, URLs) with placeholders. Revisions, keys, values, lease ids (chosen by
//! the requests) and error codes and messages must be equal.
//!
//! Needs `curl` (Debian's package `curl`).

mod common;

use std::process::Stdio;

use common::{run_bounded, Cluster, WAIT_MAX};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Values replaced by a placeholder before comparing: ids, terms, indexes, sizes,
/// versions, tokens and URLs that legitimately differ between two servers.
const VARYING_KEYS: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "leader",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "version",
    "token",
    "peerURLs",
    "clientURLs",
];

/// An HTTP answer: status and body.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("answer is not JSON ({error}): {:?}", self.body))
    }

    /// The body's JSON objects, one per line (a streaming answer).
    fn json_lines(&self) -> Vec<Value> {
        let mut values = Vec::new();
        for value in serde_json::Deserializer::from_str(&self.body).into_iter::<Value>() {
            values.push(value.unwrap_or_else(|error| panic!("stream is not JSON ({error}): {:?}", self.body)));
        }
        values
    }
}

/// Replaces [`VARYING_KEYS`] (and `extra_keys`) with `"<varies>"`, at any depth.
fn normalize(value: &mut Value, extra_keys: &[&str]) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if VARYING_KEYS.contains(&key.as_str()) || extra_keys.contains(&key.as_str()) {
                    *item = Value::from("<varies>");
                } else {
                    normalize(item, extra_keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| normalize(item, extra_keys)),
        _ => {}
    }
}

/// One member's gateway, reached with curl.
struct Gateway {
    base: String,
}

impl Gateway {
    fn of(cluster: &Cluster) -> Gateway {
        Gateway { base: cluster.client_urls()[0].clone() }
    }

    /// `curl -X method base+path` with `body` and `headers`.
    async fn request(&self, method: &str, path: &str, body: &str, headers: &[String]) -> Answer {
        let mut arguments: Vec<String> =
            ["-s", "-S", "-X", method, "-w", "\n%{http_code}", "--max-time", "20"].map(String::from).to_vec();
        if !body.is_empty() {
            arguments.extend(["--data-binary".to_string(), "@-".to_string()]);
        }
        for header in headers {
            arguments.extend(["-H".to_string(), header.clone()]);
        }
        arguments.push(format!("{}{path}", self.base));
        let output = run_bounded("curl", &arguments, &[], body).await;
        assert_eq!(output.code, 0, "curl {arguments:?} failed: {}", output.stderr);
        let (body, status) = output.stdout.rsplit_once('\n').expect("curl printed the status after the body");
        Answer { status: status.trim().parse().expect("an HTTP status"), body: body.to_string() }
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        self.request("POST", path, body, &[]).await
    }

    async fn post_with_token(&self, path: &str, body: &str, token: &str) -> Answer {
        self.request("POST", path, body, &[format!("Authorization: {token}")]).await
    }

    /// Opens a streaming call (`curl -N`); its lines are read with [`Stream::next_json`].
    fn open_stream(&self, path: &str, body: &str) -> Stream {
        let mut child = tokio::process::Command::new("curl")
            .args(["-s", "-N", "--max-time", "30", "--data-binary", body])
            .arg(format!("{}{path}", self.base))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start curl");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Stream { _child: child, lines }
    }
}

/// A streaming answer being read.
struct Stream {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Stream {
    async fn next_json(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT_MAX, self.lines.next_line())
            .await
            .expect("a streamed line within the wait limit")
            .expect("read the stream")
            .expect("the stream is still open");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("streamed line is not JSON ({error}): {line}"))
    }
}

/// Collects the differences between etcd's and raftkv's answers, to report them all.
#[derive(Default)]
struct Comparison {
    differences: Vec<String>,
}

impl Comparison {
    /// Compares two JSON values after [`normalize`] with `extra_keys`.
    fn values(&mut self, label: &str, mut etcd: Value, mut raftkv: Value, extra_keys: &[&str]) {
        normalize(&mut etcd, extra_keys);
        normalize(&mut raftkv, extra_keys);
        if etcd != raftkv {
            self.differences.push(format!("{label}:\n  etcd:   {etcd}\n  raftkv: {raftkv}"));
        }
    }

    /// Compares status and JSON body.
    fn answers(&mut self, label: &str, etcd: &Answer, raftkv: &Answer, extra_keys: &[&str]) {
        if etcd.status != raftkv.status {
            self.differences.push(format!(
                "{label}: status etcd {} raftkv {} (bodies {} / {})",
                etcd.status, raftkv.status, etcd.body, raftkv.body
            ));
        }
        self.values(label, etcd.json(), raftkv.json(), extra_keys);
    }

    fn assert_none(&self) {
        assert!(self.differences.is_empty(), "raftkv's gateway differs from etcd's:\n{}", self.differences.join("\n"));
    }
}

/// Both servers, fresh, one member each.
async fn start_both() -> (Cluster, Cluster) {
    let etcd = Cluster::start_etcd(1).await;
    let raftkv = Cluster::start_raftkv(1).await;
    (etcd, raftkv)
}

/// Sends `(path, body)` to both and compares the answers.
async fn compare_all(comparison: &mut Comparison, etcd: &Gateway, raftkv: &Gateway, requests: &[(&str, &str)]) {
    for (path, body) in requests {
        let expected = etcd.post(path, body).await;
        let actual = raftkv.post(path, body).await;
        comparison.answers(&format!("POST {path} {body}"), &expected, &actual, &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_calls_answer_as_etcd_does() {
    let (etcd_cluster, raftkv_cluster) = start_both().await;
    let (etcd, raftkv) = (Gateway::of(&etcd_cluster), Gateway::of(&raftkv_cluster));
    let mut comparison = Comparison::default();
    // "foo"=Zm9v "bar"=YmFy "baz"=YmF6 "fop"=Zm9w "food"=Zm9vZA== "a"=YQ==
    let requests = [
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        ("/v3/kv/put", r#"{"key":"Zm9vZA==","value":"YmF6","prev_kv":true}"#),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6","prevKv":true}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":"DESCEND","limit":"1"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","rangeEnd":"Zm9w","keysOnly":true,"sortTarget":"MOD","sortOrder":2}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w","count_only":true}"#),
        ("/v3/kv/range", r#"{"key":"YQ=="}"#),
        ("/v3beta/kv/range", r#"{"key":"Zm9v","revision":2}"#),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"target":"VALUE","key":"Zm9v","value":"YmF6"}],
                "success":[{"request_put":{"key":"Zm9v","value":"YmFy"}},{"request_range":{"key":"Zm9v"}}],
                "failure":[{"request_delete_range":{"key":"Zm9v"}}]}"#,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"target":"CREATE","key":"YQ==","createRevision":"0","result":"GREATER"}],
                "success":[{"requestPut":{"key":"YQ==","value":"YQ=="}}],
                "failure":[{"requestRange":{"key":"Zm9v","keys_only":true}}]}"#,
        ),
        ("/v3/kv/deleterange", r#"{"key":"Zm9vZA==","prev_kv":true}"#),
        ("/v3/kv/deleterange", r#"{"key":"Zm9vZA=="}"#),
        ("/v3/kv/compaction", r#"{"revision":"3"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#),
        ("/v3/kv/range", r#"{}"#),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy","lease":"999"}"#),
        ("/v3/kv/range", r#"{"key":"Zm9v","serializable":true}"#),
    ];
    compare_all(&mut comparison, &etcd, &raftkv, &requests).await;
    comparison.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused_naming_the_field_and_nothing_is_written() {
    let (etcd_cluster, raftkv_cluster) = start_both().await;
    let (etcd, raftkv) = (Gateway::of(&etcd_cluster), Gateway::of(&raftkv_cluster));
    let mut comparison = Comparison::default();
    let malformed = [
        (r#"{"key":"Zm9v","value":"YmFy","lease":"soon"}"#, "field \"lease\""),
        (r#"{"key":"Zm9v","value":"not base64!"}"#, "field \"value\""),
        (r#"{"key":"Zm9v","value":"YmFy""#, "malformed request body"),
    ];
    for (body, field) in malformed {
        let expected = etcd.post("/v3/kv/put", body).await;
        let actual = raftkv.post("/v3/kv/put", body).await;
        // Messages differ (etcd prints Go's JSON error); status, code and shape do not.
        comparison.answers(&format!("malformed put {body}"), &expected, &actual, &["error", "message"]);
        let message = actual.json()["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(actual.json()["error"].as_str(), Some(message.as_str()), "{}", actual.body);
        assert!(message.contains(field), "the error names the field ({field}): {message}");
    }
    compare_all(&mut comparison, &etcd, &raftkv, &[("/v3/kv/range", r#"{"key":"Zm9v"}"#)]).await;
    let range = raftkv.post("/v3/kv/range", r#"{"key":"Zm9v"}"#).await.json();
    assert!(range.get("kvs").is_none() && range["header"]["revision"] == "1", "nothing was written: {range}");
    // Unknown fields are ignored and an empty body is an empty request, as in etcd.
    compare_all(
        &mut comparison,
        &etcd,
        &raftkv,
        &[("/v3/kv/range", r#"{"key":"Zm9v","no_such_field":[1]}"#), ("/v3/kv/range", "")],
    )
    .await;
    comparison.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_events_as_etcd_does() {
    let (etcd_cluster, raftkv_cluster) = start_both().await;
    let mut comparison = Comparison::default();
    let mut lines = Vec::new();
    for cluster in [&etcd_cluster, &raftkv_cluster] {
        let gateway = Gateway::of(cluster);
        gateway.post("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
        let mut stream = gateway.open_stream("/v3/watch", r#"{"create_request":{"key":"Zm9v","prev_kv":true}}"#);
        let created = stream.next_json().await;
        gateway.post("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6"}"#).await;
        gateway.post("/v3/kv/deleterange", r#"{"key":"Zm9v"}"#).await;
        let put = stream.next_json().await;
        let deleted = stream.next_json().await;
        let mut history = gateway.open_stream("/v3/watch", r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}"#);
        let history_created = history.next_json().await;
        let history_events = history.next_json().await;
        lines.push([created, put, deleted, history_created, history_events]);
    }
    let labels = ["created", "put event", "delete event", "created from revision 1", "history"];
    let raftkv_lines = lines.pop().expect("raftkv's lines");
    let etcd_lines = lines.pop().expect("etcd's lines");
    for ((label, etcd), raftkv) in labels.iter().zip(etcd_lines).zip(raftkv_lines) {
        comparison.values(label, etcd, raftkv, &[]);
    }
    comparison.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_answer_as_etcd_does() {
    let (etcd_cluster, raftkv_cluster) = start_both().await;
    let (etcd, raftkv) = (Gateway::of(&etcd_cluster), Gateway::of(&raftkv_cluster));
    let mut comparison = Comparison::default();
    let requests = [
        ("/v3/lease/grant", r#"{"TTL":60,"ID":1234}"#),
        ("/v3/lease/grant", r#"{"TTL":"120","ID":"5678"}"#),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy","lease":"1234"}"#),
        ("/v3/lease/leases", "{}"),
        ("/v3/kv/lease/leases", "{}"),
        ("/v3/lease/timetolive", r#"{"ID":999}"#),
        ("/v3/lease/revoke", r#"{"ID":"5678"}"#),
        ("/v3/kv/lease/revoke", r#"{"ID":"5678"}"#),
        ("/v3/lease/grant", r#"{"TTL":60,"ID":1234}"#),
    ];
    compare_all(&mut comparison, &etcd, &raftkv, &requests).await;
    // The remaining TTL depends on timing: compare the rest, check the TTL's range.
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let body = r#"{"ID":1234,"keys":true}"#;
        let (expected, actual) = (etcd.post(path, body).await, raftkv.post(path, body).await);
        comparison.answers(&format!("POST {path} {body}"), &expected, &actual, &["TTL"]);
        let ttl: i64 = actual.json()["TTL"].as_str().expect("TTL as a string").parse().expect("a number");
        assert!((1..=60).contains(&ttl), "remaining TTL {ttl}");
    }
    let keep_alive = r#"{"ID":"1234"}"#;
    let (expected, actual) =
        (etcd.post("/v3/lease/keepalive", keep_alive).await, raftkv.post("/v3/lease/keepalive", keep_alive).await);
    assert_eq!((expected.status, actual.status), (200, 200), "{} / {}", expected.body, actual.body);
    let (expected_lines, actual_lines) = (expected.json_lines(), actual.json_lines());
    assert_eq!(actual_lines.len(), 1, "one keep-alive answer: {}", actual.body);
    for (etcd_line, raftkv_line) in expected_lines.into_iter().zip(actual_lines) {
        comparison.values("keep-alive", etcd_line, raftkv_line, &[]);
    }
    comparison.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_through_the_authorization_header_as_etcd_does() {
    let (etcd_cluster, raftkv_cluster) = start_both().await;
    let (etcd, raftkv) = (Gateway::of(&etcd_cluster), Gateway::of(&raftkv_cluster));
    let mut comparison = Comparison::default();
    let setup = [
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        ("/v3/auth/user/add", r#"{"name":"root","password":"rootpw"}"#),
        ("/v3/auth/role/add", r#"{"name":"root"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/user/add", r#"{"name":"reader","password":"readpw"}"#),
        ("/v3/auth/role/add", r#"{"name":"reading"}"#),
        ("/v3/auth/role/grant", r#"{"name":"reading","perm":{"key":"Zm9v","permType":"READ"}}"#),
        ("/v3/auth/user/grant", r#"{"user":"reader","role":"reading"}"#),
        ("/v3/auth/user/get", r#"{"name":"reader"}"#),
        ("/v3/auth/role/get", r#"{"role":"reading"}"#),
        ("/v3/auth/user/list", "{}"),
        ("/v3/auth/role/list", "{}"),
        ("/v3/auth/enable", "{}"),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("/v3/auth/authenticate", r#"{"name":"root","password":"wrong"}"#),
    ];
    compare_all(&mut comparison, &etcd, &raftkv, &setup).await;
    let mut tokens = Vec::new();
    for (gateway, label) in [(&etcd, "etcd"), (&raftkv, "raftkv")] {
        let answer = gateway.post("/v3/auth/authenticate", r#"{"name":"root","password":"rootpw"}"#).await;
        let reader = gateway.post("/v3/auth/authenticate", r#"{"name":"reader","password":"readpw"}"#).await;
        let token = |answer: &Answer| answer.json()["token"].as_str().map(str::to_string);
        let root = token(&answer).unwrap_or_else(|| panic!("{label} gave root no token: {}", answer.body));
        let reader = token(&reader).unwrap_or_else(|| panic!("{label} gave reader no token: {}", reader.body));
        tokens.push((root, reader));
    }
    let calls = [
        ("root", "/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("reader", "/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("reader", "/v3/kv/put", r#"{"key":"Zm9v","value":"eA=="}"#),
        ("bogus", "/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("root", "/v3/auth/user/changepw", r#"{"name":"reader","password":"other"}"#),
        ("root", "/v3/auth/role/revoke", r#"{"role":"reading","key":"Zm9v"}"#),
        ("root", "/v3/auth/user/revoke", r#"{"name":"reader","role":"reading"}"#),
        ("root", "/v3/auth/user/delete", r#"{"name":"reader"}"#),
        ("root", "/v3/auth/role/delete", r#"{"role":"reading"}"#),
        ("root", "/v3/auth/disable", "{}"),
        ("none", "/v3/kv/range", r#"{"key":"Zm9v"}"#),
    ];
    for (who, path, body) in calls {
        let mut answers = Vec::new();
        for (gateway, (root, reader)) in [&etcd, &raftkv].into_iter().zip(&tokens) {
            let answer = match who {
                "root" => gateway.post_with_token(path, body, root).await,
                "reader" => gateway.post_with_token(path, body, reader).await,
                "bogus" => gateway.post_with_token(path, body, "not-a-token").await,
                _ => gateway.post(path, body).await,
            };
            answers.push(answer);
        }
        comparison.answers(&format!("{who}: POST {path} {body}"), &answers[0], &answers[1], &[]);
    }
    comparison.assert_none();
}

async fn actual_members(gateway: &Gateway) -> Value {
    gateway.post("/v3/cluster/member/list", "{}").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_maintenance_and_http_endpoints_answer_as_etcd_does() {
    let (etcd_cluster, raftkv_cluster) = start_both().await;
    let (etcd, raftkv) = (Gateway::of(&etcd_cluster), Gateway::of(&raftkv_cluster));
    let mut comparison = Comparison::default();
    let requests = [
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        ("/v3/maintenance/status", "{}"),
        ("/v3beta/maintenance/status", "{}"),
        ("/v3/maintenance/transfer-leadership", r#"{"targetID":"1"}"#),
        ("/v3/cluster/member/remove", r#"{"ID":"1"}"#),
    ];
    compare_all(&mut comparison, &etcd, &raftkv, &requests).await;
    // Member ids differ by design (etcd hashes its peer URLs differently).
    let (expected, actual) =
        (etcd.post("/v3/cluster/member/list", "{}").await, raftkv.post("/v3/cluster/member/list", "{}").await);
    comparison.answers("POST /v3/cluster/member/list {}", &expected, &actual, &["ID"]);
    // etcd 3.4's Alarm answer carries no header; neither does raftkv's: compare whole answers.
    let (expected, actual) = (
        etcd.post("/v3/maintenance/alarm", r#"{"action":"GET"}"#).await,
        raftkv.post("/v3/maintenance/alarm", r#"{"action":"GET"}"#).await,
    );
    assert_eq!((expected.status, actual.status), (200, 200), "{} / {}", expected.body, actual.body);
    comparison.values("POST /v3/maintenance/alarm GET", expected.json(), actual.json(), &[]);
    let members = actual_members(&raftkv).await;
    assert_eq!(members["members"][0]["clientURLs"][0], raftkv_cluster.client_urls()[0].as_str(), "{members}");
    for (path, method) in [("/health", "GET"), ("/version", "GET"), ("/v3/kv/range", "GET"), ("/no/such/path", "GET")] {
        let (expected, actual) =
            (etcd.request(method, path, "", &[]).await, raftkv.request(method, path, "", &[]).await);
        assert_eq!(expected.status, actual.status, "{method} {path}: {} / {}", expected.body, actual.body);
        if expected.status == 200 {
            comparison.answers(&format!("{method} {path}"), &expected, &actual, &["etcdserver"]);
        }
    }
    let metrics = raftkv.request("GET", "/metrics", "", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("# TYPE "), "Prometheus text on the client URL: {}", metrics.body);
    // etcd allows every origin by default (--cors '*').
    let options = raftkv.request("OPTIONS", "/v3/kv/range", "", &["Origin: http://a.example".into()]).await;
    assert_eq!(options.status, 200);
    comparison.assert_none();
}

/// `curl -i`-like: status and headers (names in lower case) of a request.
async fn headers_of(base: &str, method: &str, path: &str, headers: &[&str]) -> (u16, Vec<(String, String)>) {
    let mut arguments: Vec<String> =
        ["-s", "-S", "-o", "/dev/null", "-D", "-", "-X", method, "--max-time", "20"].map(String::from).to_vec();
    if method == "POST" {
        arguments.extend(["--data-binary".to_string(), "{}".to_string()]);
    }
    for header in headers {
        arguments.extend(["-H".to_string(), header.to_string()]);
    }
    arguments.push(format!("{base}{path}"));
    let output = run_bounded("curl", &arguments, &[], "").await;
    assert_eq!(output.code, 0, "curl {arguments:?} failed: {}", output.stderr);
    let mut lines = output.stdout.lines();
    let status_line = lines.next().expect("a status line");
    let status = status_line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(candidate, _)| candidate == name).map(|(_, value)| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_and_host_whitelist_follow_etcd() {
    let flags = ["--cors", "http://a.example:80,http://b.example:8080", "--host-whitelist", "localhost,a.b"];
    let etcd = Cluster::start_with_arguments(common::ServerKind::Etcd, 1, &flags).await;
    let raftkv = Cluster::start_with_arguments(common::ServerKind::Raftkv, 1, &flags).await;
    let cases: [(&str, &str, &[&str]); 5] = [
        ("POST", "/v3/kv/range", &[]),
        ("POST", "/v3/kv/range", &["Host: a.b", "Origin: http://a.example:80"]),
        ("POST", "/v3/kv/range", &["Host: localhost:2379", "Origin: http://c.example"]),
        ("OPTIONS", "/v3/kv/range", &["Host: a.b", "Origin: http://b.example:8080"]),
        ("GET", "/health", &["Host: a.b", "Origin: http://a.example:80"]),
    ];
    for (method, path, headers) in cases {
        let expected = headers_of(&etcd.client_urls()[0], method, path, headers).await;
        let actual = headers_of(&raftkv.client_urls()[0], method, path, headers).await;
        let label = format!("{method} {path} {headers:?}");
        assert_eq!(expected.0, actual.0, "{label}: status");
        for name in ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"] {
            assert_eq!(header(&expected.1, name), header(&actual.1, name), "{label}: {name}");
        }
    }
    // The host whitelist refuses HTTP requests with 421 (first case) but not gRPC clients.
    let answer = run_bounded(
        &common::etcdctl_program(),
        &[format!("--endpoints={}", raftkv.client_urls()[0]), "put".into(), "k".into(), "v".into()],
        &[("ETCDCTL_API", "3")],
        "",
    )
    .await;
    assert_eq!(answer.code, 0, "etcdctl put: {}", answer.stderr);
}

/// PEM files of a test CA and one certificate for 127.0.0.1 (server and client use).
fn write_certificates(directory: &std::path::Path) -> common::ClientTls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut authority = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority.distinguished_name.push(DnType::CommonName, "gateway test CA");
    let authority_key = KeyPair::generate().expect("CA key");
    let authority = authority.self_signed(&authority_key).expect("self-signed CA");
    let mut member = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("parameters");
    member.distinguished_name.push(DnType::CommonName, "root");
    member.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let member_key = KeyPair::generate().expect("key");
    let member = member.signed_by(&member_key, &authority, &authority_key).expect("signed certificate");
    let files = common::ClientTls {
        ca_file: directory.join("ca.pem"),
        cert_file: directory.join("member.pem"),
        key_file: directory.join("member-key.pem"),
    };
    std::fs::write(&files.ca_file, authority.pem()).expect("write the CA");
    std::fs::write(&files.cert_file, member.pem()).expect("write the certificate");
    std::fs::write(&files.key_file, member_key.serialize_pem()).expect("write the key");
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_speaks_http1_and_http2_over_tls_beside_grpc() {
    let directory = tempfile::tempdir().expect("a directory");
    let files = write_certificates(directory.path());
    let path = path_of;
    let flags = [
        format!("--cert-file={}", path(&files.cert_file)),
        format!("--key-file={}", path(&files.key_file)),
        format!("--trusted-ca-file={}", path(&files.ca_file)),
        format!("--peer-cert-file={}", path(&files.cert_file)),
        format!("--peer-key-file={}", path(&files.key_file)),
        format!("--peer-trusted-ca-file={}", path(&files.ca_file)),
        // TLS listeners serve every Host, as etcd's do.
        "--host-whitelist=localhost".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_tls(common::ServerKind::Raftkv, 1, &flags, files.clone()).await;
    let base = cluster.client_urls()[0].clone();
    assert!(base.starts_with("https://"), "{base}");
    let curl = |version: &'static str, path: &'static str, body: &'static str| {
        let arguments = vec![
            "-s".to_string(),
            "-S".to_string(),
            version.to_string(),
            "--cacert".to_string(),
            path_of(&files.ca_file),
            "--data-binary".to_string(),
            body.to_string(),
            format!("{base}{path}"),
        ];
        async move { run_bounded("curl", &arguments, &[], "").await }
    };
    let put = curl("--http1.1", "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    assert_eq!(put.code, 0, "curl over TLS with HTTP/1.1: {}", put.stderr);
    assert!(put.stdout.contains("\"revision\":\"2\""), "{}", put.stdout);
    let range = curl("--http2", "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(range.code, 0, "curl over TLS with HTTP/2: {}", range.stderr);
    let range: Value = serde_json::from_str(&range.stdout).expect("JSON");
    assert_eq!(range["kvs"][0]["value"], "YmFy", "{range}");
    // gRPC on the same listener.
    let mut get = vec![format!("--endpoints={base}"), "get".to_string(), "foo".to_string()];
    get.extend(files.etcdctl_arguments());
    let got = run_bounded(&common::etcdctl_program(), &get, &[("ETCDCTL_API", "3")], "").await;
    assert_eq!((got.code, got.stdout.as_str()), (0, "foo\nbar\n"), "etcdctl get over TLS: {}", got.stderr);
}

fn path_of(file: &std::path::Path) -> String {
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_as_etcd_refuses_them() {
    let flags = ["--max-request-bytes", "100"];
    let etcd_cluster = Cluster::start_with_arguments(common::ServerKind::Etcd, 1, &flags).await;
    let raftkv_cluster = Cluster::start_with_arguments(common::ServerKind::Raftkv, 1, &flags).await;
    let (etcd, raftkv) = (Gateway::of(&etcd_cluster), Gateway::of(&raftkv_cluster));
    let mut comparison = Comparison::default();
    // Over --max-request-bytes: etcd's "request is too large"; over the gRPC decoding
    // limit (the request limit plus 512 KiB): grpc-go's "received message larger than max".
    let value = |bytes: usize| {
        use std::fmt::Write as _;
        let encoded = "AAAA".repeat(bytes / 3);
        let mut body = String::new();
        write!(body, r#"{{"key":"Zm9v","value":"{encoded}"}}"#).expect("write to a string");
        body
    };
    for (label, body) in [("300 bytes", value(300)), ("600000 bytes", value(600_000))] {
        let expected = etcd.post("/v3/kv/put", &body).await;
        let actual = raftkv.post("/v3/kv/put", &body).await;
        comparison.answers(&format!("put of {label}"), &expected, &actual, &[]);
    }
    compare_all(&mut comparison, &etcd, &raftkv, &[("/v3/kv/range", r#"{"key":"Zm9v"}"#)]).await;
    comparison.assert_none();
}
