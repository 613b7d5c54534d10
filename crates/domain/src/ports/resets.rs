//! The password resets' storage port (issue #29): a link mailed to a login's address,
//! stored as its token's hash, used once, for an hour.

use std::future::Future;

use time::OffsetDateTime;

use crate::{
    id::{ResetId, UserId},
    ports::StorageError,
};

/// A password reset waiting for its link to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub id: ResetId,
    pub user_id: UserId,
    pub token_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub trait PasswordResetStore: Send + Sync {
    /// Records `reset`, replacing any the user had: only the newest link works.
    fn insert_reset(&self, reset: &PasswordReset) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Deletes and returns the reset whose token hashes to `token_hash`, live or not: the
    /// one way to use one, so that of two concurrent uses only one gets it.
    fn take_reset(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<PasswordReset>, StorageError>> + Send;
}
