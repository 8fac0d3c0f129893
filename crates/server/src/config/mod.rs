//! `raftkv serve` settings: etcd's flags, `ETCD_*` variables and config file (same names and
//! meanings), plus raftkv's own flags; and the parsers of their values.

mod args;
mod file;
pub mod logging;
pub mod sources;
mod support;
pub mod values;

pub use args::ServeArgs;
pub use sources::{load, LoadedArgs};
pub use support::check_supported;

use std::collections::BTreeMap;

/// Parses `name=host:port,...` of `--peer-dial-overrides`.
pub fn parse_dial_overrides(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut overrides = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (name, address) =
            item.split_once('=').ok_or_else(|| format!("--peer-dial-overrides: '{item}' is not name=host:port"))?;
        if address.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            return Err(format!("--peer-dial-overrides: '{address}' is not host:port"));
        }
        overrides.insert(name.to_string(), address.to_string());
    }
    Ok(overrides)
}

/// A member named in `--initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// `--name` of the member.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its id (derived from peer URLs and the cluster token).
    pub id: u64,
}

/// Parses `name=url,name=url` (a name may appear several times for several URLs).
pub fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<InitialMember>, String> {
    let mut urls_by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (name, url) = item.split_once('=').ok_or_else(|| format!("--initial-cluster: '{item}' is not name=url"))?;
        parse_url(url)?;
        urls_by_name.entry(name.to_string()).or_default().push(url.to_string());
    }
    if urls_by_name.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    let mut members: Vec<InitialMember> = urls_by_name
        .into_iter()
        .map(|(name, mut peer_urls)| {
            peer_urls.sort();
            let id = member_id(&peer_urls, token);
            InitialMember { name, peer_urls, id }
        })
        .collect();
    members.sort_by_key(|member| member.id);
    for pair in members.windows(2) {
        if pair[0].id == pair[1].id {
            return Err(format!("--initial-cluster: members {} and {} share peer URLs", pair[0].name, pair[1].name));
        }
    }
    Ok(members)
}

/// `http://host:port` or `https://host:port` → `host:port`.
pub fn parse_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("URL '{url}' must start with http:// or https://"))?;
    let authority = rest.trim_end_matches('/');
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| format!("URL '{url}' has no port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("URL '{url}' is not http(s)://host:port"));
    }
    Ok(authority.to_string())
}

/// Whether `url` asks for TLS (`https://`).
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Splits a comma-separated URL list.
pub fn split_urls(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_string).collect()
}

/// FNV-1a, 64 bits: a stable hash for ids (the same inputs give the same ids on every node).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(b"\x00") {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// A member's id: a hash of its sorted peer URLs and the cluster token (never 0).
pub fn member_id(sorted_peer_urls: &[String], token: &str) -> u64 {
    let mut parts: Vec<&[u8]> = sorted_peer_urls.iter().map(|url| url.as_bytes()).collect();
    parts.push(token.as_bytes());
    fnv1a(&parts).max(1)
}

/// The cluster id: a hash of the sorted member ids and the token (never 0).
pub fn cluster_id(members: &[InitialMember], token: &str) -> u64 {
    let mut ids: Vec<u64> = members.iter().map(|member| member.id).collect();
    ids.sort_unstable();
    let bytes: Vec<[u8; 8]> = ids.iter().map(|id| id.to_be_bytes()).collect();
    let mut parts: Vec<&[u8]> = bytes.iter().map(|id| id.as_slice()).collect();
    parts.push(token.as_bytes());
    fnv1a(&parts).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_initial_cluster() {
        let members =
            parse_initial_cluster("a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,c=http://127.0.0.1:2382", "t")
                .unwrap();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|member| member.id != 0));
        let again =
            parse_initial_cluster("c=http://127.0.0.1:2382,a=http://127.0.0.1:2380,b=http://127.0.0.1:2381", "t")
                .unwrap();
        assert_eq!(members, again, "order of the flag does not matter");
        assert_eq!(cluster_id(&members, "t"), cluster_id(&again, "t"));
        assert_ne!(cluster_id(&members, "t"), cluster_id(&members, "other"));
    }

    #[test]
    fn refuses_bad_urls() {
        assert!(parse_initial_cluster("a=127.0.0.1:2380", "t").is_err());
        assert!(parse_initial_cluster("a", "t").is_err());
        assert!(parse_initial_cluster("", "t").is_err());
        assert!(parse_url("http://host:notaport").is_err());
        assert_eq!(parse_url("http://localhost:2379/").unwrap(), "localhost:2379");
        assert_eq!(parse_url("https://127.0.0.1:2379").unwrap(), "127.0.0.1:2379");
        assert!(parse_url("unix://socket:1").is_err());
        assert!(is_https("https://a:1") && !is_https("http://a:1"));
    }
}
