//! The checks. Online, after every member turn: each member's watch stream is gap-free and
//! in revision order and agrees with every other member's; members at the same applied
//! index hold the same revision; members agree on `hash_kv` at equal revisions (sampled
//! every [`HASH_EVERY_REVISIONS`]) and on the store's hash at equal snapshot indexes. At
//! the end, after healing: every acknowledged write is in every live member's store at
//! its revision, serializable reads saw a committed state, the watch streams match the
//! final history, leases expired, members hold the same state, and the client history is
//! linearizable (per key, a register).

use std::collections::BTreeMap;

use linearizability::{CheckOptions, CheckResult};
use proto::prost::Message as _;
use server::watch::AppliedEvents;

use crate::clients::{read_value_at, Clients};
use crate::member::TurnOutput;

/// Revisions between two sampled `hash_kv` comparisons.
pub const HASH_EVERY_REVISIONS: i64 = 16;
/// Search steps the linearizability checker may spend on one key.
pub const LINEARIZABILITY_STEPS_PER_KEY: u64 = 300_000;

/// What the online checks remember.
#[derive(Default)]
pub struct Checks {
    /// Per member: the next revision its watch stream must publish.
    watch_next: BTreeMap<u64, i64>,
    /// Per revision: the digest of its events and the member that published it first.
    revision_digests: BTreeMap<i64, (u64, u64)>,
    /// Per applied index: the revision and the member that reached it first.
    applied_revisions: BTreeMap<u64, (i64, u64)>,
    /// Per sampled revision: `hash_kv` and the member that computed it first.
    hashes: BTreeMap<i64, (u32, u64)>,
    /// Per member: the last revision it sampled.
    last_hashed: BTreeMap<u64, i64>,
    /// Per snapshot index: the store's hash and the member that took it first.
    snapshot_hashes: BTreeMap<u64, (u64, u64)>,
}

impl Checks {
    /// Member `member` started with its store at `revision`: its watch stream continues there.
    pub fn member_started(&mut self, member: u64, revision: i64) {
        self.watch_next.insert(member, revision + 1);
    }

    /// Checks member `member` after a turn; `Err` names the broken invariant and why.
    pub fn after_turn(&mut self, member: u64, store: &kv::Store, output: &TurnOutput) -> Result<(), (String, String)> {
        if output.watch_lagged {
            return Err(("watch".into(), format!("member {member:x}: the watch receiver lagged")));
        }
        for published in &output.published {
            self.check_published(member, published).map_err(|message| ("watch".to_string(), message))?;
        }
        self.check_applied(member, store).map_err(|message| ("divergence".to_string(), message))?;
        self.check_hash_kv(member, store).map_err(|message| ("hash_kv".to_string(), message))?;
        for (index, hash) in &output.snapshots {
            let (first_hash, first) = *self.snapshot_hashes.entry(*index).or_insert((*hash, member));
            if first_hash != *hash {
                let message =
                    format!("snapshot at index {index}: member {member:x} hash {hash:x}, {first:x} {first_hash:x}");
                return Err(("divergence".into(), message));
            }
        }
        Ok(())
    }

    fn check_published(&mut self, member: u64, published: &AppliedEvents) -> Result<(), String> {
        let next = self.watch_next.get(&member).copied().expect("started members are tracked");
        if published.events.is_empty() {
            // A restored snapshot: the stream jumps (watchers read the skipped revisions
            // from history), never back.
            if published.revision + 1 < next {
                return Err(format!(
                    "member {member:x}: restored to {} after publishing {}",
                    published.revision,
                    next - 1
                ));
            }
            self.watch_next.insert(member, published.revision + 1);
            return Ok(());
        }
        if published.revision != next {
            return Err(format!("member {member:x}: published revision {} where {next} was next", published.revision));
        }
        for event in &published.events {
            let mod_revision = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            if mod_revision != published.revision {
                return Err(format!("member {member:x}: an event of revision {mod_revision} in revision {next}"));
            }
        }
        let digest = digest_events(&published.events);
        let (first_digest, first) = *self.revision_digests.entry(next).or_insert((digest, member));
        if first_digest != digest {
            return Err(format!("revision {next}: member {member:x}'s events differ from member {first:x}'s"));
        }
        self.watch_next.insert(member, next + 1);
        Ok(())
    }

    fn check_applied(&mut self, member: u64, store: &kv::Store) -> Result<(), String> {
        let (index, revision) = (store.applied_index(), store.current_revision());
        let (first_revision, first) = *self.applied_revisions.entry(index).or_insert((revision, member));
        if first_revision != revision {
            return Err(format!(
                "applied index {index}: member {member:x} at revision {revision}, member {first:x} at {first_revision}"
            ));
        }
        Ok(())
    }

    fn check_hash_kv(&mut self, member: u64, store: &kv::Store) -> Result<(), String> {
        let sampled = store.current_revision() / HASH_EVERY_REVISIONS * HASH_EVERY_REVISIONS;
        let last = self.last_hashed.entry(member).or_insert(0);
        if sampled <= *last {
            return Ok(());
        }
        *last = sampled;
        let (hash, _, _) = store.hash_kv(sampled);
        let (first_hash, first) = *self.hashes.entry(sampled).or_insert((hash, member));
        if first_hash != hash {
            return Err(format!(
                "revision {sampled}: member {member:x} hash {hash:x}, member {first:x} {first_hash:x}"
            ));
        }
        Ok(())
    }
}

/// An FNV-1a digest of events: type and key-value (without `prev_kv`).
fn digest_events(events: &[proto::mvccpb::Event]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for event in events {
        let kv_bytes = event.kv.as_ref().map(|kv| kv.encode_to_vec()).unwrap_or_default();
        for byte in event.r#type.to_le_bytes().iter().chain(&kv_bytes) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The final checks over the live members' stores (all settled at the same index).
pub fn final_checks(
    checks: &Checks,
    stores: &[(u64, std::sync::Arc<kv::Store>)],
    clients: &Clients,
) -> Vec<(String, String)> {
    assert!(!stores.is_empty(), "a settled cluster has live members");
    let mut violations = Vec::new();
    let (reference_id, reference) = &stores[0];
    for (id, store) in &stores[1..] {
        if store.applied_index() != reference.applied_index() || store.hash() != reference.hash() {
            let message = format!("members {reference_id:x} and {id:x} end in different states");
            violations.push(("divergence".to_string(), message));
        }
    }
    for (id, store) in stores {
        violations
            .extend(lost_writes(*id, store, clients).map(|message| ("acknowledged_write_lost".to_string(), message)));
    }
    violations
        .extend(stale_serializable_reads(reference, clients).map(|message| ("serializable_read".to_string(), message)));
    violations.extend(watch_against_history(checks, reference).map(|message| ("watch".to_string(), message)));
    if let Some(lease) = reference.leases().next() {
        violations.push(("lease_expiry".to_string(), format!("lease {:x} outlived its TTL", lease.id)));
    }
    violations
}

fn lost_writes<'a>(id: u64, store: &'a kv::Store, clients: &'a Clients) -> impl Iterator<Item = String> + 'a {
    clients.acknowledged_writes.iter().filter_map(move |write| {
        let found = read_value_at(store, &write.key, write.revision);
        let survived =
            matches!(&found, Ok(Some((value, revision))) if *value == write.value && *revision == write.revision);
        (!survived).then(|| {
            format!(
                "member {id:x}: {}={} acknowledged at revision {} but the store has {found:?} there",
                String::from_utf8_lossy(&write.key),
                String::from_utf8_lossy(&write.value),
                write.revision
            )
        })
    })
}

fn stale_serializable_reads<'a>(reference: &'a kv::Store, clients: &'a Clients) -> impl Iterator<Item = String> + 'a {
    clients.serializable_reads.iter().filter_map(move |read| {
        let committed = read_value_at(reference, &read.key, read.revision).ok()?.map(|(value, _)| value);
        (committed != read.value).then(|| {
            format!(
                "member {:x} served {}={:?} at revision {}, the committed history has {:?}",
                read.member,
                String::from_utf8_lossy(&read.key),
                read.value.as_deref().map(String::from_utf8_lossy),
                read.revision,
                committed.as_deref().map(String::from_utf8_lossy)
            )
        })
    })
}

fn watch_against_history(checks: &Checks, reference: &kv::Store) -> Option<String> {
    let history = match reference.history(1, usize::MAX) {
        Ok(history) => history,
        Err(error) => return Some(format!("history unreadable: {error}")),
    };
    let mut by_revision: BTreeMap<i64, Vec<proto::mvccpb::Event>> = BTreeMap::new();
    for event in history.events {
        let revision = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        by_revision.entry(revision).or_default().push(event);
    }
    for (revision, (digest, member)) in &checks.revision_digests {
        let committed = by_revision.get(revision).map(|events| digest_events(events));
        if committed != Some(*digest) {
            return Some(format!("member {member:x} published revision {revision}, unlike the final history"));
        }
    }
    None
}

/// Checks the clients' history: `Ok(true)` linearizable, `Ok(false)` undecided within the
/// budget, `Err` the checker's explanation.
pub fn check_history(clients: &Clients) -> Result<bool, String> {
    let options = CheckOptions { step_budget_per_key: LINEARIZABILITY_STEPS_PER_KEY, ..CheckOptions::default() };
    match linearizability::check_with_options(&clients.history.build(), &options) {
        CheckResult::Linearizable => Ok(true),
        CheckResult::Timeout { .. } => Ok(false),
        CheckResult::NotLinearizable(violation) => Err(violation.explanation),
    }
}
