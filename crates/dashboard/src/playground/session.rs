//! A playground session: a seeded simulated cluster and the list of steps taken so far.
//!
//! Rewinding to step `k` rebuilds the cluster from the seed and replays the first `k`
//! steps; the simulation is deterministic, so the result is the state the user saw then.

use serde::{Deserialize, Serialize};

use super::cluster::ClusterOptions;
use super::presets::{preset, Narration, Preset, PRESET_NAMES};
use super::simulation::{Action, MessageView, NodeView, RoundTripView, Simulation};

/// Most steps a session keeps (and so the deepest rewind).
pub const HISTORY_STEPS_MAX: usize = 10_000;
/// Most nodes in a free-play cluster.
pub const FREE_PLAY_NODES_MAX: usize = 9;

/// How a session starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStart {
    /// Seed of every random choice (election timeouts).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Cluster size for free play (a preset fixes its own size and seed).
    #[serde(default = "default_node_count")]
    pub nodes: usize,
    /// A preset name, or absent for free play.
    #[serde(default)]
    pub preset: Option<String>,
}

fn default_seed() -> u64 {
    1
}

fn default_node_count() -> usize {
    5
}

impl Default for SessionStart {
    fn default() -> Self {
        SessionStart { seed: default_seed(), nodes: default_node_count(), preset: None }
    }
}

/// One step taken: its actions and, for preset steps, which one it was.
#[derive(Clone, Debug)]
struct Step {
    label: String,
    actions: Vec<Action>,
    preset_step: Option<usize>,
}

/// A step as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    /// Position (1-based; rewinding to it keeps it).
    pub number: usize,
    /// What was done.
    pub label: String,
}

/// The preset part of the page state.
#[derive(Clone, Debug, Serialize)]
pub struct PresetView {
    /// Preset name.
    pub name: &'static str,
    /// Preset title.
    pub title: Narration,
    /// Preset steps taken.
    pub position: usize,
    /// Preset steps in all.
    pub total: usize,
    /// Title of every preset step.
    pub titles: Vec<Narration>,
    /// Narration of the last preset step taken (absent before the first).
    pub narration: Option<Narration>,
    /// Title of the next step (absent at the end).
    pub next_title: Option<Narration>,
}

/// Everything the playground page draws.
#[derive(Clone, Debug, Serialize)]
pub struct SessionView {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub step: usize,
    /// The steps taken, oldest first.
    pub history: Vec<StepView>,
    /// The guided scenario, if any.
    pub preset: Option<PresetView>,
    /// Names of the available presets.
    pub presets: Vec<&'static str>,
    /// The nodes.
    pub nodes: Vec<NodeView>,
    /// Messages in flight.
    pub messages: Vec<MessageView>,
    /// Current leader's id, empty if none.
    pub leader: String,
    /// Recent events.
    pub events: Vec<String>,
    /// AppendEntries round trips per link since the counters were cleared.
    pub round_trips: Vec<RoundTripView>,
}

/// A session.
pub struct Session {
    start: SessionStart,
    preset: Option<Preset>,
    history: Vec<Step>,
    simulation: Simulation,
}

impl Session {
    /// A new session; fails on an unknown preset or a bad cluster size.
    pub fn new(mut start: SessionStart) -> Result<Session, String> {
        let preset = match &start.preset {
            Some(name) => Some(preset(name).ok_or_else(|| format!("unknown preset `{name}`"))?),
            None => None,
        };
        if preset.is_none() && !(1..=FREE_PLAY_NODES_MAX).contains(&start.nodes) {
            return Err(format!("nodes must be between 1 and {FREE_PLAY_NODES_MAX}"));
        }
        if let Some(preset) = &preset {
            start.seed = preset.options.seed;
            start.nodes = preset.node_count;
        }
        let simulation = fresh_simulation(&start, preset.as_ref())?;
        Ok(Session { start, preset, history: Vec::new(), simulation })
    }

    /// Takes one step made of `actions`; on failure the session is as before.
    fn take(&mut self, label: String, actions: Vec<Action>, preset_step: Option<usize>) -> Result<(), String> {
        if self.history.len() >= HISTORY_STEPS_MAX {
            return Err(format!("the history is full ({HISTORY_STEPS_MAX} steps): rewind or reset"));
        }
        for action in &actions {
            if let Err(error) = self.simulation.apply(action) {
                self.rebuild(self.history.len())?;
                return Err(error);
            }
        }
        self.history.push(Step { label, actions, preset_step });
        Ok(())
    }

    /// Applies a user action as one step.
    pub fn act(&mut self, action: Action) -> Result<(), String> {
        let label = describe_action(&action);
        self.take(label, vec![action], None)
    }

    /// Takes the next step of the preset.
    pub fn next_preset_step(&mut self) -> Result<(), String> {
        let preset = self.preset.as_ref().ok_or("no preset is loaded")?;
        let position = self.preset_position();
        let step = preset.steps.get(position).ok_or("the preset is finished")?;
        let (label, actions) = (step.title.en.to_string(), step.actions.clone());
        self.take(label, actions, Some(position))
    }

    /// Preset steps taken so far.
    fn preset_position(&self) -> usize {
        self.history.iter().filter_map(|step| step.preset_step).max().map_or(0, |last| last + 1)
    }

    /// Goes back to the state after the first `step` steps.
    pub fn rewind(&mut self, step: usize) -> Result<(), String> {
        if step > self.history.len() {
            return Err(format!("there are only {} steps", self.history.len()));
        }
        self.rebuild(step)
    }

    fn rebuild(&mut self, step: usize) -> Result<(), String> {
        self.history.truncate(step);
        let mut simulation = fresh_simulation(&self.start, self.preset.as_ref())?;
        for action in self.history.iter().flat_map(|step| step.actions.iter()) {
            // A step that succeeded once succeeds again: the simulation is deterministic.
            simulation.apply(action)?;
        }
        self.simulation = simulation;
        Ok(())
    }

    /// The page state.
    pub fn view(&self) -> SessionView {
        let labels = self.preset.as_ref().map(|preset| preset.labels.clone()).unwrap_or_default();
        let history = self
            .history
            .iter()
            .enumerate()
            .map(|(position, step)| StepView { number: position + 1, label: step.label.clone() })
            .collect();
        SessionView {
            seed: self.start.seed,
            step: self.history.len(),
            history,
            preset: self.preset.as_ref().map(|preset| self.preset_view(preset)),
            presets: PRESET_NAMES.to_vec(),
            nodes: self.simulation.node_views(&labels),
            messages: self.simulation.message_views(),
            leader: self.simulation.current_leader().map(|id| id.to_string()).unwrap_or_default(),
            events: self.simulation.events(),
            round_trips: self.simulation.round_trips(),
        }
    }

    fn preset_view(&self, preset: &Preset) -> PresetView {
        let position = self.preset_position();
        PresetView {
            name: preset.name,
            title: preset.title.clone(),
            position,
            total: preset.steps.len(),
            titles: preset.steps.iter().map(|step| step.title.clone()).collect(),
            narration: position
                .checked_sub(1)
                .and_then(|last| preset.steps.get(last))
                .map(|step| step.narration.clone()),
            next_title: preset.steps.get(position).map(|step| step.title.clone()),
        }
    }
}

fn fresh_simulation(start: &SessionStart, preset: Option<&Preset>) -> Result<Simulation, String> {
    match preset {
        Some(preset) => Simulation::new(preset.node_count, preset.options.clone()),
        None => Simulation::new(start.nodes, free_play_options(start.seed)),
    }
}

/// Free play: a heartbeat every 2 ticks so that the drawing is not flooded with heartbeats.
fn free_play_options(seed: u64) -> ClusterOptions {
    ClusterOptions { heartbeat_ticks: 2, election_ticks: 10, seed, ..ClusterOptions::default() }
}

/// A short label for the history list.
pub fn describe_action(action: &Action) -> String {
    match action {
        Action::Advance => "time passes (1 tick)".to_string(),
        Action::Tick { node, count } => format!("S{node} ticks {count}×"),
        Action::Request { node: Some(node), command } => format!("client → S{node}: {command}"),
        Action::Request { node: None, command } => format!("client → leader: {command}"),
        Action::Campaign { node } => format!("S{node} campaigns"),
        Action::Crash { node } => format!("S{node} crashes"),
        Action::Restart { node } => format!("S{node} restarts"),
        Action::Partition { groups } => format!("partition {groups:?}"),
        Action::Heal => "heal the network".to_string(),
        Action::Deliver { message } => format!("deliver #{message}"),
        Action::Drop { message } => format!("drop #{message}"),
        Action::DeliverWhere { .. } => "deliver selected messages".to_string(),
        Action::DropWhere { .. } => "drop selected messages".to_string(),
        Action::Settle => "deliver until quiet".to_string(),
        Action::InstallLog { node, .. } => format!("install a log on S{node}"),
        Action::SetTerm { node, term } => format!("S{node} term := {term}"),
        Action::Compact { node, index } => format!("S{node} compacts up to {index}"),
        Action::Read { node, key, linearizable: true } => format!("linearizable read of {key} on S{node}"),
        Action::Read { node, key, linearizable: false } => format!("local read of {key} on S{node}"),
        Action::AddNode { node } => format!("start S{node} (empty)"),
        Action::ChangeMembership { node, .. } => format!("membership change on S{node}"),
        Action::NaiveBacktracking { enabled, follower } => {
            let whose = follower.map_or("every follower".to_string(), |node| format!("S{node}"));
            format!("no conflict hint from {whose}: {}", if *enabled { "on" } else { "off" })
        }
        Action::ResetCounters => "clear the round-trip counters".to_string(),
        Action::Note { text } => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_preset(name: &str) -> Session {
        let mut session =
            Session::new(SessionStart { preset: Some(name.to_string()), ..SessionStart::default() }).expect("session");
        let total = session.view().preset.expect("preset").total;
        for position in 0..total {
            session.next_preset_step().unwrap_or_else(|error| panic!("{name} step {}: {error}", position + 1));
        }
        assert!(session.next_preset_step().is_err(), "a finished preset has no next step");
        session
    }

    fn log_terms(view: &NodeView) -> Vec<u64> {
        view.entries.iter().map(|entry| entry.term).collect()
    }

    #[test]
    fn figure7_ends_with_every_log_equal_to_the_leaders_and_committed() {
        let session = run_preset("figure7");
        let view = session.view();
        assert_eq!(view.leader, "1");
        let leader_terms = vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8];
        for node in &view.nodes {
            assert_eq!(log_terms(node), leader_terms, "node {}", node.name);
            assert_eq!(node.commit, 11, "node {}", node.name);
        }
        assert!(view.messages.is_empty());
    }

    #[test]
    fn walkthrough_ends_with_x_applied_everywhere() {
        let session = run_preset("walkthrough");
        let view = session.view();
        for node in &view.nodes {
            assert_eq!(log_terms(node), vec![2, 2], "node {}", node.name);
            assert_eq!(node.commit, 2, "node {}", node.name);
            assert_eq!(node.applied_commands, vec!["x=1".to_string()], "node {}", node.name);
        }
    }

    #[test]
    fn walkthrough_commits_on_the_leader_only_after_the_second_acknowledgement() {
        let mut session = Session::new(SessionStart { preset: Some("walkthrough".into()), ..SessionStart::default() })
            .expect("session");
        let commits = |session: &Session| session.view().nodes.iter().map(|node| node.commit).collect::<Vec<_>>();
        for _ in 0..9 {
            session.next_preset_step().expect("step");
        }
        assert_eq!(commits(&session), vec![1, 1, 1, 1, 1], "one acknowledgement is not a majority");
        session.next_preset_step().expect("step");
        assert_eq!(commits(&session), vec![2, 1, 1, 1, 1], "two acknowledgements and the leader are 3 of 5");
    }

    #[test]
    fn figure7_probe_answers_carry_the_hints_the_narration_describes() {
        let mut session =
            Session::new(SessionStart { preset: Some("figure7".into()), ..SessionStart::default() }).expect("session");
        for _ in 0..3 {
            session.next_preset_step().expect("step");
        }
        let view = session.view();
        let probes: Vec<&MessageView> = view.messages.iter().filter(|message| message.kind == "append").collect();
        assert_eq!(probes.len(), 6);
        assert!(probes.iter().all(|probe| probe.summary.starts_with("prev (6,10) entries (8,11)")), "{probes:?}");
        session.next_preset_step().expect("(a) probe");
        let answer = session.view().messages.into_iter().find(|message| message.from == 2).expect("answer of (a)");
        assert_eq!(answer.summary, "reject prev 10; hint (6,9)");
    }

    fn rows_equal_and_committed(view: &SessionView, terms: &[u64], commit: u64) {
        for node in &view.nodes {
            assert_eq!(log_terms(node), terms, "node {}", node.name);
            assert_eq!(node.commit, commit, "node {}", node.name);
        }
    }

    fn node(view: &SessionView, id: u64) -> &NodeView {
        view.nodes.iter().find(|node| node.id == id.to_string()).expect("node")
    }

    /// Takes the first `steps` steps of preset `name`.
    fn preset_steps(name: &str, steps: usize) -> Session {
        let mut session =
            Session::new(SessionStart { preset: Some(name.to_string()), ..SessionStart::default() }).expect("session");
        for position in 0..steps {
            session.next_preset_step().unwrap_or_else(|error| panic!("{name} step {}: {error}", position + 1));
        }
        session
    }

    #[test]
    fn crash_after_commit_keeps_the_applied_entry_and_commits_it_with_the_new_term() {
        let view = preset_steps("crash_after_commit", 3).view();
        assert_eq!(node(&view, 1).applied_commands, vec!["x=1".to_string()], "S1 applied x=1");
        assert!(view.nodes.iter().skip(1).all(|node| node.commit == 1), "no follower knows index 2 is committed");
        let view = preset_steps("crash_after_commit", 5).view();
        assert_eq!(node(&view, 3).role, "candidate", "S3 without the entry cannot win");
        let view = preset_steps("crash_after_commit", 6).view();
        assert_eq!((node(&view, 2).role, node(&view, 2).commit), ("leader", 1), "no commit by counting old replicas");
        let view = run_preset("crash_after_commit").view();
        assert_eq!(view.leader, "2");
        rows_equal_and_committed(&view, &[2, 2, 4], 3);
        assert!(view.nodes.iter().all(|node| node.applied_commands == vec!["x=1".to_string()]));
    }

    #[test]
    fn minority_entry_commits_a_failed_write_and_a_request_id_stops_the_duplicate() {
        let view = preset_steps("minority_entry", 2).view();
        assert!(view.nodes.iter().all(|node| node.commit == 1), "x+=1 on 2 of 5 is not committed");
        let view = preset_steps("minority_entry", 5).view();
        assert!(node(&view, 2).state.contains(&"x=2".to_string()), "the unprotected retry applies twice");
        let view = run_preset("minority_entry").view();
        assert_eq!(view.leader, "3");
        rows_equal_and_committed(&view, &[2, 2, 3, 3, 3, 4, 4], 7);
        for node in &view.nodes {
            assert_eq!(node.state, vec!["x=2".to_string(), "y=1".to_string()], "node {}", node.name);
        }
    }

    #[test]
    fn figure8_does_not_commit_an_old_term_entry_on_a_majority_and_it_is_overwritten() {
        let view = preset_steps("figure8", 3).view();
        let holders =
            view.nodes.iter().filter(|node| node.entries.iter().any(|entry| (entry.index, entry.term) == (2, 2)));
        assert_eq!(holders.count(), 3, "(2,2) is on a majority");
        assert_eq!((node(&view, 1).role, node(&view, 1).commit), ("leader", 0), "yet S1 does not commit it");
        let view = run_preset("figure8").view();
        assert_eq!(view.leader, "5");
        rows_equal_and_committed(&view, &[1, 3, 5], 3);
    }

    #[test]
    fn figure8_e_once_the_leaders_own_entry_is_on_a_majority_s5_cannot_win() {
        let mut session = preset_steps("figure8", 3);
        session.act(Action::Settle).expect("S1 replicates (4,3)");
        assert_eq!(node(&session.view(), 1).commit, 3, "(4,3) on a majority commits (2,2) with it");
        for action in [Action::Crash { node: 1 }, Action::Restart { node: 5 }] {
            session.act(action).expect("action");
        }
        for _ in 0..3 {
            session.act(Action::Campaign { node: 5 }).expect("campaign");
            session.act(Action::Settle).expect("settle");
            assert_ne!(node(&session.view(), 5).role, "leader", "S5's (3,2) is older than (4,3)");
        }
    }

    #[test]
    fn election_restriction_refuses_shorter_and_older_logs() {
        let session = preset_steps("election_restriction", 3);
        let view = session.view();
        assert_eq!(node(&view, 3).role, "leader", "S3 wins with S4 and S5");
        assert!(view.events.iter().any(|event| event.contains("S2 refused its vote to S3")), "{:?}", view.events);
        assert!(view.events.iter().any(|event| event.contains("S4 granted its vote to S3")), "{:?}", view.events);
        let view = preset_steps("election_restriction", 5).view();
        assert!(view.nodes.iter().all(|node| node.role != "leader"), "nobody grants S2's older log");
        assert_eq!((node(&view, 2).role, node(&view, 2).term), ("follower", 4), "refused by a majority, S2 gives up");
        for voter in [3, 4, 5] {
            let refusal = format!("S{voter} refused its vote to S2");
            assert!(view.events.iter().any(|event| event.contains(&refusal)), "{refusal}: {:?}", view.events);
        }
        let view = run_preset("election_restriction").view();
        assert_eq!(view.leader, "3");
        rows_equal_and_committed(&view, &[2, 3, 5], 3);
        assert!(view.nodes.iter().all(|node| node.applied_commands.is_empty()), "x=1 was never applied");
    }

    fn round_trip(view: &SessionView, from: u64, to: u64) -> (u64, u64) {
        let link = view.round_trips.iter().find(|link| (link.from, link.to) == (from, to)).expect("link counted");
        (link.appends, link.rejects)
    }

    #[test]
    fn conflict_hint_repairs_in_2_round_trips_and_without_it_in_8() {
        let view = preset_steps("conflict_hint", 4).view();
        assert_eq!(log_terms(node(&view, 3)), log_terms(node(&view, 1)), "S3 repaired with the hint");
        assert_eq!(round_trip(&view, 1, 3), (2, 1));
        assert!(node(&view, 2).entries.iter().any(|entry| entry.term == 3), "S2 not yet");
        let view = preset_steps("conflict_hint", 5).view();
        assert_eq!(round_trip(&view, 1, 2), (4, 3), "one entry back per round trip");
        let view = run_preset("conflict_hint").view();
        assert_eq!(view.leader, "1");
        rows_equal_and_committed(&view, &[1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 5], 11);
        assert_eq!(round_trip(&view, 1, 2), (8, 7), "without the hint");
        assert_eq!(round_trip(&view, 1, 3), (2, 1), "with the hint");
    }

    #[test]
    fn snapshot_catch_up_sends_the_snapshot_because_the_entries_are_gone() {
        let view = preset_steps("snapshot_catch_up", 3).view();
        for id in [1, 2] {
            assert_eq!((node(&view, id).snapshot_index, node(&view, id).entries.len()), (5, 0), "S{id} compacted");
        }
        assert_eq!(node(&view, 3).last_index, 1, "S3 misses entries 2-5");
        let view = preset_steps("snapshot_catch_up", 5).view();
        let snapshots = view.messages.iter().filter(|message| message.kind == "installsnapshot");
        assert_eq!(snapshots.map(|message| (message.from, message.to)).collect::<Vec<_>>(), vec![(1, 3)]);
        let view = run_preset("snapshot_catch_up").view();
        for node in &view.nodes {
            assert_eq!(node.snapshot_index, 5, "node {}", node.name);
            assert_eq!(node.state, vec!["a=1", "b=2", "c=3", "d=4", "e=5"], "node {}", node.name);
        }
        rows_equal_and_committed(&view, &[2], 6);
    }

    #[test]
    fn follower_forwarding_forwards_from_s2_and_redirects_from_s3() {
        let view = preset_steps("follower_forwarding", 2).view();
        assert_eq!(node(&view, 2).last_index, 1, "a follower does not append a client's entry");
        let forwarded = view.messages.iter().filter(|message| message.kind == "propose");
        assert_eq!(forwarded.map(|message| (message.from, message.to)).collect::<Vec<_>>(), vec![(2, 1)]);
        let view = preset_steps("follower_forwarding", 5).view();
        assert!(view.nodes.iter().all(|node| node.last_index == 2), "the redirected write appended nothing");
        assert!(view.events.iter().any(|event| event.contains("S3 answered `y=2`: not the leader, send it to S1")));
        let view = run_preset("follower_forwarding").view();
        rows_equal_and_committed(&view, &[2, 2, 2], 3);
        assert!(view.nodes.iter().all(|node| node.state == vec!["x=1", "y=2"]));
    }

    #[test]
    fn follower_reads_see_applied_state_only_and_a_read_index_waits() {
        let view = preset_steps("follower_reads", 2).view();
        let follower = node(&view, 2);
        assert_eq!((follower.last_index, follower.commit), (3, 2), "x=2 stored on S2, not committed");
        assert_eq!(follower.reads, vec!["local read x = 1 (applied 2)"]);
        let view = preset_steps("follower_reads", 3).view();
        assert_eq!((node(&view, 1).commit, node(&view, 2).commit), (3, 2), "committed on the leader only");
        assert_eq!(node(&view, 2).reads.last().map(String::as_str), Some("local read x = 1 (applied 2)"));
        let view = preset_steps("follower_reads", 4).view();
        assert_eq!(node(&view, 2).reads_waiting, vec!["read x waits until applied ≥ read index 3"]);
        assert_eq!(node(&view, 2).reads.len(), 2, "the linearizable read has not answered");
        let view = run_preset("follower_reads").view();
        let last_read = node(&view, 2).reads.last().cloned();
        assert_eq!(last_read.as_deref(), Some("linearizable read x = 2 (read index 3)"));
        assert!(node(&view, 2).reads_waiting.is_empty());
        rows_equal_and_committed(&view, &[2, 2, 2], 3);
    }

    #[test]
    fn joint_consensus_survives_the_leaders_crash_and_ends_with_five_voters() {
        let view = preset_steps("joint_consensus", 3).view();
        assert_eq!(node(&view, 1).commit, 5, "C_old,new committed by both majorities");
        assert_eq!(
            (node(&view, 2).voters.clone(), node(&view, 2).voters_outgoing.clone()),
            (vec![1, 2, 3, 4, 5], vec![1, 2, 3])
        );
        assert_eq!(node(&view, 3).last_index, 4, "S3 does not have C_old,new");
        let view = preset_steps("joint_consensus", 5).view();
        assert!(!node(&view, 1).alive);
        assert_eq!((node(&view, 2).role, node(&view, 2).term), ("leader", 3));
        assert_eq!(node(&view, 2).voters_outgoing, vec![1, 2, 3], "S2 leads in the joint configuration");
        let view = run_preset("joint_consensus").view();
        assert_eq!(view.leader, "2");
        rows_equal_and_committed(&view, &[2, 2, 2, 2, 2, 3, 3], 7);
        for node in &view.nodes {
            assert_eq!(node.voters, vec![1, 2, 3, 4, 5], "node {}", node.name);
            assert!(node.voters_outgoing.is_empty() && node.learners.is_empty(), "node {}", node.name);
            assert_eq!(node.state, vec!["x=1"], "node {}", node.name);
        }
    }

    #[test]
    fn rewind_replays_to_the_same_state() {
        let mut session = Session::new(SessionStart { seed: 42, nodes: 3, preset: None }).expect("session");
        for _ in 0..40 {
            session.act(Action::Advance).expect("advance");
        }
        session.act(Action::Request { node: None, command: "k=v".into() }).expect("request");
        let before = serde_json::to_string(&session.view().nodes).expect("json");
        for _ in 0..5 {
            session.act(Action::Advance).expect("advance");
        }
        session.rewind(41).expect("rewind");
        assert_eq!(serde_json::to_string(&session.view().nodes).expect("json"), before);
        assert!(session.rewind(1000).is_err());
    }

    #[test]
    fn refused_actions_leave_the_session_unchanged() {
        let mut session = Session::new(SessionStart::default()).expect("session");
        assert!(session.act(Action::Deliver { message: 999 }).is_err());
        assert!(session.act(Action::Crash { node: 77 }).is_err());
        assert!(session.act(Action::Request { node: None, command: "x".into() }).is_err(), "no leader yet");
        assert!(session.act(Action::Tick { node: 1, count: 1_000_000 }).is_err());
        assert_eq!(session.view().step, 0);
        assert!(Session::new(SessionStart { nodes: 0, ..SessionStart::default() }).is_err());
        assert!(Session::new(SessionStart { preset: Some("nope".into()), ..SessionStart::default() }).is_err());
    }

    #[test]
    fn free_play_elects_a_leader_and_replicates_a_request() {
        let mut session = Session::new(SessionStart { seed: 3, nodes: 5, preset: None }).expect("session");
        for _ in 0..60 {
            session.act(Action::Advance).expect("advance");
        }
        assert!(!session.view().leader.is_empty(), "a leader after 60 ticks");
        session.act(Action::Request { node: None, command: "hello".into() }).expect("request");
        for _ in 0..6 {
            session.act(Action::Advance).expect("advance");
        }
        let view = session.view();
        assert!(view.nodes.iter().all(|node| node.applied_commands.contains(&"hello".to_string())));
    }

    #[test]
    fn actions_are_read_from_the_pages_json() {
        let action: Action = serde_json::from_str(r#"{"type":"deliver","message":7}"#).expect("deliver");
        assert_eq!(action, Action::Deliver { message: 7 });
        let action: Action = serde_json::from_str(r#"{"type":"deliver_where"}"#).expect("deliver_where");
        assert_eq!(action, Action::DeliverWhere { from: None, to: None, kind: None });
        let action: Action = serde_json::from_str(r#"{"type":"request","command":"a"}"#).expect("request");
        assert_eq!(action, Action::Request { node: None, command: "a".into() });
        assert!(serde_json::from_str::<Action>(r#"{"type":"explode"}"#).is_err());
    }
}
