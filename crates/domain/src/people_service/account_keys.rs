//! Account keys: management keys a person mints (after step-up) for automation.

use super::*;

impl<S: Store, H: PasswordHasher, L: RateLimiter> PeopleService<S, H, L> {
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
            Audited {
                action: Action::AccountKeyCreate,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: id,
                result: outcome,
                metadata: Default::default(),
            },
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
            Audited {
                action: Action::AccountKeyUpdate,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(id.to_string()),
                result: AuditResult::Success,
                metadata: Default::default(),
            },
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
            Audited {
                action: Action::AccountKeyRevoke,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(id.to_string()),
                result: AuditResult::Success,
                metadata: Default::default(),
            },
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
            return Err(ManageError::Forbidden(crate::error::Refusal::InactiveAccountKeyRotation).into());
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
            Audited {
                action: Action::AccountKeyRotate,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(id.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[("new_key_id", &new.id.to_string())]),
            },
        );
        Ok(IssuedKey { key: new, plaintext })
    }
}
