//! `--auth-token jwt,...` on a 3-member raftkv cluster of real processes: the token from
//! `Authenticate` on one member is a JWT signed with the configured RSA key (claims
//! `username`, `revision`, `exp`, as etcd 3.4's), accepted by another member that holds
//! the key, refused when tampered with, and refused for key-value requests once the
//! auth store changed ("revision of auth store is old"); etcdctl works through it all.
//! The claims' names and the header's algorithm are compared with a real etcd 3.4 given
//! the same flag. A malformed option is refused at start, naming it.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{etcdctl_program, run_bounded, serve_one_member_until_exit, Cluster, ServerKind};
use proto::etcdserverpb::{
    auth_client::AuthClient, kv_client::KvClient, AuthenticateRequest, PutRequest, RangeRequest,
};
use rand::SeedableRng;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// Writes a seeded 2048-bit RSA key pair; returns the `--auth-token` flag value.
fn jwt_flag(directory: &std::path::Path) -> String {
    let mut random = rand::rngs::StdRng::seed_from_u64(15);
    let private = rsa::RsaPrivateKey::new(&mut random, 2048).expect("RSA key");
    let public = rsa::RsaPublicKey::from(&private);
    let private_path = directory.join("jwt.key");
    let public_path = directory.join("jwt.pub");
    std::fs::write(&private_path, private.to_pkcs8_pem(LineEnding::LF).expect("PEM").as_bytes()).expect("write");
    std::fs::write(&public_path, public.to_public_key_pem(LineEnding::LF).expect("PEM")).expect("write");
    format!("jwt,pub-key={},priv-key={},sign-method=RS256,ttl=5m", public_path.display(), private_path.display())
}

/// Decodes unpadded base64url (a JWT segment).
fn base64url(text: &str) -> Vec<u8> {
    let value = |byte: u8| match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        other => panic!("not base64url: {other}"),
    };
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::new();
    for byte in text.bytes() {
        bits = (bits << 6) | u32::from(value(byte));
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    bytes
}

/// A JWT's header and claims.
fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let json = |part: &str| serde_json::from_slice(&base64url(part)).expect("JSON segment");
    (json(parts[0]), json(parts[1]))
}

async fn etcdctl(endpoint: &str, user: Option<&str>, arguments: &[&str]) -> common::CommandOutput {
    let mut all = vec![format!("--endpoints={endpoint}")];
    if let Some(user) = user {
        all.push(format!("--user={user}"));
    }
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await
}

/// root with auth enabled, then a token from `Authenticate` on `url`.
async fn enable_auth_and_authenticate(cluster: &Cluster, url: &str) -> String {
    for arguments in [&["user", "add", "root:rootpw"][..], &["auth", "enable"][..]] {
        let output = etcdctl(&cluster.client_urls()[0], None, arguments).await;
        assert_eq!(output.code, 0, "{arguments:?}: {output:?}{}", cluster.logs());
    }
    let mut auth = AuthClient::connect(url.to_string()).await.expect("connect");
    let request = AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
    auth.authenticate(request).await.expect("authenticate").into_inner().token
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("token", token.parse().expect("ASCII token"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_from_one_member_work_on_another() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let flag = jwt_flag(directory.path());
    let cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 3, &["--auth-token", &flag]).await;
    let urls = cluster.client_urls();
    let token = enable_auth_and_authenticate(&cluster, &urls[0]).await;
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(claims["username"], "root", "{claims}");
    let revision = claims["revision"].as_u64().expect("numeric revision");
    assert!(revision >= 1, "{claims}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let expiry = claims["exp"].as_u64().expect("numeric exp");
    assert!(expiry > now && expiry <= now + 5 * 60 + 5, "exp {expiry} is about 5 minutes after {now}");

    // Another member verifies the token with the key alone.
    let mut kv = KvClient::connect(urls[2].clone()).await.expect("connect");
    let put =
        PutRequest { key: b"jwt-key".to_vec().into(), value: b"from-member-3".to_vec().into(), ..Default::default() };
    kv.put(with_token(put.clone(), &token)).await.expect("put with a JWT issued by member 1");
    let range = RangeRequest { key: b"jwt-key".to_vec(), ..Default::default() };
    let found = kv.range(with_token(range.clone(), &token)).await.expect("range").into_inner();
    assert_eq!(found.kvs[0].value.as_ref(), b"from-member-3");

    let mut tampered = token.clone();
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let refused = kv.range(with_token(range.clone(), &tampered)).await.expect_err("tampered");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), "etcdserver: invalid auth token");

    // etcdctl authenticates on its own, on the third member.
    let output = etcdctl(&urls[1], Some("root:rootpw"), &["get", "jwt-key", "--print-value-only"]).await;
    assert_eq!((output.code, output.stdout.trim()), (0, "from-member-3"), "{output:?}");

    // A change to the auth store makes older tokens stale for key-value requests.
    let output = etcdctl(&urls[0], Some("root:rootpw"), &["user", "add", "alice:alicepw"]).await;
    assert_eq!(output.code, 0, "{output:?}");
    let stale = kv.put(with_token(put, &token)).await.expect_err("stale token");
    assert_eq!(stale.code(), tonic::Code::InvalidArgument);
    assert_eq!(stale.message(), "etcdserver: revision of auth store is old");
    let fresh = enable_auth_and_authenticate_again(&urls[2]).await;
    assert!(decode(&fresh).1["revision"].as_u64().expect("revision") > revision);
    kv.range(with_token(range, &fresh)).await.expect("a fresh token works");
}

async fn enable_auth_and_authenticate_again(url: &str) -> String {
    let mut auth = AuthClient::connect(url.to_string()).await.expect("connect");
    let request = AuthenticateRequest { name: "root".into(), password: "rootpw".into() };
    auth.authenticate(request).await.expect("authenticate").into_inner().token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_claims_match_etcd() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let flag = jwt_flag(directory.path());
    let mut shapes = Vec::new();
    for kind in [ServerKind::Raftkv, ServerKind::Etcd] {
        let cluster = Cluster::start_with_arguments(kind, 1, &["--auth-token", &flag]).await;
        let token = enable_auth_and_authenticate(&cluster, &cluster.client_urls()[0]).await;
        let (header, claims) = decode(&token);
        let mut names: Vec<String> = claims.as_object().expect("claims object").keys().cloned().collect();
        names.sort();
        shapes.push((header["alg"].clone(), names, claims["username"].clone(), claims["revision"].is_u64()));
    }
    assert_eq!(shapes[0], shapes[1], "raftkv's JWT (left) and etcd's (right)");
}

#[tokio::test]
async fn malformed_auth_token_options_are_refused_naming_them() {
    let directory = tempfile::tempdir().expect("temporary directory");
    for (flag, expected) in [
        ("jwt,sign-method=RS256,pub-key", "pub-key"),
        ("jwt,pub-key=/nonexistent.pub,sign-method=RS256", "/nonexistent.pub"),
        ("jwt,sign-method=NOPE,priv-key=/k", "sign-method=NOPE"),
        ("magic", "magic"),
    ] {
        let output = serve_one_member_until_exit(&directory.path().join("data"), &["--auth-token", flag]).await;
        assert_ne!(output.code, 0, "{flag}: {output:?}");
        assert!(output.stderr.contains("--auth-token") && output.stderr.contains(expected), "{flag}: {output:?}");
    }
}
