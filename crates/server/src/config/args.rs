//! The flags of `raftkv serve`: every flag of etcd 3.4's `etcd --help` (same names, types,
//! defaults and help headings), then raftkv's own. A script that starts etcd starts raftkv
//! when `etcd` is replaced by `raftkv serve`; flags etcd has but raftkv cannot honour are
//! accepted at etcd's default and refused otherwise (see [`super::check_supported`]).

use std::path::PathBuf;
use std::time::Duration;

use super::values;

/// An example shown at the end of `raftkv serve --help`.
const AFTER_HELP: &str = "Example (one member of a three-member cluster):
  raftkv serve --name n1 --data-dir /var/lib/raftkv/n1 \\
    --listen-client-urls http://10.0.0.1:2379 --advertise-client-urls http://10.0.0.1:2379 \\
    --listen-peer-urls http://10.0.0.1:2380 --initial-advertise-peer-urls http://10.0.0.1:2380 \\
    --initial-cluster n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n3=http://10.0.0.3:2380

Every flag can also be given as an environment variable ETCD_<FLAG> (ETCD_NAME, ETCD_DATA_DIR, ...),
or all of them in etcd's YAML format with --config-file (then other flags and variables are ignored).";

/// Command-line flags of `raftkv serve`. Field names are the flags' names in snake case.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// Path to the server configuration file (etcd's YAML format). With it, other command-line
    /// flags and environment variables are ignored.
    #[arg(long, help_heading = "Configuration file", value_parser = values::path_flag)]
    pub config_file: Option<PathBuf>,
    /// Show the version of raftkv and exit.
    #[arg(long, help_heading = "Configuration file", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("version"))]
    pub version: bool,
    /// Human-readable name for this member.
    #[arg(long, help_heading = "Member", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default `<name>.raftkv`).
    #[arg(long, help_heading = "Member", value_parser = values::path_flag)]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated WAL directory (default: `wal` inside --data-dir); snapshots stay in --data-dir.
    #[arg(long, help_heading = "Member", value_parser = values::path_flag)]
    pub wal_dir: Option<PathBuf>,
    /// Number of committed entries that triggers a snapshot to disk.
    #[arg(long, help_heading = "Member", default_value = "100000")]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval (one Raft tick).
    #[arg(long, help_heading = "Member", default_value = "100", value_parser = values::milliseconds_flag("heartbeat-interval"))]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, help_heading = "Member", default_value = "1000", value_parser = values::milliseconds_flag("election-timeout"))]
    pub election_timeout: u64,
    /// Fast-forward the election ticks of a freshly started member so the first election comes sooner.
    #[arg(long, help_heading = "Member", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "true", value_parser = values::bool_flag("initial-election-tick-advance"))]
    pub initial_election_tick_advance: bool,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, help_heading = "Member", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of URLs to listen on for client traffic.
    #[arg(long, help_heading = "Member", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, help_heading = "Member", default_value = "5")]
    pub max_snapshots: u64,
    /// Maximum number of WAL segment files to retain (0 is unlimited).
    #[arg(long, help_heading = "Member", default_value = "5")]
    pub max_wals: u64,
    /// Raise an alarm when the store's size exceeds this quota (0: the default quota).
    #[arg(long, help_heading = "Member", default_value = "0")]
    pub quota_backend_bytes: i64,
    /// etcd: bbolt commit interval. raftkv has no bbolt backend: accepted, no effect.
    #[arg(long, help_heading = "Member", default_value = "0s", value_parser = values::duration_flag("backend-batch-interval"))]
    pub backend_batch_interval: Duration,
    /// etcd: bbolt operations per commit. raftkv has no bbolt backend: accepted, no effect.
    #[arg(long, help_heading = "Member", default_value = "0")]
    pub backend_batch_limit: u64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, help_heading = "Member", default_value = "128")]
    pub max_txn_ops: usize,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, help_heading = "Member", default_value = "1572864")]
    pub max_request_bytes: usize,
    /// Maximum concurrent HTTP/2 streams (requests, watch and keep-alive streams) per client connection.
    #[arg(long, help_heading = "Member", default_value = "1024")]
    pub max_concurrent_streams: u32,
    /// Minimum interval a client should wait before pinging the server.
    #[arg(long, help_heading = "Member", default_value = "5s", value_parser = values::duration_flag("grpc-keepalive-min-time"))]
    pub grpc_keepalive_min_time: Duration,
    /// Frequency of server-to-client pings to check if a connection is alive (0 to disable).
    #[arg(long, help_heading = "Member", default_value = "2h", value_parser = values::duration_flag("grpc-keepalive-interval"))]
    pub grpc_keepalive_interval: Duration,
    /// Additional wait before closing a non-responsive connection (0 to disable).
    #[arg(long, help_heading = "Member", default_value = "20s", value_parser = values::duration_flag("grpc-keepalive-timeout"))]
    pub grpc_keepalive_timeout: Duration,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, help_heading = "Clustering", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: `name=peer-url,name=peer-url,...`.
    #[arg(long, help_heading = "Clustering", default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster state: `new` to bootstrap, `existing` to join (or rejoin) a running cluster.
    #[arg(long, help_heading = "Clustering", default_value = "new", value_parser = values::choice_flag("initial-cluster-state", &["new", "existing"]))]
    pub initial_cluster_state: String,
    /// Initial cluster token, part of the cluster and member ids.
    #[arg(long, help_heading = "Clustering", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's client URLs to advertise to the rest of the cluster.
    #[arg(long, help_heading = "Clustering", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// Discovery URL used to bootstrap the cluster. Not supported (use --initial-cluster).
    #[arg(long, help_heading = "Clustering", default_value = "")]
    pub discovery: String,
    /// Behaviour when discovery fails (`exit` or `proxy`). No effect: discovery is not supported.
    #[arg(long, help_heading = "Clustering", default_value = "proxy", value_parser = values::choice_flag("discovery-fallback", &["exit", "proxy"]))]
    pub discovery_fallback: String,
    /// HTTP proxy for the discovery service. Not supported.
    #[arg(long, help_heading = "Clustering", default_value = "")]
    pub discovery_proxy: String,
    /// DNS SRV domain used to bootstrap the cluster. Not supported (use --initial-cluster).
    #[arg(long, help_heading = "Clustering", default_value = "")]
    pub discovery_srv: String,
    /// Suffix to the DNS SRV name queried when bootstrapping. Not supported.
    #[arg(long, help_heading = "Clustering", default_value = "")]
    pub discovery_srv_name: String,
    /// Reject reconfiguration requests that would cause quorum loss (too few started members).
    #[arg(long, help_heading = "Clustering", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "true", value_parser = values::bool_flag("strict-reconfig-check"))]
    pub strict_reconfig_check: bool,
    /// Run the Raft pre-vote phase before an election. raftkv's default is true (etcd 3.4: false, etcd 3.5: true).
    #[arg(long, help_heading = "Clustering", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "true", value_parser = values::bool_flag("pre-vote"))]
    pub pre_vote: bool,
    /// Auto compaction retention length (0 disables auto compaction).
    #[arg(long, help_heading = "Clustering", default_value = "0")]
    pub auto_compaction_retention: String,
    /// How to read --auto-compaction-retention: `periodic` (a duration, hours if no unit) or `revision`.
    #[arg(long, help_heading = "Clustering", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Accept etcd v2 client requests. Not supported: only `false`.
    #[arg(long, help_heading = "Clustering", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("enable-v2"))]
    pub enable_v2: bool,
    /// Client TLS: this server's certificate chain (PEM), for `https://` client URLs.
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub cert_file: Option<PathBuf>,
    /// Client TLS: the private key (PEM) of --cert-file.
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub key_file: Option<PathBuf>,
    /// Client TLS: refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(long, help_heading = "Security", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("client-cert-auth"))]
    pub client_cert_auth: bool,
    /// Client TLS: certificate revocation list (PEM).
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub client_crl_file: Option<PathBuf>,
    /// Client TLS: hostname a client certificate must carry.
    #[arg(long, help_heading = "Security", default_value = "")]
    pub client_cert_allowed_hostname: String,
    /// Client TLS: CA certificates (PEM) that client certificates must be signed by.
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Client TLS with a self-signed certificate generated at start.
    #[arg(long, help_heading = "Security", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("auto-tls"))]
    pub auto_tls: bool,
    /// Peer TLS: this member's certificate (PEM), presented to and by peers on `https://` peer URLs.
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub peer_cert_file: Option<PathBuf>,
    /// Peer TLS: the private key (PEM) of --peer-cert-file.
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub peer_key_file: Option<PathBuf>,
    /// Peer TLS: refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long, help_heading = "Security", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("peer-client-cert-auth"))]
    pub peer_client_cert_auth: bool,
    /// Peer TLS: CA certificates (PEM) that peers' certificates must be signed by.
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Peer TLS: common name a peer's certificate must carry.
    #[arg(long, help_heading = "Security", default_value = "")]
    pub peer_cert_allowed_cn: String,
    /// Peer TLS: hostname a peer's certificate must carry.
    #[arg(long, help_heading = "Security", default_value = "")]
    pub peer_cert_allowed_hostname: String,
    /// Peer TLS with a self-signed certificate generated at start (when no --peer-cert-file).
    #[arg(long, help_heading = "Security", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("peer-auto-tls"))]
    pub peer_auto_tls: bool,
    /// Peer TLS: certificate revocation list (PEM).
    #[arg(long, help_heading = "Security", value_parser = values::path_flag)]
    pub peer_crl_file: Option<PathBuf>,
    /// Comma-separated TLS cipher suites between clients/server and peers (empty: the TLS library's defaults).
    #[arg(long, help_heading = "Security", default_value = "")]
    pub cipher_suites: String,
    /// Comma-separated origins allowed for CORS (empty or * allows all).
    #[arg(long, help_heading = "Security", default_value = "*")]
    pub cors: String,
    /// Acceptable hostnames of HTTP client requests when not secure (empty or * allows all).
    #[arg(long, help_heading = "Security", default_value = "*")]
    pub host_whitelist: String,
    /// Token type and options: `simple` or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`.
    #[arg(long, help_heading = "Auth", default_value = "simple")]
    pub auth_token: String,
    /// Cost of the bcrypt hashes of auth passwords (4 to 31).
    #[arg(long, help_heading = "Auth", default_value = "10")]
    pub bcrypt_cost: u32,
    /// Time (in seconds) a simple auth token lives without use.
    #[arg(long, help_heading = "Auth", default_value = "300")]
    pub auth_token_ttl: u64,
    /// Serve profiling data at the client URL + `/debug/pprof/`.
    #[arg(long, help_heading = "Profiling and Monitoring", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("enable-pprof"))]
    pub enable_pprof: bool,
    /// Detail of exported metrics: `basic`, or `extensive` to add histograms.
    #[arg(long, help_heading = "Profiling and Monitoring", default_value = "basic")]
    pub metrics: String,
    /// URLs to serve `/metrics` and `/health` on (comma-separated; empty: none).
    #[arg(long, help_heading = "Profiling and Monitoring", default_value = "")]
    pub listen_metrics_urls: String,
    /// `zap` (JSON lines) or `capnslog` (text). Both log through raftkv's logger.
    #[arg(long, help_heading = "Logging", default_value = "capnslog")]
    pub logger: String,
    /// Comma-separated log targets: `default` or `stderr`, `stdout`, or file paths (appended to).
    #[arg(long, help_heading = "Logging", default_value = "default")]
    pub log_outputs: String,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, help_heading = "Logging", default_value = "info")]
    pub log_level: String,
    /// v2 proxy mode (`off`, `readonly`, `on`). Not supported: only `off`.
    #[arg(long, help_heading = "v2 Proxy (not supported)", default_value = "off")]
    pub proxy: String,
    /// v2 proxy: time (in milliseconds) an endpoint is held failed. Not supported.
    #[arg(long, help_heading = "v2 Proxy (not supported)", default_value = "5000")]
    pub proxy_failure_wait: u64,
    /// v2 proxy: endpoints refresh interval (in milliseconds). Not supported.
    #[arg(long, help_heading = "v2 Proxy (not supported)", default_value = "30000")]
    pub proxy_refresh_interval: u64,
    /// v2 proxy: dial timeout (in milliseconds). Not supported.
    #[arg(long, help_heading = "v2 Proxy (not supported)", default_value = "1000")]
    pub proxy_dial_timeout: u64,
    /// v2 proxy: write timeout (in milliseconds). Not supported.
    #[arg(long, help_heading = "v2 Proxy (not supported)", default_value = "5000")]
    pub proxy_write_timeout: u64,
    /// v2 proxy: read timeout (in milliseconds). Not supported.
    #[arg(long, help_heading = "v2 Proxy (not supported)", default_value = "0")]
    pub proxy_read_timeout: u64,
    /// Check data corruption before serving any client or peer traffic.
    #[arg(long, help_heading = "Experimental", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("experimental-initial-corrupt-check"))]
    pub experimental_initial_corrupt_check: bool,
    /// Time between cluster corruption check passes (0: none).
    #[arg(long, help_heading = "Experimental", default_value = "0s", value_parser = values::duration_flag("experimental-corrupt-check-time"))]
    pub experimental_corrupt_check_time: Duration,
    /// Serve v2 requests through the v3 backend under a prefix. Not supported.
    #[arg(long, help_heading = "Experimental", default_value = "")]
    pub experimental_enable_v2v3: String,
    /// etcd: bbolt freelist type (`array` or `map`). raftkv has no bbolt backend: accepted, no effect.
    #[arg(long, help_heading = "Experimental", default_value = "array", value_parser = values::choice_flag("experimental-backend-bbolt-freelist-type", &["array", "map"]))]
    pub experimental_backend_bbolt_freelist_type: String,
    /// The leader persists leases' remaining TTL so leader changes do not renew them.
    #[arg(long, help_heading = "Experimental", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("experimental-enable-lease-checkpoint"))]
    pub experimental_enable_lease_checkpoint: bool,
    /// Most revisions deleted in one compaction batch.
    #[arg(long, help_heading = "Experimental", default_value = "1000")]
    pub experimental_compaction_batch_limit: u64,
    /// Skip verification of the SAN field of client certificates on peer connections.
    #[arg(long, help_heading = "Experimental", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("experimental-peer-skip-client-san-verification"))]
    pub experimental_peer_skip_client_san_verification: bool,
    /// Interval of periodic watch progress notifications.
    #[arg(long, help_heading = "Experimental", default_value = "10m", value_parser = values::duration_flag("experimental-watch-progress-notify-interval"))]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Log a warning when applying a request takes longer than this.
    #[arg(long, help_heading = "Experimental", default_value = "100ms", value_parser = values::duration_flag("experimental-warning-apply-duration"))]
    pub experimental_warning_apply_duration: Duration,
    /// Force to create a new one-member cluster from this member's data.
    #[arg(long, help_heading = "Unsafe", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("force-new-cluster"))]
    pub force_new_cluster: bool,
    /// Enable debug-level logging (deprecated: use --log-level=debug).
    #[arg(long, help_heading = "Deprecated", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("debug"))]
    pub debug: bool,
    /// etcd: per-package capnslog levels. Not supported (use --log-level).
    #[arg(long, help_heading = "Deprecated", default_value = "")]
    pub log_package_levels: String,
    /// Applied entry bytes between snapshots (whichever of this and --snapshot-count comes first).
    #[arg(long, help_heading = "raftkv", default_value_t = 64 << 20)]
    pub snapshot_bytes: u64,
    /// Most client connections served at once per client URL; more are answered
    /// "too many client connections".
    #[arg(long, help_heading = "raftkv", default_value_t = 4096)]
    pub max_client_connections: usize,
    /// Seconds a client request may wait for Raft before failing with "request timed out".
    #[arg(long, help_heading = "raftkv", default_value_t = 7)]
    pub request_timeout_seconds: u64,
    /// Testing aid: dial these addresses instead of the named peers' advertised peer URLs
    /// (`name=host:port,...`); member identities still come from the URLs. Lets a test put a
    /// fault-injecting proxy on each directed link.
    #[arg(long, hide = true, default_value = "")]
    pub peer_dial_overrides: String,
    /// TEST ONLY, UNSAFE: serve linearizable reads locally without ReadIndex (a deliberately
    /// broken build for checking that the chaos tests catch stale reads).
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("unsafe-local-reads"))]
    pub unsafe_local_reads: bool,
    /// TEST ONLY: keep WAL writes in process memory until fsync, so SIGKILL loses unsynced
    /// writes as a power failure would.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = values::bool_flag("unsafe-wal-buffer-unsynced"))]
    pub unsafe_wal_buffer_unsynced: bool,
}
