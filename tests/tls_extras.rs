//! etcd's extra TLS flags on real raftkv processes, with certificates generated at test
//! time (rcgen): `--client-crl-file` refuses a revoked client certificate,
//! `--client-cert-allowed-hostname` a certificate for another host, while a 3-member
//! cluster whose peers need `--peer-cert-allowed-cn` forms and serves etcdctl; and
//! `--auto-tls` / `--peer-auto-tls` run a cluster on self-signed certificates generated
//! into the data dirs. Needs `etcdctl` on PATH.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{etcdctl_program, free_port, run_bounded, ClientTls, Cluster, CommandOutput, ServerKind, WAIT_MAX};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "raftkv extras CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("self-signed CA");
        Authority { certificate, key }
    }

    /// A certificate with common name `name`, for `hosts`, serial `serial`.
    fn issue(&self, name: &str, hosts: &[&str], serial: u64) -> (String, String) {
        let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
        let mut params = CertificateParams::new(hosts).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("signed certificate");
        (certificate.pem(), key.serialize_pem())
    }

    /// A revocation list revoking `serial`.
    fn revoke(&self, serial: u64) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial),
                revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.certificate, &self.key).expect("signed CRL").pem().expect("PEM")
    }
}

fn write_pair(directory: &Path, name: &str, (certificate, key): (String, String)) {
    std::fs::write(directory.join(format!("{name}.pem")), certificate).expect("write");
    std::fs::write(directory.join(format!("{name}-key.pem")), key).expect("write");
}

async fn etcdctl(endpoints: &str, tls: &[String], arguments: &[&str]) -> CommandOutput {
    let mut all = vec![format!("--endpoints={endpoints}"), "--dial-timeout=3s".into(), "--command-timeout=5s".into()];
    all.extend(tls.iter().cloned());
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await
}

fn client_flags(directory: &Path, name: &str) -> Vec<String> {
    vec![
        format!("--cacert={}", directory.join("ca.pem").display()),
        format!("--cert={}", directory.join(format!("{name}.pem")).display()),
        format!("--key={}", directory.join(format!("{name}-key.pem")).display()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_foreign_host_client_certificates_are_refused() {
    let directory = tempfile::tempdir().expect("directory");
    let path = directory.path();
    let authority = Authority::new();
    std::fs::write(path.join("ca.pem"), authority.certificate.pem()).expect("write");
    write_pair(path, "member", authority.issue("raftkv member", &["localhost", "127.0.0.1"], 10));
    write_pair(path, "client", authority.issue("root", &["client.example", "localhost"], 11));
    write_pair(path, "revoked", authority.issue("root", &["client.example"], 99));
    write_pair(path, "elsewhere", authority.issue("root", &["elsewhere.example"], 12));
    std::fs::write(path.join("crl.pem"), authority.revoke(99)).expect("write");
    let file = |name: &str| path.join(name).display().to_string();
    let flags = [
        format!("--cert-file={}", file("member.pem")),
        format!("--key-file={}", file("member-key.pem")),
        format!("--trusted-ca-file={}", file("ca.pem")),
        "--client-cert-auth".to_string(),
        format!("--client-crl-file={}", file("crl.pem")),
        "--client-cert-allowed-hostname=client.example".to_string(),
        format!("--peer-cert-file={}", file("member.pem")),
        format!("--peer-key-file={}", file("member-key.pem")),
        format!("--peer-trusted-ca-file={}", file("ca.pem")),
        "--peer-client-cert-auth".to_string(),
        "--peer-cert-allowed-cn=raftkv member".to_string(),
        "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let harness_tls = ClientTls {
        ca_file: path.join("ca.pem"),
        cert_file: path.join("client.pem"),
        key_file: path.join("client-key.pem"),
    };
    // The members' peers pass the allowed CN: the cluster forms.
    let cluster = Cluster::start_tls(ServerKind::Raftkv, 3, &flags, harness_tls).await;
    let endpoints = cluster.endpoints();
    let good = etcdctl(&endpoints, &client_flags(path, "client"), &["put", "k", "v"]).await;
    assert_eq!(good.code, 0, "{good:?}{}", cluster.logs());
    for refused in ["revoked", "elsewhere"] {
        let output = etcdctl(&cluster.client_urls()[1], &client_flags(path, refused), &["get", "k"]).await;
        assert_ne!(output.code, 0, "{refused}: {output:?}");
    }
    let read =
        etcdctl(&cluster.client_urls()[2], &client_flags(path, "client"), &["get", "k", "--print-value-only"]).await;
    assert_eq!((read.code, read.stdout.trim()), (0, "v"), "{read:?}");
}

/// Members started by hand (the harness polls with a CA, which auto TLS has none of).
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_runs_a_cluster_on_generated_certificates() {
    let directory = tempfile::tempdir().expect("directory");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial_cluster: Vec<String> =
        ports.iter().enumerate().map(|(index, (_, peer))| format!("n{index}=https://127.0.0.1:{peer}")).collect();
    let initial_cluster = initial_cluster.join(",");
    let data_dir = |index: usize| -> PathBuf { directory.path().join(format!("n{index}.data")) };
    let mut members = Members(Vec::new());
    for (index, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(directory.path().join(format!("n{index}.log"))).expect("log");
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(["serve", "--name", &format!("n{index}"), "--auto-tls", "--peer-auto-tls"])
            .arg("--data-dir")
            .arg(data_dir(index))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-token", "auto-tls"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start raftkv");
        members.0.push(child);
    }
    let endpoints: Vec<String> = ports.iter().map(|(client, _)| format!("https://127.0.0.1:{client}")).collect();
    let insecure = vec!["--insecure-transport=false".to_string(), "--insecure-skip-tls-verify".to_string()];
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let output = etcdctl(&endpoints[2], &insecure, &["put", "auto", "tls"]).await;
        if output.code == 0 {
            break;
        }
        let logs: String = (0..3)
            .map(|index| std::fs::read_to_string(directory.path().join(format!("n{index}.log"))).unwrap_or_default())
            .collect();
        assert!(Instant::now() < deadline, "no write within {WAIT_MAX:?}: {output:?}\n{logs}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let read = etcdctl(&endpoints[0], &insecure, &["get", "auto", "--print-value-only"]).await;
    assert_eq!((read.code, read.stdout.trim()), (0, "tls"), "{read:?}");
    for index in 0..3 {
        for side in ["client", "peer"] {
            let certificate = data_dir(index).join("fixtures").join(side).join("cert.pem");
            let text = std::fs::read_to_string(&certificate).unwrap_or_else(|error| panic!("{certificate:?}: {error}"));
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{certificate:?}");
        }
    }
    // Without skipping verification a client refuses the self-signed certificate.
    let verified = etcdctl(&endpoints[0], &["--insecure-transport=false".to_string()], &["get", "auto"]).await;
    assert_ne!(verified.code, 0, "{verified:?}");
}
