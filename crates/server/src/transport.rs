//! Peer transport over TCP: one persistent outgoing connection per peer, many messages
//! per write, bounded queues, reconnect with backoff, and a handshake that keeps out
//! nodes of other clusters and unknown members.
//!
//! Network tasks never write membership state (the peer and known tables, the member
//! table, reachability): they report what they see as a [`PeerObservation`], and the Raft
//! loop decides (see [`crate::membership`]). Incoming connections report on the loop's peer
//! queue, in order with that peer's messages; outgoing connections report on the
//! transport's own bounded report queue, which the loop drains every turn
//! ([`Transport::next_report`]). A full queue drops the report and counts it in
//! `raftkv_inbound_messages_dropped_total`; no network task ever waits for the loop. The
//! loop tells the transport what to connect to with one call, [`Transport::set_peers`].

use crossbeam_channel::{Sender, TrySendError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto::raftkvpeer as wire;
use raft::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::codec::{self, CodecError, PROTOCOL_VERSION};
use crate::metrics::Metrics;
use crate::tls::MaybeTlsStream;

/// Messages queued per peer before new ones are dropped (Raft retransmits).
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Reports from outgoing connections waiting for the Raft loop, at most (they come on
/// changes only: a connection made, a peer unreachable, a removal notice).
pub const TRANSPORT_REPORTS_MAX: usize = 1024;
/// Bytes written per batch at most (many messages per write).
const WRITE_BATCH_BYTES_MAX: usize = 4 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(20);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);
/// A peer that cannot be dialled for this long is logged at WARN (a peer still starting
/// next to this one is not); the warning repeats at most once per [`UNREACHABLE_WARNING_INTERVAL`].
const UNREACHABLE_WARNING_AFTER: Duration = Duration::from_secs(1);
/// Least time between two warnings about one unreachable peer.
const UNREACHABLE_WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// What a member tells others about itself in the handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// `--name`.
    pub name: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// HTTP (metrics, dashboard) URLs.
    pub http_urls: Vec<String>,
}

/// What a network task saw about a peer, for the Raft loop to decide on (see
/// [`crate::membership::Membership::observe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerObservation {
    /// An incoming connection's handshake passed the checks: member `id` told this node
    /// its name and URLs.
    Introduced {
        /// The member that connected.
        id: u64,
        /// What it told about itself (name, client and HTTP URLs; bounded in size).
        info: PeerInfo,
    },
    /// A peer answered an outgoing connection with a removal notice naming this member.
    RemovedSelf {
        /// The peer that sent the notice.
        told_by: u64,
    },
    /// An outgoing connection to `id` succeeded (`true`) or has failed for a while (`false`).
    Reachable {
        /// The peer dialled.
        id: u64,
        /// Whether it can be reached now.
        reachable: bool,
    },
}

/// Who we are and who may talk to us.
///
/// Rule: the tables below (`peers`, `known`, `members`, `unreachable`) are written only by
/// the Raft loop, which owns membership; network tasks read them (to check a handshake,
/// to serve `GET /members`) and report what they see as [`PeerObservation`]s.
#[derive(Debug)]
pub struct PeerDirectory {
    /// The cluster id every handshake must carry.
    pub cluster_id: u64,
    /// This node's id.
    pub local_id: u64,
    /// What this node tells its peers about itself.
    pub local_info: PeerInfo,
    /// Every other member's id and the address to dial (`host:port`): what the transport
    /// connects to. Written only by the Raft loop, through [`Transport::set_peers`] (after
    /// it applied a membership change); never contains `local_id`.
    pub peers: std::sync::RwLock<BTreeMap<u64, String>>,
    /// What members told us about themselves in their handshakes (this node's own entry
    /// from the start). Written only by the Raft loop, from [`PeerObservation::Introduced`].
    pub known: std::sync::RwLock<BTreeMap<u64, PeerInfo>>,
    /// TLS of peer connections (`https://` peer URLs; see [`crate::tls`]).
    pub tls: crate::tls::PeerTls,
    /// The member table as this node applied it (removed members are refused; served
    /// as `GET /members` on the peer port to members that join). Written only by the Raft
    /// loop.
    pub members: crate::membership::MemberTable,
    /// Peers this node currently cannot connect to (shown as `reachable: false` in
    /// `/api/state`); a peer leaves the set when a connection to it succeeds again. Written
    /// only by the Raft loop, from [`PeerObservation::Reachable`].
    pub unreachable: std::sync::RwLock<BTreeSet<u64>>,
    /// The member's store, once it exists: `GET /members/hashkv` on the peer port hashes it
    /// for the corruption checks of the other members (see [`crate::corrupt_check`]).
    pub store: std::sync::OnceLock<Arc<crate::read_view::StoreViews>>,
}

impl PeerDirectory {
    /// True if `id` is a current peer (a member other than this node).
    pub fn is_peer(&self, id: u64) -> bool {
        self.peers.read().map(|peers| peers.contains_key(&id)).unwrap_or(false)
    }

    /// False while this node cannot connect to peer `id` (true for itself).
    pub fn is_reachable(&self, id: u64) -> bool {
        self.unreachable.read().map(|unreachable| !unreachable.contains(&id)).unwrap_or(true)
    }

    /// Records whether peer `id` can be reached. The Raft loop's to call (see the rule above).
    pub fn set_reachable(&self, id: u64, reachable: bool) {
        if let Ok(mut unreachable) = self.unreachable.write() {
            if reachable {
                unreachable.remove(&id);
            } else {
                unreachable.insert(id);
            }
        }
    }
}

/// A peer writer's record of one stretch of failed dials, for rate-limited warnings.
struct Outage {
    since: Instant,
    failed_dials: u64,
    last_warning: Option<Instant>,
    last_error: String,
}

impl Outage {
    fn new() -> Outage {
        Outage { since: Instant::now(), failed_dials: 0, last_warning: None, last_error: String::new() }
    }

    /// Counts a failed dial; true when it is time to warn (after [`UNREACHABLE_WARNING_AFTER`],
    /// then at most once per [`UNREACHABLE_WARNING_INTERVAL`]).
    fn record_failure(&mut self, error: &std::io::Error) -> bool {
        self.failed_dials += 1;
        self.last_error = error.to_string();
        let now = Instant::now();
        let due = match self.last_warning {
            None => now.duration_since(self.since) >= UNREACHABLE_WARNING_AFTER,
            Some(last) => now.duration_since(last) >= UNREACHABLE_WARNING_INTERVAL,
        };
        if due {
            self.last_warning = Some(now);
        }
        due
    }
}

/// Sends Raft messages to peers. Cheap to clone.
///
/// Rules:
/// - it connects to exactly the peers of the last [`Transport::set_peers`] (at start: the
///   directory's `peers`); only the Raft loop calls `set_peers`, nothing it hears from the
///   network changes whom it dials;
/// - its writers report what they see ([`PeerObservation`]) on a queue bounded by
///   [`TRANSPORT_REPORTS_MAX`] and never wait: a full queue drops the report (counted).
#[derive(Clone)]
pub struct Transport {
    /// One queue per peer of `directory.peers` (same keys). Written only by
    /// [`Transport::set_peers`], from the Raft loop.
    queues: Arc<std::sync::RwLock<BTreeMap<u64, mpsc::Sender<Message>>>>,
    /// Writers' reports for the Raft loop (bounded by [`TRANSPORT_REPORTS_MAX`]).
    reports: (Sender<PeerObservation>, crossbeam_channel::Receiver<PeerObservation>),
    metrics: Arc<Metrics>,
    directory: Arc<PeerDirectory>,
    runtime: tokio::runtime::Handle,
}

impl Transport {
    /// Starts one writer task per peer of `directory.peers` on the current tokio runtime.
    pub fn start(directory: Arc<PeerDirectory>, metrics: Arc<Metrics>) -> Transport {
        let peers = directory.peers.read().map(|peers| peers.clone()).unwrap_or_default();
        assert!(!peers.contains_key(&directory.local_id), "a node is not its own peer");
        let transport = Transport {
            queues: Arc::default(),
            reports: crossbeam_channel::bounded(TRANSPORT_REPORTS_MAX),
            metrics,
            directory,
            runtime: tokio::runtime::Handle::current(),
        };
        for (peer, address) in peers {
            transport.start_writer(peer, address);
        }
        transport
    }

    /// Connects to exactly `peers` (id → `host:port`; this node's own id is skipped): starts
    /// a writer for each new peer or changed address, stops the writers of peers no longer
    /// listed. The Raft loop's to call, with the peer set it computed from the applied
    /// members. Callable from any thread.
    pub fn set_peers(&self, peers: &BTreeMap<u64, String>) {
        let local = self.directory.local_id;
        let wanted: BTreeMap<u64, String> =
            peers.iter().filter(|(peer, _)| **peer != local).map(|(peer, address)| (*peer, address.clone())).collect();
        let current = self.peers();
        // The table first: a new prober stops at once unless it finds its address there.
        if let Ok(mut table) = self.directory.peers.write() {
            table.clone_from(&wanted);
        }
        if let Ok(mut queues) = self.queues.write() {
            // Dropping a queue closes it, which stops its writer.
            queues.retain(|peer, _| wanted.contains_key(peer));
        }
        for (peer, address) in wanted.iter().filter(|(peer, address)| current.get(peer) != Some(address)) {
            self.start_writer(*peer, address.clone());
        }
        let queues = self.queues.read().map(|queues| queues.len()).unwrap_or(wanted.len());
        assert_eq!(queues, wanted.len(), "one queue per peer");
    }

    /// The peers this transport connects to (id → `host:port`).
    pub fn peers(&self) -> BTreeMap<u64, String> {
        self.directory.peers.read().map(|peers| peers.clone()).unwrap_or_default()
    }

    /// A report of a writer for the Raft loop, if one waits (see [`PeerObservation`]).
    pub fn next_report(&self) -> Option<PeerObservation> {
        self.reports.1.try_recv().ok()
    }

    /// Starts the writer (and prober) of `peer` at `address`, replacing an earlier one.
    fn start_writer(&self, peer: u64, address: String) {
        assert_ne!(peer, self.directory.local_id, "a node is not its own peer");
        let (sender, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        self.runtime.spawn(probe_peer(self.directory.clone(), peer, address.clone(), self.metrics.clone()));
        let writer = PeerWriter {
            directory: self.directory.clone(),
            peer,
            address,
            metrics: self.metrics.clone(),
            reports: self.reports.0.clone(),
        };
        self.runtime.spawn(writer.run(receiver));
        // Replacing an old queue closes it, which stops its writer.
        if let Ok(mut queues) = self.queues.write() {
            queues.insert(peer, sender);
        }
    }

    /// Queues `message`; drops it (counted) if the peer's queue is full or unknown.
    pub fn send(&self, message: Message) {
        let queues = self.queues.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(queue) = queues.get(&message.to) else {
            tracing::debug!(to = message.to, "dropping message to unknown peer");
            return;
        };
        if let Err(error) = queue.try_send(message) {
            let peer = match &error {
                mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message) => message.to,
            };
            self.metrics.peer_messages_dropped.with_label_values(&[&format!("{peer:x}")]).inc();
        }
    }

    /// Messages waiting in each peer's queue.
    pub fn queue_lengths(&self) -> Vec<(u64, usize)> {
        let queues = self.queues.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        queues.iter().map(|(peer, queue)| (*peer, queue.max_capacity() - queue.capacity())).collect()
    }
}

struct PeerWriter {
    directory: Arc<PeerDirectory>,
    peer: u64,
    address: String,
    metrics: Arc<Metrics>,
    /// Where this writer reports to the Raft loop (the transport's report queue).
    reports: Sender<PeerObservation>,
}

impl PeerWriter {
    async fn run(self, mut queue: mpsc::Receiver<Message>) {
        let mut delay = RECONNECT_DELAY_MIN;
        let mut outage: Option<Outage> = None;
        // What this writer last told the loop about reachability (reported on changes only).
        let mut reported_reachable: Option<bool> = None;
        loop {
            let stream = match self.connect().await {
                Ok(stream) => {
                    self.note_connected(outage.take(), &mut reported_reachable);
                    stream
                }
                Err(error) => {
                    tracing::debug!(peer = %format!("{:x}", self.peer), %error, "peer connect failed");
                    self.note_failed_dial(outage.get_or_insert_with(Outage::new), &error, &mut reported_reachable);
                    // Messages queued meanwhile are stale; drop them rather than flood later
                    // (etcd counts each message it could not send as a send failure).
                    let mut dropped = 1;
                    while queue.try_recv().is_ok() {
                        dropped += 1;
                    }
                    self.metrics
                        .etcd
                        .peer_sent_failures
                        .with_label_values(&[&format!("{:x}", self.peer)])
                        .inc_by(dropped);
                    if queue.is_closed() {
                        return; // the peer was removed or redirected
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RECONNECT_DELAY_MAX);
                    continue;
                }
            };
            let connected_at = Instant::now();
            let active = self
                .metrics
                .etcd
                .active_peers
                .with_label_values(&[&format!("{:x}", self.directory.local_id), &format!("{:x}", self.peer)]);
            active.set(1);
            let pumped = self.pump(stream, &mut queue).await;
            active.set(0);
            match pumped {
                Ok(()) => return, // queue closed: the node is stopping
                Err(error) => tracing::debug!(peer = %format!("{:x}", self.peer), %error, "peer connection lost"),
            }
            // A peer that refuses every handshake closes each connection at once: back off
            // as after a failed dial; a connection that lived a while reconnects quickly.
            if connected_at.elapsed() >= RECONNECT_DELAY_MAX {
                delay = RECONNECT_DELAY_MIN;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RECONNECT_DELAY_MAX);
        }
    }

    /// Reports `reachable` to the loop unless this writer already did.
    fn report_reachable(&self, reachable: bool, reported: &mut Option<bool>) {
        if *reported == Some(reachable) {
            return;
        }
        let observation = PeerObservation::Reachable { id: self.peer, reachable };
        if report(&self.reports, observation, &self.metrics) {
            *reported = Some(reachable);
        }
    }

    fn note_failed_dial(&self, outage: &mut Outage, error: &std::io::Error, reported: &mut Option<bool>) {
        if outage.record_failure(error) {
            self.report_reachable(false, reported);
            tracing::warn!(
                peer = %format!("{:x}", self.peer),
                address = %self.address,
                unreachable_for_seconds = outage.since.elapsed().as_secs(),
                failed_dials = outage.failed_dials,
                error = %outage.last_error,
                "peer unreachable (is it running? a majority of the members must run for the cluster to answer)"
            );
        }
    }

    fn note_connected(&self, outage: Option<Outage>, reported: &mut Option<bool>) {
        self.report_reachable(true, reported);
        if let Some(outage) = outage.filter(|outage| outage.last_warning.is_some()) {
            tracing::info!(
                peer = %format!("{:x}", self.peer),
                address = %self.address,
                unreachable_for_seconds = outage.since.elapsed().as_secs(),
                "peer reachable again"
            );
        }
    }

    async fn connect(&self) -> std::io::Result<MaybeTlsStream> {
        let stream = TcpStream::connect(&self.address).await?;
        stream.set_nodelay(true)?;
        let mut stream = connect_peer_tls(&self.directory, stream, &self.address).await?;
        let local = &self.directory.local_info;
        let handshake = wire::Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: self.directory.cluster_id,
            from: self.directory.local_id,
            to: self.peer,
            name: local.name.clone(),
            client_urls: local.client_urls.clone(),
            http_urls: local.http_urls.clone(),
        };
        let mut buffer = BytesMut::new();
        codec::encode_frame(&handshake, &mut buffer);
        stream.write_all(&buffer).await?;
        Ok(stream)
    }

    async fn pump(&self, stream: MaybeTlsStream, queue: &mut mpsc::Receiver<Message>) -> std::io::Result<()> {
        let (read_half, mut write_half) = tokio::io::split(stream);
        // The peer writes back only to say this member was removed; watched meanwhile.
        let watch =
            watch_replies(read_half, self.directory.local_id, self.peer, (self.reports.clone(), self.metrics.clone()));
        let mut replies = tokio::spawn(watch);
        let mut buffer = BytesMut::with_capacity(64 << 10);
        let peer_label = format!("{:x}", self.peer);
        let result = async {
            loop {
                // A peer that closes the connection (it stopped) ends it here, not only at
                // the next failed write, so an idle link notices a dead peer too.
                let first = tokio::select! {
                    next = queue.recv() => next,
                    _ = &mut replies => {
                        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "peer closed the connection"));
                    }
                };
                let Some(first) = first else { return Ok(()) };
                buffer.clear();
                encode_message(&first, &mut buffer);
                while buffer.len() < WRITE_BATCH_BYTES_MAX {
                    let Ok(next) = queue.try_recv() else { break };
                    encode_message(&next, &mut buffer);
                }
                self.metrics.peer_bytes_sent.inc_by(buffer.len() as u64);
                self.metrics.etcd.peer_sent_bytes.with_label_values(&[&peer_label]).inc_by(buffer.len() as u64);
                write_half.write_all(&buffer).await?;
            }
        }
        .await;
        replies.abort();
        result
    }
}

/// Queues `observation` for the Raft loop without waiting; a full queue drops it (counted
/// in `raftkv_inbound_messages_dropped_total`). True if it was queued.
fn report<I>(queue: &Sender<I>, observation: I, metrics: &Metrics) -> bool {
    match queue.try_send(observation) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            metrics.inbound_messages_dropped.inc();
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// Reads what a peer writes back on an outgoing connection: at most a [`wire::Removed`]
/// notice naming this member (`local_id`), reported to the Raft loop (which decides to
/// stop). Anything else ends the watch; the connection itself is the writer's to close.
async fn watch_replies(
    mut stream: tokio::io::ReadHalf<MaybeTlsStream>,
    local_id: u64,
    peer: u64,
    (reports, metrics): (Sender<PeerObservation>, Arc<Metrics>),
) {
    let mut buffer = BytesMut::with_capacity(256);
    let Ok(Some(payload)) = read_frame(&mut stream, &mut buffer).await else { return };
    match codec::decode::<wire::Removed>(payload) {
        Ok(removed) if removed.member_id == local_id => {
            tracing::warn!(peer = %format!("{peer:x}"), "peer says this member has been removed from the cluster");
            report(&reports, PeerObservation::RemovedSelf { told_by: peer }, &metrics);
        }
        Ok(removed) => {
            tracing::warn!(peer = %format!("{peer:x}"), member = %format!("{:x}", removed.member_id), "peer sent a removal notice for another member; ignored")
        }
        Err(error) => tracing::warn!(peer = %format!("{peer:x}"), %error, "malformed reply from peer; ignored"),
    }
}

fn envelope(payload: wire::envelope::Payload) -> wire::Envelope {
    wire::Envelope { payload: Some(payload) }
}

/// Encodes a message as one frame.
fn encode_message(message: &Message, buffer: &mut BytesMut) {
    codec::encode_frame(&envelope(wire::envelope::Payload::Message(codec::message_to_wire(message))), buffer);
}

/// Accepts peer connections and delivers their messages to `inbound` (the loop's peer
/// queue), each connection's handshake first, as a [`PeerObservation::Introduced`].
pub async fn serve_peers<I: Send + From<PeerObservation> + 'static>(
    listener: TcpListener,
    directory: Arc<PeerDirectory>,
    inbound: Sender<I>,
    wrap: fn(Message) -> I,
    metrics: Arc<Metrics>,
) {
    let refusals = Arc::new(RepeatLimiter::default());
    loop {
        let (stream, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let reader =
            PeerReader { directory: directory.clone(), inbound: inbound.clone(), wrap, metrics: metrics.clone() };
        let refusals = refusals.clone();
        tokio::spawn(async move {
            if let Err(error) = reader.run(stream).await {
                let error = error.to_string();
                if let Some(suppressed) = refusals.admit(&error) {
                    tracing::warn!(%address, %error, repeats_not_logged = suppressed, "closed peer connection");
                }
            }
        });
    }
}

/// Logs a repeated message (a peer whose every connection is refused, several per second)
/// at most once per [`UNREACHABLE_WARNING_INTERVAL`].
#[derive(Default)]
struct RepeatLimiter {
    /// Message → when it was last logged, and how often it came since.
    seen: std::sync::Mutex<BTreeMap<String, (Instant, u64)>>,
}

impl RepeatLimiter {
    /// Messages remembered at most (older ones are forgotten, and logged again).
    const MESSAGES_MAX: usize = 256;

    /// `Some(times it came unlogged since it was last logged)` when `message` is to be logged now.
    fn admit(&self, message: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if let Some((logged_at, repeats)) = seen.get_mut(message) {
            if now.duration_since(*logged_at) < UNREACHABLE_WARNING_INTERVAL {
                *repeats += 1;
                return None;
            }
            let suppressed = *repeats;
            *logged_at = now;
            *repeats = 0;
            return Some(suppressed);
        }
        if seen.len() >= Self::MESSAGES_MAX {
            seen.clear();
        }
        seen.insert(message.to_string(), (now, 0));
        Some(0)
    }
}

/// Why an incoming peer connection was closed.
#[derive(Debug, thiserror::Error)]
enum ReaderError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("refused: {0}")]
    Refused(String),
}

struct PeerReader<I> {
    directory: Arc<PeerDirectory>,
    inbound: Sender<I>,
    wrap: fn(Message) -> I,
    metrics: Arc<Metrics>,
}

impl<I: From<PeerObservation>> PeerReader<I> {
    async fn run(self, stream: TcpStream) -> Result<(), ReaderError> {
        stream.set_nodelay(true)?;
        let mut stream = accept_peer_tls(&self.directory, stream).await?;
        let mut buffer = BytesMut::with_capacity(64 << 10);
        if self.serve_members_request(&mut stream, &mut buffer).await? {
            return Ok(());
        }
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut stream, &mut buffer))
            .await
            .map_err(|_| ReaderError::Refused("no handshake".into()))??;
        let Some(handshake) = handshake else { return Ok(()) };
        let handshake: wire::Handshake = codec::decode(handshake)?;
        if self.directory.members.is_removed(handshake.from) {
            return Err(refuse_removed(&mut stream, handshake.from).await);
        }
        let (peer, info) = self.check_handshake(handshake)?;
        let peer_label = format!("{peer:x}");
        // The loop hears who connected before any of its messages (retried with each frame
        // while the peer queue is full; the frame is dropped meanwhile).
        let mut introduction = Some(I::from(PeerObservation::Introduced { id: peer, info }));
        self.introduce(&mut introduction);
        loop {
            let Some(payload) = read_frame(&mut stream, &mut buffer).await? else { return Ok(()) };
            if self.directory.members.is_removed(peer) {
                return Err(refuse_removed(&mut stream, peer).await);
            }
            self.metrics.peer_bytes_received.inc_by(payload.len() as u64);
            self.metrics.etcd.peer_received_bytes.with_label_values(&[&peer_label]).inc_by(payload.len() as u64);
            let envelope: wire::Envelope = codec::decode(payload)?;
            match envelope.payload {
                Some(wire::envelope::Payload::Message(message)) => {
                    let message = codec::message_from_wire(message)?;
                    if message.from != peer || message.to != self.directory.local_id {
                        return Err(ReaderError::Refused(format!(
                            "message {:x}->{:x} on this connection",
                            message.from, message.to
                        )));
                    }
                    if self.introduce(&mut introduction) {
                        self.deliver(message);
                    }
                }
                None => return Err(CodecError::Malformed("empty envelope".into()).into()),
            }
        }
    }

    /// etcd's members endpoint on the peer port: a member that joins a running cluster
    /// asks `GET /members` for the cluster id and the member list. A Raft frame never
    /// starts with "GET " (that length exceeds the frame limit). True if it was served.
    async fn serve_members_request(
        &self,
        stream: &mut MaybeTlsStream,
        buffer: &mut BytesMut,
    ) -> Result<bool, ReaderError> {
        const REQUEST_BYTES_MAX: usize = 8192;
        let refused = |_| ReaderError::Refused("no handshake".into());
        while buffer.len() < 4 {
            if tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_buf(buffer)).await.map_err(refused)?? == 0 {
                return Ok(false);
            }
        }
        if &buffer[..4] != b"GET " {
            return Ok(false);
        }
        while !buffer.windows(4).any(|window| window == b"\r\n\r\n") {
            if buffer.len() > REQUEST_BYTES_MAX {
                return Err(ReaderError::Refused("HTTP request too large".into()));
            }
            if tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_buf(buffer)).await.map_err(refused)?? == 0 {
                return Err(ReaderError::Refused("incomplete HTTP request".into()));
            }
        }
        let path = buffer[4..].split(|byte| *byte == b' ').next().unwrap_or_default().to_vec();
        let (status, body) = if path == b"/members" {
            ("200 OK", crate::membership::members_json(&self.directory))
        } else if let Some(query) = path.strip_prefix(HASH_KV_PATH.as_bytes()) {
            self.hash_kv_answer(query).await
        } else if path == PROBE_PATH.as_bytes() {
            ("200 OK", "{\"health\":\"true\"}".to_string()) // a peer measuring its round trip
        } else {
            ("404 Not Found", "{\"message\":\"not found\"}".to_string())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Etcd-Cluster-ID: {:x}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.directory.cluster_id,
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        Ok(true)
    }

    /// `GET /members/hashkv?revision=N` (etcd's peer endpoint for the corruption checks,
    /// which needs no client credentials): `Maintenance.HashKV`'s answer as JSON
    /// (`header.revision`, `hash`, `compact_revision`), or etcd's error for a compacted or
    /// future revision.
    async fn hash_kv_answer(&self, query: &[u8]) -> (&'static str, String) {
        let error = |message: &str| serde_json::json!({ "message": message }).to_string();
        let query = String::from_utf8_lossy(query);
        let revision = match query.strip_prefix("?revision=").map(str::parse::<i64>) {
            None if query.is_empty() => 0,
            Some(Ok(revision)) => revision,
            _ => return ("400 Bad Request", error("bad revision: want ?revision=N")),
        };
        let Some(store) = self.directory.store.get() else {
            return ("503 Service Unavailable", error("the store is not loaded yet"));
        };
        let store = store.latest();
        if revision > store.current_revision() {
            return ("400 Bad Request", error(kv::Error::FutureRevision.message()));
        }
        if revision > 0 && revision < store.compact_revision() {
            return ("400 Bad Request", error(kv::Error::Compacted.message()));
        }
        let (hash, compact_revision, hash_revision) = store.hash_kv(revision);
        let header = serde_json::json!({
            "cluster_id": self.directory.cluster_id,
            "member_id": self.directory.local_id,
            "revision": store.current_revision(),
        });
        let body = serde_json::json!({
            "header": header, "hash": hash, "compact_revision": compact_revision, "hash_revision": hash_revision,
        });
        ("200 OK", body.to_string())
    }

    /// Checks a handshake; on success, who connected and what it told about itself.
    fn check_handshake(&self, handshake: wire::Handshake) -> Result<(u64, PeerInfo), ReaderError> {
        if handshake.protocol_version != PROTOCOL_VERSION {
            return Err(ReaderError::Refused(format!("protocol version {}", handshake.protocol_version)));
        }
        if handshake.cluster_id != self.directory.cluster_id {
            return Err(ReaderError::Refused(format!(
                "peer {:x} belongs to cluster {:x}, this member {:x} to cluster {:x}: every member must be \
                 started with the same --initial-cluster (the same names and peer URLs) and --initial-cluster-token",
                handshake.from, handshake.cluster_id, self.directory.local_id, self.directory.cluster_id
            )));
        }
        if !self.directory.is_peer(handshake.from) {
            return Err(ReaderError::Refused(format!(
                "member {:x} is not a member of cluster {:x} as this member {:x} knows it: the members' \
                 --initial-cluster lists must match (or add it with etcdctl member add)",
                handshake.from, self.directory.cluster_id, self.directory.local_id
            )));
        }
        if handshake.to != self.directory.local_id {
            return Err(ReaderError::Refused(format!(
                "addressed to member {:x}, this is {:x}",
                handshake.to, self.directory.local_id
            )));
        }
        let info = PeerInfo {
            name: handshake.name.chars().take(256).collect(),
            client_urls: handshake.client_urls.into_iter().take(16).collect(),
            http_urls: handshake.http_urls.into_iter().take(16).collect(),
        };
        Ok((handshake.from, info))
    }

    /// Queues the connection's pending introduction for the loop; true once it is queued
    /// (then or earlier).
    fn introduce(&self, introduction: &mut Option<I>) -> bool {
        let Some(observation) = introduction.take() else { return true };
        match self.inbound.try_send(observation) {
            Ok(()) => true,
            Err(TrySendError::Full(observation)) => {
                self.metrics.inbound_messages_dropped.inc();
                *introduction = Some(observation);
                false
            }
            Err(TrySendError::Disconnected(_)) => true,
        }
    }

    fn deliver(&self, message: Message) {
        match self.inbound.try_send((self.wrap)(message)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.inbound_messages_dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Tells a removed member it was removed (best effort, bounded) before its connection closes.
async fn refuse_removed(stream: &mut MaybeTlsStream, member: u64) -> ReaderError {
    let mut notice = BytesMut::new();
    codec::encode_frame(&wire::Removed { member_id: member }, &mut notice);
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.write_all(&notice)).await;
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.shutdown()).await;
    ReaderError::Refused(format!("member {member:x} has been removed from the cluster"))
}

/// Reads until one whole frame is buffered; `None` at a clean end of stream.
async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Result<Option<Bytes>, ReaderError> {
    loop {
        if let Some(payload) = codec::decode_frame(buffer)? {
            return Ok(Some(payload));
        }
        if stream.read_buf(buffer).await? == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            return Err(CodecError::Malformed("connection closed mid-frame".into()).into());
        }
    }
}

/// Wraps a dialed peer connection in TLS when the peer URLs are `https://`.
async fn connect_peer_tls(
    directory: &PeerDirectory,
    stream: TcpStream,
    address: &str,
) -> std::io::Result<MaybeTlsStream> {
    let connecting = MaybeTlsStream::connect(stream, address, directory.tls.connector.as_ref());
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("TLS handshake with peer {address} timed out"))
    })?
}

/// Wraps an accepted peer connection in TLS when this member listens on `https://`; a
/// peer whose certificate the peer CA did not sign is refused here, before any frame.
async fn accept_peer_tls(directory: &PeerDirectory, stream: TcpStream) -> Result<MaybeTlsStream, ReaderError> {
    let accepting = MaybeTlsStream::accept(stream, directory.tls.acceptor.as_ref());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(ReaderError::Refused(format!("peer TLS handshake failed: {error}"))),
        Err(_) => Err(ReaderError::Refused("peer TLS handshake timed out".into())),
    }
}

/// etcd's path for the probes peers send each other to measure their round trip.
pub const PROBE_PATH: &str = "/raft/probing";
/// Path of the peer port's hash endpoint (etcd's), for the corruption checks.
pub const HASH_KV_PATH: &str = "/members/hashkv";
/// How often each peer is probed for its round trip time.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Measures the round trip to `peer` every [`PROBE_INTERVAL`] while it is a peer at
/// `address`: `GET /raft/probing` on its peer port, timed from the request to the whole
/// answer (the connection, and its TLS handshake, are made before the clock starts).
/// Each answer is observed in `etcd_network_peer_round_trip_time_seconds{To}`.
async fn probe_peer(directory: Arc<PeerDirectory>, peer: u64, address: String, metrics: Arc<Metrics>) {
    let label = format!("{peer:x}");
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let current = directory.peers.read().map(|peers| peers.get(&peer) == Some(&address)).unwrap_or(false);
        if !current {
            return; // removed, or redirected (a new prober took over)
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, probe_once(&directory, &address)).await {
            Ok(Ok(round_trip)) => {
                metrics.etcd.peer_round_trip_time_seconds.with_label_values(&[&label]).observe(round_trip.as_secs_f64())
            }
            Ok(Err(error)) => tracing::debug!(peer = %label, %error, "peer probe failed"),
            Err(_) => tracing::debug!(peer = %label, "peer probe timed out"),
        }
    }
}

async fn probe_once(directory: &PeerDirectory, address: &str) -> std::io::Result<Duration> {
    const RESPONSE_BYTES_MAX: u64 = 4096;
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut stream = connect_peer_tls(directory, stream, address).await?;
    let request = format!("GET {PROBE_PATH} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    (&mut stream).take(RESPONSE_BYTES_MAX).read_to_end(&mut response).await?;
    let round_trip = started.elapsed();
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("the peer did not answer the probe with 200"));
    }
    Ok(round_trip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Membership;

    const CLUSTER_ID: u64 = 7;

    fn directory(local_id: u64, peers: &[(u64, &str)]) -> Arc<PeerDirectory> {
        Arc::new(PeerDirectory {
            cluster_id: CLUSTER_ID,
            local_id,
            local_info: PeerInfo { name: format!("n{local_id}"), ..PeerInfo::default() },
            peers: std::sync::RwLock::new(peers.iter().map(|(id, address)| (*id, address.to_string())).collect()),
            known: Default::default(),
            tls: crate::tls::PeerTls { acceptor: None, connector: None },
            members: Default::default(),
            unreachable: Default::default(),
            store: Default::default(),
        })
    }

    /// What a test loop receives on its peer queue.
    #[derive(Debug)]
    enum TestInput {
        Message(Message),
        Observed(PeerObservation),
    }

    impl From<PeerObservation> for TestInput {
        fn from(observation: PeerObservation) -> TestInput {
            TestInput::Observed(observation)
        }
    }

    /// Polls `poll` until it yields (a bound, not a timing assertion: 10 s at most).
    async fn wait_for<T>(mut poll: impl FnMut() -> Option<T>) -> T {
        for _ in 0..2000 {
            if let Some(value) = poll() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("nothing arrived within 10 s");
    }

    fn handshake_frame(from: u64, to: u64, name: &str, client_urls: &[&str]) -> BytesMut {
        let handshake = wire::Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: CLUSTER_ID,
            from,
            to,
            name: name.to_string(),
            client_urls: client_urls.iter().map(|url| url.to_string()).collect(),
            http_urls: Vec::new(),
        };
        let mut buffer = BytesMut::new();
        codec::encode_frame(&handshake, &mut buffer);
        buffer
    }

    #[tokio::test]
    async fn a_handshake_changes_the_known_table_only_once_the_loop_observes_it() {
        let directory = directory(1, &[(2, "127.0.0.1:26901")]);
        let metrics = Metrics::for_member(1);
        let listener = TcpListener::bind("127.0.0.1:26902").await.unwrap();
        let (inbound, receiver) = crossbeam_channel::bounded(16);
        tokio::spawn(serve_peers(listener, directory.clone(), inbound, TestInput::Message, metrics.clone()));
        let mut stream = TcpStream::connect("127.0.0.1:26902").await.unwrap();
        let mut frames = handshake_frame(2, 1, "n2", &["http://127.0.0.1:26903"]);
        let heartbeat =
            Message { from: 2, to: 1, term: 1, body: raft::MessageBody::Heartbeat { commit: 0, read_round: 0 } };
        encode_message(&heartbeat, &mut frames);
        stream.write_all(&frames).await.unwrap();

        let first = wait_for(|| receiver.try_recv().ok()).await;
        let TestInput::Observed(observation) = first else { panic!("the handshake comes first, got {first:?}") };
        let info =
            PeerInfo { name: "n2".into(), client_urls: vec!["http://127.0.0.1:26903".into()], http_urls: vec![] };
        assert_eq!(observation, PeerObservation::Introduced { id: 2, info: info.clone() });
        let second = wait_for(|| receiver.try_recv().ok()).await;
        assert!(matches!(second, TestInput::Message(message) if message == heartbeat), "then its messages");
        assert!(!directory.known.read().unwrap().contains_key(&2), "the network task did not write the known table");

        // The loop decides: member 2 is a peer, so what it said is recorded.
        let transport = Transport::start(directory.clone(), metrics);
        let mut membership = Membership::new(directory.clone(), transport, "token".into());
        membership.observe(observation);
        assert_eq!(directory.known.read().unwrap().get(&2), Some(&info));
        membership.observe(PeerObservation::Introduced { id: 9, info: PeerInfo::default() });
        assert!(!directory.known.read().unwrap().contains_key(&9), "the loop ignores a member it does not dial");
    }

    fn add_entry(index: u64, member: &proto::etcdserverpb::Member) -> raft::Entry {
        let context = kv::MemberChange { action: kv::MemberAction::Add, member: member.clone() }.encode();
        let single = raft::ConfChangeSingle { kind: raft::ConfChangeKind::AddVoter, node_id: member.id };
        let change = raft::ConfChange { changes: vec![single], context: context.into() };
        raft::Entry { term: 1, index, kind: raft::EntryKind::Config, data: change.encode() }
    }

    #[tokio::test]
    async fn an_applied_member_add_is_dialled_only_once_the_loop_pushes_the_peer_set() {
        let directory = directory(1, &[(2, "127.0.0.1:26911")]);
        let transport = Transport::start(directory.clone(), Metrics::for_member(1));
        let mut membership = Membership::new(directory.clone(), transport.clone(), "token".into());
        let mut store = kv::Store::default();
        let member = |id: u64, port: u16| proto::etcdserverpb::Member {
            id,
            name: format!("n{id}"),
            peer_ur_ls: vec![format!("http://127.0.0.1:{port}")],
            client_ur_ls: Vec::new(),
            is_learner: false,
        };
        store.seed_members([member(1, 26910), member(2, 26911)]);
        let listener = TcpListener::bind("127.0.0.1:26912").await.unwrap();

        let applied = membership.apply_entry(&mut store, &add_entry(1, &member(3, 26912)));
        assert!(!applied.removed_self);
        assert!(store.member(3).is_some(), "the store applied the add");
        assert!(!transport.peers().contains_key(&3), "apply does not reach the transport");
        let peers = membership.take_peer_change().expect("the add changed the peer set");
        assert_eq!(peers.get(&3).map(String::as_str), Some("127.0.0.1:26912"));
        assert_eq!(membership.take_peer_change(), None, "told once");

        // The loop pushes the new set: only now does the transport dial member 3.
        transport.set_peers(&peers);
        assert_eq!(transport.peers(), peers);
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap().unwrap();
        let mut buffer = BytesMut::new();
        let handshake = read_frame(&mut stream, &mut buffer).await.unwrap().expect("a handshake");
        let handshake: wire::Handshake = codec::decode(handshake).unwrap();
        assert_eq!((handshake.from, handshake.to), (1, 3));
    }

    #[tokio::test]
    async fn a_removal_notice_stops_the_member_only_once_the_loop_observes_it() {
        let listener = TcpListener::bind("127.0.0.1:26921").await.unwrap();
        let directory = directory(1, &[(2, "127.0.0.1:26921")]);
        let transport = Transport::start(directory.clone(), Metrics::for_member(1));
        let mut membership = Membership::new(directory.clone(), transport.clone(), "token".into());
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap().unwrap();
        let mut buffer = BytesMut::new();
        read_frame(&mut stream, &mut buffer).await.unwrap().expect("a handshake");
        let mut notice = BytesMut::new();
        codec::encode_frame(&wire::Removed { member_id: 1 }, &mut notice);
        stream.write_all(&notice).await.unwrap();

        let mut reports = Vec::new();
        let removal = wait_for(|| {
            let report = transport.next_report()?;
            reports.push(report.clone());
            matches!(report, PeerObservation::RemovedSelf { .. }).then_some(report)
        })
        .await;
        assert_eq!(removal, PeerObservation::RemovedSelf { told_by: 2 });
        assert!(reports.contains(&PeerObservation::Reachable { id: 2, reachable: true }), "{reports:?}");
        assert!(!directory.members.is_removed(1), "the network task did not write the member table");
        membership.on_tick(100, 0);
        assert!(!membership.should_stop(1_000), "nothing decided yet");

        membership.observe(removal);
        assert!(directory.members.is_removed(1));
        membership.on_tick(100, 0);
        assert!(!membership.should_stop(100), "a removed member lingers a few ticks");
        assert!(membership.should_stop(1_000));
    }
}
