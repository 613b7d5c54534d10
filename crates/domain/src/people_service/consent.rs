//! The people use cases that need the person's own word (SPEC §7, issue #13): changing a
//! password that someone else chose, and accepting or declining an invitation to another
//! account.

use super::{Audited, PeopleService, metadata};
use crate::{
    audit::{Action, AuditResult, RequestContext},
    error::{ManageError, PeopleError},
    id::{AccountId, SessionId, UserId},
    key_service::{Principal, Via},
    password::Password,
    people::{Invitation, Membership, Session},
    ports::{MembershipError, PasswordHasher, Store},
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
    fn metadata(self, replaced: usize) -> serde_json::Map<String, serde_json::Value> {
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
        let now = self.keys.now();
        let token = super::SessionToken::generate(self.keys.rng());
        let session = Session {
            id: SessionId::generate(now, self.keys.rng()),
            token_hash: token.hash(),
            user_id: ended.user_id,
            account_id: account,
            created_at: now,
            last_seen_at: now,
            step_up_at: None,
            temporary_key_id: None,
            password_change_required: false,
        };
        self.store().insert_session(&session).await?;
        Ok((token, session))
    }

    /// `GET /v1/auth/invitations`: what waits for the session's user, with each account's
    /// name.
    pub async fn invitations(&self, principal: &Principal) -> Result<Vec<(Invitation, String)>, PeopleError> {
        let Via::Session { user_id, .. } = principal.via else { return Err(PeopleError::SessionRequired) };
        Ok(self.store().invitations_of(user_id).await?)
    }

    /// Accepts (or declines) the session's user's invitation to `account`. Only the
    /// invited person can: the invitation is looked up by their own user id.
    pub async fn answer_invitation(
        &self,
        principal: &Principal,
        account: AccountId,
        accept: bool,
        ctx: &RequestContext,
    ) -> Result<Option<Membership>, PeopleError> {
        let Via::Session { user_id, .. } = principal.via else { return Err(PeopleError::SessionRequired) };
        let answered =
            self.store().answer_invitation(account, user_id, accept, self.keys.now()).await.map_err(|e| match e {
                MembershipError::NotFound => PeopleError::from(ManageError::NotFound),
                MembershipError::Duplicate => PeopleError::AlreadyMember { field: "account_id" },
                MembershipError::LastOwner => ManageError::NotFound.into(),
                MembershipError::Storage(e) => e.into(),
            })?;
        // The event belongs to the account the person joined (or turned down).
        self.audit(
            ctx,
            Audited {
                action: if accept { Action::InvitationAccept } else { Action::InvitationDecline },
                account: Some(account),
                actor: principal.actor(),
                resource_id: Some(user_id.to_string()),
                result: AuditResult::Success,
                metadata: answered.map(|m| metadata(&[("role", m.role.as_str())])).unwrap_or_default(),
            },
        );
        Ok(answered)
    }
}
