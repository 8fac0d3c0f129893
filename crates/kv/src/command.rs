//! [`Command`]: what a Raft log entry carries to the store, and [`Response`]: what
//! applying it answers. Encoded as `raftkvpb.InternalRequest` / `InternalResponse`.

use proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, MemberUpdateRequest, MemberUpdateResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use proto::prost::Message;
use proto::raftkvpb::{self, internal_request, internal_response, InternalRequest, InternalResponse};

use crate::error::Error;

/// Identity of a client request, for exactly-once application of retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The client session; chosen by the client or the server, unique per client.
    pub client_id: u64,
    /// Per-session sequence number; a new request uses the previous one plus one,
    /// a retry reuses the same number.
    pub sequence: u64,
}

/// A state-machine operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// A read through the log (linearizable without ReadIndex).
    Range(RangeRequest),
    /// Write one key.
    Put(PutRequest),
    /// Delete a key or range.
    DeleteRange(DeleteRangeRequest),
    /// Atomic compare-and-execute.
    Txn(TxnRequest),
    /// Drop history below a revision.
    Compaction(CompactionRequest),
    /// Create a lease (the server picks a non-zero id before proposing, as etcd does).
    LeaseGrant(LeaseGrantRequest),
    /// Delete a lease and its keys (also used for expiry).
    LeaseRevoke(LeaseRevokeRequest),
    /// Record leases' remaining TTLs (the leader's `--experimental-enable-lease-checkpoint`).
    LeaseCheckpoint(LeaseCheckpointRequest),
    /// Change a member's peer URLs (etcd's MemberUpdate).
    MemberUpdate(MemberUpdateRequest),
    /// Change the auth store: users, roles, permissions, the enabled flag, tokens
    /// (see [`crate::AuthStore`]).
    Auth(raftkvpb::AuthRequest),
    /// Raise, clear or list alarms (etcd's `Maintenance.Alarm`, see `alarm.rs`).
    Alarm(AlarmRequest),
}

/// Who sent a client request: its permissions are checked again when the command is
/// applied (the auth state may have changed since the receiving member checked them).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthContext {
    /// The authenticated user; empty when auth was off or the client sent no token.
    pub user: String,
}

/// One log entry's command.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Deduplication identity; `None` applies the command every time it appears.
    pub request_id: Option<RequestId>,
    /// What to do.
    pub operation: Operation,
    /// The client's identity for permission checks at apply time; `None` for the
    /// node's own commands (e.g. lease expiry), which are not checked.
    pub auth: Option<AuthContext>,
}

/// A command that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a valid `raftkvpb.InternalRequest`.
    Malformed(String),
    /// The message carries no operation.
    MissingOperation,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(reason) => write!(formatter, "malformed command: {reason}"),
            DecodeError::MissingOperation => formatter.write_str("command has no operation"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Command {
    /// A command without deduplication.
    pub fn new(operation: Operation) -> Command {
        Command { request_id: None, operation, auth: None }
    }

    /// A command deduplicated by `(client_id, sequence)`.
    pub fn with_request_id(operation: Operation, client_id: u64, sequence: u64) -> Command {
        Command { request_id: Some(RequestId { client_id, sequence }), operation, auth: None }
    }

    /// The protobuf form.
    pub fn to_message(&self) -> InternalRequest {
        use internal_request::Operation as Wire;
        let operation = match &self.operation {
            Operation::Range(request) => Wire::Range(request.clone()),
            Operation::Put(request) => Wire::Put(request.clone()),
            Operation::DeleteRange(request) => Wire::DeleteRange(request.clone()),
            Operation::Txn(request) => Wire::Txn(request.clone()),
            Operation::Compaction(request) => Wire::Compaction(*request),
            Operation::LeaseGrant(request) => Wire::LeaseGrant(*request),
            Operation::LeaseRevoke(request) => Wire::LeaseRevoke(*request),
            Operation::LeaseCheckpoint(request) => Wire::LeaseCheckpoint(request.clone()),
            Operation::MemberUpdate(request) => Wire::MemberUpdate(request.clone()),
            Operation::Auth(request) => Wire::Auth(request.clone()),
            Operation::Alarm(request) => Wire::Alarm(*request),
        };
        InternalRequest {
            request_id: self
                .request_id
                .map(|id| raftkvpb::RequestId { client_id: id.client_id, sequence: id.sequence }),
            operation: Some(operation),
            auth_context: self.auth.as_ref().map(|context| raftkvpb::AuthContext { user: context.user.clone() }),
        }
    }

    /// Converts from the protobuf form.
    pub fn from_message(message: InternalRequest) -> Result<Command, DecodeError> {
        use internal_request::Operation as Wire;
        let operation = match message.operation.ok_or(DecodeError::MissingOperation)? {
            Wire::Range(request) => Operation::Range(request),
            Wire::Put(request) => Operation::Put(request),
            Wire::DeleteRange(request) => Operation::DeleteRange(request),
            Wire::Txn(request) => Operation::Txn(request),
            Wire::Compaction(request) => Operation::Compaction(request),
            Wire::LeaseGrant(request) => Operation::LeaseGrant(request),
            Wire::LeaseRevoke(request) => Operation::LeaseRevoke(request),
            Wire::LeaseCheckpoint(request) => Operation::LeaseCheckpoint(request),
            Wire::MemberUpdate(request) => Operation::MemberUpdate(request),
            Wire::Auth(request) => Operation::Auth(request),
            Wire::Alarm(request) => Operation::Alarm(request),
        };
        let request_id = message.request_id.map(|id| RequestId { client_id: id.client_id, sequence: id.sequence });
        let auth = message.auth_context.map(|context| AuthContext { user: context.user });
        Ok(Command { request_id, operation, auth })
    }

    /// Deterministic bytes for a log entry (prost writes fields in tag order).
    pub fn encode(&self) -> Vec<u8> {
        let bytes = self.to_message().encode_to_vec();
        assert!(!bytes.is_empty(), "a command always has an operation");
        bytes
    }

    /// [`Command::encode`] after `prefix_bytes` zero bytes, in one buffer of exactly that
    /// size: the caller fills in the prefix (the server's proposal token) and the buffer
    /// becomes the log entry's data without another copy.
    pub fn encode_after_prefix(&self, prefix_bytes: usize) -> bytes::BytesMut {
        let message = self.to_message();
        let length_bytes = prefix_bytes + message.encoded_len();
        let mut buffer = bytes::BytesMut::with_capacity(length_bytes);
        buffer.resize(prefix_bytes, 0);
        message.encode(&mut buffer).expect("the buffer was sized for the message");
        assert_eq!(buffer.len(), length_bytes, "encoded_len is exact");
        assert!(buffer.len() > prefix_bytes, "a command always has an operation");
        buffer
    }

    /// Parses bytes written by [`Command::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let message = InternalRequest::decode(bytes).map_err(|error| DecodeError::Malformed(error.to_string()))?;
        Command::from_message(message)
    }

    /// [`Command::decode`] from a log entry's shared buffer: the keys and values of puts
    /// are slices of `bytes`, not copies, so the store's history, watch events and the
    /// log share one copy of each value.
    pub fn decode_shared(bytes: bytes::Bytes) -> Result<Command, DecodeError> {
        let message = InternalRequest::decode(bytes).map_err(|error| DecodeError::Malformed(error.to_string()))?;
        Command::from_message(message)
    }

    /// True if the operation can change the store (everything but `Range`).
    pub fn is_write(&self) -> bool {
        !matches!(self.operation, Operation::Range(_))
    }
}

/// The successful answer to a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Answer to [`Operation::Range`].
    Range(RangeResponse),
    /// Answer to [`Operation::Put`].
    Put(PutResponse),
    /// Answer to [`Operation::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// Answer to [`Operation::Txn`].
    Txn(TxnResponse),
    /// Answer to [`Operation::Compaction`].
    Compaction(CompactionResponse),
    /// Answer to [`Operation::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// Answer to [`Operation::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
    /// Answer to [`Operation::LeaseCheckpoint`].
    LeaseCheckpoint(LeaseCheckpointResponse),
    /// Answer to [`Operation::MemberUpdate`].
    MemberUpdate(MemberUpdateResponse),
    /// Answer to [`Operation::Auth`].
    Auth(raftkvpb::AuthResponse),
    /// Answer to [`Operation::Alarm`].
    Alarm(AlarmResponse),
}

/// Converts an apply result to its recorded protobuf form.
pub fn result_to_message(result: &Result<Response, Error>) -> InternalResponse {
    use internal_response::Result as Wire;
    let wire = match result {
        Ok(Response::Range(response)) => Wire::Range(response.clone()),
        Ok(Response::Put(response)) => Wire::Put(response.clone()),
        Ok(Response::DeleteRange(response)) => Wire::DeleteRange(response.clone()),
        Ok(Response::Txn(response)) => Wire::Txn(response.clone()),
        Ok(Response::Compaction(response)) => Wire::Compaction(*response),
        Ok(Response::LeaseGrant(response)) => Wire::LeaseGrant(response.clone()),
        Ok(Response::LeaseRevoke(response)) => Wire::LeaseRevoke(*response),
        Ok(Response::LeaseCheckpoint(response)) => Wire::LeaseCheckpoint(*response),
        Ok(Response::MemberUpdate(response)) => Wire::MemberUpdate(response.clone()),
        Ok(Response::Auth(response)) => Wire::Auth(response.clone()),
        Ok(Response::Alarm(response)) => Wire::Alarm(response.clone()),
        Err(error) => Wire::Error(raftkvpb::RequestError {
            kind: error.kind(),
            grpc_code: error.grpc_code(),
            message: error.message().to_string(),
        }),
    };
    InternalResponse { result: Some(wire) }
}

/// Converts a recorded protobuf response back; `None` if it is malformed.
pub fn result_from_message(message: &InternalResponse) -> Option<Result<Response, Error>> {
    use internal_response::Result as Wire;
    let result = match message.result.as_ref()? {
        Wire::Range(response) => Ok(Response::Range(response.clone())),
        Wire::Put(response) => Ok(Response::Put(response.clone())),
        Wire::DeleteRange(response) => Ok(Response::DeleteRange(response.clone())),
        Wire::Txn(response) => Ok(Response::Txn(response.clone())),
        Wire::Compaction(response) => Ok(Response::Compaction(*response)),
        Wire::LeaseGrant(response) => Ok(Response::LeaseGrant(response.clone())),
        Wire::LeaseRevoke(response) => Ok(Response::LeaseRevoke(*response)),
        Wire::LeaseCheckpoint(response) => Ok(Response::LeaseCheckpoint(*response)),
        Wire::MemberUpdate(response) => Ok(Response::MemberUpdate(response.clone())),
        Wire::Auth(response) => Ok(Response::Auth(response.clone())),
        Wire::Alarm(response) => Ok(Response::Alarm(response.clone())),
        Wire::Error(error) => Err(Error::from_kind(error.kind)?),
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_shared_keeps_values_in_the_entry_buffer() {
        let put = PutRequest { key: b"key".to_vec().into(), value: vec![7; 256].into(), ..PutRequest::default() };
        let entry = bytes::Bytes::from(Command::new(Operation::Put(put)).encode());
        let Ok(Command { operation: Operation::Put(decoded), .. }) = Command::decode_shared(entry.clone()) else {
            panic!("a put decodes as a put");
        };
        assert_eq!(decoded.value, vec![7; 256]);
        assert!(
            entry.as_ptr_range().contains(&decoded.value.as_ptr()),
            "the value is a slice of the entry, not a copy"
        );
        assert!(entry.as_ptr_range().contains(&decoded.key.as_ptr()), "so is the key");
    }

    #[test]
    fn command_round_trips() {
        let put = PutRequest { key: b"k".to_vec().into(), value: b"v".to_vec().into(), ..PutRequest::default() };
        let command = Command::with_request_id(Operation::Put(put), 7, 3);
        let bytes = command.encode();
        assert_eq!(Command::decode(&bytes), Ok(command.clone()));
        assert_eq!(Command::decode_shared(bytes::Bytes::from(bytes.clone())), Ok(command.clone()));
        let prefixed = command.encode_after_prefix(8);
        assert_eq!((&prefixed[..8], &prefixed[8..]), (&[0u8; 8][..], &bytes[..]));
        assert_eq!(bytes, command.encode(), "encoding is deterministic");
        assert_eq!(Command::decode(&[]), Err(DecodeError::MissingOperation));
        assert!(matches!(Command::decode(&[0xff]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn responses_round_trip() {
        let ok: Result<Response, Error> = Ok(Response::Put(PutResponse::default()));
        assert_eq!(result_from_message(&result_to_message(&ok)), Some(ok));
        let failed: Result<Response, Error> = Err(Error::DuplicateKey);
        assert_eq!(result_from_message(&result_to_message(&failed)), Some(failed));
    }
}
