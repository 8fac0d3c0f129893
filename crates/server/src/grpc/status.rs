//! etcd's gRPC status for each error (code and message), so etcd's clients recognise them.

use tonic::{Code, Status};

use crate::handle::ServerError;

/// The status etcd answers for a state-machine error: its code and exact message
/// (e.g. `OutOfRange` "etcdserver: mvcc: required revision has been compacted").
pub fn status_from_kv_error(error: kv::Error) -> Status {
    let code = i32::try_from(error.grpc_code()).map(Code::from_i32).unwrap_or(Code::Unknown);
    Status::new(code, error.message())
}

/// The status etcd answers for a node error. Messages are etcd's, so clients that match
/// on them (e.g. to retry on "etcdserver: leader changed") behave as against etcd.
pub fn status_from_server_error(error: ServerError) -> Status {
    match error {
        ServerError::NoLeader | ServerError::LeaderChanged | ServerError::Timeout | ServerError::Stopped => {
            Status::unavailable(error.to_string())
        }
        ServerError::TooManyRequests | ServerError::DiskFull => Status::resource_exhausted(error.to_string()),
        ServerError::RequestTooLarge => Status::invalid_argument(error.to_string()),
        ServerError::Kv(kv_error) => status_from_kv_error(kv_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_etcd() {
        let cases = [
            (ServerError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (ServerError::LeaderChanged, Code::Unavailable, "etcdserver: leader changed"),
            (ServerError::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (ServerError::Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (ServerError::TooManyRequests, Code::ResourceExhausted, "etcdserver: too many requests"),
            (ServerError::DiskFull, Code::ResourceExhausted, "etcdserver: no space left on device"),
            (ServerError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (
                ServerError::Kv(kv::Error::Compacted),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                ServerError::Kv(kv::Error::FutureRevision),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                ServerError::Kv(kv::Error::TooManyOperations),
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                ServerError::Kv(kv::Error::DuplicateKey),
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (ServerError::Kv(kv::Error::EmptyKey), Code::InvalidArgument, "etcdserver: key is not provided"),
            (ServerError::Kv(kv::Error::LeaseNotFound), Code::NotFound, "etcdserver: requested lease not found"),
        ];
        for (error, code, message) in cases {
            let status = status_from_server_error(error.clone());
            assert_eq!((status.code(), status.message()), (code, message), "{error:?}");
        }
    }
}
