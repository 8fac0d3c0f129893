//! Who this node is and how it joins: the identity file in the data dir, `GET /members`
//! on a running member's peer port, the members that seed an empty member table, and the
//! id of a member added now.

use std::time::Duration;

use proto::etcdserverpb::Member;

/// What a joining member learns from a running one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster id.
    pub cluster_id: u64,
    /// The members, this one included (it was added by `member add`).
    pub members: Vec<Member>,
}

/// Asks the members at `peer_urls` (`http://host:port`, or `https://` with `tls`) for
/// `GET /members`, trying each in turn until one answers or `timeout` has passed.
pub async fn fetch_cluster(
    peer_urls: &[String],
    tls: Option<&tokio_rustls::TlsConnector>,
    timeout: Duration,
) -> Result<ClusterInfo, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no peer URL to ask");
    loop {
        for url in peer_urls {
            let address = crate::config::parse_url(url)?;
            let attempt = tokio::time::timeout(Duration::from_secs(2), fetch_members_once(&address, tls)).await;
            match attempt {
                Ok(Ok(info)) => return Ok(info),
                Ok(Err(error)) => last_error = format!("{url}: {error}"),
                Err(_) => last_error = format!("{url}: no answer within 2 s"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("cannot fetch the member list of the running cluster ({last_error})"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fetch_members_once(address: &str, tls: Option<&tokio_rustls::TlsConnector>) -> Result<ClusterInfo, String> {
    parse_members_response(&peer_http_get(address, tls, "/members").await?)
}

/// `GET path` on a member's peer port (`address` is `host:port`; TLS with `tls`): the
/// whole HTTP answer, at most 4 MiB. The peer port answers these few requests itself
/// (see `transport.rs`), one per connection.
pub async fn peer_http_get(
    address: &str,
    tls: Option<&tokio_rustls::TlsConnector>,
    path: &str,
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const RESPONSE_BYTES_MAX: u64 = 4 << 20;
    assert!(path.starts_with('/') && !path.contains(char::is_whitespace), "a request path");
    let stream = tokio::net::TcpStream::connect(address).await.map_err(|error| error.to_string())?;
    let mut stream =
        crate::tls::MaybeTlsStream::connect(stream, address, tls).await.map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|error| error.to_string())?;
    let mut response = Vec::new();
    stream.take(RESPONSE_BYTES_MAX).read_to_end(&mut response).await.map_err(|error| error.to_string())?;
    Ok(response)
}

/// Parses the HTTP answer to `GET /members`.
pub fn parse_members_response(response: &[u8]) -> Result<ClusterInfo, String> {
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").ok_or("truncated HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {}", head.lines().next().unwrap_or_default()));
    }
    let cluster_id = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-etcd-cluster-id"))
        .and_then(|(_, value)| u64::from_str_radix(value.trim(), 16).ok())
        .ok_or("no X-Etcd-Cluster-ID header")?;
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(|url| url.as_str().map(str::to_string)).collect()
    };
    let mut members = Vec::new();
    for entry in entries {
        let id = entry["id"].as_u64().filter(|id| *id != 0).ok_or("member without id")?;
        members.push(Member {
            id,
            name: entry["name"].as_str().unwrap_or_default().to_string(),
            peer_ur_ls: strings(&entry["peerURLs"]),
            client_ur_ls: strings(&entry["clientURLs"]),
            is_learner: entry["isLearner"].as_bool().unwrap_or(false),
        });
    }
    Ok(ClusterInfo { cluster_id, members })
}

/// The id of a member added now: a hash of its peer URLs, the cluster token and the time
/// (as etcd), so a replacement at the same URLs gets a new id.
pub fn new_member_id(sorted_peer_urls: &[String], cluster_token: &str) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    crate::config::member_id(sorted_peer_urls, &format!("{cluster_token}/{nanos}"))
}

/// File in the data dir of a member: its cluster id, member id and name, which
/// `--initial-cluster` cannot tell after the cluster changed (a member joined, or one's
/// peer URLs were updated). As in etcd, `--initial-cluster` and `--initial-cluster-token`
/// are ignored once the data dir holds a member.
pub const IDENTITY_FILE: &str = "member-identity.json";
/// How long a joining member tries to reach the running cluster.
const JOIN_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Who this node is, once resolved.
pub struct Identity {
    /// The plan with this member's id, the cluster id and the members as the running
    /// cluster knows them.
    pub plan: crate::node::NodePlan,
    /// The running cluster's members when this node joins now (it seeds its member
    /// table with them); `None` otherwise.
    pub joined_members: Option<Vec<Member>>,
    /// On a restart, the members this data dir's member table was first seeded with
    /// (kept in [`IDENTITY_FILE`]): they, not `--initial-cluster`, seed an empty table
    /// again, so a member that joined later gets the real ids of the others.
    pub stored_members: Option<Vec<Member>>,
}

/// Resolves this node's identity: from its data dir if it joined earlier, from the
/// running cluster if it joins now (empty data dir and `--initial-cluster-state
/// existing`), else from `--initial-cluster`.
pub async fn resolve_identity(mut plan: crate::node::NodePlan) -> Result<Identity, String> {
    let identity_path = plan.data_dir.join(IDENTITY_FILE);
    let fresh = !plan.data_dir.join("wal").exists();
    if let Ok(text) = std::fs::read_to_string(&identity_path) {
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|error| format!("{}: {error}", identity_path.display()))?;
        let (Some(cluster_id), Some(member_id)) = (value["cluster_id"].as_u64(), value["member_id"].as_u64()) else {
            return Err(format!("{}: missing cluster_id or member_id", identity_path.display()));
        };
        // A founder's file counts once its WAL exists (a first start that failed early
        // must not pin the ids of a mistyped --initial-cluster).
        if !(fresh && value["source"] == "initial-cluster") {
            check_identity_name(&plan, value["name"].as_str(), cluster_id, member_id)?;
            if (plan.cluster_id, plan.local.id) != (cluster_id, member_id) {
                tracing::info!(
                    member = %format!("{member_id:x}"),
                    cluster = %format!("{cluster_id:x}"),
                    "the data dir holds a member: --initial-cluster and --initial-cluster-token are ignored"
                );
            }
            plan.cluster_id = cluster_id;
            plan.local.id = member_id;
            let stored_members = stored_members(&value, &identity_path)?;
            if let Some(members) = &stored_members {
                plan.members = initial_members(members, &plan.local);
            }
            return Ok(Identity { plan, joined_members: None, stored_members });
        }
    }
    if !fresh || plan.args.initial_cluster_state != "existing" {
        if fresh {
            write_identity(&plan, "initial-cluster", &seed_members(None, &plan))?;
        }
        return Ok(Identity { plan, joined_members: None, stored_members: None });
    }
    let others: Vec<String> = plan
        .members
        .iter()
        .filter(|member| member.name != plan.local.name)
        .flat_map(|member| member.peer_urls.clone())
        .collect();
    let tls = crate::tls::PeerTls::from_args(&plan.args)?;
    let info = match fetch_cluster(&others, tls.connector.as_ref(), JOIN_FETCH_TIMEOUT).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "cannot reach the running cluster; using --initial-cluster's ids");
            return Ok(Identity { plan, joined_members: None, stored_members: None });
        }
    };
    let own = info
        .members
        .iter()
        .find(|member| member.peer_ur_ls.iter().any(|url| plan.local.peer_urls.contains(url)))
        .ok_or_else(|| {
            format!(
                "the running cluster has no member with peer URLs {:?}: add it first (etcdctl member add {} --peer-urls={})",
                plan.local.peer_urls,
                plan.local.name,
                plan.local.peer_urls.join(",")
            )
        })?;
    plan.local.id = own.id;
    plan.cluster_id = info.cluster_id;
    plan.members = initial_members(&info.members, &plan.local);
    write_identity(&plan, "join", &info.members)?;
    tracing::info!(member = %format!("{:x}", own.id), cluster = %format!("{:x}", info.cluster_id), "joining a running cluster");
    Ok(Identity { plan, joined_members: Some(info.members), stored_members: None })
}

/// `members` as a plan's member list; the local member keeps its own `--name`.
fn initial_members(members: &[Member], local: &crate::config::InitialMember) -> Vec<crate::config::InitialMember> {
    members
        .iter()
        .map(|member| crate::config::InitialMember {
            name: if member.id == local.id { local.name.clone() } else { member.name.clone() },
            peer_urls: member.peer_ur_ls.clone(),
            id: member.id,
        })
        .collect()
}

/// The `members` of an identity file (`None` in files written before they were kept).
fn stored_members(value: &serde_json::Value, path: &std::path::Path) -> Result<Option<Vec<Member>>, String> {
    let Some(entries) = value.get("members") else { return Ok(None) };
    let malformed = || format!("{}: malformed members", path.display());
    let entries = entries.as_array().ok_or_else(malformed)?;
    let mut members = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = entry["id"].as_u64().filter(|id| *id != 0).ok_or_else(malformed)?;
        let peer_urls = entry["peer_urls"].as_array().ok_or_else(malformed)?;
        let peer_ur_ls = peer_urls
            .iter()
            .map(|url| url.as_str().map(str::to_string).ok_or_else(malformed))
            .collect::<Result<Vec<_>, _>>()?;
        members.push(Member {
            id,
            name: entry["name"].as_str().unwrap_or_default().to_string(),
            peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: entry["is_learner"].as_bool().unwrap_or(false),
        });
    }
    assert!(members.iter().all(|member| member.id != 0));
    Ok(Some(members))
}

/// Refuses a data dir that holds another member than `--name` (the file names it).
fn check_identity_name(
    plan: &crate::node::NodePlan,
    stored_name: Option<&str>,
    cluster_id: u64,
    member_id: u64,
) -> Result<(), String> {
    match stored_name {
        Some(name) if name != plan.local.name => Err(format!(
            "data dir {} holds member {member_id:x} named '{name}' of cluster {cluster_id:x}, not '{}': \
             check --data-dir, --name and --initial-cluster-token",
            plan.data_dir.display(),
            plan.local.name
        )),
        _ => Ok(()),
    }
}

/// Writes [`IDENTITY_FILE`]; `source` is `join` (ids from the running cluster) or
/// `initial-cluster` (a founder's ids, from the flag).
fn write_identity(plan: &crate::node::NodePlan, source: &str, members: &[Member]) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(&plan.data_dir)
        .map_err(|error| format!("data dir {}: {error}", plan.data_dir.display()))?;
    let members: Vec<serde_json::Value> = members
        .iter()
        .map(|member| {
            serde_json::json!({
                "id": member.id, "name": member.name, "peer_urls": member.peer_ur_ls, "is_learner": member.is_learner,
            })
        })
        .collect();
    let text = serde_json::json!({
        "cluster_id": plan.cluster_id, "member_id": plan.local.id, "name": plan.local.name, "source": source,
        "members": members,
    })
    .to_string();
    let path = plan.data_dir.join(IDENTITY_FILE);
    let temporary = plan.data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&plan.data_dir)?.sync_all()
    };
    write().map_err(|error| format!("{}: {error}", path.display()))
}

/// The members to seed an empty member table with: the running cluster's when joining,
/// those kept in [`IDENTITY_FILE`] on a restart, else `--initial-cluster` (founders of a
/// new cluster all seed the same table).
pub fn seed_members(identity_members: Option<&Vec<Member>>, plan: &crate::node::NodePlan) -> Vec<Member> {
    match identity_members {
        Some(members) => members.clone(),
        None => crate::backup::layout::members_of(&plan.members),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_response_round_trips() {
        let body = r#"[{"id":5,"name":"a","peerURLs":["http://h:1"],"clientURLs":[],"isLearner":true}]"#;
        let response =
            format!("HTTP/1.1 200 OK\r\nX-Etcd-Cluster-ID: ff\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let info = parse_members_response(response.as_bytes()).unwrap();
        assert_eq!(info.cluster_id, 0xff);
        assert_eq!(info.members[0].id, 5);
        assert!(info.members[0].is_learner);
        assert!(parse_members_response(b"HTTP/1.1 404 Not Found\r\n\r\n{}").is_err());
        assert!(parse_members_response(b"garbage").is_err());
    }
}
