//! A fault-injecting TCP proxy for one directed peer link (A's writer → B's listener).
//!
//! raftkv's peer connections each carry one direction of traffic, so a proxy per directed
//! link can cut one direction while the other still flows (one-way partitions).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Longest a proxy waits to connect to its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Size of the buffer a blackholed connection reads into.
const DISCARD_BUFFER_BYTES: usize = 64 << 10;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward bytes both ways.
    Pass,
    /// Close existing connections and close new ones at once (the sender sees errors).
    Drop,
    /// Accept and read everything, deliver nothing (the sender sees a silent network).
    Blackhole,
}

/// A proxy listening on a loopback port and forwarding to one peer's listener.
pub struct LinkProxy {
    listen_address: SocketAddr,
    mode: watch::Sender<LinkMode>,
    accept_task: JoinHandle<()>,
}

impl LinkProxy {
    /// Starts a proxy in [`LinkMode::Pass`] on a fresh loopback port, forwarding to `target`.
    /// Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen_address = listener.local_addr()?;
        let (mode, mode_receiver) = watch::channel(LinkMode::Pass);
        let accept_task = tokio::spawn(accept_loop(listener, target, mode_receiver));
        Ok(LinkProxy { listen_address, mode, accept_task })
    }

    /// The address senders dial.
    pub fn listen_address(&self) -> SocketAddr {
        self.listen_address
    }

    /// Switches the link to `mode`. Connections opened under another mode are closed (a
    /// stream that lost bytes must not resume mid-frame), except that passing connections
    /// turn into blackholed ones when the link is blackholed.
    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_if_modified(|current| {
            let changed = *current != mode;
            *current = mode;
            changed
        });
    }

    /// The link's current mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if *mode.borrow() == LinkMode::Drop {
            drop(inbound);
            continue;
        }
        connections.spawn(forward(inbound, target, mode.clone()));
    }
}

/// Serves one connection: forwards while the link passes, discards while it is blackholed,
/// and closes on any other change of mode.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<LinkMode>) {
    mode.borrow_and_update();
    if *mode.borrow() == LinkMode::Pass {
        let Ok(Ok(mut outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
            return;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
            changed = mode.changed() => if changed.is_err() { return },
        }
        if *mode.borrow_and_update() != LinkMode::Blackhole {
            return;
        }
    }
    let mut buffer = vec![0u8; DISCARD_BUFFER_BYTES];
    loop {
        tokio::select! {
            read = inbound.read(&mut buffer) => if matches!(read, Ok(0) | Err(_)) { return },
            _ = mode.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = stream.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        address
    }

    async fn round_trip(address: SocketAddr) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(address).await.ok()?;
        stream.write_all(b"ping").await.ok()?;
        let mut answer = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut answer)).await.ok()?.ok()?;
        Some(answer.to_vec())
    }

    #[tokio::test]
    async fn modes_pass_drop_and_blackhole() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(proxy.listen_address()).await, Some(b"ping".to_vec()));
        proxy.set_mode(LinkMode::Blackhole);
        assert_eq!(round_trip(proxy.listen_address()).await, None);
        proxy.set_mode(LinkMode::Drop);
        assert_eq!(round_trip(proxy.listen_address()).await, None);
        proxy.set_mode(LinkMode::Pass);
        assert_eq!(proxy.mode(), LinkMode::Pass);
        assert_eq!(round_trip(proxy.listen_address()).await, Some(b"ping".to_vec()));
    }
}
