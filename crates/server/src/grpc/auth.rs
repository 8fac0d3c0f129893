//! `etcdserverpb.Auth` and the permission check every other service uses.
//!
//! As etcd (with its default `simple` token provider; for `--auth-token jwt` see
//! [`crate::auth_tokens`]):
//!
//! - `Authenticate` checks the password on the member that receives it (after a
//!   ReadIndex barrier), picks a random token and replicates it through the log, so
//!   every member accepts it (see [`crate::auth_tokens`] for its time-to-live);
//! - clients send the token in the gRPC metadata entry `token`; while auth is enabled a
//!   request without one fails with "etcdserver: user name is empty", an unknown or
//!   expired one with "etcdserver: invalid auth token" (`Unauthenticated`);
//! - passwords are hashed with bcrypt (`--bcrypt-cost`, 10 as etcd) on the receiving member
//!   *before* proposing, so the log, snapshots and every replica hold the same hash and
//!   never the password;
//! - permissions are checked on the member that receives a request, before it is
//!   proposed or served, and again when the command is applied (see
//!   `kv::Store::authorize`), so a permission revoked while a request is in flight is
//!   not used.

use std::sync::Arc;
use std::time::Instant;

use kv::{AuthContext, Command, Operation, Response};
use proto::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserGetRequest,
    AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListRequest,
    AuthUserListResponse, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest,
    AuthenticateResponse, ResponseHeader,
};
use proto::raftkvpb::{
    auth_request::Request as Change, auth_response::Response as Answer, AuthRequest, InternalAuthenticateRequest,
};
use rand::distributions::Alphanumeric;
use rand::Rng;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::status::{status_from_kv_error, status_from_server_error};
use crate::auth_tokens::{AuthSettings, TokenActivity, TokenProvider};
use crate::handle::NodeHandle;

/// The gRPC metadata key etcd clients put their token under.
pub const TOKEN_METADATA_KEY: &str = "token";

/// etcd's answer to a JWT issued before the auth store's latest change
/// (`ErrGRPCAuthOldRevision`); etcd's clients authenticate again on it.
pub const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";

/// Characters of a simple token.
const TOKEN_LENGTH: usize = 32;

/// Password hashes and checks (about 50 ms of CPU each) running at once per member;
/// further `Authenticate`, `UserAdd` and `UserChangePassword` calls wait, so a flood of
/// them cannot take every core.
pub const PASSWORD_HASHES_CONCURRENT_MAX: usize = 2;

/// Resolves a request's token to its user and checks its permissions.
#[derive(Clone)]
pub struct Authorizer {
    handle: NodeHandle,
    tokens: Arc<TokenActivity>,
    settings: Arc<AuthSettings>,
}

/// Who a token authenticates.
struct Identity {
    user: String,
    /// The auth revision a JWT was issued at (`None` for simple tokens, always current).
    revision: Option<u64>,
}

impl Authorizer {
    /// An authorizer for `handle` with its own token tracker.
    /// (with the member's [`NodeHandle::auth_settings`]).
    pub fn new(handle: NodeHandle) -> Authorizer {
        let settings = handle.auth_settings();
        let tokens = Arc::new(TokenActivity::new(settings.simple_token_ttl));
        Authorizer::with_tokens(handle, tokens)
    }

    /// An authorizer sharing `tokens` (one tracker per member).
    pub fn with_tokens(handle: NodeHandle, tokens: Arc<TokenActivity>) -> Authorizer {
        let settings = handle.auth_settings();
        Authorizer { handle, tokens, settings }
    }

    /// The user the request runs as: `None` while auth is disabled.
    pub fn user_in(&self, store: &kv::Store, metadata: &MetadataMap) -> Result<Option<String>, Status> {
        Ok(self.identity_in(store, metadata)?.map(|identity| identity.user))
    }

    fn identity_in(&self, store: &kv::Store, metadata: &MetadataMap) -> Result<Option<Identity>, Status> {
        let auth = store.auth();
        if !auth.is_enabled() {
            return Ok(None);
        }
        let Some(token) = metadata.get(TOKEN_METADATA_KEY) else {
            return Err(status_from_kv_error(kv::Error::UserEmpty));
        };
        let invalid = || status_from_kv_error(kv::Error::InvalidAuthToken);
        let token = token.to_str().map_err(|_| invalid())?;
        if let TokenProvider::Jwt(provider) = &self.settings.provider {
            let claims = provider.verify(token).ok_or_else(invalid)?;
            return Ok(Some(Identity { user: claims.username, revision: Some(claims.revision) }));
        }
        let user = auth.user_for_token(token).ok_or_else(invalid)?;
        if !self.tokens.touch(token, Instant::now(), auth) {
            return Err(invalid());
        }
        Ok(Some(Identity { user: user.to_string(), revision: None }))
    }

    /// The bcrypt cost of hashes made on this member.
    pub fn bcrypt_cost(&self) -> u32 {
        self.settings.bcrypt_cost
    }

    /// Checks `identity` may run `operation` in `store`: permissions, and (as etcd's
    /// `isOpPermitted`) for key-value operations a JWT no older than the auth store.
    fn permit(store: &kv::Store, identity: Option<&Identity>, operation: &Operation) -> Result<(), Status> {
        let key_value = matches!(
            operation,
            Operation::Range(_) | Operation::Put(_) | Operation::DeleteRange(_) | Operation::Txn(_)
        );
        if let Some(revision) = identity.and_then(|identity| identity.revision) {
            if key_value && revision < store.auth().revision() {
                return Err(Status::invalid_argument(AUTH_OLD_REVISION));
            }
        }
        store.authorize(identity.map(|identity| identity.user.as_str()), operation).map_err(status_from_kv_error)
    }

    /// The user the request runs as (see [`Authorizer::user_in`]). A token this member
    /// does not know yet may have been issued by another member a moment ago: it is
    /// looked up once more after a ReadIndex barrier before being refused.
    pub async fn user(&self, metadata: &MetadataMap) -> Result<Option<String>, Status> {
        let first = {
            let store = self.handle.read_view();
            self.user_in(&store, metadata)
        };
        match first {
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                self.handle.read_barrier().await.map_err(status_from_server_error)?;
                let store = self.handle.read_view();
                self.user_in(&store, metadata)
            }
            other => other,
        }
    }

    /// Checks that the request may run `operation` on this member's store; returns the
    /// context to attach to the command so it is checked again when applied.
    pub async fn authorize(&self, metadata: &MetadataMap, operation: &Operation) -> Result<AuthContext, Status> {
        {
            // The usual case in one look at the store: auth off, or a token it knows.
            let store = self.handle.read_view();
            match self.identity_in(&store, metadata) {
                Ok(identity) => {
                    Authorizer::permit(&store, identity.as_ref(), operation)?;
                    return Ok(AuthContext { user: identity.map(|identity| identity.user).unwrap_or_default() });
                }
                Err(status) if status.code() != tonic::Code::Unauthenticated => return Err(status),
                Err(_) => {}
            }
        }
        self.handle.read_barrier().await.map_err(status_from_server_error)?;
        let store = self.handle.read_view();
        let identity = self.identity_in(&store, metadata)?;
        Authorizer::permit(&store, identity.as_ref(), operation)?;
        Ok(AuthContext { user: identity.map(|identity| identity.user).unwrap_or_default() })
    }

    /// Allows only root while auth is enabled (etcd's admin-only calls).
    pub async fn require_admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let user = self.user(metadata).await?;
        let store = self.handle.read_view();
        store.auth().check_admin(user.as_deref()).map_err(status_from_kv_error)
    }
}

/// etcd's `Auth` service over a node.
#[derive(Clone)]
pub struct AuthService {
    handle: NodeHandle,
    authorizer: Authorizer,
    hashing: Arc<tokio::sync::Semaphore>,
}

impl AuthService {
    /// A service for `handle`, resolving tokens with `authorizer`.
    pub fn new(handle: NodeHandle, authorizer: Authorizer) -> AuthService {
        let hashing = Arc::new(tokio::sync::Semaphore::new(PASSWORD_HASHES_CONCURRENT_MAX));
        AuthService { handle, authorizer, hashing }
    }

    fn header(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        Some(self.handle.header(header.map_or(0, |header| header.revision)))
    }

    /// Checks and replicates one auth change; returns the applied answer.
    async fn change(&self, metadata: &MetadataMap, change: Change) -> Result<Answer, Status> {
        let operation = Operation::Auth(AuthRequest { request: Some(change) });
        let context = self.authorizer.authorize(metadata, &operation).await?;
        self.replicate(Command { request_id: None, operation, auth: Some(context) }).await
    }

    async fn replicate(&self, command: Command) -> Result<Answer, Status> {
        match self.handle.write(command).await.map_err(status_from_server_error)? {
            Response::Auth(response) => response.response.ok_or_else(|| Status::internal("raftkv: empty auth answer")),
            other => Err(Status::internal(format!("raftkv: unexpected state machine answer {other:?}"))),
        }
    }

    /// A linearizable look at the auth store for `metadata`'s user, which `allowed`
    /// (given the auth store and the user) must accept.
    async fn read<T>(
        &self,
        metadata: &MetadataMap,
        read: impl FnOnce(&kv::AuthStore, Option<&str>) -> Result<T, kv::Error>,
    ) -> Result<(T, Option<ResponseHeader>), Status> {
        self.handle.read_barrier().await.map_err(status_from_server_error)?;
        let store = self.handle.read_view();
        let user = self.authorizer.user_in(&store, metadata)?;
        let value = read(store.auth(), user.as_deref()).map_err(status_from_kv_error)?;
        Ok((value, Some(self.handle.header(store.current_revision()))))
    }
}

/// Hashes a password with bcrypt off the async threads, at most
/// [`PASSWORD_HASHES_CONCURRENT_MAX`] at once.
async fn hash_password(hashing: &tokio::sync::Semaphore, password: String, cost: u32) -> Result<String, Status> {
    let _permit = hashing.acquire().await.map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
    let hashed = tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|error| Status::internal(format!("raftkv: password hashing stopped: {error}")))?;
    hashed.map_err(|error| Status::internal(format!("raftkv: password hashing failed: {error}")))
}

/// True if `password` matches the bcrypt `hash` (false for a malformed hash), at most
/// [`PASSWORD_HASHES_CONCURRENT_MAX`] checks at once.
async fn password_matches(hashing: &tokio::sync::Semaphore, password: String, hash: Vec<u8>) -> bool {
    let Ok(_permit) = hashing.acquire().await else { return false };
    let checked = tokio::task::spawn_blocking(move || {
        let hash = String::from_utf8(hash).ok()?;
        bcrypt::verify(password, &hash).ok()
    })
    .await;
    matches!(checked, Ok(Some(true)))
}

fn random_token() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(TOKEN_LENGTH).map(char::from).collect()
}

fn unexpected(answer: &Answer) -> Status {
    Status::internal(format!("raftkv: unexpected auth answer {answer:?}"))
}

/// Replicates `$request` as `Change::$variant` and answers `Answer::$variant`.
macro_rules! change_call {
    ($service:expr, $request:expr, $variant:ident) => {{
        let (metadata, _, request) = $request.into_parts();
        match $service.change(&metadata, Change::$variant(request)).await? {
            Answer::$variant(mut response) => {
                response.header = $service.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<tonic::Response<AuthEnableResponse>, Status> {
        change_call!(self, request, Enable)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<tonic::Response<AuthDisableResponse>, Status> {
        change_call!(self, request, Disable)
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<tonic::Response<AuthStatusResponse>, Status> {
        self.handle.read_barrier().await.map_err(status_from_server_error)?;
        let _ = request;
        let store = self.handle.read_view();
        let header = Some(self.handle.header(store.current_revision()));
        let auth = store.auth();
        Ok(tonic::Response::new(AuthStatusResponse {
            header,
            enabled: auth.is_enabled(),
            auth_revision: auth.revision(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<tonic::Response<AuthenticateResponse>, Status> {
        let request = request.into_inner();
        self.handle.read_barrier().await.map_err(status_from_server_error)?;
        let (password_hash, auth_revision) = {
            let store = self.handle.read_view();
            let auth = store.auth();
            if !auth.is_enabled() {
                return Err(status_from_kv_error(kv::Error::AuthNotEnabled));
            }
            let user = auth.user(&request.name).filter(|user| !user.options.is_some_and(|options| options.no_password));
            let hash =
                user.map(|user| user.password.clone()).ok_or_else(|| status_from_kv_error(kv::Error::AuthFailed))?;
            (hash, auth.revision())
        };
        if !password_matches(&self.hashing, request.password, password_hash.clone()).await {
            return Err(status_from_kv_error(kv::Error::AuthFailed));
        }
        if let TokenProvider::Jwt(provider) = &self.authorizer.settings.provider {
            // Signed here, at the auth revision the password was checked at: a later
            // change makes the token old (refused for key-value requests).
            let token =
                provider.assign(&request.name, auth_revision).map_err(|error| Status::unknown(error.to_string()))?;
            let revision = self.handle.read_view().current_revision();
            return Ok(tonic::Response::new(AuthenticateResponse {
                header: Some(self.handle.header(revision)),
                token,
            }));
        }
        let authenticate =
            InternalAuthenticateRequest { name: request.name, simple_token: random_token(), password_hash };
        // Needs no user: the password was the credential.
        let operation = Operation::Auth(AuthRequest { request: Some(Change::Authenticate(authenticate)) });
        match self.replicate(Command::new(operation)).await? {
            Answer::Authenticate(mut response) => {
                response.header = self.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<tonic::Response<AuthUserAddResponse>, Status> {
        let (metadata, extensions, mut add) = request.into_parts();
        let no_password = add.options.is_some_and(|options| options.no_password);
        let password = std::mem::take(&mut add.password);
        if no_password {
            add.hashed_password.clear();
        } else if add.hashed_password.is_empty() {
            add.hashed_password = hash_password(&self.hashing, password, self.authorizer.bcrypt_cost()).await?;
        }
        change_call!(self, Request::from_parts(metadata, extensions, add), UserAdd)
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<tonic::Response<AuthUserGetResponse>, Status> {
        let (metadata, _, get) = request.into_parts();
        let (roles, header) = self
            .read(&metadata, |auth, user| {
                if user != Some(get.name.as_str()) {
                    auth.check_admin(user)?;
                }
                auth.user(&get.name).map(|found| found.roles.clone()).ok_or(kv::Error::UserNotFound)
            })
            .await?;
        Ok(tonic::Response::new(AuthUserGetResponse { header, roles }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<tonic::Response<AuthUserListResponse>, Status> {
        let (users, header) = self
            .read(request.metadata(), |auth, user| {
                auth.check_admin(user)?;
                Ok(auth.users().map(|found| String::from_utf8_lossy(&found.name).into_owned()).collect())
            })
            .await?;
        Ok(tonic::Response::new(AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<tonic::Response<AuthUserDeleteResponse>, Status> {
        change_call!(self, request, UserDelete)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<tonic::Response<AuthUserChangePasswordResponse>, Status> {
        let (metadata, extensions, mut change) = request.into_parts();
        let password = std::mem::take(&mut change.password);
        if change.hashed_password.is_empty() {
            change.hashed_password = hash_password(&self.hashing, password, self.authorizer.bcrypt_cost()).await?;
        }
        change_call!(self, Request::from_parts(metadata, extensions, change), UserChangePassword)
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<tonic::Response<AuthUserGrantRoleResponse>, Status> {
        change_call!(self, request, UserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<tonic::Response<AuthUserRevokeRoleResponse>, Status> {
        change_call!(self, request, UserRevokeRole)
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<tonic::Response<AuthRoleAddResponse>, Status> {
        change_call!(self, request, RoleAdd)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<tonic::Response<AuthRoleGetResponse>, Status> {
        let (metadata, _, get) = request.into_parts();
        let (perm, header) = self
            .read(&metadata, |auth, user| {
                let holds_role =
                    user.and_then(|name| auth.user(name)).is_some_and(|found| found.roles.contains(&get.role));
                if !holds_role {
                    auth.check_admin(user)?;
                }
                auth.role(&get.role).map(|role| role.key_permission.clone()).ok_or(kv::Error::RoleNotFound)
            })
            .await?;
        Ok(tonic::Response::new(AuthRoleGetResponse { header, perm }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<tonic::Response<AuthRoleListResponse>, Status> {
        let (roles, header) = self
            .read(request.metadata(), |auth, user| {
                auth.check_admin(user)?;
                Ok(auth.roles().map(|role| String::from_utf8_lossy(&role.name).into_owned()).collect())
            })
            .await?;
        Ok(tonic::Response::new(AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<tonic::Response<AuthRoleDeleteResponse>, Status> {
        change_call!(self, request, RoleDelete)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<tonic::Response<AuthRoleGrantPermissionResponse>, Status> {
        change_call!(self, request, RoleGrantPermission)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<tonic::Response<AuthRoleRevokePermissionResponse>, Status> {
        change_call!(self, request, RoleRevokePermission)
    }
}

/// A request to forward to another member, carrying the client's token (the member
/// that decides checks the permission again).
pub fn with_token<T>(message: T, metadata: &MetadataMap) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = metadata.get(TOKEN_METADATA_KEY) {
        request.metadata_mut().insert(TOKEN_METADATA_KEY, token.clone());
    }
    request
}

/// The request id a command is deduplicated under: with a user, the client's id is
/// mixed with the user name, so one user's retries never meet another user's recorded
/// answers (exactly-once sessions are per user while auth is on).
pub fn scoped_request_id(id: Option<kv::RequestId>, context: &AuthContext) -> Option<kv::RequestId> {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let id = id?;
    if context.user.is_empty() {
        return Some(id);
    }
    let bytes = context.user.bytes().chain([0]).chain(id.client_id.to_le_bytes());
    let mut mixed = bytes.fold(FNV_OFFSET_BASIS, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME));
    // splitmix64's finalizer spreads every input bit over the whole id.
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^= mixed >> 31;
    Some(kv::RequestId { client_id: mixed.max(1), sequence: id.sequence })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_scoped_per_user() {
        let id = Some(kv::RequestId { client_id: 7, sequence: 3 });
        let context = |user: &str| AuthContext { user: user.into() };
        assert_eq!(scoped_request_id(id, &context("")), id, "without auth ids are the client's");
        let alice = scoped_request_id(id, &context("alice")).expect("an id");
        let bob = scoped_request_id(id, &context("bob")).expect("an id");
        assert_ne!(alice.client_id, bob.client_id);
        assert_eq!((alice.sequence, bob.sequence), (3, 3));
        assert_eq!(scoped_request_id(id, &context("alice")), Some(alice), "deterministic");
        assert_eq!(scoped_request_id(None, &context("alice")), None);
    }
}
