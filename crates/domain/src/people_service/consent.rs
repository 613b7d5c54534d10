//! The people use cases that need the person's own word (SPEC §7, issue #13): changing a
//! password (and ending what the old one opened). Invitations are in `invitations`.

use super::{Audited, PeopleService, metadata};
use crate::{
    audit::{Action, AuditResult, RequestContext},
    error::PeopleError,
    id::{AccountId, SessionId, UserId},
    key_service::{Principal, Via},
    password::Password,
    people::Session,
    ports::{PasswordHasher, Store},
    ratelimit::RateLimiter,
    validation::FieldErrors,
};

/// What [`PeopleService::end_login_credentials`] ended.
#[derive(Debug, Clone, Copy)]
pub struct EndedCredentials {
    pub sessions: usize,
    pub temporary_keys: usize,
}

impl EndedCredentials {
    /// Audit metadata; `replaced` sessions (ended and reopened) count as ended.
    pub(super) fn metadata(self, replaced: usize) -> serde_json::Map<String, serde_json::Value> {
        metadata(&[
            ("sessions_ended", &(self.sessions + replaced).to_string()),
            ("temporary_keys_revoked", &self.temporary_keys.to_string()),
        ])
    }
}

impl<S: Store, H: PasswordHasher, L: RateLimiter> PeopleService<S, H, L> {
    /// `POST /v1/account/password`: the session's user proves the current password and
    /// sets a new one. The session ends and a fresh one replaces it (whatever this session
    /// was allowed before — including nothing but this call — the new one is an ordinary
    /// session). Attempts count against the login throttles like step-up.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: Password,
        new: Password,
        ctx: &RequestContext,
    ) -> Result<(super::SessionToken, Session), PeopleError> {
        let Via::Session { id, user_id, .. } = principal.via else { return Err(PeopleError::SessionRequired) };
        let now = self.keys.now();
        let user = self.store().get_user(user_id).await?.ok_or(PeopleError::InvalidCredentials)?;
        let email = user.email.as_str().to_owned();
        let audit = |result, reason: &str| {
            self.audit(
                ctx,
                Audited {
                    action: Action::PasswordChange,
                    account: Some(principal.account_id),
                    actor: principal.actor(),
                    resource_id: Some(user_id.to_string()),
                    result,
                    metadata: if reason.is_empty() { Default::default() } else { metadata(&[("reason", reason)]) },
                },
            );
        };
        if let Err(retry_after_seconds) = self.admit_attempt(ctx.ip, &email, now).await {
            audit(AuditResult::Denied, "throttled");
            return Err(PeopleError::Throttled { retry_after_seconds });
        }
        let check =
            self.hasher.verify(current.clone(), Some(user.password_hash)).await.map_err(PeopleError::Hashing)?;
        if !check.matches {
            self.record_failure(&email, now).await;
            audit(AuditResult::Failure, "invalid_credentials");
            return Err(PeopleError::InvalidCredentials);
        }
        if new.expose_secret() == current.expose_secret() {
            return Err(FieldErrors::single("new_password", "must differ from the current password").into());
        }
        let hash = self.hasher.hash(new).await.map_err(PeopleError::Hashing)?;
        self.store().set_password_hash(user_id, &hash, false, now).await?;
        // Whatever the old password opened ends with it: every other session, every
        // temporary key (this session's too), in every account of the login.
        let ended = self.end_login_credentials(user_id, Some(id)).await?;
        let session = self.replace_session(id, principal.account_id).await?;
        self.audit(
            ctx,
            Audited {
                action: Action::PasswordChange,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(user_id.to_string()),
                result: AuditResult::Success,
                metadata: ended.metadata(1),
            },
        );
        Ok(session)
    }

    /// Ends every session of `user` but `keep` and revokes every temporary key their logins
    /// minted, in every account the user belongs to (a removal already revoked the keys of
    /// the accounts they left). Stores evict revoked keys from every instance's cache, and
    /// sessions are read on every request, so nothing outlives this call anywhere.
    pub(super) async fn end_login_credentials(
        &self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> Result<EndedCredentials, PeopleError> {
        let sessions = self.store().delete_sessions_of_user(user, keep).await?;
        let now = self.keys.now();
        let mut temporary_keys = 0;
        for (membership, _) in self.store().memberships_of(user).await? {
            for key in self.store().live_temporary_keys(membership.account_id, user, now).await? {
                self.keys.revoke(key).await?;
                temporary_keys += 1;
            }
        }
        Ok(EndedCredentials { sessions, temporary_keys })
    }

    /// Ends session `old` and opens a fresh, unrestricted one for the same user and account.
    async fn replace_session(
        &self,
        old: SessionId,
        account: AccountId,
    ) -> Result<(super::SessionToken, Session), PeopleError> {
        // Gone meanwhile (logged out in another tab): nothing to replace.
        let ended = self.store().delete_session(old).await?.ok_or(PeopleError::InvalidCredentials)?;
        self.open_session(ended.user_id, Some(account)).await
    }
}
