//! TLS on client and peer URLs with certificates generated at test time (rcgen): a
//! 3-member cluster with client and peer TLS and certificate authentication on both
//! serves etcdctl 3.4 (`--cacert/--cert/--key`) through every member; a wrong CA, an
//! expired certificate, a client without a certificate and a plain-TCP client are
//! refused; a member impersonated by a node whose certificate comes from a foreign CA
//! cannot take part (the cluster keeps its leader and term, and keeps working); bad
//! certificate files stop the server at startup with an error naming the flag.
//!
//! Needs `etcdctl` on PATH.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{etcdctl_program, parse_member_add, run_bounded, ClientTls, Cluster, CommandOutput, ServerKind, WAIT_MAX};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate authority that signs test certificates.
struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("self-signed CA");
        Authority { certificate, key }
    }

    /// A certificate for 127.0.0.1 and localhost, usable by servers and clients, valid
    /// for rcgen's wide default span, or only in 2000 when `expired`.
    fn issue(&self, name: &str, expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("signed certificate");
        (certificate.pem(), key.serialize_pem())
    }
}

/// PEM files of one test: the cluster's CA and certificate, and the bad ones.
struct Files {
    directory: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let files = Files { directory: tempfile::Builder::new().prefix("raftkv-tls-").tempdir().expect("directory") };
        let authority = Authority::new("raftkv test CA");
        let foreign = Authority::new("foreign CA");
        files.write("ca.pem", &authority.certificate.pem());
        files.write("foreign-ca.pem", &foreign.certificate.pem());
        files.write_pair("server", authority.issue("raftkv member", false));
        files.write_pair("client", authority.issue("root", false));
        files.write_pair("expired", authority.issue("expired", true));
        files.write_pair("foreign", foreign.issue("intruder", false));
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write a PEM file");
    }

    fn write_pair(&self, name: &str, (certificate, key): (String, String)) {
        self.write(&format!("{name}.pem"), &certificate);
        self.write(&format!("{name}-key.pem"), &key);
    }

    /// Client files: the cluster's CA and `name`'s certificate.
    fn client(&self, ca: &str, name: &str) -> ClientTls {
        ClientTls {
            ca_file: self.path(ca),
            cert_file: self.path(&format!("{name}.pem")),
            key_file: self.path(&format!("{name}-key.pem")),
        }
    }

    /// A member's TLS flags with certificate `name` (client and peer sides, both
    /// requiring certificates signed by the cluster's CA).
    fn member_flags(&self, name: &str) -> Vec<String> {
        let path = |file: &str| self.path(file).display().to_string();
        let (certificate, key) = (path(&format!("{name}.pem")), path(&format!("{name}-key.pem")));
        vec![
            format!("--cert-file={certificate}"),
            format!("--key-file={key}"),
            format!("--trusted-ca-file={}", path("ca.pem")),
            "--client-cert-auth".into(),
            format!("--peer-cert-file={certificate}"),
            format!("--peer-key-file={key}"),
            format!("--peer-trusted-ca-file={}", path("ca.pem")),
            "--peer-client-cert-auth".into(),
        ]
    }
}

/// `etcdctl --endpoints=<endpoint> <tls flags> <arguments>`.
async fn etcdctl(endpoint: &str, tls: &[String], arguments: &[&str]) -> CommandOutput {
    let mut all = vec![format!("--endpoints={endpoint}"), "--dial-timeout=3s".into(), "--command-timeout=5s".into()];
    all.extend(tls.iter().cloned());
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await
}

/// As [`etcdctl`], sent again (at most 5 times) while refused with "no leader": nothing was
/// done, an election is under way (the machine may be loaded).
async fn etcdctl_with_leader(endpoint: &str, tls: &[String], arguments: &[&str]) -> CommandOutput {
    let mut output = etcdctl(endpoint, tls, arguments).await;
    for _ in 0..5 {
        if output.code == 0 || !output.stderr.contains("etcdserver: no leader") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        output = etcdctl(endpoint, tls, arguments).await;
    }
    output
}

async fn start_tls_cluster(files: &Files) -> Cluster {
    let flags = files.member_flags("server");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Cluster::start_tls(ServerKind::Raftkv, 3, &flags, files.client("ca.pem", "client")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_etcdctl_and_refuses_bad_clients() {
    let files = Files::new();
    let mut cluster = start_tls_cluster(&files).await;
    let good = files.client("ca.pem", "client").etcdctl_arguments();
    for (index, url) in cluster.client_urls().iter().enumerate() {
        assert!(url.starts_with("https://"), "{url}");
        let output = etcdctl(url, &good, &["put", &format!("key-{index}"), &format!("value-{index}")]).await;
        assert_eq!(output.stdout.trim(), "OK", "put through member {index}: {output:?}{}", cluster.logs());
    }
    for url in cluster.client_urls() {
        let output = etcdctl(&url, &good, &["get", "key-", "--prefix"]).await;
        assert_eq!(output.stdout, "key-0\nvalue-0\nkey-1\nvalue-1\nkey-2\nvalue-2\n", "get through {url}: {output:?}");
    }
    // A follower forwards lease keep-alives to the leader over its https:// client URL.
    let leader = cluster.wait_for_leader().await;
    let leader_url = cluster.client_urls()[leader].clone();
    let follower_url = cluster.client_urls()[(leader + 1) % 3].clone();
    let granted = etcdctl(&leader_url, &good, &["lease", "grant", "60"]).await;
    let lease = granted.stdout.split_whitespace().nth(1).unwrap_or_else(|| panic!("lease grant: {granted:?}"));
    let kept = etcdctl(&follower_url, &good, &["lease", "keep-alive", "--once", lease]).await;
    assert!(kept.stdout.contains("keepalived with TTL("), "keep-alive through a follower: {kept:?}{}", cluster.logs());
    let url = cluster.client_urls()[0].clone();
    let refused = [
        ("a CA that did not sign the server", files.client("foreign-ca.pem", "client").etcdctl_arguments()),
        ("a client certificate from a foreign CA", files.client("ca.pem", "foreign").etcdctl_arguments()),
        ("an expired client certificate", files.client("ca.pem", "expired").etcdctl_arguments()),
        ("no client certificate", vec![format!("--cacert={}", files.path("ca.pem").display())]),
    ];
    for (case, tls) in &refused {
        let output = etcdctl(&url, tls, &["put", "refused", case]).await;
        assert_ne!(output.code, 0, "{case}: etcdctl must fail: {output:?}");
        assert!(!output.stdout.contains("OK"), "{case}: {output:?}");
    }
    let plain = url.replacen("https://", "http://", 1);
    let output = etcdctl(&plain, &[], &["put", "refused", "plain TCP"]).await;
    assert_ne!(output.code, 0, "a plain-TCP client must be refused: {output:?}");
    let output = etcdctl(&url, &good, &["get", "refused"]).await;
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.stdout, "", "no refused client wrote anything");
    assert!(cluster.log(0).contains("client TLS handshake failed"), "refusals are logged{}", cluster.logs());
}

/// A member joins a TLS cluster: `etcdctl member add` over TLS, then the new member starts
/// with https:// peer URLs and an empty data dir, asks the others for the cluster
/// (`GET /members` over mutual TLS), catches up and serves what they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_a_tls_cluster_over_https_peer_urls() {
    let files = Files::new();
    let mut cluster = start_tls_cluster(&files).await;
    let good = files.client("ca.pem", "client").etcdctl_arguments();
    let endpoints = cluster.client_urls().join(",");
    let put = etcdctl_with_leader(&endpoints, &good, &["put", "before-join", "1"]).await;
    assert_eq!(put.stdout.trim(), "OK", "{put:?}");
    let index = cluster.add_node("n3");
    assert!(cluster.nodes[index].peer_url.starts_with("https://"));
    let peer_urls = format!("--peer-urls={}", cluster.nodes[index].peer_url);
    // Through a follower: it forwards the change to the leader's https:// client URL.
    let leader = cluster.wait_for_leader().await;
    let follower_url = cluster.client_urls()[(leader + 1) % 3].clone();
    let added = etcdctl_with_leader(&follower_url, &good, &["member", "add", "n3", &peer_urls]).await;
    assert_eq!(added.code, 0, "member add over TLS: {added:?}");
    let (id, initial_cluster) = parse_member_add(&added.stdout);
    cluster.start_joining(index, &initial_cluster);
    let url = cluster.nodes[index].client_url.clone();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let read = etcdctl(&url, &good, &["get", "before-join", "--consistency=s"]).await;
        if read.stdout == "before-join\n1\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the joined member never served the key: {read:?}{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let put = etcdctl_with_leader(&url, &good, &["put", "after-join", "2"]).await;
    assert_eq!(put.stdout.trim(), "OK", "a write through the joined member: {put:?}{}", cluster.logs());
    let listed = etcdctl(&url, &good, &["member", "list"]).await;
    assert_eq!(listed.stdout.lines().count(), 4, "{listed:?}");
    assert!(listed.stdout.contains(&format!("{id:x}, started, n3, {}", cluster.nodes[index].peer_url)), "{listed:?}");
}

/// (leader, term) a member reports, through etcdctl's `endpoint status`.
async fn leader_and_term(url: &str, tls: &[String]) -> Option<(u64, u64)> {
    let output = etcdctl(url, tls, &["endpoint", "status", "-w", "json"]).await;
    let status: serde_json::Value = serde_json::from_str(&output.stdout).ok()?;
    let status = &status[0]["Status"];
    Some((status["leader"].as_u64()?, status["raftTerm"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_foreign_certificate_cannot_take_part() {
    let files = Files::new();
    let mut cluster = start_tls_cluster(&files).await;
    let good = files.client("ca.pem", "client").etcdctl_arguments();
    let leader = cluster.wait_for_leader().await;
    let victim = (leader + 1) % 3;
    cluster.kill(victim);
    let survivor_url = cluster.client_urls()[leader].clone();
    let before = leader_and_term(&survivor_url, &good).await.expect("status of the leader");
    // The impostor has the victim's name and URLs and trusts the real CA, but its own
    // certificate comes from a foreign CA.
    let impostor_data = cluster.directory().join("impostor.data");
    let mut impostor = spawn_member(&cluster, victim, &impostor_data, &files.member_flags("foreign"), &files);
    let deadline = Instant::now() + WAIT_MAX;
    let refusals = |cluster: &Cluster| {
        (0..3).filter(|index| *index != victim).all(|index| cluster.log(index).contains("peer TLS handshake failed"))
    };
    while !refusals(&cluster) {
        assert!(Instant::now() < deadline, "members never refused the impostor{}", cluster.logs());
        assert!(impostor.try_wait().expect("impostor status").is_none(), "the impostor exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Long enough for the impostor to time out elections several times (1 s each).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for index in (0..3).filter(|index| *index != victim) {
        let url = &cluster.client_urls()[index];
        let output = etcdctl(url, &good, &["put", &format!("after-{index}"), "written"]).await;
        assert_eq!(output.stdout.trim(), "OK", "the cluster keeps working: {output:?}");
    }
    let after = leader_and_term(&survivor_url, &good).await.expect("status of the leader");
    assert_eq!(before, after, "the impostor changed neither the leader nor the term");
    let victim_url = cluster.client_urls()[victim].clone();
    let seen_by_impostor = leader_and_term(&victim_url, &good).await;
    assert!(matches!(seen_by_impostor, Some((0, _)) | None), "the impostor never saw a leader: {seen_by_impostor:?}");
    let _ = impostor.kill();
    let _ = impostor.wait();
    cluster.restart(victim);
    cluster.wait_for_leader().await;
    let output = etcdctl(&victim_url, &good, &["get", "after-", "--prefix", "--keys-only"]).await;
    assert_eq!(output.code, 0, "the real member rejoins: {output:?}");
}

/// Starts a process as member `index` of `cluster` (its name and URLs) with `flags`, on
/// `data_dir`.
fn spawn_member(
    cluster: &Cluster,
    index: usize,
    data_dir: &Path,
    flags: &[String],
    files: &Files,
) -> std::process::Child {
    let node = &cluster.nodes[index];
    let initial_cluster =
        cluster.nodes.iter().map(|node| format!("{}={}", node.name, node.peer_url)).collect::<Vec<_>>().join(",");
    let log = std::fs::File::create(files.path("impostor.log")).expect("impostor log");
    std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .arg("serve")
        .args(["--name", &node.name])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen-client-urls", &node.client_url, "--advertise-client-urls", &node.client_url])
        .args(["--listen-peer-urls", &node.peer_url, "--initial-advertise-peer-urls", &node.peer_url])
        .args(["--initial-cluster", &initial_cluster, "--initial-cluster-token", "harness"])
        .args(flags)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start the impostor")
}

/// Runs `raftkv serve` on https URLs with `flags` until it exits; returns its output.
async fn serve_once(flags: &[String]) -> CommandOutput {
    let directory = tempfile::tempdir().expect("directory");
    let mut arguments: Vec<String> = vec![
        "serve".into(),
        "--name=default".into(),
        format!("--data-dir={}", directory.path().join("data").display()),
        "--listen-client-urls=https://127.0.0.1:0".into(),
        "--advertise-client-urls=https://127.0.0.1:0".into(),
    ];
    arguments.extend(flags.iter().cloned());
    run_bounded(env!("CARGO_BIN_EXE_raftkv"), &arguments, &[], "").await
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_server_with_a_clear_error() {
    let files = Files::new();
    files.write("garbage.pem", "this is not PEM\n");
    let ca = format!("--trusted-ca-file={}", files.path("ca.pem").display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--cert-file=/nonexistent/cert.pem".into(), "--key-file=/nonexistent/key.pem".into()],
            "--cert-file /nonexistent/cert.pem: cannot read",
        ),
        (
            vec![
                format!("--cert-file={}", files.path("garbage.pem").display()),
                format!("--key-file={}", files.path("server-key.pem").display()),
            ],
            "no PEM certificate",
        ),
        (
            vec![
                format!("--cert-file={}", files.path("server.pem").display()),
                format!("--key-file={}", files.path("client-key.pem").display()),
            ],
            "does not belong to --cert-file",
        ),
        (vec![format!("--cert-file={}", files.path("server.pem").display())], "need both --cert-file and --key-file"),
        (
            vec![
                format!("--cert-file={}", files.path("server.pem").display()),
                format!("--key-file={}", files.path("server-key.pem").display()),
                "--client-cert-auth".into(),
            ],
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (
            vec![
                ca.clone(),
                "--peer-cert-file=/nonexistent/peer.pem".into(),
                "--listen-peer-urls=https://127.0.0.1:0".into(),
                "--initial-advertise-peer-urls=https://127.0.0.1:2380".into(),
                "--initial-cluster=default=https://127.0.0.1:2380".into(),
                format!("--cert-file={}", files.path("server.pem").display()),
                format!("--key-file={}", files.path("server-key.pem").display()),
            ],
            "--peer-",
        ),
    ];
    for (flags, expected) in cases {
        let output = serve_once(&flags).await;
        assert_ne!(output.code, 0, "{flags:?} must stop the server: {output:?}");
        let text = format!("{}{}", output.stdout, output.stderr);
        assert!(text.contains(expected), "{flags:?}: expected {expected:?} in {text}");
    }
}
