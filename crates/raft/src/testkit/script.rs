//! The scenario script language: protocol scenarios written as data.
//!
//! A script is plain text, one command per line; `#` starts a comment. The first line must
//! be a comment `# source: ...` naming where the scenario comes from. Node arguments are
//! ids (`3`) or variables (`$L`); node sets are comma lists of ids, variables, `*` (every
//! node) and `main` (the largest partition group). Links are `from->to` pairs, comma
//! separated, with `*` for any node. Comparisons are `=`, `!=`, `<`, `<=`, `>`, `>=`.
//!
//! Setup: `config <key> <value>` (keys `pre-vote`, `check-quorum` on/off, `election-ticks`,
//! `heartbeat-ticks`, `append-size-bytes`, `seed`; they apply to the next `nodes`),
//! `nodes N` (a fresh cluster 1..=N; clears variables, labels, counters), `label N text`,
//! `log set: t t t` (replace each node's log by entries of these terms at indexes 1..), `term N T`.
//!
//! Actions: `campaign N`, `propose N cmd...` (one batch), `propose-n N count prefix`,
//! `tick N [count]`, `run ticks` (every live node ticks, then deliver-all, per tick),
//! `deliver links [kinds]`, `deliver-all [rounds]`, `drop links [kinds]`,
//! `partition 1,2 | 3,4,5` (`others` = nodes not listed), `isolate set`, `isolate-random K`,
//! `run-unreliable ticks loss% duplicate%` (seeded random order, loss, duplication, delay),
//! `propose-any cmd...` (as `cmd-K`, K counting these proposals, on the current leader if any;
//! refusals ignored),
//! `heal`, `crash set`, `restart set`, `naive-backtracking on|off`, `count reset`,
//! `inject A->B kind key=value...` (kinds `append`, `heartbeat`, `vote`, `appendresp`;
//! keys `term`, `prev-index`, `prev-term`, `entries=t@i,t@i`, `commit`, `last-index`,
//! `last-term`, `index`, `reject`, `hint-index`, `hint-term`), `repeat N` ... `end`,
//! `let NAME = leader|follower|node|random [among set] [except set]`,
//! `let NAME = term|commit|last-index N`.
//!
//! Output: `section title`, `say text`, `show title` (draws every node's log).
//!
//! Assertions (`expect ...`): `leader N [term T]`, `single-leader [among set]`,
//! `no-leader [among set]`, `role set role`, `term set op V`, `commit set op V`,
//! `last-index set op V`, `entry set index op term` (0: no entry), `log set: terms`,
//! `applied set: cmds`, `applied-includes set: cmds`,
//! `applied-equal [set]`, `applied-consistent`, `logs-equal [set]`, `appends A->B op V`,
//! `appends-until-converged A->B op V`, `step-error none|any|text`,
//! `pending links [kinds] op V`.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use super::network::{kind_name, Link, MessageFilter, Network, NetworkOptions, DELIVER_ROUNDS_MAX};
use super::render::render_logs;
use crate::{
    ConfChange, ConfChangeKind, ConfChangeSingle, Entry, EntryKind, Message, MessageBody, NodeId, ProposeError, Role,
    StepError,
};

/// Most iterations of one `repeat` block.
const REPEAT_MAX: u64 = 1_000;
/// Most commands one script may execute (loops included).
const COMMANDS_MAX: usize = 100_000;
/// Message kinds a filter may name.
const KNOWN_KINDS: [&str; 14] = [
    "prevote",
    "prevoteresp",
    "vote",
    "voteresp",
    "append",
    "appendresp",
    "heartbeat",
    "heartbeatresp",
    "installsnapshot",
    "propose",
    "readindex",
    "readindexresp",
    "timeoutnow",
    "transfervote",
];

/// A failed script: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The script's name.
    pub script: String,
    /// 1-based line number (0: the script as a whole).
    pub line: usize,
    /// The line's text.
    pub text: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}: {}\n    | {}", self.script, self.line, self.message, self.text)
    }
}

impl std::error::Error for ScriptError {}

/// A counter value an `expect` looked at (for tables such as Figure 7's round trips).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The `section` the script was in.
    pub section: String,
    /// What was counted (`appends`, `appends-until-converged`).
    pub quantity: String,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The label of the receiver, if the script gave one.
    pub to_label: String,
    /// The value.
    pub value: u64,
}

/// What a successful script produced.
#[derive(Clone, Debug, Default)]
pub struct ScriptOutcome {
    /// Text from `section`, `say` and `show`.
    pub transcript: String,
    /// Every counter an `expect` checked, in order.
    pub measurements: Vec<Measurement>,
}

/// One meaningful script line.
struct Line {
    number: usize,
    text: String,
}

/// Runs the script `text` (named `name` in errors).
pub fn run_script(name: &str, text: &str) -> Result<ScriptOutcome, ScriptError> {
    let whole = |message: String| ScriptError { script: name.to_string(), line: 0, text: String::new(), message };
    let first = text.lines().find(|line| !line.trim().is_empty()).unwrap_or("");
    if !first.trim_start().to_ascii_lowercase().starts_with("# source:") {
        return Err(whole("a script must start with a `# source: ...` comment".to_string()));
    }
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .map(|(position, raw)| Line { number: position + 1, text: strip_comment(raw).to_string() })
        .filter(|line| !line.text.is_empty())
        .collect();
    let ends = match_blocks(&lines).map_err(|(line, message)| ScriptError {
        script: name.to_string(),
        line,
        text: String::new(),
        message,
    })?;
    let mut interpreter = Interpreter::new();
    interpreter.execute_all(&lines, &ends).map_err(|(position, message)| ScriptError {
        script: name.to_string(),
        line: lines[position].number,
        text: lines[position].text.clone(),
        message,
    })?;
    Ok(ScriptOutcome { transcript: interpreter.transcript, measurements: interpreter.measurements })
}

fn strip_comment(raw: &str) -> &str {
    raw.split('#').next().unwrap_or("").trim()
}

/// For each `repeat` line, the position of its `end` (checks nesting).
fn match_blocks(lines: &[Line]) -> Result<BTreeMap<usize, usize>, (usize, String)> {
    let mut open: Vec<usize> = Vec::new();
    let mut ends = BTreeMap::new();
    for (position, line) in lines.iter().enumerate() {
        let word = line.text.split_whitespace().next().unwrap_or("");
        if word == "repeat" {
            open.push(position);
        } else if word == "end" {
            let start = open.pop().ok_or((line.number, "`end` without `repeat`".to_string()))?;
            ends.insert(start, position);
        }
    }
    match open.pop() {
        Some(start) => Err((lines[start].number, "`repeat` without `end`".to_string())),
        None => Ok(ends),
    }
}

/// The interpreter's state.
struct Interpreter {
    options: NetworkOptions,
    network: Option<Network>,
    variables: BTreeMap<String, u64>,
    labels: BTreeMap<NodeId, String>,
    section: String,
    transcript: String,
    measurements: Vec<Measurement>,
    last_step: Option<Result<(), StepError>>,
    /// The verdict of the last `change` or `transfer`.
    last_request: Option<Result<(), ProposeError>>,
    proposals: u64,
}

/// An active `repeat` block: where it starts, where it ends, iterations left.
struct Loop {
    start: usize,
    end: usize,
    remaining: u64,
}

impl Interpreter {
    fn new() -> Self {
        Interpreter {
            options: NetworkOptions::default(),
            network: None,
            variables: BTreeMap::new(),
            labels: BTreeMap::new(),
            section: String::new(),
            transcript: String::new(),
            measurements: Vec::new(),
            last_step: None,
            last_request: None,
            proposals: 0,
        }
    }

    fn execute_all(&mut self, lines: &[Line], ends: &BTreeMap<usize, usize>) -> Result<(), (usize, String)> {
        let mut loops: Vec<Loop> = Vec::new();
        let mut position = 0;
        let mut executed = 0;
        while position < lines.len() {
            executed += 1;
            if executed > COMMANDS_MAX {
                return Err((position, format!("more than {COMMANDS_MAX} commands executed")));
            }
            let text = lines[position].text.as_str();
            let word = text.split_whitespace().next().unwrap_or("");
            if word == "repeat" {
                let count = self.parse_count(text).map_err(|message| (position, message))?;
                if count == 0 {
                    position = ends[&position] + 1;
                    continue;
                }
                loops.push(Loop { start: position, end: ends[&position], remaining: count });
            } else if word == "end" {
                let active = loops.last_mut().ok_or((position, "`end` outside a loop".to_string()))?;
                assert_eq!(active.end, position, "blocks are matched before running");
                active.remaining -= 1;
                if active.remaining > 0 {
                    position = active.start + 1;
                    continue;
                }
                loops.pop();
            } else {
                self.execute(text).map_err(|message| (position, message))?;
            }
            position += 1;
        }
        Ok(())
    }

    fn parse_count(&self, text: &str) -> Result<u64, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let count = self.value(words.get(1).copied().unwrap_or(""))?;
        if count > REPEAT_MAX {
            return Err(format!("repeat count {count} above the bound {REPEAT_MAX}"));
        }
        Ok(count)
    }

    fn network(&mut self) -> Result<&mut Network, String> {
        self.network.as_mut().ok_or_else(|| "no cluster yet: start with `nodes N`".to_string())
    }

    fn network_ref(&self) -> Result<&Network, String> {
        self.network.as_ref().ok_or_else(|| "no cluster yet: start with `nodes N`".to_string())
    }

    /// Runs one command and reports any problem the driver met meanwhile.
    fn execute(&mut self, text: &str) -> Result<(), String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let command = words[0];
        let rest = text[command.len()..].trim();
        let result = match command {
            "config" => self.configure(&words),
            "nodes" => self.start_cluster(&words),
            "label" => self.label(&words, rest),
            "log" => self.install_log(rest),
            "term" => self.set_term(&words),
            "expect" => self.expect(&words[1..], rest),
            "let" => self.bind(&words),
            "section" | "say" | "show" => self.output(command, rest),
            _ => self.act(command, &words),
        };
        let problems = match self.network.as_mut() {
            Some(network) => network.take_problems(),
            None => Vec::new(),
        };
        result?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("driver problems: {}", problems.join("; ")))
        }
    }

    fn configure(&mut self, words: &[&str]) -> Result<(), String> {
        let [_, key, value] = words else { return Err("usage: config <key> <value>".to_string()) };
        let switch = || match *value {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(format!("expected on/off, got `{other}`")),
        };
        let number = || value.parse::<u64>().map_err(|_| format!("expected a number, got `{value}`"));
        match *key {
            "pre-vote" => self.options.pre_vote = switch()?,
            "check-quorum" => self.options.check_quorum = switch()?,
            "election-ticks" => self.options.election_ticks = number()? as u32,
            "heartbeat-ticks" => self.options.heartbeat_ticks = number()? as u32,
            "append-size-bytes" => self.options.append_size_bytes_max = number()?,
            "seed" => self.options.seed = number()?,
            other => return Err(format!("unknown config key `{other}`")),
        }
        Ok(())
    }

    fn start_cluster(&mut self, words: &[&str]) -> Result<(), String> {
        let count = self.value(words.get(1).copied().unwrap_or(""))?;
        self.network = Some(Network::new(count as usize, self.options.clone())?);
        self.variables.clear();
        self.labels.clear();
        self.last_step = None;
        Ok(())
    }

    fn label(&mut self, words: &[&str], rest: &str) -> Result<(), String> {
        let node = self.node(words.get(1).copied().unwrap_or(""))?;
        let text = rest[words[1].len()..].trim().to_string();
        self.labels.insert(node, text);
        Ok(())
    }

    fn install_log(&mut self, rest: &str) -> Result<(), String> {
        let (nodes, terms) = rest.split_once(':').ok_or("usage: log SET: t t t")?;
        let terms = parse_numbers(terms)?;
        for node in self.set(&nodes.split_whitespace().collect::<String>())? {
            self.network()?.install_log(node, &terms)?;
        }
        Ok(())
    }

    fn set_term(&mut self, words: &[&str]) -> Result<(), String> {
        let [_, nodes, term] = words else { return Err("usage: term SET T".to_string()) };
        let term = self.value(term)?;
        for node in self.set(nodes)? {
            self.network()?.set_term(node, term)?;
        }
        Ok(())
    }

    fn output(&mut self, command: &str, rest: &str) -> Result<(), String> {
        match command {
            "section" => {
                self.section = rest.to_string();
                self.transcript.push_str(&format!("\n== {rest} ==\n"));
            }
            "say" => self.transcript.push_str(&format!("{rest}\n")),
            _ => {
                let drawing = render_logs(self.network_ref()?, &self.labels, rest);
                self.transcript.push_str(&drawing);
            }
        }
        Ok(())
    }

    /// Commands that drive the cluster.
    fn act(&mut self, command: &str, words: &[&str]) -> Result<(), String> {
        let argument = |position: usize| words.get(position).copied().unwrap_or("");
        match command {
            "campaign" => {
                let node = self.node(argument(1))?;
                self.network()?.campaign(node)
            }
            "propose" => self.propose(words),
            "propose-n" => self.propose_numbered(words),
            "tick" => {
                let node = self.node(argument(1))?;
                let count = if words.len() > 2 { self.value(argument(2))? } else { 1 };
                self.network()?.tick(node, count as u32)
            }
            "run" => {
                let ticks = self.value(argument(1))?;
                self.network()?.run(ticks as u32)
            }
            "deliver-all" => {
                let rounds = if words.len() > 1 { self.value(argument(1))? as usize } else { DELIVER_ROUNDS_MAX };
                self.network()?.deliver_all(rounds).map(|_| ())
            }
            "deliver" | "drop" => self.deliver_or_drop(command, words),
            "run-unreliable" => {
                let [ticks, loss, duplicate] = [argument(1), argument(2), argument(3)].map(|word| self.value(word));
                self.network()?.run_unreliable(ticks? as u32, loss?, duplicate?)
            }
            "propose-any" => {
                self.proposals += 1;
                let number = self.proposals;
                let network = self.network()?;
                let commands: Vec<Bytes> =
                    words[1..].iter().map(|word| Bytes::from(format!("{word}-{number}"))).collect();
                match network.current_leader() {
                    // Refusals (e.g. a deposed leader) are a client's ordinary retry case here.
                    Some(leader) => {
                        let _ = network.propose(leader, commands);
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
            "add-node" => {
                let id = self.value(argument(1))?;
                self.network()?.add_node(id)
            }
            "change" => self.conf_change(words),
            "transfer" => {
                let (node, target) = (self.node(argument(1))?, self.value(argument(2))?);
                self.last_request = Some(self.network()?.transfer_leader(node, target)?);
                Ok(())
            }
            _ => self.act_on_topology(command, words),
        }
    }

    /// `change N add-voter X remove Y add-learner Z ...` (no pairs: leave joint).
    fn conf_change(&mut self, words: &[&str]) -> Result<(), String> {
        let usage = "usage: change N [add-voter|add-learner|remove ID]...";
        let node = self.node(words.get(1).copied().ok_or(usage)?)?;
        let mut changes = Vec::new();
        for pair in words[2..].chunks(2) {
            let [kind, id] = pair else { return Err(usage.to_string()) };
            let kind = match *kind {
                "add-voter" => ConfChangeKind::AddVoter,
                "add-learner" => ConfChangeKind::AddLearner,
                "remove" => ConfChangeKind::RemoveNode,
                other => return Err(format!("unknown change `{other}`; {usage}")),
            };
            changes.push(ConfChangeSingle { kind, node_id: self.value(id)? });
        }
        let change = ConfChange { changes, context: Bytes::new() };
        self.last_request = Some(self.network()?.conf_change(node, change)?);
        Ok(())
    }

    fn propose(&mut self, words: &[&str]) -> Result<(), String> {
        let node = self.node(words.get(1).copied().unwrap_or(""))?;
        let commands: Vec<Bytes> = words[2..].iter().map(|word| Bytes::from(word.to_string())).collect();
        if commands.is_empty() {
            return Err("usage: propose N cmd...".to_string());
        }
        self.network()?.propose(node, commands)
    }

    fn propose_numbered(&mut self, words: &[&str]) -> Result<(), String> {
        let [_, node, count, prefix] = words else { return Err("usage: propose-n N count prefix".to_string()) };
        let node = self.node(node)?;
        let count = self.value(count)?;
        for number in 1..=count {
            self.network()?.propose(node, vec![Bytes::from(format!("{prefix}{number}"))])?;
        }
        Ok(())
    }

    fn deliver_or_drop(&mut self, command: &str, words: &[&str]) -> Result<(), String> {
        let links = self.links(words.get(1).copied().ok_or("missing links")?)?;
        let kinds = match words.get(2) {
            Some(kinds) => parse_kinds(kinds)?,
            None => Vec::new(),
        };
        let filter = MessageFilter { links, kinds };
        let network = self.network()?;
        if command == "drop" {
            network.drop_messages(&filter);
        } else {
            network.deliver(&filter);
        }
        Ok(())
    }

    fn act_on_topology(&mut self, command: &str, words: &[&str]) -> Result<(), String> {
        let argument = words.get(1).copied().unwrap_or("");
        match command {
            "partition" => self.partition(&words[1..].join(" ")),
            "isolate" => {
                let nodes = self.set(argument)?;
                self.network()?.isolate(&nodes);
                Ok(())
            }
            "isolate-random" => {
                let count = self.value(argument)? as usize;
                let network = self.network()?;
                let live: Vec<NodeId> = network.ids().into_iter().filter(|id| network.is_alive(*id)).collect();
                let chosen = network.random_nodes(&live, count);
                network.isolate(&chosen);
                Ok(())
            }
            "heal" => {
                self.network()?.heal();
                Ok(())
            }
            "crash" | "restart" => {
                for node in self.set(argument)? {
                    let network = self.network()?;
                    if command == "crash" {
                        network.crash(node)?
                    } else {
                        network.restart(node)?
                    }
                }
                Ok(())
            }
            _ => self.act_on_counters(command, words),
        }
    }

    fn act_on_counters(&mut self, command: &str, words: &[&str]) -> Result<(), String> {
        match (command, words.get(1).copied()) {
            ("naive-backtracking", Some(switch @ ("on" | "off"))) => {
                self.network()?.set_naive_backtracking(switch == "on");
                Ok(())
            }
            ("count", Some("reset")) => {
                self.network()?.reset_counters();
                Ok(())
            }
            ("inject", _) => self.inject(words),
            _ => Err(format!("unknown command `{}`", words.join(" "))),
        }
    }

    fn partition(&mut self, text: &str) -> Result<(), String> {
        let mut groups: Vec<Vec<NodeId>> = Vec::new();
        let mut others_position = None;
        for (position, group) in text.split('|').enumerate() {
            let group: String = group.split_whitespace().collect();
            if group == "others" {
                others_position = Some(position);
                groups.push(Vec::new());
            } else {
                groups.push(self.set(&group)?);
            }
        }
        if let Some(position) = others_position {
            let listed: Vec<NodeId> = groups.concat();
            groups[position] = self.network_ref()?.ids().into_iter().filter(|id| !listed.contains(id)).collect();
        }
        self.network()?.partition(&groups);
        Ok(())
    }

    fn inject(&mut self, words: &[&str]) -> Result<(), String> {
        let link = words.get(1).copied().ok_or("usage: inject A->B kind key=value...")?;
        let (from, to) = link.split_once("->").ok_or("usage: inject A->B kind key=value...")?;
        let from = self.value(from)?;
        let to = self.node(to)?;
        let mut fields = BTreeMap::new();
        for pair in words.iter().skip(3) {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("expected key=value, got `{pair}`"))?;
            let value = if value.starts_with('$') { self.value(value)?.to_string() } else { value.to_string() };
            fields.insert(key.to_string(), value);
        }
        let message = build_message(from, to, words.get(2).copied().unwrap_or(""), &fields)?;
        self.last_step = Some(self.network()?.inject(message)?);
        Ok(())
    }

    fn bind(&mut self, words: &[&str]) -> Result<(), String> {
        let usage = "usage: let NAME = leader|follower|node|random|term|commit|last-index ...";
        if words.len() < 4 || words[2] != "=" {
            return Err(usage.to_string());
        }
        let value = match words[3] {
            "term" | "commit" | "last-index" => {
                let node = self.node(words.get(4).copied().unwrap_or(""))?;
                self.node_quantity(words[3], node)?
            }
            kind => self.choose(kind, &words[4..])?,
        };
        self.variables.insert(words[1].to_string(), value);
        Ok(())
    }

    /// `leader|follower|node|random [among set] [except set]`.
    fn choose(&mut self, kind: &str, options: &[&str]) -> Result<NodeId, String> {
        let candidates = self.selection(options)?;
        let network = self.network_ref()?;
        let role_of = |id: NodeId| network.node(id).map(|node| node.role());
        let chosen = match kind {
            "leader" => {
                let leaders: Vec<NodeId> =
                    candidates.iter().copied().filter(|id| role_of(*id) == Some(Role::Leader)).collect();
                match leaders.as_slice() {
                    [leader] => Some(*leader),
                    _ => return Err(format!("expected exactly one leader among {candidates:?}, found {leaders:?}")),
                }
            }
            "follower" => candidates.iter().copied().find(|id| role_of(*id) == Some(Role::Follower)),
            "node" => candidates.first().copied(),
            "random" => {
                let network = self.network()?;
                network.random_nodes(&candidates, 1).first().copied()
            }
            other => return Err(format!("unknown choice `{other}`")),
        };
        chosen.ok_or_else(|| format!("no {kind} among {candidates:?}"))
    }

    /// Live nodes of `[among set] [except set]` (default: every live node).
    fn selection(&self, options: &[&str]) -> Result<Vec<NodeId>, String> {
        let network = self.network_ref()?;
        let mut among: Vec<NodeId> = network.ids();
        let mut except: Vec<NodeId> = Vec::new();
        for pair in options.chunks(2) {
            match pair {
                ["among", set] => among = self.set(set)?,
                ["except", set] => except = self.set(set)?,
                _ => return Err(format!("expected `among SET` or `except SET`, got `{}`", pair.join(" "))),
            }
        }
        Ok(among.into_iter().filter(|id| network.is_alive(*id) && !except.contains(id)).collect())
    }

    /// `term`, `commit` or `last-index` of a node (a crashed node: what its storage kept).
    fn node_quantity(&self, quantity: &str, node: NodeId) -> Result<u64, String> {
        let network = self.network_ref()?;
        let storage = network.storage(node).ok_or_else(|| format!("no node {node}"))?;
        let (term, commit, last_index) = match network.node(node) {
            Some(live) => (live.term(), live.commit_index(), live.last_index()),
            None => (storage.hard_state().term, storage.hard_state().commit, crate::Storage::last_index(storage)),
        };
        match quantity {
            "term" => Ok(term),
            "commit" => Ok(commit),
            "last-index" => Ok(last_index),
            other => Err(format!("unknown quantity `{other}`")),
        }
    }

    /// A number or a `$variable`.
    fn value(&self, token: &str) -> Result<u64, String> {
        if let Some(name) = token.strip_prefix('$') {
            return self.variables.get(name).copied().ok_or_else(|| format!("unknown variable `${name}`"));
        }
        token.parse::<u64>().map_err(|_| format!("expected a number or $variable, got `{token}`"))
    }

    /// One existing node.
    fn node(&self, token: &str) -> Result<NodeId, String> {
        let node = self.value(token)?;
        if !self.network_ref()?.contains(node) {
            return Err(format!("no node {node}"));
        }
        Ok(node)
    }

    /// A node set: comma list of ids, `$variables`, `*` and `main`.
    fn set(&self, token: &str) -> Result<Vec<NodeId>, String> {
        let network = self.network_ref()?;
        let mut nodes = Vec::new();
        for item in token.split(',').filter(|item| !item.is_empty()) {
            match item {
                "*" => nodes.extend(network.ids()),
                "main" => nodes.extend(network.main_group()),
                _ => nodes.push(self.node(item)?),
            }
        }
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() {
            return Err(format!("empty node set `{token}`"));
        }
        Ok(nodes)
    }

    /// Links `a->b,c->*`; a lone `*` means every link.
    fn links(&self, token: &str) -> Result<Vec<Link>, String> {
        if token == "*" {
            return Ok(Vec::new());
        }
        let endpoint = |text: &str| if text == "*" { Ok(None) } else { self.node(text).map(Some) };
        token
            .split(',')
            .map(|link| {
                let (from, to) = link.split_once("->").ok_or_else(|| format!("expected from->to, got `{link}`"))?;
                Ok((endpoint(from)?, endpoint(to)?))
            })
            .collect()
    }

    /// Assertions.
    fn expect(&mut self, words: &[&str], rest: &str) -> Result<(), String> {
        let subject = words.first().copied().ok_or("usage: expect <what> ...")?;
        let rest = rest[subject.len()..].trim();
        match subject {
            "leader" => self.expect_leader(&words[1..]),
            "single-leader" | "no-leader" => self.expect_leader_count(subject, &words[1..]),
            "role" => self.expect_role(&words[1..]),
            "term" | "commit" | "last-index" => self.expect_quantity(subject, &words[1..]),
            "log" | "applied" | "applied-includes" => self.expect_listing(subject, rest),
            "logs-equal" | "applied-equal" => self.expect_equal(subject, words.get(1).copied()),
            "applied-consistent" => self.expect_applied_consistent(),
            "appends" | "appends-until-converged" => self.expect_counter(subject, &words[1..]),
            "step-error" => self.expect_step_error(rest),
            "request-error" => self.expect_request_error(rest),
            "voters" | "learners" | "outgoing" => self.expect_configuration(subject, rest),
            "entry" => self.expect_entry(&words[1..]),
            "pending" => self.expect_pending(&words[1..]),
            other => Err(format!("unknown expectation `{other}`")),
        }
    }

    fn expect_leader(&self, words: &[&str]) -> Result<(), String> {
        let node = self.node(words.first().copied().ok_or("usage: expect leader N [term T]")?)?;
        let live = self.network_ref()?.node(node).ok_or_else(|| format!("node {node} is crashed"))?;
        if live.role() != Role::Leader {
            return Err(format!(
                "node {node} is {:?} in term {} (leader known: {})",
                live.role(),
                live.term(),
                live.leader()
            ));
        }
        if let ["term", term] = &words[1..] {
            let term = self.value(term)?;
            if live.term() != term {
                return Err(format!("node {node} leads in term {}, expected term {term}", live.term()));
            }
        }
        Ok(())
    }

    fn expect_leader_count(&self, subject: &str, options: &[&str]) -> Result<(), String> {
        let candidates = self.selection(options)?;
        let network = self.network_ref()?;
        let leaders: Vec<NodeId> = candidates
            .iter()
            .copied()
            .filter(|id| network.node(*id).is_some_and(|node| node.role() == Role::Leader))
            .collect();
        let wanted = if subject == "single-leader" { 1 } else { 0 };
        if leaders.len() != wanted {
            return Err(format!("expected {wanted} leader(s) among {candidates:?}, found {leaders:?}"));
        }
        Ok(())
    }

    fn expect_role(&self, words: &[&str]) -> Result<(), String> {
        let [nodes, role] = words else { return Err("usage: expect role SET role".to_string()) };
        let network = self.network_ref()?;
        for node in self.set(nodes)? {
            let actual = match network.node(node) {
                Some(live) => role_name(live.role()),
                None => "crashed",
            };
            if actual != role.to_ascii_lowercase() {
                return Err(format!("node {node} is {actual}, expected {role}"));
            }
        }
        Ok(())
    }

    fn expect_quantity(&self, quantity: &str, words: &[&str]) -> Result<(), String> {
        let [nodes, operator, expected] = words else {
            return Err(format!("usage: expect {quantity} SET op value"));
        };
        let expected = self.value(expected)?;
        for node in self.set(nodes)? {
            let actual = self.node_quantity(quantity, node)?;
            if !compare(actual, operator, expected)? {
                return Err(format!("{quantity} of node {node} is {actual}, expected {operator} {expected}"));
            }
        }
        Ok(())
    }

    fn expect_listing(&self, subject: &str, rest: &str) -> Result<(), String> {
        let (nodes, listing) = rest.split_once(':').ok_or_else(|| format!("usage: expect {subject} SET: ..."))?;
        let wanted: Vec<String> = listing.split_whitespace().map(str::to_string).collect();
        let network = self.network_ref()?;
        for node in self.set(&nodes.split_whitespace().collect::<String>())? {
            let actual: Vec<String> = match subject {
                "log" => network.log_terms(node).iter().map(u64::to_string).collect(),
                _ => network.applied(node),
            };
            let matches = match subject {
                "applied-includes" => wanted.iter().all(|command| actual.contains(command)),
                _ => actual == wanted,
            };
            if !matches {
                let commit = network.node(node).map(|live| live.commit_index());
                return Err(format!(
                    "node {node} {subject}: [{}] (commit {commit:?}), expected [{}]",
                    actual.join(" "),
                    wanted.join(" ")
                ));
            }
        }
        Ok(())
    }

    fn expect_equal(&self, subject: &str, nodes: Option<&str>) -> Result<(), String> {
        let network = self.network_ref()?;
        let nodes = match nodes {
            Some(nodes) => self.set(nodes)?,
            None => network.ids().into_iter().filter(|id| network.is_alive(*id)).collect(),
        };
        let describe = |node: NodeId| -> Vec<String> {
            if subject == "logs-equal" {
                network.log_entries(node).iter().map(describe_entry).collect()
            } else {
                network.applied(node)
            }
        };
        let first = describe(nodes[0]);
        for node in &nodes[1..] {
            let other = describe(*node);
            if other != first {
                return Err(format!(
                    "{subject}: node {} has [{}] but node {node} has [{}]",
                    nodes[0],
                    abbreviate(&first),
                    abbreviate(&other)
                ));
            }
        }
        Ok(())
    }

    /// State-machine safety: of any two nodes' applied commands, one is a prefix of the other.
    fn expect_applied_consistent(&self) -> Result<(), String> {
        let network = self.network_ref()?;
        let lists: Vec<(NodeId, Vec<String>)> = network.ids().into_iter().map(|id| (id, network.applied(id))).collect();
        for (first, first_list) in &lists {
            for (second, second_list) in &lists {
                let shorter = first_list.len().min(second_list.len());
                if first_list[..shorter] != second_list[..shorter] {
                    let position = (0..shorter).find(|position| first_list[*position] != second_list[*position]);
                    return Err(format!(
                        "nodes {first} and {second} applied different commands at position {position:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn expect_counter(&mut self, quantity: &str, words: &[&str]) -> Result<(), String> {
        let [link, operator, expected] = words else {
            return Err(format!("usage: expect {quantity} A->B op value"));
        };
        let (from, to) = link.split_once("->").ok_or("expected A->B")?;
        let (from, to) = (self.node(from)?, self.node(to)?);
        let expected = self.value(expected)?;
        let network = self.network_ref()?;
        let actual = if quantity == "appends" {
            network.appends_delivered(from, to)
        } else {
            network
                .appends_until_converged(from, to)
                .ok_or_else(|| format!("node {to} never converged to node {from}"))?
        };
        self.measurements.push(Measurement {
            section: self.section.clone(),
            quantity: quantity.to_string(),
            from,
            to,
            to_label: self.labels.get(&to).cloned().unwrap_or_default(),
            value: actual,
        });
        if !compare(actual, operator, expected)? {
            return Err(format!("{quantity} {from}->{to} is {actual}, expected {operator} {expected}"));
        }
        Ok(())
    }

    fn expect_entry(&self, words: &[&str]) -> Result<(), String> {
        let [nodes, index, operator, expected] = words else {
            return Err("usage: expect entry SET INDEX op TERM".to_string());
        };
        let (index, expected) = (self.value(index)?, self.value(expected)?);
        let network = self.network_ref()?;
        for node in self.set(nodes)? {
            let entry = network.log_entries(node).into_iter().find(|entry| entry.index == index);
            let actual = entry.map_or(0, |entry| entry.term);
            if !compare(actual, operator, expected)? {
                return Err(format!(
                    "node {node} has term {actual} at index {index} (0: none), expected {operator} {expected}"
                ));
            }
        }
        Ok(())
    }

    /// `expect request-error none|ConfChangePending|InvalidConfChange|NotLeader|NoLeader|Busy`.
    fn expect_request_error(&self, wanted: &str) -> Result<(), String> {
        let last = self.last_request.as_ref().ok_or("no `change` or `transfer` yet")?;
        let actual = match last {
            Ok(()) => "none".to_string(),
            Err(error) => format!("{error:?}"),
        };
        let variant = actual.split(['(', ' ', '{']).next().unwrap_or("");
        if variant != wanted {
            return Err(format!("last request: {actual}, expected {wanted}"));
        }
        Ok(())
    }

    /// `expect voters|learners|outgoing SET: ids...` on the applied configuration
    /// (`conf_state()`); crashed nodes do not match.
    fn expect_configuration(&self, subject: &str, rest: &str) -> Result<(), String> {
        let (nodes, listing) = rest.split_once(':').ok_or_else(|| format!("usage: expect {subject} SET: ids..."))?;
        let wanted: Vec<NodeId> = listing.split_whitespace().map(|word| self.value(word)).collect::<Result<_, _>>()?;
        let network = self.network_ref()?;
        for node in self.set(&nodes.split_whitespace().collect::<String>())? {
            let live = network.node(node).ok_or_else(|| format!("node {node} is crashed"))?;
            let conf = live.conf_state();
            let mut actual = match subject {
                "voters" => conf.voters,
                "learners" => conf.learners,
                _ => conf.voters_outgoing,
            };
            actual.sort_unstable();
            let mut wanted = wanted.clone();
            wanted.sort_unstable();
            if actual != wanted {
                return Err(format!("node {node} {subject}: {actual:?}, expected {wanted:?}"));
            }
        }
        Ok(())
    }

    fn expect_step_error(&self, wanted: &str) -> Result<(), String> {
        let last = self.last_step.as_ref().ok_or("no `inject` yet")?;
        let matches = match (wanted, last) {
            ("none", Ok(())) => true,
            ("any", Err(_)) => true,
            (_, Err(error)) => format!("{error:?}").contains(wanted),
            _ => false,
        };
        if !matches {
            return Err(format!("last injected message gave {last:?}, expected {wanted}"));
        }
        Ok(())
    }

    fn expect_pending(&self, words: &[&str]) -> Result<(), String> {
        let (filter_words, comparison) = words.split_at(words.len().saturating_sub(2));
        let [operator, expected] = comparison else {
            return Err("usage: expect pending links [kinds] op V".to_string());
        };
        let links = self.links(filter_words.first().copied().ok_or("missing links")?)?;
        let kinds = match filter_words.get(1) {
            Some(kinds) => parse_kinds(kinds)?,
            None => Vec::new(),
        };
        let actual = self.network_ref()?.pending(&MessageFilter { links, kinds }) as u64;
        let expected = self.value(expected)?;
        if !compare(actual, operator, expected)? {
            let in_flight: Vec<String> = self
                .network_ref()?
                .in_flight()
                .map(|message| format!("{}->{} {}", message.from, message.to, kind_name(&message.body)))
                .collect();
            return Err(format!(
                "{actual} matching messages in flight, expected {operator} {expected}; in flight: {}",
                in_flight.join(", ")
            ));
        }
        Ok(())
    }
}

fn parse_numbers(text: &str) -> Result<Vec<u64>, String> {
    text.split_whitespace()
        .map(|word| word.parse::<u64>().map_err(|_| format!("expected a number, got `{word}`")))
        .collect()
}

fn parse_kinds(token: &str) -> Result<Vec<String>, String> {
    token
        .split(',')
        .map(|kind| {
            let kind = kind.to_ascii_lowercase();
            if KNOWN_KINDS.contains(&kind.as_str()) {
                Ok(kind)
            } else {
                Err(format!("unknown message kind `{kind}` (known: {})", KNOWN_KINDS.join(", ")))
            }
        })
        .collect()
}

fn compare(actual: u64, operator: &str, expected: u64) -> Result<bool, String> {
    Ok(match operator {
        "=" | "==" => actual == expected,
        "!=" => actual != expected,
        "<" => actual < expected,
        "<=" => actual <= expected,
        ">" => actual > expected,
        ">=" => actual >= expected,
        other => return Err(format!("unknown comparison `{other}`")),
    })
}

/// Lower-case role name as scripts write it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
        Role::Learner => "learner",
    }
}

fn describe_entry(entry: &Entry) -> String {
    format!("{}@{}:{}", entry.term, entry.index, String::from_utf8_lossy(&entry.data))
}

fn abbreviate(items: &[String]) -> String {
    const SHOWN: usize = 12;
    if items.len() <= SHOWN {
        return items.join(" ");
    }
    format!("{} ... ({} in all)", items[items.len() - SHOWN..].join(" "), items.len())
}

/// Builds a crafted message for `inject`.
fn build_message(from: NodeId, to: NodeId, kind: &str, fields: &BTreeMap<String, String>) -> Result<Message, String> {
    let number = |key: &str| -> Result<u64, String> {
        match fields.get(key) {
            Some(text) => text.parse::<u64>().map_err(|_| format!("{key}: expected a number, got `{text}`")),
            None => Ok(0),
        }
    };
    let body = match kind {
        "append" => MessageBody::Append {
            prev_log_index: number("prev-index")?,
            prev_log_term: number("prev-term")?,
            entries: parse_entries(fields.get("entries").map(String::as_str).unwrap_or(""))?,
            commit: number("commit")?,
        },
        "heartbeat" => MessageBody::Heartbeat { commit: number("commit")?, read_round: 0 },
        "vote" => MessageBody::Vote { last_log_index: number("last-index")?, last_log_term: number("last-term")? },
        "appendresp" => MessageBody::AppendResponse {
            reject: number("reject")? != 0,
            index: number("index")?,
            hint_index: number("hint-index")?,
            hint_term: number("hint-term")?,
        },
        other => return Err(format!("cannot inject kind `{other}` (append, heartbeat, vote, appendresp)")),
    };
    Ok(Message { from, to, term: number("term")?, body })
}

/// `t@i,t@i` into entries carrying the scenario command for `(t, i)`.
fn parse_entries(text: &str) -> Result<Vec<Entry>, String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (term, index) = item.split_once('@').ok_or_else(|| format!("expected term@index, got `{item}`"))?;
            let term = term.parse::<u64>().map_err(|_| format!("bad term in `{item}`"))?;
            let index = index.parse::<u64>().map_err(|_| format!("bad index in `{item}`"))?;
            let mut entry = super::network::scenario_entry(term, index);
            entry.kind = EntryKind::Normal;
            Ok(entry)
        })
        .collect()
}
