//! Presets 5–9 answering the seed lecture's questions (`003_4df60429b858d258.txt`): the
//! conflict hint against backing up one entry per round trip, a compacted log and a
//! snapshot, forwarding writes from a follower, reads on a follower and ReadIndex, and a
//! membership change by joint consensus with a leader crash in the middle.

use raft::NodeId;

use super::questions::{catch_up, drop_from, first_leader, note, request, scripted_elections};
use super::{deliver, step, Narration, Preset, PresetStep};
use crate::playground::cluster::ClusterOptions;
use crate::playground::simulation::Action;

/// The leader's reply to `follower`'s answer, then `follower`'s answer to it: one round trip
/// (the answer to the previous AppendEntries first).
fn round_trip(leader: NodeId, follower: NodeId) -> Vec<Action> {
    vec![deliver(Some(follower), Some(leader), "appendresp"), deliver(Some(leader), Some(follower), "append")]
}

fn round_trips(leader: NodeId, follower: NodeId, count: usize) -> Vec<Action> {
    (0..count).flat_map(|_| round_trip(leader, follower)).collect()
}

/// Delivers every message between `leader` and `followers` until none is left (a bounded
/// number of rounds: each round delivers what is in flight on those links now).
fn settle_links(leader: NodeId, followers: &[NodeId]) -> Vec<Action> {
    let mut actions = Vec::new();
    for _ in 0..4 {
        for follower in followers {
            actions.push(Action::DeliverWhere { from: Some(leader), to: Some(*follower), kind: None });
            actions.push(Action::DeliverWhere { from: Some(*follower), to: Some(leader), kind: None });
        }
    }
    actions
}

fn labels(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|label| label.to_string()).collect()
}

/// Question 5: the consistency check backs up one entry per rejected AppendEntries; the
/// follower's conflict hint skips a whole term at once. Two followers with the same
/// diverging log are repaired side by side, one of them answering without the hint.
pub(super) fn conflict_hint() -> Preset {
    let leader_log = vec![1, 1, 1, 4, 4, 4, 4, 4, 4, 4];
    let stale_log = vec![1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3];
    let mut setup: Vec<Action> =
        [(1, &leader_log), (2, &stale_log), (3, &stale_log), (4, &leader_log), (5, &leader_log)]
            .into_iter()
            .map(|(node, terms)| Action::InstallLog { node, terms: terms.clone() })
            .collect();
    setup.extend((1..=5).map(|node| Action::SetTerm { node, term: 4 }));
    setup.push(Action::NaiveBacktracking { enabled: true, follower: Some(2) });
    let mut elected =
        vec![Action::Campaign { node: 1 }, deliver(Some(1), None, "vote"), deliver(None, Some(1), "voteresp")];
    elected.extend(settle_links(1, &[4, 5]));
    elected.push(Action::ResetCounters);
    let steps = conflict_hint_steps(setup, elected);
    Preset {
        name: "conflict_hint",
        title: Narration {
            en: "Q: backing up one entry per round trip vs the conflict hint",
            zh: "问：逐条回退与冲突提示的对比",
        },
        node_count: 5,
        options: scripted_elections(15),
        labels: labels(&["", "no hint", "hint"]),
        steps,
    }
}

fn conflict_hint_steps(setup: Vec<Action>, elected: Vec<Action>) -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "Two followers, the same stale log", zh: "两个跟随者，同样落后的日志" },
            Narration {
                en: "The lecture's question: “backing up one entry per rejected AppendEntries is slow; can the follower say where its log diverges?” The core always answers with such a hint, so the playground rewrites S2's answers to say only “not at this index” (a follower without the hint), and S3 keeps the real one. S2 and S3 hold the same log: nine term-3 entries from a leader that reached only them, never committed. S1, S4 and S5 hold seven term-4 entries instead (the playground starts every log uncommitted; they commit with the next leader's no-op).",
                zh: "课程评论区的问题：“被拒绝一次只回退一条日志太慢了，跟随者能不能直接告诉领导者分歧在哪里？”本实现的核心总是带上这样的提示，所以演示中把 S2 的回复改写为只说“这个位置不匹配”（一个不给提示的跟随者），S3 保留真实的提示。S2 和 S3 的日志完全相同：九条任期 3 的日志，来自一个只复制到它们两个的领导者，从未提交。S1、S4、S5 则保存着七条任期 4 的日志（演示中所有日志起初都未提交，它们会随下一任领导者的空操作日志一起提交）。",
            },
            setup,
        ),
        step(
            Narration { en: "S1 leads term 5", zh: "S1 成为任期 5 的领导者" },
            Narration {
                en: "S1 campaigns for term 5 and everyone grants (its last term 4 is later than S2's and S3's 3). It appends its no-op (5,11); S4 and S5 accept it at once and it commits. The round-trip counters (the table on the right) start now.",
                zh: "S1 竞选任期 5，所有节点都同意（它的最后任期 4 比 S2、S3 的 3 新）。它追加空操作日志 (5,11)；S4、S5 立即接受，日志提交。往返计数（右侧的表格）从现在开始。",
            },
            elected,
        ),
        step(
            Narration { en: "Both reject the first probe", zh: "两者都拒绝第一次探测" },
            Narration {
                en: "The probe says “previous entry (4,10)”. Both followers have term 3 at index 10 and reject. S3's answer carries the hint (3,10): “my entry at 10 has term 3”. S2's answer, without the hint, only says “try one entry lower”: hint (4,9) in the message list, index 9 with the leader's own term there.",
                zh: "探测消息说“前一条日志是 (4,10)”。两个跟随者在 index10 的任期都是 3，于是拒绝。S3 的回复带有提示 (3,10)：“我在 index10 的日志任期是 3”。S2 的回复没有提示，只说“往前试一条”：消息列表中的 hint (4,9)，即 index9 和领导者自己在该位置的任期。",
            },
            vec![deliver(Some(1), Some(2), "append"), deliver(Some(1), Some(3), "append")],
        ),
        step(
            Narration { en: "With the hint: repaired in 2 round trips", zh: "有提示：2 次往返完成修复" },
            Narration {
                en: "S1 has no term-3 entry; its last entry of a term not above 3 is (1,3), so it jumps there at once and sends entries 4–11 after (1,3). The check passes: S3's nine term-3 entries are replaced and S3 matches the leader after 2 round trips, 1 rejection.",
                zh: "S1 没有任期 3 的日志；它任期不超过 3 的最后一条是 (1,3)，于是直接跳到那里，发送 (1,3) 之后的 index4–11。一致性检查通过：S3 的九条任期 3 日志被替换，2 次往返、1 次拒绝后 S3 就与领导者一致了。",
            },
            [round_trip(1, 3), vec![deliver(Some(3), Some(1), "appendresp")]].concat(),
        ),
        step(
            Narration { en: "Without the hint: one entry per round trip", zh: "没有提示：每次往返回退一条" },
            Narration {
                en: "S2 rejects (4,9), then (4,8), then (4,7): each rejection costs a full round trip and moves the leader back by one entry only. The round-trip table on the right keeps climbing while S3 is already done.",
                zh: "S2 依次拒绝 (4,9)、(4,8)、(4,7)：每次拒绝都要一整次往返，而领导者只回退一条。右侧的往返计数不断增加，而 S3 早已完成。",
            },
            round_trips(1, 2, 3),
        ),
        step(
            Narration { en: "S2 is repaired after 8 round trips", zh: "S2 经过 8 次往返才修复" },
            Narration {
                en: "Three more rejections, (4,6) to (4,4), before the probe reaches (1,3), where the logs agree. S2 needed 8 round trips and 7 rejections for the same repair S3 got in 2 — with a long divergence (thousands of entries after a partition) the difference is minutes of catching up. The hint skips one whole term per round trip; a far-behind follower gets a snapshot instead (next preset).",
                zh: "又经过三次拒绝，从 (4,6) 到 (4,4)，探测才到达双方一致的 (1,3)。同样的修复，S3 只需 2 次往返，S2 却需要 8 次往返、7 次拒绝——如果分歧很长（分区后落后成千上万条），差别就是几分钟的追赶时间。提示让每次往返跳过一整个任期；落后太多的跟随者则直接接收快照（见下一个场景）。",
            },
            [round_trips(1, 2, 5), vec![deliver(Some(2), Some(1), "appendresp")]].concat(),
        ),
        step(
            Narration { en: "Every log equals the leader's", zh: "所有日志都与领导者一致" },
            Narration {
                en: "All five logs are 1 1 1 4 4 4 4 4 4 4 5 and committed. The counters: S1→S2 8 AppendEntries, 7 rejected; S1→S3 2 AppendEntries, 1 rejected.",
                zh: "五个节点的日志都是 1 1 1 4 4 4 4 4 4 4 5，且都已提交。计数：S1→S2 8 次 AppendEntries，7 次被拒绝；S1→S3 2 次 AppendEntries，1 次被拒绝。",
            },
            vec![Action::Settle],
        ),
    ]
}

/// Question 6: a follower far behind whose missing entries were compacted away catches up
/// from the leader's snapshot.
pub(super) fn snapshot_catch_up() -> Preset {
    let writes: Vec<Action> = ["a=1", "b=2", "c=3", "d=4"].iter().map(|command| request(1, command)).collect();
    let steps = snapshot_catch_up_steps(writes);
    Preset {
        name: "snapshot_catch_up",
        title: Narration {
            en: "Q: a far-behind follower catches up from a snapshot",
            zh: "问：落后太多的跟随者通过快照追上",
        },
        node_count: 3,
        options: scripted_elections(16),
        labels: Vec::new(),
        steps,
    }
}

fn snapshot_catch_up_steps(writes: Vec<Action>) -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "S1 leads term 2; S3 crashes", zh: "S1 成为任期 2 的领导者；S3 宕机" },
            Narration {
                en: "The lecture's answer: “a follower far behind is brought back with a snapshot”. Three servers; S1 leads term 2, its no-op (2,1) is committed everywhere. Then S3 crashes.",
                zh: "课程中的回答：“落后太多的跟随者通过快照追上”。三个节点；S1 是任期 2 的领导者，空操作日志 (2,1) 已在所有节点上提交。随后 S3 宕机。",
            },
            [first_leader(3, 1), vec![Action::Crash { node: 3 }]].concat(),
        ),
        step(
            Narration { en: "Four writes without S3", zh: "S3 缺席时的四次写入" },
            Narration {
                en: "Clients write a=1, b=2, c=3, d=4. S1 and S2 are 2 of 3, a majority: entries 2–5 commit and are applied on both. S3, down, has only index 1.",
                zh: "客户端写入 a=1、b=2、c=3、d=4。S1 和 S2 是 3 个中的 2 个，达到多数：index2–5 提交并在两者上应用。宕机的 S3 只有 index1。",
            },
            [writes, vec![Action::Settle]].concat(),
        ),
        step(
            Narration { en: "The log is compacted into a snapshot", zh: "日志被压缩成快照" },
            Narration {
                en: "S1 and S2 compact their logs: entries 1–5 are replaced by a snapshot of the state machine (a=1 b=2 c=3 d=4) that remembers the last entry it covers, (2,5). Each row now says “snapshot ≤ 5” and its log is empty. Entries 2–5, which S3 misses, no longer exist anywhere as log entries.",
                zh: "S1 和 S2 压缩日志：index1–5 被状态机的快照（a=1 b=2 c=3 d=4）取代，快照记住它覆盖的最后一条日志 (2,5)。每一行都显示“snapshot ≤ 5”，日志为空。S3 缺少的 index2–5 已经不再以日志的形式存在于任何节点上。",
            },
            vec![Action::Compact { node: 1, index: 5 }, Action::Compact { node: 2, index: 5 }],
        ),
        step(
            Narration { en: "S3 restarts and rejects", zh: "S3 重启并拒绝" },
            Narration {
                en: "S3 restarts with its log ending at (2,1). S1's heartbeat reaches it; its answer (last index 1) shows the leader that it is behind, so S1 sends AppendEntries after (2,5), which S3 rejects: it has no index 5.",
                zh: "S3 重启，日志结束于 (2,1)。S1 的心跳到达 S3；S3 的回复（最后索引 1）让领导者知道它落后了，于是 S1 发送 (2,5) 之后的 AppendEntries，S3 拒绝：它没有 index5。",
            },
            vec![
                Action::Restart { node: 3 },
                Action::Tick { node: 1, count: 1 },
                deliver(Some(1), Some(2), "heartbeat"),
                deliver(Some(2), Some(1), "heartbeatresp"),
                deliver(Some(1), Some(3), "heartbeat"),
                deliver(Some(3), Some(1), "heartbeatresp"),
                deliver(Some(1), Some(3), "append"),
            ],
        ),
        step(
            Narration { en: "Entries 2–5 are gone: S1 sends its snapshot", zh: "index2–5 已不存在：S1 发送快照" },
            Narration {
                en: "S3's rejection says it needs entries from index 2, but S1's log now starts at index 6. Backing up cannot help: S1 sends InstallSnapshot instead, the state machine up to (2,5) in one message.",
                zh: "S3 的拒绝说明它需要从 index2 开始的日志，而 S1 的日志现在从 index6 开始。回退已无济于事：S1 改为发送 InstallSnapshot，一条消息带上截至 (2,5) 的状态机。",
            },
            vec![deliver(Some(3), Some(1), "appendresp")],
        ),
        step(
            Narration { en: "S3 installs the snapshot", zh: "S3 安装快照" },
            Narration {
                en: "S3 replaces its log by the snapshot: its state machine is a=1 b=2 c=3 d=4 without replaying a single entry, and its log continues after (2,5). It acknowledges index 5 and is a normal follower again.",
                zh: "S3 用快照替换自己的日志：它的状态机变为 a=1 b=2 c=3 d=4，一条日志都没有重放，日志从 (2,5) 之后继续。它确认 index5，重新成为普通的跟随者。",
            },
            vec![Action::Settle],
        ),
        step(
            Narration { en: "A new write reaches all three", zh: "新的写入到达全部三个节点" },
            Narration {
                en: "A client writes e=5: (2,6) is replicated by ordinary AppendEntries to S2 and S3 and committed. Every server has the same snapshot, the same log after it and the same state machine.",
                zh: "客户端写入 e=5：(2,6) 通过普通的 AppendEntries 复制到 S2、S3 并提交。每个节点的快照相同，快照之后的日志相同，状态机也相同。",
            },
            [vec![request(1, "e=5"), Action::Settle], catch_up(1)].concat(),
        ),
    ]
}

/// Question 7: a client writes to a follower, which forwards the write to the leader (S2)
/// or answers with the leader's address (S3, configured without forwarding).
pub(super) fn follower_forwarding() -> Preset {
    let steps = follower_forwarding_steps();
    Preset {
        name: "follower_forwarding",
        title: Narration {
            en: "Q: a write sent to a follower: forwarded, or redirected",
            zh: "问：写请求发给跟随者：转发或重定向",
        },
        node_count: 3,
        options: ClusterOptions { no_forwarding: vec![3], ..scripted_elections(17) },
        labels: labels(&["", "forwards", "redirects"]),
        steps,
    }
}

fn follower_forwarding_steps() -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "S1 leads term 2", zh: "S1 成为任期 2 的领导者" },
            Narration {
                en: "The lecture says all writes go through the leader, and answers a reader: “a follower that receives a write can forward it to the leader, or return the leader's address to the client”. Three servers; S1 leads term 2. S2 forwards; S3 is configured not to (forward_proposals off).",
                zh: "课程说所有写操作都经过领导者，并回答读者：“跟随者收到写请求，可以把它转发给领导者，也可以把领导者的地址返回给客户端”。三个节点；S1 是任期 2 的领导者。S2 会转发；S3 配置为不转发（forward_proposals 关闭）。",
            },
            first_leader(3, 1),
        ),
        step(
            Narration { en: "A client writes x=1 to S2", zh: "客户端向 S2 写入 x=1" },
            Narration {
                en: "The client picked S2, a follower. S2 does not append x=1 to its own log — only the leader appends client entries — it forwards the command to S1 (the Propose message in flight).",
                zh: "客户端选择了跟随者 S2。S2 不会把 x=1 追加到自己的日志——只有领导者才追加客户端日志——而是把命令转发给 S1（图中正在传输的 Propose 消息）。",
            },
            vec![request(2, "x=1")],
        ),
        step(
            Narration { en: "The leader appends it", zh: "领导者追加日志" },
            Narration {
                en: "S1 receives the forwarded command and appends it as (2,2), exactly as if the client had sent it to S1, and sends AppendEntries to S2 and S3.",
                zh: "S1 收到转发来的命令，把它追加为 (2,2)，就像客户端直接发给 S1 一样，然后向 S2、S3 发送 AppendEntries。",
            },
            vec![deliver(Some(2), Some(1), "propose")],
        ),
        step(
            Narration { en: "x=1 commits everywhere", zh: "x=1 在所有节点上提交" },
            Narration {
                en: "S2 and S3 store (2,2) and acknowledge; it commits and every server applies x=1. S2, the follower the client talked to, answers the client once it has applied the entry.",
                zh: "S2、S3 保存 (2,2) 并确认；日志提交，每个节点都应用 x=1。客户端联系的跟随者 S2 在应用该日志后答复客户端。",
            },
            [vec![Action::Settle], catch_up(1), vec![note("S2 answered the client: x=1 done")]].concat(),
        ),
        step(
            Narration { en: "A client writes y=2 to S3", zh: "客户端向 S3 写入 y=2" },
            Narration {
                en: "Another client sends y=2 to S3. S3 does not forward: it refuses with the address of the leader it knows, S1 (see the events). Nothing is appended anywhere; the client must resend.",
                zh: "另一个客户端把 y=2 发给 S3。S3 不转发：它拒绝请求，并附上它所知道的领导者地址 S1（见事件列表）。任何节点都没有追加日志；客户端必须重新发送。",
            },
            vec![request(3, "y=2")],
        ),
        step(
            Narration { en: "The client resends to S1", zh: "客户端改发给 S1" },
            Narration {
                en: "The client follows the hint and sends y=2 to S1, which appends (2,3), replicates and commits it. Both ways end with the leader appending the entry; forwarding saves the client a round trip, the redirect keeps followers simple.",
                zh: "客户端按照提示把 y=2 发给 S1，S1 追加 (2,3)、复制并提交。两种方式最终都是由领导者追加日志；转发为客户端省了一次往返，重定向则让跟随者更简单。",
            },
            [vec![request(1, "y=2"), Action::Settle], catch_up(1)].concat(),
        ),
    ]
}

fn read(node: NodeId, key: &str, linearizable: bool) -> Action {
    Action::Read { node, key: key.to_string(), linearizable }
}

/// Question 8: a follower's local read answers from its applied state — never an
/// uncommitted entry, but possibly stale; a linearizable read waits for its ReadIndex.
pub(super) fn follower_reads() -> Preset {
    let steps = follower_reads_steps();
    Preset {
        name: "follower_reads",
        title: Narration {
            en: "Q: reads on a follower: applied state only; ReadIndex",
            zh: "问：跟随者上的读：只读已应用的状态；ReadIndex",
        },
        node_count: 3,
        options: scripted_elections(18),
        labels: Vec::new(),
        steps,
    }
}

fn follower_reads_steps() -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "x=1 everywhere", zh: "所有节点上 x=1" },
            Narration {
                en: "The lecture's answer to a reader: “a read only sees what the state machine has applied”. Three servers; S1 leads term 2 and x=1 is committed and applied on all of them.",
                zh: "课程对读者的回答：“读操作只能看到状态机已经应用的数据”。三个节点；S1 是任期 2 的领导者，x=1 已在所有节点上提交并应用。",
            },
            [first_leader(3, 1), vec![request(1, "x=1"), Action::Settle], catch_up(1)].concat(),
        ),
        step(
            Narration { en: "x=2 is stored, not committed; S2 reads x=1", zh: "x=2 已保存但未提交；S2 读到 x=1" },
            Narration {
                en: "A client writes x=2. S2 and S3 store (2,3), but their answers are still on the way: it is not committed. A client reads x on S2 from its local state: x=1. The uncommitted x=2 in S2's log is never visible — it may still be overwritten.",
                zh: "客户端写入 x=2。S2、S3 保存了 (2,3)，但它们的回复还在路上：日志尚未提交。客户端在 S2 上从本地状态读取 x：x=1。S2 日志中未提交的 x=2 永远不可见——它仍可能被覆盖。",
            },
            vec![
                request(1, "x=2"),
                deliver(Some(1), Some(2), "append"),
                deliver(Some(1), Some(3), "append"),
                read(2, "x", false),
            ],
        ),
        step(
            Narration { en: "Committed on the leader; S2 still reads x=1", zh: "领导者已提交；S2 仍读到 x=1" },
            Narration {
                en: "S3's answer reaches S1: 2 of 3, so S1 commits (2,3), applies x=2 and tells the writer “done”. S2's answer and S1's commit notice to S2 are lost. A second local read on S2 still answers x=1: S2 has not learned the commit. A follower's local read is never uncommitted, but it can be stale.",
                zh: "S3 的回复到达 S1：3 个中的 2 个，S1 提交 (2,3)、应用 x=2 并告诉写入者“成功”。S2 的回复以及 S1 发给 S2 的提交通知都丢失了。S2 上的第二次本地读仍然返回 x=1：S2 还不知道日志已提交。跟随者的本地读永远读不到未提交的数据，但可能读到旧数据。",
            },
            vec![
                drop_from(2, "appendresp"),
                deliver(Some(3), Some(1), "appendresp"),
                drop_from(1, "append"),
                note("S1 answered the writer: x=2 done"),
                read(2, "x", false),
            ],
        ),
        step(
            Narration { en: "A linearizable read asks for a ReadIndex", zh: "线性一致读请求 ReadIndex" },
            Narration {
                en: "Now the client asks S2 for a linearizable read. S2 asks the leader for a read index (the ReadIndex message). S1 takes its commit index, 3, and confirms it is still the leader with a heartbeat round: S3's answer makes a majority. S1 tells S2: read index 3. The heartbeat to S2 is lost, so S2 still has applied only index 2: the read waits (see S2's row).",
                zh: "这次客户端在 S2 上请求线性一致读。S2 向领导者请求读索引（ReadIndex 消息）。S1 取自己的提交索引 3，并通过一轮心跳确认自己仍是领导者：S3 的回复凑成多数。S1 告诉 S2：读索引是 3。发给 S2 的心跳丢失了，S2 仍只应用到 index2：读请求等待（见 S2 这一行）。",
            },
            vec![
                read(2, "x", true),
                deliver(Some(2), Some(1), "readindex"),
                Action::DropWhere { from: Some(1), to: Some(2), kind: Some("heartbeat".to_string()) },
                deliver(Some(1), Some(3), "heartbeat"),
                deliver(Some(3), Some(1), "heartbeatresp"),
                deliver(Some(1), Some(2), "readindexresp"),
            ],
        ),
        step(
            Narration { en: "S2 applies index 3; the read answers x=2", zh: "S2 应用 index3；读请求返回 x=2" },
            Narration {
                en: "S1's next heartbeat carries commit index 3. S2 commits and applies x=2, reaches the read index, and only then answers the waiting read: x=2. A linearizable read never returns data older than a write that was already acknowledged.",
                zh: "S1 的下一次心跳携带提交索引 3。S2 提交并应用 x=2，达到读索引后才答复等待中的读请求：x=2。线性一致读永远不会返回比已确认的写入更旧的数据。",
            },
            catch_up(1),
        ),
    ]
}

fn change(node: NodeId, add_learners: &[NodeId], add_voters: &[NodeId]) -> Action {
    Action::ChangeMembership {
        node,
        add_learners: add_learners.to_vec(),
        add_voters: add_voters.to_vec(),
        remove: Vec::new(),
    }
}

/// The lecture's next topic: 3 → 5 servers by joint consensus (thesis §4.3), with the
/// leader crashing while the cluster is in C_old,new.
pub(super) fn joint_consensus() -> Preset {
    let steps = joint_consensus_steps();
    Preset {
        name: "joint_consensus",
        title: Narration {
            en: "Membership change 3 → 5 by joint consensus, leader crash in the middle",
            zh: "成员变更 3 → 5：联合共识，中途领导者宕机",
        },
        node_count: 3,
        options: scripted_elections(19),
        labels: Vec::new(),
        steps,
    }
}

fn joint_consensus_steps() -> Vec<PresetStep> {
    vec![
        step(
            Narration { en: "Three servers, x=1", zh: "三个节点，x=1" },
            Narration {
                en: "The lecture ends: “cluster membership changes are the next topic”. Here is that topic on the real core. Three voters S1–S3; S1 leads term 2 and x=1 is committed everywhere.",
                zh: "课程最后说：“集群成员变更是下一讲的内容”。这里用真实的核心演示它。三个投票成员 S1–S3；S1 是任期 2 的领导者，x=1 已在所有节点上提交。",
            },
            [first_leader(3, 1), vec![request(1, "x=1"), Action::Settle], catch_up(1)].concat(),
        ),
        step(
            Narration { en: "S4 and S5 join as learners", zh: "S4、S5 以学习者身份加入" },
            Narration {
                en: "S4 and S5 start with empty logs. As the lecture says, new servers first copy the whole log without a vote: each is added as a learner (one single-server change at a time), and S1 replicates everything to them. They count for no majority yet.",
                zh: "S4、S5 以空日志启动。正如课程所说，新节点先在没有投票权的情况下复制全部日志：它们各自以学习者身份加入（每次一个节点的变更），S1 把所有日志复制给它们。此时它们还不计入任何多数。",
            },
            vec![
                Action::AddNode { node: 4 },
                Action::AddNode { node: 5 },
                change(1, &[4], &[]),
                Action::Settle,
                change(1, &[5], &[]),
                Action::Settle,
            ],
        ),
        step(
            Narration { en: "C_old,new: both majorities needed", zh: "C_old,new：需要两个多数" },
            Narration {
                en: "S1 proposes S4 and S5 as voters in one change: joint consensus. It appends the configuration entry C_old,new and uses it at once: from now on an entry commits only with a majority of the old voters {S1,S2,S3} and a majority of the new ones {S1..S5}. The entry reaches S2 and S4; with S1 that is 2 of 3 old and 3 of 5 new, so S1 commits it.",
                zh: "S1 在一次变更中把 S4、S5 提升为投票成员：联合共识。它追加配置日志 C_old,new 并立即使用：从此一条日志必须同时得到旧成员 {S1,S2,S3} 的多数和新成员 {S1..S5} 的多数才能提交。该日志到达 S2、S4；加上 S1，旧成员中有 2/3、新成员中有 3/5，于是 S1 提交了它。",
            },
            vec![
                change(1, &[], &[4, 5]),
                Action::DropWhere { from: Some(1), to: Some(3), kind: Some("append".to_string()) },
                Action::DropWhere { from: Some(1), to: Some(5), kind: Some("append".to_string()) },
                deliver(Some(1), Some(2), "append"),
                deliver(Some(1), Some(4), "append"),
                deliver(Some(2), Some(1), "appendresp"),
                deliver(Some(4), Some(1), "appendresp"),
            ],
        ),
        step(
            Narration { en: "S1 crashes in the middle", zh: "S1 在中途宕机" },
            Narration {
                en: "Having committed C_old,new, S1 at once appended the entry that leaves it, C_new (voters S1..S5), at index 6 — and crashes: the AppendEntries carrying C_new are lost. Nobody else knows that C_old,new is committed; S3 and S5 do not even have it. The cluster is in the middle of the change without a leader.",
                zh: "提交 C_old,new 之后，S1 立即在 index6 追加了离开联合配置的日志 C_new（投票成员 S1..S5）——然后宕机：携带 C_new 的 AppendEntries 都丢失了。其他节点都不知道 C_old,new 已提交；S3、S5 甚至没有这条日志。集群在变更中途失去了领导者。",
            },
            vec![drop_from(1, "append"), Action::Crash { node: 1 }],
        ),
        step(
            Narration { en: "S2 wins in both configurations", zh: "S2 在两个配置中都获胜" },
            Narration {
                en: "S2 holds C_old,new, so it campaigns under it: it needs a majority of {S1,S2,S3} and a majority of {S1..S5}. S3 grants (S2's log is longer) and so does S4: with its own vote that is 2 of 3 old and 3 of 5 new, and S2 leads (S5's vote arrives after). S3, without the entry, could not have won: S2 refuses its shorter log and S1 is down. S2 leads and appends its no-op.",
                zh: "S2 有 C_old,new，所以按它竞选：需要 {S1,S2,S3} 的多数和 {S1..S5} 的多数。S3 同意（S2 的日志更长），S4 也同意：加上自己的一票，旧成员 2/3、新成员 3/5，S2 当选（S5 的选票随后才到）。没有这条日志的 S3 不可能当选：S2 会拒绝它较短的日志，而 S1 已宕机。S2 成为领导者并追加空操作日志。",
            },
            vec![Action::Campaign { node: 2 }, deliver(Some(2), None, "vote"), deliver(None, Some(2), "voteresp")],
        ),
        step(
            Narration { en: "S2 finishes the change: C_new", zh: "S2 完成变更：C_new" },
            Narration {
                en: "S2 replicates C_old,new and its no-op to S3, S4 and S5; they commit in both majorities. Once S2 has applied C_old,new it appends the leave entry C_new itself and commits it with a majority of the five: the change is complete although the leader that started it is down.",
                zh: "S2 把 C_old,new 和空操作日志复制到 S3、S4、S5；它们在两个多数中都得到提交。S2 应用 C_old,new 后，自己追加离开联合配置的 C_new，并在五个成员的多数中提交：尽管发起变更的领导者已宕机，变更仍然完成了。",
            },
            [vec![Action::Settle], catch_up(2)].concat(),
        ),
        step(
            Narration { en: "S1 rejoins: five voters", zh: "S1 重新加入：五个投票成员" },
            Narration {
                en: "S1 restarts; its uncommitted C_new from term 2 is replaced by S2's log. All five servers have the same log, committed, and the same configuration: voters S1–S5, no joint part left.",
                zh: "S1 重启；它在任期 2 追加的未提交 C_new 被 S2 的日志取代。五个节点的日志相同且已提交，配置也相同：投票成员 S1–S5，联合部分已不存在。",
            },
            [vec![Action::Restart { node: 1 }], catch_up(2)].concat(),
        ),
    ]
}
