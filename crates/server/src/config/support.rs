//! Which of etcd's flags raftkv cannot honour: accepted at etcd's default, refused
//! otherwise with `--X is not supported: <why>` before anything starts. Tuning flags of
//! etcd's bbolt backend, which raftkv does not have, are accepted and have no effect (a
//! warning says so) so that existing scripts keep working.

use std::time::Duration;

use super::ServeArgs;

/// Why the v2 API flags are refused.
const NO_V2: &str = "raftkv serves etcd's v3 API only (the v2 API is deprecated since etcd 3.4)";
/// Why the discovery flags are refused.
const NO_DISCOVERY: &str =
    "raftkv does not bootstrap through a discovery service or DNS SRV records; list the members with --initial-cluster";
/// Why the v2 proxy flags are refused.
const NO_PROXY: &str = "raftkv has no v2 proxy mode (deprecated in etcd 3.4); run a member or use etcd's grpc-proxy";
/// Why the bbolt tuning flags have no effect.
const NO_BBOLT: &str = "raftkv keeps its store in memory with a WAL and snapshots, it has no bbolt backend";

/// A flag, whether it is at etcd's default, and why another value cannot work.
struct Refusal {
    flag: &'static str,
    at_default: bool,
    reason: &'static str,
}

fn refusals(args: &ServeArgs) -> Vec<Refusal> {
    let refusal = |flag, at_default, reason| Refusal { flag, at_default, reason };
    vec![
        refusal("enable-v2", !args.enable_v2, NO_V2),
        refusal("experimental-enable-v2v3", args.experimental_enable_v2v3.is_empty(), NO_V2),
        refusal("discovery", args.discovery.is_empty(), NO_DISCOVERY),
        refusal("discovery-proxy", args.discovery_proxy.is_empty(), NO_DISCOVERY),
        refusal("discovery-srv", args.discovery_srv.is_empty(), NO_DISCOVERY),
        refusal("discovery-srv-name", args.discovery_srv_name.is_empty(), NO_DISCOVERY),
        refusal("proxy", args.proxy == "off", NO_PROXY),
        refusal("proxy-failure-wait", args.proxy_failure_wait == 5000, NO_PROXY),
        refusal("proxy-refresh-interval", args.proxy_refresh_interval == 30000, NO_PROXY),
        refusal("proxy-dial-timeout", args.proxy_dial_timeout == 1000, NO_PROXY),
        refusal("proxy-write-timeout", args.proxy_write_timeout == 5000, NO_PROXY),
        refusal("proxy-read-timeout", args.proxy_read_timeout == 0, NO_PROXY),
        refusal(
            "log-package-levels",
            args.log_package_levels.is_empty(),
            "raftkv has no capnslog packages; use --log-level",
        ),
    ]
}

/// Refuses flags that cannot apply (`--X is not supported: <why>`) and logs a warning for
/// accepted flags that have no effect.
pub fn check_supported(args: &ServeArgs) -> Result<(), String> {
    if let Some(refusal) = refusals(args).into_iter().find(|refusal| !refusal.at_default) {
        return Err(format!("--{} is not supported: {}", refusal.flag, refusal.reason));
    }
    let no_effect = [
        ("backend-batch-interval", args.backend_batch_interval == Duration::ZERO),
        ("backend-batch-limit", args.backend_batch_limit == 0),
        ("experimental-backend-bbolt-freelist-type", args.experimental_backend_bbolt_freelist_type == "array"),
    ];
    for (flag, _) in no_effect.iter().filter(|(_, at_default)| !at_default) {
        tracing::warn!("--{flag} has no effect: {NO_BBOLT}");
    }
    super::logging::LogSettings::from_args(args)?;
    check_urls(args)
}

/// Every URL of the URL-list flags is `http(s)://host:port`; errors name the flag.
fn check_urls(args: &ServeArgs) -> Result<(), String> {
    let lists = [
        ("listen-client-urls", &args.listen_client_urls),
        ("advertise-client-urls", &args.advertise_client_urls),
        ("listen-peer-urls", &args.listen_peer_urls),
        ("initial-advertise-peer-urls", &args.initial_advertise_peer_urls),
        ("listen-metrics-urls", &args.listen_metrics_urls),
    ];
    for (flag, list) in lists {
        for url in super::split_urls(list) {
            super::parse_url(&url).map_err(|reason| format!("--{flag}: {reason}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sources::load;

    fn check(flags: &[&str]) -> Result<(), String> {
        let args = load(flags.iter().map(Into::into).collect(), vec![])?.args;
        check_supported(&args)
    }

    #[test]
    fn refuses_only_non_defaults() {
        assert!(check(&[]).is_ok());
        assert!(check(&["--enable-v2=false", "--proxy=off", "--discovery=", "--proxy-read-timeout=0"]).is_ok());
        assert!(check(&["--backend-batch-limit=10", "--experimental-backend-bbolt-freelist-type=map"]).is_ok());
        assert_eq!(check(&["--enable-v2"]).unwrap_err(), format!("--enable-v2 is not supported: {NO_V2}"));
        assert_eq!(
            check(&["--discovery=https://discovery.etcd.io/x"]).unwrap_err(),
            format!("--discovery is not supported: {NO_DISCOVERY}")
        );
        assert!(check(&["--proxy=on"]).unwrap_err().starts_with("--proxy is not supported: "));
        assert!(check(&["--proxy-dial-timeout=5"]).unwrap_err().starts_with("--proxy-dial-timeout is not supported"));
        assert!(check(&["--log-level=loud"]).unwrap_err().contains("--log-level"));
        let error = check(&["--advertise-client-urls=127.0.0.1:2379"]).unwrap_err();
        assert!(error.starts_with("--advertise-client-urls: URL '127.0.0.1:2379'"), "{error}");
    }
}
