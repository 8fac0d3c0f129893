//! etcd's authentication on a 3-member raftkv cluster of real processes, driven by
//! etcdctl 3.4 along etcd's documented flow (user add root, auth enable, role add, role
//! grant-permission --prefix, user add, user grant-role; then allowed and denied get,
//! put, txn and watch as that user, a wrong password, auth disable). The same steps run
//! against a real etcd 3.4 cluster and both transcripts must be equal; each step's
//! expected outcome is also asserted on raftkv's own.
//!
//! Needs `etcdctl` on PATH and `/usr/bin/etcd`; fails with a message if either is missing.

mod common;

use common::{etcdctl_program, run_bounded, Cluster, CommandOutput};

const ROOT: &str = "root:rootpw";
const ALICE: &str = "alice:alicepw";

/// Which member a step talks to.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Every member (etcdctl picks).
    All,
    /// A follower (so writes are forwarded to the leader).
    Follower,
    /// The other follower (a token issued by one member used on another).
    OtherFollower,
}

/// One etcdctl invocation and what it must print.
struct Step {
    user: Option<&'static str>,
    arguments: &'static [&'static str],
    stdin: &'static str,
    target: Target,
    /// True if etcdctl must succeed.
    succeeds: bool,
    /// Text that must appear in its output (stdout and stderr).
    expect: &'static str,
}

const fn step(user: Option<&'static str>, arguments: &'static [&'static str], expect: &'static str) -> Step {
    Step { user, arguments, stdin: "", target: Target::All, succeeds: true, expect }
}

const fn fails(user: Option<&'static str>, arguments: &'static [&'static str], expect: &'static str) -> Step {
    Step { succeeds: false, ..step(user, arguments, expect) }
}

const fn on(target: Target, step: Step) -> Step {
    Step { target, ..step }
}

const DENIED: &str = "etcdserver: permission denied";

/// etcd's documented flow (docs/op-guide/authentication.md), then uses of the permissions.
fn steps() -> Vec<Step> {
    let root = Some(ROOT);
    let alice = Some(ALICE);
    let follower = Target::Follower;
    let other = Target::OtherFollower;
    vec![
        fails(None, &["auth", "enable"], "etcdserver: root user does not exist"),
        step(None, &["user", "add", ROOT], "User root created"),
        // etcdctl creates the role root and grants it when enabling says it is missing.
        step(None, &["auth", "enable"], "Authentication Enabled"),
        fails(None, &["put", "foo/1", "x"], "etcdserver: user name is empty"),
        step(root, &["role", "add", "reader"], "Role reader created"),
        step(
            root,
            &["role", "grant-permission", "reader", "--prefix=true", "readwrite", "foo/"],
            "Role reader updated",
        ),
        step(root, &["role", "grant-permission", "reader", "read", "config"], "Role reader updated"),
        step(root, &["role", "grant-permission", "reader", "write", "logs/", "--from-key"], "Role reader updated"),
        step(root, &["user", "add", ALICE], "User alice created"),
        step(root, &["user", "grant-role", "alice", "reader"], "Role reader is granted to user alice"),
        step(root, &["role", "get", "reader"], "[foo/, foo0) (prefix foo/)"),
        step(root, &["user", "get", "alice"], "Roles: reader"),
        step(root, &["user", "list"], "alice"),
        step(root, &["role", "list"], "reader"),
        step(root, &["put", "config", "c1"], "OK"),
        // As alice, on followers (writes are forwarded; the check is on the receiver).
        on(follower, step(alice, &["put", "foo/1", "one"], "OK")),
        on(other, step(alice, &["get", "foo/", "--prefix"], "foo/1\none")),
        on(follower, step(alice, &["get", "config"], "c1")),
        on(other, fails(alice, &["put", "config", "c2"], DENIED)),
        on(follower, fails(alice, &["put", "bar", "x"], DENIED)),
        on(other, fails(alice, &["get", "bar"], DENIED)),
        on(follower, fails(alice, &["get", "foo", "--prefix"], DENIED)),
        on(other, step(alice, &["put", "logs/zzz", "w"], "OK")),
        on(follower, fails(alice, &["get", "logs/zzz"], DENIED)),
        Step {
            stdin: "value(\"foo/1\") = \"one\"\n\nput foo/2 two\nget foo/1\n\nput foo/3 three\n\n",
            ..on(other, step(alice, &["txn"], "SUCCESS"))
        },
        Step { stdin: "value(\"foo/1\") = \"one\"\n\nput bar x\n\n\n", ..on(follower, fails(alice, &["txn"], DENIED)) },
        Step { stdin: "value(\"bar\") = \"x\"\n\nput foo/4 x\n\n\n", ..on(other, fails(alice, &["txn"], DENIED)) },
        on(follower, fails(alice, &["watch", "bar"], DENIED)),
        on(other, fails(Some("alice:wrong"), &["get", "foo/1"], "authentication failed, invalid user ID or password")),
        on(follower, fails(Some("nobody:pw"), &["get", "foo/1"], "authentication failed, invalid user ID or password")),
        fails(alice, &["user", "add", "mallory:pw"], DENIED),
        fails(alice, &["role", "grant-permission", "reader", "readwrite", "bar"], DENIED),
        fails(root, &["user", "delete", "root"], "etcdserver: invalid auth management"),
        step(root, &["role", "revoke-permission", "reader", "foo/", "--prefix=true"], "revoked from role reader"),
        on(other, fails(alice, &["get", "foo/1"], DENIED)),
        fails(root, &["role", "revoke-permission", "reader", "foo/", "--prefix=true"], "permission is not granted"),
        step(root, &["user", "passwd", "alice", "--interactive=false"], "Password updated"),
        step(root, &["auth", "disable"], "Authentication Disabled"),
        on(follower, step(None, &["get", "foo/", "--prefix"], "foo/2\ntwo")),
        on(other, step(None, &["put", "bar", "free"], "OK")),
    ]
}

/// etcdctl's client library logs retries as JSON lines on stderr, with timestamps.
fn transcript_line(step: &Step, output: &CommandOutput) -> String {
    let stderr: Vec<&str> = output.stderr.lines().filter(|line| !line.starts_with("{\"level\"")).collect();
    format!(
        "$ etcdctl {}{}\nexit {}\n{}{}\n",
        step.user.map(|user| format!("--user {user} ")).unwrap_or_default(),
        step.arguments.join(" "),
        output.code,
        output.stdout,
        stderr.join("\n")
    )
}

/// Runs every step on `cluster`; returns the transcript.
async fn run_steps(cluster: &mut Cluster) -> String {
    let leader = cluster.wait_for_leader().await;
    let urls = cluster.client_urls();
    let mut transcript = String::new();
    for step in steps() {
        let endpoints = match step.target {
            Target::All => cluster.endpoints(),
            Target::Follower => urls[(leader + 1) % urls.len()].clone(),
            Target::OtherFollower => urls[(leader + 2) % urls.len()].clone(),
        };
        let mut arguments =
            vec![format!("--endpoints={endpoints}"), "--dial-timeout=5s".into(), "--command-timeout=10s".into()];
        if let Some(user) = step.user {
            arguments.push(format!("--user={user}"));
        }
        arguments.extend(step.arguments.iter().map(|argument| argument.to_string()));
        let stdin = if step.arguments.contains(&"passwd") { "alicepw2\n" } else { step.stdin };
        let output = run_bounded(&etcdctl_program(), &arguments, &[("ETCDCTL_API", "3")], stdin).await;
        let line = transcript_line(&step, &output);
        let text = format!("{}{}", output.stdout, output.stderr);
        assert!(
            (output.code == 0) == step.succeeds && text.contains(step.expect),
            "{:?} on {:?}: expected {} with {:?}, got:\n{line}\nso far:\n{transcript}\nlogs:\n{}",
            step.arguments,
            cluster.kind(),
            if step.succeeds { "success" } else { "failure" },
            step.expect,
            cluster.logs()
        );
        transcript.push_str(&line);
    }
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_flow_matches_etcd() {
    let mut raftkv = Cluster::start_raftkv(3).await;
    let raftkv_transcript = run_steps(&mut raftkv).await;
    drop(raftkv);
    let mut etcd = Cluster::start_etcd(3).await;
    let etcd_transcript = run_steps(&mut etcd).await;
    assert_eq!(raftkv_transcript, etcd_transcript, "raftkv's etcdctl transcript differs from etcd's");
}

/// A watcher of a permitted prefix, as a user, through etcd's Rust client (which
/// authenticates and sends the token itself); a watcher of another key is canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_as_a_user_sees_permitted_keys_only() {
    use etcd_client::{Client, ConnectOptions, EventType, Permission, WatchOptions};
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.client_urls()[(leader + 1) % 3].clone();
    let mut admin = Client::connect(cluster.client_urls(), None).await.expect("connect");
    admin.user_add("root", "rootpw", None).await.expect("add root");
    admin.user_grant_role("root", "root").await.expect("grant root");
    admin.role_add("watcher").await.expect("add role");
    admin.role_grant_permission("watcher", Permission::read("w/").with_prefix()).await.expect("grant read");
    admin.user_add("bob", "bobpw", None).await.expect("add bob");
    admin.user_grant_role("bob", "watcher").await.expect("grant watcher");
    admin.auth_enable().await.expect("enable");
    let options = Some(ConnectOptions::new().with_user("bob", "bobpw"));
    let mut bob = Client::connect([follower.as_str()], options).await.expect("bob connects");
    let mut stream = bob.watch("w/", Some(WatchOptions::new().with_prefix())).await.expect("bob watches w/");
    let root_options = Some(ConnectOptions::new().with_user("root", "rootpw"));
    let mut root = Client::connect(cluster.client_urls(), root_options).await.expect("root connects");
    root.put("w/1", "one", None).await.expect("root writes");
    let event = tokio::time::timeout(common::WAIT_MAX, async {
        loop {
            let response = stream.message().await.expect("watch stream").expect("watch open");
            if let Some(event) = response.events().first() {
                break event.clone();
            }
        }
    })
    .await
    .expect("bob sees the write in time");
    assert_eq!(event.event_type(), EventType::Put);
    assert_eq!(event.kv().expect("kv").key(), b"w/1");
    assert!(bob.put("w/2", "x", None).await.is_err(), "bob may only read");
    // etcd 3.4 lets any user compact; raftkv requires root.
    let compaction = bob.compact(1, None).await.expect_err("only root compacts");
    assert!(compaction.to_string().contains(DENIED), "{compaction}");
    let mut denied_stream = bob.watch("other", None).await.expect("watch call");
    let refused = tokio::time::timeout(common::WAIT_MAX, denied_stream.message())
        .await
        .expect("answer in time")
        .expect("stream")
        .expect("a response");
    assert!(refused.canceled(), "a watch without read permission is canceled: {refused:?}");
    assert!(refused.cancel_reason().contains(DENIED), "{refused:?}");
}

/// A `Request` carrying `token` in the metadata, as etcd's clients send it.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("token", token.parse().expect("ASCII token"));
    request
}

/// A token issued by one member works on every member right away (it travels through
/// the log, as etcd's simple tokens do); it dies with a password change; no token and
/// a forged token get etcd's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_member_works_on_every_member() {
    use proto::etcdserverpb::{
        auth_client::AuthClient, kv_client::KvClient, AuthUserChangePasswordRequest, AuthenticateRequest, PutRequest,
        RangeRequest,
    };
    let mut cluster = Cluster::start_raftkv(3).await;
    cluster.wait_for_leader().await;
    let urls = cluster.client_urls();
    let mut admin = etcd_client::Client::connect(urls.clone(), None).await.expect("connect");
    admin.user_add("root", "rootpw", None).await.expect("add root");
    admin.user_grant_role("root", "root").await.expect("grant root");
    admin.role_add("writer").await.expect("add role");
    admin.role_grant_permission("writer", etcd_client::Permission::read_write("k")).await.expect("grant");
    admin.user_add("carol", "carolpw", None).await.expect("add carol");
    admin.user_grant_role("carol", "writer").await.expect("grant writer");
    admin.auth_enable().await.expect("enable");
    let authenticate =
        |name: &str, password: &str| AuthenticateRequest { name: name.into(), password: password.into() };
    for (index, url) in urls.iter().enumerate() {
        let mut auth = AuthClient::connect(url.clone()).await.expect("auth client");
        let token =
            auth.authenticate(authenticate("carol", "carolpw")).await.expect("authenticates").into_inner().token;
        for other in &urls {
            let mut kv = KvClient::connect(other.clone()).await.expect("kv client");
            let put = PutRequest {
                key: b"k".to_vec().into(),
                value: format!("from token of member {index}").into(),
                ..Default::default()
            };
            kv.put(with_token(put, &token))
                .await
                .unwrap_or_else(|status| panic!("token of {url} on {other}: {status:?}"));
            let denied = PutRequest { key: b"other".to_vec().into(), ..Default::default() };
            let status = kv.put(with_token(denied, &token)).await.expect_err("no permission on other");
            assert_eq!((status.code(), status.message()), (tonic::Code::PermissionDenied, DENIED));
        }
    }
    let mut auth = AuthClient::connect(urls[0].clone()).await.expect("auth client");
    let wrong = auth.authenticate(authenticate("carol", "nope")).await.expect_err("wrong password");
    assert_eq!(wrong.message(), "etcdserver: authentication failed, invalid user ID or password");
    let token = auth.authenticate(authenticate("carol", "carolpw")).await.expect("authenticates").into_inner().token;
    let root_token = auth.authenticate(authenticate("root", "rootpw")).await.expect("root").into_inner().token;
    let change =
        AuthUserChangePasswordRequest { name: "carol".into(), password: "carolpw2".into(), ..Default::default() };
    auth.user_change_password(with_token(change, &root_token)).await.expect("password changed");
    let mut kv = KvClient::connect(urls[1].clone()).await.expect("kv client");
    let range = || RangeRequest { key: b"k".to_vec(), ..Default::default() };
    let stale = kv.range(with_token(range(), &token)).await.expect_err("token of the old password");
    assert_eq!((stale.code(), stale.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
    let forged = kv.range(with_token(range(), "forged")).await.expect_err("forged token");
    assert_eq!(forged.message(), "etcdserver: invalid auth token");
    let anonymous = kv.range(range()).await.expect_err("no token");
    assert_eq!(
        (anonymous.code(), anonymous.message()),
        (tonic::Code::InvalidArgument, "etcdserver: user name is empty")
    );
}
