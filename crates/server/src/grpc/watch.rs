//! `etcdserverpb.Watch`: one bidirectional stream carries any number of watchers.
//!
//! Each watcher runs as its own task that writes into the stream's bounded response
//! queue. It subscribes to the node's [`WatchHub`](crate::watch::WatchHub) *before*
//! reading the store, then replays history from its start revision (if in the past) and
//! follows published revisions, tracking the next revision it expects: revisions below
//! it are ignored, a gap or a lagged subscription is filled from `kv::Store::history`.
//! Events therefore arrive in revision order, none missing, none repeated.
//!
//! As etcd: the first response of a watcher has `created: true`; a start revision below
//! the compaction revision is answered with `compact_revision` set and `canceled: true`;
//! auto-assigned watch ids count from 0; a progress request is answered with watch id
//! -1 and a revision every watcher of the stream has reached.
//!
//! A stream opened with the metadata `hasleader: true` (clientv3's `WithRequireLeader`)
//! requires a leader, as in etcd 3.4: it is refused with `etcdserver: no leader`
//! (UNAVAILABLE) while this member knows none, and, once open, canceled with that error
//! when the member has found no leader at [`NO_LEADER_CHECKS_MAX`] checks in a row, one
//! per election timeout. Streams without the metadata are left alone.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use proto::mvccpb::{event::EventType, Event};
use proto::prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Authorizer;
use crate::handle::NodeHandle;
use crate::watch::AppliedEvents;

/// Responses queued per stream before watchers wait for the client to read.
pub const RESPONSES_QUEUED_MAX: usize = 256;
/// Events read from history at once when a watcher catches up.
pub const HISTORY_EVENTS_PER_READ: usize = 1000;
/// Watchers one stream may hold at most.
pub const WATCHERS_PER_STREAM_MAX: usize = 4096;

/// The gRPC metadata key clientv3's `WithRequireLeader` sets (to [`REQUIRE_LEADER_METADATA_VALUE`]).
pub const REQUIRE_LEADER_METADATA_KEY: &str = "hasleader";
/// The value of [`REQUIRE_LEADER_METADATA_KEY`] that requires a leader.
pub const REQUIRE_LEADER_METADATA_VALUE: &str = "true";
/// Checks in a row (one per election timeout) without a leader after which the streams
/// requiring one are canceled (etcd's `maxNoLeaderCnt`).
pub const NO_LEADER_CHECKS_MAX: u32 = 3;
/// etcd's error for a stream that requires a leader on a member without one.
pub(super) const NO_LEADER_MESSAGE: &str = "etcdserver: no leader";

/// The watch id of a progress response that concerns every watcher of the stream.
const STREAM_WATCH_ID: i64 = -1;

type Responses = mpsc::Sender<Result<WatchResponse, Status>>;

/// The response stream of one `Watch` call.
type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

/// etcd's `Watch` service over a node.
#[derive(Clone)]
pub struct WatchService {
    handle: NodeHandle,
    fragment_bytes_max: usize,
    authorizer: Authorizer,
    leader_monitor: Arc<LeaderMonitor>,
}

/// Tells the streams that require a leader when to give up (etcd's `monitorLeader`): the
/// epoch goes up at every check that finds no leader for the [`NO_LEADER_CHECKS_MAX`]th
/// time in a row or more. Checking starts with the first such stream. The lease service's
/// keep-alive streams use one too (etcd's stream interceptor covers every stream).
pub(super) struct LeaderMonitor {
    cancel: tokio::sync::watch::Sender<u64>,
    started: OnceLock<()>,
}

impl LeaderMonitor {
    /// A monitor that has not started checking.
    pub(super) fn new() -> Arc<LeaderMonitor> {
        Arc::new(LeaderMonitor { cancel: tokio::sync::watch::channel(0).0, started: OnceLock::new() })
    }

    /// A receiver that changes when the streams requiring a leader must end.
    pub(super) fn subscribe(self: &Arc<Self>, handle: &NodeHandle) -> tokio::sync::watch::Receiver<u64> {
        self.started.get_or_init(|| {
            tokio::spawn(monitor_leader(Arc::downgrade(self), handle.clone()));
        });
        self.cancel.subscribe()
    }
}

/// Checks for a leader once per election timeout while the service exists.
async fn monitor_leader(monitor: Weak<LeaderMonitor>, handle: NodeHandle) {
    let period = handle.election_timeout();
    assert!(!period.is_zero(), "an election timeout takes time");
    let mut checks_without_leader = 0u32;
    loop {
        tokio::time::sleep(period).await;
        let Some(monitor) = monitor.upgrade() else { return };
        if handle.status().leader == 0 {
            checks_without_leader = checks_without_leader.saturating_add(1);
        } else {
            checks_without_leader = 0;
        }
        if checks_without_leader >= NO_LEADER_CHECKS_MAX {
            tracing::warn!(
                "no leader for {checks_without_leader} election timeouts: canceling the watch streams that require one"
            );
            monitor.cancel.send_modify(|epoch| *epoch += 1);
        }
    }
}

/// True if the stream's metadata requires a leader (`hasleader: true`).
pub(super) fn requires_leader(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata.get(REQUIRE_LEADER_METADATA_KEY).and_then(|value| value.to_str().ok())
        == Some(REQUIRE_LEADER_METADATA_VALUE)
}

/// Completes when `lost_leader` (if any) says the stream must end.
pub(super) async fn leader_lost(lost_leader: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let Some(receiver) = lost_leader else { return std::future::pending().await };
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await; // the service is gone: nothing will cancel
    }
}

impl WatchService {
    /// A service for `handle`; watchers created with `fragment` get responses larger
    /// than `fragment_bytes_max` split (etcd splits at `--max-request-bytes`).
    pub fn new(handle: NodeHandle, fragment_bytes_max: usize) -> WatchService {
        assert!(fragment_bytes_max > 0, "fragments hold some bytes");
        let authorizer = Authorizer::new(handle.clone());
        let (cancel, _) = tokio::sync::watch::channel(0);
        let leader_monitor = Arc::new(LeaderMonitor { cancel, started: OnceLock::new() });
        WatchService { handle, fragment_bytes_max, authorizer, leader_monitor }
    }

    /// Checks permissions with `authorizer` (share one per member, for token lifetimes):
    /// creating a watcher needs read permission on its key range, else it is answered
    /// `created` and `canceled` with the reason (as etcd).
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> WatchService {
        self.authorizer = authorizer;
        self
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let (metadata, _, requests) = request.into_parts();
        let mut lost_leader = None;
        if requires_leader(&metadata) {
            if self.handle.status().leader == 0 {
                return Err(Status::unavailable(NO_LEADER_MESSAGE));
            }
            lost_leader = Some(self.leader_monitor.subscribe(&self.handle));
        }
        let (sender, receiver) = mpsc::channel(RESPONSES_QUEUED_MAX);
        let stream = StreamState {
            handle: self.handle.clone(),
            responses: sender,
            watchers: HashMap::new(),
            next_watch_id: 0,
            fragment_bytes_max: self.fragment_bytes_max,
            authorizer: self.authorizer.clone(),
            metadata,
            lost_leader,
        };
        tokio::spawn(stream.run(requests));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// A running watcher: its task and the last revision it has fully delivered.
struct WatcherTask {
    task: JoinHandle<()>,
    delivered_revision: Arc<AtomicI64>,
}

struct StreamState {
    handle: NodeHandle,
    responses: Responses,
    watchers: HashMap<i64, WatcherTask>,
    next_watch_id: i64,
    fragment_bytes_max: usize,
    authorizer: Authorizer,
    /// The stream's metadata: its token is checked at every create, as etcd does.
    metadata: tonic::metadata::MetadataMap,
    /// For a stream that requires a leader: changes when it must end (see [`LeaderMonitor`]).
    lost_leader: Option<tokio::sync::watch::Receiver<u64>>,
}

impl StreamState {
    async fn run(mut self, mut requests: Streaming<WatchRequest>) {
        loop {
            let received = tokio::select! {
                received = requests.message() => received,
                () = self.responses.closed() => break,
                () = leader_lost(&mut self.lost_leader) => {
                    // Like etcd: the stream ends with UNAVAILABLE "etcdserver: no leader",
                    // so the client fails over to another member.
                    let unavailable = self.responses.send(Err(Status::unavailable(NO_LEADER_MESSAGE)));
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), unavailable).await;
                    break;
                }
            };
            let request = match received {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(status) => {
                    // A message the gRPC layer refused (over the size limit, malformed)
                    // ends the stream with that error, so the client learns why.
                    let _ = self.responses.send(Err(status)).await;
                    break;
                }
            };
            self.watchers.retain(|_, watcher| !watcher.task.is_finished());
            let sent = match request.request_union {
                Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
                Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
                Some(RequestUnion::ProgressRequest(_)) => self.progress().await,
                None => true,
            };
            if !sent {
                break;
            }
        }
        for watcher in self.watchers.values() {
            watcher.task.abort();
        }
    }

    async fn send(&self, response: WatchResponse) -> bool {
        self.responses.send(Ok(response)).await.is_ok()
    }

    async fn create(&mut self, create: WatchCreateRequest) -> bool {
        let revision = self.handle.status().revision;
        let refuse = |watch_id: i64, reason: &str| WatchResponse {
            header: Some(self.handle.header(revision)),
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..WatchResponse::default()
        };
        if create.watch_id < 0 {
            return self.send(refuse(create.watch_id, "etcdserver: watch id must not be negative")).await;
        }
        if create.watch_id != 0 && self.watchers.contains_key(&create.watch_id) {
            return self.send(refuse(create.watch_id, "mvcc: duplicate watch ID")).await;
        }
        let range = proto::etcdserverpb::RangeRequest {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
            ..Default::default()
        };
        if self.authorizer.authorize(&self.metadata, &kv::Operation::Range(range)).await.is_err() {
            // etcd answers every refused watch so, whatever the cause (no token, bad token, denied).
            let reason = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
            return self.send(refuse(create.watch_id, reason)).await;
        }
        if self.watchers.len() >= WATCHERS_PER_STREAM_MAX {
            return self.send(refuse(create.watch_id, "raftkv: too many watchers on this stream")).await;
        }
        let watch_id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.watchers.contains_key(&self.next_watch_id) {
                self.next_watch_id += 1;
            }
            let id = self.next_watch_id;
            self.next_watch_id += 1;
            id
        };
        // Subscribe before the watcher reads the store, so no revision falls in between.
        let published = self.handle.watch_events();
        let delivered_revision = Arc::new(AtomicI64::new(i64::MAX));
        let watcher = Watcher {
            handle: self.handle.clone(),
            responses: self.responses.clone(),
            watch_id,
            filter: Filter::new(&create),
            fragment_bytes_max: create.fragment.then_some(self.fragment_bytes_max),
            delivered_revision: delivered_revision.clone(),
            next_revision: create.start_revision,
        };
        let task = tokio::spawn(watcher.run(published, create.progress_notify));
        self.watchers.insert(watch_id, WatcherTask { task, delivered_revision });
        true
    }

    async fn cancel(&mut self, watch_id: i64) -> bool {
        let Some(watcher) = self.watchers.remove(&watch_id) else {
            return true;
        };
        watcher.task.abort();
        // Wait until it stopped, so no event follows the cancel response.
        let _ = watcher.task.await;
        let revision = self.handle.status().revision;
        self.send(WatchResponse {
            header: Some(self.handle.header(revision)),
            watch_id,
            canceled: true,
            ..WatchResponse::default()
        })
        .await
    }

    async fn progress(&mut self) -> bool {
        let current = self.handle.read_view().current_revision();
        let reached = self
            .watchers
            .values()
            .map(|watcher| watcher.delivered_revision.load(Ordering::SeqCst))
            .min()
            .unwrap_or(current)
            .min(current);
        if reached == i64::MAX || reached <= 0 {
            return true; // a watcher is still starting: nothing safe to report yet
        }
        self.send(WatchResponse {
            header: Some(self.handle.header(reached)),
            watch_id: STREAM_WATCH_ID,
            ..WatchResponse::default()
        })
        .await
    }
}

/// Which events a watcher wants.
struct Filter {
    range: kv::KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
}

impl Filter {
    fn new(create: &WatchCreateRequest) -> Filter {
        // etcd: an empty key means "\0", the smallest key.
        let key: &[u8] = if create.key.is_empty() { &[0] } else { &create.key };
        let filters = &create.filters;
        Filter {
            range: kv::KeyRange::new(key, &create.range_end),
            no_put: filters.contains(&(FilterType::Noput as i32)),
            no_delete: filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: create.prev_kv,
        }
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|event| {
                let is_put = event.r#type == EventType::Put as i32;
                let key = event.kv.as_ref().map_or(&[][..], |kv| kv.key.as_ref());
                let wanted_type = if is_put { !self.no_put } else { !self.no_delete };
                self.range.contains(key) && wanted_type
            })
            .map(|event| {
                let mut event = event.clone();
                if !self.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }
}

/// Why a watcher stopped.
enum Stop {
    /// The client is gone.
    Disconnected,
    /// The start revision was compacted; the client was told.
    Compacted,
}

struct Watcher {
    handle: NodeHandle,
    responses: Responses,
    watch_id: i64,
    filter: Filter,
    fragment_bytes_max: Option<usize>,
    delivered_revision: Arc<AtomicI64>,
    /// The revision whose events come next; `<= 0` until started ("from now").
    next_revision: i64,
}

impl Watcher {
    async fn run(mut self, mut published: broadcast::Receiver<Arc<AppliedEvents>>, progress_notify: bool) {
        let current = self.handle.read_view().current_revision();
        let created = WatchResponse {
            header: Some(self.handle.header(current)),
            watch_id: self.watch_id,
            created: true,
            ..WatchResponse::default()
        };
        if self.responses.send(Ok(created)).await.is_err() {
            return;
        }
        if self.next_revision <= 0 {
            self.next_revision = current + 1;
        }
        self.delivered_revision.store((self.next_revision - 1).min(current), Ordering::SeqCst);
        if self.catch_up().await.is_err() {
            return;
        }
        let mut progress = tokio::time::interval(self.handle.watch_progress_notify_interval());
        progress.tick().await;
        let mut sent_since_progress = false;
        loop {
            tokio::select! {
                received = published.recv() => {
                    let outcome = match received {
                        Ok(applied) => self.follow(&applied).await,
                        Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    match outcome {
                        Ok(sent) => sent_since_progress |= sent,
                        Err(_) => return,
                    }
                }
                _ = progress.tick(), if progress_notify => {
                    if !sent_since_progress {
                        let revision = self.delivered_revision.load(Ordering::SeqCst);
                        let response = WatchResponse {
                            header: Some(self.handle.header(revision)),
                            watch_id: self.watch_id,
                            ..WatchResponse::default()
                        };
                        if self.responses.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    sent_since_progress = false;
                }
            }
        }
    }

    /// Handles one published revision; true if something was sent.
    async fn follow(&mut self, applied: &AppliedEvents) -> Result<bool, Stop> {
        if applied.revision < self.next_revision {
            return Ok(false);
        }
        if applied.events.is_empty() {
            // The node installed a snapshot: everything up to `applied.revision` is in history.
            return self.catch_up().await;
        }
        if applied.revision > self.next_revision {
            // Missed revisions (e.g. a snapshot was installed): read them from history,
            // which by now holds `applied` too.
            let sent = self.catch_up().await?;
            if applied.revision < self.next_revision {
                return Ok(sent);
            }
        }
        let sent = self.deliver(&applied.events, applied.revision).await?;
        self.next_revision = applied.revision + 1;
        self.delivered_revision.store(applied.revision, Ordering::SeqCst);
        Ok(sent)
    }

    /// Delivers every stored revision from `next_revision` on; true if something was sent.
    async fn catch_up(&mut self) -> Result<bool, Stop> {
        let mut sent = false;
        loop {
            let guard = self.handle.read_view();
            let current = guard.current_revision();
            if self.next_revision > current {
                return Ok(sent);
            }
            let history = match guard.history(self.next_revision, HISTORY_EVENTS_PER_READ) {
                Ok(history) => history,
                Err(_) => {
                    let compact_revision = guard.compact_revision();
                    drop(guard);
                    let response = WatchResponse {
                        header: Some(self.handle.header(current)),
                        watch_id: self.watch_id,
                        canceled: true,
                        compact_revision,
                        cancel_reason: kv::Error::Compacted.message().to_string(),
                        ..WatchResponse::default()
                    };
                    let _ = self.responses.send(Ok(response)).await;
                    return Err(Stop::Compacted);
                }
            };
            drop(guard);
            let Some(last) = history.events.last().and_then(|event| event.kv.as_ref()).map(|kv| kv.mod_revision) else {
                self.next_revision = current + 1;
                self.delivered_revision.store(current, Ordering::SeqCst);
                return Ok(sent);
            };
            sent |= self.deliver(&history.events, last).await?;
            self.next_revision = history.next_revision.max(last + 1);
            self.delivered_revision.store(self.next_revision - 1, Ordering::SeqCst);
        }
    }

    /// Sends the events the filter selects (split into fragments if asked and needed);
    /// true if something was sent.
    async fn deliver(&self, events: &[Event], revision: i64) -> Result<bool, Stop> {
        let selected = self.filter.select(events);
        if selected.is_empty() {
            return Ok(false);
        }
        let header = Some(self.handle.header(revision));
        let response = WatchResponse { header, watch_id: self.watch_id, events: selected, ..WatchResponse::default() };
        let responses = match self.fragment_bytes_max {
            Some(limit) if response.encoded_len() > limit => fragments(response, limit),
            _ => vec![response],
        };
        for response in responses {
            self.responses.send(Ok(response)).await.map_err(|_| Stop::Disconnected)?;
        }
        Ok(true)
    }
}

/// Splits `response` into responses of at most `limit` encoded bytes of events (at
/// least one event each); all but the last have `fragment: true`.
fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    let template = WatchResponse { events: Vec::new(), ..response.clone() };
    let mut parts: Vec<WatchResponse> = Vec::new();
    let mut current = template.clone();
    let mut size_bytes = 0;
    for event in response.events {
        let event_bytes = event.encoded_len();
        if !current.events.is_empty() && size_bytes + event_bytes > limit {
            parts.push(std::mem::replace(&mut current, template.clone()));
            size_bytes = 0;
        }
        size_bytes += event_bytes;
        current.events.push(event);
    }
    parts.push(current);
    let count = parts.len();
    for part in &mut parts[..count - 1] {
        part.fragment = true;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::mvccpb::KeyValue;

    fn put(key: &str, value_bytes: usize) -> Event {
        let kv = KeyValue {
            key: key.as_bytes().to_vec().into(),
            value: vec![b'x'; value_bytes].into(),
            ..KeyValue::default()
        };
        Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None }
    }

    #[test]
    fn fragments_split_large_responses_and_keep_every_event() {
        let events: Vec<Event> = (0..10).map(|index| put(&format!("k{index}"), 100)).collect();
        let response = WatchResponse { watch_id: 3, events: events.clone(), ..WatchResponse::default() };
        let parts = fragments(response, 250);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|part| part.fragment));
        assert!(!parts.last().expect("parts").fragment);
        let joined: Vec<Event> = parts.into_iter().flat_map(|part| part.events).collect();
        assert_eq!(joined, events);
    }

    #[test]
    fn filters_select_keys_and_types() {
        let create = WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            filters: vec![FilterType::Nodelete as i32],
            ..WatchCreateRequest::default()
        };
        let filter = Filter::new(&create);
        let mut delete = put("b", 0);
        delete.r#type = EventType::Delete as i32;
        let selected = filter.select(&[put("a", 1), put("c", 1), delete, put("b", 1)]);
        let keys: Vec<&[u8]> = selected.iter().map(|event| event.kv.as_ref().expect("kv").key.as_ref()).collect();
        assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
    }
}
