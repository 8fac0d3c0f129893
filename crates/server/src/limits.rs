//! Client connections: TLS acceptance and the connection limit that protects a node
//! from its clients.
//!
//! Each client URL accepts at most `--max-client-connections` connections at once. One
//! more is still accepted (up to [`OVER_LIMIT_CONNECTIONS_MAX`] such at a time, beyond
//! which they are closed at once), so its client gets a clear gRPC error,
//! `ResourceExhausted: raftkv: too many client connections`, instead of a reset; it is
//! then closed after [`OVER_LIMIT_LINGER`]. TLS handshakes run concurrently, each within
//! [`HANDSHAKE_TIMEOUT`], while holding a connection slot.
//!
//! The other limits live elsewhere: request size in the gRPC services
//! (`--max-request-bytes`, also the gRPC decoding limit), transaction size in the store
//! (`--max-txn-ops`), in-flight requests per connection as HTTP/2's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (`--max-concurrent-streams`).

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::tls::MaybeTlsStream;

/// Connections over the limit kept open at once to tell their clients why.
pub const OVER_LIMIT_CONNECTIONS_MAX: usize = 64;
/// How long a connection over the limit stays open (time to answer its first requests).
pub const OVER_LIMIT_LINGER: Duration = Duration::from_secs(2);
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the gRPC server to take them.
const ACCEPTED_QUEUE_MAX: usize = 64;

/// What the gRPC services can learn about a connection (request extension).
#[derive(Clone, Debug)]
pub struct ClientConnectionInfo {
    /// The client's address.
    pub remote_address: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the connection is over `--max-client-connections` (its requests are refused).
    pub over_limit: bool,
}

/// One accepted client connection; holds its slot until dropped.
pub struct ClientConnection {
    stream: MaybeTlsStream,
    info: ClientConnectionInfo,
    closes_at: Option<Pin<Box<tokio::time::Sleep>>>,
    _slot: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for ClientConnection {
    type ConnectInfo = ClientConnectionInfo;

    fn connect_info(&self) -> ClientConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for ClientConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let connection = self.get_mut();
        if let Some(closes_at) = connection.closes_at.as_mut() {
            if closes_at.as_mut().poll(context).is_ready() {
                return Poll::Ready(Ok(())); // end of stream: the server closes the connection
            }
        }
        Pin::new(&mut connection.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for ClientConnection {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// Accepts connections on `listener` (TLS when `tls` is set) within `connections_max`;
/// the stream ends when the listener fails for good. Accepting stops when the stream is
/// dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections_max: usize,
) -> impl Stream<Item = std::io::Result<ClientConnection>> {
    assert!(connections_max > 0, "at least one client connection must be allowed");
    let (sender, receiver) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    let slots = Arc::new(Semaphore::new(connections_max));
    let over_limit_slots = Arc::new(Semaphore::new(OVER_LIMIT_CONNECTIONS_MAX));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let (stream, address) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "client accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (slot, over_limit) = match slots.clone().try_acquire_owned() {
                Ok(slot) => (slot, false),
                Err(_) => match over_limit_slots.clone().try_acquire_owned() {
                    Ok(slot) => (slot, true),
                    Err(_) => {
                        tracing::debug!(%address, "closing a client connection far over --max-client-connections");
                        continue;
                    }
                },
            };
            if over_limit {
                tracing::warn!(%address, connections_max, "refusing a client connection over --max-client-connections");
            }
            tokio::spawn(handshake(stream, address, tls.clone(), slot, over_limit, sender.clone()));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

async fn handshake(
    stream: tokio::net::TcpStream,
    address: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slot: OwnedSemaphorePermit,
    over_limit: bool,
    accepted: mpsc::Sender<std::io::Result<ClientConnection>>,
) {
    let _ = stream.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, MaybeTlsStream::accept(stream, tls.as_ref())).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(%address, %error, "client TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%address, "client TLS handshake timed out");
            return;
        }
    };
    let info = ClientConnectionInfo { remote_address: Some(address), tls: tls.is_some(), over_limit };
    let closes_at = over_limit.then(|| Box::pin(tokio::time::sleep(OVER_LIMIT_LINGER)));
    let _ = accepted.send(Ok(ClientConnection { stream, info, closes_at, _slot: slot })).await;
}

/// The gRPC interceptor refusing every request of a connection over the limit.
pub fn refuse_over_limit(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    match request.extensions().get::<ClientConnectionInfo>() {
        Some(info) if info.over_limit => Err(tonic::Status::resource_exhausted(
            "raftkv: too many client connections (--max-client-connections); retry later",
        )),
        _ => Ok(request),
    }
}

/// tonic's decoder refuses a message over `--max-request-bytes` plus gRPC's overhead with
/// `OutOfRange` "Error, decoded message length too large: found N bytes, the limit is: M
/// bytes"; etcd (grpc-go) answers `ResourceExhausted` "grpc: received message larger than
/// max (N vs. M)", and clients retry or report on that code. This rewrites the first into
/// the second, in a trailers-only answer (a unary call's refusal) and in the trailers of a
/// stream (a streaming call's); other answers pass unchanged.
pub fn decoder_refusal_as_grpc_go<B>(mut response: http::Response<B>) -> http::Response<RewrittenBody<B>>
where
    B: http_body::Body,
{
    rewrite_decoder_refusal(response.headers_mut());
    let rewrite: fn(http_body::Frame<B::Data>) -> http_body::Frame<B::Data> = rewrite_trailers_frame::<B::Data>;
    response.map(|body| http_body_util::BodyExt::map_frame(body, rewrite))
}

/// A response body whose trailers went through [`rewrite_decoder_refusal`].
pub type RewrittenBody<B> = http_body_util::combinators::MapFrame<
    B,
    fn(http_body::Frame<<B as http_body::Body>::Data>) -> http_body::Frame<<B as http_body::Body>::Data>,
>;

fn rewrite_trailers_frame<D>(frame: http_body::Frame<D>) -> http_body::Frame<D> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            rewrite_decoder_refusal(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// Rewrites tonic's decoding refusal in `headers` (answer headers or trailers) as grpc-go's.
fn rewrite_decoder_refusal(headers: &mut http::HeaderMap) {
    if headers.get("grpc-status").map(|value| value.as_bytes()) != Some(b"11".as_slice()) {
        return;
    }
    let Some(message) = headers.get("grpc-message") else { return };
    // tonic percent-encodes the message (spaces too).
    let message = percent_encoding::percent_decode(message.as_bytes()).decode_utf8_lossy();
    let Some((found, limit)) = decoder_refusal_sizes(&message) else { return };
    let message = format!("grpc: received message larger than max ({found} vs. {limit})");
    let message = http::HeaderValue::from_str(&message).expect("ASCII digits and text");
    headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    headers.insert("grpc-message", message);
}

/// (found, limit) from tonic's decoding refusal message, `None` for any other message.
fn decoder_refusal_sizes(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

#[cfg(test)]
mod decoder_refusal_tests {
    use super::*;

    fn answer(status: &'static str, message: &'static str) -> http::Response<http_body_util::Empty<bytes::Bytes>> {
        let mut response = http::Response::new(http_body_util::Empty::new());
        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static(status));
        response.headers_mut().insert("grpc-message", http::HeaderValue::from_static(message));
        response
    }

    #[test]
    fn a_stream_refusal_in_trailers_is_rewritten_too() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("11"));
        let message =
            "Error,%20decoded%20message%20length%20too%20large:%20found%2010%20bytes,%20the%20limit%20is:%209%20bytes";
        trailers.insert("grpc-message", http::HeaderValue::from_static(message));
        let frame = rewrite_trailers_frame::<bytes::Bytes>(http_body::Frame::trailers(trailers));
        let trailers = frame.into_trailers().expect("still trailers");
        assert_eq!(trailers["grpc-status"], "8");
        assert_eq!(trailers["grpc-message"], "grpc: received message larger than max (10 vs. 9)");
        let data = rewrite_trailers_frame(http_body::Frame::data(bytes::Bytes::from_static(b"x")));
        assert_eq!(data.into_data().expect("data passes"), bytes::Bytes::from_static(b"x"));
    }

    #[test]
    fn tonic_decoding_refusal_reads_as_grpc_go_resource_exhausted() {
        let refused =
            answer("11", "Error, decoded message length too large: found 2097200 bytes, the limit is: 2097152 bytes");
        let rewritten = decoder_refusal_as_grpc_go(refused);
        assert_eq!(rewritten.headers()["grpc-status"], "8");
        assert_eq!(rewritten.headers()["grpc-message"], "grpc: received message larger than max (2097200 vs. 2097152)");
        let compacted = answer("11", "etcdserver: mvcc: required revision has been compacted");
        let unchanged = decoder_refusal_as_grpc_go(compacted);
        assert_eq!(unchanged.headers()["grpc-status"], "11", "other OutOfRange answers are left alone");
        let ok = decoder_refusal_as_grpc_go(answer(
            "0",
            "Error, decoded message length too large: found 1 bytes, the limit is: 0 bytes",
        ));
        assert_eq!(ok.headers()["grpc-status"], "0");
    }
}
