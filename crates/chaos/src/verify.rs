//! Probing a cluster (who leads, member ids) and the checks after healing: convergence of
//! every member to the same store, acknowledged writes present at their revisions, final
//! reads, and linearizability of the history.

use std::time::{Duration, Instant};

use linearizability::{ClientId, Operation, Output};
use tonic::transport::Channel;

use crate::etcd;
use crate::report::human_duration;
use crate::workload::{key_name, AcknowledgedWrite, Recording};

/// Deadline of one probe request.
const PROBE_DEADLINE: Duration = Duration::from_millis(800);

/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The most acknowledged writes looked up per member (spread evenly over the run).
const ACKNOWLEDGED_WRITES_CHECKED_MAX: usize = 2000;

/// What a member said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its member id.
    pub member_id: u64,
    /// The cluster id.
    pub cluster_id: u64,
    /// The leader it knows of (0: none).
    pub leader: u64,
    /// Its current term.
    pub term: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// Its store revision.
    pub revision: i64,
}

/// Asks every member for its status; `None` for members that did not answer in time.
pub async fn statuses(channels: &[Channel]) -> Vec<Option<MemberStatus>> {
    let requests = channels.iter().cloned().map(|channel| async move {
        let response = etcd::status(&channel, PROBE_DEADLINE).await.ok()?;
        let header = response.header?;
        Some(MemberStatus {
            member_id: header.member_id,
            cluster_id: header.cluster_id,
            leader: response.leader,
            term: response.raft_term,
            applied_index: response.raft_applied_index,
            revision: header.revision,
        })
    });
    join_all(requests).await
}

/// Runs futures concurrently and collects their outputs in order.
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("probe task"));
    }
    outputs
}

/// The member that says it leads (the highest term among such members), if any answers.
pub async fn find_leader(channels: &[Channel]) -> Option<usize> {
    statuses(channels)
        .await
        .into_iter()
        .enumerate()
        .filter_map(|(index, status)| status.map(|status| (index, status)))
        .filter(|(_, status)| status.leader != 0 && status.leader == status.member_id)
        .max_by_key(|(_, status)| status.term)
        .map(|(index, _)| index)
}

/// Waits (at most `wait_max`) until every member answers, all name the same leader, and
/// all report the same applied index and revision twice in a row. Returns that status.
pub async fn wait_for_convergence(channels: &[Channel], wait_max: Duration) -> anyhow::Result<Vec<MemberStatus>> {
    let start = Instant::now();
    let mut previous: Option<Vec<MemberStatus>> = None;
    let mut latest = Vec::new();
    while start.elapsed() < wait_max {
        latest = statuses(channels).await;
        let answered: Option<Vec<MemberStatus>> = latest.iter().cloned().collect();
        if let Some(current) = answered {
            let first = &current[0];
            let agreed = first.leader != 0
                && current.iter().all(|status| {
                    (status.leader, status.applied_index, status.revision)
                        == (first.leader, first.applied_index, first.revision)
                });
            if agreed && previous.as_ref() == Some(&current) {
                return Ok(current);
            }
            previous = agreed.then_some(current);
        } else {
            previous = None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    anyhow::bail!("members did not converge within {}; last statuses: {latest:?}", human_duration(wait_max))
}

/// Waits (at most `wait_max`) until a write through member 0..n succeeds: the healed
/// cluster is available again. Returns how long it took.
pub async fn wait_for_write(channels: &[Channel], wait_max: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut last_error = String::from("no attempt");
    let mut attempt = 0usize;
    while start.elapsed() < wait_max {
        let channel = &channels[attempt % channels.len()];
        attempt += 1;
        match etcd::put(channel, b"chaos/availability", attempt.to_string().as_bytes(), PROBE_DEADLINE * 2).await {
            Ok(_) => return Ok(start.elapsed()),
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    anyhow::bail!("no write succeeded within {} after healing: {last_error}", human_duration(wait_max))
}

/// `HashKV` at `revision` on every member; an error unless all hashes are equal.
pub async fn compare_hashes(channels: &[Channel], revision: i64) -> anyhow::Result<Vec<u32>> {
    let mut hashes = Vec::with_capacity(channels.len());
    for (index, channel) in channels.iter().enumerate() {
        let hash = etcd::hash_kv(channel, revision, PROBE_DEADLINE * 4)
            .await
            .map_err(|error| anyhow::anyhow!("HashKV at revision {revision} on member {}: {error}", index + 1))?;
        hashes.push(hash);
    }
    anyhow::ensure!(
        hashes.windows(2).all(|pair| pair[0] == pair[1]),
        "members' stores differ at revision {revision}: hashes {hashes:08x?}"
    );
    Ok(hashes)
}

/// Looks every acknowledged write up (at most `ACKNOWLEDGED_WRITES_CHECKED_MAX`, spread
/// evenly) at its revision on every member; returns the number of lookups, or the writes
/// that are missing.
pub async fn check_acknowledged_writes(channels: &[Channel], writes: &[AcknowledgedWrite]) -> anyhow::Result<usize> {
    let stride = writes.len().div_ceil(ACKNOWLEDGED_WRITES_CHECKED_MAX).max(1);
    let mut missing = Vec::new();
    let mut lookups = 0;
    for (index, channel) in channels.iter().enumerate() {
        for write in writes.iter().step_by(stride) {
            let found = etcd::get(channel, &write.key, write.revision, true, PROBE_DEADLINE * 2).await;
            lookups += 1;
            match found {
                Ok((Some(value), _)) if value == write.value => {}
                other => missing.push(format!(
                    "member {}: {}={} at revision {}: found {other:?}",
                    index + 1,
                    String::from_utf8_lossy(&write.key),
                    String::from_utf8_lossy(&write.value),
                    write.revision
                )),
            }
            if missing.len() >= 10 {
                break;
            }
        }
    }
    anyhow::ensure!(missing.is_empty(), "acknowledged writes lost:\n  {}", missing.join("\n  "));
    Ok(lookups)
}

/// Reads every key through every member (linearizably) and adds the reads to the history,
/// as clients `1000 + member`. Returns how many returned.
pub async fn final_reads(channels: &[Channel], keys: usize, recording: &mut Recording) -> usize {
    let mut returned = 0;
    for (index, channel) in channels.iter().enumerate() {
        let client = ClientId(1000 + index as u64);
        for key_index in 0..keys {
            let key = key_name(key_index);
            let id = recording.history.invoke(client, Operation::read(key.clone()));
            match etcd::get(channel, &key, 0, false, PROBE_DEADLINE * 4).await {
                Ok((value, _)) => {
                    recording.history.complete(id, value.map_or_else(Output::read_absent, Output::read_value));
                    returned += 1;
                }
                Err(_) => recording.history.time_out(id),
            }
        }
    }
    returned
}
