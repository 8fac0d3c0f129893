//! The deployment files in deploy/ checked offline:
//!
//! - The Kubernetes manifests are read by `kubectl` (Debian's `kubernetes-client`, or any
//!   kubectl) without an API server, and have what a raftkv StatefulSet needs. `kubectl
//!   apply --dry-run=client` and `kubectl create --dry-run=client` both ask the API server
//!   for its resource list (discovery) even in client mode, so without a cluster they fail
//!   with "connection refused"; `kubectl label --local --dry-run=client -o json -f DIR`
//!   decodes every document as kubectl does (YAML syntax, `apiVersion`/`kind`, one object
//!   per document) and prints them, offline. The fields are then checked here.
//! - The Prometheus scrape config's job matches the selector of etcd's own alerting rules
//!   (Debian's etcd-server ships them), and every metric those rules use that a real etcd
//!   3.4 exports, a raftkv member exports too.
//! - With podman installed, the image from deploy/Containerfile is built (on a base image
//!   made here from the machine's own Debian files, since no image registry is reachable)
//!   and started once: with `podman run`, and where this sandbox's runtime refuses that
//!   (it cannot set rlimits), by starting the image's entrypoint with the image's
//!   environment and user from the container's mounted root file system (chroot, in a
//!   network namespace of its own) until /health answers. Without podman the test prints
//!   that it was skipped and why.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{run_bounded, Cluster};
use serde_json::Value;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The manifests as kubectl decodes them (one JSON object per document).
async fn kubectl_decoded_manifests() -> Vec<Value> {
    let directory = repository().join("deploy/kubernetes");
    let arguments: Vec<String> = ["label", "--local", "--dry-run=client", "-o", "json", "-f"]
        .iter()
        .map(|word| word.to_string())
        .chain([directory.display().to_string(), "raftkv.io/checked=true".into()])
        .collect();
    let output = run_bounded("kubectl", &arguments, &[("KUBECONFIG", "/dev/null")], "").await;
    assert_eq!(output.code, 0, "kubectl could not read deploy/kubernetes/: {}", output.stderr);
    let objects: Vec<Value> = serde_json::Deserializer::from_str(&output.stdout)
        .into_iter::<Value>()
        .map(|object| object.expect("kubectl prints JSON"))
        .flat_map(|object| match object["kind"].as_str() {
            Some("List") => object["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![object],
        })
        .collect();
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/kubernetes/ has no {kind} {name}"))
}

/// The value of the container's env entry `name`.
fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .and_then(|entries| entries.iter().find(|entry| entry["name"] == name))
        .and_then(|entry| entry["value"].as_str())
        .unwrap_or_else(|| panic!("the container sets no {name}"))
}

fn check_services(objects: &[Value], pod_labels: &Value) {
    let headless = find(objects, "Service", "raftkv-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None", "the peer Service is headless");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "peers resolve before they are ready");
    let client = find(objects, "Service", "raftkv");
    for service in [headless, client] {
        let selector = service["spec"]["selector"].as_object().expect("a selector");
        for (key, value) in selector {
            assert_eq!(&pod_labels[key], value, "Service selector {key} matches the pods");
        }
        let ports: Vec<i64> =
            service["spec"]["ports"].as_array().unwrap().iter().filter_map(|port| port["port"].as_i64()).collect();
        assert!(ports.contains(&2379), "client port 2379 on {}", service["metadata"]["name"]);
    }
}

fn check_probes_and_resources(container: &Value) {
    let named_ports: BTreeSet<&str> =
        container["ports"].as_array().unwrap().iter().filter_map(|port| port["name"].as_str()).collect();
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let http = &container[probe]["httpGet"];
        assert_eq!(http["path"], "/health", "{probe} on /health");
        let port = http["port"].as_str().expect("probes name their port");
        assert!(named_ports.contains(port), "{probe} port {port} is a container port");
    }
    let metrics_port = container["ports"].as_array().unwrap().iter().find(|port| port["name"] == "metrics").unwrap();
    let metrics_url = env_value(container, "ETCD_LISTEN_METRICS_URLS");
    assert!(metrics_url.ends_with(&format!(":{}", metrics_port["containerPort"])), "/health is served on that port");
    for resource in ["cpu", "memory"] {
        assert!(container["resources"]["requests"][resource].is_string(), "a {resource} request");
    }
}

fn check_member_configuration(statefulset: &Value, container: &Value) {
    let replicas = statefulset["spec"]["replicas"].as_i64().unwrap();
    let service = statefulset["spec"]["serviceName"].as_str().unwrap();
    assert_eq!(env_value(container, "ETCD_NAME"), "$(POD_NAME)");
    let pod_name = container["env"].as_array().unwrap().iter().find(|entry| entry["name"] == "POD_NAME").unwrap();
    assert_eq!(pod_name["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    let peer_domain = env_value(container, "PEER_DOMAIN");
    assert!(peer_domain.starts_with(&format!("{service}.")), "peer names are under the headless Service");
    let advertised = env_value(container, "ETCD_INITIAL_ADVERTISE_PEER_URLS");
    assert_eq!(advertised, "http://$(POD_NAME).$(PEER_DOMAIN):2380");
    let initial_cluster = env_value(container, "ETCD_INITIAL_CLUSTER");
    let expected: Vec<String> =
        (0..replicas).map(|index| format!("raftkv-{index}=http://raftkv-{index}.$(PEER_DOMAIN):2380")).collect();
    assert_eq!(initial_cluster, expected.join(","), "every pod of the set, by its DNS name");
    assert_eq!(env_value(container, "ETCD_INITIAL_CLUSTER_STATE"), "new");
    let data_dir = env_value(container, "ETCD_DATA_DIR");
    let claim = statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str().unwrap();
    let mount = container["volumeMounts"].as_array().unwrap().iter().find(|mount| mount["name"] == claim).unwrap();
    assert!(data_dir.starts_with(mount["mountPath"].as_str().unwrap()), "the data dir is on the claimed volume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_read_with_kubectl_and_hold_a_three_member_statefulset() {
    let objects = kubectl_decoded_manifests().await;
    let statefulset = find(&objects, "StatefulSet", "raftkv");
    assert_eq!(statefulset["spec"]["replicas"], 3);
    assert_eq!(statefulset["spec"]["podManagementPolicy"], "Parallel", "members start together");
    let claims = &statefulset["spec"]["volumeClaimTemplates"];
    assert!(claims[0]["spec"]["resources"]["requests"]["storage"].is_string(), "a PersistentVolumeClaim per pod");
    let template = &statefulset["spec"]["template"];
    let pod_labels = &template["metadata"]["labels"];
    assert_eq!(statefulset["spec"]["selector"]["matchLabels"], *pod_labels);
    let security = &template["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_ne!(security["runAsUser"], 0);
    let container = &template["spec"]["containers"][0];
    check_services(&objects, pod_labels);
    check_probes_and_resources(container);
    check_member_configuration(statefulset, container);
    let budget = find(&objects, "PodDisruptionBudget", "raftkv");
    assert_eq!(budget["spec"]["maxUnavailable"], 1, "one member of three at a time");
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *pod_labels);
}

/// etcd's alerting rules as Debian's etcd-server ships them.
async fn etcd_alert_rules() -> String {
    let path = "/usr/share/doc/etcd-server/op-guide/etcd3_alert.rules.yml.gz";
    let output = run_bounded("zcat", &[path.to_string()], &[], "").await;
    assert_eq!(output.code, 0, "cannot read etcd's alerting rules {path} (install Debian's etcd-server): {output:?}");
    output.stdout
}

/// Names of the series a member's /metrics exposes.
async fn exported_metric_names(cluster: &Cluster) -> BTreeSet<String> {
    let node = &cluster.nodes[0];
    let put = run_bounded(
        &common::etcdctl_program(),
        &[format!("--endpoints={}", node.client_url), "put".into(), "alert-check".into(), "1".into()],
        &[("ETCDCTL_API", "3")],
        "",
    )
    .await;
    assert_eq!(put.code, 0, "etcdctl put: {put:?}");
    let output = run_bounded("curl", &["-sf".into(), format!("{}/metrics", node.metrics_url)], &[], "").await;
    assert_eq!(output.code, 0, "GET /metrics: {output:?}");
    output
        .stdout
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcds_alerting_rules_select_the_scrape_job_and_find_their_metrics_on_raftkv() {
    let rules = etcd_alert_rules().await;
    let selector = regex::Regex::new(r#"job=~"([^"]+)""#).unwrap();
    let job_patterns: BTreeSet<String> = selector.captures_iter(&rules).map(|found| found[1].to_string()).collect();
    assert!(!job_patterns.is_empty(), "etcd's rules select by job");
    let config_text = std::fs::read_to_string(repository().join("deploy/prometheus/prometheus.yml")).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&config_text).expect("prometheus.yml is YAML");
    let jobs = config["scrape_configs"].as_sequence().expect("scrape_configs");
    for job in jobs {
        let name = job["job_name"].as_str().unwrap();
        for pattern in &job_patterns {
            let anchored = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
            assert!(anchored.is_match(name), "job {name} is not selected by etcd's rules' job=~\"{pattern}\"");
        }
    }
    let metric = regex::Regex::new(r"\b((?:etcd|grpc)_[a-z_]+)\{").unwrap();
    let used: BTreeSet<String> = metric.captures_iter(&rules).map(|found| found[1].to_string()).collect();
    let etcd = Cluster::start_etcd(1).await;
    let etcd_exports = exported_metric_names(&etcd).await;
    drop(etcd);
    let raftkv = Cluster::start_raftkv(1).await;
    let raftkv_exports = exported_metric_names(&raftkv).await;
    let mut checked = 0;
    for name in used.iter().filter(|name| etcd_exports.contains(*name)) {
        assert!(raftkv_exports.contains(name), "etcd's alerts use {name}, which etcd 3.4 exports and raftkv does not");
        checked += 1;
    }
    assert!(checked >= 5, "at least the leader, proposal, gRPC and disk metrics are checked (checked {checked})");
    println!("deploy: {checked} of {} metrics etcd's alerts use found on raftkv (the rest etcd 3.4 does not export by default either)", used.len());
}

/// Runs a program to completion (bounded), as (exit code, stdout, stderr).
async fn run(program: &str, arguments: &[&str]) -> common::CommandOutput {
    let arguments: Vec<String> = arguments.iter().map(|argument| argument.to_string()).collect();
    run_bounded(program, &arguments, &[], "").await
}

/// A base image made from this machine's own files (it is Debian, as the image's base):
/// `sh`, `groupadd`, `useradd`, `mkdir`, `chown`, `chmod`, their libraries and raftkv's,
/// and minimal /etc files, imported with `podman import`. It stands in for
/// debian:bookworm-slim, which no reachable registry serves here.
async fn import_local_base_image(tag: &str, root: &std::path::Path) {
    let programs = ["/bin/sh", "/usr/sbin/groupadd", "/usr/sbin/useradd", "/bin/mkdir", "/bin/chown", "/bin/chmod"];
    let mut files: BTreeSet<String> = programs.iter().map(|program| program.to_string()).collect();
    for program in programs.iter().copied().chain([env!("CARGO_BIN_EXE_raftkv")]) {
        let ldd = run("ldd", &[program]).await;
        files.extend(ldd.stdout.split_whitespace().filter(|word| word.starts_with('/')).map(str::to_string));
    }
    files.remove(env!("CARGO_BIN_EXE_raftkv"));
    for file in &files {
        let target = root.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(file, &target).unwrap_or_else(|error| panic!("copy {file}: {error}"));
    }
    for directory in ["etc", "tmp", "var/lib"] {
        std::fs::create_dir_all(root.join(directory)).unwrap();
    }
    for (file, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.join(file), text).unwrap();
    }
    let command = format!("tar -C {} -c . | podman import - {tag}", root.display());
    let imported = run("sh", &["-c", &command]).await;
    assert_eq!(imported.code, 0, "podman import: {imported:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_image_builds_with_podman_and_its_entrypoint_serves_health() {
    if run("sh", &["-c", "command -v podman"]).await.code != 0 {
        println!("SKIPPED: podman is not installed (apt-get install podman); the image was not built");
        return;
    }
    if run("podman", &["info"]).await.code != 0 {
        println!("SKIPPED: `podman info` fails here; the image was not built");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let base = format!("localhost/raftkv-test-base:{}", std::process::id());
    let image = format!("localhost/raftkv-test:{}", std::process::id());
    import_local_base_image(&base, &work.path().join("root")).await;
    let context = work.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_raftkv"), context.join("raftkv")).unwrap();
    let containerfile = repository().join("deploy/Containerfile").display().to_string();
    let build_arg = format!("BASE_IMAGE={base}");
    let context_text = context.display().to_string();
    // chroot isolation: the build's RUN step needs no cgroups or namespaces of its own.
    let arguments =
        ["build", "--isolation=chroot", "-f", &containerfile, "--build-arg", &build_arg, "-t", &image, &context_text];
    let built = run("podman", &arguments).await;
    let inspect = run(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Volumes}} {{json .Config.Entrypoint}}",
            &image,
        ],
    )
    .await;
    let images = ImagesGuard { names: vec![image.clone(), base.clone()] };
    assert_eq!(built.code, 0, "podman build of deploy/Containerfile failed: {built:?}");
    assert_eq!(inspect.code, 0, "podman image inspect: {inspect:?}");
    assert!(inspect.stdout.starts_with("raftkv:raftkv "), "runs as the raftkv user: {}", inspect.stdout);
    assert!(inspect.stdout.contains("\"/var/lib/raftkv\""), "the data dir is a volume: {}", inspect.stdout);
    assert!(inspect.stdout.contains("[\"/usr/local/bin/raftkv\",\"serve\"]"), "entrypoint: {}", inspect.stdout);
    let started = run("podman", &["run", "--rm", "--network=none", "--cgroups=disabled", &image, "--version"]).await;
    if started.code == 0 {
        assert!(started.stdout.contains("raftkv"), "podman run IMAGE --version: {started:?}");
    } else if started.stderr.contains("OCI permission denied") {
        println!(
            "podman run is refused here ({}); starting the image's entrypoint from its root file system instead",
            started.stderr.trim()
        );
    } else {
        panic!("the image does not start: {started:?}");
    }
    start_from_image_root(&image).await;
    drop(images);
}

/// Removes the test's images when dropped (also on failure).
struct ImagesGuard {
    names: Vec<String>,
}

impl Drop for ImagesGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman").args(["rmi", "-f"]).args(&self.names).output();
    }
}

/// A container created (not run) from an image with its root file system mounted; the
/// process started from it; all removed when dropped.
struct MountedContainer {
    id: String,
    process: Option<std::process::Child>,
}

impl Drop for MountedContainer {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::process::Command::new("podman").args(["umount", &self.id]).output();
        let _ = std::process::Command::new("podman").args(["rm", "-f", &self.id]).output();
    }
}

/// Starts the image's entrypoint with the image's environment, as the image's user, in
/// the container's root file system (chroot) in a network namespace of its own, and waits
/// for its /health on the image's metrics port: what `podman run` would do, without the
/// runtime's cgroups and rlimits that this sandbox refuses.
async fn start_from_image_root(image: &str) {
    let created = run("podman", &["create", image]).await;
    assert_eq!(created.code, 0, "podman create: {created:?}");
    let mut container = MountedContainer { id: created.stdout.trim().to_string(), process: None };
    let mounted = run("podman", &["mount", &container.id]).await;
    assert_eq!(mounted.code, 0, "podman mount: {mounted:?}");
    let root = mounted.stdout.trim().to_string();
    let format = "{{json .Config.Env}}";
    let environment = run("podman", &["image", "inspect", "--format", format, image]).await;
    let environment: Vec<String> = serde_json::from_str(environment.stdout.trim()).expect("the image's Env");
    let script = "ip link set lo up && exec chroot --userspec=2379:2379 \"$0\" /usr/local/bin/raftkv serve";
    let child = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", script, &root])
        .env_clear()
        .envs(environment.iter().filter_map(|pair| pair.split_once('=')))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the entrypoint");
    let pid = child.id().to_string();
    container.process = Some(child);
    let deadline = std::time::Instant::now() + common::WAIT_MAX;
    loop {
        let probe = ["--net", "--target", &pid, "curl", "-s", "-m", "2", "http://127.0.0.1:2381/health"];
        let health = run("nsenter", &probe).await;
        if health.stdout.contains("\"health\":\"true\"") {
            break;
        }
        let exited = container.process.as_mut().unwrap().try_wait().expect("poll the member");
        assert!(exited.is_none(), "the image's entrypoint exited: {exited:?}");
        assert!(std::time::Instant::now() < deadline, "no healthy /health from the image: {health:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status.lines().find(|line| line.starts_with("Uid:")).unwrap_or_default().to_string();
    assert!(uid.split_whitespace().nth(1) == Some("2379"), "the member runs as uid 2379: {uid}");
    assert!(std::path::Path::new(&root).join("var/lib/raftkv/wal").exists(), "the data is in the volume's directory");
    println!("the image's entrypoint served /health as uid 2379 with its data in /var/lib/raftkv");
}
