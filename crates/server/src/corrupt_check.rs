//! Data corruption checks, as etcd 3.4 does them (`etcdserver/corrupt.go`):
//!
//! - `--experimental-initial-corrupt-check`: once this member has caught up (it knows a
//!   leader and applied everything committed), it compares its `HashKV` at its current
//!   revision with each peer's `HashKV` at that revision. A peer whose hash differs while
//!   its compact revision is the same is a mismatch; on any mismatch the member refuses to
//!   serve (`raftkv serve` exits non-zero naming the peers). etcd does this before serving
//!   clients; so does raftkv (its client listeners are bound but not yet served).
//! - `--experimental-corrupt-check-time`: every interval the leader takes its own hash,
//!   asks every follower for its hash at the leader's revision, waits for a linearizable
//!   read, takes its own hash again, and raises the CORRUPT alarm through the log when:
//!   its own hash changed at an unchanged revision (the leader's id); a follower is at a
//!   newer revision or compact revision than the leader (the follower's id); a follower
//!   with the leader's compact revision has another hash (the follower's id). As etcd, one
//!   alarm per pass (the first finding); every finding is logged with the member's id
//!   and name.
//!
//! As etcd, a member asks its peers on their peer URLs (`GET /members/hashkv?revision=N`,
//! answered by the peer port itself, see `transport.rs`), with the peer TLS settings
//! (`--peer-trusted-ca-file`, `--peer-cert-file`, `--peer-key-file`), so the checks need no
//! client credentials and work with auth enabled. A peer that cannot be asked
//! (unreachable, its store not loaded yet) is skipped with a warning, as etcd skips peers
//! it cannot reach.

use std::time::{Duration, Instant};

use proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ServeArgs;
use crate::handle::{Member, NodeHandle};

/// Pause between polls while waiting for this member to catch up.
const CATCH_UP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A key-value hash: what `HashKV` answers, with the revision it describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    /// The hash of the key-value history up to `revision`.
    pub hash: u32,
    /// The member's current revision (a peer's: the revision in its response header).
    pub revision: i64,
    /// The member's compact revision.
    pub compact_revision: i64,
}

/// A peer's `HashKV` answer, as the comparison sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHash {
    /// The peer's member id (from its response header, as etcd takes it).
    pub member_id: u64,
    /// Its answer.
    pub hash: KvHash,
}

/// Why the periodic check found a member bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The leader's own hash changed while its revision and compact revision did not.
    LeaderHashChanged,
    /// A follower's revision is newer than the leader's.
    FollowerRevisionAhead,
    /// A follower's compact revision is newer than the leader's.
    FollowerCompactRevisionAhead,
    /// A follower with the leader's compact revision has another hash.
    FollowerHashDiffers,
}

impl FindingKind {
    /// etcd's log message for the finding.
    pub fn message(self) -> &'static str {
        match self {
            FindingKind::LeaderHashChanged => "found hash mismatch",
            FindingKind::FollowerRevisionAhead => "revision from follower must be less than or equal to leader's",
            FindingKind::FollowerCompactRevisionAhead => {
                "compact revision from follower must be less than or equal to leader's"
            }
            FindingKind::FollowerHashDiffers => "same compact revision then hashes must match",
        }
    }
}

/// One member found bad by the periodic check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The member the CORRUPT alarm names.
    pub member_id: u64,
    /// Why.
    pub kind: FindingKind,
}

/// The initial check's verdict: the peers whose hash differs from `local` at the same
/// compact revision (etcd counts only those as mismatches; a peer with another compact
/// revision cannot be compared and is only logged).
pub fn initial_mismatches(local: KvHash, peers: &[PeerHash]) -> Vec<u64> {
    peers
        .iter()
        .filter(|peer| peer.hash.hash != local.hash && peer.hash.compact_revision == local.compact_revision)
        .map(|peer| peer.member_id)
        .collect()
}

/// The periodic check's findings, in etcd's order: the leader's hash `before` asking the
/// peers (whose answers are at `before.revision`) and `after` a linearizable read.
pub fn periodic_findings(leader_id: u64, before: KvHash, after: KvHash, peers: &[PeerHash]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let unchanged = after.revision == before.revision && after.compact_revision == before.compact_revision;
    if after.hash != before.hash && unchanged {
        findings.push(Finding { member_id: leader_id, kind: FindingKind::LeaderHashChanged });
    }
    for peer in peers {
        let mut found = |kind| findings.push(Finding { member_id: peer.member_id, kind });
        if peer.hash.revision > after.revision {
            found(FindingKind::FollowerRevisionAhead);
        }
        if peer.hash.compact_revision > after.compact_revision {
            found(FindingKind::FollowerCompactRevisionAhead);
        }
        if peer.hash.compact_revision == before.compact_revision && peer.hash.hash != before.hash {
            found(FindingKind::FollowerHashDiffers);
        }
    }
    findings
}

/// What asking one peer gave.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PeerAnswer {
    Hash(PeerHash),
    /// The peer is behind the asked revision (etcd: `ErrFutureRev`).
    FutureRevision,
    /// The peer compacted past the asked revision (etcd: `ErrCompacted`).
    Compacted,
    /// Any other failure, with its reason.
    Failed(String),
}

/// How this member reaches the others' client URLs.
#[derive(Clone)]
struct Settings {
    /// Dials `https://` peer URLs (the peer TLS settings).
    peer_tls: Option<tokio_rustls::TlsConnector>,
    /// Bound of each peer call, and of the wait for catching up (etcd's request timeout:
    /// `--request-timeout` plus two election timeouts).
    timeout: Duration,
}

/// Runs the initial check when `--experimental-initial-corrupt-check` is set and starts
/// the periodic check (a task on every member, acting while it leads) when
/// `--experimental-corrupt-check-time` is not 0; the task ends when `stop` turns true.
/// An error means this member's data differs from a peer's: it must not serve.
pub async fn start(
    args: &ServeArgs,
    handle: &NodeHandle,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, String> {
    let enabled = args.experimental_initial_corrupt_check || !args.experimental_corrupt_check_time.is_zero();
    if !enabled {
        return Ok(None);
    }
    let settings = Settings {
        peer_tls: crate::tls::PeerTls::from_args(args)?.connector,
        timeout: Duration::from_secs(args.request_timeout_seconds) + 2 * Duration::from_millis(args.election_timeout),
    };
    if args.experimental_initial_corrupt_check {
        initial_check(handle, &settings).await?;
    }
    let interval = args.experimental_corrupt_check_time;
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some(tokio::spawn(run_periodic(handle.clone(), settings, interval, stop))))
}

/// etcd's `CheckInitialHashKV`.
async fn initial_check(handle: &NodeHandle, settings: &Settings) -> Result<(), String> {
    let local_id = handle.status().member_id;
    tracing::info!(local_member_id = %hex(local_id), timeout = ?settings.timeout, "starting initial corruption check");
    if !wait_until_caught_up(handle, settings.timeout).await {
        tracing::warn!(
            local_member_id = %hex(local_id),
            "no leader, or not caught up with it, within the request timeout: checking the local data as it is"
        );
    }
    let local = local_hash(handle).await;
    let answers = peer_hashes(handle, settings, local.revision).await;
    let members = handle.members();
    let mut answered = Vec::new();
    for (member, answer) in &answers {
        match answer {
            PeerAnswer::Hash(peer) => {
                log_initial_comparison(local_id, local, member, peer);
                answered.push(*peer);
            }
            other => log_unanswered(member, local.revision, other),
        }
    }
    let mismatches = initial_mismatches(local, &answered);
    if mismatches.is_empty() {
        tracing::info!(
            local_member_id = %hex(local_id),
            peers_compared = answered.len(),
            "initial corruption checking passed; no corruption"
        );
        return Ok(());
    }
    let named: Vec<String> = mismatches.iter().map(|id| describe(&members, *id)).collect();
    Err(format!(
        "{} found data inconsistency with peers: {} (hash at revision {} differs at the same compact revision {}); \
         not serving",
        hex(local_id),
        named.join(", "),
        local.revision,
        local.compact_revision
    ))
}

fn log_initial_comparison(local_id: u64, local: KvHash, member: &Member, peer: &PeerHash) {
    if peer.hash.hash == local.hash {
        return;
    }
    let same_compact_revision = peer.hash.compact_revision == local.compact_revision;
    let message = if same_compact_revision {
        "found different hash values from remote peer"
    } else {
        "found different compact revision values from remote peer"
    };
    tracing::warn!(
        local_member_id = %hex(local_id),
        local_member_revision = local.revision,
        local_member_compact_revision = local.compact_revision,
        local_member_hash = local.hash,
        remote_peer_id = %hex(peer.member_id),
        remote_peer_name = %member.name,
        remote_peer_endpoints = ?member.client_urls,
        remote_peer_revision = peer.hash.revision,
        remote_peer_compact_revision = peer.hash.compact_revision,
        remote_peer_hash = peer.hash.hash,
        "{message}"
    );
}

fn log_unanswered(member: &Member, revision: i64, answer: &PeerAnswer) {
    let message = match answer {
        PeerAnswer::Hash(_) => return,
        PeerAnswer::FutureRevision => "cannot fetch hash from slow remote peer".to_string(),
        PeerAnswer::Compacted => "cannot fetch hash from remote peer; local member is behind".to_string(),
        PeerAnswer::Failed(reason) => format!("cannot fetch hash from remote peer: {reason}"),
    };
    tracing::warn!(
        remote_peer_id = %hex(member.id),
        remote_peer_name = %member.name,
        remote_peer_endpoints = ?member.client_urls,
        requested_revision = revision,
        "{message}"
    );
}

/// Waits (at most `timeout`) until this member knows a leader and has applied everything
/// committed (a read barrier succeeded). False if it did not get there in time.
async fn wait_until_caught_up(handle: &NodeHandle, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if handle.status().leader != 0 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok(())) = tokio::time::timeout(remaining, handle.read_barrier()).await {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(CATCH_UP_POLL_INTERVAL).await;
    }
}

/// This member's `HashKV` at its current revision.
async fn local_hash(handle: &NodeHandle) -> KvHash {
    let store = handle.read_view();
    let (hash, compact_revision, revision) = store.hash_kv(0);
    KvHash { hash, revision, compact_revision }
}

/// Every other member's answer to `HashKV(revision)`, asked at the same time.
async fn peer_hashes(handle: &NodeHandle, settings: &Settings, revision: i64) -> Vec<(Member, PeerAnswer)> {
    let local_id = handle.status().member_id;
    let peers: Vec<Member> = handle.members().into_iter().filter(|member| member.id != local_id).collect();
    let asks = peers.into_iter().map(|member| async move {
        let answer = ask_member(&member, settings, revision).await;
        (member, answer)
    });
    futures::future::join_all(asks).await
}

/// Asks each of `member`'s peer URLs in turn until one answers (as etcd does).
async fn ask_member(member: &Member, settings: &Settings, revision: i64) -> PeerAnswer {
    let mut last = PeerAnswer::Failed("no peer URL of this member is known".to_string());
    for url in &member.peer_urls {
        last = ask_url(url, settings, revision).await;
        if !matches!(last, PeerAnswer::Failed(_)) {
            break;
        }
    }
    last
}

async fn ask_url(url: &str, settings: &Settings, revision: i64) -> PeerAnswer {
    let address = match crate::config::parse_url(url) {
        Ok(address) => address,
        Err(error) => return PeerAnswer::Failed(format!("{url}: {error}")),
    };
    if crate::config::is_https(url) && settings.peer_tls.is_none() {
        return PeerAnswer::Failed(format!("{url} is https:// and this member has no peer TLS settings"));
    }
    let path = format!("{}?revision={revision}", crate::transport::HASH_KV_PATH);
    let request = crate::membership::peer_http_get(&address, settings.peer_tls.as_ref(), &path);
    match tokio::time::timeout(settings.timeout, request).await {
        Ok(Ok(response)) => {
            parse_hash_answer(&response).unwrap_or_else(|error| PeerAnswer::Failed(format!("{url}: {error}")))
        }
        Ok(Err(error)) => PeerAnswer::Failed(format!("{url}: {error}")),
        Err(_) => PeerAnswer::Failed(format!("{url}: no hash within {:?}", settings.timeout)),
    }
}

/// Reads the peer port's answer to `GET /members/hashkv`.
fn parse_hash_answer(response: &[u8]) -> Result<PeerAnswer, String> {
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").ok_or("truncated HTTP answer")?;
    let status_line = String::from_utf8_lossy(&response[..split]).lines().next().unwrap_or_default().to_string();
    let body: serde_json::Value =
        serde_json::from_slice(&response[split + 4..]).map_err(|error| format!("{status_line}: {error}"))?;
    if !status_line.starts_with("HTTP/1.1 200") {
        let message = body["message"].as_str().unwrap_or_default();
        if message == kv::Error::FutureRevision.message() {
            return Ok(PeerAnswer::FutureRevision);
        }
        if message == kv::Error::Compacted.message() {
            return Ok(PeerAnswer::Compacted);
        }
        return Err(format!("{status_line}: {message}"));
    }
    let number = |value: &serde_json::Value| value.as_i64().ok_or_else(|| format!("not a hash answer: {body}"));
    let hash = u32::try_from(number(&body["hash"])?).map_err(|error| error.to_string())?;
    let member_id = body["header"]["member_id"].as_u64().ok_or_else(|| format!("no member id: {body}"))?;
    let hash = KvHash {
        hash,
        revision: number(&body["header"]["revision"])?,
        compact_revision: number(&body["compact_revision"])?,
    };
    Ok(PeerAnswer::Hash(PeerHash { member_id, hash }))
}

/// etcd's `monitorKVHash`: every `interval`, a check pass while this member leads.
async fn run_periodic(handle: NodeHandle, settings: Settings, interval: Duration, mut stop: watch::Receiver<bool>) {
    tracing::info!(local_member_id = %hex(handle.status().member_id), ?interval, "enabled corruption checking");
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let status = handle.status();
        if status.leader == 0 || status.leader != status.member_id {
            continue;
        }
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            checked = check_pass(&handle, &settings) => {
                if let Err(error) = checked {
                    tracing::warn!(%error, "failed to check hash KV");
                }
            }
        }
    }
}

/// etcd's `checkHashKV`: one pass of the leader's check.
async fn check_pass(handle: &NodeHandle, settings: &Settings) -> Result<(), String> {
    let leader_id = handle.status().member_id;
    let before = local_hash(handle).await;
    let answers = peer_hashes(handle, settings, before.revision).await;
    handle.read_barrier().await.map_err(|error| error.to_string())?;
    let after = local_hash(handle).await;
    let members = handle.members();
    let mut answered = Vec::new();
    for (member, answer) in &answers {
        match answer {
            PeerAnswer::Hash(peer) => answered.push(*peer),
            other => log_unanswered(member, before.revision, other),
        }
    }
    let findings = periodic_findings(leader_id, before, after, &answered);
    for finding in &findings {
        let peer = answered.iter().find(|peer| peer.member_id == finding.member_id);
        tracing::error!(
            member_id = %hex(finding.member_id),
            member_name = %member_name(&members, finding.member_id),
            leader_revision = after.revision,
            leader_compact_revision = after.compact_revision,
            leader_hash = before.hash,
            leader_hash_after = after.hash,
            follower_revision = peer.map(|peer| peer.hash.revision),
            follower_compact_revision = peer.map(|peer| peer.hash.compact_revision),
            follower_hash = peer.map(|peer| peer.hash.hash),
            "corruption check: {}: member {} holds different data; {}",
            finding.kind.message(),
            describe(&members, finding.member_id),
            "raising the CORRUPT alarm"
        );
    }
    if let Some(first) = findings.first() {
        raise_corrupt_alarm(handle, first.member_id).await;
    }
    tracing::info!(number_of_peers_checked = answered.len(), "finished peer corruption check");
    Ok(())
}

/// Proposes the CORRUPT alarm for `member_id` through the log.
async fn raise_corrupt_alarm(handle: &NodeHandle, member_id: u64) {
    let request = AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: AlarmType::Corrupt as i32 };
    if let Err(error) = handle.write(kv::Command::new(kv::Operation::Alarm(request))).await {
        tracing::warn!(%error, member_id = %hex(member_id), "failed to raise CORRUPT alarm");
    }
}

fn member_name(members: &[Member], member_id: u64) -> String {
    members.iter().find(|member| member.id == member_id).map(|member| member.name.clone()).unwrap_or_default()
}

/// `name (id hex)`, or the id alone for a member without a known name.
fn describe(members: &[Member], member_id: u64) -> String {
    match member_name(members, member_id) {
        name if name.is_empty() => hex(member_id),
        name => format!("{name} ({})", hex(member_id)),
    }
}

fn hex(member_id: u64) -> String {
    format!("{member_id:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_port_hash_answers_are_read_as_etcds() {
        let answer =
            |status: &str, body: &str| format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\r\n{body}");
        let ok = answer(
            "200 OK",
            r#"{"header":{"cluster_id":1,"member_id":7,"revision":12},"hash":3108801744,"compact_revision":4,"hash_revision":12}"#,
        );
        let expected = PeerHash { member_id: 7, hash: KvHash { hash: 3108801744, revision: 12, compact_revision: 4 } };
        assert!(matches!(parse_hash_answer(ok.as_bytes()), Ok(PeerAnswer::Hash(hash)) if hash == expected));
        let future = answer("400 Bad Request", &format!(r#"{{"message":"{}"}}"#, kv::Error::FutureRevision.message()));
        assert!(matches!(parse_hash_answer(future.as_bytes()), Ok(PeerAnswer::FutureRevision)));
        let compacted = answer("400 Bad Request", &format!(r#"{{"message":"{}"}}"#, kv::Error::Compacted.message()));
        assert!(matches!(parse_hash_answer(compacted.as_bytes()), Ok(PeerAnswer::Compacted)));
        assert!(parse_hash_answer(answer("503 Service Unavailable", r#"{"message":"not loaded"}"#).as_bytes()).is_err());
        assert!(parse_hash_answer(b"HTTP/1.1 200 OK").is_err(), "truncated");
        assert!(parse_hash_answer(answer("200 OK", r#"{"hash":-1}"#).as_bytes()).is_err());
    }

    const LEADER: u64 = 1;

    fn at(hash: u32, revision: i64, compact_revision: i64) -> KvHash {
        KvHash { hash, revision, compact_revision }
    }

    fn peer(member_id: u64, hash: KvHash) -> PeerHash {
        PeerHash { member_id, hash }
    }

    #[test]
    fn initial_check_counts_only_a_different_hash_at_the_same_compact_revision() {
        let local = at(7, 10, 3);
        let peers = [
            peer(2, at(7, 12, 3)), // same hash: fine
            peer(3, at(8, 10, 3)), // different hash, same compact revision: mismatch
            peer(4, at(9, 10, 5)), // other compact revision: cannot be compared
        ];
        assert_eq!(initial_mismatches(local, &peers), vec![3]);
        assert!(initial_mismatches(local, &[]).is_empty(), "no peer answered: passes");
    }

    #[test]
    fn periodic_check_names_the_follower_whose_hash_differs() {
        let leader = at(7, 10, 3);
        let peers = [peer(2, at(7, 10, 3)), peer(3, at(8, 10, 3))];
        let findings = periodic_findings(LEADER, leader, leader, &peers);
        assert_eq!(findings, vec![Finding { member_id: 3, kind: FindingKind::FollowerHashDiffers }]);
    }

    #[test]
    fn periodic_check_names_the_leader_when_its_own_hash_changed_at_the_same_revision() {
        let findings = periodic_findings(LEADER, at(7, 10, 3), at(9, 10, 3), &[peer(2, at(7, 10, 3))]);
        assert_eq!(findings, vec![Finding { member_id: LEADER, kind: FindingKind::LeaderHashChanged }]);
        // New writes between the two hashes are not a finding.
        assert!(periodic_findings(LEADER, at(7, 10, 3), at(9, 11, 3), &[peer(2, at(7, 10, 3))]).is_empty());
    }

    #[test]
    fn periodic_check_refuses_followers_ahead_of_the_leader() {
        let leader = at(7, 10, 3);
        let ahead = periodic_findings(LEADER, leader, leader, &[peer(2, at(5, 11, 4))]);
        let kinds: Vec<FindingKind> = ahead.iter().map(|finding| finding.kind).collect();
        assert_eq!(kinds, vec![FindingKind::FollowerRevisionAhead, FindingKind::FollowerCompactRevisionAhead]);
        assert!(ahead.iter().all(|finding| finding.member_id == 2));
    }

    #[test]
    fn periodic_check_skips_followers_with_another_compact_revision() {
        let leader = at(7, 10, 3);
        assert!(periodic_findings(LEADER, leader, leader, &[peer(2, at(5, 10, 2))]).is_empty());
        assert!(periodic_findings(LEADER, leader, leader, &[]).is_empty());
    }
}
