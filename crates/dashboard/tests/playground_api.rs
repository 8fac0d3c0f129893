//! The playground's HTTP API without a browser: pages and assets are served, actions
//! change the state, and bad requests are refused without harming the session.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dashboard::playground::SessionStart;
use serde_json::Value;

/// Sends one HTTP/1.0 request; returns (status, body).
fn request(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status");
    (status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

fn start() -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || runtime.block_on(dashboard::serve_playground(listener, SessionStart::default())));
    address
}

#[test]
fn pages_assets_and_actions_are_served() {
    let address = start();
    let (status, page) = request(&address, "GET", "/playground", "");
    assert_eq!(status, 200);
    assert!(page.contains("/dashboard/assets/playground.js"));
    for asset in ["raft.css", "raftlog.js", "playground.js", "dashboard.js"] {
        assert_eq!(request(&address, "GET", &format!("/dashboard/assets/{asset}"), "").0, 200, "{asset}");
    }
    assert_eq!(request(&address, "GET", "/dashboard/assets/nothing.js", "").0, 404);

    let (status, body) = request(&address, "POST", "/api/playground/reset", r#"{"preset":"walkthrough"}"#);
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(state["nodes"].as_array().map(Vec::len), Some(5));
    let (status, body) = request(&address, "POST", "/api/playground/next", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(&address, "POST", "/api/playground/action", r#"{"type":"campaign","node":2}"#);
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(state["step"], 2);
    assert!(!state["messages"].as_array().expect("messages").is_empty(), "votes in flight");
    let (status, body) = request(&address, "POST", "/api/playground/rewind", r#"{"step":1}"#);
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(state["step"], 1);
}

#[test]
fn bad_requests_are_refused_and_the_session_survives() {
    let address = start();
    let refused = [
        ("/api/playground/action", "not json"),
        ("/api/playground/action", r#"{"type":"explode"}"#),
        ("/api/playground/action", r#"{"type":"crash","node":99}"#),
        ("/api/playground/action", r#"{"type":"deliver","message":12345}"#),
        ("/api/playground/action", r#"{"type":"install_log","node":1,"terms":[3,2]}"#),
        ("/api/playground/rewind", r#"{"step":5}"#),
        ("/api/playground/rewind", r#"{"step":-1}"#),
        ("/api/playground/reset", r#"{"nodes":0}"#),
        ("/api/playground/reset", r#"{"preset":"nothing"}"#),
        ("/api/playground/next", ""),
    ];
    for (path, body) in refused {
        let (status, answer) = request(&address, "POST", path, body);
        assert!((400..500).contains(&status), "{path} {body}: {status} {answer}");
    }
    let oversized = format!(r#"{{"type":"request","command":"{}"}}"#, "x".repeat(200_000));
    assert!((400..500).contains(&request(&address, "POST", "/api/playground/action", &oversized).0));
    let (status, body) = request(&address, "GET", "/api/playground/state", "");
    assert_eq!(status, 200);
    let state: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(state["step"], 0, "nothing was applied");
}
