//! Service keys: create, import, list, update, revoke, rotate.

use super::*;

/// An idle timeout, in seconds: at least one, and at most what every store keeps exactly
/// (PostgreSQL's `integer`; about 68 years), so no store clamps what another keeps.
pub const IDLE_TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 1..=i32::MAX as u32;
const IDLE_TIMEOUT_RULE: &str = "must be 1 to 2147483647 seconds";

impl<S: Store> KeyService<S> {
    async fn resolve_keyspace(&self, account: AccountId, id: Option<KeyspaceId>) -> Result<Keyspace, ManageError> {
        match id {
            Some(id) => self.store.get_keyspace(account, id).await?.ok_or_else(|| invalid_id("keyspace_id")(())),
            None => {
                self.store.find_keyspace_by_name(account, DEFAULT_KEYSPACE_NAME).await?.ok_or(ManageError::NotFound)
            }
        }
    }

    /// Validates `input` into a key record in `keyspace`; `field` prefixes error fields
    /// (`keys[3]` for imports).
    fn build_key(
        &self,
        account: &Account,
        keyspace: &Keyspace,
        input: NewKey,
        material: KeyMaterial,
        created_by: Actor,
        now: OffsetDateTime,
    ) -> Result<Key, FieldErrors> {
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", &input.name, MAX_NAME_LEN);
        validate_optional_text(&mut errors, "description", input.description.as_deref(), MAX_DESCRIPTION_LEN);
        validate_optional_text(&mut errors, "owner_id", input.owner_id.as_deref(), MAX_OWNER_ID_LEN);
        let scopes = match &input.scopes {
            Some(values) => parse_scopes(&mut errors, "scopes", values),
            None => Some(keyspace.default_scopes.clone()),
        };
        if let Some(scopes) = &scopes {
            check_catalogue(&mut errors, "scopes", scopes, keyspace.allowed_scopes.as_ref());
        }
        let resource = input.resource.and_then(|r| errors.check("resource", ResourceBinding::new(r)));
        let rate_limits = input.rate_limits.unwrap_or_default();
        validate_rate_limits(&mut errors, &rate_limits);
        if let Some(quota) = &input.quota {
            validate_quota(&mut errors, quota);
        }
        let ip_allowlist = parse_allowlist(&mut errors, input.ip_allowlist.as_deref().unwrap_or_default());
        if input.expires_at.is_some_and(|at| at <= now) {
            errors.push("expires_at", "must be in the future");
        }
        if input.idle_timeout_seconds.is_some_and(|s| !IDLE_TIMEOUT_SECONDS.contains(&s)) {
            errors.push("idle_timeout_seconds", IDLE_TIMEOUT_RULE);
        }
        let metadata = input.metadata.unwrap_or_default();
        validate_metadata(&mut errors, &metadata);
        errors.into_result()?;
        Ok(Key {
            id: KeyId::generate(now, &*self.rng),
            account_id: account.id,
            keyspace_id: Some(keyspace.id),
            kind: KeyKind::Service,
            name: input.name.trim().to_owned(),
            description: input.description,
            environment: input.environment.unwrap_or_default(),
            key_prefix: material.display_prefix,
            hash: material.hash,
            scopes: scopes.unwrap_or_default(),
            resource,
            tier: input.tier.unwrap_or(keyspace.default_tier),
            rate_limits,
            quota: input.quota,
            quota_balance: None,
            ip_allowlist,
            expires_at: input.expires_at,
            idle_timeout_seconds: input.idle_timeout_seconds,
            owner_id: input.owner_id,
            metadata,
            is_active: true,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            leaked_at: None,
            leak_source: None,
            last_used_at: None,
            usage_count: 0,
            created_at: now,
            created_by,
            updated_at: now,
        })
    }

    async fn account(&self, principal: &Principal) -> Result<Account, ManageError> {
        self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)
    }

    fn map_insert(error: InsertKeyError) -> ManageError {
        match error {
            InsertKeyError::KeyLimitReached => ManageError::KeyLimitReached,
            InsertKeyError::DuplicateHash { index } => {
                FieldErrors::single(format!("keys[{index}].hash"), "a key with this hash exists already").into()
            }
            InsertKeyError::Storage(e) => ManageError::Storage(e),
        }
    }

    pub async fn create_key(&self, principal: &Principal, input: NewKey) -> Result<IssuedKey, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        let account = self.account(principal).await?;
        let keyspace = self.resolve_keyspace(account.id, input.keyspace_id).await?;
        let now = self.now();
        let environment = input.environment.unwrap_or_default();
        let plaintext = key_format::generate(&keyspace.prefix, environment, &*self.rng);
        let material = KeyMaterial {
            hash: KeyHash::blake3(plaintext.expose_secret()),
            display_prefix: key_format::display_prefix(&plaintext),
        };
        let key = self.build_key(&account, &keyspace, input, material, principal.actor(), now)?;
        let max_keys = self.config.plans.limits(account.plan).max_keys;
        self.changing(async {
            self.store.insert_keys(std::slice::from_ref(&key), max_keys).await.map_err(Self::map_insert)?;
            Ok(self.publish(EventType::KeyCreated, &key).await?)
        })
        .await?;
        Ok(IssuedKey { key, plaintext })
    }

    pub async fn import_keys(
        &self,
        principal: &Principal,
        keyspace_id: Option<KeyspaceId>,
        entries: Vec<ImportedKey>,
    ) -> Result<Vec<Key>, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        if entries.is_empty() || entries.len() > MAX_IMPORT_BATCH {
            return Err(FieldErrors::single("keys", format!("must hold 1 to {MAX_IMPORT_BATCH} keys")).into());
        }
        let account = self.account(principal).await?;
        let keyspace = self.resolve_keyspace(account.id, keyspace_id).await?;
        let now = self.now();
        let mut errors = FieldErrors::new();
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let Ok(hash) = KeyHash::parse_tagged(&entry.hash)
                .map(|h| self.config.legacy_pepper.as_ref().map_or(h, |pepper| h.peppered(pepper)))
            else {
                errors.push(
                    format!("keys[{i}].hash"),
                    "must be \"sha256:<64 hex digits>\" or \"blake3:<64 hex digits>\"",
                );
                continue;
            };
            if keys.iter().any(|k: &Key| k.hash == hash) {
                errors.push(format!("keys[{i}].hash"), "appears twice in this import");
                continue;
            }
            let display = format!("{}:…", hash.algorithm().name());
            let material = KeyMaterial { hash, display_prefix: display };
            match self.build_key(&account, &keyspace, entry.attributes, material, principal.actor(), now) {
                Ok(key) => keys.push(key),
                Err(e) => errors.extend_prefixed(&format!("keys[{i}]"), e),
            }
        }
        errors.into_result()?;
        let max_keys = self.config.plans.limits(account.plan).max_keys;
        self.store.insert_keys(&keys, max_keys).await.map_err(Self::map_insert)?;
        Ok(keys)
    }

    pub async fn list_keys(
        &self,
        principal: &Principal,
        filter: &KeyFilter,
        page: PageRequest,
    ) -> Result<KeyPage, ManageError> {
        principal.require(management::KEYS_READ)?;
        let mut errors = FieldErrors::new();
        errors.plain_text("owner_id", filter.owner_id.as_deref());
        errors.into_result()?;
        Ok(self.store.list_keys(principal.account_id, filter, page, self.now()).await?)
    }

    pub async fn get_key(&self, principal: &Principal, id: KeyId) -> Result<Key, ManageError> {
        principal.require(management::KEYS_READ)?;
        self.service_key(principal, id).await
    }

    async fn service_key(&self, principal: &Principal, id: KeyId) -> Result<Key, ManageError> {
        match self.store.get_key(principal.account_id, id).await? {
            Some(key) if key.kind == KeyKind::Service => Ok(key),
            _ => Err(ManageError::NotFound),
        }
    }

    pub async fn update_key(&self, principal: &Principal, id: KeyId, patch: KeyPatch) -> Result<Key, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        let before = self.service_key(principal, id).await?;
        let mut key = before.clone();
        let keyspace = match key.keyspace_id {
            Some(ks) => self.store.get_keyspace(principal.account_id, ks).await?,
            None => None,
        };
        let now = self.now();
        let mut errors = FieldErrors::new();
        if let Some(name) = patch.name {
            validate_name(&mut errors, "name", &name, MAX_NAME_LEN);
            key.name = name.trim().to_owned();
        }
        if let Some(description) = patch.description {
            validate_optional_text(&mut errors, "description", description.as_deref(), MAX_DESCRIPTION_LEN);
            key.description = description;
        }
        if let Some(scopes) = patch.scopes.and_then(|s| parse_scopes(&mut errors, "scopes", &s)) {
            check_catalogue(&mut errors, "scopes", &scopes, keyspace.as_ref().and_then(|k| k.allowed_scopes.as_ref()));
            key.scopes = scopes;
        }
        match patch.resource {
            Some(Some(r)) => key.resource = errors.check("resource", ResourceBinding::new(r)),
            Some(None) => key.resource = None,
            None => {}
        }
        if let Some(tier) = patch.tier {
            key.tier = tier;
        }
        if let Some(windows) = patch.rate_limits {
            validate_rate_limits(&mut errors, &windows);
            key.rate_limits = windows;
        }
        if let Some(quota) = patch.quota {
            if let Some(q) = &quota {
                validate_quota(&mut errors, q);
            }
            key.quota = quota;
        }
        if let Some(list) = patch.ip_allowlist {
            key.ip_allowlist = parse_allowlist(&mut errors, &list);
        }
        if let Some(expires_at) = patch.expires_at {
            if expires_at.is_some_and(|at| at <= now) {
                errors.push("expires_at", "must be in the future");
            }
            key.expires_at = expires_at;
        }
        if let Some(idle) = patch.idle_timeout_seconds {
            if idle.is_some_and(|s| !IDLE_TIMEOUT_SECONDS.contains(&s)) {
                errors.push("idle_timeout_seconds", IDLE_TIMEOUT_RULE);
            }
            key.idle_timeout_seconds = idle;
        }
        if let Some(owner) = patch.owner_id {
            validate_optional_text(&mut errors, "owner_id", owner.as_deref(), MAX_OWNER_ID_LEN);
            key.owner_id = owner;
        }
        if let Some(metadata) = patch.metadata {
            validate_metadata(&mut errors, &metadata);
            key.metadata = metadata;
        }
        if let Some(active) = patch.is_active {
            key.is_active = active;
        }
        errors.into_result()?;
        key.updated_at = now;
        self.changing(async {
            self.store.update_key(&before, &key).await?;
            // Read back: a concurrent revocation wins over this update, and the answer says so.
            let after = self.service_key(principal, id).await?;
            self.publish_change(&before, &after).await?;
            Ok(after)
        })
        .await
    }

    /// Revokes a key for good. Revoking a revoked key is not an error and keeps the first
    /// `revoked_at`.
    pub async fn revoke_key(&self, principal: &Principal, id: KeyId) -> Result<Key, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        self.revoke(self.service_key(principal, id).await?).await?;
        self.service_key(principal, id).await
    }

    /// Revokes `key` now unless it already is (any kind of key; the callers check access).
    pub(crate) async fn revoke(&self, key: Key) -> Result<(), ManageError> {
        if key.revoked_at.is_none() {
            let now = self.now();
            let revoked = Key { revoked_at: Some(now), updated_at: now, ..key.clone() };
            self.changing(async {
                self.store.update_key(&key, &revoked).await?;
                Ok(self.publish(EventType::KeyRevoked, &revoked).await?)
            })
            .await?;
        }
        Ok(())
    }

    /// Issues a successor with the same attributes and a new secret; the old key keeps
    /// working for `grace_period_seconds`, then expires.
    pub async fn rotate_key(
        &self,
        principal: &Principal,
        id: KeyId,
        grace_period_seconds: u32,
    ) -> Result<IssuedKey, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        if grace_period_seconds > MAX_GRACE_PERIOD_SECONDS {
            return Err(FieldErrors::single(
                "grace_period_seconds",
                format!("must be 0 to {MAX_GRACE_PERIOD_SECONDS}"),
            )
            .into());
        }
        let mut old = self.service_key(principal, id).await?;
        if old.revoked_at.is_some() {
            return Err(ManageError::Forbidden(crate::error::Refusal::RevokedKeyRotation));
        }
        let keyspace = match old.keyspace_id {
            Some(ks) => self.store.get_keyspace(principal.account_id, ks).await?,
            None => None,
        };
        let now = self.now();
        // The successor is one more active key unless the old one stops counting at once.
        let frees_one = grace_period_seconds == 0 && old.status(now) == KeyStatus::Active;
        if !frees_one {
            let account = self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
            if let Some(max) = self.config.plans.limits(account.plan).max_keys
                && self.store.count_keys(account.id, now).await?.active >= max
            {
                return Err(ManageError::KeyLimitReached);
            }
        }
        let prefix = keyspace.map_or_else(|| self.config.default_keyspace_prefix.clone(), |k| k.prefix);
        let plaintext = key_format::generate(&prefix, old.environment, &*self.rng);
        let new = Key {
            id: KeyId::generate(now, &*self.rng),
            key_prefix: key_format::display_prefix(&plaintext),
            hash: KeyHash::blake3(plaintext.expose_secret()),
            rotated_from: Some(old.id),
            rotated_to: None,
            leaked_at: None,
            leak_source: None,
            revoked_at: None,
            last_used_at: None,
            usage_count: 0,
            created_at: now,
            created_by: principal.actor(),
            updated_at: now,
            ..old.clone()
        };
        let grace_end = now + Duration::seconds(i64::from(grace_period_seconds));
        old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
        old.rotated_to = Some(new.id);
        old.updated_at = now;
        self.changing(async {
            self.store.rotate_key(&old, &new).await?;
            Ok(self.publish(EventType::KeyRotated, &old).await?)
        })
        .await?;
        Ok(IssuedKey { key: new, plaintext })
    }
}
