//! Guided scenarios: the seed article's walk-through (figures 1–7), the
//! inconsistent-logs figure (Raft paper Figure 7, followers (a)–(f)) and, in
//! `presets/questions.rs` and `presets/more_questions.rs`, the seed lecture's questions, Raft
//! paper Figure 8 and a membership change by joint consensus; each a list of
//! steps with a narration in English and Chinese.

mod more_questions;
mod questions;

use raft::NodeId;
use serde::Serialize;

use super::cluster::ClusterOptions;
use super::simulation::Action;

/// A text in English and Chinese.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Narration {
    /// English.
    pub en: &'static str,
    /// Chinese.
    pub zh: &'static str,
}

/// One step of a guided scenario.
#[derive(Clone, Debug)]
pub struct PresetStep {
    /// Short title.
    pub title: Narration,
    /// What happens and why.
    pub narration: Narration,
    /// What the step does to the cluster.
    pub actions: Vec<Action>,
}

/// A guided scenario.
#[derive(Clone, Debug)]
pub struct Preset {
    /// Name used in URLs and the API (`walkthrough`, `figure7`).
    pub name: &'static str,
    /// Title.
    pub title: Narration,
    /// Cluster size.
    pub node_count: usize,
    /// Node configuration.
    pub options: ClusterOptions,
    /// Labels of nodes 1.. (may be shorter than the cluster).
    pub labels: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<PresetStep>,
}

/// Names of the presets.
pub const PRESET_NAMES: [&str; 11] = [
    "walkthrough",
    "figure7",
    "crash_after_commit",
    "minority_entry",
    "figure8",
    "election_restriction",
    "conflict_hint",
    "snapshot_catch_up",
    "follower_forwarding",
    "follower_reads",
    "joint_consensus",
];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<Preset> {
    match name {
        "walkthrough" => Some(walkthrough()),
        "figure7" => Some(figure7()),
        "crash_after_commit" => Some(questions::crash_after_commit()),
        "minority_entry" => Some(questions::minority_entry()),
        "figure8" => Some(questions::figure8()),
        "election_restriction" => Some(questions::election_restriction()),
        "conflict_hint" => Some(more_questions::conflict_hint()),
        "snapshot_catch_up" => Some(more_questions::snapshot_catch_up()),
        "follower_forwarding" => Some(more_questions::follower_forwarding()),
        "follower_reads" => Some(more_questions::follower_reads()),
        "joint_consensus" => Some(more_questions::joint_consensus()),
        _ => None,
    }
}

fn deliver(from: Option<NodeId>, to: Option<NodeId>, kind: &str) -> Action {
    Action::DeliverWhere { from, to, kind: Some(kind.to_string()) }
}

fn step(title: Narration, narration: Narration, actions: Vec<Action>) -> PresetStep {
    PresetStep { title, narration, actions }
}

/// The seed article's walk-through: 5 servers, S1 leads in term 2, one client entry.
fn walkthrough() -> Preset {
    let setup = (1..=5).map(|node| Action::SetTerm { node, term: 1 }).collect();
    let steps = vec![
        step(
            Narration { en: "Five servers", zh: "五个节点" },
            Narration {
                en: "Five servers S1–S5 start with empty logs; every one has already seen term 1. Nobody leads yet.",
                zh: "五个节点 S1–S5，日志都为空，都已经历过任期 1，此时还没有领导者。",
            },
            setup,
        ),
        step(
            Narration { en: "S1 campaigns", zh: "S1 发起选举" },
            Narration {
                en: "S1's election timer fires first: it becomes a candidate for term 2, votes for itself and sends RequestVote to the four others (the arrows).",
                zh: "S1 的选举计时器最先超时：它成为任期 2 的候选人，先投自己一票，再向其余四个节点发送 RequestVote（图中的箭头）。",
            },
            vec![Action::Campaign { node: 1 }],
        ),
        step(
            Narration { en: "Votes granted", zh: "获得投票" },
            Narration {
                en: "Every follower's log is no more up to date than S1's (all are empty), so each grants its vote for term 2.",
                zh: "每个跟随者的日志都不比 S1 的新（都为空），所以它们都把任期 2 的选票投给 S1。",
            },
            vec![deliver(Some(1), None, "vote")],
        ),
        step(
            Narration { en: "Figure 1: S1 leads in term 2", zh: "图 1：S1 成为任期 2 的领导者" },
            Narration {
                en: "With its own vote and four more S1 has a majority and leads term 2. This implementation then appends a no-op entry (term 2, index 1) so that entries of earlier terms can commit (Raft §8); read the article's index 1 as index 2 from here on.",
                zh: "加上自己的一票，S1 获得多数票，成为任期 2 的领导者。本实现的领导者上任后会先追加一条空操作日志 (term2, index1)，以便提交之前任期的日志（Raft §8）；因此下文文章中的 index1 在这里对应 index2。",
            },
            vec![deliver(None, Some(1), "voteresp")],
        ),
        step(
            Narration { en: "The no-op is committed", zh: "空操作日志已提交" },
            Narration {
                en: "The no-op reaches every follower and is acknowledged; a majority holds it, so it is committed everywhere (solid borders). This is the article's figure 1: a leader, no client entry yet.",
                zh: "空操作日志复制到所有跟随者并得到确认；多数节点已保存，因此它在所有节点上都已提交（实线边框）。这就是文章的图 1：有了领导者，还没有客户端日志。",
            },
            vec![Action::Settle],
        ),
        step(
            Narration { en: "Figure 2: a client request", zh: "图 2：客户端请求" },
            Narration {
                en: "A client asks S1 to run x=1. S1 appends the entry (term 2, index 2) to its own log — dashed: not yet safe — and sends AppendEntries to all four followers in parallel.",
                zh: "客户端请求 S1 执行 x=1。S1 把日志 (term2, index2) 追加到自己的日志中（虚线：尚未安全复制），并行地向四个跟随者发送 AppendEntries RPC。",
            },
            vec![Action::Request { node: Some(1), command: "x=1".to_string() }],
        ),
        step(
            Narration { en: "Figure 3: S2 and S4 store it first", zh: "图 3：S2 和 S4 率先收到" },
            Narration {
                en: "The requests reach S2 and S4 first. Each checks that it holds the previous entry (term 2, index 1), appends the new one and answers S1. The answers are still on their way.",
                zh: "请求先到达 S2 和 S4。它们检查自己有前一条日志 (term2, index1)，于是追加新日志并回复 S1，回复还在路上。",
            },
            vec![deliver(Some(1), Some(2), "append"), deliver(Some(1), Some(4), "append")],
        ),
        step(
            Narration { en: "Figure 4: everyone has it", zh: "图 4：所有节点都已追加" },
            Narration {
                en: "S3 and S5 append the entry too. Every server now stores it, but S1 has not received a single answer, so nobody knows yet that it is safely replicated: all borders stay dashed.",
                zh: "S3 和 S5 也追加了该日志。所有节点都保存了它，但 S1 还没收到任何响应，所以还不知道它是否已经安全复制：所有边框仍是虚线。",
            },
            vec![deliver(Some(1), Some(3), "append"), deliver(Some(1), Some(5), "append")],
        ),
        step(
            Narration { en: "One answer is not enough", zh: "一个响应还不够" },
            Narration {
                en: "S2's answer arrives. S1 and S2 are 2 of 5 servers: not a majority, so the entry stays uncommitted.",
                zh: "S2 的响应到达。S1 加上 S2 只有 5 个节点中的 2 个，不到多数，日志仍未提交。",
            },
            vec![deliver(Some(2), Some(1), "appendresp")],
        ),
        step(
            Narration { en: "Figure 5: committed on the leader", zh: "图 5：领导者提交" },
            Narration {
                en: "S4's answer arrives: two followers plus S1 itself are 3 of 5, a majority (N/2+1). The entry is safely replicated: S1 draws it solid, applies x=1 to its state machine and answers the client. The followers do not know yet.",
                zh: "S4 的响应到达：两个跟随者加上 S1 自己，5 个中有 3 个，达到多数（N/2+1）。日志已安全复制：S1 上的边框变为实线，S1 把 x=1 应用到状态机并响应客户端。跟随者们还不知道。",
            },
            vec![deliver(Some(4), Some(1), "appendresp")],
        ),
        step(
            Narration { en: "The late answers", zh: "迟到的响应" },
            Narration {
                en: "S3's and S5's answers arrive. This implementation would tell the followers the new commit index at once with an empty AppendEntries; we drop those messages (a network may lose them) to show that the next heartbeat alone is enough — commit is one phase, it rides on later messages.",
                zh: "S3 和 S5 的响应也到了。本实现会立即用一条空的 AppendEntries 通知跟随者新的提交位置；这里我们把这些消息丢掉（网络本来就可能丢包），以说明仅靠下一次心跳就足够——提交只需一个阶段，它搭载在后续消息上。",
            },
            vec![
                deliver(Some(3), Some(1), "appendresp"),
                deliver(Some(5), Some(1), "appendresp"),
                Action::DropWhere { from: Some(1), to: None, kind: Some("append".to_string()) },
            ],
        ),
        step(
            Narration { en: "Figure 6: the heartbeat", zh: "图 6：心跳包" },
            Narration {
                en: "Time passes and S1 sends its periodic heartbeat. It carries the commit index: entry (term 2, index 2) is committed.",
                zh: "时间推移，S1 发送周期性的心跳包。心跳包携带提交索引：(term2, index2) 已经提交。",
            },
            vec![Action::Tick { node: 1, count: 1 }],
        ),
        step(
            Narration { en: "Figure 7: committed everywhere", zh: "图 7：全部提交" },
            Narration {
                en: "Every follower learns from the heartbeat that index 2 is committed, commits and applies x=1: all borders are solid. Same log, same state machine on all five servers.",
                zh: "每个跟随者都从心跳包得知 index2 已提交，于是提交并应用 x=1：所有边框都变为实线。五个节点的日志相同，状态机也相同。",
            },
            vec![deliver(Some(1), None, "heartbeat"), Action::Settle],
        ),
    ];
    Preset {
        name: "walkthrough",
        title: Narration { en: "Log replication, figures 1–7", zh: "日志复制：图 1–7" },
        node_count: 5,
        options: ClusterOptions::default(),
        labels: Vec::new(),
        steps,
    }
}

/// The inconsistent-logs figure: a term-8 leader repairs followers (a)–(f).
fn figure7() -> Preset {
    let logs: [(NodeId, &[u64]); 7] = [
        (1, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]),
        (2, &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        (3, &[1, 1, 1, 4]),
        (4, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        (5, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        (6, &[1, 1, 1, 4, 4, 4, 4]),
        (7, &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    let mut setup: Vec<Action> =
        logs.iter().map(|(node, terms)| Action::InstallLog { node: *node, terms: terms.to_vec() }).collect();
    setup.extend((1..=7).map(|node| Action::SetTerm { node, term: 7 }));
    let mut steps = vec![figure7_setup(setup)];
    steps.extend(figure7_election());
    steps.extend(figure7_repairs());
    steps.push(step(
        Narration { en: "Converged", zh: "日志一致" },
        Narration {
            en: "The commit index 11 reaches every follower on the leader's next AppendEntries. Every follower's log equals the leader's and is committed (solid). No follower ever had an extra committed entry: the election restriction guaranteed it, so overwriting only ever removed uncommitted entries.",
            zh: "提交索引 11 随领导者的下一条 AppendEntries 送达每个跟随者。每个跟随者的日志都与领导者相同且已提交（实线）。跟随者从来没有多出已提交的日志——这由选举限制保证，所以被覆盖的都只是未提交的日志。",
        },
        vec![Action::Settle],
    ));
    Preset {
        name: "figure7",
        title: Narration {
            en: "Inconsistent logs (a)–(f), repaired by the term-8 leader",
            zh: "日志不一致场景 (a)–(f)：任期 8 的领导者逐一修复",
        },
        node_count: 7,
        options: ClusterOptions { seed: 7, ..ClusterOptions::default() },
        // S1 has no label: its role badge says follower at step 0 and leader once elected.
        labels: ["", "(a)", "(b)", "(c)", "(d)", "(e)", "(f)"].iter().map(|label| label.to_string()).collect(),
        steps,
    }
}

fn figure7_setup(setup: Vec<Action>) -> PresetStep {
    step(
        Narration { en: "The inconsistent logs", zh: "日志不一致的场景" },
        Narration {
            en: "Each box shows an entry's term; (t,i) below means term t, index i. S1 is about to lead term 8 with log 1 1 1 4 4 5 5 6 6 6 (the terms of indexes 1–10). (a) and (b) miss entries: they were down after (6,9) and after (4,4). (c) has an extra (6,11): the term-6 leader crashed while sending it. (d) has extra (7,11) (7,12): the term-7 leader crashed before committing them. (e) misses terms 5–6 and has extra term-4 entries; (f) misses terms 4–6 and has extra entries of terms 2–3 that were never committed.",
            zh: "每个方块显示日志的任期；下文 (t,i) 表示任期 t、索引 i。S1 即将成为任期 8 的领导者，日志为 1 1 1 4 4 5 5 6 6 6（index1–10 的任期）。(a)(b) 缺少日志：它们分别在收到 (6,9) 和 (4,4) 后宕机。(c) 多了 (6,11)：任期 6 的领导者在同步它时宕机。(d) 多了 (7,11)(7,12)：任期 7 的领导者还没来得及提交就宕机了。(e) 缺少任期 5–6 的日志，又多了任期 4 的日志；(f) 缺少任期 4–6，又多了任期 2–3 从未提交的日志。",
        },
        setup,
    )
}

fn figure7_election() -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "S1 campaigns for term 8", zh: "S1 竞选任期 8" },
            Narration {
                en: "S1 asks for votes, sending its last entry (6,10). (c) and (d) refuse: their logs are more up to date (longer, or a later last term). (a), (b), (e) and (f) grant.",
                zh: "S1 请求投票，附带自己最后一条日志 (6,10)。(c)(d) 拒绝：它们的日志更新（更长，或最后的任期更大）。(a)(b)(e)(f) 同意。",
            },
            vec![Action::Campaign { node: 1 }, deliver(Some(1), None, "vote")],
        ),
        step(
            Narration { en: "S1 leads term 8", zh: "S1 成为任期 8 的领导者" },
            Narration {
                en: "Four votes plus its own make 5 of 7: S1 leads term 8. It appends its no-op (8,11) and probes every follower with AppendEntries whose previous entry is (6,10). It never changes its own log; the followers must copy it.",
                zh: "四票加上自己一票，7 个中有 5 个：S1 成为任期 8 的领导者。它追加空操作日志 (8,11)，并向每个跟随者发送前一条日志为 (6,10) 的 AppendEntries 进行探测。领导者从不修改自己的日志，跟随者必须复制领导者的日志。",
            },
            vec![deliver(None, Some(1), "voteresp")],
        ),
    ]
}

/// A title and a narration.
type Told = (Narration, Narration);

/// Steps for a follower that accepts the leader's first AppendEntries.
fn accepted_at_once(node: NodeId, told: Told) -> PresetStep {
    step(told.0, told.1, vec![deliver(Some(1), Some(node), "append"), deliver(Some(node), Some(1), "appendresp")])
}

/// Steps for a follower that rejects the probe: the reject, the leader backing up, the repair.
fn repaired_after_reject(node: NodeId, reject: Told, back_up: Told, repaired: Told) -> Vec<PresetStep> {
    vec![
        step(reject.0, reject.1, vec![deliver(Some(1), Some(node), "append")]),
        step(back_up.0, back_up.1, vec![deliver(Some(node), Some(1), "appendresp")]),
        step(
            repaired.0,
            repaired.1,
            vec![deliver(Some(1), Some(node), "append"), deliver(Some(node), Some(1), "appendresp")],
        ),
    ]
}

fn told(title_en: &'static str, title_zh: &'static str, en: &'static str, zh: &'static str) -> Told {
    (Narration { en: title_en, zh: title_zh }, Narration { en, zh })
}

fn figure7_repairs() -> Vec<PresetStep> {
    let mut steps = repaired_after_reject(
        2,
        told(
            "(a) rejects the probe",
            "(a) 拒绝探测",
            "(a) has no entry at index 10, so the consistency check fails and it rejects. Its answer carries a hint: its log ends at (6,9).",
            "(a) 在 index10 没有日志，一致性检查失败，于是拒绝。它的响应带有提示：自己的日志结束于 (6,9)。",
        ),
        told(
            "The leader backs up to (6,9)",
            "领导者回退到 (6,9)",
            "The leader holds (6,9) too, so it resends from there: previous entry (6,9), entries (6,10) (8,11).",
            "领导者也有 (6,9)，于是从这里重发：前一条日志 (6,9)，日志 (6,10)(8,11)。",
        ),
        told(
            "(a) is repaired",
            "(a) 修复完成",
            "The check passes at (6,9): (a) appends the two missing entries and acknowledges index 11.",
            "在 (6,9) 处一致性检查通过：(a) 补上缺失的两条日志，并确认 index11。",
        ),
    );
    steps.extend(repaired_after_reject(
        3,
        told(
            "(b) rejects the probe",
            "(b) 拒绝探测",
            "(b) stops at index 4 and rejects; its hint says its log ends at (4,4).",
            "(b) 的日志只到 index4，于是拒绝；它的提示说明自己的日志结束于 (4,4)。",
        ),
        told(
            "The leader jumps back to (4,4)",
            "领导者直接回退到 (4,4)",
            "The leader's entry 4 has term 4 as well. Thanks to the hint it skips the six round trips of backing up one entry at a time and sends entries 5–11 after (4,4).",
            "领导者的 index4 任期也是 4。借助提示，它省去了逐条回退的六次往返，直接发送 (4,4) 之后的 index5–11。",
        ),
        told(
            "(b) is repaired",
            "(b) 修复完成",
            "(b) now has the whole log and acknowledges index 11. With (a) and the leader itself, 3 of 7 servers hold (8,11): not yet a majority.",
            "(b) 现在拥有完整的日志并确认 index11。加上 (a) 和领导者自己，7 个节点中有 3 个保存了 (8,11)：还不到多数。",
        ),
    ));
    steps.push(accepted_at_once(
        4,
        told(
            "(c) accepts at once; index 11 commits",
            "(c) 直接接受；index11 提交",
            "(c) holds (6,10), so the probe's check passes. Its (6,11) conflicts with the leader's (8,11); it was never committed, so (c) deletes it and stores (8,11). Now 4 of 7 hold (8,11): the leader commits index 11, and with it every earlier entry — entries of earlier terms commit only together with one of the leader's own term.",
            "(c) 有 (6,10)，探测的一致性检查通过。它的 (6,11) 与领导者的 (8,11) 冲突，而且从未提交，于是 (c) 删除它并保存 (8,11)。现在 7 个节点中有 4 个保存了 (8,11)：领导者提交 index11，之前的日志也随之提交——之前任期的日志只能随领导者当前任期的日志一起提交。",
        ),
    ));
    steps.push(accepted_at_once(
        5,
        told(
            "(d) accepts at once",
            "(d) 直接接受",
            "(d) also holds (6,10). Its uncommitted term-7 entries conflict with the leader's log: (7,11) is replaced by (8,11) and (7,12) is removed.",
            "(d) 同样有 (6,10)。它未提交的任期 7 日志与领导者冲突：(7,11) 被 (8,11) 覆盖，(7,12) 被删除。",
        ),
    ));
    steps.extend(repaired_after_reject(
        6,
        told(
            "(e) rejects the probe",
            "(e) 拒绝探测",
            "(e) ends at (4,7) and rejects; its hint: term 4 at index 7.",
            "(e) 的日志结束于 (4,7)，于是拒绝；提示为：index7 的任期是 4。",
        ),
        told(
            "The leader skips back to (4,5)",
            "领导者回退到 (4,5)",
            "The leader looks for term 4 in its own log: its last entry of term 4 is index 5. It resends from there: previous entry (4,5), entries 6–11.",
            "领导者在自己的日志中查找任期 4：最后一条任期 4 的日志是 index5。于是从那里重发：前一条日志 (4,5)，日志 index6–11。",
        ),
        told(
            "(e) is repaired",
            "(e) 修复完成",
            "(4,5) matches. (e)'s extra term-4 entries at 6 and 7 are overwritten by the leader's terms 5 and 6, and entries 8–11 are added. The message also carries commit index 11, so (e) commits at once.",
            "(4,5) 匹配。(e) 在 index6、7 上多出的任期 4 日志被领导者的任期 5、6 覆盖，并补上 index8–11。这条消息还携带提交索引 11，所以 (e) 立即提交。",
        ),
    ));
    steps.extend(repaired_after_reject(
        7,
        told(
            "(f) rejects the probe",
            "(f) 拒绝探测",
            "(f) has term 3 at index 10, not 6: it rejects with the hint (3,10).",
            "(f) 在 index10 的任期是 3 而不是 6：它拒绝并给出提示 (3,10)。",
        ),
        told(
            "The leader jumps back to (1,3)",
            "领导者直接回退到 (1,3)",
            "The leader has no entry of term 2 or 3; its last entry of a term not above 3 is (1,3), the last place the two logs can agree. It resends from there: entries 4–11.",
            "领导者没有任期 2 或 3 的日志；它任期不超过 3 的最后一条日志是 (1,3)，也就是双方最后可能一致的位置。于是从那里重发 index4–11。",
        ),
        told(
            "(f) is repaired",
            "(f) 修复完成",
            "From (1,3) on, the leader's entries 4–11 replace (f)'s eight uncommitted entries of terms 2–3.",
            "从 (1,3) 之后，领导者的 index4–11 覆盖了 (f) 上八条任期 2–3 的未提交日志。",
        ),
    ));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_found_by_its_name() {
        for name in PRESET_NAMES {
            let preset = preset(name).expect("preset");
            assert_eq!(preset.name, name);
            assert!(!preset.steps.is_empty());
        }
        assert!(preset("nothing").is_none());
    }
}
