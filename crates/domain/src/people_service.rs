//! The people use cases: login and logout, sessions and the step-up window, users and
//! roles, account keys, and temporary keys. Written against the ports, like `KeyService`,
//! which it uses for everything about keys.

mod account_keys;
mod consent;
mod invitations;
mod members;
mod reset;

pub use invitations::{Accepted, DelayedMail, InvitationView, LinkToken, SentInvitation};
pub use reset::{MailLinks, RESET_LIFETIME};

use std::{fmt, sync::Arc};

use time::{Duration, OffsetDateTime};

use crate::{
    account::Account,
    audit::{Action, AuditEvent, AuditResult, AuditSink, RequestContext},
    error::{AuthError, ManageError, PeopleError},
    id::{AccountId, EventId, KeyId, SessionId, UserId},
    key::{Actor, Key, KeyKind, MAX_DESCRIPTION_LEN, MAX_NAME_LEN},
    key_format::{self, Environment},
    key_service::{
        IssuedKey, KeyService, MAX_GRACE_PERIOD_SECONDS, Principal, Via, parse_allowlist, parse_scopes, validate_name,
        validate_optional_text,
    },
    password::Password,
    people::{Email, Membership, Role, Session, TEMPORARY_KEY_IDLE_SECONDS, TEMPORARY_KEY_LIFETIME, User},
    plan::Plan,
    ports::{CreateUserError, MembershipError, PasswordHasher, Store, UpdateError},
    ratelimit::RateLimiter,
    scope::management,
    throttle::{LoginLimits, email_subject, ip_subject},
    validation::FieldErrors,
};

/// The secret in the session cookie: 43 base62 characters (~256 bits). Only its BLAKE3
/// hash is stored. `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    fn generate(rng: &dyn crate::random::RandomSource) -> Self {
        Self(random_token(rng))
    }

    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(self.0.as_bytes()).as_bytes()
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// 43 base62 characters (~256 bits) from `rng`, unbiased: what a session cookie and an
/// e-mailed link carry.
fn random_token(rng: &dyn crate::random::RandomSource) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(43);
    let mut bytes = [0u8; 64];
    while out.len() < 43 {
        rng.fill(&mut bytes);
        for b in bytes.iter().copied().filter(|b| *b < 248).take(43 - out.len()) {
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    out
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// `POST /v1/auth/login`
#[derive(Debug, Clone)]
pub struct LoginInput {
    pub email: String,
    pub password: Password,
    pub account_id: Option<AccountId>,
    pub temporary_key: bool,
}

/// A successful login.
#[derive(Debug)]
pub struct LoginOutcome {
    pub token: SessionToken,
    pub session: Session,
    pub user: User,
    /// The account entered, with the role there; `None` for a login that belongs to no
    /// account (yet), whose session may only see its invitations, accept one, or log out.
    pub account: Option<(Account, Role)>,
    pub memberships: Vec<(Membership, String)>,
    pub temporary_key: Option<IssuedKey>,
}

/// `POST /v1/account/keys`
#[derive(Debug, Clone, Default)]
pub struct NewAccountKey {
    pub name: String,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub ip_allowlist: Option<Vec<String>>,
}

/// `PATCH /v1/account/keys/{id}`
#[derive(Debug, Clone, Default)]
pub struct AccountKeyPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

/// A member added by the operator (CLI); `initial_password` is set when a new user was
/// created with a generated password, to be shown once.
#[derive(Debug)]
pub struct AddedMember {
    pub user: User,
    pub membership: Membership,
    pub initial_password: Option<Password>,
}

/// The people use cases over one store, one password hasher and one rate limiter (login
/// throttling).
#[derive(Debug)]
pub struct PeopleService<S, H, L> {
    keys: KeyService<S>,
    hasher: H,
    audit: Arc<dyn AuditSink>,
    limiter: Arc<L>,
    login_limits: LoginLimits,
    /// `Some` when a mailer sends the links; `None`: links are handed over by whoever
    /// invites, and no reset mail can be sent.
    mail: Option<MailLinks>,
}

impl<S: Clone, H: Clone, L> Clone for PeopleService<S, H, L> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            hasher: self.hasher.clone(),
            audit: self.audit.clone(),
            limiter: self.limiter.clone(),
            login_limits: self.login_limits,
            mail: self.mail.clone(),
        }
    }
}

/// Audit metadata never holds secrets; this builds it from plain strings only.
/// What a use case says of an event it audits; the request's context, the id and the time
/// are added by [`PeopleService::audit`].
struct Audited {
    action: Action,
    account: Option<AccountId>,
    actor: Actor,
    resource_id: Option<String>,
    result: AuditResult,
    metadata: serde_json::Map<String, serde_json::Value>,
}

fn metadata(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned()))).collect()
}

impl<S: Store, H: PasswordHasher, L: RateLimiter> PeopleService<S, H, L> {
    pub fn new(
        keys: KeyService<S>,
        hasher: H,
        audit: Arc<dyn AuditSink>,
        limiter: Arc<L>,
        login_limits: LoginLimits,
    ) -> Self {
        Self { keys, hasher, audit, limiter, login_limits, mail: None }
    }

    /// Sends invitations' and resets' links by mail, pointing at `links`.
    pub fn with_mail(self, links: MailLinks) -> Self {
        Self { mail: Some(MailLinks { public_url: links.public_url.trim_end_matches('/').to_owned() }), ..self }
    }

    /// Whether a mailer sends the links.
    pub fn mails_links(&self) -> bool {
        self.mail.is_some()
    }

    /// Refuses an attempt when its IP or its email is over the login limits. The IP's
    /// attempt is counted; the email's failures are only read here.
    async fn admit_attempt(&self, ip: Option<std::net::IpAddr>, email: &str, now: OffsetDateTime) -> Result<(), u64> {
        if let Some(ip) = ip {
            let decision = self.limiter.check(&ip_subject(ip), &self.login_limits.per_ip(), 1, now).await;
            if !decision.allowed {
                return Err(decision.retry_after_seconds);
            }
        }
        let decision = self.limiter.peek(&email_subject(email), &self.login_limits.per_email(), 1, now).await;
        if decision.allowed { Ok(()) } else { Err(decision.retry_after_seconds) }
    }

    async fn record_failure(&self, email: &str, now: OffsetDateTime) {
        self.limiter.check(&email_subject(email), &self.login_limits.per_email(), 1, now).await;
    }

    pub fn keys(&self) -> &KeyService<S> {
        &self.keys
    }

    fn store(&self) -> &S {
        self.keys.store()
    }

    fn audit(&self, ctx: &RequestContext, event: Audited) {
        let now = self.keys.now();
        self.audit.record(AuditEvent {
            id: EventId::generate(now, self.keys.rng()),
            ts: now,
            account_id: event.account,
            actor: event.actor,
            action: event.action.as_str().into(),
            resource_type: event.action.resource_type().into(),
            resource_id: event.resource_id,
            result: event.result,
            context: ctx.clone(),
            metadata: event.metadata,
        });
    }

    // --- login, sessions, step-up -----------------------------------------------------------

    pub async fn login(&self, input: LoginInput, ctx: &RequestContext) -> Result<LoginOutcome, PeopleError> {
        let now = self.keys.now();
        let deny = |this: &Self, result: AuditResult, reason: &str| {
            this.audit(
                ctx,
                Audited {
                    action: Action::LoginFailed,
                    account: None,
                    actor: Actor::System,
                    resource_id: None,
                    result,
                    metadata: metadata(&[("reason", reason)]),
                },
            );
        };
        if let Err(retry_after_seconds) = self.admit_attempt(ctx.ip, &input.email, now).await {
            deny(self, AuditResult::Denied, "throttled");
            return Err(PeopleError::Throttled { retry_after_seconds });
        }
        let user = match Email::new(&input.email) {
            Ok(email) => self.store().find_user_by_email(&email).await?,
            Err(_) => None,
        };
        // An unknown email still costs one hash verification, so timing tells nothing.
        let check = self
            .hasher
            .verify(input.password.clone(), user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(PeopleError::Hashing)?;
        let Some(user) = user.filter(|_| check.matches) else {
            self.record_failure(&input.email, now).await;
            deny(self, AuditResult::Failure, "invalid_credentials");
            return Err(PeopleError::InvalidCredentials);
        };
        if check.needs_rehash {
            let rehashed = self.hasher.hash(input.password).await.map_err(PeopleError::Hashing)?;
            let keep = user.password_change_required;
            self.store().set_password_hash(user.id, &rehashed, keep, now).await.map_err(|e| match e {
                UpdateError::NotFound => PeopleError::InvalidCredentials,
                UpdateError::Storage(e) => e.into(),
            })?;
        }

        let memberships = self.store().memberships_of(user.id).await?;
        let chosen = match input.account_id {
            Some(id) => match memberships.iter().find(|(m, _)| m.account_id == id) {
                Some(found) => Some(found),
                None => {
                    deny(self, AuditResult::Denied, "no_membership");
                    return Err(ManageError::Forbidden(crate::error::Refusal::NotAMember).into());
                }
            },
            // A login of no account signs in all the same, to see and accept its invitations.
            None => memberships.first(),
        };
        let entered = match chosen {
            Some((membership, _)) => {
                let account = self.store().get_account(membership.account_id).await?.ok_or(ManageError::NotFound)?;
                Some((account, *membership))
            }
            None => None,
        };

        // A password someone else chose opens a session that may only change it; no key is
        // minted from it.
        let restricted = user.password_change_required;
        let temporary_key = match &entered {
            Some((account, membership)) if input.temporary_key && !restricted => {
                // A temporary key is a management key: only plans with account keys have them.
                if !self.keys.config().plans.limits(account.plan).account_keys_allowed {
                    deny(self, AuditResult::Denied, "plan_required");
                    return Err(PeopleError::PlanRequired);
                }
                Some(self.mint_temporary_key(account, membership, user.id, now).await?)
            }
            _ => None,
        };

        let (token, session) = self
            .start_session(
                user.id,
                entered.as_ref().map(|(a, _)| a.id),
                temporary_key.as_ref().map(|t| t.key.id),
                restricted,
            )
            .await?;
        let mut meta = metadata(&[("session_id", &session.id.to_string())]);
        if let Some(t) = &temporary_key {
            meta.insert("temporary_key_id".into(), t.key.id.to_string().into());
        }
        self.audit(
            ctx,
            Audited {
                action: Action::Login,
                account: entered.as_ref().map(|(a, _)| a.id),
                actor: Actor::User(user.id),
                resource_id: Some(session.id.to_string()),
                result: AuditResult::Success,
                metadata: meta,
            },
        );
        let account = entered.map(|(account, membership)| (account, membership.role));
        Ok(LoginOutcome { token, session, user, account, memberships, temporary_key })
    }

    /// A temporary key carrying `membership`'s role, minted at login.
    async fn mint_temporary_key(
        &self,
        account: &Account,
        membership: &Membership,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<IssuedKey, PeopleError> {
        let plaintext =
            key_format::generate(&self.keys.config().temporary_key_prefix, Environment::Live, self.keys.rng());
        let key = self.keys.blank_key(
            account,
            None,
            KeyKind::Temporary,
            "login",
            Environment::Live,
            &plaintext,
            Actor::User(user),
            now,
        );
        let key = Key {
            scopes: membership.role.scopes(),
            expires_at: Some(now + TEMPORARY_KEY_LIFETIME),
            idle_timeout_seconds: Some(TEMPORARY_KEY_IDLE_SECONDS),
            ..key
        };
        self.store().insert_keys(std::slice::from_ref(&key), None).await.map_err(|e| match e {
            crate::ports::InsertKeyError::Storage(e) => PeopleError::from(e),
            other => PeopleError::Manage(ManageError::Storage(crate::ports::StorageError::Internal(Box::new(other)))),
        })?;
        Ok(IssuedKey { key, plaintext })
    }

    /// Opens an ordinary session of `user` in `account` (`None`: a login of no account).
    async fn open_session(
        &self,
        user: UserId,
        account: Option<AccountId>,
    ) -> Result<(SessionToken, Session), PeopleError> {
        self.start_session(user, account, None, false).await
    }

    /// Opens a session with the temporary key its login minted, and whether it may only
    /// change a password someone else chose.
    async fn start_session(
        &self,
        user: UserId,
        account: Option<AccountId>,
        temporary_key_id: Option<KeyId>,
        password_change_required: bool,
    ) -> Result<(SessionToken, Session), PeopleError> {
        let now = self.keys.now();
        let token = SessionToken::generate(self.keys.rng());
        let session = Session {
            id: SessionId::generate(now, self.keys.rng()),
            token_hash: token.hash(),
            user_id: user,
            account_id: account,
            created_at: now,
            last_seen_at: now,
            step_up_at: None,
            temporary_key_id,
            password_change_required,
        };
        self.store().insert_session(&session).await?;
        Ok((token, session))
    }

    /// [`Self::authenticate_login`] for a use case: no live session is `SignInRequired`.
    async fn signed_in(&self, token: &SessionToken) -> Result<Session, PeopleError> {
        self.authenticate_login(token).await.map_err(|e| match e {
            AuthError::Storage(e) => PeopleError::from(e),
            _ => PeopleError::SignInRequired,
        })
    }

    /// Resolves a session cookie to its live session, whatever the account (or none): what
    /// a login may do before it belongs to an account. Expired or unknown: `Unauthorized`.
    pub async fn authenticate_login(&self, token: &SessionToken) -> Result<Session, AuthError> {
        let now = self.keys.now();
        let session = self.store().find_session(&token.hash()).await?.ok_or(AuthError::Unauthorized)?;
        if !session.is_live(now) {
            self.store().delete_session(session.id).await?;
            return Err(AuthError::Unauthorized);
        }
        // The idle timeout slides; recording it once a minute is precise enough.
        if session.last_seen_at + Duration::minutes(1) <= now {
            self.store().touch_session(session.id, now).await?;
        }
        Ok(session)
    }

    /// Resolves a session cookie. Expired, unknown, or no longer a member: `Unauthorized`;
    /// a login of no account: `NoAccount`.
    pub async fn authenticate_session(&self, token: &SessionToken) -> Result<(Principal, Session), AuthError> {
        let session = self.authenticate_login(token).await?;
        // A login of no account has no principal: it may only use the routes that take a
        // login (its session, its invitations, logout).
        let Some(account_id) = session.account_id else { return Err(AuthError::NoAccount) };
        let membership =
            self.store().get_membership(account_id, session.user_id).await?.ok_or(AuthError::Unauthorized)?;
        let principal = Principal {
            account_id,
            via: Via::Session {
                id: session.id,
                user_id: session.user_id,
                role: membership.role,
                step_up_until: session.step_up_expires_at(),
                password_change_required: session.password_change_required,
            },
            scopes: membership.role.scopes(),
        };
        Ok((principal, session))
    }

    /// Ends the session of the cookie `token` and revokes the temporary key its login
    /// minted. Any live session may log out, a login of no account's included.
    pub async fn logout(&self, token: &SessionToken, ctx: &RequestContext) -> Result<(), PeopleError> {
        let session = self.signed_in(token).await?;
        if let Some(ended) = self.store().delete_session(session.id).await?
            && let (Some(account), Some(key_id)) = (ended.account_id, ended.temporary_key_id)
            && let Some(key) = self.store().get_key(account, key_id).await?
        {
            self.keys.revoke(key).await?;
        }
        self.audit(
            ctx,
            Audited {
                action: Action::Logout,
                account: session.account_id,
                actor: Actor::User(session.user_id),
                resource_id: Some(session.id.to_string()),
                result: AuditResult::Success,
                metadata: Default::default(),
            },
        );
        Ok(())
    }

    /// Re-verifies the password and opens the step-up window of this session only.
    pub async fn verify_password(
        &self,
        principal: &Principal,
        password: Password,
        ctx: &RequestContext,
    ) -> Result<OffsetDateTime, PeopleError> {
        let Via::Session { id, user_id, .. } = principal.via else { return Err(PeopleError::SessionRequired) };
        let now = self.keys.now();
        let user = self.store().get_user(user_id).await?.ok_or(PeopleError::InvalidCredentials)?;
        let email = user.email.as_str().to_owned();
        if let Err(retry_after_seconds) = self.admit_attempt(ctx.ip, &email, now).await {
            self.audit(
                ctx,
                Audited {
                    action: Action::VerifyPassword,
                    account: Some(principal.account_id),
                    actor: principal.actor(),
                    resource_id: Some(user_id.to_string()),
                    result: AuditResult::Denied,
                    metadata: metadata(&[("reason", "throttled")]),
                },
            );
            return Err(PeopleError::Throttled { retry_after_seconds });
        }
        let check = self.hasher.verify(password, Some(user.password_hash)).await.map_err(PeopleError::Hashing)?;
        if !check.matches {
            self.record_failure(&email, now).await;
            self.audit(
                ctx,
                Audited {
                    action: Action::VerifyPassword,
                    account: Some(principal.account_id),
                    actor: principal.actor(),
                    resource_id: Some(user_id.to_string()),
                    result: AuditResult::Failure,
                    metadata: Default::default(),
                },
            );
            return Err(PeopleError::InvalidCredentials);
        }
        self.store().set_step_up(id, now).await?;
        self.audit(
            ctx,
            Audited {
                action: Action::VerifyPassword,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(user_id.to_string()),
                result: AuditResult::Success,
                metadata: Default::default(),
            },
        );
        Ok(now + crate::people::STEP_UP_WINDOW)
    }

    /// `GET /v1/auth/session`: the login of the cookie `token`, and the account it works in
    /// with its role there (`None` for a login of no account).
    pub async fn login_view(
        &self,
        token: &SessionToken,
    ) -> Result<(Session, User, Option<(Account, Role)>), PeopleError> {
        let session = self.signed_in(token).await?;
        let user = self.store().get_user(session.user_id).await?.ok_or(PeopleError::InvalidCredentials)?;
        let Some(account_id) = session.account_id else { return Ok((session, user, None)) };
        let membership =
            self.store().get_membership(account_id, user.id).await?.ok_or(PeopleError::InvalidCredentials)?;
        let account = self.store().get_account(account_id).await?.ok_or(ManageError::NotFound)?;
        Ok((session, user, Some((account, membership.role))))
    }

    pub async fn current_user(&self, principal: &Principal) -> Result<(User, Account, Role), PeopleError> {
        let Via::Session { user_id, role, .. } = principal.via else { return Err(PeopleError::SessionRequired) };
        let user = self.store().get_user(user_id).await?.ok_or(ManageError::NotFound)?;
        let account = self.store().get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
        Ok((user, account, role))
    }

    // --- guards ---------------------------------------------------------------------------

    /// A session of an admin or owner; with `step_up`, inside its step-up window.
    fn manager_session(&self, principal: &Principal, step_up: bool) -> Result<(UserId, Role), PeopleError> {
        let Via::Session { user_id, role, step_up_until, .. } = principal.via else {
            return Err(PeopleError::SessionRequired);
        };
        if !role.manages_account() {
            return Err(ManageError::Forbidden(crate::error::Refusal::NotAnAdmin).into());
        }
        if step_up && step_up_until.is_none_or(|until| self.keys.now() >= until) {
            return Err(PeopleError::StepUpRequired);
        }
        Ok((user_id, role))
    }

    async fn account(&self, principal: &Principal) -> Result<Account, PeopleError> {
        Ok(self.store().get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?)
    }

    /// The account, if its plan includes account keys (403 `plan_required` otherwise): every
    /// path that creates or widens one checks it, not only creation.
    async fn account_with_account_keys(&self, principal: &Principal) -> Result<Account, PeopleError> {
        let account = self.account(principal).await?;
        if self.keys.config().plans.limits(account.plan).account_keys_allowed {
            Ok(account)
        } else {
            Err(PeopleError::PlanRequired)
        }
    }
}
