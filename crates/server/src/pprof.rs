//! `--enable-pprof`: etcd serves Go's profiler at `/debug/pprof/` on its client URLs.
//! raftkv is no Go program; at the same path it serves what a Rust process can tell
//! about itself from `/proc/self` (Linux), as plain text:
//!
//! - `/debug/pprof/` — the index of what follows;
//! - `/debug/pprof/heap` — memory: `/proc/self/status`'s `Vm*`/`Rss*` lines and
//!   `/proc/self/smaps_rollup`;
//! - `/debug/pprof/goroutine` and `/debug/pprof/threadcreate` — the process's threads
//!   (id, name, state) from `/proc/self/task`;
//! - `/debug/pprof/profile`, `/trace`, `/block`, `/mutex`, `/allocs` — refused with
//!   501 Not Implemented and what to use instead (`perf record -p <pid>`, heaptrack).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Profiles etcd's pprof offers that raftkv cannot produce, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("profile", "CPU profiles: run `perf record -g -p <pid>` (build with CARGO_PROFILE_RELEASE_DEBUG=1)"),
    ("trace", "execution traces are a Go runtime feature"),
    ("block", "blocking profiles are a Go runtime feature"),
    ("mutex", "mutex profiles are a Go runtime feature"),
    ("allocs", "allocation profiles: run the server under heaptrack"),
];

/// The routes of `/debug/pprof/` (mount them on the client URLs when `--enable-pprof`).
pub fn pprof_router() -> axum::Router {
    let mut router = axum::Router::new()
        .route("/debug/pprof/", get(|| async { text(index()) }))
        .route("/debug/pprof/heap", get(|| async { text(memory()) }))
        .route("/debug/pprof/goroutine", get(|| async { text(threads()) }))
        .route("/debug/pprof/threadcreate", get(|| async { text(threads()) }));
    for (name, reason) in REFUSED {
        let message = format!("raftkv: /debug/pprof/{name} is not available: {reason}\n");
        router = router.route(
            &format!("/debug/pprof/{name}"),
            get(move || std::future::ready((StatusCode::NOT_IMPLEMENTED, message.clone()).into_response())),
        );
    }
    router
}

fn text(body: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn index() -> String {
    let mut body = String::from("raftkv /debug/pprof/ (process information from /proc/self)\n\n");
    body.push_str("heap          memory of the process (status, smaps_rollup)\n");
    body.push_str("goroutine     threads of the process (id, name, state)\n");
    body.push_str("threadcreate  the same\n");
    for (name, reason) in REFUSED {
        body.push_str(&format!("{name:<13} not available: {reason}\n"));
    }
    body
}

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut body: String = status
        .lines()
        .filter(|line| line.starts_with("Vm") || line.starts_with("Rss") || line.starts_with("Threads"))
        .map(|line| format!("{line}\n"))
        .collect();
    if let Ok(rollup) = std::fs::read_to_string("/proc/self/smaps_rollup") {
        body.push_str("\n# /proc/self/smaps_rollup\n");
        body.push_str(&rollup);
    }
    if body.is_empty() {
        body.push_str("no /proc/self on this system\n");
    }
    body
}

fn threads() -> String {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "no /proc/self/task on this system\n".into();
    };
    let mut lines: Vec<(u64, String)> = tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let id: u64 = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised name in /proc/<pid>/task/<id>/stat.
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').next()).unwrap_or("?");
            Some((id, format!("{id} {} {state}", name.trim())))
        })
        .collect();
    lines.sort();
    let mut body = format!("threads: {}\n", lines.len());
    for (_, line) in lines {
        body.push_str(&line);
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_memory_and_threads_of_this_process() {
        let memory = memory();
        assert!(memory.contains("VmRSS:"), "{memory}");
        let threads = threads();
        let count: usize =
            threads.lines().next().and_then(|line| line.strip_prefix("threads: ")).unwrap().parse().unwrap();
        assert!(count >= 1 && threads.lines().count() == count + 1, "{threads}");
        assert!(index().contains("profile       not available"));
    }
}
