//! Errors a command can fail with, with etcd's messages and gRPC codes.

use std::fmt;

/// gRPC status codes used by etcd for key-value errors (values of `tonic::Code`).
pub mod grpc_code {
    /// `INVALID_ARGUMENT`.
    pub const INVALID_ARGUMENT: u32 = 3;
    /// `NOT_FOUND`.
    pub const NOT_FOUND: u32 = 5;
    /// `FAILED_PRECONDITION`.
    pub const FAILED_PRECONDITION: u32 = 9;
    /// `OUT_OF_RANGE`.
    pub const OUT_OF_RANGE: u32 = 11;
    /// `PERMISSION_DENIED`.
    pub const PERMISSION_DENIED: u32 = 7;
    /// `UNAUTHENTICATED`.
    pub const UNAUTHENTICATED: u32 = 16;
    /// `RESOURCE_EXHAUSTED`.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// `DATA_LOSS`.
    pub const DATA_LOSS: u32 = 15;
}

/// A request the state machine refuses. Deterministic: every replica refuses the
/// same command with the same error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The key is empty.
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    ValueProvided,
    /// `ignore_lease` together with a non-zero lease.
    LeaseProvided,
    /// A transaction has more compares or operations than allowed.
    TooManyOperations,
    /// A transaction writes the same key more than once.
    DuplicateKey,
    /// The requested revision was compacted away.
    Compacted,
    /// The requested revision is greater than the store's revision.
    FutureRevision,
    /// The lease does not exist.
    LeaseNotFound,
    /// A lease with this id already exists.
    LeaseExists,
    /// The requested lease TTL is larger than etcd allows.
    LeaseTimeToLiveTooLarge,
    /// A retried request older than the client's last answered one (already answered).
    StaleRequest,
    /// Auth: `Authenticate` while auth is disabled.
    AuthNotEnabled,
    /// Auth: enabling without a user `root`.
    RootUserNotExist,
    /// Auth: enabling while the user `root` lacks the role `root`.
    RootRoleNotExist,
    /// Auth: the user already exists.
    UserAlreadyExist,
    /// Auth: no user name (auth is on and the request carries no token, or an empty name).
    UserEmpty,
    /// Auth: no such user.
    UserNotFound,
    /// Auth: the role already exists.
    RoleAlreadyExist,
    /// Auth: no such role.
    RoleNotFound,
    /// Auth: empty role name.
    RoleEmpty,
    /// Auth: wrong user name or password.
    AuthFailed,
    /// Auth: the user lacks the permission.
    PermissionDenied,
    /// Auth: revoking a role the user does not hold.
    RoleNotGranted,
    /// Auth: revoking a permission the role does not hold.
    PermissionNotGranted,
    /// Auth: unknown or expired token.
    InvalidAuthToken,
    /// Auth: a change that would lock everybody out (e.g. deleting root while enabled).
    InvalidAuthManagement,
    /// The NOSPACE alarm is raised: writes that grow the store are refused.
    NoSpace,
    /// The CORRUPT alarm is raised: writes are refused.
    Corrupt,
}

impl Error {
    /// Every error kind, in [`Error::kind`] order.
    pub const ALL: [Error; 29] = [
        Error::EmptyKey,
        Error::KeyNotFound,
        Error::ValueProvided,
        Error::LeaseProvided,
        Error::TooManyOperations,
        Error::DuplicateKey,
        Error::Compacted,
        Error::FutureRevision,
        Error::LeaseNotFound,
        Error::LeaseExists,
        Error::LeaseTimeToLiveTooLarge,
        Error::StaleRequest,
        Error::AuthNotEnabled,
        Error::RootUserNotExist,
        Error::RootRoleNotExist,
        Error::UserAlreadyExist,
        Error::UserEmpty,
        Error::UserNotFound,
        Error::RoleAlreadyExist,
        Error::RoleNotFound,
        Error::RoleEmpty,
        Error::AuthFailed,
        Error::PermissionDenied,
        Error::RoleNotGranted,
        Error::PermissionNotGranted,
        Error::InvalidAuthToken,
        Error::InvalidAuthManagement,
        Error::NoSpace,
        Error::Corrupt,
    ];

    /// The message etcd sends for this error (clients match on it).
    pub fn message(self) -> &'static str {
        match self {
            Error::EmptyKey => "etcdserver: key is not provided",
            Error::KeyNotFound => "etcdserver: key not found",
            Error::ValueProvided => "etcdserver: value is provided",
            Error::LeaseProvided => "etcdserver: lease is provided",
            Error::TooManyOperations => "etcdserver: too many operations in txn request",
            Error::DuplicateKey => "etcdserver: duplicate key given in txn request",
            Error::Compacted => "etcdserver: mvcc: required revision has been compacted",
            Error::FutureRevision => "etcdserver: mvcc: required revision is a future revision",
            Error::LeaseNotFound => "etcdserver: requested lease not found",
            Error::LeaseExists => "etcdserver: lease already exists",
            Error::LeaseTimeToLiveTooLarge => "etcdserver: too large lease TTL",
            Error::StaleRequest => "raftkv: request sequence already answered (stale retry)",
            Error::AuthNotEnabled => "etcdserver: authentication is not enabled",
            Error::RootUserNotExist => "etcdserver: root user does not exist",
            Error::RootRoleNotExist => "etcdserver: root user does not have root role",
            Error::UserAlreadyExist => "etcdserver: user name already exists",
            Error::UserEmpty => "etcdserver: user name is empty",
            Error::UserNotFound => "etcdserver: user name not found",
            Error::RoleAlreadyExist => "etcdserver: role name already exists",
            Error::RoleNotFound => "etcdserver: role name not found",
            Error::RoleEmpty => "etcdserver: role name is empty",
            Error::AuthFailed => "etcdserver: authentication failed, invalid user ID or password",
            Error::PermissionDenied => "etcdserver: permission denied",
            Error::RoleNotGranted => "etcdserver: role is not granted to the user",
            Error::PermissionNotGranted => "etcdserver: permission is not granted to the role",
            Error::InvalidAuthToken => "etcdserver: invalid auth token",
            Error::InvalidAuthManagement => "etcdserver: invalid auth management",
            Error::NoSpace => "etcdserver: mvcc: database space exceeded",
            Error::Corrupt => "etcdserver: corrupt cluster",
        }
    }

    /// The gRPC status code etcd uses for this error (a `tonic::Code` value).
    pub fn grpc_code(self) -> u32 {
        match self {
            Error::Compacted | Error::FutureRevision | Error::LeaseTimeToLiveTooLarge => grpc_code::OUT_OF_RANGE,
            Error::LeaseNotFound => grpc_code::NOT_FOUND,
            Error::LeaseExists | Error::StaleRequest => grpc_code::FAILED_PRECONDITION,
            Error::AuthNotEnabled
            | Error::RootUserNotExist
            | Error::RootRoleNotExist
            | Error::UserAlreadyExist
            | Error::UserNotFound
            | Error::RoleAlreadyExist
            | Error::RoleNotFound
            | Error::RoleNotGranted
            | Error::PermissionNotGranted => grpc_code::FAILED_PRECONDITION,
            Error::PermissionDenied => grpc_code::PERMISSION_DENIED,
            Error::InvalidAuthToken => grpc_code::UNAUTHENTICATED,
            Error::NoSpace => grpc_code::RESOURCE_EXHAUSTED,
            Error::Corrupt => grpc_code::DATA_LOSS,
            _ => grpc_code::INVALID_ARGUMENT,
        }
    }

    /// Stable numeric kind, stored in recorded responses and snapshots.
    pub fn kind(self) -> u32 {
        let position = Error::ALL.iter().position(|error| *error == self);
        let position = position.expect("every error is listed in Error::ALL");
        u32::try_from(position).expect("few error kinds") + 1
    }

    /// The error with this [`Error::kind`], if any.
    pub fn from_kind(kind: u32) -> Option<Error> {
        let index = usize::try_from(kind).ok()?.checked_sub(1)?;
        Error::ALL.get(index).copied()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for error in Error::ALL {
            assert_eq!(Error::from_kind(error.kind()), Some(error));
        }
        assert_eq!(Error::from_kind(0), None);
        assert_eq!(Error::from_kind(99), None);
    }
}
