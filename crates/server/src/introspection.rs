//! The node's Raft state as JSON for the dashboard: `GET /api/state` and the
//! `GET /api/events` server-sent-event stream (format in the README's dashboard section).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::Stream;
use raft::{EntryKind, ProgressState, RawNode, Role, Storage};
use serde_json::{json, Value};

use crate::transport::PeerDirectory;

/// Entries shown per node.
const INTROSPECTION_ENTRIES_MAX: u64 = 64;
/// Longest command summary shown per entry.
const SUMMARY_CHARACTERS_MAX: usize = 48;

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "precandidate",
        Role::Learner => "learner",
    }
}

fn shorten(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    if text.chars().count() <= SUMMARY_CHARACTERS_MAX {
        return text.into_owned();
    }
    let mut short: String = text.chars().take(SUMMARY_CHARACTERS_MAX - 1).collect();
    short.push('…');
    short
}

/// A short human-readable description of a log entry's command.
pub fn summarize(entry: &raft::Entry) -> String {
    match entry.kind {
        EntryKind::Blank => return "no-op".into(),
        EntryKind::Config => return "membership change".into(),
        EntryKind::Normal => {}
    }
    let Some(command_bytes) = entry.data.get(8..) else { return "?".into() };
    let Ok(command) = kv::Command::decode(command_bytes) else { return "?".into() };
    match &command.operation {
        kv::Operation::Put(put) => format!("put {}={}", shorten(&put.key), shorten(&put.value)),
        kv::Operation::DeleteRange(delete) => format!("del {}", shorten(&delete.key)),
        kv::Operation::Txn(txn) => format!("txn ({} compares)", txn.compare.len()),
        kv::Operation::Range(range) => format!("get {}", shorten(&range.key)),
        kv::Operation::Compaction(compaction) => format!("compact {}", compaction.revision),
        kv::Operation::LeaseGrant(grant) => format!("lease grant {:x}", grant.id),
        kv::Operation::LeaseRevoke(revoke) => format!("lease revoke {:x}", revoke.id),
        kv::Operation::LeaseCheckpoint(checkpoint) => format!("lease checkpoint ({})", checkpoint.checkpoints.len()),
        kv::Operation::MemberUpdate(update) => format!("member update {:x}", update.id),
        kv::Operation::Auth(_) => "auth change".into(),
        kv::Operation::Alarm(alarm) => format!("alarm action {} type {}", alarm.action, alarm.alarm),
    }
}

/// The Raft part of `/api/state` for `node`.
pub fn raft_state<S: Storage>(node: &RawNode<S>) -> Value {
    let last_index = node.last_index();
    let first_shown = node.first_index().max(last_index.saturating_sub(INTROSPECTION_ENTRIES_MAX - 1)).max(1);
    let entries: Vec<Value> = node
        .entries(first_shown, last_index + 1)
        .into_iter()
        .map(|entry| {
            let kind = match entry.kind {
                EntryKind::Normal => "normal",
                EntryKind::Blank => "blank",
                EntryKind::Config => "config",
            };
            json!({"index": entry.index, "term": entry.term, "kind": kind, "summary": summarize(&entry)})
        })
        .collect();
    let progress: Vec<Value> = node
        .voters()
        .iter()
        .chain(node.learners())
        .filter(|peer| **peer != node.id())
        .filter_map(|peer| node.progress(*peer).map(|view| (peer, view)))
        .map(|(peer, view)| {
            let state = match view.state {
                ProgressState::Probe => "probe",
                ProgressState::Replicate => "replicate",
                ProgressState::Snapshot => "snapshot",
            };
            json!({"id": format!("{peer:x}"), "match": view.match_index, "next": view.next_index,
                   "state": state, "inflight": view.inflight_messages})
        })
        .collect();
    let leader = if node.leader() == 0 { String::new() } else { format!("{:x}", node.leader()) };
    json!({
        "role": role_name(node.role()), "term": node.term(), "leader": leader,
        "commit": node.commit_index(), "applied": node.applied_index(),
        "first_index": node.first_index(), "last_index": last_index,
        "entries": entries, "progress": progress,
    })
}

/// Adds identity and members to a Raft state (each member with `reachable`: false while
/// this node cannot connect to it).
pub fn full_state(raft: &Value, directory: &PeerDirectory, members: &[(u64, String)]) -> Value {
    let known = directory.known.read().map(|known| known.clone()).unwrap_or_default();
    let members: Vec<Value> = members
        .iter()
        .map(|(id, name)| {
            let info = known.get(id).cloned().unwrap_or_default();
            json!({"id": format!("{id:x}"), "name": name, "client_urls": info.client_urls, "http_urls": info.http_urls,
                   "reachable": directory.is_reachable(*id)})
        })
        .collect();
    let mut state = raft.clone();
    if let Some(object) = state.as_object_mut() {
        object.insert("id".into(), json!(format!("{:x}", directory.local_id)));
        object.insert("name".into(), json!(directory.local_info.name));
        object.insert("members".into(), json!(members));
    }
    state
}

/// What the HTTP handlers need.
#[derive(Clone)]
pub struct IntrospectionSource {
    /// Latest Raft state from the Raft loop.
    pub updates: tokio::sync::watch::Receiver<Arc<Value>>,
    /// Identity and peers.
    pub directory: Arc<PeerDirectory>,
    /// (id, name) of every member.
    pub members: Vec<(u64, String)>,
}

impl IntrospectionSource {
    fn current(&self) -> Value {
        full_state(&self.updates.borrow(), &self.directory, &self.members)
    }

    /// `GET /api/state`.
    pub fn state_response(&self) -> impl IntoResponse {
        ([("access-control-allow-origin", "*"), ("cache-control", "no-store")], axum::Json(self.current()))
    }

    /// `GET /api/events`: the state again whenever it changes (at most every 100 ms).
    pub fn events_response(&self) -> impl IntoResponse {
        let source = self.clone();
        let stream = event_stream(source);
        let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(2)));
        ([("access-control-allow-origin", "*")], sse)
    }
}

fn event_stream(source: IntrospectionSource) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((source, true), |(mut source, first)| async move {
        if !first && source.updates.changed().await.is_err() {
            return None;
        }
        let event = Event::default().event("state").data(source.current().to_string());
        Some((Ok(event), (source, false)))
    })
}

/// Total bytes of the files in `directory` (the WAL's size on disk).
pub fn directory_size_bytes(directory: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(directory) else { return 0 };
    entries.filter_map(Result::ok).filter_map(|entry| entry.metadata().ok()).map(|metadata| metadata.len()).sum()
}
