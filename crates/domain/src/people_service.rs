//! The people use cases: login and logout, sessions and the step-up window, users and
//! roles, account keys, and temporary keys. Written against the ports, like `KeyService`,
//! which it uses for everything about keys.

mod account_keys;
mod consent;
mod members;

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
    people::{Email, Invitation, Membership, Role, Session, TEMPORARY_KEY_IDLE_SECONDS, TEMPORARY_KEY_LIFETIME, User},
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
        const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = String::with_capacity(43);
        let mut bytes = [0u8; 64];
        while out.len() < 43 {
            rng.fill(&mut bytes);
            for b in bytes.iter().copied().filter(|b| *b < 248).take(43 - out.len()) {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        Self(out)
    }

    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(self.0.as_bytes()).as_bytes()
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
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
    pub account: Account,
    pub role: Role,
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

/// A member added by `POST /v1/account/users`; `password` is set when a new user was
/// created, to be shown once. `invited`: the person existed already, so they were only
/// invited, and `membership` is what they will have once they accept.
#[derive(Debug)]
pub struct AddedMember {
    pub user: User,
    pub membership: Membership,
    pub initial_password: Option<Password>,
    pub invited: bool,
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
}

impl<S: Clone, H: Clone, L> Clone for PeopleService<S, H, L> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            hasher: self.hasher.clone(),
            audit: self.audit.clone(),
            limiter: self.limiter.clone(),
            login_limits: self.login_limits,
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
        Self { keys, hasher, audit, limiter, login_limits }
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
            Some(id) => memberships.iter().find(|(m, _)| m.account_id == id),
            None => memberships.first(),
        };
        let Some((membership, _)) = chosen.cloned() else {
            deny(self, AuditResult::Denied, "no_membership");
            return Err(ManageError::Forbidden(crate::error::Refusal::NotAMember).into());
        };
        let account = self.store().get_account(membership.account_id).await?.ok_or(ManageError::NotFound)?;

        // A password someone else chose opens a session that may only change it; no key is
        // minted from it.
        let restricted = user.password_change_required;
        // A temporary key is a management key: only plans with account keys have them.
        if input.temporary_key && !restricted && !self.keys.config().plans.limits(account.plan).account_keys_allowed {
            deny(self, AuditResult::Denied, "plan_required");
            return Err(PeopleError::PlanRequired);
        }
        let temporary_key = if input.temporary_key && !restricted {
            let plaintext =
                key_format::generate(&self.keys.config().temporary_key_prefix, Environment::Live, self.keys.rng());
            let key = self.keys.blank_key(
                &account,
                None,
                KeyKind::Temporary,
                "login",
                Environment::Live,
                &plaintext,
                Actor::User(user.id),
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
                other => {
                    PeopleError::Manage(ManageError::Storage(crate::ports::StorageError::Internal(Box::new(other))))
                }
            })?;
            Some(IssuedKey { key, plaintext })
        } else {
            None
        };

        let token = SessionToken::generate(self.keys.rng());
        let session = Session {
            id: SessionId::generate(now, self.keys.rng()),
            token_hash: token.hash(),
            user_id: user.id,
            account_id: account.id,
            created_at: now,
            last_seen_at: now,
            step_up_at: None,
            temporary_key_id: temporary_key.as_ref().map(|t| t.key.id),
            password_change_required: restricted,
        };
        self.store().insert_session(&session).await?;
        let mut meta = metadata(&[("session_id", &session.id.to_string())]);
        if let Some(t) = &temporary_key {
            meta.insert("temporary_key_id".into(), t.key.id.to_string().into());
        }
        self.audit(
            ctx,
            Audited {
                action: Action::Login,
                account: Some(account.id),
                actor: Actor::User(user.id),
                resource_id: Some(session.id.to_string()),
                result: AuditResult::Success,
                metadata: meta,
            },
        );
        Ok(LoginOutcome { token, session, user, account, role: membership.role, memberships, temporary_key })
    }

    /// Resolves a session cookie. Expired, unknown, or no longer a member: `Unauthorized`.
    pub async fn authenticate_session(&self, token: &SessionToken) -> Result<(Principal, Session), AuthError> {
        let now = self.keys.now();
        let session = self.store().find_session(&token.hash()).await?.ok_or(AuthError::Unauthorized)?;
        if !session.is_live(now) {
            self.store().delete_session(session.id).await?;
            return Err(AuthError::Unauthorized);
        }
        let membership =
            self.store().get_membership(session.account_id, session.user_id).await?.ok_or(AuthError::Unauthorized)?;
        // The idle timeout slides; recording it once a minute is precise enough.
        if session.last_seen_at + Duration::minutes(1) <= now {
            self.store().touch_session(session.id, now).await?;
        }
        let principal = Principal {
            account_id: session.account_id,
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

    /// Ends the session and revokes the temporary key its login minted.
    pub async fn logout(&self, principal: &Principal, ctx: &RequestContext) -> Result<(), PeopleError> {
        let Via::Session { id, .. } = principal.via else { return Err(PeopleError::SessionRequired) };
        if let Some(session) = self.store().delete_session(id).await?
            && let Some(key_id) = session.temporary_key_id
            && let Some(key) = self.store().get_key(principal.account_id, key_id).await?
        {
            self.keys.revoke(key).await?;
        }
        self.audit(
            ctx,
            Audited {
                action: Action::Logout,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(id.to_string()),
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
