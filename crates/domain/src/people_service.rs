//! The people use cases: login and logout, sessions and the step-up window, users and
//! roles, account keys, and temporary keys. Written against the ports, like `KeyService`,
//! which it uses for everything about keys.

mod consent;

use std::{fmt, sync::Arc};

use time::{Duration, OffsetDateTime};

use crate::{
    account::Account,
    audit::{AuditEvent, AuditResult, AuditSink, RequestContext},
    error::{AuthError, ManageError, PeopleError},
    id::{AccountId, EventId, KeyId, SessionId, UserId},
    key::{Actor, Environment, Key, KeyKind, MAX_DESCRIPTION_LEN, MAX_NAME_LEN},
    key_format,
    password::Password,
    people::{Email, Invitation, Membership, Role, Session, TEMPORARY_KEY_IDLE_SECONDS, TEMPORARY_KEY_LIFETIME, User},
    plan::Plan,
    ports::{CreateUserError, MembershipError, PasswordHasher, Store, UpdateError},
    ratelimit::RateLimiter,
    scope::management,
    service::{
        IssuedKey, KeyService, MAX_GRACE_PERIOD_SECONDS, Principal, Via, parse_allowlist, parse_scopes, validate_name,
        validate_optional_text,
    },
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

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        ctx: &RequestContext,
        account: Option<AccountId>,
        actor: Actor,
        action: &'static str,
        resource: (&'static str, Option<String>),
        result: AuditResult,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) {
        let now = self.keys.now();
        self.audit.record(AuditEvent {
            id: EventId::generate(now, self.keys.rng()),
            ts: now,
            account_id: account,
            actor,
            action: action.into(),
            resource_type: resource.0.into(),
            resource_id: resource.1,
            result,
            context: ctx.clone(),
            metadata,
        });
    }

    // --- login, sessions, step-up -----------------------------------------------------------

    pub async fn login(&self, input: LoginInput, ctx: &RequestContext) -> Result<LoginOutcome, PeopleError> {
        let now = self.keys.now();
        let deny = |this: &Self, result: AuditResult, reason: &str| {
            this.audit(
                ctx,
                None,
                Actor::System,
                "auth.login_failed",
                ("user", None),
                result,
                metadata(&[("reason", reason)]),
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
            return Err(ManageError::Forbidden("you are not a member of that account").into());
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
            Some(account.id),
            Actor::User(user.id),
            "auth.login",
            ("session", Some(session.id.to_string())),
            AuditResult::Success,
            meta,
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
            Some(principal.account_id),
            principal.actor(),
            "auth.logout",
            ("session", Some(id.to_string())),
            AuditResult::Success,
            Default::default(),
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
                Some(principal.account_id),
                principal.actor(),
                "auth.verify_password",
                ("user", Some(user_id.to_string())),
                AuditResult::Denied,
                metadata(&[("reason", "throttled")]),
            );
            return Err(PeopleError::Throttled { retry_after_seconds });
        }
        let check = self.hasher.verify(password, Some(user.password_hash)).await.map_err(PeopleError::Hashing)?;
        if !check.matches {
            self.record_failure(&email, now).await;
            self.audit(
                ctx,
                Some(principal.account_id),
                principal.actor(),
                "auth.verify_password",
                ("user", Some(user_id.to_string())),
                AuditResult::Failure,
                Default::default(),
            );
            return Err(PeopleError::InvalidCredentials);
        }
        self.store().set_step_up(id, now).await?;
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "auth.verify_password",
            ("user", Some(user_id.to_string())),
            AuditResult::Success,
            Default::default(),
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
            return Err(ManageError::Forbidden("only owners and admins manage users and account keys").into());
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

    // --- account keys ---------------------------------------------------------------------

    fn check_account_key_scopes(
        errors: &mut FieldErrors,
        role: Role,
        values: &[String],
    ) -> Option<crate::scope::ScopeSet> {
        let scopes = parse_scopes(errors, "scopes", values)?;
        let allowed = role.scopes();
        for scope in scopes.iter().filter(|s| !allowed.grants(s)) {
            errors.push("scopes", format!("{scope} exceeds what your role ({role}) may grant"));
        }
        if scopes.is_empty() {
            errors.push("scopes", "an account key needs at least one scope");
        }
        Some(scopes)
    }

    pub async fn create_account_key(
        &self,
        principal: &Principal,
        input: NewAccountKey,
        ctx: &RequestContext,
    ) -> Result<IssuedKey, PeopleError> {
        let result = self.create_account_key_inner(principal, input).await;
        let (outcome, id) = match &result {
            Ok(issued) => (AuditResult::Success, Some(issued.key.id.to_string())),
            Err(PeopleError::Manage(ManageError::Storage(_)) | PeopleError::Hashing(_)) => (AuditResult::Failure, None),
            Err(_) => (AuditResult::Denied, None),
        };
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "account_key.create",
            ("key", id),
            outcome,
            Default::default(),
        );
        result
    }

    async fn create_account_key_inner(
        &self,
        principal: &Principal,
        input: NewAccountKey,
    ) -> Result<IssuedKey, PeopleError> {
        let (user_id, role) = self.manager_session(principal, false)?;
        let account = self.account_with_account_keys(principal).await?;
        let limits = *self.keys.config().plans.limits(account.plan);
        self.manager_session(principal, true)?;
        let now = self.keys.now();
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", &input.name, MAX_NAME_LEN);
        validate_optional_text(&mut errors, "description", input.description.as_deref(), MAX_DESCRIPTION_LEN);
        let scopes = Self::check_account_key_scopes(&mut errors, role, &input.scopes);
        let ip_allowlist = parse_allowlist(&mut errors, input.ip_allowlist.as_deref().unwrap_or_default());
        if input.expires_at.is_some_and(|at| at <= now) {
            errors.push("expires_at", "must be in the future");
        }
        errors.into_result()?;
        if let Some(max) = limits.max_keys
            && self.store().count_account_keys(account.id, now).await? >= max
        {
            return Err(ManageError::KeyLimitReached.into());
        }
        let plaintext =
            key_format::generate(&self.keys.config().account_key_prefix, Environment::Live, self.keys.rng());
        let key = self.keys.blank_key(
            &account,
            None,
            KeyKind::Account,
            input.name.trim(),
            Environment::Live,
            &plaintext,
            Actor::User(user_id),
            now,
        );
        let key = Key {
            description: input.description,
            scopes: scopes.unwrap_or_default(),
            ip_allowlist,
            expires_at: input.expires_at,
            ..key
        };
        self.store().insert_keys(std::slice::from_ref(&key), None).await.map_err(|e| match e {
            crate::ports::InsertKeyError::Storage(e) => PeopleError::from(e),
            other => PeopleError::Manage(ManageError::Storage(crate::ports::StorageError::Internal(Box::new(other)))),
        })?;
        Ok(IssuedKey { key, plaintext })
    }

    pub async fn list_account_keys(&self, principal: &Principal) -> Result<Vec<Key>, PeopleError> {
        self.manager_session(principal, false)?;
        Ok(self.store().list_account_keys(principal.account_id).await?)
    }

    async fn account_key(&self, principal: &Principal, id: KeyId) -> Result<Key, PeopleError> {
        match self.store().get_key(principal.account_id, id).await? {
            Some(key) if key.kind != KeyKind::Service => Ok(key),
            _ => Err(ManageError::NotFound.into()),
        }
    }

    pub async fn get_account_key(&self, principal: &Principal, id: KeyId) -> Result<Key, PeopleError> {
        self.manager_session(principal, false)?;
        self.account_key(principal, id).await
    }

    pub async fn update_account_key(
        &self,
        principal: &Principal,
        id: KeyId,
        patch: AccountKeyPatch,
        ctx: &RequestContext,
    ) -> Result<Key, PeopleError> {
        let (_, role) = self.manager_session(principal, false)?;
        self.account_with_account_keys(principal).await?;
        let before = self.account_key(principal, id).await?;
        let mut key = before.clone();
        let now = self.keys.now();
        // Widening a key's power is as sensitive as minting one; narrowing is not.
        if Self::widens(&before, &patch) {
            self.manager_session(principal, true)?;
        }
        let mut errors = FieldErrors::new();
        if let Some(name) = patch.name {
            validate_name(&mut errors, "name", &name, MAX_NAME_LEN);
            key.name = name.trim().to_owned();
        }
        if let Some(description) = patch.description {
            validate_optional_text(&mut errors, "description", description.as_deref(), MAX_DESCRIPTION_LEN);
            key.description = description;
        }
        if let Some(values) = patch.scopes
            && let Some(scopes) = Self::check_account_key_scopes(&mut errors, role, &values)
        {
            key.scopes = scopes;
        }
        if let Some(expires_at) = patch.expires_at {
            if expires_at.is_some_and(|at| at <= now) {
                errors.push("expires_at", "must be in the future");
            }
            key.expires_at = expires_at;
        }
        if let Some(list) = patch.ip_allowlist {
            key.ip_allowlist = parse_allowlist(&mut errors, &list);
        }
        if let Some(active) = patch.is_active {
            key.is_active = active;
        }
        errors.into_result()?;
        key.updated_at = now;
        self.store().update_key(&before, &key).await?;
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "account_key.update",
            ("key", Some(id.to_string())),
            AuditResult::Success,
            Default::default(),
        );
        self.account_key(principal, id).await
    }

    /// Whether `patch` would let `key` do more than it can now: any scopes at all (as
    /// before, a scope change always needs step-up), an allowlist not within the current
    /// one, a later or removed expiry, or re-enabling. An allowlist that does not parse
    /// counts as widening; its errors come after the step-up check.
    fn widens(key: &Key, patch: &AccountKeyPatch) -> bool {
        let allowlist_widens = patch.ip_allowlist.as_ref().is_some_and(|entries| {
            let mut wanted = crate::key::IpAllowlist::default();
            entries.iter().any(|entry| wanted.push(entry).is_err()) || !wanted.is_within(&key.ip_allowlist)
        });
        let expiry_widens = patch.expires_at.is_some_and(|wanted| match (key.expires_at, wanted) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(now), Some(later)) => later > now,
        });
        patch.scopes.is_some() || allowlist_widens || expiry_widens || (patch.is_active == Some(true) && !key.is_active)
    }

    pub async fn revoke_account_key(
        &self,
        principal: &Principal,
        id: KeyId,
        ctx: &RequestContext,
    ) -> Result<Key, PeopleError> {
        self.manager_session(principal, false)?;
        self.keys.revoke(self.account_key(principal, id).await?).await?;
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "account_key.revoke",
            ("key", Some(id.to_string())),
            AuditResult::Success,
            Default::default(),
        );
        self.account_key(principal, id).await
    }

    pub async fn rotate_account_key(
        &self,
        principal: &Principal,
        id: KeyId,
        grace_period_seconds: u32,
        ctx: &RequestContext,
    ) -> Result<IssuedKey, PeopleError> {
        let (user_id, _) = self.manager_session(principal, true)?;
        if grace_period_seconds > MAX_GRACE_PERIOD_SECONDS {
            return Err(FieldErrors::single(
                "grace_period_seconds",
                format!("must be 0 to {MAX_GRACE_PERIOD_SECONDS}"),
            )
            .into());
        }
        let account = self.account_with_account_keys(principal).await?;
        let mut old = self.account_key(principal, id).await?;
        if old.revoked_at.is_some() || old.kind != KeyKind::Account {
            return Err(ManageError::Forbidden("only active account keys can be rotated").into());
        }
        let now = self.keys.now();
        let frees_one = grace_period_seconds == 0 && old.status(now) == crate::key::KeyStatus::Active;
        if let Some(max) = self.keys.config().plans.limits(account.plan).max_keys
            && !frees_one
            && self.store().count_account_keys(account.id, now).await? >= max
        {
            return Err(ManageError::KeyLimitReached.into());
        }
        let plaintext = key_format::generate(&self.keys.config().account_key_prefix, old.environment, self.keys.rng());
        let fresh = self.keys.blank_key(
            &account,
            None,
            KeyKind::Account,
            &old.name,
            old.environment,
            &plaintext,
            Actor::User(user_id),
            now,
        );
        let new = Key {
            description: old.description.clone(),
            scopes: old.scopes.clone(),
            ip_allowlist: old.ip_allowlist.clone(),
            expires_at: old.expires_at,
            rotated_from: Some(old.id),
            ..fresh
        };
        let grace_end = now + Duration::seconds(i64::from(grace_period_seconds));
        old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
        old.rotated_to = Some(new.id);
        old.updated_at = now;
        self.store().rotate_key(&old, &new).await?;
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "account_key.rotate",
            ("key", Some(id.to_string())),
            AuditResult::Success,
            metadata(&[("new_key_id", &new.id.to_string())]),
        );
        Ok(IssuedKey { key: new, plaintext })
    }

    // --- users ----------------------------------------------------------------------------

    pub async fn list_users(&self, principal: &Principal) -> Result<Vec<(User, Membership)>, PeopleError> {
        principal.require(management::USERS_READ)?;
        Ok(self.store().members(principal.account_id).await?)
    }

    /// Adds a member. A new email creates a user with a one-time password; an existing
    /// user is simply added. Only an owner may add an owner.
    pub async fn add_user(
        &self,
        principal: &Principal,
        email: &str,
        role: Role,
        ctx: &RequestContext,
    ) -> Result<AddedMember, PeopleError> {
        let (_, my_role) = self.manager_session(principal, true)?;
        if role == Role::Owner && my_role != Role::Owner {
            return Err(ManageError::Forbidden("only an owner can add an owner").into());
        }
        let email = Email::new(email).map_err(|e| FieldErrors::single("email", e.to_string()))?;
        let now = self.keys.now();
        // Someone who already has a login is only invited: joining an account is theirs to
        // accept (an admin must not be able to enrol a stranger's login into their account,
        // nor pre-register one and wait for the stranger to be added elsewhere).
        let added = match self.store().find_user_by_email(&email).await? {
            Some(user) => {
                let invitation = Invitation {
                    account_id: principal.account_id,
                    user_id: user.id,
                    role,
                    invited_by: principal.actor(),
                    created_at: now,
                };
                self.store().invite(&invitation).await.map_err(Self::membership_error)?;
                let membership =
                    Membership { user_id: user.id, account_id: principal.account_id, role, created_at: now };
                AddedMember { user, membership, initial_password: None, invited: true }
            }
            // A password chosen here is the admin's, not the user's: it must be changed at
            // the first login.
            None => self.create_member(principal.account_id, email, role, None, true).await?,
        };
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            if added.invited { "user.invite" } else { "user.create" },
            ("user", Some(added.user.id.to_string())),
            AuditResult::Success,
            metadata(&[("role", role.as_str())]),
        );
        Ok(added)
    }

    /// The operator's path (CLI): no session, no step-up, and the operator's authority
    /// stands in for the person's consent (an existing user is added at once). `password`
    /// of `None` generates one for a new user, shown to the operator who reads it.
    pub async fn add_member(
        &self,
        account: AccountId,
        email: Email,
        role: Role,
        password: Option<Password>,
    ) -> Result<AddedMember, PeopleError> {
        let now = self.keys.now();
        if let Some(user) = self.store().find_user_by_email(&email).await? {
            let membership = Membership { user_id: user.id, account_id: account, role, created_at: now };
            self.store().add_membership(&membership).await.map_err(|e| match e {
                MembershipError::Duplicate => {
                    PeopleError::from(FieldErrors::single("email", "already a member of this account"))
                }
                MembershipError::Storage(e) => e.into(),
                other => {
                    PeopleError::Manage(ManageError::Storage(crate::ports::StorageError::Internal(Box::new(other))))
                }
            })?;
            return Ok(AddedMember { user, membership, initial_password: None, invited: false });
        }
        self.create_member(account, email, role, password, false).await
    }

    /// Creates a user and their membership. `change_required`: the password (given or
    /// generated) was chosen by someone other than the user, who must change it first.
    async fn create_member(
        &self,
        account: AccountId,
        email: Email,
        role: Role,
        password: Option<Password>,
        change_required: bool,
    ) -> Result<AddedMember, PeopleError> {
        let now = self.keys.now();
        let membership_for = |user_id| Membership { user_id, account_id: account, role, created_at: now };
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| Password::generate(self.keys.rng()));
        let hash = self.hasher.hash(password.clone()).await.map_err(PeopleError::Hashing)?;
        let user = User {
            id: UserId::generate(now, self.keys.rng()),
            email,
            password_hash: hash,
            password_change_required: change_required,
            created_at: now,
            updated_at: now,
        };
        let membership = membership_for(user.id);
        self.store().create_user(&user, Some(&membership)).await.map_err(|e| match e {
            CreateUserError::DuplicateEmail => {
                PeopleError::from(FieldErrors::single("email", "a user with this email exists"))
            }
            CreateUserError::Storage(e) => e.into(),
        })?;
        Ok(AddedMember { user, membership, initial_password: generated.then_some(password), invited: false })
    }

    /// Sets a user's password (operator's path: CLI).
    pub async fn set_password(&self, email: &Email, password: Password) -> Result<User, PeopleError> {
        let user = self.store().find_user_by_email(email).await?.ok_or(ManageError::NotFound)?;
        let hash = self.hasher.hash(password).await.map_err(PeopleError::Hashing)?;
        self.store().set_password_hash(user.id, &hash, false, self.keys.now()).await?;
        Ok(user)
    }

    /// Owners change owners: promoting to owner or changing an owner needs an owner.
    async fn guard_owner_change(
        &self,
        principal: &Principal,
        target: UserId,
        new_role: Option<Role>,
    ) -> Result<Membership, PeopleError> {
        let (_, my_role) = self.manager_session(principal, true)?;
        let current = self.store().get_membership(principal.account_id, target).await?.ok_or(ManageError::NotFound)?;
        let touches_owner = current.role == Role::Owner || new_role == Some(Role::Owner);
        if touches_owner && my_role != Role::Owner {
            return Err(ManageError::Forbidden("only an owner can change an owner").into());
        }
        Ok(current)
    }

    fn membership_error(e: MembershipError) -> PeopleError {
        match e {
            MembershipError::NotFound => ManageError::NotFound.into(),
            MembershipError::LastOwner => ManageError::Forbidden("the account must keep at least one owner").into(),
            MembershipError::Duplicate => FieldErrors::single("email", "already a member of this account").into(),
            MembershipError::Storage(e) => e.into(),
        }
    }

    pub async fn set_user_role(
        &self,
        principal: &Principal,
        user: UserId,
        role: Role,
        ctx: &RequestContext,
    ) -> Result<(User, Membership), PeopleError> {
        let before = self.guard_owner_change(principal, user, Some(role)).await?;
        self.store().set_role(principal.account_id, user, role).await.map_err(Self::membership_error)?;
        let reshaped = self.end_derived_credentials(principal.account_id, user, Some(role)).await?;
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "user.update",
            ("user", Some(user.to_string())),
            AuditResult::Success,
            metadata(&[
                ("from", before.role.as_str()),
                ("to", role.as_str()),
                ("temporary_keys_reshaped", &reshaped.to_string()),
            ]),
        );
        let found = self.store().get_user(user).await?.ok_or(ManageError::NotFound)?;
        Ok((found, Membership { role, ..before }))
    }

    pub async fn remove_user(
        &self,
        principal: &Principal,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<(), PeopleError> {
        self.guard_owner_change(principal, user, None).await?;
        // Removing the membership also ends its sessions (the store does both at once).
        self.store().remove_membership(principal.account_id, user).await.map_err(Self::membership_error)?;
        let revoked = self.end_derived_credentials(principal.account_id, user, None).await?;
        self.audit(
            ctx,
            Some(principal.account_id),
            principal.actor(),
            "user.remove",
            ("user", Some(user.to_string())),
            AuditResult::Success,
            metadata(&[("temporary_keys_revoked", &revoked.to_string())]),
        );
        Ok(())
    }

    /// A temporary key is a snapshot of its user's role; this keeps every live one of
    /// `user` in `account` in step with the membership: with a new role, their scopes become
    /// the role's; with none (removed), they are revoked. Stores evict what they change from
    /// every instance's cache, so the very next request sees it. Sessions need nothing: they
    /// read the membership on every request, and a removal deletes them. Returns how many
    /// keys changed.
    async fn end_derived_credentials(
        &self,
        account: AccountId,
        user: UserId,
        role: Option<Role>,
    ) -> Result<usize, PeopleError> {
        let now = self.keys.now();
        let keys = self.store().live_temporary_keys(account, user, now).await?;
        let changed = keys.len();
        for key in keys {
            match role {
                Some(role) => {
                    let reshaped = Key { scopes: role.scopes(), updated_at: now, ..key.clone() };
                    self.store().update_key(&key, &reshaped).await?;
                }
                None => self.keys.revoke(key).await?,
            }
        }
        Ok(changed)
    }

    /// Creates an account with its owner (operator's path: CLI and the embedded bootstrap).
    pub async fn create_account_with_owner(
        &self,
        name: &str,
        plan: Plan,
        owner_email: Email,
        password: Option<Password>,
        with_account_key: bool,
    ) -> Result<(Account, AddedMember, Option<IssuedKey>), PeopleError> {
        let (account, issued) = self.keys.create_account(name, plan, with_account_key).await?;
        let owner = self.add_member(account.id, owner_email, Role::Owner, password).await?;
        Ok((account, owner, issued))
    }
}
