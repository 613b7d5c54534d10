//! Verification: is this key valid for this request (SPEC §4), and the budgets it spends.

use super::*;

impl<S: Store> KeyService<S> {
    /// Verifies a service key of the caller's account. Never writes to storage.
    pub async fn verify<A: Admission>(
        &self,
        principal: &Principal,
        input: &VerifyInput,
        admission: &A,
    ) -> Result<VerifyOutcome, ManageError> {
        principal.require(management::KEYS_VERIFY)?;
        self.verify_in_account(principal.account_id, input, admission).await
    }

    /// Verifies a service key of `account`, for a caller already known to act for it (the
    /// embedded [`Verifier`](crate::embedded::Verifier)). Never writes to storage.
    /// Errors: `Invalid` (scopes, resource or cost), `Storage`.
    pub async fn verify_in_account<A: Admission>(
        &self,
        account: AccountId,
        input: &VerifyInput,
        admission: &A,
    ) -> Result<VerifyOutcome, ManageError> {
        let mut errors = FieldErrors::new();
        let scopes = parse_scopes(&mut errors, "scopes", &input.scopes);
        let resource = input.resource.as_deref().and_then(|r| errors.check("resource", ResourceBinding::new(r)));
        if input.cost > MAX_VERIFY_COST {
            errors.push("cost", format!("must be 0 to {MAX_VERIFY_COST}"));
        }
        errors.into_result()?;

        let Some(key) = self.find_service_key(account, input.key.expose_secret(), input.ip, admission).await? else {
            return Ok(VerifyOutcome::not_found());
        };
        let wanted = scopes.as_ref().map_or(&[][..], ScopeSet::as_slice);
        let request = VerifyRequest { scopes: wanted, resource: resource.as_ref(), ip: input.ip, resolved: &[] };
        self.decide(key, request, input.cost, admission).await
    }

    /// The service key of `account` that `plaintext` is, if any. A legacy string is looked
    /// up only within the failed-lookup budgets of the account and of the client, and
    /// counted against them when it matches nothing.
    pub(crate) async fn find_service_key<A: Admission>(
        &self,
        account: AccountId,
        plaintext: &str,
        ip: Option<std::net::IpAddr>,
        admission: &A,
    ) -> Result<Option<Arc<VerifiableKey>>, ManageError> {
        let Some((hash, legacy)) = self.lookup_hash(plaintext) else { return Ok(None) };
        let (limits, now) = (&self.config.legacy_misses, self.clock.now());
        if legacy {
            crate::legacy::admit(admission, limits, Some(account), ip, now)
                .await
                .map_err(|retry_after_seconds| ManageError::LegacyGuessing { retry_after_seconds })?;
        }
        // Only the caller's own service keys exist, as far as the caller can tell.
        let found = self.store.find_by_hash(&hash).await?;
        let found = found.filter(|key| key.account_id == account && key.kind == KeyKind::Service);
        if legacy && found.is_none() {
            crate::legacy::count_miss(admission, limits, Some(account), ip, now).await;
        }
        Ok(found)
    }

    /// The checks of SPEC §4 after the lookup, then the budgets (`cost` credits of the
    /// quota).
    pub(crate) async fn decide<A: Admission>(
        &self,
        key: Arc<VerifiableKey>,
        request: VerifyRequest<'_>,
        cost: u32,
        admission: &A,
    ) -> Result<VerifyOutcome, ManageError> {
        let now = self.clock.now();
        let code = self.check_key(&key, request, now).await;
        if code != VerifyCode::Valid {
            return Ok(VerifyOutcome::refused(code, Some(key)));
        }
        // Budgets are consumed only once every static check passed: first the rate limit
        // (one request), then the quota (`cost` credits), which a refused request never spends.
        let rules = self.rate_rules(key.tier, key.rate_limits());
        let charge = key.quota().map(|quota| QuotaCharge {
            key: key.id,
            quota,
            stored: key.quota_balance(),
            cost: u64::from(cost),
        });
        let (decision, spent) = admission.admit(key.id.as_uuid().as_bytes(), &rules, charge, now).await;
        if !decision.allowed {
            return Ok(VerifyOutcome {
                code: VerifyCode::RateLimited,
                key: Some(key),
                ratelimit: Some(decision),
                quota_remaining: None,
                quota_spent: None,
            });
        }
        let (code, quota_remaining) = match (key.quota(), spent) {
            (Some(quota), Some(spent)) if spent.allowed => {
                let spend = crate::quota::QuotaSpend::of(quota, u64::from(cost), now);
                (VerifyCode::Valid, Some((spent.remaining, Some(spend))))
            }
            (Some(_), Some(spent)) => (VerifyCode::QuotaExhausted, Some((spent.remaining, None))),
            // An adapter admitted the request but answered nothing for its quota (the port
            // says it must): nothing was spent, so nothing is given.
            (Some(_), None) => (VerifyCode::QuotaExhausted, Some((0, None))),
            (None, _) => (VerifyCode::Valid, None),
        };
        Ok(VerifyOutcome {
            code,
            key: Some(key),
            ratelimit: Some(decision),
            quota_remaining: quota_remaining.map(|(remaining, _)| remaining),
            quota_spent: quota_remaining.and_then(|(_, spend)| spend),
        })
    }

    /// The rate limit of a service key: its own windows when it has any, else its tier's
    /// requests per minute.
    pub fn rate_rules(&self, tier: Tier, windows: &[RateLimitWindow]) -> Vec<Rule> {
        if windows.is_empty() {
            vec![Rule::new("tier", Limit::per_minute(self.config.tiers.per_minute(tier)))]
        } else {
            windows
                .iter()
                .map(|w| Rule {
                    name: Cow::Owned(w.name.clone()),
                    limit: Limit::Window { limit: w.limit, period_seconds: w.period_seconds },
                })
                .collect()
        }
    }
}
