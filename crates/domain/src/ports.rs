//! Ports: what the domain needs from the world. Storage is declared here — adapters
//! (`store-pg`, `store-mem`) implement it and MUST return the error variants documented on
//! each method; the conformance suite (`conformance` feature) checks that they do. Every
//! method that changes more than one row is atomic: it happens entirely or not at all.
//!
//! The other ports are declared beside the types they speak of, and listed here so this
//! module names every port: [`Clock`] (time), [`RandomSource`] (entropy), [`RateLimiter`] and
//! [`QuotaLedger`] (limits), [`AuditSink`] (events a use case reports), [`WebhookStore`]
//! (webhook endpoints, the outbox and the notices), [`GatewayStore`] (route tables), and
//! below, [`PasswordHasher`] and [`HostResolver`].

use std::{future::Future, sync::Arc};

use time::OffsetDateTime;

use crate::{
    account::Account,
    audit::{AuditEvent, AuditFilter, AuditPosition, AuditRecord},
    id::{AccountId, KeyId, KeyspaceId},
    id::{InvitationId, SessionId, UserId},
    idempotency::{Claim, StoredResponse},
    key::{Actor, Hostname, Key, KeyKind, KeyStatus},
    key_format::{Environment, KeyHash},
    keyspace::Keyspace,
    password::{HashFailure, Password, PasswordCheck, PasswordHash},
    people::{Email, Invitation, Membership, Role, Session, User},
    usage::{AccountStats, UsageEntry, UsagePosition, UsageRecord, UsageSummary},
};

pub use crate::{
    audit::AuditSink,
    clock::Clock,
    random::RandomSource,
    ratelimit::{QuotaLedger, RateLimiter},
};

mod gateway;
mod mail;
mod reports;
mod resets;
mod webhooks;

pub use gateway::GatewayStore;
pub use mail::{MailSender, MailStore};
pub use reports::ReportStore;
pub use resets::{PasswordReset, PasswordResetStore};
pub use webhooks::WebhookStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the storage itself, as opposed to an answer about the data.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage cannot be reached or has no capacity now (pool exhausted, connection
    /// refused, timeout). Retrying later may succeed; maps to 503 `unavailable`.
    #[error("storage is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else; maps to 500 `internal`.
    #[error("storage failed")]
    Internal(#[source] BoxError),
}

/// Which keys a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter {
    pub kind: KeyKind,
    pub keyspace_id: Option<KeyspaceId>,
    pub environment: Option<Environment>,
    pub status: Option<KeyStatus>,
    pub owner_id: Option<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Return keys created before this one (the previous page's last key).
    pub before: Option<KeyId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyPage {
    pub keys: Vec<Key>,
    /// How many keys match the filter across all pages.
    pub total: u64,
    pub has_more: bool,
}

pub use crate::key::VerifiableKey;

#[derive(Debug, thiserror::Error)]
pub enum InsertKeyError {
    /// Inserting would take the account's non-revoked, unexpired service keys past `max_keys`.
    #[error("the account's key limit is reached")]
    KeyLimitReached,
    /// A key with the same hash exists already; `index` is its position in the input.
    #[error("key {index} has a hash that is already in use")]
    DuplicateHash { index: usize },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No such row in that account.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum InsertKeyspaceError {
    /// The account has a keyspace of that name already.
    #[error("a keyspace of that name exists")]
    DuplicateName,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateKeyspaceError {
    #[error("not found")]
    NotFound,
    #[error("a keyspace of that name exists")]
    DuplicateName,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteKeyspaceError {
    #[error("not found")]
    NotFound,
    /// The keyspace still holds keys that are neither revoked nor expired.
    #[error("the keyspace holds active keys")]
    NotEmpty,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Counts of an account's service keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyCounts {
    /// Neither revoked nor past `expires_at`: what the plan's `max_keys` limits.
    pub active: u64,
    pub revoked: u64,
}

pub trait KeyStore: Send + Sync {
    /// Inserts every key or none. `max_keys`, when set, is checked atomically against the
    /// account's active service keys (only service keys count).
    /// Errors: `KeyLimitReached`, `DuplicateHash`, `Storage`.
    fn insert_keys(
        &self,
        keys: &[Key],
        max_keys: Option<u64>,
    ) -> impl Future<Output = Result<(), InsertKeyError>> + Send;

    /// The key with this hash in any account, whatever its status, in its verification
    /// view. Must be an index lookup; a caching adapter hands out its cached record.
    fn find_by_hash(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<Arc<VerifiableKey>>, StorageError>> + Send;

    fn get_key(&self, account: AccountId, id: KeyId) -> impl Future<Output = Result<Option<Key>, StorageError>> + Send;

    /// Keys of the account matching `filter`, newest first. `status` is derived at `now`.
    fn list_keys(
        &self,
        account: AccountId,
        filter: &KeyFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<KeyPage, StorageError>> + Send;

    /// Writes the attributes of `after` that differ from `before` — the copy the caller read
    /// and changed — and `updated_at` (matched by account and id). Every other attribute
    /// stays as stored, so a concurrent writer's change to another attribute (a rotation's
    /// expiry, a disable, an allowlist) is never undone by a copy read before it. A
    /// `revoked_at` already stored is never cleared or moved: revocation is permanent even
    /// against a concurrent update. Errors: `NotFound`, `Storage`.
    fn update_key(&self, before: &Key, after: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send;

    /// Atomically writes `old` (its new `expires_at`, `rotated_to`, `updated_at`) and inserts
    /// `new`. Errors: `NotFound` when `old` is gone or revoked meanwhile, `Storage`.
    fn rotate_key(&self, old: &Key, new: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send;

    fn count_keys(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<KeyCounts, StorageError>> + Send;

    /// Records that a key was used at `at` (temporary keys' sliding idle timeout). Only
    /// moves `last_used_at` forward; a missing key is not an error.
    fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Account keys and temporary keys of the account, newest first (at most 1,000).
    fn list_account_keys(&self, account: AccountId) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send;

    /// The temporary keys `user`'s logins minted in `account` that still work (not revoked,
    /// not expired at `now`): what a change of the user's membership must end or reshape.
    fn live_temporary_keys(
        &self,
        account: AccountId,
        user: UserId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send;

    /// Non-revoked, unexpired account and temporary keys of the account: what the plan's
    /// key limit counts for account keys.
    fn count_account_keys(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// A user with that email exists.
    #[error("a user with this email exists")]
    DuplicateEmail,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// No such membership.
    #[error("not found")]
    NotFound,
    /// The change would leave the account without an owner.
    #[error("the account must keep an owner")]
    LastOwner,
    /// The user is a member already.
    #[error("already a member")]
    Duplicate,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub trait UserStore: Send + Sync {
    /// Creates the user and, when given, their first membership, atomically.
    /// Errors: `DuplicateEmail`, `Storage`.
    fn create_user(
        &self,
        user: &User,
        membership: Option<&Membership>,
    ) -> impl Future<Output = Result<(), CreateUserError>> + Send;

    fn find_user_by_email(&self, email: &Email) -> impl Future<Output = Result<Option<User>, StorageError>> + Send;

    fn get_user(&self, id: UserId) -> impl Future<Output = Result<Option<User>, StorageError>> + Send;

    /// Sets the password's hash and whether it must be changed at the next login.
    /// Errors: `NotFound`, `Storage`.
    fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        change_required: bool,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), UpdateError>> + Send;

    /// The user's memberships with each account's name, oldest first.
    fn memberships_of(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<(Membership, String)>, StorageError>> + Send;

    fn get_membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> impl Future<Output = Result<Option<Membership>, StorageError>> + Send;

    /// The account's members, oldest first.
    fn members(&self, account: AccountId)
    -> impl Future<Output = Result<Vec<(User, Membership)>, StorageError>> + Send;

    /// Errors: `Duplicate`, `Storage`.
    fn add_membership(&self, membership: &Membership) -> impl Future<Output = Result<(), MembershipError>> + Send;

    /// Records an invitation, replacing (token, role, expiry and all) one the address
    /// already had from that account. Errors: `Duplicate` when the address's user is a
    /// member already, `Storage`.
    fn invite(&self, invitation: &Invitation) -> impl Future<Output = Result<(), MembershipError>> + Send;

    /// The invitation whose token hashes to `token_hash`, live or not, with its account's
    /// name.
    fn find_invitation(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<(Invitation, String)>, StorageError>> + Send;

    /// Deletes the invitation and returns it, if it was still there: the one way to use
    /// one, so that of two concurrent uses only one gets it.
    fn take_invitation(
        &self,
        id: InvitationId,
    ) -> impl Future<Output = Result<Option<Invitation>, StorageError>> + Send;

    /// The invitations addressed to `email`, with each account's name, oldest first.
    fn invitations_to(
        &self,
        email: &Email,
    ) -> impl Future<Output = Result<Vec<(Invitation, String)>, StorageError>> + Send;

    /// The account's pending invitations, oldest first.
    fn invitations_from(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<Invitation>, StorageError>> + Send;

    /// Deletes and returns the account's invitations sent by `actor`.
    fn withdraw_invitations_by(
        &self,
        account: AccountId,
        actor: &Actor,
    ) -> impl Future<Output = Result<Vec<Invitation>, StorageError>> + Send;

    /// Changes a role, atomically refusing to demote the account's last owner.
    /// Errors: `NotFound`, `LastOwner`, `Storage`.
    fn set_role(
        &self,
        account: AccountId,
        user: UserId,
        role: Role,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send;

    /// Removes a membership, atomically refusing to remove the last owner, and ends the
    /// user's sessions in that account. Errors: `NotFound`, `LastOwner`, `Storage`.
    fn remove_membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send;
}

pub trait SessionStore: Send + Sync {
    fn insert_session(&self, session: &Session) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The session whose token hashes to `token_hash`, live or not.
    fn find_session(&self, token_hash: &[u8; 32])
    -> impl Future<Output = Result<Option<Session>, StorageError>> + Send;

    /// Moves `last_seen_at` forward (sliding idle timeout).
    fn touch_session(&self, id: SessionId, at: OffsetDateTime)
    -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Stamps the step-up window of this session only.
    fn set_step_up(&self, id: SessionId, at: OffsetDateTime) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Ends a session; returns it (for its temporary key) if it existed.
    fn delete_session(&self, id: SessionId) -> impl Future<Output = Result<Option<Session>, StorageError>> + Send;

    /// Ends every session of `user`, in every account, but `keep`; returns how many ended.
    fn delete_sessions_of_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> impl Future<Output = Result<usize, StorageError>> + Send;
}

/// Password hashing, which costs tens of milliseconds of CPU: implementations run it off the
/// async executor with a concurrency cap, so a login flood cannot starve verification.
pub trait PasswordHasher: Send + Sync {
    fn hash(&self, password: Password) -> impl Future<Output = Result<PasswordHash, HashFailure>> + Send;

    /// Checks `password` against `hash`. With `None` (unknown email) it checks against a
    /// dummy hash, so both failures take about the same time, and answers "no match".
    fn verify(
        &self,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> impl Future<Output = Result<PasswordCheck, HashFailure>> + Send;
}

pub trait AccountStore: Send + Sync {
    /// Creates the account, its default keyspace and, when given, its first key, atomically.
    fn create_account(
        &self,
        account: &Account,
        default_keyspace: &Keyspace,
        first_key: Option<&Key>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    fn get_account(&self, id: AccountId) -> impl Future<Output = Result<Option<Account>, StorageError>> + Send;
}

pub trait KeyspaceStore: Send + Sync {
    /// Errors: `DuplicateName` (names are unique per account), `Storage`.
    fn insert_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), InsertKeyspaceError>> + Send;

    fn get_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send;

    fn find_keyspace_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send;

    /// All keyspaces of the account, oldest first.
    fn list_keyspaces(&self, account: AccountId) -> impl Future<Output = Result<Vec<Keyspace>, StorageError>> + Send;

    /// Errors: `NotFound`, `DuplicateName`, `Storage`.
    fn update_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), UpdateKeyspaceError>> + Send;

    /// Deletes the keyspace and its revoked or expired keys, atomically, unless it holds a
    /// key that is neither (checked at `now`). Errors: `NotFound`, `NotEmpty`, `Storage`.
    fn delete_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), DeleteKeyspaceError>> + Send;
}

/// The append-only audit trail, one hash chain per account (events without an account form
/// a chain of their own).
pub trait AuditStore: Send + Sync {
    /// Appends `event` to its account's chain: under a per-account lock, it takes the next
    /// `seq` and `prev_hash`, computes its hash, and stores it. Concurrent appends never fork
    /// a chain.
    fn append_audit(&self, event: &AuditEvent) -> impl Future<Output = Result<AuditRecord, StorageError>> + Send;

    /// The account's events matching `filter`, newest first by `(ts, id)`, each strictly
    /// before `before` in that order. At most `limit`.
    fn list_audit(
        &self,
        account: AccountId,
        filter: &AuditFilter,
        limit: u32,
        before: Option<AuditPosition>,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StorageError>> + Send;

    /// A chain in chain order (`seq` ascending), after `after_seq`; at most `limit`.
    fn audit_chain(
        &self,
        account: Option<AccountId>,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StorageError>> + Send;

    /// Every chain that holds events.
    fn audit_chains(&self) -> impl Future<Output = Result<Vec<Option<AccountId>>, StorageError>> + Send;

    /// The retention purge, the only way events leave: deletes the chain's events older than
    /// `before`; returns how many.
    fn purge_audit(
        &self,
        account: Option<AccountId>,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send;
}

/// Idempotency keys (Stripe semantics), per account.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request with `fingerprint`, atomically: `Claimed` when the key is
    /// new or its previous claim lapsed (24 h retention, or an in-flight lease past `now`);
    /// otherwise what holds it (`InFlight` while another request with the key is running,
    /// whether its claim is committed or still inside its unit of work). Inside a unit of
    /// work the claim belongs to the unit: a rollback frees the key.
    fn claim_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Claim, StorageError>> + Send;

    /// Records the response of a key (inside the caller's unit of work, if any), claiming it
    /// if its claim was rolled back.
    fn complete_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
        response: &StoredResponse,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Gives a claimed key up without a response (the request failed before executing).
    fn release_idempotency(
        &self,
        account: AccountId,
        key: &str,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Forgets keys created before `before`; returns how many.
    fn purge_idempotency(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send;
}

/// Metered usage, written in batches by a background flusher.
pub trait UsageStore: Send + Sync {
    /// Stores the records and, per key, adds to `usage_count`, moves `last_used_at` forward
    /// and counts the day; all or nothing.
    fn record_usage(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The key's records within [since, until), newest first in (ts, seq) order, strictly
    /// before `before`: a page ends at its last entry's position and the next page starts
    /// right after it, even among records that share a timestamp.
    fn key_usage(
        &self,
        account: AccountId,
        key: KeyId,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        before: Option<UsagePosition>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<UsageEntry>, StorageError>> + Send;

    fn usage_summary(
        &self,
        account: AccountId,
        key: KeyId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<UsageSummary, StorageError>> + Send;

    /// Verification statistics of the account's service keys.
    fn account_stats(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<AccountStats, StorageError>> + Send;

    /// Drops records older than `before` (their daily counts stay).
    fn purge_usage(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send;
}

/// How a unit of work ends.
#[derive(Debug)]
pub enum Outcome<T> {
    Commit(T),
    Rollback(T),
}

/// Units of work: every storage call `work` makes on this store (from the same task)
/// commits together, or — on `Rollback`, or when `work` is abandoned — none does. `work`
/// need not be `Send` (HTTP handlers' futures are not), nor is the unit.
pub trait Atomic: Send + Sync {
    fn atomically<T, F: Future<Output = Outcome<T>>>(&self, work: F) -> impl Future<Output = Result<T, StorageError>>;
}

/// Everything the services need from one storage backend.
pub trait Store:
    KeyStore
    + AccountStore
    + KeyspaceStore
    + UserStore
    + SessionStore
    + AuditStore
    + IdempotencyStore
    + UsageStore
    + WebhookStore
    + MailStore
    + PasswordResetStore
    + ReportStore
    + GatewayStore
    + Atomic
    + Clone
    + 'static
{
    /// Whether the storage answers and its schema is current; for `/readyz`.
    fn ping(&self) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// Resolves the host names of IP allowlists (SPEC §2: "hostnames resolved with a short
/// cache"). An adapter caches answers briefly and bounds how long a lookup may take; a name
/// it cannot resolve resolves to nothing, so the allowlist fails closed.
///
/// Boxed rather than `impl Future`: the resolver is chosen at run time and shared as
/// `Arc<dyn HostResolver>`, and it is called only for keys whose allowlist has names, after
/// their addresses and networks did not admit the request.
pub trait HostResolver: Send + Sync + std::fmt::Debug {
    fn resolve<'a>(
        &'a self,
        host: &'a Hostname,
    ) -> std::pin::Pin<Box<dyn Future<Output = Arc<[std::net::IpAddr]>> + Send + 'a>>;
}

/// Resolves nothing: host-name entries admit no address. The default of a `KeyService`
/// that was given no resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

impl HostResolver for NoResolver {
    fn resolve<'a>(
        &'a self,
        _host: &'a Hostname,
    ) -> std::pin::Pin<Box<dyn Future<Output = Arc<[std::net::IpAddr]>> + Send + 'a>> {
        Box::pin(std::future::ready(Arc::from([])))
    }
}
