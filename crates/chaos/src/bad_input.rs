//! Garbage for a member's client and peer ports: random bytes, truncated frames, oversized
//! length headers, bad checksums, handshakes from another cluster or an unknown member, and
//! malformed messages after a valid handshake. A correct member logs and closes such
//! connections and keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use proto::prost::Message as _;
use proto::raftkvpeer::{envelope, Envelope, Handshake, RaftMessage};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one connection of an attack may take (connect, write, read the answer).
const ATTACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The peer protocol version the handshake carries.
const PEER_PROTOCOL_VERSION: u32 = 1;

/// HTTP/2's connection preface.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whom to attack.
#[derive(Clone, Debug)]
pub struct Target {
    /// The member's client (gRPC) address.
    pub client_address: SocketAddr,
    /// The member's own peer listener.
    pub peer_address: SocketAddr,
    /// The cluster id (from `Maintenance.Status` headers).
    pub cluster_id: u64,
    /// The member's id.
    pub member_id: u64,
    /// Another member's id (a known peer to impersonate).
    pub peer_member_id: u64,
}

/// A peer frame: u32 BE payload length, u32 BE crc32c of the payload, payload.
pub fn peer_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("small payload").to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn handshake(cluster_id: u64, from: u64, to: u64) -> Vec<u8> {
    let message = Handshake { protocol_version: PEER_PROTOCOL_VERSION, cluster_id, from, to, ..Handshake::default() };
    peer_frame(&message.encode_to_vec())
}

fn random_bytes(random: &mut ChaCha8Rng, length_max: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; random.gen_range(1..=length_max)];
    random.fill_bytes(&mut bytes);
    bytes
}

/// The payloads sent to the peer port, each on its own connection, with a name.
pub fn peer_attacks(target: &Target, random: &mut ChaCha8Rng) -> Vec<(&'static str, Vec<u8>)> {
    let valid = handshake(target.cluster_id, target.peer_member_id, target.member_id);
    let mut truncated = peer_frame(&random_bytes(random, 200));
    truncated.truncate(truncated.len() / 2);
    let mut bad_checksum = handshake(target.cluster_id, target.peer_member_id, target.member_id);
    bad_checksum[5] ^= 0xff;
    let unknown_kind = Envelope {
        payload: Some(envelope::Payload::Message(RaftMessage {
            from: target.peer_member_id,
            to: target.member_id,
            kind: 9999,
            ..RaftMessage::default()
        })),
    };
    let mut oversized = 0xffff_fff0u32.to_be_bytes().to_vec();
    oversized.extend(random_bytes(random, 64));
    vec![
        ("random bytes", random_bytes(random, 4096)),
        ("truncated frame", truncated),
        ("oversized length header", oversized),
        ("bad checksum", bad_checksum),
        ("wrong cluster id", handshake(target.cluster_id ^ 0x5a5a, target.peer_member_id, target.member_id)),
        ("unknown member", handshake(target.cluster_id, 0x1234_5678_9abc, target.member_id)),
        ("addressed to another member", handshake(target.cluster_id, target.peer_member_id, target.peer_member_id)),
        ("garbage envelope after handshake", [valid.clone(), peer_frame(&random_bytes(random, 512))].concat()),
        ("unknown message kind after handshake", [valid, peer_frame(&unknown_kind.encode_to_vec())].concat()),
    ]
}

/// The payloads sent to the client (HTTP/2 gRPC) port, each on its own connection.
pub fn client_attacks(random: &mut ChaCha8Rng) -> Vec<(&'static str, Vec<u8>)> {
    let mut huge_frame = HTTP2_PREFACE.to_vec();
    // A SETTINGS frame header claiming 16 MiB - 1 bytes, then far fewer.
    huge_frame.extend_from_slice(&[0xff, 0xff, 0xff, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]);
    huge_frame.extend(random_bytes(random, 100));
    let mut truncated_preface = HTTP2_PREFACE.to_vec();
    truncated_preface.truncate(10);
    vec![
        ("random bytes", random_bytes(random, 4096)),
        ("truncated preface", truncated_preface),
        ("preface then random bytes", [HTTP2_PREFACE.to_vec(), random_bytes(random, 2048)].concat()),
        ("oversized HTTP/2 frame header", huge_frame),
    ]
}

/// Sends `payload` on a fresh connection to `address`, reads whatever comes back until the
/// server closes or the time is up, and closes. Errors are expected and ignored.
async fn send_once(address: SocketAddr, payload: &[u8]) {
    let attempt = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(payload).await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(ATTACK_TIMEOUT, attempt).await;
}

/// Sends every attack to `target`, concurrently; returns the names of what was sent.
pub async fn attack(target: &Target, random: &mut ChaCha8Rng) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = Vec::new();
    for (name, payload) in peer_attacks(target, random) {
        names.push(format!("peer: {name}"));
        let address = target.peer_address;
        tasks.spawn(async move { send_once(address, &payload).await });
    }
    for (name, payload) in client_attacks(random) {
        names.push(format!("client: {name}"));
        let address = target.client_address;
        tasks.spawn(async move { send_once(address, &payload).await });
    }
    while tasks.join_next().await.is_some() {}
    names
}

/// Sends a gRPC put larger than the server accepts (`value_bytes`) through the client API;
/// returns the error the server answered (an answer, not a crash, is expected).
pub async fn oversized_put(client_url: &str, value_bytes: usize) -> anyhow::Result<String> {
    let channel = crate::etcd::channel(client_url, ATTACK_TIMEOUT)?;
    let value = vec![b'x'; value_bytes];
    match crate::etcd::put(&channel, b"chaos/oversized", &value, ATTACK_TIMEOUT).await {
        Ok(revision) => Ok(format!("accepted at revision {revision}")),
        Err(error) => Ok(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn frames_carry_length_and_checksum() {
        let frame = peer_frame(b"abc");
        assert_eq!(&frame[0..4], &3u32.to_be_bytes());
        assert_eq!(&frame[4..8], &crc32c::crc32c(b"abc").to_be_bytes());
        assert_eq!(&frame[8..], b"abc");
    }

    #[test]
    fn attacks_are_deterministic() {
        let target = Target {
            client_address: "127.0.0.1:1".parse().unwrap(),
            peer_address: "127.0.0.1:2".parse().unwrap(),
            cluster_id: 1,
            member_id: 2,
            peer_member_id: 3,
        };
        let first = peer_attacks(&target, &mut ChaCha8Rng::seed_from_u64(5));
        let second = peer_attacks(&target, &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(first, second);
        assert_eq!(client_attacks(&mut ChaCha8Rng::seed_from_u64(5)).len(), 4);
    }
}
