//! Password reset by mail (issue #29): a link sent to a login's address, used once, for an
//! hour; using it sets the password and ends every session and temporary key of the login.
//! Asking answers the same for every address, so nothing can be learnt of who has a login.

use super::*;
use crate::{
    id::ResetId,
    mail::{Mail, templates},
    people_service::invitations::LinkToken,
    ports::PasswordReset,
};

/// Where mailed links point, when a mailer is configured (`KEYWARD_SMTP_URL`).
#[derive(Debug, Clone)]
pub struct MailLinks {
    /// The public URL links start with, without a trailing `/`.
    pub public_url: String,
}

/// How long a reset's link works.
pub const RESET_LIFETIME: Duration = Duration::hours(1);

/// The limiter's subject of resets asked for `email`.
fn reset_subject(email: &str) -> Vec<u8> {
    let mut subject = b"reset-email:".to_vec();
    subject.extend_from_slice(email.trim().to_lowercase().as_bytes());
    subject
}

impl<S: Store, H: PasswordHasher, L: RateLimiter> PeopleService<S, H, L> {
    /// `POST /v1/auth/password-reset`: with a mailer, a known address gets a link; any
    /// address gets the same answer. Throttled per client and per address like login.
    pub async fn request_password_reset(&self, email: &str, ctx: &RequestContext) -> Result<(), PeopleError> {
        let now = self.keys.now();
        let email = Email::new(email).map_err(|e| FieldErrors::single("email", e.to_string()))?;
        if let Some(ip) = ctx.ip {
            let decision = self.limiter.check(&ip_subject(ip), &self.login_limits.per_ip(), 1, now).await;
            if !decision.allowed {
                return Err(PeopleError::Throttled { retry_after_seconds: decision.retry_after_seconds });
            }
        }
        let decision = self.limiter.check(&reset_subject(email.as_str()), &self.login_limits.per_email(), 1, now).await;
        if !decision.allowed {
            return Err(PeopleError::Throttled { retry_after_seconds: decision.retry_after_seconds });
        }
        let user = self.store().find_user_by_email(&email).await?;
        let sent = match (&self.mail, &user) {
            (Some(links), Some(user)) => {
                let token = LinkToken::generate(self.keys.rng());
                let reset = PasswordReset {
                    id: ResetId::generate(now, self.keys.rng()),
                    user_id: user.id,
                    token_hash: token.hash(),
                    created_at: now,
                    expires_at: now + RESET_LIFETIME,
                };
                self.store().insert_reset(&reset).await?;
                let link = format!("{}/password-reset/{}", links.public_url, token.expose_secret());
                let words = templates::password_reset(&user.email, &link);
                self.enqueue(None, &user.email, words, now).await?;
                true
            }
            _ => false,
        };
        self.audit(
            ctx,
            Audited {
                action: Action::PasswordResetRequest,
                account: None,
                actor: user.as_ref().map_or(Actor::System, |u| Actor::User(u.id)),
                resource_id: user.as_ref().map(|u| u.id.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[("mailed", if sent { "true" } else { "false" })]),
            },
        );
        Ok(())
    }

    /// `POST /v1/auth/password-reset/{token}`: sets the login's password and ends every
    /// session and temporary key it had. Unknown, used and expired links: `NotFound`.
    pub async fn reset_password(
        &self,
        token: &LinkToken,
        password: Password,
        ctx: &RequestContext,
    ) -> Result<User, PeopleError> {
        let now = self.keys.now();
        let reset = self.store().take_reset(&token.hash()).await?;
        let reset = reset.filter(|r| now < r.expires_at).ok_or(ManageError::NotFound)?;
        let user = self.store().get_user(reset.user_id).await?.ok_or(ManageError::NotFound)?;
        let hash = self.hasher.hash(password).await.map_err(PeopleError::Hashing)?;
        self.store().set_password_hash(user.id, &hash, false, now).await?;
        let ended = self.end_login_credentials(user.id, None).await?;
        self.audit(
            ctx,
            Audited {
                action: Action::PasswordReset,
                account: None,
                actor: Actor::User(user.id),
                resource_id: Some(user.id.to_string()),
                result: AuditResult::Success,
                metadata: ended.metadata(0),
            },
        );
        Ok(user)
    }

    /// Writes a mail to the outbox, in the caller's unit of work.
    pub(super) async fn enqueue(
        &self,
        account: Option<AccountId>,
        to: &Email,
        words: templates::Rendered,
        now: OffsetDateTime,
    ) -> Result<(), PeopleError> {
        let mail = Mail {
            id: crate::id::MailId::generate(now, self.keys.rng()),
            account_id: account,
            to: to.clone(),
            subject: words.subject,
            text: words.text,
            html: words.html,
            created_at: now,
        };
        Ok(self.store().enqueue_mail(&mail).await?)
    }
}
