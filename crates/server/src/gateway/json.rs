//! etcd's JSON mapping of its protobuf messages, by reflection over the compiled
//! descriptors ([`proto::FILE_DESCRIPTOR_SET`]).
//!
//! etcd's gateway marshals with grpc-gateway's `JSONPb{OrigName: true}`: field names as in
//! the `.proto` files (`create_revision`, `ID`, `TTL`), `bytes` as standard base64,
//! 64-bit integers as JSON strings, enums by name, fields at their default value left out.
//! Requests are read as proto3 JSON: proto or lowerCamelCase names, 64-bit integers as
//! strings or numbers, enums by name or number; unknown fields are ignored (as etcd does).
//!
//! A message travels between JSON and the gRPC services as a [`DynamicMessage`] encoded
//! in protobuf, so the gateway calls the same services gRPC clients do.

use std::sync::LazyLock;

use bytes::Buf;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions,
};

/// The descriptors of etcd's API, decoded once.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("the proto crate's descriptor set decodes")
});

/// The method `service.method` of etcd's API (`"etcdserverpb.KV"`, `"Range"`).
///
/// Panics if there is none: the gateway's routes name methods of the `.proto` files.
pub fn method(service: &str, method: &str) -> MethodDescriptor {
    let service_descriptor =
        POOL.get_service_by_name(service).unwrap_or_else(|| panic!("no service {service} in the descriptors"));
    let found = service_descriptor.methods().find(|candidate| candidate.name() == method);
    found.unwrap_or_else(|| panic!("no method {service}.{method} in the descriptors"))
}

/// Reads one request of type `descriptor` from a JSON value. The error names the field
/// that could not be read (its path, as `compare[0].target`) and why.
pub fn message_from_json(descriptor: &MessageDescriptor, value: serde_json::Value) -> Result<DynamicMessage, String> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    match DynamicMessage::deserialize_with_options(descriptor.clone(), deserializer, &options) {
        Ok(message) => Ok(message),
        Err(error) => {
            let path = track.path().to_string();
            Err(describe_error(descriptor, &error.to_string(), Some(path)))
        }
    }
}

fn describe_error(descriptor: &MessageDescriptor, error: &str, path: Option<String>) -> String {
    match path.filter(|path| !path.is_empty() && path != ".") {
        Some(path) => format!("json: field \"{path}\" of {}: {error}", descriptor.full_name()),
        None => format!("json: {}: {error}", descriptor.full_name()),
    }
}

/// The JSON values of a request body, in order: one for a unary call, any number for a
/// client stream (`{...}{...}` or one per line). An empty body is one empty object, as
/// in etcd. Stops at the first malformed value, returning its error after the values
/// read before it.
pub fn json_values(body: &[u8]) -> (Vec<serde_json::Value>, Option<String>) {
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    loop {
        match stream.next() {
            Some(Ok(value)) => values.push(value),
            Some(Err(error)) => return (values, Some(format!("json: malformed request body: {error}"))),
            None => break,
        }
    }
    if values.is_empty() {
        values.push(serde_json::Value::Object(serde_json::Map::new()));
    }
    (values, None)
}

/// `message` in etcd's JSON mapping.
pub fn message_to_json(message: &DynamicMessage) -> Vec<u8> {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false);
    let mut output = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut output);
    message.serialize_with_options(&mut serializer, &options).expect("a decoded message serializes to JSON in memory");
    output
}

/// A gRPC codec carrying [`DynamicMessage`]s: requests encoded as they are, responses
/// decoded as `response`.
#[derive(Clone)]
pub struct DynamicCodec {
    response: MessageDescriptor,
}

impl DynamicCodec {
    /// A codec for a method answering `response` messages.
    pub fn new(response: MessageDescriptor) -> DynamicCodec {
        DynamicCodec { response }
    }
}

impl tonic::codec::Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder { response: self.response.clone() }
    }
}

/// Encodes requests of a [`DynamicCodec`].
pub struct DynamicEncoder;

impl tonic::codec::Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn encode(&mut self, item: DynamicMessage, buffer: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buffer.reserve(item.encoded_len());
        item.encode(buffer).map_err(|error| tonic::Status::internal(format!("encoding a request: {error}")))
    }
}

/// Decodes responses of a [`DynamicCodec`].
pub struct DynamicDecoder {
    response: MessageDescriptor,
}

impl tonic::codec::Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<DynamicMessage>, tonic::Status> {
        let bytes = buffer.copy_to_bytes(buffer.remaining());
        DynamicMessage::decode(self.response.clone(), bytes)
            .map(Some)
            .map_err(|error| tonic::Status::internal(format!("decoding a response: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_request() -> MessageDescriptor {
        method("etcdserverpb.KV", "Range").input()
    }

    #[test]
    fn reads_proto_and_camel_case_names_strings_and_enum_names() {
        let value = serde_json::json!({"key": "Zm9v", "range_end": "Zm9w", "limit": "5", "sortOrder": "DESCEND", "keysOnly": true, "bogus": 1});
        let message = message_from_json(&range_request(), value).unwrap();
        let request = proto::etcdserverpb::RangeRequest::decode(message.encode_to_vec().as_slice()).unwrap();
        assert_eq!(request.key, b"foo");
        assert_eq!(request.range_end, b"fop");
        assert_eq!(request.limit, 5);
        assert_eq!(request.sort_order, 2);
        assert!(request.keys_only);
        let numbers = serde_json::json!({"limit": 7, "sort_order": 1});
        let message = message_from_json(&range_request(), numbers).unwrap();
        let request = proto::etcdserverpb::RangeRequest::decode(message.encode_to_vec().as_slice()).unwrap();
        assert_eq!((request.limit, request.sort_order), (7, 1));
    }

    #[test]
    fn names_the_malformed_field() {
        let value = serde_json::json!({"key": "Zm9v", "limit": "many"});
        let error = message_from_json(&range_request(), value).unwrap_err();
        assert!(error.contains("\"limit\""), "{error}");
        assert!(error.contains("etcdserverpb.RangeRequest"), "{error}");
        let (values, error) = json_values(b"{\"key\":");
        assert!(values.is_empty());
        assert!(error.unwrap().contains("malformed request body"));
    }

    #[test]
    fn writes_etcd_json() {
        let response = proto::etcdserverpb::RangeResponse {
            header: Some(proto::etcdserverpb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 0,
            }),
            kvs: vec![proto::mvccpb::KeyValue {
                key: "foo".into(),
                value: "bar".into(),
                version: 1,
                ..Default::default()
            }],
            more: false,
            count: 1,
        };
        let descriptor = method("etcdserverpb.KV", "Range").output();
        let message = DynamicMessage::decode(descriptor, response.encode_to_vec().as_slice()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&message_to_json(&message)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "header": {"cluster_id": "1", "member_id": "2", "revision": "3"},
                "kvs": [{"key": "Zm9v", "value": "YmFy", "version": "1"}],
                "count": "1"
            })
        );
    }

    #[test]
    fn empty_body_is_an_empty_request_and_streams_split() {
        let (values, error) = json_values(b"");
        assert_eq!(values, vec![serde_json::json!({})]);
        assert!(error.is_none());
        let (values, error) = json_values(b"{\"a\":1}\n{\"b\":2} ");
        assert_eq!(values.len(), 2);
        assert!(error.is_none());
    }
}
