//! Presets that answer the seed lecture's questions (`003_4df60429b858d258.txt`, the
//! readers' comments and the author's answers) and Raft paper Figure 8, each driven by the
//! real core step by step.

use raft::NodeId;

use super::{deliver, step, Narration, Preset, PresetStep};
use crate::playground::cluster::ClusterOptions;
use crate::playground::simulation::Action;

/// Elections in these presets happen only when a step says so: no pre-vote (a campaign is
/// one round of RequestVote) and no leader lease (a follower that heard from the crashed
/// leader a moment ago still votes).
pub(super) fn scripted_elections(seed: u64) -> ClusterOptions {
    ClusterOptions { pre_vote: false, check_quorum: false, seed, ..ClusterOptions::default() }
}

/// Every node of `1..=node_count` has seen term 1; `leader` campaigns for term 2, wins and
/// its no-op (term 2, index 1) is committed everywhere.
pub(super) fn first_leader(node_count: NodeId, leader: NodeId) -> Vec<Action> {
    let mut actions: Vec<Action> = (1..=node_count).map(|node| Action::SetTerm { node, term: 1 }).collect();
    actions.push(Action::Campaign { node: leader });
    actions.push(Action::Settle);
    actions
}

pub(super) fn note(text: &str) -> Action {
    Action::Note { text: text.to_string() }
}

pub(super) fn request(node: NodeId, command: &str) -> Action {
    Action::Request { node: Some(node), command: command.to_string() }
}

pub(super) fn drop_from(from: NodeId, kind: &str) -> Action {
    Action::DropWhere { from: Some(from), to: None, kind: Some(kind.to_string()) }
}

/// Question 1: the leader applies an entry and crashes before any follower learns that it
/// is committed; the next leader must hold it and commits it with an entry of its own term.
pub(super) fn crash_after_commit() -> Preset {
    let steps = vec![
        step(
            Narration { en: "S1 leads term 2", zh: "S1 成为任期 2 的领导者" },
            Narration {
                en: "Question from the lecture's comments: “if the leader crashes after it applied an entry but before it told any follower the new commit index, is the entry lost?” Three servers; S1 has just been elected for term 2 and its no-op (term 2, index 1) is committed on all of them.",
                zh: "课程评论区的问题：“如果领导者已经应用了一条日志，但还没来得及把新的提交索引告诉任何跟随者就宕机了，这条日志会丢失吗？”三个节点；S1 刚当选任期 2 的领导者，它的空操作日志 (term2, index1) 已在所有节点上提交。",
            },
            first_leader(3, 1),
        ),
        step(
            Narration { en: "A client writes x=1", zh: "客户端写入 x=1" },
            Narration {
                en: "S1 appends x=1 as (term 2, index 2) and sends AppendEntries to S2 and S3.",
                zh: "S1 把 x=1 追加为 (term2, index2)，并向 S2、S3 发送 AppendEntries。",
            },
            vec![request(1, "x=1")],
        ),
        step(
            Narration { en: "S2 stores it; S1 commits and applies", zh: "S2 保存；S1 提交并应用" },
            Narration {
                en: "The message to S3 is lost. S2 appends the entry and acknowledges: S1 and S2 are 2 of 3, a majority, so S1 commits index 2, applies x=1 and tells the client “done”. S2 itself still has commit index 1: it learns the new one only with S1's next message.",
                zh: "发往 S3 的消息丢失了。S2 追加日志并确认：S1 和 S2 是 3 个节点中的 2 个，达到多数，于是 S1 提交 index2、应用 x=1 并告诉客户端“成功”。S2 自己的提交索引仍是 1：它要等 S1 的下一条消息才知道新的提交索引。",
            },
            vec![
                Action::DropWhere { from: Some(1), to: Some(3), kind: Some("append".to_string()) },
                deliver(Some(1), Some(2), "append"),
                deliver(Some(2), Some(1), "appendresp"),
                note("S1 answered the client: x=1 done"),
            ],
        ),
        step(
            Narration { en: "S1 crashes", zh: "S1 宕机" },
            Narration {
                en: "S1 crashes before its next message leaves. No follower knows that index 2 is committed: on S2 it is dashed (not known committed), S3 does not have it at all. Yet the client was told “done”, so Raft must never lose it.",
                zh: "S1 在下一条消息发出之前宕机。没有任何跟随者知道 index2 已提交：S2 上它是虚线（不知道已提交），S3 上根本没有它。可客户端已经得到“成功”的答复，所以 Raft 绝不能丢掉它。",
            },
            vec![drop_from(1, "append"), Action::Crash { node: 1 }],
        ),
        step(
            Narration { en: "S3 cannot win", zh: "S3 无法当选" },
            Narration {
                en: "S3 campaigns for term 3 with last entry (2,1). S2 refuses: its own log ends at (2,2), more up to date. S1 is down, so S3 has only its own vote, 1 of 3. A committed entry is on a majority, and every majority overlaps it: a server without the entry can never collect enough votes.",
                zh: "S3 以最后一条日志 (2,1) 竞选任期 3。S2 拒绝：它自己的日志结束于 (2,2)，更新。S1 宕机，S3 只有自己的一票，3 个中的 1 个。已提交的日志一定在多数节点上，而任何多数都与之相交：没有这条日志的节点永远凑不够选票。",
            },
            vec![
                Action::Campaign { node: 3 },
                deliver(Some(3), None, "vote"),
                deliver(None, Some(3), "voteresp"),
            ],
        ),
        step(
            Narration { en: "S2 leads term 4", zh: "S2 成为任期 4 的领导者" },
            Narration {
                en: "S2 campaigns for term 4 and S3 grants (S2's log is more up to date). S2 leads and appends its no-op (4,3). It holds (2,2) but still shows commit 1: a leader does not commit an entry of an earlier term by counting copies (Raft §5.4.2).",
                zh: "S2 竞选任期 4，S3 同意（S2 的日志更新）。S2 成为领导者并追加空操作日志 (4,3)。它有 (2,2)，但提交索引仍显示 1：领导者不会通过计数副本来提交之前任期的日志（Raft §5.4.2）。",
            },
            vec![Action::Campaign { node: 2 }, deliver(Some(2), None, "vote"), deliver(None, Some(2), "voteresp")],
        ),
        step(
            Narration { en: "S3 is repaired; (2,2) commits with (4,3)", zh: "S3 修复；(2,2) 随 (4,3) 一起提交" },
            Narration {
                en: "S3 rejects the first AppendEntries (it has no index 2); S2 backs up and sends (2,2) and (4,3). S3 acknowledges index 3: 2 of 3 hold the term-4 entry, so S2 commits index 3 and with it index 2, and applies x=1. The lecture's answer: a new leader commits a previous-term entry once an entry of its own term commits.",
                zh: "S3 拒绝第一条 AppendEntries（它没有 index2）；S2 回退并发送 (2,2) 和 (4,3)。S3 确认 index3：3 个节点中有 2 个保存了任期 4 的日志，于是 S2 提交 index3，index2 也随之提交，并应用 x=1。正如课程的回答：新领导者在自己任期的日志提交时，一并提交之前任期的日志。",
            },
            vec![
                deliver(Some(2), Some(3), "append"),
                deliver(Some(3), Some(2), "appendresp"),
                deliver(Some(2), Some(3), "append"),
                deliver(Some(3), Some(2), "appendresp"),
                drop_from(2, "append"),
            ],
        ),
        step(
            Narration { en: "S1 comes back", zh: "S1 恢复" },
            Narration {
                en: "S1 restarts from its disk (term 2, log up to (2,2)). S2's heartbeat carries term 4 and commit 3: S3 commits and applies x=1; S1 becomes a follower, receives (4,3) and commits. All three logs are equal and committed, and x=1 was applied exactly once on each server.",
                zh: "S1 从磁盘重启（任期 2，日志到 (2,2)）。S2 的心跳携带任期 4 和提交索引 3：S3 提交并应用 x=1；S1 成为跟随者，收到 (4,3) 并提交。三个节点的日志完全相同且已提交，x=1 在每个节点上都只应用了一次。",
            },
            vec![Action::Restart { node: 1 }, Action::Tick { node: 2, count: 1 }, Action::Settle],
        ),
    ];
    Preset {
        name: "crash_after_commit",
        title: Narration {
            en: "Q: the leader crashes after applying an entry", zh: "问：领导者应用日志后宕机"
        },
        node_count: 3,
        options: scripted_elections(11),
        labels: Vec::new(),
        steps,
    }
}

/// The current leader (a live node) catches every node up: one heartbeat, then every answer.
pub(super) fn catch_up(leader: NodeId) -> Vec<Action> {
    vec![Action::Tick { node: leader, count: 1 }, Action::Settle]
}

/// Question 2 and R8: an entry on a minority whose client was told it failed is committed
/// by the next leader; a retry without a request id applies twice, with one it applies once.
pub(super) fn minority_entry() -> Preset {
    let mut steps = vec![
        step(
            Narration { en: "S1 leads term 2", zh: "S1 成为任期 2 的领导者" },
            Narration {
                en: "Question from the lecture's comments: “the client was told its write failed; can the write still happen?” Five servers; S1 leads term 2, its no-op is committed. The state machine adds: x+=1 adds one to x.",
                zh: "课程评论区的问题：“客户端被告知写入失败了，这个写入还可能生效吗？”五个节点；S1 是任期 2 的领导者，空操作日志已提交。状态机做加法：x+=1 把 x 加一。",
            },
            first_leader(5, 1),
        ),
        step(
            Narration { en: "x+=1 reaches only S2", zh: "x+=1 只到达 S2" },
            Narration {
                en: "A client sends x+=1. S1 appends (2,2); only S2 receives it, the other three messages are lost. S1 and S2 are 2 of 5, no majority: the entry stays uncommitted and the client, after its timeout, is told the write failed (the lecture's step “without a majority the client gets an error”).",
                zh: "客户端发送 x+=1。S1 追加 (2,2)；只有 S2 收到，另外三条消息丢失。S1 和 S2 是 5 个中的 2 个，不到多数：日志保持未提交，客户端超时后被告知写入失败（课程中“得不到多数，客户端收到错误”）。",
            },
            vec![
                request(1, "x+=1"),
                deliver(Some(1), Some(2), "append"),
                drop_from(1, "append"),
                deliver(Some(2), Some(1), "appendresp"),
                note("client: x+=1 timed out, told it failed"),
            ],
        ),
        step(
            Narration { en: "S1 crashes; S2 leads term 3", zh: "S1 宕机；S2 成为任期 3 的领导者" },
            Narration {
                en: "S1 crashes. S2 campaigns for term 3; its log, ending at (2,2), is the most up to date, so S3, S4 and S5 grant. S2 leads and appends its no-op (3,3).",
                zh: "S1 宕机。S2 竞选任期 3；它的日志结束于 (2,2)，是最新的，所以 S3、S4、S5 都同意。S2 成为领导者并追加空操作日志 (3,3)。",
            },
            vec![
                Action::Crash { node: 1 },
                Action::Campaign { node: 2 },
                deliver(Some(2), None, "vote"),
                deliver(None, Some(2), "voteresp"),
            ],
        ),
        step(
            Narration { en: "The “failed” write commits", zh: "“失败”的写入被提交了" },
            Narration {
                en: "S2 repairs S3, S4 and S5: they receive (2,2) and (3,3). The term-3 entry is on a majority, so index 3 commits and with it (2,2): x+=1 is applied, x=1 — although its client was told it failed. The lecture: an uncommitted entry may be overwritten, or committed later.",
                zh: "S2 修复 S3、S4、S5：它们收到 (2,2) 和 (3,3)。任期 3 的日志已在多数节点上，于是 index3 提交，(2,2) 也随之提交：x+=1 被应用，x=1——尽管客户端被告知失败。正如课程所说：未提交的日志可能被覆盖，也可能之后被提交。",
            },
            vec![Action::Settle],
        ),
        step(
            Narration { en: "The client retries: x=2", zh: "客户端重试：x=2" },
            Narration {
                en: "The client, believing its write lost, sends x+=1 again. It commits as (3,4) and is applied: x=2. One increment was asked for, two happened. Retrying a non-idempotent command is unsafe without help from the state machine.",
                zh: "客户端以为写入丢了，再次发送 x+=1。它作为 (3,4) 被提交并应用：x=2。客户端只想加一次，结果加了两次。没有状态机的配合，重试非幂等命令是不安全的。",
            },
            vec![request(2, "x+=1"), Action::Settle],
        ),
        step(
            Narration { en: "S1 rejoins", zh: "S1 重新加入" },
            Narration {
                en: "S1 restarts and S2's heartbeat brings it up to date. Now the same story with a client protocol (Raft §8, the lecture's R8): every request carries the client's id and a sequence number, #c1.1 below, and the state machine remembers the last sequence it applied for each client.",
                zh: "S1 重启，S2 的心跳让它追上进度。下面用客户端协议重演一遍（Raft §8，课程中的 R8）：每个请求带上客户端 id 和序号，下文记作 #c1.1，状态机记住每个客户端已应用的最大序号。",
            },
            [vec![Action::Restart { node: 1 }], catch_up(2)].concat(),
        ),
    ];
    steps.extend(minority_entry_with_request_id());
    Preset {
        name: "minority_entry",
        title: Narration {
            en: "Q: a write told “failed” commits anyway; request ids (R8)",
            zh: "问：被告知失败的写入仍被提交；请求 id（R8）",
        },
        node_count: 5,
        options: scripted_elections(12),
        labels: Vec::new(),
        steps,
    }
}

fn minority_entry_with_request_id() -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "y+=1 #c1.1 reaches only S3", zh: "y+=1 #c1.1 只到达 S3" },
            Narration {
                en: "Client c1 sends y+=1 with request id c1.1. S2 appends it as (3,5); only S3 receives it. 2 of 5: uncommitted, and the client is told it failed.",
                zh: "客户端 c1 发送 y+=1，请求 id 为 c1.1。S2 把它追加为 (3,5)；只有 S3 收到。5 个中的 2 个：未提交，客户端被告知失败。",
            },
            vec![
                request(2, "y+=1 #c1.1"),
                deliver(Some(2), Some(3), "append"),
                drop_from(2, "append"),
                deliver(Some(3), Some(2), "appendresp"),
                note("client c1: y+=1 #c1.1 timed out, told it failed"),
            ],
        ),
        step(
            Narration { en: "S2 crashes; S3 leads term 4", zh: "S2 宕机；S3 成为任期 4 的领导者" },
            Narration {
                en: "S2 crashes. S3 holds (3,5), the most up to date log: S1, S4 and S5 grant, S3 leads term 4, repairs the others and commits (3,5) with its no-op (4,6). y=1: the “failed” write happened again.",
                zh: "S2 宕机。S3 有 (3,5)，日志最新：S1、S4、S5 同意，S3 成为任期 4 的领导者，修复其他节点，并随空操作日志 (4,6) 一起提交 (3,5)。y=1：“失败”的写入又一次生效了。",
            },
            vec![
                Action::Crash { node: 2 },
                Action::Campaign { node: 3 },
                deliver(Some(3), None, "vote"),
                deliver(None, Some(3), "voteresp"),
                Action::Settle,
            ],
        ),
        step(
            Narration { en: "The retry is recognised: y stays 1", zh: "重试被识别：y 仍为 1" },
            Narration {
                en: "The client retries with the same id c1.1. The entry is appended and committed as (4,7) like any other, but the state machine has already applied c1.1 and ignores the repeat: y=1. Raft still commits duplicates; the client protocol makes applying them harmless.",
                zh: "客户端用同一个 id c1.1 重试。这条日志像其他日志一样被追加并提交为 (4,7)，但状态机已经应用过 c1.1，于是忽略这次重复：y=1。Raft 仍会提交重复的日志，是客户端协议让应用它们变得无害。",
            },
            vec![request(3, "y+=1 #c1.1"), Action::Settle],
        ),
        step(
            Narration { en: "S2 rejoins: the same state everywhere", zh: "S2 重新加入：各处状态相同" },
            Narration {
                en: "S2 restarts and is brought up to date. Every server has the same log and the same state: x=2 (the unprotected retry counted twice), y=1 (the retry with a request id counted once).",
                zh: "S2 重启并追上进度。每个节点的日志和状态都相同：x=2（无保护的重试算了两次），y=1（带请求 id 的重试只算一次）。",
            },
            [vec![Action::Restart { node: 2 }], catch_up(3)].concat(),
        ),
    ]
}

/// Raft paper Figure 8: an entry of an earlier term on a majority is still not committed,
/// because a server whose last entry has a later term can win and overwrite it.
pub(super) fn figure8() -> Preset {
    let mut setup: Vec<Action> = [(1, vec![1, 2]), (2, vec![1, 2]), (3, vec![1]), (4, vec![1]), (5, vec![1, 3])]
        .into_iter()
        .map(|(node, terms)| Action::InstallLog { node, terms })
        .collect();
    setup.extend((1..=4).map(|node| Action::SetTerm { node, term: 3 }));
    let steps = vec![
        step(
            Narration { en: "(a) and (b): the story so far", zh: "(a)(b)：此前发生的事" },
            Narration {
                en: "Raft paper Figure 8, five servers. (a) S1 led term 2 and sent (2,2) to S2 only, then crashed. (b) S5 led term 3 with the votes of S3, S4 and itself, appended (3,2) and crashed before sending it. Everyone has now seen term 3; nobody leads.",
                zh: "Raft 论文图 8，五个节点。(a) S1 是任期 2 的领导者，只把 (2,2) 发给了 S2 就宕机了。(b) S5 靠 S3、S4 和自己的选票成为任期 3 的领导者，追加了 (3,2)，还没发出就宕机了。现在所有节点都经历过任期 3，没有领导者。",
            },
            setup,
        ),
        step(
            Narration { en: "(c) S1 leads term 4", zh: "(c) S1 成为任期 4 的领导者" },
            Narration {
                en: "S5 crashes. S1 campaigns for term 4 and S2, S3 and S4 grant (its last entry (2,2) is at least as up to date as theirs). S1 appends its no-op (4,3) and starts replicating; here each AppendEntries carries one entry.",
                zh: "S5 宕机。S1 竞选任期 4，S2、S3、S4 同意（它最后的日志 (2,2) 不比它们的旧）。S1 追加空操作日志 (4,3) 并开始复制；这里每条 AppendEntries 只携带一条日志。",
            },
            vec![
                Action::Crash { node: 5 },
                Action::Campaign { node: 1 },
                deliver(Some(1), None, "vote"),
                deliver(None, Some(1), "voteresp"),
            ],
        ),
        step(
            Narration { en: "(c) (2,2) is on a majority — not committed", zh: "(c) (2,2) 已在多数节点上——但未提交" },
            Narration {
                en: "S1's first AppendEntries to S2 is lost. S3 rejects its probe (no index 2); S1 backs up and sends (2,2), which S3 stores; (4,3) is still on its way to S3. Now S1, S2 and S3 — 3 of 5 — store (2,2), but S1's commit index stays 0: (2,2) is from term 2, and a leader commits only by counting replicas of an entry of its own term. The next steps show why.",
                zh: "S1 发给 S2 的第一条 AppendEntries 丢失了。S3 拒绝探测（它没有 index2）；S1 回退并发送 (2,2)，S3 保存了它；(4,3) 还在发往 S3 的路上。现在 S1、S2、S3——5 个中的 3 个——都保存了 (2,2)，但 S1 的提交索引仍是 0：(2,2) 属于任期 2，领导者只通过计数自己任期的日志副本来提交。接下来说明原因。",
            },
            vec![
                Action::DropWhere { from: Some(1), to: Some(2), kind: Some("append".to_string()) },
                deliver(Some(1), Some(3), "append"),
                deliver(Some(3), Some(1), "appendresp"),
                deliver(Some(1), Some(3), "append"),
                deliver(Some(3), Some(1), "appendresp"),
            ],
        ),
        step(
            Narration { en: "(d) S1 crashes; S5 leads term 5", zh: "(d) S1 宕机；S5 成为任期 5 的领导者" },
            Narration {
                en: "S5 restarts and learns of term 4 from S1's AppendEntries (which it rejects: its index 2 has term 3). Then S1 crashes, its messages lost. S5 campaigns for term 5: its last entry (3,2) has a later term than (2,2), so S2, S3 and S4 all grant. S5 leads term 5 and appends its no-op (5,3).",
                zh: "S5 重启，从 S1 的 AppendEntries 得知任期 4（并拒绝了它：自己 index2 的任期是 3）。随后 S1 宕机，它发出的消息都丢了。S5 竞选任期 5：它最后的日志 (3,2) 的任期比 (2,2) 大，所以 S2、S3、S4 都同意。S5 成为任期 5 的领导者并追加空操作日志 (5,3)。",
            },
            vec![
                Action::Restart { node: 5 },
                deliver(Some(1), Some(5), "append"),
                Action::DropWhere { from: Some(1), to: None, kind: None },
                Action::DropWhere { from: None, to: Some(1), kind: None },
                Action::Crash { node: 1 },
                Action::Campaign { node: 5 },
                deliver(Some(5), None, "vote"),
                deliver(None, Some(5), "voteresp"),
            ],
        ),
        step(
            Narration { en: "(d) (2,2) is overwritten", zh: "(d) (2,2) 被覆盖" },
            Narration {
                en: "S5 makes the others copy its log: (3,2) replaces (2,2) on S2 and S3, and (5,3) commits on S2–S5. Had S1 counted replicas and committed (2,2) in (c), a committed entry would now be gone. (e) The rule's way out: had S1 first got its own (4,3) onto a majority, (2,2) would have committed with it, and S5 — last entry (3,2), older than (4,3) — could not have won.",
                zh: "S5 让其他节点复制它的日志：(3,2) 在 S2、S3 上取代了 (2,2)，(5,3) 在 S2–S5 上提交。如果 S1 在 (c) 中通过计数副本提交了 (2,2)，那么一条已提交的日志现在就丢了。(e) 规则给出的出路：如果 S1 先把自己的 (4,3) 复制到多数节点，(2,2) 会随之提交，而 S5——最后的日志 (3,2) 比 (4,3) 旧——就不可能当选。",
            },
            vec![Action::Settle],
        ),
        step(
            Narration { en: "S1 rejoins and is overwritten too", zh: "S1 重新加入，也被覆盖" },
            Narration {
                en: "S1 restarts. Its (2,2) and (4,3) were never committed; S5 replaces them with (3,2) and (5,3). All five logs are equal and committed.",
                zh: "S1 重启。它的 (2,2) 和 (4,3) 从未提交；S5 用 (3,2) 和 (5,3) 取代它们。五个节点的日志完全相同且已提交。",
            },
            [vec![Action::Restart { node: 1 }], catch_up(5)].concat(),
        ),
    ];
    Preset {
        name: "figure8",
        title: Narration {
            en: "Raft paper Figure 8: no commit by counting an old term's replicas",
            zh: "Raft 论文图 8：不能靠计数旧任期的副本来提交",
        },
        node_count: 5,
        options: ClusterOptions { append_size_bytes_max: 1, ..scripted_elections(13) },
        labels: Vec::new(),
        steps,
    }
}

/// The election restriction (§5.4.1): a voter refuses a candidate whose log is shorter with
/// the same last term, or whose last term is older, uncommitted entries included.
pub(super) fn election_restriction() -> Preset {
    let steps = vec![
        step(
            Narration { en: "S1 leads term 2", zh: "S1 成为任期 2 的领导者" },
            Narration {
                en: "The lecture's question: “when voting, are uncommitted entries compared too?” Its answer: yes, a voter compares the last entry of its whole log, committed or not. Five servers; S1 leads term 2 and its no-op is committed.",
                zh: "课程中的问题：“投票时比较的日志包括未提交的吗？”作者回答：包括，投票者比较自己整个日志（无论是否已提交）的最后一条。五个节点；S1 是任期 2 的领导者，空操作日志已提交。",
            },
            first_leader(5, 1),
        ),
        step(
            Narration { en: "x=1 reaches S2 only; S1 crashes", zh: "x=1 只到达 S2；S1 宕机" },
            Narration {
                en: "S1 appends x=1 as (2,2); only S2 stores it, then S1 crashes. (2,2) is on 2 of 5 servers, uncommitted.",
                zh: "S1 把 x=1 追加为 (2,2)；只有 S2 保存了它，随后 S1 宕机。(2,2) 只在 5 个中的 2 个节点上，未提交。",
            },
            vec![
                request(1, "x=1"),
                deliver(Some(1), Some(2), "append"),
                drop_from(1, "append"),
                Action::Crash { node: 1 },
            ],
        ),
        step(
            Narration { en: "A shorter log: S2 refuses S3", zh: "日志更短：S2 拒绝 S3" },
            Narration {
                en: "S3 campaigns for term 3 with last entry (2,1). S2's last entry (2,2) has the same term and a higher index: S3's log is shorter, and S2 refuses although its extra entry is not committed. S4 and S5 grant (their logs end at (2,1) too), so S3 wins 3 of 5 — (2,2) was on a minority and may be lost.",
                zh: "S3 以最后一条日志 (2,1) 竞选任期 3。S2 最后的日志 (2,2) 任期相同、索引更大：S3 的日志更短，S2 拒绝——尽管它多出的那条日志并未提交。S4、S5 同意（它们的日志也结束于 (2,1)），于是 S3 以 5 票中的 3 票当选——(2,2) 只在少数节点上，可以被丢弃。",
            },
            vec![Action::Campaign { node: 3 }, deliver(Some(3), None, "vote"), deliver(None, Some(3), "voteresp")],
        ),
        step(
            Narration { en: "S3 commits (3,2) without S2", zh: "S3 在没有 S2 的情况下提交 (3,2)" },
            Narration {
                en: "S3's no-op (3,2) reaches S4 and S5 and commits (3 of 5). Its message to S2 is lost, so S2 still holds its uncommitted (2,2).",
                zh: "S3 的空操作日志 (3,2) 到达 S4、S5 并提交（5 个中的 3 个）。发给 S2 的消息丢失了，所以 S2 仍保留着未提交的 (2,2)。",
            },
            vec![
                Action::DropWhere { from: Some(3), to: Some(2), kind: Some("append".to_string()) },
                deliver(Some(3), Some(4), "append"),
                deliver(Some(3), Some(5), "append"),
                deliver(Some(4), Some(3), "appendresp"),
                deliver(Some(5), Some(3), "appendresp"),
                drop_from(3, "append"),
            ],
        ),
        step(
            Narration { en: "An older log: everyone refuses S2", zh: "日志更旧：所有节点都拒绝 S2" },
            Narration {
                en: "S2 campaigns for term 4. Its log is as long as S3's, S4's and S5's, but its last entry (2,2) has an older term than their (3,2): a later last term wins whatever the length, so all three refuse. S3 sees the higher term and steps down (pre-vote, off here, would have spared it). Refused by a majority, S2 gives up: nobody leads.",
                zh: "S2 竞选任期 4。它的日志和 S3、S4、S5 一样长，但最后一条 (2,2) 的任期比它们的 (3,2) 旧：最后任期更大者更新，与长度无关，所以三者都拒绝。S3 看到更高的任期而退位（这里关闭了预投票，否则可以避免）。被多数拒绝后 S2 放弃竞选：此时没有领导者。",
            },
            vec![Action::Campaign { node: 2 }, deliver(Some(2), None, "vote"), deliver(None, Some(2), "voteresp")],
        ),
        step(
            Narration { en: "S3 leads term 5; S2's entry is replaced", zh: "S3 成为任期 5 的领导者；S2 的日志被替换" },
            Narration {
                en: "S3 campaigns for term 5; every live server grants, S2 included (S3's log is more up to date than its own). S3 appends (5,3) and repairs S2: the uncommitted x=1 at index 2 is replaced by (3,2). x=1 was never applied anywhere.",
                zh: "S3 竞选任期 5；所有存活节点都同意，包括 S2（S3 的日志比它的新）。S3 追加 (5,3) 并修复 S2：index2 上未提交的 x=1 被 (3,2) 取代。x=1 从未在任何节点上被应用。",
            },
            vec![Action::Campaign { node: 3 }, Action::Settle],
        ),
        step(
            Narration { en: "S1 rejoins", zh: "S1 重新加入" },
            Narration {
                en: "S1 restarts with (2,2) x=1 in its log; S3's heartbeat brings term 5, and S1's uncommitted entry is replaced as well. All five logs are equal and committed.",
                zh: "S1 重启，日志中还有 (2,2) x=1；S3 的心跳带来任期 5，S1 未提交的日志同样被替换。五个节点的日志完全相同且已提交。",
            },
            [vec![Action::Restart { node: 1 }], catch_up(3)].concat(),
        ),
    ];
    Preset {
        name: "election_restriction",
        title: Narration {
            en: "Q: the election restriction counts uncommitted entries",
            zh: "问：选举限制也比较未提交的日志",
        },
        node_count: 5,
        options: scripted_elections(14),
        labels: Vec::new(),
        steps,
    }
}
