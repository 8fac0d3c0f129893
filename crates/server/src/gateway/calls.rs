//! One gateway call: a JSON request body in, the gRPC service called in process, a JSON
//! response (or a stream of newline-delimited `{"result":...}` objects) out.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::Code;

use super::json::{self, DynamicCodec};
use super::GrpcService;
use crate::grpc::TOKEN_METADATA_KEY;
use crate::limits::ClientConnectionInfo;

/// Prefix of request headers passed to the services as gRPC metadata (grpc-gateway's
/// convention): `Grpc-Metadata-hasleader: true` is the metadata `hasleader: true`.
pub const METADATA_HEADER_PREFIX: &str = "grpc-metadata-";

/// A gRPC method the gateway serves at some HTTP paths.
pub struct GatewayMethod {
    /// The method's descriptor (request and response types, streaming).
    pub descriptor: MethodDescriptor,
    /// `/etcdserverpb.KV/Range`.
    pub path: tonic::codegen::http::uri::PathAndQuery,
    /// Whether the request stream stays open after the body's messages until the HTTP
    /// client goes away: a watch keeps watching after its create request (etcd's watch
    /// server keeps a stream whose client stopped sending), a keep-alive ends.
    pub hold_request_stream_open: bool,
}

impl GatewayMethod {
    /// The method `service.method` (`"etcdserverpb.KV"`, `"Range"`).
    pub fn new(service: &str, method: &str) -> GatewayMethod {
        let descriptor = json::method(service, method);
        let path = format!("/{service}/{method}").parse().expect("a gRPC path is a valid URI path");
        let hold_request_stream_open = descriptor.is_client_streaming() && method == "Watch";
        GatewayMethod { descriptor, path, hold_request_stream_open }
    }

    fn is_streaming(&self) -> bool {
        self.descriptor.is_client_streaming() || self.descriptor.is_server_streaming()
    }
}

/// Sizes a gateway call may have.
#[derive(Clone, Copy, Debug)]
pub struct GatewayLimits {
    /// Largest JSON body read, in bytes; a larger one is refused unread.
    pub body_bytes_max: usize,
    /// Largest request message sent to the gRPC services, encoded (the gRPC decoding
    /// limit, `--max-request-bytes` plus etcd's overhead allowance).
    pub message_size_bytes_max: usize,
}

/// etcd's answer to a message over the gRPC decoding limit (grpc-go's error, which
/// etcd's gateway relays), for a request the gateway decoded from JSON.
fn too_large(message: &DynamicMessage, message_size_bytes_max: usize) -> Option<tonic::Status> {
    let length = prost::Message::encoded_len(message);
    (length > message_size_bytes_max).then(|| {
        tonic::Status::resource_exhausted(format!(
            "grpc: received message larger than max ({length} vs. {message_size_bytes_max})"
        ))
    })
}

/// The HTTP status grpc-gateway (v1, as etcd 3.4 uses it) answers a gRPC code with.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// etcd's error answer to a unary call: `{"error":…,"message":…,"code":…}`.
pub fn error_response(status: &tonic::Status) -> Response {
    let message = serde_json::Value::from(status.message()).to_string();
    let body = format!("{{\"error\":{message},\"message\":{message},\"code\":{}}}", status.code() as i32);
    json_response(http_status(status.code()), Body::from(body))
}

/// The last object of a response stream that failed (grpc-gateway v1's stream error).
fn stream_error(status: &tonic::Status) -> bytes::Bytes {
    let http = http_status(status.code());
    let body = serde_json::json!({
        "error": {
            "grpc_code": status.code() as i32,
            "http_code": http.as_u16(),
            "message": status.message(),
            "http_status": http.canonical_reason().unwrap_or(""),
        }
    });
    bytes::Bytes::from(body.to_string())
}

fn result_line(message: &DynamicMessage) -> bytes::Bytes {
    let json = json::message_to_json(message);
    let mut line = Vec::with_capacity(json.len() + 12);
    line.extend_from_slice(b"{\"result\":");
    line.extend_from_slice(&json);
    line.extend_from_slice(b"}\n");
    bytes::Bytes::from(line)
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if status == StatusCode::OK {
        // What grpc-gateway forwards of the gRPC response's headers.
        response.headers_mut().insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    }
    response
}

/// gRPC metadata for a call made for an HTTP request: the `Authorization` header as the
/// auth token (as etcd's gateway passes it) and every `Grpc-Metadata-*` header.
fn metadata_from_headers(headers: &HeaderMap) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(token) = headers.get("authorization").and_then(|value| value.to_str().ok()) {
        if let Ok(value) = token.parse() {
            metadata.insert(TOKEN_METADATA_KEY, value);
        }
    }
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(METADATA_HEADER_PREFIX) else { continue };
        let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_bytes()),
        ) else {
            continue;
        };
        metadata.insert(key, value);
    }
    metadata
}

/// A gRPC client of the in-process services, ready to call, with the request's metadata
/// (its HTTP headers, as etcd's gateway passes them) and the client connection's details.
async fn ready_client(
    grpc: GrpcService,
    parts: &axum::http::request::Parts,
) -> Result<(Client, tonic::metadata::MetadataMap, Option<ClientConnectionInfo>), Response> {
    let mut metadata = metadata_from_headers(&parts.headers);
    metadata.remove("content-type");
    let connection = parts.extensions.get::<ClientConnectionInfo>().cloned();
    let mut client =
        tonic::client::Grpc::new(grpc).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
    if let Err(error) = client.ready().await {
        let status = tonic::Status::unavailable(format!("raftkv: gRPC services unavailable: {error}"));
        return Err(error_response(&status));
    }
    Ok((client, metadata, connection))
}

/// Serves one HTTP request for `method`.
pub async fn call(
    grpc: GrpcService,
    method: Arc<GatewayMethod>,
    limits: GatewayLimits,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if method.descriptor.is_client_streaming() {
        return client_stream(grpc, &method, limits, parts, body).await;
    }
    let body = match axum::body::to_bytes(body, limits.body_bytes_max).await {
        Ok(body) => body,
        Err(_) => {
            let message = format!("raftkv: request body larger than max ({} bytes)", limits.body_bytes_max);
            return error_response(&tonic::Status::resource_exhausted(message));
        }
    };
    let messages = match read_messages(&method, &body) {
        Ok(messages) => messages,
        Err(status) => return error_response(&status),
    };
    if let Some(status) = messages.iter().find_map(|message| too_large(message, limits.message_size_bytes_max)) {
        return error_response(&status);
    }
    let (mut client, metadata, connection) = match ready_client(grpc, &parts).await {
        Ok(ready) => ready,
        Err(response) => return response,
    };
    let codec = DynamicCodec::new(method.descriptor.output());
    let path = method.path.clone();
    if !method.is_streaming() {
        let first = messages.into_iter().next().expect("read_messages returns at least one message");
        let mut request = tonic::Request::new(first);
        *request.metadata_mut() = metadata;
        if let Some(connection) = connection {
            request.extensions_mut().insert(connection);
        }
        return match client.unary(request, path, codec).await {
            Ok(response) => json_response(StatusCode::OK, Body::from(json::message_to_json(response.get_ref()))),
            Err(status) => error_response(&status),
        };
    }
    let (sender, receiver) = tokio::sync::mpsc::channel(messages.len().max(1));
    for message in messages {
        sender.try_send(message).expect("the channel holds every message of the body");
    }
    drop(sender);
    stream(client, &method, receiver, metadata, connection, codec).await
}

/// Messages queued from a streaming request body before the service takes them.
const REQUEST_STREAM_QUEUE: usize = 16;

/// A client-streaming call (watch, keep-alive): the body's messages are sent as they
/// arrive, so a client may keep its body open and send more (a watch's cancel request).
async fn client_stream(
    grpc: GrpcService,
    method: &GatewayMethod,
    limits: GatewayLimits,
    parts: axum::http::request::Parts,
    body: Body,
) -> Response {
    let input = method.descriptor.input();
    let mut values = BodyValues { body: body.into_data_stream(), buffer: Vec::new(), limits, ended: false };
    let first = match values.next().await {
        None => DynamicMessage::new(input.clone()),
        Some(Ok(value)) => match json::message_from_json(&input, value) {
            Ok(message) => message,
            Err(error) => return error_response(&tonic::Status::unknown(error)),
        },
        Some(Err(status)) => return error_response(&status),
    };
    if let Some(status) = too_large(&first, limits.message_size_bytes_max) {
        return error_response(&status);
    }
    let (sender, receiver) = tokio::sync::mpsc::channel(REQUEST_STREAM_QUEUE);
    sender.try_send(first).expect("an empty channel takes a message");
    tokio::spawn(forward_body(values, input, sender, method.hold_request_stream_open));
    let (client, metadata, connection) = match ready_client(grpc, &parts).await {
        Ok(ready) => ready,
        Err(response) => return response,
    };
    let codec = DynamicCodec::new(method.descriptor.output());
    stream(client, method, receiver, metadata, connection, codec).await
}

/// Sends the rest of a streaming body's messages; stops at the first unreadable one, as
/// etcd's gateway does. With `hold_open`, keeps the request stream open after the body
/// until the call ends (the HTTP client went away or the service ended the stream).
async fn forward_body(
    mut values: BodyValues,
    input: prost_reflect::MessageDescriptor,
    sender: tokio::sync::mpsc::Sender<DynamicMessage>,
    hold_open: bool,
) {
    while let Some(Ok(value)) = values.next().await {
        let Ok(message) = json::message_from_json(&input, value) else { break };
        if too_large(&message, values.limits.message_size_bytes_max).is_some() || sender.send(message).await.is_err() {
            break;
        }
    }
    if hold_open {
        sender.closed().await;
    }
}

/// The JSON values of a request body, read as its bytes arrive.
struct BodyValues {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
    limits: GatewayLimits,
    ended: bool,
}

impl BodyValues {
    /// The next value; `None` at the end of the body; an error for malformed JSON, a
    /// value over the size limit or a failed read.
    async fn next(&mut self) -> Option<Result<serde_json::Value, tonic::Status>> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<serde_json::Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.buffer.drain(..used);
                    return Some(Ok(value));
                }
                Some(Err(error)) if !error.is_eof() || self.ended => {
                    let message = format!("json: malformed request body: {error}");
                    return Some(Err(tonic::Status::unknown(message)));
                }
                None if self.ended => return None,
                _ => {}
            }
            match self.body.next().await {
                Some(Ok(bytes)) if self.buffer.len() + bytes.len() <= self.limits.body_bytes_max => {
                    self.buffer.extend_from_slice(&bytes);
                }
                Some(Ok(_)) => {
                    let message = format!("raftkv: request larger than max ({} bytes)", self.limits.body_bytes_max);
                    return Some(Err(tonic::Status::resource_exhausted(message)));
                }
                Some(Err(error)) => return Some(Err(tonic::Status::unknown(format!("reading the body: {error}")))),
                None => self.ended = true,
            }
        }
    }
}

/// The request messages of a body (one, for a unary or server-streaming call). A
/// malformed body fails the call with InvalidArgument, as etcd's gateway answers.
fn read_messages(method: &GatewayMethod, body: &[u8]) -> Result<Vec<DynamicMessage>, tonic::Status> {
    let code = Code::InvalidArgument;
    let (values, malformed) = json::json_values(body);
    if values.is_empty() {
        let message = malformed.unwrap_or_else(|| "json: empty request body".to_string());
        return Err(tonic::Status::new(code, message));
    }
    let input = method.descriptor.input();
    let mut messages = Vec::with_capacity(values.len());
    for value in values {
        match json::message_from_json(&input, value) {
            Ok(message) => messages.push(message),
            Err(error) if messages.is_empty() => return Err(tonic::Status::new(code, error)),
            Err(error) => {
                tracing::debug!(%error, "gateway: ignoring the rest of a request stream");
                break;
            }
        }
        if !method.descriptor.is_client_streaming() {
            break;
        }
    }
    Ok(messages)
}

type Client = tonic::client::Grpc<GrpcService>;

/// A streaming call: the body's messages sent, the responses streamed back one JSON
/// object per line, a failure as grpc-gateway's last `{"error":{...}}` object.
async fn stream(
    mut client: Client,
    method: &GatewayMethod,
    receiver: tokio::sync::mpsc::Receiver<DynamicMessage>,
    metadata: tonic::metadata::MetadataMap,
    connection: Option<ClientConnectionInfo>,
    codec: DynamicCodec,
) -> Response {
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    *request.metadata_mut() = metadata;
    if let Some(connection) = connection {
        request.extensions_mut().insert(connection);
    }
    let mut responses = match client.streaming(request, method.path.clone(), codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return json_response(http_status(status.code()), Body::from(stream_error(&status))),
    };
    let first = match responses.message().await {
        Ok(Some(first)) => result_line(&first),
        Ok(None) => return json_response(StatusCode::OK, Body::empty()),
        Err(status) => return json_response(http_status(status.code()), Body::from(stream_error(&status))),
    };
    // Dropped with the response body when the HTTP client goes away, which ends the call.
    let rest = futures::stream::unfold(Some(responses), |state| async move {
        let mut responses = state?;
        match responses.message().await {
            Ok(Some(message)) => Some((result_line(&message), Some(responses))),
            Ok(None) => None,
            Err(status) => Some((stream_error(&status), None)),
        }
    });
    let lines = futures::stream::once(std::future::ready(first)).chain(rest).map(Ok::<_, Infallible>);
    json_response(StatusCode::OK, Body::from_stream(lines))
}
