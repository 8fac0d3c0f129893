//! A client flood delays clients, never the peers (issue 17): a 3-member raftkv cluster gets
//! far more concurrent puts than the Raft loop's client queue holds
//! (`server::inputs::CLIENT_QUEUE_MAX`), while the test watches that no election happens
//! (every member's term and leader are unchanged), that followers go on receiving
//! heartbeats, and that no peer message was dropped on arrival. Clients may be refused
//! ("too many requests") or slowed; no assertion is about time.

mod common;

use common::Cluster;

/// Connections the flood uses, and puts in flight on each.
const CONNECTIONS: usize = 32;
const IN_FLIGHT_PER_CONNECTION: usize = 1024;
// The flood is at least twice what the client queue holds.
const _: () = assert!(CONNECTIONS * IN_FLIGHT_PER_CONNECTION >= 2 * server::inputs::CLIENT_QUEUE_MAX);

/// Puts each in-flight slot issues, one after the other.
const PUTS_PER_SLOT: usize = 3;

/// Runs the flood against `urls`; returns (acknowledged puts, refused or failed puts).
async fn flood(urls: &[String]) -> (usize, usize) {
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let url = urls[connection % urls.len()].clone();
        let client = etcd_client::Client::connect([url.as_str()], None).await.expect("connect");
        for slot in 0..IN_FLIGHT_PER_CONNECTION {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let (mut acknowledged, mut refused) = (0, 0);
                for round in 0..PUTS_PER_SLOT {
                    let key = format!("flood/{connection}/{slot}/{round}");
                    match client.put(key, vec![b'v'; 256], None).await {
                        Ok(_) => acknowledged += 1,
                        Err(_) => refused += 1,
                    }
                }
                (acknowledged, refused)
            }));
        }
    }
    let mut totals = (0, 0);
    for task in tasks {
        let (acknowledged, refused) = task.await.expect("flood task");
        totals.0 += acknowledged;
        totals.1 += refused;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_flood_changes_no_term_and_heartbeats_keep_flowing() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    common::etcdctl_ok(&cluster.endpoints(), &["put", "before", "flood"]).await;
    let before = common::terms_and_leaders(&cluster).await;
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let mut heartbeats_before = Vec::new();
    for follower in &followers {
        heartbeats_before
            .push(common::metric(&cluster.nodes[*follower].metrics_url, "raftkv_heartbeats_received_total").await);
    }

    let (acknowledged, refused) = flood(&cluster.client_urls()).await;

    let after = common::terms_and_leaders(&cluster).await;
    let mut report = format!("flood: {acknowledged} puts acknowledged, {refused} refused or failed;");
    for (follower, heartbeats) in followers.iter().zip(&heartbeats_before) {
        let url = &cluster.nodes[*follower].metrics_url;
        let heartbeats_after = common::metric(url, "raftkv_heartbeats_received_total").await;
        let gap_microseconds = common::metric(url, "raftkv_heartbeat_gap_max_microseconds").await;
        report += &format!(
            " member {follower}: {} heartbeats during the flood, largest gap {} ms;",
            heartbeats_after - heartbeats,
            gap_microseconds / 1000
        );
        assert!(heartbeats_after > *heartbeats, "member {follower} received no heartbeat during the flood: {report}");
    }
    println!("{report}");
    assert_eq!(before, after, "a term or leader changed during the flood: {report}{}", cluster.logs());
    assert!(acknowledged > 0, "the flood got nothing through: {report}");
    for node in &cluster.nodes {
        let dropped = common::metric(&node.metrics_url, "raftkv_inbound_messages_dropped_total").await;
        assert_eq!(dropped, 0, "{} dropped peer messages on arrival: {report}", node.name);
    }
    cluster.assert_running();
}
