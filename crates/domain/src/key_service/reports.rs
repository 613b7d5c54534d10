//! What the trail and the meter say: usage records, statistics, the audit trail, its
//! chains and the retention purge.

use super::*;

impl<S: Store> KeyService<S> {
    /// The per-request records of one of the caller's service keys, newest first.
    pub async fn key_usage(
        &self,
        principal: &Principal,
        id: KeyId,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        before: Option<UsagePosition>,
        limit: u32,
    ) -> Result<Vec<UsageEntry>, ManageError> {
        principal.require(management::USAGE_READ)?;
        // Any key of the account: account keys are metered too (their management calls).
        let key = self.store.get_key(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        Ok(self.store.key_usage(principal.account_id, key.id, window, before, limit).await?)
    }

    /// Requests today and this month of a key of the caller's account.
    pub async fn usage_summary(&self, principal: &Principal, id: KeyId) -> Result<UsageSummary, ManageError> {
        Ok(self.store.usage_summary(principal.account_id, id, self.now()).await?)
    }

    /// `GET /v1/stats`: key counts and verification statistics of the caller's account.
    pub async fn stats(&self, principal: &Principal) -> Result<(KeyCounts, AccountStats), ManageError> {
        principal.require(management::USAGE_READ)?;
        let now = self.now();
        let counts = self.store.count_keys(principal.account_id, now).await?;
        Ok((counts, self.store.account_stats(principal.account_id, now).await?))
    }

    // --- audit ----------------------------------------------------------------------------

    /// The caller's account's audit events, newest first (`GET /v1/audit`).
    pub async fn list_audit(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        limit: u32,
        before: Option<crate::audit::AuditPosition>,
    ) -> Result<Vec<AuditRecord>, ManageError> {
        principal.require(management::AUDIT_READ)?;
        let mut errors = crate::FieldErrors::new();
        errors.plain_text("key_id", filter.key_id.as_deref());
        errors.plain_text("actor_id", filter.actor_id.as_deref());
        errors.plain_text("resource_type", filter.resource_type.as_deref());
        errors.plain_text("resource_id", filter.resource_id.as_deref());
        errors.plain_text("action", filter.action.as_deref());
        errors.into_result()?;
        Ok(self.store.list_audit(principal.account_id, filter, limit, before).await?)
    }

    /// Walks every chain (or one account's) and reports the first broken link of each
    /// (`keyward audit verify`).
    pub async fn verify_audit(&self, only: Option<AccountId>) -> Result<Vec<ChainReport>, StorageError> {
        let chains = match only {
            Some(account) => vec![Some(account)],
            None => self.store.audit_chains().await?,
        };
        let mut reports = Vec::with_capacity(chains.len());
        for account in chains {
            let (mut after, mut prev, mut events, mut broken_at) = (0, None, 0u64, None);
            loop {
                let page = self.store.audit_chain(account, after, 1_000).await?;
                let Some(last) = page.last() else { break };
                events += page.len() as u64;
                if broken_at.is_none() {
                    broken_at = first_broken_link(&page, prev);
                }
                after = last.seq;
                prev = Some((last.seq, last.hash));
            }
            reports.push(ChainReport { account, events, broken_at, head: prev });
        }
        Ok(reports)
    }

    /// Whether the trail still holds the anchored event, unchanged, at its position.
    pub async fn holds_anchor(&self, anchor: &crate::audit::AnchoredHead) -> Result<bool, StorageError> {
        let found = self.store.audit_chain(anchor.account, anchor.seq - 1, 1).await?;
        Ok(found.first().is_some_and(|r| r.seq == anchor.seq && r.hash == anchor.hash))
    }

    /// The retention purge: each account's events older than its plan's retention go; events
    /// without an account are kept as long as the longest retention. Returns how many went.
    pub async fn purge_audit(&self) -> Result<u64, StorageError> {
        let now = self.now();
        let plans = &self.config.plans;
        let longest = [Plan::Free, Plan::Basic, Plan::Pro, Plan::Enterprise]
            .iter()
            .map(|p| plans.limits(*p).audit_retention_days)
            .max()
            .unwrap_or(730);
        let mut removed = 0;
        for account in self.store.audit_chains().await? {
            let days = match account {
                Some(id) => {
                    self.store.get_account(id).await?.map_or(longest, |a| plans.limits(a.plan).audit_retention_days)
                }
                None => longest,
            };
            removed += self.store.purge_audit(account, now - Duration::days(i64::from(days))).await?;
        }
        Ok(removed)
    }
}
