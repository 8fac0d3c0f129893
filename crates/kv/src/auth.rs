//! The replicated auth store: etcd's users, roles, key-range permissions, enabled
//! flag, auth revision and simple tokens.
//!
//! Changes arrive as [`Operation::Auth`](crate::Operation::Auth) commands through the
//! log, so every replica holds the same users and roles at the same log index. As in
//! etcd:
//!
//! - every change of users, roles, permissions or the enabled flag raises the auth
//!   revision by one;
//! - passwords are stored as the hashes the receiving member computed before proposing
//!   (this crate never sees a password);
//! - enabling needs a user `root` that holds the role `root`; the role `root` may be
//!   granted without being created and grants every permission;
//! - while auth is enabled the user `root` cannot be deleted, nor lose the role `root`,
//!   and the role `root` cannot be deleted;
//! - a permission covers `key` alone (empty `range_end`), `[key, range_end)`, or every
//!   key from `key` on (`range_end` = `"\0"`); a request is allowed when the union of
//!   the user's permissions of the right type covers its whole range; `READWRITE`
//!   counts as both;
//! - simple tokens from `Authenticate` are kept in memory only (not in snapshots); a
//!   user's tokens die when the user is deleted or changes password, all tokens when
//!   auth is disabled. Their time-to-live is the server's business (no clock here).

use std::collections::BTreeMap;

use proto::authpb::{permission::Type as PermissionType, Permission, Role, User};
use proto::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse, AuthRoleRevokePermissionResponse, AuthUserAddResponse, AuthUserDeleteResponse,
    AuthUserGrantRoleResponse, AuthUserRevokeRoleResponse, AuthenticateResponse, ResponseHeader,
};
use proto::etcdserverpb::{AuthUserChangePasswordResponse, AuthUserGrantRoleRequest};
use proto::raftkvpb::{auth_request::Request as Change, auth_response::Response as Answer, AuthRequest, AuthResponse};

use crate::error::Error;

/// The user that may enable auth and do everything.
pub const ROOT_USER: &str = "root";
/// The role that grants every permission.
pub const ROOT_ROLE: &str = "root";
/// Most simple tokens remembered; the oldest is forgotten first (deterministically).
pub const SIMPLE_TOKENS_MAX: usize = 16_384;

/// What a request does with a key range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads keys (Range, compares, watches, `prev_kv`).
    Read,
    /// Changes keys (Put, DeleteRange, lease revoke).
    Write,
}

/// A simple token: who it authenticates and the log index that issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TokenRecord {
    user: String,
    index: u64,
}

/// Users, roles, permissions, the enabled flag, the auth revision and simple tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthStore {
    pub(crate) enabled: bool,
    pub(crate) revision: u64,
    /// Users by name; `password` holds the hash, `roles` are sorted.
    pub(crate) users: BTreeMap<String, User>,
    /// Roles by name; permissions sorted by (key, range_end).
    pub(crate) roles: BTreeMap<String, Role>,
    tokens: BTreeMap<String, TokenRecord>,
    tokens_by_index: BTreeMap<u64, String>,
}

/// `[start, end)` over keys; `end` `None` is "every key from `start` on".
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// etcd's meaning of a `(key, range_end)` pair; a single key `k` is `[k, k\0)`.
    fn new(key: &[u8], range_end: &[u8]) -> Interval {
        match range_end {
            [] => {
                let mut end = key.to_vec();
                end.push(0);
                Interval { start: key.to_vec(), end: Some(end) }
            }
            [0] => Interval { start: key.to_vec(), end: None },
            // A reversed or empty range selects no key; check its start key alone.
            end if end <= key => Interval::new(key, &[]),
            end => Interval { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }
}

/// True if the union of `granted` covers all of `wanted`.
fn covers(mut granted: Vec<Interval>, wanted: &Interval) -> bool {
    granted.sort_by(|left, right| left.start.cmp(&right.start));
    let mut covered_until = wanted.start.clone();
    for interval in granted {
        if interval.start > covered_until {
            return false;
        }
        match interval.end {
            None => return true,
            Some(end) if end > covered_until => covered_until = end,
            Some(_) => {}
        }
        if wanted.end.as_ref().is_some_and(|end| covered_until >= *end) {
            return true;
        }
    }
    false
}

fn grants(permission: &Permission, access: Access) -> bool {
    match PermissionType::try_from(permission.perm_type) {
        Ok(PermissionType::Readwrite) => true,
        Ok(PermissionType::Read) => access == Access::Read,
        Ok(PermissionType::Write) => access == Access::Write,
        Err(_) => false,
    }
}

fn header() -> Option<ResponseHeader> {
    Some(ResponseHeader::default())
}

impl AuthStore {
    /// True once `AuthEnable` was applied (and no `AuthDisable` since).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: raised by one by every change of users, roles or the flag.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A user (its `password` field holds the password hash).
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user, sorted by name.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// A role and its permissions. The role `root` may be granted without existing.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every role, sorted by name.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// The user a simple token authenticates, if the token is known here.
    pub fn user_for_token(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(|record| record.user.as_str())
    }

    /// Number of simple tokens remembered.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// True if `user` exists and holds the role `root`.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|record| record.roles.iter().any(|role| role == ROOT_ROLE))
    }

    /// The user a request runs as, or etcd's error when auth is on and it has none.
    fn known_user<'a>(&self, user: Option<&'a str>) -> Result<&'a str, Error> {
        let user = user.filter(|name| !name.is_empty()).ok_or(Error::UserEmpty)?;
        if self.users.contains_key(user) {
            Ok(user)
        } else {
            Err(Error::UserNotFound)
        }
    }

    /// Allows `user` admin operations: always when auth is off, else only root.
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let user = self.known_user(user)?;
        if self.is_root(user) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// Allows `user` to read or write the keys of `(key, range_end)` (etcd's range
    /// rules): always when auth is off or for root, else when the user's roles cover
    /// the whole range.
    pub fn check_range(&self, user: Option<&str>, key: &[u8], range_end: &[u8], access: Access) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let user = self.known_user(user)?;
        if self.is_root(user) {
            return Ok(());
        }
        let record = self.users.get(user).ok_or(Error::UserNotFound)?;
        let granted: Vec<Interval> = record
            .roles
            .iter()
            .filter_map(|role| self.roles.get(role))
            .flat_map(|role| role.key_permission.iter())
            .filter(|permission| grants(permission, access))
            .map(|permission| Interval::new(&permission.key, &permission.range_end))
            .collect();
        if covers(granted, &Interval::new(key, range_end)) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// Applies one change (authorization was checked by the caller) at log `index`.
    pub(crate) fn apply(&mut self, index: u64, request: &AuthRequest) -> Result<AuthResponse, Error> {
        let change = request.request.as_ref().ok_or(Error::InvalidAuthManagement)?;
        let answer = match change {
            Change::Enable(_) => self.enable().map(|()| Answer::Enable(AuthEnableResponse { header: header() }))?,
            Change::Disable(_) => {
                self.disable();
                Answer::Disable(AuthDisableResponse { header: header() })
            }
            Change::Authenticate(request) => {
                self.authenticate(index, &request.name, &request.simple_token, &request.password_hash)?;
                let token = request.simple_token.clone();
                Answer::Authenticate(AuthenticateResponse { header: header(), token })
            }
            Change::UserAdd(request) => {
                self.user_add(&request.name, request.hashed_password.as_bytes(), request.options)?;
                Answer::UserAdd(AuthUserAddResponse { header: header() })
            }
            Change::UserDelete(request) => {
                self.user_delete(&request.name)?;
                Answer::UserDelete(AuthUserDeleteResponse { header: header() })
            }
            Change::UserChangePassword(request) => {
                self.user_change_password(&request.name, request.hashed_password.as_bytes())?;
                Answer::UserChangePassword(AuthUserChangePasswordResponse { header: header() })
            }
            Change::UserGrantRole(request) => {
                self.user_grant_role(request)?;
                Answer::UserGrantRole(AuthUserGrantRoleResponse { header: header() })
            }
            Change::UserRevokeRole(request) => {
                self.user_revoke_role(&request.name, &request.role)?;
                Answer::UserRevokeRole(AuthUserRevokeRoleResponse { header: header() })
            }
            other => self.apply_role_change(other)?,
        };
        Ok(AuthResponse { response: Some(answer) })
    }

    fn apply_role_change(&mut self, change: &Change) -> Result<Answer, Error> {
        let answer = match change {
            Change::RoleAdd(request) => {
                self.role_add(&request.name)?;
                Answer::RoleAdd(AuthRoleAddResponse { header: header() })
            }
            Change::RoleDelete(request) => {
                self.role_delete(&request.role)?;
                Answer::RoleDelete(AuthRoleDeleteResponse { header: header() })
            }
            Change::RoleGrantPermission(request) => {
                let permission = request.perm.clone().ok_or(Error::InvalidAuthManagement)?;
                self.role_grant_permission(&request.name, permission)?;
                Answer::RoleGrantPermission(AuthRoleGrantPermissionResponse { header: header() })
            }
            Change::RoleRevokePermission(request) => {
                self.role_revoke_permission(&request.role, &request.key, &request.range_end)?;
                Answer::RoleRevokePermission(AuthRoleRevokePermissionResponse { header: header() })
            }
            _ => return Err(Error::InvalidAuthManagement),
        };
        Ok(answer)
    }

    fn changed(&mut self) {
        self.revision += 1;
    }

    fn enable(&mut self) -> Result<(), Error> {
        if self.enabled {
            return Ok(());
        }
        if !self.users.contains_key(ROOT_USER) {
            return Err(Error::RootUserNotExist);
        }
        if !self.is_root(ROOT_USER) {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        self.changed();
        Ok(())
    }

    fn disable(&mut self) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        self.tokens.clear();
        self.tokens_by_index.clear();
        self.changed();
    }

    fn authenticate(&mut self, index: u64, name: &str, token: &str, password_hash: &[u8]) -> Result<(), Error> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(Error::AuthFailed)?;
        let no_password = user.options.is_some_and(|options| options.no_password);
        if no_password || user.password.as_slice() != password_hash || token.is_empty() {
            return Err(Error::AuthFailed);
        }
        if self.tokens.contains_key(token) {
            return Err(Error::InvalidAuthManagement);
        }
        self.tokens.insert(token.to_string(), TokenRecord { user: name.to_string(), index });
        self.tokens_by_index.insert(index, token.to_string());
        while self.tokens.len() > SIMPLE_TOKENS_MAX {
            let (_, oldest) = self.tokens_by_index.pop_first().expect("tokens are indexed");
            self.tokens.remove(&oldest);
        }
        assert_eq!(self.tokens.len(), self.tokens_by_index.len(), "every token is indexed once");
        Ok(())
    }

    fn forget_tokens_of(&mut self, user: &str) {
        self.tokens.retain(|_, record| record.user != user);
        let tokens = &self.tokens;
        self.tokens_by_index.retain(|_, token| tokens.contains_key(token));
    }

    fn user_add(
        &mut self,
        name: &str,
        password_hash: &[u8],
        options: Option<proto::authpb::UserAddOptions>,
    ) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(Error::UserAlreadyExist);
        }
        let user =
            User { name: name.as_bytes().to_vec(), password: password_hash.to_vec(), roles: Vec::new(), options };
        self.users.insert(name.to_string(), user);
        self.changed();
        Ok(())
    }

    fn user_delete(&mut self, name: &str) -> Result<(), Error> {
        if self.enabled && name == ROOT_USER {
            return Err(Error::InvalidAuthManagement);
        }
        self.users.remove(name).ok_or(Error::UserNotFound)?;
        self.forget_tokens_of(name);
        self.changed();
        Ok(())
    }

    fn user_change_password(&mut self, name: &str, password_hash: &[u8]) -> Result<(), Error> {
        let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
        user.password = password_hash.to_vec();
        self.forget_tokens_of(name);
        self.changed();
        Ok(())
    }

    fn user_grant_role(&mut self, request: &AuthUserGrantRoleRequest) -> Result<(), Error> {
        if !self.users.contains_key(&request.user) {
            return Err(Error::UserNotFound);
        }
        if request.role != ROOT_ROLE && !self.roles.contains_key(&request.role) {
            return Err(Error::RoleNotFound);
        }
        let user = self.users.get_mut(&request.user).expect("checked above");
        match user.roles.binary_search(&request.role) {
            Ok(_) => return Ok(()), // etcd ignores a repeated grant
            Err(position) => user.roles.insert(position, request.role.clone()),
        }
        self.changed();
        Ok(())
    }

    fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<(), Error> {
        if self.enabled && name == ROOT_USER && role == ROOT_ROLE {
            return Err(Error::InvalidAuthManagement);
        }
        let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
        let position = user.roles.iter().position(|held| held == role).ok_or(Error::RoleNotGranted)?;
        user.roles.remove(position);
        self.changed();
        Ok(())
    }

    fn role_add(&mut self, name: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(Error::RoleAlreadyExist);
        }
        self.roles.insert(name.to_string(), Role { name: name.as_bytes().to_vec(), key_permission: Vec::new() });
        self.changed();
        Ok(())
    }

    fn role_delete(&mut self, name: &str) -> Result<(), Error> {
        if self.enabled && name == ROOT_ROLE {
            return Err(Error::InvalidAuthManagement);
        }
        self.roles.remove(name).ok_or(Error::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.retain(|held| held != name);
        }
        self.changed();
        Ok(())
    }

    fn role_grant_permission(&mut self, name: &str, permission: Permission) -> Result<(), Error> {
        let role = self.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let position = role
            .key_permission
            .binary_search_by(|held| (&held.key, &held.range_end).cmp(&(&permission.key, &permission.range_end)));
        match position {
            Ok(found) => role.key_permission[found].perm_type = permission.perm_type,
            Err(position) => role.key_permission.insert(position, permission),
        }
        self.changed();
        Ok(())
    }

    fn role_revoke_permission(&mut self, name: &str, key: &[u8], range_end: &[u8]) -> Result<(), Error> {
        let role = self.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let position = role
            .key_permission
            .iter()
            .position(|held| held.key == key && held.range_end == range_end)
            .ok_or(Error::PermissionNotGranted)?;
        role.key_permission.remove(position);
        self.changed();
        Ok(())
    }

    /// Rebuilds the store from snapshot parts (no tokens).
    pub(crate) fn restore(
        enabled: bool,
        revision: u64,
        users: Vec<User>,
        roles: Vec<Role>,
    ) -> Result<AuthStore, &'static str> {
        let mut store = AuthStore { enabled, revision, ..AuthStore::default() };
        for user in users {
            let name = String::from_utf8(user.name.clone()).map_err(|_| "user name is not UTF-8")?;
            if name.is_empty() || store.users.insert(name, user).is_some() {
                return Err("empty or repeated user name");
            }
        }
        for role in roles {
            let name = String::from_utf8(role.name.clone()).map_err(|_| "role name is not UTF-8")?;
            if name.is_empty() || store.roles.insert(name, role).is_some() {
                return Err("empty or repeated role name");
            }
        }
        if enabled && !store.is_root(ROOT_USER) {
            return Err("auth enabled without a root user holding the root role");
        }
        Ok(store)
    }
}

/// Sets the header revision of an auth answer.
pub(crate) fn set_header_revision(response: &mut AuthResponse, revision: i64) {
    let Some(answer) = response.response.as_mut() else {
        return;
    };
    let slot = match answer {
        Answer::Enable(response) => &mut response.header,
        Answer::Disable(response) => &mut response.header,
        Answer::Authenticate(response) => &mut response.header,
        Answer::UserAdd(response) => &mut response.header,
        Answer::UserDelete(response) => &mut response.header,
        Answer::UserChangePassword(response) => &mut response.header,
        Answer::UserGrantRole(response) => &mut response.header,
        Answer::UserRevokeRole(response) => &mut response.header,
        Answer::RoleAdd(response) => &mut response.header,
        Answer::RoleDelete(response) => &mut response.header,
        Answer::RoleGrantPermission(response) => &mut response.header,
        Answer::RoleRevokePermission(response) => &mut response.header,
    };
    *slot = Some(ResponseHeader { revision, ..ResponseHeader::default() });
}

impl crate::store::Store {
    /// The auth store (users, roles, flag, revision, tokens).
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    /// Allows `user` (`None` or empty: no user) to run `operation`, as etcd does:
    /// everything while auth is off; otherwise reads need read permission and writes
    /// write permission on every key range they touch (`prev_kv` also needs read),
    /// transactions on every compare and request of both branches, a lease revoke
    /// write permission on every attached key, compaction and every auth change but
    /// `AuthEnable`, `Authenticate` and a user changing its own password need root.
    /// Lease grants need no permission. The server calls this before proposing;
    /// [`Store::apply`](crate::Store::apply) calls it again for commands that carry an
    /// [`AuthContext`](crate::AuthContext), so a permission revoked in between holds.
    pub fn authorize(&self, user: Option<&str>, operation: &crate::Operation) -> Result<(), Error> {
        use crate::Operation;
        let auth = &self.auth;
        if !auth.is_enabled() {
            return Ok(());
        }
        match operation {
            Operation::Range(request) => auth.check_range(user, &request.key, &request.range_end, Access::Read),
            Operation::Put(request) => check_put(auth, user, request),
            Operation::DeleteRange(request) => check_delete(auth, user, request),
            Operation::Txn(request) => check_txn(auth, user, request),
            Operation::LeaseGrant(_) => Ok(()),
            Operation::LeaseRevoke(request) => match self.leases.get(request.id) {
                Some(lease) if !user.is_some_and(|name| auth.is_root(name)) => {
                    lease.keys.iter().try_for_each(|key| auth.check_range(user, key, &[], Access::Write))
                }
                _ => auth.known_user(user).map(|_| ()),
            },
            Operation::Auth(request) => match &request.request {
                Some(Change::Enable(_) | Change::Authenticate(_)) => Ok(()),
                Some(Change::UserChangePassword(change)) if user == Some(change.name.as_str()) => Ok(()),
                _ => auth.check_admin(user),
            },
            // Compaction, membership and anything added later: root only.
            _ => auth.check_admin(user),
        }
    }
}

fn check_put(auth: &AuthStore, user: Option<&str>, request: &proto::etcdserverpb::PutRequest) -> Result<(), Error> {
    auth.check_range(user, &request.key, &[], Access::Write)?;
    if request.prev_kv {
        auth.check_range(user, &request.key, &[], Access::Read)?;
    }
    Ok(())
}

fn check_delete(
    auth: &AuthStore,
    user: Option<&str>,
    request: &proto::etcdserverpb::DeleteRangeRequest,
) -> Result<(), Error> {
    auth.check_range(user, &request.key, &request.range_end, Access::Write)?;
    if request.prev_kv {
        auth.check_range(user, &request.key, &request.range_end, Access::Read)?;
    }
    Ok(())
}

fn check_txn(auth: &AuthStore, user: Option<&str>, request: &proto::etcdserverpb::TxnRequest) -> Result<(), Error> {
    use proto::etcdserverpb::request_op::Request;
    for compare in &request.compare {
        auth.check_range(user, &compare.key, &compare.range_end, Access::Read)?;
    }
    for operation in request.success.iter().chain(&request.failure) {
        match &operation.request {
            Some(Request::RequestRange(range)) => auth.check_range(user, &range.key, &range.range_end, Access::Read)?,
            Some(Request::RequestPut(put)) => check_put(auth, user, put)?,
            Some(Request::RequestDeleteRange(delete)) => check_delete(auth, user, delete)?,
            Some(Request::RequestTxn(nested)) => check_txn(auth, user, nested)?,
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proto::authpb::UserAddOptions;
    use proto::etcdserverpb::{
        compare, request_op, AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
        AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserDeleteRequest, AuthUserRevokeRoleRequest, Compare,
        PutRequest, RangeRequest, RequestOp, TxnRequest,
    };
    use proto::raftkvpb::InternalAuthenticateRequest;

    use super::*;
    use crate::{AuthContext, Command, Operation, Response, Store};

    fn change(request: Change) -> Operation {
        Operation::Auth(AuthRequest { request: Some(request) })
    }

    fn user_add(name: &str) -> Operation {
        let hashed_password = format!("hash-of-{name}");
        change(Change::UserAdd(AuthUserAddRequest { name: name.into(), hashed_password, ..Default::default() }))
    }

    fn grant_role(user: &str, role: &str) -> Operation {
        change(Change::UserGrantRole(AuthUserGrantRoleRequest { user: user.into(), role: role.into() }))
    }

    fn grant(role: &str, key: &[u8], range_end: &[u8], kind: PermissionType) -> Operation {
        let perm = Permission { perm_type: kind as i32, key: key.to_vec(), range_end: range_end.to_vec() };
        change(Change::RoleGrantPermission(AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) }))
    }

    /// Applies commands in order; `as_user` attaches an auth context.
    struct Harness {
        store: Store,
        index: u64,
    }

    impl Harness {
        fn new() -> Harness {
            Harness { store: Store::default(), index: 0 }
        }

        fn run(&mut self, as_user: Option<&str>, operation: Operation) -> Result<Response, Error> {
            self.index += 1;
            let mut command = Command::new(operation);
            command.auth = as_user.map(|user| AuthContext { user: user.into() });
            self.store.apply(self.index, &command).result
        }

        fn ok(&mut self, as_user: Option<&str>, operation: Operation) {
            let result = self.run(as_user, operation.clone());
            assert!(result.is_ok(), "{operation:?} failed: {result:?}");
        }

        /// root (root role), role `reader` with read on prefix `foo`, user `alice` with it; auth on.
        fn with_alice() -> Harness {
            let mut harness = Harness::new();
            harness.ok(None, user_add(ROOT_USER));
            harness.ok(None, grant_role(ROOT_USER, ROOT_ROLE));
            harness.ok(None, change(Change::RoleAdd(AuthRoleAddRequest { name: "reader".into() })));
            harness.ok(None, grant("reader", b"foo", b"fop", PermissionType::Readwrite));
            harness.ok(None, user_add("alice"));
            harness.ok(None, grant_role("alice", "reader"));
            harness.ok(None, change(Change::Enable(AuthEnableRequest {})));
            harness
        }
    }

    fn put(key: &str) -> Operation {
        Operation::Put(PutRequest {
            key: key.to_owned().into_bytes().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        })
    }

    fn store_with(permissions: &[(&[u8], &[u8], PermissionType)]) -> AuthStore {
        let mut harness = Harness::new();
        harness.ok(None, user_add(ROOT_USER));
        harness.ok(None, grant_role(ROOT_USER, ROOT_ROLE));
        harness.ok(None, change(Change::RoleAdd(AuthRoleAddRequest { name: "r".into() })));
        for (key, range_end, kind) in permissions {
            harness.ok(None, grant("r", key, range_end, *kind));
        }
        harness.ok(None, user_add("u"));
        harness.ok(None, grant_role("u", "r"));
        harness.ok(None, change(Change::Enable(AuthEnableRequest {})));
        harness.store.auth
    }

    #[test]
    fn permission_ranges_follow_etcd_rules() {
        use PermissionType::{Read, Readwrite, Write};
        let auth =
            store_with(&[(b"a", b"", Read), (b"p/", b"p0", Readwrite), (b"w", b"\0", Write), (b"m", b"n", Read)]);
        let allowed = |key: &[u8], end: &[u8], access| auth.check_range(Some("u"), key, end, access).is_ok();
        // A single-key permission covers that key only.
        assert!(allowed(b"a", b"", Access::Read));
        assert!(!allowed(b"ab", b"", Access::Read));
        assert!(!allowed(b"a", b"", Access::Write));
        assert!(allowed(b"a", b"a\0", Access::Read), "[a, a\\0) is the key a");
        // A prefix permission covers keys and sub-ranges of the prefix, not beyond.
        assert!(allowed(b"p/x", b"", Access::Write) && allowed(b"p/", b"p0", Access::Read));
        assert!(allowed(b"p/a", b"p/b", Access::Read));
        assert!(!allowed(b"p/", b"p1", Access::Read));
        assert!(!allowed(b"p", b"", Access::Read));
        // An open-ended permission covers every key from its start, and open requests.
        assert!(allowed(b"w", b"", Access::Write) && allowed(b"zzz", b"\0", Access::Write));
        assert!(!allowed(b"w", b"", Access::Read) && !allowed(b"v", b"\0", Access::Write));
        // Ranges must be covered completely; adjacent permissions join.
        assert!(allowed(b"m", b"n", Access::Read) && !allowed(b"m", b"o", Access::Read));
        let joined = store_with(&[(b"a", b"c", Read), (b"c", b"e", Read)]);
        assert!(joined.check_range(Some("u"), b"b", b"d", Access::Read).is_ok());
        assert!(joined.check_range(Some("u"), b"b", b"f", Access::Read).is_err());
        let gap = store_with(&[(b"a", b"c", Read), (b"d", b"e", Read)]);
        assert_eq!(gap.check_range(Some("u"), b"b", b"d\0", Access::Read), Err(Error::PermissionDenied));
        // No user, an unknown user, root.
        assert_eq!(auth.check_range(None, b"a", b"", Access::Read), Err(Error::UserEmpty));
        assert_eq!(auth.check_range(Some(""), b"a", b"", Access::Read), Err(Error::UserEmpty));
        assert_eq!(auth.check_range(Some("x"), b"a", b"", Access::Read), Err(Error::UserNotFound));
        assert!(auth.check_range(Some(ROOT_USER), b"\0", b"\0", Access::Write).is_ok());
    }

    #[test]
    fn enabling_needs_root_with_the_root_role() {
        let mut harness = Harness::new();
        let enable = change(Change::Enable(AuthEnableRequest {}));
        assert_eq!(harness.run(None, enable.clone()), Err(Error::RootUserNotExist));
        harness.ok(None, user_add(ROOT_USER));
        assert_eq!(harness.run(None, enable.clone()), Err(Error::RootRoleNotExist));
        harness.ok(None, grant_role(ROOT_USER, ROOT_ROLE));
        let revision = harness.store.auth().revision();
        harness.ok(None, enable);
        assert!(harness.store.auth().is_enabled());
        assert_eq!(harness.store.auth().revision(), revision + 1);
        let delete_root = change(Change::UserDelete(AuthUserDeleteRequest { name: ROOT_USER.into() }));
        assert_eq!(harness.run(Some(ROOT_USER), delete_root), Err(Error::InvalidAuthManagement));
        let revoke = change(Change::UserRevokeRole(AuthUserRevokeRoleRequest {
            name: ROOT_USER.into(),
            role: ROOT_ROLE.into(),
        }));
        assert_eq!(harness.run(Some(ROOT_USER), revoke), Err(Error::InvalidAuthManagement));
    }

    #[test]
    fn commands_are_checked_again_when_applied() {
        let mut harness = Harness::with_alice();
        harness.ok(Some("alice"), put("foo1"));
        assert_eq!(harness.run(Some("alice"), put("bar")), Err(Error::PermissionDenied));
        assert_eq!(harness.run(Some(""), put("foo1")), Err(Error::UserEmpty));
        // Admin changes need root.
        assert_eq!(harness.run(Some("alice"), user_add("bob")), Err(Error::PermissionDenied));
        harness.ok(Some(ROOT_USER), user_add("bob"));
        // A permission revoked before the command is applied is not used.
        let revoke = change(Change::RoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: "reader".into(),
            key: b"foo".to_vec(),
            range_end: b"fop".to_vec(),
        }));
        harness.ok(Some(ROOT_USER), revoke.clone());
        assert_eq!(harness.run(Some("alice"), put("foo1")), Err(Error::PermissionDenied));
        assert_eq!(harness.run(Some(ROOT_USER), revoke), Err(Error::PermissionNotGranted));
        // The node's own commands (no context) are not checked.
        harness.ok(None, put("bar"));
        // Compaction is root's.
        let compact = Operation::Compaction(proto::etcdserverpb::CompactionRequest { revision: 2, physical: false });
        assert_eq!(harness.run(Some("alice"), compact.clone()), Err(Error::PermissionDenied));
        harness.ok(Some(ROOT_USER), compact);
    }

    #[test]
    fn transactions_need_every_permission_they_use() {
        let harness = Harness::with_alice();
        let op = |key: &str| RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest { key: key.into(), ..Default::default() })),
        };
        let compare_on = |key: &str| Compare {
            key: key.into(),
            target: compare::CompareTarget::Version as i32,
            ..Default::default()
        };
        let allowed = TxnRequest { compare: vec![compare_on("foo")], success: vec![op("foo2")], failure: vec![] };
        assert!(harness.store.authorize(Some("alice"), &Operation::Txn(allowed.clone())).is_ok());
        for denied in [
            TxnRequest { compare: vec![compare_on("bar")], ..allowed.clone() },
            TxnRequest { failure: vec![op("bar")], ..allowed.clone() },
            TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestTxn(TxnRequest { success: vec![op("bar")], ..allowed })),
                }],
                ..Default::default()
            },
        ] {
            assert_eq!(harness.store.authorize(Some("alice"), &Operation::Txn(denied)), Err(Error::PermissionDenied));
        }
    }

    #[test]
    fn tokens_authenticate_until_the_user_changes() {
        let mut harness = Harness::with_alice();
        let authenticate = |token: &str, hash: &str| {
            change(Change::Authenticate(InternalAuthenticateRequest {
                name: "alice".into(),
                simple_token: token.into(),
                password_hash: hash.as_bytes().to_vec(),
            }))
        };
        assert_eq!(harness.run(None, authenticate("t0", "wrong")), Err(Error::AuthFailed));
        let answer = harness.run(None, authenticate("t1", "hash-of-alice")).expect("authenticates");
        let Response::Auth(AuthResponse { response: Some(Answer::Authenticate(response)) }) = answer else {
            panic!("unexpected answer {answer:?}");
        };
        assert_eq!(response.token, "t1");
        assert_eq!(harness.store.auth().user_for_token("t1"), Some("alice"));
        let password = change(Change::UserChangePassword(proto::etcdserverpb::AuthUserChangePasswordRequest {
            name: "alice".into(),
            hashed_password: "new".into(),
            ..Default::default()
        }));
        harness.ok(Some("alice"), password);
        assert_eq!(harness.store.auth().user_for_token("t1"), None);
        harness.ok(None, authenticate("t2", "new"));
        harness.ok(Some(ROOT_USER), change(Change::Disable(proto::etcdserverpb::AuthDisableRequest {})));
        assert_eq!(harness.store.auth().token_count(), 0);
        assert_eq!(harness.run(None, authenticate("t3", "new")), Err(Error::AuthNotEnabled));
    }

    #[test]
    fn snapshots_carry_users_roles_and_the_flag_but_no_tokens() {
        let mut harness = Harness::with_alice();
        harness.ok(None, user_add("nopass"));
        let options = Some(UserAddOptions { no_password: true });
        let add = AuthUserAddRequest { name: "carol".into(), options, ..Default::default() };
        harness.ok(Some(ROOT_USER), change(Change::UserAdd(add)));
        let authenticate = InternalAuthenticateRequest {
            name: "alice".into(),
            simple_token: "t".into(),
            password_hash: b"hash-of-alice".to_vec(),
        };
        harness.ok(None, change(Change::Authenticate(authenticate)));
        let bytes = harness.store.snapshot();
        let restored = Store::restore(harness.store.config().clone(), &bytes).expect("restores");
        assert_eq!(restored.snapshot(), bytes);
        let (original, copy) = (harness.store.auth(), restored.auth());
        assert!(copy.is_enabled());
        assert_eq!(copy.revision(), original.revision());
        assert_eq!(copy.users().collect::<Vec<_>>(), original.users().collect::<Vec<_>>());
        assert_eq!(copy.roles().collect::<Vec<_>>(), original.roles().collect::<Vec<_>>());
        assert_eq!(copy.user("alice").map(|user| user.password.clone()), Some(b"hash-of-alice".to_vec()));
        assert_eq!(copy.token_count(), 0, "simple tokens live in memory only");
        assert_eq!(original.token_count(), 1);
        assert!(copy.check_range(Some("alice"), b"foo", b"fop", Access::Write).is_ok());
        assert_eq!(restored.hash(), harness.store.hash(), "tokens do not change the state hash");
    }
}
