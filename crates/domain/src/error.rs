//! Errors of the use cases in [`crate::service`]. The HTTP adapter alone maps them to status
//! codes and envelope codes.

use crate::{ports::StorageError, validation::FieldErrors};

/// Why a presented credential was not accepted on the management API.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown, revoked or expired: one answer, so the response is no
    /// oracle for which keys exist.
    #[error("missing or invalid credential")]
    Unauthorized,
    /// The key exists but is disabled (`is_active = false`).
    #[error("the key is disabled")]
    KeyInactive,
    /// The key's IP allowlist does not contain the client's address.
    #[error("the key may not be used from this address")]
    IpNotAllowed,
    /// A service key presented to the management API.
    #[error("service keys cannot call the management API")]
    ServiceKey,
    /// A session of a login that belongs to no account: it may see its session and its
    /// invitations, accept one, and log out — nothing of any account.
    #[error("this login belongs to no account yet")]
    NoAccount,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a management operation (keyspaces, keys, account) failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The credential lacks the management scope the operation needs.
    #[error("this operation needs the {0} scope")]
    InsufficientScope(&'static str),
    /// No such object in the caller's account (objects of other accounts included).
    #[error("not found")]
    NotFound,
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    /// The account's plan allows no more active keys.
    #[error("the plan's key limit is reached")]
    KeyLimitReached,
    /// The keyspace still holds active keys.
    #[error("the keyspace still holds active keys")]
    KeyspaceNotEmpty,
    /// Another keyspace of the account has this name (names are unique per account).
    #[error("a keyspace of this name exists")]
    NameTaken,
    /// Too many lookups of legacy strings that matched nothing: retry after this many
    /// seconds (maps to 429 `rate_limited`).
    #[error("too many failed lookups of legacy keys")]
    LegacyGuessing { retry_after_seconds: u64 },
    /// Refused by a rule of the domain, which [`Refusal`] names.
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<crate::ports::UpdateError> for ManageError {
    fn from(error: crate::ports::UpdateError) -> Self {
        match error {
            crate::ports::UpdateError::NotFound => Self::NotFound,
            crate::ports::UpdateError::Storage(e) => Self::Storage(e),
        }
    }
}

impl From<crate::ports::UpdateError> for PeopleError {
    fn from(error: crate::ports::UpdateError) -> Self {
        Self::Manage(error.into())
    }
}

impl From<FieldErrors> for ManageError {
    fn from(errors: FieldErrors) -> Self {
        Self::Invalid(errors)
    }
}

/// The rules that refuse an operation outright (403 `forbidden`), whatever the caller's
/// scopes: one variant each, so a test or an adapter can tell them apart without reading
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you are not a member of that account")]
    NotAMember,
    #[error("this invitation is for another login: sign in as the invited address")]
    NotTheInvitedLogin,
    #[error("this login belongs to no account yet: accept an invitation first")]
    NoAccount,
    #[error("only owners and admins manage users and account keys")]
    NotAnAdmin,
    #[error("only an owner can add an owner")]
    OnlyOwnersAddOwners,
    #[error("only an owner can change an owner")]
    OnlyOwnersChangeOwners,
    #[error("the account must keep at least one owner")]
    LastOwner,
    #[error("a revoked key cannot be rotated")]
    RevokedKeyRotation,
    #[error("only active account keys can be rotated")]
    InactiveAccountKeyRotation,
    #[error("the default keyspace cannot be deleted")]
    DefaultKeyspaceDeletion,
}

/// Why a people or account-key operation (login, step-up, users, account keys) failed.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// Wrong email or password; one answer for both.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// Too many attempts; try again after this many seconds.
    #[error("too many attempts")]
    Throttled { retry_after_seconds: u64 },
    /// The route takes a login session, not an API key.
    #[error("this operation needs a login session, not an API key")]
    SessionRequired,
    /// The address has a login, and only that login, signed in, can do this (accept an
    /// invitation to it).
    #[error("sign in as the invited login first")]
    SignInRequired,
    /// The session has not re-entered its password in the last five minutes.
    #[error("re-enter your password first (POST /v1/account/verify-password)")]
    StepUpRequired,
    /// The account's plan does not include account keys.
    #[error("the account's plan does not include account keys")]
    PlanRequired,
    /// The session logged in with a password someone else chose: it may only change it
    /// (`POST /v1/account/password`) or log out.
    #[error("change your password first (POST /v1/account/password)")]
    PasswordChangeRequired,
    /// The person is already a member of the account; `field` names what said who
    /// (`email` when adding, `account_id` when accepting an invitation).
    #[error("already a member of this account")]
    AlreadyMember { field: &'static str },
    #[error(transparent)]
    Manage(#[from] ManageError),
    #[error("password hashing failed")]
    Hashing(#[source] crate::password::HashFailure),
}

impl From<StorageError> for PeopleError {
    fn from(error: StorageError) -> Self {
        Self::Manage(ManageError::Storage(error))
    }
}

impl From<FieldErrors> for PeopleError {
    fn from(errors: FieldErrors) -> Self {
        Self::Manage(ManageError::Invalid(errors))
    }
}
