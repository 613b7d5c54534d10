//! Accounts (created by the operator) and their keyspaces.

use super::*;

impl<S: Store> KeyService<S> {
    pub async fn account_overview(&self, principal: &Principal) -> Result<AccountOverview, ManageError> {
        let account = self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
        let limits = *self.config.plans.limits(account.plan);
        let counts = self.store.count_keys(account.id, self.now()).await?;
        Ok(AccountOverview { account, limits, counts })
    }

    /// Creates an account with its default keyspace and, when `with_account_key`, a first
    /// account key holding every management scope. This is the operator's path (CLI and the
    /// embedded bootstrap), so it is allowed whatever the plan says about account keys.
    pub async fn create_account(
        &self,
        name: &str,
        plan: Plan,
        with_account_key: bool,
    ) -> Result<(Account, Option<IssuedKey>), ManageError> {
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", name, MAX_ACCOUNT_NAME_LEN);
        errors.into_result()?;
        let now = self.now();
        let account =
            Account { id: AccountId::generate(now, &*self.rng), name: name.trim().to_owned(), plan, created_at: now };
        let keyspace = Keyspace {
            id: KeyspaceId::generate(now, &*self.rng),
            account_id: account.id,
            name: DEFAULT_KEYSPACE_NAME.to_owned(),
            prefix: self.config.default_keyspace_prefix.clone(),
            default_tier: self.config.plans.limits(plan).default_tier,
            default_scopes: ScopeSet::default(),
            allowed_scopes: None,
            ip_policy: IpPolicy::Open,
            leak_policy: None,
            created_at: now,
            updated_at: now,
        };
        let issued = with_account_key.then(|| {
            let plaintext = key_format::generate(&self.config.account_key_prefix, Environment::Live, &*self.rng);
            let key = self.blank_key(
                &account,
                None,
                KeyKind::Account,
                "bootstrap",
                Environment::Live,
                &plaintext,
                Actor::System,
                now,
            );
            IssuedKey { key: Key { scopes: ScopeSet::all_management(), ..key }, plaintext }
        });
        self.store.create_account(&account, &keyspace, issued.as_ref().map(|i| &i.key)).await?;
        Ok((account, issued))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn blank_key(
        &self,
        account: &Account,
        keyspace_id: Option<KeyspaceId>,
        kind: KeyKind,
        name: &str,
        environment: Environment,
        plaintext: &PlaintextKey,
        created_by: Actor,
        now: OffsetDateTime,
    ) -> Key {
        Key {
            id: KeyId::generate(now, &*self.rng),
            account_id: account.id,
            keyspace_id,
            kind,
            name: name.to_owned(),
            description: None,
            environment,
            key_prefix: key_format::display_prefix(plaintext),
            hash: KeyHash::blake3(plaintext.expose_secret()),
            scopes: ScopeSet::default(),
            resource: None,
            tier: self.config.plans.limits(account.plan).default_tier,
            rate_limits: Vec::new(),
            quota: None,
            quota_balance: None,
            ip_allowlist: IpAllowlist::default(),
            expires_at: None,
            idle_timeout_seconds: None,
            owner_id: None,
            metadata: Metadata::new(),
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
        }
    }

    // --- keyspaces ------------------------------------------------------------------------

    pub async fn create_keyspace(&self, principal: &Principal, input: NewKeyspace) -> Result<Keyspace, ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", &input.name, MAX_NAME_LEN);
        let prefix = match input.prefix {
            Some(p) => errors.check("prefix", KeyPrefix::new(p)),
            None => Some(self.config.default_keyspace_prefix.clone()),
        };
        let default_scopes =
            parse_scopes(&mut errors, "default_scopes", input.default_scopes.as_deref().unwrap_or_default());
        let allowed_scopes = match &input.allowed_scopes {
            Some(values) => parse_scopes(&mut errors, "allowed_scopes", values).map(Some),
            None => Some(None),
        };
        if let (Some(defaults), Some(catalogue)) = (&default_scopes, &allowed_scopes) {
            check_catalogue(&mut errors, "default_scopes", defaults, catalogue.as_ref());
        }
        errors.into_result()?;
        let (Some(prefix), Some(default_scopes), Some(allowed_scopes)) = (prefix, default_scopes, allowed_scopes)
        else {
            unreachable!("every None above recorded an error");
        };
        let account = self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
        let now = self.now();
        let keyspace = Keyspace {
            id: KeyspaceId::generate(now, &*self.rng),
            account_id: principal.account_id,
            name: input.name.trim().to_owned(),
            prefix,
            default_tier: input.default_tier.unwrap_or(self.config.plans.limits(account.plan).default_tier),
            default_scopes,
            allowed_scopes,
            ip_policy: input.ip_policy.unwrap_or_default(),
            leak_policy: input.leak_policy,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_keyspace(&keyspace).await.map_err(|e| match e {
            InsertKeyspaceError::DuplicateName => ManageError::NameTaken,
            InsertKeyspaceError::Storage(e) => ManageError::Storage(e),
        })?;
        Ok(keyspace)
    }

    pub async fn list_keyspaces(&self, principal: &Principal) -> Result<Vec<Keyspace>, ManageError> {
        principal.require(management::KEYSPACES_READ)?;
        Ok(self.store.list_keyspaces(principal.account_id).await?)
    }

    pub async fn get_keyspace(&self, principal: &Principal, id: KeyspaceId) -> Result<Keyspace, ManageError> {
        principal.require(management::KEYSPACES_READ)?;
        self.store.get_keyspace(principal.account_id, id).await?.ok_or(ManageError::NotFound)
    }

    pub async fn update_keyspace(
        &self,
        principal: &Principal,
        id: KeyspaceId,
        patch: KeyspacePatch,
    ) -> Result<Keyspace, ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let mut keyspace = self.store.get_keyspace(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        let mut errors = FieldErrors::new();
        if let Some(name) = patch.name {
            validate_name(&mut errors, "name", &name, MAX_NAME_LEN);
            if keyspace.name == DEFAULT_KEYSPACE_NAME && name.trim() != DEFAULT_KEYSPACE_NAME {
                errors.push("name", "the default keyspace cannot be renamed");
            }
            keyspace.name = name.trim().to_owned();
        }
        if let Some(prefix) = patch.prefix.and_then(|p| errors.check("prefix", KeyPrefix::new(p))) {
            keyspace.prefix = prefix;
        }
        if let Some(tier) = patch.default_tier {
            keyspace.default_tier = tier;
        }
        if let Some(scopes) = patch.default_scopes.and_then(|s| parse_scopes(&mut errors, "default_scopes", &s)) {
            keyspace.default_scopes = scopes;
        }
        match patch.allowed_scopes {
            Some(Some(values)) => keyspace.allowed_scopes = parse_scopes(&mut errors, "allowed_scopes", &values),
            Some(None) => keyspace.allowed_scopes = None,
            None => {}
        }
        if let Some(policy) = patch.ip_policy {
            keyspace.ip_policy = policy;
        }
        if let Some(policy) = patch.leak_policy {
            keyspace.leak_policy = policy;
        }
        check_catalogue(&mut errors, "default_scopes", &keyspace.default_scopes, keyspace.allowed_scopes.as_ref());
        errors.into_result()?;
        keyspace.updated_at = self.now();
        self.store.update_keyspace(&keyspace).await.map_err(|e| match e {
            UpdateKeyspaceError::NotFound => ManageError::NotFound,
            UpdateKeyspaceError::DuplicateName => ManageError::NameTaken,
            UpdateKeyspaceError::Storage(e) => ManageError::Storage(e),
        })?;
        Ok(keyspace)
    }

    pub async fn delete_keyspace(&self, principal: &Principal, id: KeyspaceId) -> Result<(), ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let keyspace = self.store.get_keyspace(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        if keyspace.name == DEFAULT_KEYSPACE_NAME {
            return Err(ManageError::Forbidden(crate::error::Refusal::DefaultKeyspaceDeletion));
        }
        self.store.delete_keyspace(principal.account_id, id, self.now()).await.map_err(|e| match e {
            DeleteKeyspaceError::NotFound => ManageError::NotFound,
            DeleteKeyspaceError::NotEmpty => ManageError::KeyspaceNotEmpty,
            DeleteKeyspaceError::Storage(e) => ManageError::Storage(e),
        })
    }
}
